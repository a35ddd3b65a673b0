"""Safe reading and atomic writing of the dataset pickles.

The original read every `*.pickle` of `Data/<ds>/<split>/` with a plain `pickle.load` (see
`TextDataset.get_data`); those files were written by Python 2 and are downloaded from the internet, and
a plain `pickle.load` runs whatever code a pickle names. `load_pickle` therefore uses an unpickler that
only builds the types the dataset files contain (lists, tuples, dicts, strings, numbers, NumPy arrays,
dtypes and scalars) and refuses any other global before anything is called.
"""
from __future__ import annotations

import codecs
import os
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np

from misc.errors import DataError
from misc.utils import atomic_path

# Pickle protocol of the 76/304 image lists this port writes: 4 stores NumPy buffers as raw bytes,
# while protocol 2 routes them through latin-1 text and writes about 1.5 times as many bytes. The other
# dataset pickles keep the original's protocol 2.
IMAGE_PICKLE_PROTOCOL = 4

# A Python 3 pickle of protocol < 3 stores `bytes` (e.g. a NumPy buffer) as a call to
# `_codecs.encode(text, 'latin1')`; these are the only encodings that call may use.
_LATIN1_NAMES = frozenset({"latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1"})


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """Stand-in for `_codecs.encode` that only turns latin-1 text back into bytes."""
    if not isinstance(text, str) or str(encoding).lower() not in _LATIN1_NAMES:
        raise pickle.UnpicklingError(f"_codecs.encode is only allowed with latin1, not {encoding!r}")
    return codecs.latin_1_encode(text, errors)[0]


def _allowed_globals() -> dict[tuple[str, str], Callable[..., Any]]:
    """The (module, name) pairs a dataset pickle may name, mapped to what they resolve to.

    NumPy moved `numpy.core` to `numpy._core` in 2.0; pickles name either spelling depending on the
    NumPy that wrote them (Python 2 era files say `numpy.core`). The functions are taken from NumPy's
    own `__reduce__` results so both spellings resolve without touching the deprecated module.
    """
    reconstruct = np.ndarray(0).__reduce__()[0]
    scalar = np.float32(0).__reduce__()[0]
    # Arrays pickled with protocol 5 (Python's default since 3.8) go through `_frombuffer`.
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]
    allowed: dict[tuple[str, str], Callable[..., Any]] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


class _DatasetUnpickler(pickle.Unpickler):
    """Unpickler whose `find_class` resolves only the globals of `_allowed_globals`."""

    _ALLOWED = _allowed_globals()

    def __init__(self, file, path: Path):
        # latin1 maps every Python 2 `str` byte to one code point, so NumPy buffers survive intact.
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise DataError(
                f"{self._path}: refusing to load this pickle because it names a global that a dataset "
                f"file never needs (global '{module}.{name}' is not allowed)"
            ) from None


def load_pickle(path: str | os.PathLike) -> Any:
    """Load a dataset pickle (also one written by Python 2) without running code from it.

    Args:
      path: the pickle file.

    Returns:
      The unpickled object: containers, strings, numbers and NumPy arrays only.

    Raises:
      DataError: the file is missing, truncated or corrupt, or names a global outside the allow-list.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _DatasetUnpickler(f, path).load()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a pickle file") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, OverflowError, UnicodeDecodeError, MemoryError) as err:
        raise DataError(f"{path}: truncated or corrupt pickle ({type(err).__name__}: {err})") from None


def dump_pickle(obj: Any, path: str | os.PathLike, protocol: int = 2) -> None:
    """Pickle `obj` to `path` atomically (a reader never sees a half-written file).

    Args:
      obj: what to store; keep to the types `load_pickle` accepts or it cannot be read back.
      path: destination file; parent folders are created.
      protocol: pickle protocol; 2 (the default) is what the original's files use and Python 2 reads.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            pickle.dump(obj, f, protocol=protocol)
