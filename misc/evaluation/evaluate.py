"""Score a folder of generated images: the shapes judge, R-precision, Inception Score and FID.

The images are the evaluation sampler's: PNG files anywhere under one folder, each named
`<filename>_c<caption index>_s<sample index>.png`, where `<filename>` is the source image's key in
`<split>/filenames.pickle` (with its class folder, e.g. `001.red_circle/red_circle_0001`) and the
caption index is the line of `text_c10/<filename>.txt` the image was generated from. Scores:

* **Judge** (datasets with `<split>/attributes.json`, i.e. shapes; `misc.evaluation.judge`): for every
  generated image, whether the judge reads each attribute its caption names (shape, colour,
  background colour, size, position) as named; attributes the caption does not name are not
  scored, because nothing told the generator about them. The same on the real source image of each
  (image, caption) pair gives the ceiling. Plus the Frechet distance between the judge's
  penultimate features of all real images of the split and of the generated images.
* **R-precision** (AttnGAN's protocol, `misc.evaluation.metrics.r_precision`): each generated image ranks its
  own caption among 100, the other 99 being the same-numbered caption of 99 other images of the
  split drawn at random (seeded); cosine similarity of our text encoder's caption embedding and our
  jointly trained image encoder's image embedding. Ceiling: the same on the real source images.
* **Inception Score and FID**, only with `--inception-weights` (a local Keras file; nothing is
  downloaded): IS over 10 splits as the original scorer, StackGAN-inception-model (seeded shuffle, then floor(N / 64)
  full batches of 64), FID between the pool features of the real split images and the generated
  ones, both from `misc.evaluation.inception`.

Real images are shown to every network as the GAN sees them: the centre 64x64 of the 76x76 images
(or the centre 256x256 of the 304x304 ones for larger samples), resized to the samples' side when
that differs. Writes `<images>/eval.json` (or `--out`) atomically and prints a table.

Run `python -m misc.evaluation.evaluate --images DIR` (or `make eval IMAGES=DIR`).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from misc.cli import import_tensorflow, run_cli
from misc.errors import DataError, StackGANError

import_tensorflow()  # quietly, before the modules below import TensorFlow

from misc.datasets import (  # noqa: E402
    HR_IMSIZE, LOAD_SIZE, LR_IMSIZE, LR_SIZE, caption_path, center_crop, image_file_name, load_captioned_split,
)
from misc.evaluation.inception import DEFAULT_VARIANT, VARIANTS, build_inception, extract  # noqa: E402
from misc.evaluation.judge import (  # noqa: E402
    ATTRIBUTES_FILE, INPUT_SIZE, fit_to_input, judge_file_and_folder, judge_images, judge_training, load_judge,
    read_attributes, stale_judge_note,
)
from misc.evaluation.metrics import (  # noqa: E402
    IS_SPLITS, R_PRECISION_CANDIDATES, feature_statistics, frechet_distance, inception_score, r_precision,
    sample_diversity, softmax_known_classes,
)
from misc.pickle_io import load_pickle  # noqa: E402
from misc.data.shapes import caption_attributes  # noqa: E402
from misc.text.encoder import (  # noqa: E402
    IMAGE_ENCODER_FILE, TEXT_ENCODER_FILE, embed_images, embed_sentences, load_image_encoder, load_text_encoder,
)
from misc.utils import atomic_write_text  # noqa: E402
from misc.utils import progress as progress_bar  # noqa: E402

NAMING = "<filename>_c<caption index>_s<sample index>.png"
_SAMPLE_NAME = re.compile(r"(?P<stem>.+)_c(?P<caption>\d+)_s(?P<sample>\d+)")
EVAL_FILE = "eval.json"
# hanzhanggit/StackGAN-inception-model: the original scorer ran floor(N / 64) full batches of 64 and dropped the rest.
IS_BATCH = 64
# The GAN trains on 64x64 crops of 76x76 images (Stage-I) and 256x256 crops of 304x304 (Stage-II).
_REAL_VIEWS = ((LR_IMSIZE, LR_SIZE), (HR_IMSIZE, LOAD_SIZE))
RESIZE = {
    "tf2015": "bilinear to 299x299 without half-pixel centres (TF1 ResizeBilinear, inside the 2015 "
              "graph), inputs (x - 128) / 128",
    "slim": "bilinear to 299x299 with half-pixel centres and antialiasing, rounded to integers "
            "(scipy.misc.imresize as in StackGAN-inception-model), inputs x / 127.5 - 1",
}


# --------------------------------------------------------------------------------------------
# The sampler's folder
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    """One generated image and what it was generated from.

    Attributes:
      path: the PNG file.
      filename: the source image's key in `filenames.pickle`.
      source: the source image's row in the split.
      caption: the caption's line in `text_c10/<filename>.txt` (0-based).
      sample: the sample index among the images of that caption.
    """

    path: Path
    filename: str
    source: int
    caption: int
    sample: int


def parse_sample_name(path: str | os.PathLike, root: str | os.PathLike) -> tuple[str, int, int]:
    """Split a sample's path below `root` into (filename stem, caption index, sample index).

    Args:
      path: the PNG file.
      root: the folder scanned; the stem is the path below it, e.g. '001.red_circle/red_circle_0001'.

    Returns:
      (stem with '/' separators, caption index, sample index).

    Raises:
      DataError: the name is not `<filename>_c<caption index>_s<sample index>.png`.
    """
    relative = Path(path).relative_to(root).as_posix()
    match = _SAMPLE_NAME.fullmatch(relative[:-4]) if relative.lower().endswith(".png") else None
    if match is None:
        raise DataError(f"{path}: not a sample name; generated images must be named {NAMING}")
    return match["stem"], int(match["caption"]), int(match["sample"])


def find_samples(folder: str | os.PathLike, filenames: Sequence[str], where: str = "the split") -> list[Sample]:
    """Every `*.png` under `folder` (hidden files and folders skipped), parsed and matched to its source.

    A stem that is not a filename key as a whole is matched by its trailing path components, so
    the sampler may nest its class folders under folders of its own (e.g. `test/001.red_circle/...`).

    Args:
      folder: the sampler's output folder.
      filenames: the split's filename keys.
      where: how error messages name the split's `filenames.pickle`.

    Returns:
      The samples, sorted by path.

    Raises:
      DataError: no folder, no PNG in it, a name that does not parse, or a source not in the split.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: images folder not found")
    rows = {name: i for i, name in enumerate(filenames)}
    paths = sorted(p for p in folder.rglob("*")
                   if p.suffix.lower() == ".png" and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not paths:
        raise DataError(f"{folder}: no PNG images in it; expected generated images named {NAMING}")
    samples = []
    for path in paths:
        stem, caption, sample = parse_sample_name(path, folder)
        parts = stem.split("/")
        key = next((k for k in ("/".join(parts[i:]) for i in range(len(parts))) if k in rows), None)
        if key is None:
            raise DataError(f"{path}: its source image {stem!r} is not in {where}; "
                            "pick the split the images were generated from with --split")
        samples.append(Sample(path, key, rows[key], caption, sample))
    return samples


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3) (grey repeated, alpha dropped).

    Raises:
      DataError: not a readable image.
    """
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as err:  # PIL.UnidentifiedImageError is an OSError
        raise DataError(f"{path}: not a readable image ({type(err).__name__})") from None


def read_samples(samples: Sequence[Sample], progress: bool = False) -> tuple[np.ndarray, int]:
    """The samples at the judge's 64x64, and their common side.

    Returns:
      (uint8 (N, 64, 64, 3), side of the files).

    Raises:
      DataError: an unreadable file, or one not square or not the size of the first.
    """
    out = np.empty((len(samples), INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    side = None
    for k, sample in enumerate(progress_bar(samples, desc="reading", unit="img", disable=not progress)):
        image = read_image(sample.path)
        side = image.shape[0] if side is None else side
        if image.shape[:2] != (side, side):
            raise DataError(f"{sample.path}: is {image.shape[1]}x{image.shape[0]}, but {samples[0].path} "
                            f"is {side}x{side}; generated images must be square and of one size (give one stage's "
                            "folder, e.g. samples_<iteration>/test)")
        out[k] = fit_to_input(image)
    return out, int(side)


class _ImageFiles:
    """The samples' files as a sequence that `misc.evaluation.inception.extract` slices batch by batch.

    Only one batch is in memory at a time (4800 Stage-II samples would take 0.9 GB).
    """

    def __init__(self, samples: Sequence[Sample]):
        self.paths = [s.path for s in samples]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: slice) -> np.ndarray:
        return np.stack([read_image(p) for p in self.paths[index]])


def real_view(images76: np.ndarray, data_dir: str | os.PathLike, split: str, side: int) -> np.ndarray:
    """The split's real images as the GAN sees them, at the generated images' side.

    The centre 64x64 of the 76x76 images for sides up to 64, else the centre 256x256 of the
    304x304 ones (Stage-II's view), bicubic-resized to `side` when that differs.

    Args:
      images76: the split's uint8 (N, 76, 76, 3) images.
      data_dir, split: where the 304x304 images are, if needed.
      side: side of the generated images.

    Returns:
      uint8 (N, side, side, 3).
    """
    crop, stored = _REAL_VIEWS[0] if side <= _REAL_VIEWS[0][0] else _REAL_VIEWS[1]
    if stored == images76.shape[1]:
        images = images76
    else:
        path = Path(data_dir) / split / image_file_name(stored)
        if not path.is_file():
            raise DataError(f"{path}: file not found; it holds the real images to compare "
                            f"{side}x{side} samples with")
        images = np.asarray(load_pickle(path))
        if images.shape != (len(images76), stored, stored, 3) or images.dtype != np.uint8:
            raise DataError(f"{path}: holds {images.dtype} {images.shape}, expected uint8 "
                            f"({len(images76)}, {stored}, {stored}, 3)")
    images = center_crop(images, crop)
    if side == crop:
        return images
    return np.stack([np.asarray(Image.fromarray(image).resize((side, side), Image.BICUBIC)) for image in images])


# --------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------

def attribute_accuracy(predicted: dict[str, Sequence[str]], named: Sequence[dict[str, str]]) -> dict:
    """How often the judge reads the attributes each caption names as named.

    Args:
      predicted: {attribute: the value read from each image (N,)}.
      named: per image, {attribute: value} of the attributes its caption names.

    Returns:
      {attribute: {"correct", "count", "accuracy"}} over the images whose caption names that
      attribute (accuracy None when none does), plus "all_named": the images whose every named
      attribute was read as named, over all N images.
    """
    n = len(named)
    all_right = np.ones(n, dtype=bool)
    out = {}
    for name, values in predicted.items():
        values = np.asarray(values)
        if values.shape != (n,):
            raise ValueError(f"predicted {name} has shape {values.shape}, expected ({n},)")
        mentioned = np.array([name in caption for caption in named], dtype=bool)
        right = np.array([name in caption and values[i] == caption[name] for i, caption in enumerate(named)],
                         dtype=bool)
        all_right &= right | ~mentioned
        count = int(mentioned.sum())
        out[name] = {"correct": int(right.sum()), "count": count,
                     "accuracy": float(right.sum() / count) if count else None}
    out["all_named"] = {"correct": int(all_right.sum()), "count": n,
                        "accuracy": float(all_right.mean()) if n else None}
    return out


def named_attributes(samples: Sequence[Sample], captions: Sequence[Sequence[bytes]], records: Sequence[dict],
                     data_dir: Path, class_ids: np.ndarray) -> list[dict[str, str]]:
    """What each sample's caption names, checked against the source image's attributes.

    Raises:
      DataError: a caption that cannot be read as a shapes caption, or one that contradicts
        `attributes.json`.
    """
    cache: dict[tuple[int, int], dict[str, str]] = {}
    out = []
    for s in samples:
        key = (s.source, s.caption)
        if key not in cache:
            where = caption_path(data_dir, s.filename, int(class_ids[s.source]))
            try:
                named = caption_attributes(captions[s.source][s.caption])
            except ValueError as err:
                raise DataError(f"{where}: line {s.caption + 1}: {err}") from None
            for name, value in named.items():
                if records[s.source][name] != value:
                    raise DataError(f"{where}: line {s.caption + 1} names {name} {value!r}, but "
                                    f"{ATTRIBUTES_FILE} says {records[s.source][name]!r}")
            cache[key] = named
        out.append(cache[key])
    return out


def judge_scores(judge, generated: np.ndarray, real: np.ndarray, sources: np.ndarray,
                 named: Sequence[dict[str, str]], records: Sequence[dict]) -> dict:
    """The judge's scores of the generated images, their ceiling on the real ones, and the judge FD.

    Args:
      judge: a trained `misc.evaluation.judge.ShapesJudge`.
      generated: uint8 (N, 64, 64, 3) samples.
      real: uint8 (M, 64, 64, 3), every real image of the split.
      sources: (N,) row in `real` of each sample's source image.
      named: (N,) attributes each sample's caption names.
      records: (M,) the real images' attributes.

    Returns:
      {"generated", "real": `attribute_accuracy` of the samples and of their source images,
       "real_all_attributes": accuracy on every attribute of every real image,
       "frechet_distance": between the features of `real` and `generated`, "reference_images": M}.
    """
    if len(generated) < 2:
        raise StackGANError("the Frechet distance needs at least 2 generated images")
    gen_features, gen_read = judge_images(judge, generated)
    real_features, real_read = judge_images(judge, real)
    return {
        "generated": attribute_accuracy(gen_read, named),
        "real": attribute_accuracy({k: v[sources] for k, v in real_read.items()}, named),
        "real_all_attributes": {k: float(np.mean(v == np.array([r[k] for r in records])))
                                for k, v in real_read.items()},
        "frechet_distance": frechet_distance(*feature_statistics(gen_features), *feature_statistics(real_features)),
        "reference_images": len(real),
    }


def r_precision_scores(text_encoder, image_encoder, captions: Sequence[Sequence[bytes]], generated: np.ndarray,
                       real: np.ndarray, sources: np.ndarray, caption_ids: np.ndarray,
                       candidates: int = R_PRECISION_CANDIDATES, seed: int = 0) -> dict:
    """R-precision of the samples and, as the ceiling, of their real source images.

    Each image ranks its own caption among `candidates`: the other candidates are the caption with
    the same index of `candidates - 1` other images of the split, drawn by `misc.evaluation.metrics.r_precision`
    from a generator seeded with `seed` (the real images get the very same draws).

    Args:
      text_encoder, image_encoder: the jointly trained encoders (`misc.text.encoder`).
      captions: the split's captions, M lists.
      generated: uint8 (N, 64, 64, 3) samples.
      real: uint8 (M, 64, 64, 3), every real image of the split.
      sources, caption_ids: (N,) each sample's source row and caption index.
      candidates: captions ranked per image, its own included (100 in AttnGAN).
      seed: seeds the draw of the other captions.

    Returns:
      {"generated", "real": hit rates, "candidates", "chance": 1 / candidates}.
    """
    if len(captions) < candidates:
        raise ValueError(f"R-precision needs at least {candidates} images in the split, got {len(captions)}")
    columns = sorted(set(caption_ids.tolist()))
    flat = [caps[c] for c in columns for caps in captions]
    text = embed_sentences(text_encoder, flat).reshape(len(columns), len(captions), -1)

    def score(image_emb: np.ndarray) -> float:
        rng = np.random.default_rng(seed)
        hits = 0.0
        for k, column in enumerate(columns):
            rows = np.flatnonzero(caption_ids == column)
            hits += r_precision(image_emb[rows], text[k], sources[rows], candidates, rng) * len(rows)
        return hits / len(caption_ids)

    return {"generated": score(embed_images(image_encoder, generated)),
            "real": score(embed_images(image_encoder, real)[sources]),
            "candidates": candidates, "chance": 1.0 / candidates}


def _inception_score(logits: np.ndarray, background: bool, rng: np.random.Generator) -> dict:
    """IS as StackGAN-inception-model computes it: shuffled, floor(N / 64) * 64 images kept (all when
    N < 64), 10 splits."""
    probs = softmax_known_classes(logits, background_index=0 if background else None)
    n = len(probs)
    keep = n // IS_BATCH * IS_BATCH if n >= IS_BATCH else n
    if keep < IS_SPLITS:
        return {"skipped": f"needs at least {IS_SPLITS} images, got {n}"}
    mean, std = inception_score(probs[rng.permutation(n)[:keep]], IS_SPLITS)
    return {"mean": mean, "std": std, "images": keep, "dropped": n - keep, "splits": IS_SPLITS}


def inception_scores(model, samples: Sequence[Sample], real: np.ndarray, background: bool = False, seed: int = 0,
                     progress: bool = False) -> dict:
    """Inception Score of the samples and of the real images, and the FID between them.

    Args:
      model: from `misc.evaluation.inception.build_inception`.
      samples: the generated images (read from their files batch by batch).
      real: uint8 (M, side, side, 3) real images at the samples' side (`real_view`).
      background: output 0 is the unused background class of StackGAN's fine-tuned scorers
        (StackGAN-inception-model).
      seed: seeds the shuffles before the images are cut into splits.
      progress: show progress bars.
    """
    gen_pool, gen_logits = extract(model, _ImageFiles(samples), progress=progress)
    real_pool, real_logits = extract(model, real, progress=progress)
    out = {"fid": frechet_distance(*feature_statistics(gen_pool), *feature_statistics(real_pool)),
           "reference_images": len(real)}
    if gen_logits is not None:
        rng = np.random.default_rng([seed, 1])
        out["inception_score"] = {"generated": _inception_score(gen_logits, background, rng),
                                  "real": _inception_score(real_logits, background, rng)}
    return out


# --------------------------------------------------------------------------------------------
# The whole evaluation
# --------------------------------------------------------------------------------------------

def evaluate(images: str | os.PathLike, data_dir: str | os.PathLike = "Data/shapes", split: str = "test",
             judge: str | os.PathLike | None = None, encoder: str | os.PathLike | None = None,
             inception_weights: str | os.PathLike | None = None, inception_variant: str = DEFAULT_VARIANT,
             inception_classes: int | None = None, inception_background: bool = False, seed: int = 0,
             candidates: int = R_PRECISION_CANDIDATES, progress: bool = True) -> dict:
    """Every score of the generated images under `images` (module docstring), as one dict.

    Args:
      images: the sampler's folder.
      data_dir: dataset root the images were generated from.
      split: the split their captions come from.
      judge: trained judge folder (default models/<dataset>/judge); used where the split has
        `attributes.json`.
      encoder: text + image encoder folder (default models/<dataset>/text_encoder).
      inception_weights: local Keras Inception-v3 weights; None skips IS and FID.
      inception_variant: "tf2015" or "slim" (`misc.evaluation.inception`).
      inception_classes: logits of the weights (None: the variant's 1008 or 1000).
      inception_background: drop logit 0 before the softmax (StackGAN's fine-tuned scorers).
      seed: seeds the R-precision draws and the IS shuffles.
      candidates: R-precision list length.
      progress: show progress bars.

    Returns:
      The dict written to eval.json.
    """
    data_dir = Path(data_dir)
    models = Path("models") / data_dir.name
    judge = Path(judge) if judge is not None else models / "judge"
    encoder = Path(encoder) if encoder is not None else models / "text_encoder"
    if inception_variant not in VARIANTS:
        raise StackGANError(f"--inception-variant {inception_variant!r}: choose one of {sorted(VARIANTS)}")
    if candidates < 2:
        raise StackGANError(f"--candidates must be at least 2, got {candidates}")

    data = load_captioned_split(data_dir, split)
    if len(data) < candidates:
        raise StackGANError(f"R-precision ranks among {candidates} captions of different images, but "
                            f"{data_dir / split} has only {len(data)} images; pass --candidates {len(data)} "
                            "or fewer")
    samples = find_samples(images, data.filenames, where=str(data_dir / split / "filenames.pickle"))
    for s in samples:
        if s.caption >= len(data.captions[s.source]):
            raise DataError(f"{s.path}: caption index {s.caption}, but "
                            f"{caption_path(data_dir, s.filename, int(data.class_ids[s.source]))} "
                            f"has {len(data.captions[s.source])} captions")
    # Load every network before the long work, so a bad file fails at once.
    scored_by_judge = (data_dir / split / ATTRIBUTES_FILE).is_file()
    judge_model = load_judge(judge) if scored_by_judge else None
    note = stale_judge_note(judge) if scored_by_judge else None
    if note:
        print(note, file=sys.stderr)
    text_encoder, image_encoder = load_text_encoder(encoder), load_image_encoder(encoder)
    inception = None
    if inception_weights is not None:
        inception = build_inception(inception_weights, inception_variant, inception_classes)

    generated, side = read_samples(samples, progress)
    real = center_crop(data.images, INPUT_SIZE)
    sources = np.array([s.source for s in samples])
    caption_ids = np.array([s.caption for s in samples])
    result = {
        "images": str(images), "data_dir": str(data_dir), "split": split, "seed": seed,
        "samples": len(samples), "captions": len(set(zip(sources.tolist(), caption_ids.tolist()))),
        "source_images": len(set(sources.tolist())), "split_images": len(data), "image_size": side,
        "weights": {
            "judge": str(judge_file_and_folder(judge)[0]) if scored_by_judge else None,
            "judge_training": judge_training(judge) if scored_by_judge else None,
            "text_encoder": str(encoder / TEXT_ENCODER_FILE), "image_encoder": str(encoder / IMAGE_ENCODER_FILE),
            "inception": str(inception_weights) if inception_weights is not None else None,
        },
    }
    if scored_by_judge:
        records = read_attributes(data_dir, split, data.filenames)
        named = named_attributes(samples, data.captions, records, data_dir, data.class_ids)
        result["judge"] = judge_scores(judge_model, generated, real, sources, named, records)
    else:
        result["judge"] = {"skipped": f"no {data_dir / split / ATTRIBUTES_FILE} (only shapes has attributes)"}
    # Samples of one (source image, caption) pair: how different they are (0 for a generator that
    # ignores its noise).
    caption_groups = np.unique(np.stack([sources, caption_ids], 1), axis=0, return_inverse=True)[1].reshape(-1)
    diversity = sample_diversity(generated, caption_groups)
    result["diversity"] = {"generated": None if np.isnan(diversity) else diversity,  # None: 1 sample per caption
                           "measure": "per-pixel std over the samples of a caption, mean over pixels and captions, "
                                      "images in [-1, 1] at 64x64"}
    result["r_precision"] = r_precision_scores(text_encoder, image_encoder, data.captions, generated, real,
                                               sources, caption_ids, candidates, seed)
    if inception is None:
        result["inception"] = {"skipped": "no --inception-weights given (nothing is downloaded; "
                                          "see docs/evaluation.md, 'Evaluation weights')"}
    else:
        result["weights"]["inception_variant"] = inception_variant
        result["weights"]["inception_resize"] = RESIZE[inception_variant]
        result["inception"] = inception_scores(inception, samples, real_view(data.images, data_dir, split, side),
                                               inception_background, seed, progress)
    return result


def _number(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(result: dict) -> str:
    """The scores of `evaluate` as a readable table, with the counts and weights they came from."""
    lines = [f"{result['samples']} generated images ({result['image_size']}x{result['image_size']}) in "
             f"{result['images']}",
             f"from {result['captions']} captions of {result['source_images']} images of split "
             f"'{result['split']}' of {result['data_dir']} ({result['split_images']} images); seed {result['seed']}",
             f"{'':<42}{'generated':>12}{'real (ceiling)':>16}{'images':>8}"]
    judge = result["judge"]
    if "skipped" in judge:
        lines.append(f"{'judge':<42}skipped: {judge['skipped']}")
    else:
        # Each row: the images whose caption names the attribute, and how often the judge reads it so.
        labels = {"shape": "shape", "colour": "shape colour", "background": "background colour", "size": "size",
                  "position": "position", "all_named": "all named attributes"}
        for key, label in labels.items():
            gen, real = judge["generated"][key], judge["real"][key]
            lines.append(f"{'judge, as captioned: ' + label:<42}{_number(gen['accuracy']):>12}"
                         f"{_number(real['accuracy']):>16}{gen['count']:>8}")
        lines.append(f"{'judge features: Frechet distance':<42}{_number(judge['frechet_distance'], 2):>12}"
                     f"{'0 (by def.)':>16}{judge['reference_images']:>8}")
    diversity = result["diversity"]["generated"]
    lines.append(f"{'samples of a caption: per-pixel std':<42}{_number(diversity):>12}{'-':>16}{result['samples']:>8}")
    rp = result["r_precision"]
    label = f"R-precision (1 of {rp['candidates']}, chance {rp['chance']:.2f})"
    lines.append(f"{label:<42}{_number(rp['generated']):>12}{_number(rp['real']):>16}{result['samples']:>8}")
    inception = result["inception"]
    if "skipped" in inception:
        lines.append(f"{'Inception Score and FID':<42}skipped: {inception['skipped']}")
    else:
        scores = inception.get("inception_score")
        if scores is not None:
            cells = []
            for key in ("generated", "real"):
                s = scores[key]
                cells.append("skipped" if "skipped" in s else f"{s['mean']:.2f} +- {s['std']:.2f}")
            used = scores["generated"].get("images", 0)
            lines.append(f"{f'Inception Score ({IS_SPLITS} splits)':<42}{cells[0]:>12}{cells[1]:>16}{used:>8}")
        lines.append(f"{'FID (Inception pool features)':<42}{_number(inception['fid'], 2):>12}"
                     f"{'0 (by def.)':>16}{inception['reference_images']:>8}")
    weights = result["weights"]
    lines.append("weights:")
    lines.append(f"  judge          {weights['judge'] or '-'}")
    lines.append(f"  text encoder   {weights['text_encoder']}, image encoder {weights['image_encoder']}")
    if weights["inception"]:
        lines.append(f"  inception      {weights['inception']} (variant {weights['inception_variant']}: "
                     f"{weights['inception_resize']})")
    else:
        lines.append("  inception      none")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: `python -m misc.evaluation.evaluate --images DIR [options]`; see `--help`."""
    parser = argparse.ArgumentParser(
        prog="python -m misc.evaluation.evaluate",
        description=f"Score a folder of generated images named {NAMING} (the evaluation sampler's output): "
                    "the shapes judge's attribute accuracy and feature Frechet distance, R-precision with our "
                    "text and image encoders, and, given local Inception weights, Inception Score and FID. "
                    "Writes eval.json and prints a table.")
    parser.add_argument("--images", required=True, help="folder of generated PNG images (searched recursively)")
    parser.add_argument("--data_dir", default="Data/shapes", help="dataset root (default: %(default)s)")
    parser.add_argument("--split", default="test", help="split the captions come from (default: %(default)s)")
    parser.add_argument("--judge", help="trained judge folder (default: models/<dataset>/judge)")
    parser.add_argument("--encoder", help="text + image encoder folder (default: models/<dataset>/text_encoder)")
    parser.add_argument("--inception-weights", help="local Keras Inception-v3 weights (.weights.h5, .h5, .keras) "
                                                    "for IS and FID; skipped without")
    parser.add_argument("--inception-variant", default=DEFAULT_VARIANT, choices=sorted(VARIANTS),
                        help="tf2015: the 2015 graph of the standard TF FID; slim: Keras ImageNet weights or "
                             "StackGAN's fine-tuned scorers (default: %(default)s)")
    parser.add_argument("--inception-classes", type=int, help="logits of the weights (default: the variant's)")
    parser.add_argument("--inception-background", action="store_true",
                        help="logit 0 is an unused background class (StackGAN's fine-tuned scorers): drop it")
    parser.add_argument("--seed", type=int, default=0, help="seeds the R-precision draws and IS shuffles "
                                                            "(default: %(default)s)")
    parser.add_argument("--candidates", type=int, default=R_PRECISION_CANDIDATES,
                        help="captions ranked per image for R-precision (default: %(default)s, as AttnGAN)")
    parser.add_argument("--out", help=f"where to write the JSON (default: <images>/{EVAL_FILE})")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    result = evaluate(args.images, args.data_dir, args.split, args.judge, args.encoder, args.inception_weights,
                      args.inception_variant, args.inception_classes, args.inception_background, args.seed,
                      args.candidates, progress=not args.quiet)
    out = Path(args.out) if args.out else Path(args.images) / EVAL_FILE
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(format_table(result))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
