"""The evaluation sampler: samples of every test caption, one PNG per sample, plus captioned sheets.

Port of the original's evaluation mode (`TRAIN.FLAG: False`, `CondGANTrainer.evaluate` with
`eval_one_dataset`) (original `stageI/trainer.py`): restore a trained snapshot, go over the test split, and generate k
samples per caption with the generators in test phase (BN moving averages), z ~ N(0, 1) and the CA
noise ~ truncated N(0, 1). `stageI/run_exp.py` and `stageII/run_exp.py` call `run_evaluation` when
the config says `TRAIN.FLAG: false`.

Output folder (default `<run folder>/samples_<iteration>/`):

    test/<filename>_c<caption>_s<sample>.png          every sample of the final stage (64 or 256 px)
    test_stageI/<filename>_c<caption>_s<sample>.png   Stage-II snapshots only: the Stage-I samples (64 px)
    sheets/<filename>_c<caption>.jpg                  caption, real image and the samples of each stage
    samples.json                                      what was sampled, from which snapshot, with which seed

`<filename>` is the dataset's file name, class folder included (e.g.
`001.Black_footed_Albatross/Black_footed_Albatross_0046_18`), so `test/` mirrors the dataset's
class folders. The whole folder is written under a temporary name and renamed when complete: an
interrupted run leaves no partial folder in its place.

Differences from the original, and why:

* One file per sample (the original only wrote super-images, unusable for the Inception Score),
  named after the dataset file instead of a random permutation id.
* Every image is sampled once, in file order (the original's last window of 64 was shifted back and
  sampled some images twice); the real images of the sheets are centre crops (the original's were
  randomly cropped and flipped).
* `--num-captions` can sample more captions than the original's caption 0; `--num-samples` is not
  capped at 16 (the default is the original's `min(16, TRAIN.NUM_COPY)`).
* The noise comes from a NumPy generator seeded with `SEED` (`TextToImageModels.sample_noise`), so
  a run is reproducible and independent of the batch size.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from misc.checkpoint import read_metadata, resolve_checkpoint
from misc.config import Config
from misc.datasets import center_crop, load_split
from misc.errors import CheckpointError, ConfigError, DataError, StackGANError
from misc.generate.inference import (
    STAGE1, STAGE2, TextToImageModels, find_checkpoint, load_generators, load_run_config,
)
from misc.generate.sheets import caption_sheet, encode, upsample
from misc.utils import progress as progress_bar
from misc.visualize import to_uint8
from stageI import STAGE as STAGE_I
from stageII import STAGE as STAGE_II

SPLIT = "test"
FINAL_DIR = SPLIT
STAGE1_DIR = f"{SPLIT}_stageI"
SHEETS_DIR = "sheets"
MANIFEST = "samples.json"
# The original drew min(16, TRAIN.NUM_COPY) samples per caption (original `stageI/trainer.py`).
MAX_DEFAULT_SAMPLES = 16


def sample_name(filename: str, caption: int, sample: int) -> str:
    """`<filename>_c<caption>_s<sample>.png`: the name of one sample (the layout `make eval` reads)."""
    return f"{filename}_c{caption}_s{sample}.png"


def default_out(models: TextToImageModels) -> Path:
    """`<run folder>/samples_<iteration>`."""
    return models.run_dir / f"samples_{models.iteration}"


def check_out(out: str | os.PathLike) -> Path:
    """Refuse an output folder that exists, is not empty and was not written by the sampler.

    Raises:
      StackGANError: such a folder (it would be replaced).
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise StackGANError(f"{out}: exists and was not written by the sampler (no {MANIFEST}); remove it or "
                            "choose another folder with --out")
    return out


