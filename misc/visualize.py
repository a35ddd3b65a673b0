"""The sample grids written at the end of every epoch.

Port of the original `CondGANTrainer.epoch_sum_images` and `visualization` (original `stageI/trainer.py`): n rows (n =
`TRAIN.NUM_COPY`), each showing a real image followed by n images generated from that row's text,
with the generator in inference mode (BN moving averages) and CA sampling on. Stage-I uses z = 0
("expect similar backgrounds"); Stage-II uses random z and shows both of its outputs, the Stage-I
images (`lr_fake_*`) and its own (`hr_fake_*`).

Pixel mapping: generated and real images lie in [-1, 1] and are mapped linearly to [0, 255]. The
original saved with `scipy.misc.imsave`, which min-max stretches each whole grid, so a grid's
contrast depended on its most extreme pixels and could not be compared across epochs; the linear
map shows exactly what the generator produced.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import tensorflow as tf
from PIL import Image

from misc.runs import GridView
from misc.utils import atomic_write_bytes, atomic_write_text


def to_uint8(images) -> np.ndarray:
    """Map images in [-1, 1] linearly to uint8 [0, 255] (values outside are clipped)."""
    images = np.asarray(images, dtype=np.float32)
    return np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def make_grid(real_images, fake_images) -> np.ndarray:
    """Lay out the rows of a sample grid (port of the row assembly in `visualization`).

    Args:
      real_images: (n, s, s, 3) in [-1, 1], one real image per row.
      fake_images: (n, m, s, s, 3) in [-1, 1], the m samples of each row's text.

    Returns:
      uint8 array of shape (n * s, (m + 1) * s, 3).
    """
    real_images = np.asarray(real_images)
    fake_images = np.asarray(fake_images)
    n, m = fake_images.shape[:2]
    if real_images.shape[0] != n or real_images.shape[1:] != fake_images.shape[2:]:
        raise ValueError(f"real images {real_images.shape} do not match the samples {fake_images.shape}")
    rows = np.concatenate([real_images[:, None], fake_images], axis=1)  # (n, m + 1, s, s, 3)
    size = real_images.shape[1]
    grid = rows.transpose(0, 2, 1, 3, 4).reshape(n * size, (m + 1) * size, 3)
    return to_uint8(grid)


def sample_rows(gan, embeddings, num_copy: int, zero_z: bool = True) -> tuple[np.ndarray, ...]:
    """Generate `num_copy` images per embedding with the generators in inference mode.

    Port of the sampling in `epoch_sum_images`: the same text is repeated along a row, the CA noise
    is drawn afresh for every image, z is zero (Stage-I) or random.

    Args:
      gan: a built `misc.gan.CondGAN` (uses its `sample_noise` and `grid_images`).
      embeddings: (n, text_dim) text embeddings, one per row.
      num_copy: samples per row.
      zero_z: use z = 0 as the Stage-I original does.

    Returns:
      One float32 array (n, num_copy, S, S, 3) in [-1, 1] per output of `gan.grid_images` (Stage-I:
      its images; Stage-II: the Stage-I and the Stage-II images).
    """
    embeddings = np.asarray(embeddings, dtype=np.float32)
    n = embeddings.shape[0]
    repeated = tf.constant(np.repeat(embeddings, num_copy, axis=0))
    z, epsilon = gan.sample_noise(n * num_copy)
    if zero_z:
        z = tf.zeros_like(z)
    outputs = []
    for fake in gan.grid_images(repeated, z, epsilon):
        fake = np.asarray(fake)
        outputs.append(fake.reshape((n, num_copy) + fake.shape[1:]))
    return tuple(outputs)


def encode_jpeg(grid: np.ndarray, quality: int = 95) -> bytes:
    """Encode a uint8 (H, W, 3) image as JPEG bytes with PIL."""
    buffer = io.BytesIO()
    Image.fromarray(grid, mode="RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def save_jpeg(grid: np.ndarray, path: str | os.PathLike) -> None:
    """Write a uint8 (H, W, 3) image as a JPEG file, atomically."""
    atomic_write_bytes(path, encode_jpeg(grid))


def save_captions(captions: Sequence[str], path: str | os.PathLike) -> None:
    """Write the caption of each test row, one per line (port of the original's `test.txt`)."""
    atomic_write_text(path, "".join(f"{i}: {caption.strip()}\n" for i, caption in enumerate(captions)))


def write_grid_summary(name: str, grid: np.ndarray, step: int) -> None:
    """Add a grid as an image summary `name` to the default `tf.summary` writer at `step`."""
    tf.summary.image(name, grid[None], step=step, max_outputs=1)


def epoch_grids(gan, rows: dict, run_dir: str | os.PathLike, step: int, num_copy: int,
                zero_z: bool = True, views: Sequence[GridView] = (GridView(),)) -> dict[str, Path]:
    """Write the end-of-epoch grids: port of `epoch_sum_images` plus the image saving of `train`.

    For every split in `rows` (e.g. "train", "test") and every view (one per output of
    `gan.grid_images`), samples the grid, saves `<run_dir>/<view.file_prefix><split>.jpg` and, if a
    default `tf.summary` writer is set, an image summary `<view.tag_prefix><split>` at `step`.
    Captions of a split, if given, go to `<split>.txt`.

    Args:
      gan: a built `misc.gan.CondGAN`.
      rows: split name -> dict with "images" (n, s, s, 3) and "embeddings" (n, text_dim), and
        optionally "captions" (as `misc.datasets.visualization_batch` returns).
      run_dir: the run folder.
      step: the iteration counter (summary step).
      num_copy: samples per row (`TRAIN.NUM_COPY`).
      zero_z: z = 0 (Stage-I) or random.
      views: the stage's grids (`misc.runs.StageInfo.grids`).

    Returns:
      `<view.file_prefix><split>` -> path of the JPEG written.
    """
    written = {}
    for split, batch in rows.items():
        outputs = sample_rows(gan, batch["embeddings"], num_copy, zero_z=zero_z)
        real = np.asarray(batch["images"])
        for view, fake in zip(views, outputs):
            grid = make_grid(real[:, ::view.stride, ::view.stride], fake)
            name = f"{view.file_prefix}{split}"
            path = Path(run_dir) / f"{name}.jpg"
            save_jpeg(grid, path)
            write_grid_summary(f"{view.tag_prefix}{split}", grid, step)
            written[name] = path
        if batch.get("captions"):
            save_captions(batch["captions"], Path(run_dir) / f"{split}.txt")
    return written
