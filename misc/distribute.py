"""Device selection and the `tf.distribute` strategy of both stages (a port addition).

The original ran on one GPU (`GPU_ID`). Here a run uses every visible GPU with
`tf.distribute.MirroredStrategy` (data parallel: each replica takes an equal slice of the global
batch, gradients are summed over replicas), or the default strategy on a single device. Models and
optimisers must be created inside `strategy.scope()`.

TensorFlow is imported inside the functions: `select_gpus` has to run before TensorFlow starts.
"""
from __future__ import annotations

import os
import sys
from typing import Sequence

from misc.errors import ConfigError


def parse_gpu_list(spec: str) -> list[int]:
    """Parse a `--gpu` value such as "0,2" into GPU indices.

    Args:
      spec: comma-separated non-negative integers; "" or "-1" means no GPU (CPU only).

    Returns:
      The indices, in the given order, without duplicates.

    Raises:
      ConfigError: the value is not a comma-separated list of non-negative integers.
    """
    spec = spec.strip()
    if spec in ("", "-1"):
        return []
    indices: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part.isdigit():
            raise ConfigError(f"--gpu {spec}: expected comma-separated GPU indices such as 0,1 (or -1 for CPU only)")
        if int(part) not in indices:
            indices.append(int(part))
    return indices


def select_gpus(indices: Sequence[int] | None) -> None:
    """Make only the GPUs `indices` visible to TensorFlow (None: leave all visible).

    Must run before TensorFlow initialises its devices: before it is imported, this sets
    `CUDA_VISIBLE_DEVICES`; afterwards it falls back to `tf.config.set_visible_devices`.

    Raises:
      ConfigError: an index names a GPU that does not exist.
    """
    if indices is None:
        return
    if "tensorflow" not in sys.modules:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in indices)
        return
    import tensorflow as tf  # already started (see the module docstring)

    gpus = tf.config.list_physical_devices("GPU")
    missing = [i for i in indices if i >= len(gpus)]
    if missing:
        raise ConfigError(f"--gpu: GPU {missing[0]} does not exist ({len(gpus)} visible)")
    tf.config.set_visible_devices([gpus[i] for i in indices], "GPU")


def get_strategy(devices: Sequence[str] | None = None, expected_gpus: int | None = None):
    """The strategy to build and train under.

    Args:
      devices: explicit device names for `MirroredStrategy` (tests use two logical CPUs); None
        picks every visible GPU.
      expected_gpus: how many GPUs `--gpu` asked for; None accepts whatever is visible.

    Returns:
      `tf.distribute.MirroredStrategy` over `devices`, or over all GPUs when more than one is
      visible; otherwise the default (single-device) strategy.

    Raises:
      ConfigError: fewer GPUs are visible than `--gpu` asked for.
    """
    import tensorflow as tf  # this module is imported before TensorFlow starts (see the module docstring)

    if devices is not None:
        return tf.distribute.MirroredStrategy(list(devices))
    gpus = tf.config.list_logical_devices("GPU")
    if expected_gpus is not None and len(gpus) != expected_gpus:
        raise ConfigError(f"--gpu: {expected_gpus} GPU(s) requested but TensorFlow sees {len(gpus)}")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([gpu.name for gpu in gpus])
    return tf.distribute.get_strategy()


def use_sync_bn(requested: bool, strategy) -> bool:
    """Whether the networks should synchronise batch-norm statistics (`TRAIN.SYNC_BN`).

    Only meaningful with several replicas; on one device plain BN computes the same statistics
    with Keras' faster fused path, so it is used there.
    """
    return bool(requested) and strategy.num_replicas_in_sync > 1


def check_batch_size(batch_size: int, strategy, source: str = "TRAIN.BATCH_SIZE") -> int:
    """Check that the global batch splits evenly over the replicas.

    Args:
      batch_size: the global batch (`TRAIN.BATCH_SIZE`).
      strategy: the strategy in use.
      source: what to name in the error message.

    Returns:
      The per-replica batch size.

    Raises:
      ConfigError: the batch does not divide by the number of replicas.
    """
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ConfigError(f"{source}: the batch size {batch_size} does not divide by the {replicas} replicas "
                          f"(GPUs) in use; choose a multiple of {replicas} or fewer GPUs with --gpu")
    return batch_size // replicas
