"""What every command line of the project shares: quiet TensorFlow import and error handling.

`run_cli(main)` turns a `StackGANError` into one line on stderr and exit status 2, and Ctrl-C into
exit status 130, so a user's mistake never shows a traceback.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Sequence

from misc.errors import StackGANError


@contextlib.contextmanager
def _silence_fd2() -> "contextlib.AbstractContextManager[None]":
    # TensorFlow's C++ runtime prints CUDA/oneDNN notices to file descriptor 2 before any Python
    # logging is set up; TF_CPP_MIN_LOG_LEVEL does not reach all of them (keras3_stack_notes G8).
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def import_tensorflow(verbose: bool = False):
    """Import TensorFlow (and Keras) once, hiding the C++ start-up noise unless `verbose`.

    Returns:
      The `tensorflow` module.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if verbose:
        import tensorflow as tf
        import keras  # noqa: F401
        return tf
    with _silence_fd2():
        import tensorflow as tf
        import keras  # noqa: F401
        tf.config.list_physical_devices()  # triggers the cuInit notice while silenced
    return tf


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> None:
    """Run `main(argv)` and exit with its status; user errors become one line on stderr."""
    try:
        status = main(argv)
    except StackGANError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(status or 0)
