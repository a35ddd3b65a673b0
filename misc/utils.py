"""Small file-system helpers shared by every module that writes files.

Port of the original `misc/utils.py` `mkdir_p`; the image helpers of that file live with the code
that uses them (`misc/preprocess_birds.py`, `misc/visualize.py`).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


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
