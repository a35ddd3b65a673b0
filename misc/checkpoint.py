"""Checkpoints of a `CondGAN`: Keras weight files plus a small JSON record.

Port of the `tf.train.Saver` use in `CondGANTrainer.train` (original `stageI/trainer.py`): a snapshot of *all*
state (G, D, BN moving statistics, both Adam optimisers with their step counts) every
`TRAIN.SNAPSHOT_INTERVAL` iterations, named after the iteration counter, the last 5 kept.
A snapshot is two files in the run folder:

* `model_<iteration>.weights.h5`: `CondGAN.save_weights` (Keras-native; unlike `tf.train.Checkpoint`
  it also restores layers kept in Python lists, see keras3_stack_notes G6);
* `model_<iteration>.json`: iteration, epoch to resume at, learning rates, stage, dataset.

Both are written atomically, the JSON last, so a snapshot counts only once it is complete.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

from misc.errors import CheckpointError
from misc.utils import atomic_path, atomic_write_text

WEIGHTS_SUFFIX = ".weights.h5"
# The original Saver's default `max_to_keep`.
KEEP_LAST = 5
_NAME = re.compile(r"^model_(\d+)\.json$")


def checkpoint_paths(run_dir: str | os.PathLike, iteration: int) -> tuple[Path, Path]:
    """The weights and JSON paths of the snapshot at `iteration` in `run_dir`."""
    run_dir = Path(run_dir)
    return run_dir / f"model_{iteration}{WEIGHTS_SUFFIX}", run_dir / f"model_{iteration}.json"


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete snapshots in `run_dir` (weights file and JSON both present), oldest first.

    Returns:
      Paths of the `.weights.h5` files, sorted by iteration.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for path in run_dir.iterdir():
        match = _NAME.match(path.name)
        if match:
            weights, _ = checkpoint_paths(run_dir, int(match.group(1)))
            if weights.is_file():
                found.append((int(match.group(1)), weights))
    return [weights for _, weights in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The `.weights.h5` path of the newest complete snapshot in `run_dir`, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """Turn a run folder, a `.weights.h5` file or a `.json` record into a snapshot's weights path.

    Raises:
      CheckpointError: nothing there, or a folder without snapshots.
    """
    path = Path(path)
    if path.is_dir():
        latest = latest_checkpoint(path)
        if latest is None:
            raise CheckpointError(f"{path}: the folder holds no checkpoint (model_<iteration>{WEIGHTS_SUFFIX} "
                                  f"with its .json)")
        return latest
    if path.name.endswith(".json"):
        path = path.with_name(path.name[: -len(".json")] + WEIGHTS_SUFFIX)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    return path


def _json_path(weights_path: Path) -> Path:
    if not weights_path.name.endswith(WEIGHTS_SUFFIX):
        raise CheckpointError(f"{weights_path}: a checkpoint file must end with {WEIGHTS_SUFFIX}")
    return weights_path.with_name(weights_path.name[: -len(WEIGHTS_SUFFIX)] + ".json")


def read_metadata(weights_path: str | os.PathLike) -> dict[str, Any]:
    """Read the JSON record that belongs to a snapshot's weights file.

    Raises:
      CheckpointError: the record is missing or unreadable.
    """
    json_path = _json_path(Path(weights_path))
    try:
        record = json.loads(json_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{json_path}: the checkpoint's record is missing") from None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{json_path}: cannot read the checkpoint's record ({err.__class__.__name__})") from None
    for key in ("iteration", "epoch", "optimizer_iterations"):
        if not isinstance(record, dict) or not isinstance(record.get(key), int):
            raise CheckpointError(f"{json_path}: the checkpoint's record lacks an integer '{key}'")
    return record


def save_checkpoint(gan, run_dir: str | os.PathLike, epoch: int, stage: str, dataset: str,
                    keep: int = KEEP_LAST, iteration: int | None = None,
                    extra: Mapping[str, Any] | None = None) -> Path:
    """Write a snapshot of `gan` and prune old ones.

    Args:
      gan: a built and compiled `misc.gan.CondGAN`.
      run_dir: the run folder.
      epoch: the epoch a resumed run should start at (fit's `initial_epoch`).
      stage: "stageI" or "stageII" (checked on load).
      dataset: `DATASET_NAME`.
      keep: how many snapshots to keep (the newest).
      iteration: the iteration counter that names the snapshot; default `gan.iteration`.
      extra: more entries for the JSON record (e.g. where a converted snapshot came from).

    Returns:
      The path of the weights file.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    iteration = gan.iteration if iteration is None else int(iteration)
    weights_path, json_path = checkpoint_paths(run_dir, iteration)
    with atomic_path(weights_path, suffix=WEIGHTS_SUFFIX) as tmp:
        gan.save_weights(str(tmp))
    record = {
        "iteration": iteration,
        "epoch": int(epoch),
        "optimizer_iterations": int(gan.g_optimizer.iterations.numpy()),
        # With float16 loss scaling each optimiser skips its own non-finite steps.
        "d_optimizer_iterations": int(gan.d_optimizer.iterations.numpy()),
        # 7 significant digits: the float32 value, printed as the config wrote it (2e-4, not 1.99999995e-4).
        "d_learning_rate": float(f"{float(gan.d_optimizer.learning_rate.numpy()):.7g}"),
        "g_learning_rate": float(f"{float(gan.g_optimizer.learning_rate.numpy()):.7g}"),
        "stage": stage,
        "dataset": dataset,
        **(extra or {}),
    }
    atomic_write_text(json_path, json.dumps(record, indent=2) + "\n")
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink()
        _json_path(old).unlink(missing_ok=True)
    return weights_path


def load_checkpoint(gan, path: str | os.PathLike, stage: str | None = None,
                    dataset: str | None = None) -> dict[str, Any]:
    """Restore all of `gan`'s state from a snapshot (port of `saver.restore` on resume in the
    original `stageI/trainer.py`).

    `gan` must be built (`CondGAN.build`) so that the optimisers have their slots; the function
    checks that the optimiser state really was restored, since Keras only warns when it skips it.

    Args:
      gan: the built `CondGAN` to load into.
      path: a run folder (its newest snapshot), a `.weights.h5` file or its `.json` record.
      stage: if given, the record's stage must match.
      dataset: if given, the record's dataset must match.

    Returns:
      The JSON record (iteration, epoch, learning rates, stage, dataset, ...), with `path` added.

    Raises:
      CheckpointError: missing files, a snapshot of another stage or dataset, or weights that do not fit the
        model (other widths or networks), naming the file.
    """
    weights_path = resolve_checkpoint(path)
    record = read_metadata(weights_path)
    if stage is not None and record.get("stage") != stage:
        raise CheckpointError(f"{weights_path}: this is a {record.get('stage')} checkpoint, expected {stage}")
    if dataset is not None and record.get("dataset") != dataset:
        raise CheckpointError(f"{weights_path}: this checkpoint was trained on {record.get('dataset')}, "
                              f"not on {dataset}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            gan.load_weights(str(weights_path))
        except OSError as err:
            raise CheckpointError(f"{weights_path}: not a readable Keras weights file ({err})") from None
        except (ValueError, KeyError):
            # Keras' own message lists objects, not the cause; the usual cause is a config change.
            raise CheckpointError(
                f"{weights_path}: the checkpoint does not match this model (other networks or widths: compare "
                f"{weights_path.parent / 'config.yml'} with this run's GAN, Z_DIM and TEXT settings)") from None
    skipped = [str(w.message) for w in caught if "Skipping variable loading" in str(w.message)]
    if skipped:
        raise CheckpointError(f"{weights_path}: the optimizer state does not match this model ({skipped[0].strip()})")
    expected = {"d": record.get("d_optimizer_iterations", record["optimizer_iterations"]),
                "g": record["optimizer_iterations"]}
    for side, optimizer in (("d", gan.d_optimizer), ("g", gan.g_optimizer)):
        if int(optimizer.iterations.numpy()) != expected[side]:
            raise CheckpointError(f"{weights_path}: the optimizer state was not restored "
                                  f"(step {int(optimizer.iterations.numpy())}, expected {expected[side]})")
    gan.iteration_offset = record["iteration"] - record["optimizer_iterations"]
    record["path"] = str(weights_path)
    return record
