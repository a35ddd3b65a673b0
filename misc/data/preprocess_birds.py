"""Crop CUB-200-2011 birds around their bounding boxes and pickle them at 304 and 76 pixels.

Port of the original `misc/preprocess_birds.py` (with the image helpers of its `misc/utils.py`).
For every file of `<data_dir>/train/filenames.pickle`, then `<data_dir>/test/filenames.pickle`, it
reads `CUB_200_2011/images/<filename>.jpg`, crops a square 1.5 times the larger bounding-box side
around the box centre, resizes it bicubically to 304x304 and that to 76x76, and writes the lists
to `<split>/304images.pickle` and `<split>/76images.pickle`.

The shared loop and the image helpers here are also used by `misc/data/preprocess_flowers.py`.

Usage:
  python misc/data/preprocess_birds.py --data_dir Data/birds
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from misc.cli import run_cli
from misc.datasets import LOAD_SIZE, LR_SIZE, image_file_name, read_filenames
from misc.errors import DataError
from misc.pickle_io import IMAGE_PICKLE_PROTOCOL, dump_pickle
from misc.utils import progress as progress_bar

SPLITS = ("train", "test")
# Half-side of the square bird crop as a fraction of the larger bounding-box side (original's 0.75),
# i.e. a crop 1.5 times the larger side.
BBOX_HALF_SIDE = 0.75

BBox = tuple[int, int, int, int]
# Maps a name read from a filenames.pickle (and that pickle's path, for messages) to
# (image path, bounding box or None).
Locator = Callable[[str, Path], tuple[Path, "BBox | None"]]


def bytescale(data: np.ndarray) -> np.ndarray:
    """Stretch a float image linearly from its own min..max onto 0..255 and round to uint8.

    The original resized float images with `scipy.misc.imresize`, which converts its input to a PIL
    image with `scipy.misc.bytescale` first: a per-image contrast stretch over all channels together,
    rounded half up. SciPy removed both functions, so this reproduces that step to keep the pickled
    pixels the same. uint8 input is returned unchanged, as SciPy did.

    Args:
      data: an image array of any numeric dtype.

    Returns:
      The uint8 image.
    """
    if data.dtype == np.uint8:
        return data
    low, high = float(data.min()), float(data.max())
    span = high - low if high > low else 1.0
    scaled = (data.astype(np.float64) - low) * (255.0 / span)
    return (scaled.clip(0, 255) + 0.5).astype(np.uint8)


def imresize_bicubic(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an (H, W, 3) image to (size, size, 3) uint8, bicubic.

    Port of the original's `scipy.misc.imresize(img, [size, size], 'bicubic')`: byte-scale float
    input (see `bytescale`), then PIL's bicubic resize.
    """
    resized = Image.fromarray(bytescale(image)).resize(
        (size, size), resample=Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.uint8)


def read_image(path: Path) -> np.ndarray:
    """Read an image as float64 (H, W, 3): grey replicated to three channels, alpha dropped.

    Port of the original `misc/utils.py` `imread` + `colorize`. Palette images are expanded as
    `scipy.misc.imread` did; other PIL modes (e.g. CMYK) are converted to RGB, where the original
    would have kept the first three raw channels.

    Raises:
      DataError: the file is missing or is not a readable image.
    """
    try:
        with Image.open(path) as im:
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode == "1":
                im = im.convert("L")
            elif im.mode not in ("L", "RGB", "RGBA"):
                im = im.convert("RGB")
            img = np.asarray(im, dtype=np.float64)
    except FileNotFoundError:
        raise DataError(f"{path}: image not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: cannot be read as an image ({err})") from None
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return img[:, :, :3]


def crop_box(image_shape: Sequence[int], bbox: BBox) -> tuple[int, int, int, int]:
    """Rows y1:y2 and columns x1:x2 of the square crop around a bounding box, clipped to the image.

    Port of the original `custom_crop`: integer centre of the box, half-side int(0.75 * max(w, h)).

    Args:
      image_shape: (H, W, ...) of the image.
      bbox: (x_left, y_top, width, height) in pixels.

    Returns:
      (y1, y2, x1, x2).
    """
    x, y, w, h = bbox
    center_x = int((2 * x + w) / 2)
    center_y = int((2 * y + h) / 2)
    half = int(max(w, h) * BBOX_HALF_SIDE)
    y1, y2 = max(0, center_y - half), min(image_shape[0], center_y + half)
    x1, x2 = max(0, center_x - half), min(image_shape[1], center_x + half)
    return y1, y2, x1, x2


def load_image_pair(path: Path, bbox: "BBox | None") -> tuple[np.ndarray, np.ndarray]:
    """Port of the original per-image step: read, crop (if a box is given), resize to 304 and 76.

    Returns:
      (uint8 (304, 304, 3), uint8 (76, 76, 3)).
    """
    img = read_image(path)
    if bbox is not None:
        y1, y2, x1, x2 = crop_box(img.shape, bbox)
        img = img[y1:y2, x1:x2, :]
    hr_image = imresize_bicubic(img, LOAD_SIZE)
    return hr_image, imresize_bicubic(hr_image, LR_SIZE)


