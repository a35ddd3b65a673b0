"""Captioned sheets: a caption, then rows of generated samples, one sheet per text.

Port of the super-images of the original's evaluation mode and demo (original `stageI/trainer.py`,
`demo/demo.py`): a black band with
the caption on top, then one row per stage, each row a label cell ("Stage-I", "Stage-II"), an
optional real image, a gap and up to 8 samples; more samples continue in a further block after a
larger gap. Cells are as large as the final stage's images (Stage-I samples are up-sampled
bilinearly to 256 px next to Stage-II ones, as in the original).

Differences: pixels are mapped linearly from [-1, 1] (the original min-max stretched each up-sampled
image); the caption is wrapped to the sheet's width with Pillow's default font instead of being split
once after 60 characters in FreeMono; the label has its own column, so the real image (evaluation
mode) or nothing (demo) comes next to it.
"""
from __future__ import annotations

import io
import os
import textwrap
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from misc.utils import atomic_write_bytes

# Samples per block of a sheet, as the original's 8-wide super-images.
SAMPLES_PER_BLOCK = 8
WHITE = (255, 255, 255)


def upsample(images: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 images (N, s, s, 3) to (N, size, size, 3) bilinearly (the original's sheet up-sampling)."""
    images = np.asarray(images, dtype=np.uint8)
    if images.shape[1] == size:
        return images
    return np.stack([np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR)) for image in images])


def _font(cell: int) -> ImageFont.ImageFont:
    # The original wrote 50 pt on 256 px cells; the same ratio, at least 10 px.
    return ImageFont.load_default(size=max(10, cell * 3 // 16))


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    """Split `text` into lines no wider than `width` pixels (at word boundaries when possible)."""
    words = " ".join(text.split())
    if not words:
        return [""]
    average = max(draw.textlength("abcdefghij", font=font) / 10, 1)
    chars = max(int(width / average), 1)
    while True:
        lines = textwrap.wrap(words, chars, break_long_words=True)
        if chars == 1 or all(draw.textlength(line, font=font) <= width for line in lines):
            return lines
        chars -= 1


def caption_sheet(caption: str, rows: Sequence[tuple[str, np.ndarray]], real: np.ndarray | None = None,
                  per_block: int = SAMPLES_PER_BLOCK) -> np.ndarray:
    """Lay out one text's samples under its caption.

    Args:
      caption: the text (drawn wrapped in the top band).
      rows: `(label, samples)` per stage, samples uint8 (k, s, s, 3), the same k and s in every row.
      real: the real image uint8 (s, s, 3) shown after each label (evaluation mode), or None.
      per_block: samples per block; more samples continue in further blocks.

    Returns:
      The sheet, uint8 (H, W, 3).
    """
    k, cell = rows[0][1].shape[0], rows[0][1].shape[1]
    if any(samples.shape != rows[0][1].shape for _, samples in rows):
        raise ValueError(f"every row needs samples of shape {rows[0][1].shape}")
    gap = max(cell // 12, 2)  # the original's 20 px at 256 px
    block_gap = cell // 4  # the original's 64 px between blocks
    columns = min(k, per_block)
    lead = cell * (2 if real is not None else 1)
    width = lead + gap + columns * cell
    font = _font(cell)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = _wrap(probe, caption, font, width - 2 * gap)
    line_height = int(font.size * 1.25)
    band = max(cell // 2, len(lines) * line_height + 2 * gap)
    blocks = -(-k // per_block)
    block_height = len(rows) * cell
    height = band + blocks * block_height + (blocks - 1) * block_gap
    sheet = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(sheet)
    for n, line in enumerate(lines):
        draw.text((gap, gap + n * line_height), line, fill=WHITE, font=font)
    for b in range(blocks):
        top = band + b * (block_height + block_gap)
        for r, (label, samples) in enumerate(rows):
            y = top + r * cell
            draw.text((gap, y + gap), label, fill=WHITE, font=font)
            if real is not None:
                sheet.paste(Image.fromarray(np.asarray(real, np.uint8)), (cell, y))
            for j, image in enumerate(samples[b * per_block:(b + 1) * per_block]):
                sheet.paste(Image.fromarray(image), (lead + gap + j * cell, y))
    return np.asarray(sheet)


def strip_sheet(header: Sequence[str], rows: np.ndarray) -> np.ndarray:
    """A grid of images under a few lines of text (the interpolation strips of the demo).

    Args:
      header: text lines for the top band.
      rows: uint8 (n_rows, n_columns, s, s, 3).

    Returns:
      uint8 (H, W, 3).
    """
    n_rows, n_columns, cell = rows.shape[0], rows.shape[1], rows.shape[2]
    gap = max(cell // 12, 2)
    width = n_columns * cell
    font = _font(cell)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = [wrapped for line in header for wrapped in _wrap(probe, line, font, width - 2 * gap)]
    line_height = int(font.size * 1.25)
    band = len(lines) * line_height + 2 * gap
    sheet = Image.new("RGB", (width, band + n_rows * cell))
    draw = ImageDraw.Draw(sheet)
    for n, line in enumerate(lines):
        draw.text((gap, gap + n * line_height), line, fill=WHITE, font=font)
    grid = rows.transpose(0, 2, 1, 3, 4).reshape(n_rows * cell, n_columns * cell, 3)
    sheet.paste(Image.fromarray(np.ascontiguousarray(grid)), (0, band))
    return np.asarray(sheet)


def encode(image: np.ndarray, fmt: str = "PNG") -> bytes:
    """Encode a uint8 (H, W, 3) image as PNG (lossless) or JPEG (quality 95) bytes."""
    buffer = io.BytesIO()
    options = {"quality": 95} if fmt == "JPEG" else {}
    Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def save_image(image: np.ndarray, path: str | os.PathLike) -> None:
    """Write a uint8 (H, W, 3) image atomically, as PNG or JPEG after the file's ending."""
    fmt = "JPEG" if str(path).lower().endswith((".jpg", ".jpeg")) else "PNG"
    atomic_write_bytes(path, encode(image, fmt))
