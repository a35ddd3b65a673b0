"""Tiny stand-ins for the real datasets, for tests.

`make_tiny_birds` writes a few dozen small images in the layout of the original CUB-200-2011 release
plus the StackGAN pickles (as Python 2 wrote them) and, by default, runs the preprocessing, so
`misc.datasets.load_split(path, 'train', 76)` works on it. `python2_pickle_bytes` builds Python-2
protocol-2 pickles opcode by opcode, since no Python 2 is at hand to write real ones.
`make_synthetic_split` builds a `SplitData` in memory for sampler tests. `run_script`, `sets` and
`event_tags` run a command line in a subprocess and read its TensorBoard events.
"""
from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from misc.datasets import SplitData
from misc.data.preprocess_birds import preprocess_birds

# A few real CUB class folder names; more classes get made-up names in the same pattern.
CUB_CLASS_NAMES = ("Black_footed_Albatross", "Laysan_Albatross", "Sooty_Albatross",
                   "Groove_billed_Ani", "Crested_Auklet", "Least_Auklet", "Parakeet_Auklet")
CAPTIONS_PER_IMAGE = 10


# The one tiny config of the tests: every network at tiny widths, the 16-d embeddings of
# `make_tiny_birds`, batch 4. Merge it into a config (`cfg.updated(TINY)`) or pass `tiny_sets()`.
TINY = {"GAN.GF_DIM": 8, "GAN.DF_DIM": 4, "GAN.EMBEDDING_DIM": 8, "GAN.R_NUM": 1, "TEXT.DIMENSION": 16,
        "Z_DIM": 10, "TRAIN.BATCH_SIZE": 4}


def tiny_sets(*pairs: str) -> list:
    """`--set KEY=VALUE` arguments for `TINY`, then for each of `pairs`."""
    return sets(*(f"{key}={value}" for key, value in TINY.items()), *pairs)


def run_script(script: str | Path, args, cwd: str | Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `python <script> <args>` on the CPU as a user would, capturing its output."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def sets(*pairs: str) -> list:
    """`--set KEY=VALUE` arguments for each pair."""
    return [arg for pair in pairs for arg in ("--set", pair)]


def event_tags(run_dir: Path) -> dict:
    """tag -> the steps it was written at, over the run folder's TensorBoard event files."""
    import tensorflow as tf

    tags = {}
    for path in sorted(Path(run_dir).glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    return tags


def _py2_str(data: bytes) -> bytes:
    """A Python 2 `str`: SHORT_BINSTRING below 256 bytes, else BINSTRING."""
    if len(data) < 256:
        return b"U" + bytes([len(data)]) + data
    return b"T" + struct.pack("<i", len(data)) + data


def _py2_int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    if -2 ** 31 <= value < 2 ** 31:
        return b"J" + struct.pack("<i", value)
    # A Python 2 `long`: LONG1 with a little-endian two's-complement body.
    body = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(body)]) + body