def sample_test_split(models: TextToImageModels, data, out: str | os.PathLike, num_samples: int,
                      num_captions: int = 1, seed: int = 0, batch_size: int = 64, progress: bool = True) -> dict:
    """Write k samples of each test caption (port of `eval_one_dataset`; original `stageI/trainer.py`).

    Args:
      models: the restored generators.
      data: the test split (`misc.datasets.SplitData`) with images of 304 px (Stage-II) or 76 px.
      out: the output folder (layout in the module docstring); replaced if the sampler wrote it before.
      num_samples: samples per caption (k).
      num_captions: captions per image, the first ones (the original: 1, caption 0).
      seed: seed of the noise.
      batch_size: images per forward pass.
      progress: show a progress bar.

    Returns:
      The manifest written to `samples.json` (counts, sizes, snapshot, seed, folders).

    Raises:
      ConfigError: a count out of range; DataError: embeddings of another size than the generators
        take, or missing caption files; StackGANError: `out` is not the sampler's.
    """
    out = check_out(out)
    if num_samples < 1:
        raise ConfigError(f"--num-samples must be at least 1, got {num_samples}")
    if not 1 <= num_captions <= data.captions_per_image:
        raise ConfigError(f"--num-captions must be between 1 and {data.captions_per_image} (the captions per "
                          f"image of {data.split_dir}), got {num_captions}")
    if data.embedding_dim != models.text_dim:
        raise DataError(f"{data.split_dir}: embeddings have size {data.embedding_dim} but the generators of "
                        f"{models.checkpoint} take {models.text_dim}")
    # Every caption text before anything is generated, so a missing caption file stops the run at once.
    captions = [data.captions(i)[:num_captions] for i in range(len(data))]
    for i, texts in enumerate(captions):
        if len(texts) < num_captions:
            raise DataError(f"{data.caption_path(i)}: has {len(texts)} captions, {num_captions} were asked for")

    size = models.image_size
    real = center_crop(data.images, size)
    pairs = [(i, c) for i in range(len(data)) for c in range(num_captions)]
    z, epsilon1, epsilon2 = models.sample_noise(len(pairs) * num_samples, seed)
    pairs_per_batch = max(1, batch_size // num_samples)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        bar = progress_bar(total=len(pairs) * num_samples, unit="image", desc="sampling", disable=not progress)
        for start in range(0, len(pairs), pairs_per_batch):
            chunk = pairs[start:start + pairs_per_batch]
            rows = slice(start * num_samples, (start + len(chunk)) * num_samples)
            embeddings = np.repeat(np.stack([data.embeddings[i, c] for i, c in chunk]), num_samples, axis=0)
            stage1, stage2 = models.generate(embeddings, z[rows], epsilon1[rows],
                                             None if epsilon2 is None else epsilon2[rows])
            stage1 = to_uint8(stage1).reshape((len(chunk), num_samples, 64, 64, 3))
            final = stage1 if stage2 is None else to_uint8(stage2).reshape((len(chunk), num_samples, size, size, 3))
            for n, (i, c) in enumerate(chunk):
                filename = data.filenames[i]
                for k in range(num_samples):
                    _write(tmp / FINAL_DIR / sample_name(filename, c, k), encode(final[n, k]))
                    if stage2 is not None:
                        _write(tmp / STAGE1_DIR / sample_name(filename, c, k), encode(stage1[n, k]))
                sheet_rows = [("Stage-I", upsample(stage1[n], size))]
                if stage2 is not None:
                    sheet_rows.append(("Stage-II", final[n]))
                sheet = caption_sheet(captions[i][c], sheet_rows, real=real[i])
                _write(tmp / SHEETS_DIR / f"{filename}_c{c}.jpg", encode(sheet, "JPEG"))
            bar.update(len(chunk) * num_samples)
        bar.close()
        manifest = {
            "checkpoint": str(models.checkpoint), "stage": models.stage, "iteration": models.iteration,
            "dataset": models.dataset, "data_dir": str(data.data_dir), "split": data.split,
            "images": len(data), "captions_per_image": num_captions, "samples_per_caption": num_samples,
            "seed": seed, "image_size": size, "files": len(pairs) * num_samples,
            "samples": f"{FINAL_DIR}/<filename>_c<caption>_s<sample>.png",
            "stage1_samples": f"{STAGE1_DIR}/<filename>_c<caption>_s<sample>.png" if models.has_stage2 else None,
            "sheets": f"{SHEETS_DIR}/<filename>_c<caption>.jpg",
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return manifest


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _replace_dir(new: Path, out: Path) -> None:
    """Move the complete folder `new` onto `out`, removing a previous sampler output there."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / out.name)
    os.replace(new, out)
    if old is not None:
        shutil.rmtree(old)


def run_evaluation(cfg: Config, stage: str, out: str | os.PathLike | None = None, num_samples: int | None = None,
                   num_captions: int = 1, progress: bool = True, print_fn: Callable[[str], None] = print) -> Path:
    """The original's evaluation mode for one stage's command line (port of `evaluate`; original `stageI/trainer.py`).

    The snapshot is `TRAIN.PRETRAINED_MODEL` if set (a run folder or a snapshot file, as in the
    original's eval configs), else the newest `<OUTPUT_DIR>/<DATASET_NAME>/<stage>_*/` one. The
    networks are built at the widths of that run's `config.yml`; `cfg` gives the data (`DATA_DIR`),
    `SEED`, the default k (`min(16, TRAIN.NUM_COPY)`) and the batch (`TEST.BATCH_SIZE`).

    Args:
      cfg: the command's resolved config (with `TRAIN.FLAG: false`).
      stage: "stageI" (only the Stage-I generator, also of a Stage-II snapshot) or "stageII".
      out: output folder; default `<run folder>/samples_<iteration>`.
      num_samples: samples per caption; default `min(16, TRAIN.NUM_COPY)`.
      num_captions: captions per test image (the first ones).
      progress: show a progress bar.
      print_fn: where the messages go.

    Returns:
      The output folder.
    """
    num_samples = min(MAX_DEFAULT_SAMPLES, cfg.TRAIN.NUM_COPY) if num_samples is None else num_samples
    weights = (resolve_checkpoint(cfg.TRAIN.PRETRAINED_MODEL) if cfg.TRAIN.PRETRAINED_MODEL
               else find_checkpoint(cfg.DATASET_NAME, cfg.OUTPUT_DIR, stage))
    saved_stage = read_metadata(weights).get("stage")
    if stage == STAGE2 and saved_stage != STAGE2:  # checked again on load; here before the data loading
        raise CheckpointError(f"{weights}: this is a {saved_stage} checkpoint, stageII/run_exp.py samples a "
                              f"{STAGE2} one (set TRAIN.PRETRAINED_MODEL to a Stage-II run folder, or sample "
                              "this one with stageI/run_exp.py)")
    run_cfg = load_run_config(weights)
    if out is not None:
        check_out(out)
    # The data before the networks are built: a data error comes at once.
    stored_size = (STAGE_II if stage == STAGE2 else STAGE_I).stored_size
    data = load_split(cfg.data_dir(), SPLIT, stored_size, cfg.EMBEDDING_TYPE,
                      run_cfg.TEXT.DIMENSION)
    models = load_generators(weights, dataset=cfg.DATASET_NAME, stage=STAGE2 if stage == STAGE2 else STAGE1)
    out = Path(out) if out is not None else default_out(models)
    check_out(out)
    print_fn(f"checkpoint: {models.checkpoint} ({models.stage}, iteration {models.iteration})")
    print_fn(f"sampling {len(data)} test images x {num_captions} caption(s) x {num_samples} samples "
             f"= {len(data) * num_captions * num_samples} images of {models.image_size} px")
    manifest = sample_test_split(models, data, out, num_samples, num_captions, seed=cfg.SEED,
                                 batch_size=cfg.TEST.BATCH_SIZE, progress=progress)
    print_fn(f"samples: {out / FINAL_DIR}/<filename>_c<caption>_s<sample>.png ({manifest['files']} files, "
             f"{models.image_size} px)")
    if models.has_stage2:
        print_fn(f"Stage-I samples: {out / STAGE1_DIR}/ (64 px)")
    print_fn(f"captioned sheets: {out / SHEETS_DIR}/<filename>_c<caption>.jpg")
    return out
