"""Small helpers shared across the project: atomic file writes and progress bars.

Port of the original `misc/utils.py` `mkdir_p`; the image helpers of that file live with the code
that uses them (`misc/data/preprocess_birds.py`, `misc/datasets.py`, `misc/visualize.py`).
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import IO, Iterator

from tqdm import tqdm

# Leftovers of an interrupted `atomic_directory` next to its folder: `.<name>.tmp-<pid>-*`, `.<name>.old-<pid>-*`.
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?P<pid>\d+)-")
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_dead(folder: Path, pattern: re.Pattern, name: str | None = None) -> None:
    """Delete the folders in `folder` whose name matches `pattern` (and its group "name", if given)
    and whose process (group "pid") is gone."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        match = pattern.match(entry.name)
        if (match and (name is None or match["name"] == name) and entry.is_dir() and not entry.is_symlink()
                and not _pid_alive(int(match["pid"]))):
            shutil.rmtree(entry, ignore_errors=True)


def _remove_leftovers(path: Path) -> None:
    """Delete the temporary folders of interrupted exports to `path` (their process is gone)."""
    _remove_dead(path.parent, _LEFTOVER, path.name)


@contextlib.contextmanager
def scratch_directory(prefix: str) -> Iterator[Path]:
    """Yield a new folder `<tmp>/<prefix><pid>-*`, removed when the block ends.

    A process killed by SIGKILL cannot remove its folder, so each call first deletes the folders
    with this prefix whose process is gone.
    """
    root = Path(tempfile.gettempdir())
    _remove_dead(root, re.compile(rf"^{re.escape(prefix)}(?P<pid>\d+)-"))
    scratch = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=root))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder next to `path`; it replaces `path` only if the block succeeds.

    The folder version of `misc.utils.atomic_path` (a non-empty folder cannot be replaced in one
    rename). `path` is never half-written: it is the old folder, then, for the microseconds between
    two renames, absent, then the complete new one. If the block fails or the process is killed,
    `path` keeps the old folder (killed between the two renames: the old folder waits in
    `.<name>.old-<pid>-*/`); temporary folders are removed then, or by the next writer of `path`.

    Args:
      path: the final folder (replaced if it exists; check it with `check_replaceable` first).

    Yields:
      The temporary folder to fill.
    """
    path = Path(path)
    mkdir_p(path.parent)
    _remove_leftovers(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private (0700); the export is an ordinary folder
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-{os.getpid()}-", dir=path.parent))
            try:
                os.rename(path, old / path.name)
                try:
                    os.rename(tmp, path)
                except BaseException:
                    os.rename(old / path.name, path)
                    raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


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