def _py2_global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _py2_tuple(items: list[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _py2_ndarray(array: np.ndarray) -> bytes:
    """An array as NumPy under Python 2 pickled it: `_reconstruct` + a state holding a `str` buffer."""
    array = np.ascontiguousarray(array)
    dtype = array.dtype
    dtype_code = _py2_global("numpy", "dtype") + _py2_tuple(
        [_py2_str(dtype.str[1:].encode()), _py2_int(0), _py2_int(1)]) + b"R"
    dtype_state = _py2_tuple([_py2_int(3), _py2_str(dtype.str[:1].encode()), b"N", b"N", b"N",
                              _py2_int(-1), _py2_int(-1), _py2_int(0)])
    shape = _py2_tuple([_py2_int(d) for d in array.shape])
    return (_py2_global("numpy.core.multiarray", "_reconstruct") + _py2_global("numpy", "ndarray")
            + _py2_tuple([_py2_int(0)]) + _py2_str(b"b") + b"\x87R"
            + _py2_tuple([_py2_int(1), shape, dtype_code + dtype_state + b"b", b"\x89",
                          _py2_str(array.tobytes())])
            + b"b")


def _py2_body(obj: Any) -> bytes:
    if obj is None:
        return b"N"
    if isinstance(obj, bool):
        return b"\x88" if obj else b"\x89"
    if isinstance(obj, (int, np.integer)):
        return _py2_int(int(obj))
    if isinstance(obj, float):
        return b"G" + struct.pack(">d", obj)
    if isinstance(obj, str):
        return _py2_str(obj.encode("latin1"))
    if isinstance(obj, np.ndarray):
        return _py2_ndarray(obj)
    if isinstance(obj, tuple):
        return _py2_tuple([_py2_body(item) for item in obj])
    if isinstance(obj, list):
        return b"]" + (b"(" + b"".join(_py2_body(item) for item in obj) + b"e" if obj else b"")
    if isinstance(obj, dict):
        items = b"".join(_py2_body(k) + _py2_body(v) for k, v in obj.items())
        return b"}" + (b"(" + items + b"u" if obj else b"")
    raise TypeError(f"python2_pickle_bytes cannot encode {type(obj).__name__}")


def python2_pickle_bytes(obj: Any) -> bytes:
    """Pickle `obj` exactly as Python 2 `pickle.dump(obj, f, 2)` would lay it out.

    `str` becomes a Python 2 byte string (SHORT_BINSTRING/BINSTRING, latin-1), NumPy arrays go
    through `numpy.core.multiarray._reconstruct` with their buffer in such a string, ints beyond
    32 bits become Python 2 longs. Supports None, bool, int, float, str, list, tuple, dict, ndarray.

    Returns:
      The pickle bytes.
    """
    return b"\x80\x02" + _py2_body(obj) + b"."


def _class_name(k: int) -> str:
    """CUB folder name of class number k (1-based), e.g. `002.Laysan_Albatross`."""
    name = CUB_CLASS_NAMES[k - 1] if k <= len(CUB_CLASS_NAMES) else f"Tiny_Bird_{k}"
    return f"{k:03d}.{name}"


def caption_text(filename: str, caption_id: int) -> str:
    """The caption line `caption_id` that `make_tiny_birds` writes for `filename`."""
    return f"caption {caption_id} of {filename.split('/')[-1].lower()} a small bird with short wings"


def make_tiny_birds(root: str | Path, n_train_classes: int = 3, n_test_classes: int = 2,
                    per_class: int = 6, emb_dim: int = 16, seed: int = 0,
                    preprocess: bool = True) -> Path:
    """Write a tiny birds dataset in the original layout under `root/birds` and return that path.

    Layout: `CUB_200_2011/images/<NNN.Name>/<Name_0001_123>.jpg` (random JPEGs of 60-120 px, every
    third one grey), `CUB_200_2011/images.txt`, `CUB_200_2011/bounding_boxes.txt`,
    `text_c10/<NNN.Name>/<file>.txt` (10 captions, see `caption_text`), and for `train` (the first
    classes) and `test` (the rest) `filenames.pickle`, `class_info.pickle` (CUB class numbers) and
    `char-CNN-RNN-embeddings.pickle` (N, 10, emb_dim) float32, written as Python 2 protocol-2 pickles
    like the downloaded files; with `preprocess` also `304images.pickle` and `76images.pickle`.

    Returns:
      The dataset root `root/birds`.
    """
    rng = np.random.default_rng(seed)
    data_dir = Path(root) / "birds"
    cub = data_dir / "CUB_200_2011"
    images_txt, bbox_txt = [], []
    splits: dict[str, tuple[list[str], list[int]]] = {"train": ([], []), "test": ([], [])}
    for k in range(1, n_train_classes + n_test_classes + 1):
        class_dir = _class_name(k)
        (cub / "images" / class_dir).mkdir(parents=True, exist_ok=True)
        (data_dir / "text_c10" / class_dir).mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            stem = class_dir.split(".", 1)[1]
            filename = f"{class_dir}/{stem}_{j + 1:04d}_{int(rng.integers(100, 99999))}"
            height, width = (int(v) for v in rng.integers(60, 121, size=2))
            pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
            image = Image.fromarray(pixels)
            if len(images_txt) % 3 == 2:
                image = image.convert("L")
            image.save(cub / "images" / f"{filename}.jpg", quality=90)
            box_w = int(rng.integers(width // 3, width * 4 // 5))
            box_h = int(rng.integers(height // 3, height * 4 // 5))
            box_x, box_y = int(rng.integers(0, width - box_w)), int(rng.integers(0, height - box_h))
            image_id = len(images_txt) + 1
            images_txt.append(f"{image_id} {filename}.jpg\n")
            bbox_txt.append(f"{image_id} {box_x:.1f} {box_y:.1f} {box_w:.1f} {box_h:.1f}\n")
            captions = "".join(caption_text(filename, c) + "\n" for c in range(CAPTIONS_PER_IMAGE))
            (data_dir / "text_c10" / f"{filename}.txt").write_text(captions, encoding="utf-8")
            names, classes = splits["train" if k <= n_train_classes else "test"]
            names.append(filename)
            classes.append(k)
    (cub / "images.txt").write_text("".join(images_txt), encoding="utf-8")
    (cub / "bounding_boxes.txt").write_text("".join(bbox_txt), encoding="utf-8")
    for split, (names, classes) in splits.items():
        split_dir = data_dir / split
        split_dir.mkdir(parents=True, exist_ok=True)
        embeddings = rng.standard_normal((len(names), CAPTIONS_PER_IMAGE, emb_dim)).astype(np.float32)
        (split_dir / "filenames.pickle").write_bytes(python2_pickle_bytes(names))
        (split_dir / "class_info.pickle").write_bytes(python2_pickle_bytes(classes))
        (split_dir / "char-CNN-RNN-embeddings.pickle").write_bytes(python2_pickle_bytes(embeddings))
    if preprocess:
        preprocess_birds(data_dir, progress=False)
    return data_dir


def make_synthetic_split(n: int = 300, class_size: int = 10, image_size: int = 12,
                         captions: int = 10, emb_dim: int = 8, seed: int = 0,
                         data_dir: str | Path = "unused") -> SplitData:
    """An in-memory `SplitData` of `n` random images, stored class-ordered like the real pickles.

    Image i belongs to class `i // class_size + 1`. Embeddings are random float32.
    """
    rng = np.random.default_rng(seed)
    return SplitData(
        data_dir=Path(data_dir), split="train",
        images=rng.integers(0, 256, size=(n, image_size, image_size, 3), dtype=np.uint8),
        embeddings=rng.standard_normal((n, captions, emb_dim)).astype(np.float32),
        filenames=[f"{i // class_size + 1:03d}.Synthetic/Synthetic_{i:04d}" for i in range(n)],
        class_ids=np.arange(n, dtype=np.int64) // class_size + 1)




def make_tiny_models(root: str | Path, text_dim: int = 16, seed: int = 0) -> dict[str, Path]:
    """Write untrained tiny snapshots and a tiny text encoder, in the layouts training writes.

    Under `root`: `ckt_logs/birds/stageI_2000_01_01_00_00_00/` and `.../stageII_2000_01_01_00_00_01/`,
    each with `config.yml` and a `model_<iteration>` snapshot (`misc.checkpoint.save_checkpoint`),
    and `models/birds/text_encoder/char_cnn_rnn.keras` (a `CharCnnRnn` of width 8 whose output size is
    `text_dim`). The weights are initial ones: enough for loading, shapes and file layouts, in seconds.

    Returns:
      Paths: `output_dir` (the `ckt_logs` root), `stage1`, `stage2` (run folders), `models_dir`, `encoder`.
    """
    import keras

    from misc.text.char_cnn_rnn import CharCnnRnn
    from misc.checkpoint import save_checkpoint
    from misc.config import load_config, save_config
    from misc.text.encoder import TEXT_ENCODER_FILE
    from stageI.trainer import build_gan as build_stage1_gan
    from stageI.trainer import build_networks as build_stage1_networks
    from stageII.trainer import build_gan as build_stage2_gan

    root = Path(root)
    output_dir = root / "ckt_logs"
    keras.utils.set_random_seed(seed)
    cfg1 = load_config(None, {**TINY, "DATASET_NAME": "birds", "TEXT.DIMENSION": text_dim, "CONFIG_NAME": "stageI",
                              "OUTPUT_DIR": str(output_dir)})
    stage1 = output_dir / "birds" / "stageI_2000_01_01_00_00_00"
    save_config(cfg1, stage1 / "config.yml")
    save_checkpoint(build_stage1_gan(cfg1), stage1, epoch=1, stage="stageI", dataset="birds", iteration=4)
    cfg2 = cfg1.updated({"CONFIG_NAME": "stageII"})
    stage2 = output_dir / "birds" / "stageII_2000_01_01_00_00_01"
    save_config(cfg2, stage2 / "config.yml")
    stage1_generator, _ = build_stage1_networks(cfg2)
    save_checkpoint(build_stage2_gan(cfg2, stage1_generator), stage2, epoch=2, stage="stageII", dataset="birds",
                    iteration=8)
    models_dir = root / "models"
    encoder = models_dir / "birds" / "text_encoder"
    encoder.mkdir(parents=True)
    text_encoder = CharCnnRnn(conv_channels=(8, 8, 8), rnn_dim=8, emb_dim=text_dim)
    text_encoder.build()
    text_encoder.save(encoder / TEXT_ENCODER_FILE)
    return {"output_dir": output_dir, "stage1": stage1, "stage2": stage2, "models_dir": models_dir,
            "encoder": encoder}