def _read_table(path: Path, columns: int, what: str) -> list[list[str]]:
    """Rows of a whitespace-separated CUB text file, each with exactly `columns` fields."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; download CUB_200_2011 ({what}) into {path.parent.parent}")
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != columns:
                raise DataError(f"{path}: line {number} has {len(fields)} fields, expected {columns}")
            rows.append(fields)
    return rows


def load_bbox(data_dir: Path) -> dict[str, BBox]:
    """Bounding box of every CUB image, keyed by its path under `images/` without `.jpg`.

    Port of the original `load_bbox`: row i of `bounding_boxes.txt` belongs to row i of `images.txt`,
    and the values (whole numbers written as floats) are cast to int.

    Raises:
      DataError: a file is missing or malformed, or the two files differ in length.
    """
    cub = Path(data_dir) / "CUB_200_2011"
    names = _read_table(cub / "images.txt", 2, "images.txt")
    boxes = _read_table(cub / "bounding_boxes.txt", 5, "bounding_boxes.txt")
    if len(names) != len(boxes):
        raise DataError(f"{cub / 'bounding_boxes.txt'}: has {len(boxes)} rows but "
                        f"{cub / 'images.txt'} has {len(names)}")
    result = {}
    for number, ((_, name), box) in enumerate(zip(names, boxes), 1):
        try:
            bbox = tuple(int(float(v)) for v in box[1:])
        except ValueError:
            raise DataError(f"{cub / 'bounding_boxes.txt'}: line {number} is not numeric") from None
        result[os.path.splitext(name)[0]] = bbox
    return result


def load_filenames(data_dir: Path, split: str) -> list[str]:
    """The filenames of `<data_dir>/<split>/filenames.pickle`, checked to be a list of strings."""
    path = Path(data_dir) / split / "filenames.pickle"
    if not path.is_file():
        raise DataError(f"{path}: file not found; download the StackGAN char-CNN-RNN embeddings archive "
                        f"(it holds train/ and test/) into {data_dir}")
    return read_filenames(path)


def preprocess_dataset(data_dir: str | os.PathLike, locate: Locator, progress: bool = True) -> list[Path]:
    """Write `<split>/304images.pickle` and `<split>/76images.pickle` for the train then test split.

    Port of the original `convert_birds_dataset_pickle` / `save_data_list` loop, shared by both datasets.
    Every image is located before any is processed, so a missing file fails fast.

    Args:
      data_dir: dataset root holding `train/` and `test/`.
      locate: maps (name, the filenames.pickle it came from) to (image path, bounding box or None).
      progress: show a tqdm progress bar per split.

    Returns:
      The pickles written, in order.

    Raises:
      DataError: a filenames.pickle or an image is missing or unreadable.
    """
    data_dir = Path(data_dir)
    jobs = {split: [locate(name, data_dir / split / "filenames.pickle")
                    for name in load_filenames(data_dir, split)] for split in SPLITS}
    for split, items in jobs.items():
        for path, _ in items:
            if not path.is_file():
                raise DataError(f"{path}: image listed in {data_dir / split / 'filenames.pickle'} not found")
    written = []
    for split, items in jobs.items():
        hr_images, lr_images = [], []
        for path, bbox in progress_bar(items, desc=f"{split} images", unit="img", disable=not progress):
            hr_image, lr_image = load_image_pair(path, bbox)
            hr_images.append(hr_image)
            lr_images.append(lr_image)
        for size, images in ((LOAD_SIZE, hr_images), (LR_SIZE, lr_images)):
            out = data_dir / split / image_file_name(size)
            dump_pickle(images, out, protocol=IMAGE_PICKLE_PROTOCOL)
            written.append(out)
    return written


def preprocess_birds(data_dir: str | os.PathLike, progress: bool = True) -> list[Path]:
    """Port of the original `preprocess_birds.py` main block: crop by bbox, pickle at 304 and 76.

    Args:
      data_dir: the birds root, holding `CUB_200_2011/`, `train/` and `test/`.
      progress: show progress bars.

    Returns:
      The four pickles written.
    """
    data_dir = Path(data_dir)
    bboxes = load_bbox(data_dir)
    images_txt = data_dir / "CUB_200_2011" / "images.txt"

    def locate(name: str, listed_in: Path) -> tuple[Path, BBox]:
        if name not in bboxes:
            raise DataError(f"{images_txt}: does not list '{name}.jpg', which {listed_in} names")
        return data_dir / "CUB_200_2011" / "images" / f"{name}.jpg", bboxes[name]

    return preprocess_dataset(data_dir, locate, progress)


def build_parser(description: str, default_data_dir: str) -> argparse.ArgumentParser:
    """The command line shared by the two preprocessing scripts."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=default_data_dir,
                        help=f"dataset root holding train/ and test/ (default: {default_data_dir})")
    parser.add_argument("--no_progress", action="store_true", help="do not show progress bars")
    return parser


def report(written: list[Path]) -> None:
    """Print where the pickles went."""
    for path in written:
        print(f"wrote {path}")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point: `python misc/data/preprocess_birds.py --data_dir Data/birds`."""
    args = build_parser(__doc__.split("\n\n")[0], "Data/birds").parse_args(argv)
    report(preprocess_birds(args.data_dir, progress=not args.no_progress))
    return 0


if __name__ == "__main__":
    run_cli(main)
