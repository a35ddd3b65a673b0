"""Resize Oxford-102 flowers to 304 and 76 pixels and pickle them.

Port of the original `misc/preprocess_flowers.py`: the same loop as `misc/data/preprocess_birds.py`
without cropping (each whole image is squashed to 304x304), reading `<data_dir>/<filename>.jpg`
(filenames look like `jpg/image_00001`).

Usage:
  python misc/data/preprocess_flowers.py --data_dir Data/flowers
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from misc.cli import run_cli
from misc.data.preprocess_birds import build_parser, preprocess_dataset, report


def preprocess_flowers(data_dir: str | os.PathLike, progress: bool = True) -> list[Path]:
    """Port of the original `convert_flowers_dataset_pickle`: pickle every image at 304 and 76.

    Args:
      data_dir: the flowers root, holding `jpg/`, `train/` and `test/`.
      progress: show progress bars.

    Returns:
      The four pickles written.
    """
    data_dir = Path(data_dir)
    return preprocess_dataset(data_dir, lambda name, _: (data_dir / f"{name}.jpg", None), progress)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point: `python misc/data/preprocess_flowers.py --data_dir Data/flowers`."""
    args = build_parser(__doc__.split("\n\n")[0], "Data/flowers").parse_args(argv)
    report(preprocess_flowers(args.data_dir, progress=not args.no_progress))
    return 0


if __name__ == "__main__":
    run_cli(main)
