"""Checkpoints written by TensorFlow 1's `tf.train.Saver`: find one and read its variables.

Two converters read them: `misc.tools.convert_original` (the original StackGAN release) and
`misc.evaluation.convert_inception --slim` (TF-slim Inception-v3 scorers). A user may name a V1
single-file checkpoint, a V2 prefix (`model.ckpt-5000`, beside `model.ckpt-5000.index` and
`.data-*-of-*` files) or one of the V2 files, or a folder holding one. `tf.train.load_checkpoint`
reads all of them once `locate` has turned the name into the prefix or file it expects.

A V1 file and a V2 `.index` file are both LevelDB tables, which end in the same 8 magic bytes;
that is how a checkpoint is told from any other file without asking TensorFlow (whose errors for
a foreign file are long and vary).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from misc.cli import import_tensorflow
from misc.errors import CheckpointError

tf = import_tensorflow()

# The last 8 bytes of a LevelDB table: a V1 checkpoint file or a V2 `.index` file.
TABLE_MAGIC = bytes.fromhex("57fb808b247547db")
_V2_PART = re.compile(r"\.(index|meta|data-\d+-of-\d+)$")
_SHOWN = 3  # checkpoint names an error message lists


def is_table(path: Path) -> bool:
    """Whether `path` is a file ending like a LevelDB table."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() < len(TABLE_MAGIC):
                return False
            f.seek(-len(TABLE_MAGIC), os.SEEK_END)
            return f.read() == TABLE_MAGIC
    except OSError:
        return False


def checkpoints_in(folder: Path) -> list[str]:
    """Names of the checkpoints in `folder`: V2 prefixes (of `*.index` files) and V1 checkpoint files."""
    names = set()
    for child in folder.iterdir():
        if child.name.endswith(".index") and child.is_file():
            names.add(child.name[:-len(".index")])
        elif child.is_file() and not _V2_PART.search(child.name) and is_table(child):
            names.add(child.name)
    return sorted(names)


def looks_like_checkpoint(path: str | os.PathLike) -> bool:
    """Whether `path` names a checkpoint or a folder (for hints when another kind of file was expected)."""
    path = Path(path)
    return (path.is_dir() or Path(f"{path}.index").is_file() or path.name.endswith(".index")
            or (path.is_file() and is_table(path)))


def locate(path: str | os.PathLike, kind: str = "checkpoint") -> str:
    """The prefix or file that `tf.train.load_checkpoint` reads, for what a user may name.

    Args:
      path: a V2 prefix or one of its `.index` / `.data-*` / `.meta` files, a V1 checkpoint file, or
        a folder holding one checkpoint (or several and a `checkpoint` state file naming one of them;
        only the last part of the name it holds counts, as it is often another machine's path).
      kind: what the caller expects, for the message when nothing is there ("TF-slim checkpoint").

    Raises:
      CheckpointError: nothing there, no checkpoint in the folder, several and none named, or a file
        that is not a checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        found = checkpoints_in(path)
        if len(found) > 1:
            try:
                state = tf.train.get_checkpoint_state(str(path))
            except Exception:  # a malformed state file leaves the choice to the user
                state = None
            named = Path(state.model_checkpoint_path).name if state else None
            if named not in found:
                raise CheckpointError(f"{path}: holds {len(found)} checkpoints ({', '.join(found[:_SHOWN])}, ...); "
                                      "name one of them")
            found = [named]
        if not found:
            raise CheckpointError(f"{path}: holds no TensorFlow checkpoint (no .index file, no V1 checkpoint file)")
        return str(path / found[0])
    prefix = _V2_PART.sub("", str(path))
    index = Path(f"{prefix}.index")
    table = index if index.is_file() else Path(prefix)
    if not table.is_file():
        raise CheckpointError(f"{path}: {kind} not found (a V1 checkpoint file, a V2 prefix such as model.ckpt-5000 "
                              "beside its .index and .data files, or a folder holding one)")
    if not is_table(table):
        raise CheckpointError(f"{table}: not a TensorFlow checkpoint (no checkpoint table)")
    return prefix


def _reason(err: Exception) -> str:
    return type(err).__name__


def open_checkpoint(prefix: str, shown: str | os.PathLike | None = None):
    """Open the checkpoint at `prefix` (from `locate`).

    Returns:
      `(reader, shapes, dtypes)`: a `tf.train.load_checkpoint` reader and, per variable name, its
      shape as a tuple and its `tf.DType`.

    Raises:
      CheckpointError: TensorFlow cannot read the table (a file cut short, say); `shown` names it.
    """
    shown = prefix if shown is None else shown
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = {name: tuple(shape) for name, shape in reader.get_variable_to_shape_map().items()}
        dtypes = reader.get_variable_to_dtype_map()
    except (tf.errors.OpError, ValueError) as err:
        raise CheckpointError(f"{shown}: not a readable TensorFlow checkpoint ({_reason(err)})") from None
    return reader, shapes, dtypes


def read_tensor(reader, name: str, shown: str | os.PathLike) -> np.ndarray:
    """The value of variable `name`.

    Raises:
      CheckpointError: its data cannot be read (a V2 prefix without its data file, a data file cut
        short); `shown` names the checkpoint.
    """
    try:
        return reader.get_tensor(name)
    except (tf.errors.OpError, ValueError) as err:
        raise CheckpointError(f"{shown}: cannot read {name} ({_reason(err)}); is the checkpoint complete?") from None
