"""Small helpers shared across the project: atomic file writes and progress bars.

Port of the original `misc/utils.py` `mkdir_p`; the image helpers of that file live with the code
that uses them (`misc/data/preprocess_birds.py`, `misc/datasets.py`, `misc/visualize.py`).
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import IO, Iterator

from tqdm import tqdm

# Where output is not a terminal (CI, `make eval > log`), a progress bar prints one plain line at
# most this often instead of a carriage-return update per step.
LOG_INTERVAL_S = 10.0


def mkdir_p(path: str | os.PathLike) -> Path:
    """Create `path` and its parents if missing; return it as a `Path`."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to `path`; move it onto `path` only if the block succeeds.

    A reader therefore sees either the old file or the complete new one, never a half-written
    file, even if the process is killed mid-write.

    Args:
      path: the final destination.
      suffix: ending the temporary name must have (Keras insists on `.weights.h5`, for example).

    Yields:
      The temporary path to write to (it does not exist yet).
    """
    path = Path(path)
    mkdir_p(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically (see `atomic_path`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


class _Lines:
    """A stream for tqdm that turns its carriage-return redraws into whole lines (for logs)."""

    def __init__(self, stream: IO[str]):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress(iterable=None, **kwargs) -> tqdm:
    """A tqdm progress bar on stderr: redrawn in place on a terminal, else a line every `LOG_INTERVAL_S`.

    Args:
      iterable: what to iterate over (or None with `total=`).
      **kwargs: as `tqdm` (`desc`, `total`, `unit`, `disable`, `leave`, ...).
    """
    stream = kwargs.pop("file", sys.stderr)
    if not stream.isatty():
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
        kwargs["maxinterval"] = max(kwargs.get("maxinterval", LOG_INTERVAL_S), kwargs["mininterval"])
        kwargs.setdefault("ascii", True)
        kwargs.setdefault("ncols", 100)
        stream = _Lines(stream)
    return tqdm(iterable, file=stream, **kwargs)
