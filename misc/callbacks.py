"""The per-iteration and per-epoch work of the original loop, as Keras callbacks.

Port of the bookkeeping inside `CondGANTrainer.train` (original `stageI/trainer.py`): learning-rate halving
at epoch start, TensorBoard scalars per iteration, a snapshot every `TRAIN.SNAPSHOT_INTERVAL`
iterations, the sample grids and the epoch log (with its NaN check) at epoch end. Each concern is
one callback so that Stage-II reuses them as they are.

The training loop (`misc.training.run_loop`) calls them once per iteration with that iteration's
losses (`on_train_batch_end(batch, logs)`, batch = the position in the epoch) and once per epoch
with the epoch means (`on_epoch_end`). They expect `self.model` to be a `misc.gan.CondGAN`.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import keras
import tensorflow as tf

from misc import checkpoint, visualize
from misc.errors import StackGANError
from misc.gan import LOSS_NAMES
from misc.runs import GridView
from misc.schedule import learning_rate


class _IterationCounter(keras.callbacks.Callback):
    """Keeps `self.iteration`, the original's global `counter`, without reading the device each step."""

    def on_train_begin(self, logs=None):
        self.iteration = self.model.iteration
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.iteration += 1


class LearningRateSchedule(keras.callbacks.Callback):
    """Set both optimisers' learning rates at the start of every epoch from `misc.schedule`.

    Port of the original's halving of `discriminator_lr` / `generator_lr` at epoch start. Since the
    rate is a pure function of the epoch, a resumed run gets the right rate (the original restarted
    at the base rate).

    Args:
      d_base_lr: `TRAIN.DISCRIMINATOR_LR`.
      g_base_lr: `TRAIN.GENERATOR_LR`.
      decay_epoch: `TRAIN.LR_DECAY_EPOCH`.
      pretrained_epoch: 0 for Stage-I, `TRAIN.PRETRAINED_EPOCH` for Stage-II.
    """

    def __init__(self, d_base_lr: float, g_base_lr: float, decay_epoch: int, pretrained_epoch: int = 0):
        super().__init__()
        self.d_base_lr = d_base_lr
        self.g_base_lr = g_base_lr
        self.decay_epoch = decay_epoch
        self.pretrained_epoch = pretrained_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.model.d_optimizer.learning_rate = learning_rate(epoch, self.d_base_lr, self.decay_epoch,
                                                             self.pretrained_epoch)
        self.model.g_optimizer.learning_rate = learning_rate(epoch, self.g_base_lr, self.decay_epoch,
                                                             self.pretrained_epoch)


class ScalarSummaries(_IterationCounter):
    """Write the losses and learning rates to TensorBoard (port of the original's scalar summaries).

    Tags are the original's names: `d_loss`, `d_loss_real`, `d_loss_wrong`, `d_loss_fake`,
    `g_loss`, `kl_loss`, `d_learning_rate`, `g_learning_rate`, each the value of that single
    iteration (`logs`, not an epoch mean), at step = iteration counter. With float16 loss scaling,
    also `d_loss_scale`, `g_loss_scale` and `skipped_steps` (when the loop puts them in `logs`).

    Args:
      writer: a `tf.summary` writer (the run folder's).
      interval: write every `interval` iterations (`TRAIN.SUMMARY_INTERVAL`; the original: 1).
      prefix: tag prefix (Stage-II uses "hr_").
    """

    def __init__(self, writer, interval: int = 1, prefix: str = ""):
        super().__init__()
        self.writer = writer
        self.interval = interval
        self.prefix = prefix
        self._write_fns = {}

    def _write_fn(self, names: tuple[str, ...]):
        """One traced function per set of tags: a single call writes them all.

        Written op by op, the eight to eleven scalars of an iteration cost about 1.9 ms on a CPU
        (3 % of a Stage-I step at the shapes widths in bfloat16); traced, one call costs 0.6 ms.
        """
        if names not in self._write_fns:
            tags = [self.prefix + name for name in names]

            @tf.function(input_signature=[tf.TensorSpec([len(tags)], tf.float32), tf.TensorSpec([], tf.int64)])
            def write(values, step):
                with self.writer.as_default(step=step):
                    for i, tag in enumerate(tags):
                        tf.summary.scalar(tag, values[i])

            self._write_fns[names] = write
        return self._write_fns[names]

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        if self.iteration % self.interval:
            return
        values = {name: float(value) for name, value in (logs or {}).items()}
        values["d_learning_rate"] = float(self.model.d_optimizer.learning_rate.numpy())
        values["g_learning_rate"] = float(self.model.g_optimizer.learning_rate.numpy())
        self._write_fn(tuple(values))(tf.constant(list(values.values()), tf.float32),
                                      tf.constant(self.iteration, tf.int64))

    def on_epoch_end(self, epoch, logs=None):
        self.writer.flush()

    def on_train_end(self, logs=None):
        self.writer.flush()


class SampleGrids(_IterationCounter):
    """Write the sample grids at the end of every epoch (port of `epoch_sum_images`).

    Args:
      run_dir: the run folder (`train.jpg`, `test.jpg`, `test.txt` go there).
      writer: the `tf.summary` writer for the image summaries `train` and `test`.
      rows_for_epoch: epoch -> {"train": batch, "test": batch}, each batch as
        `misc.datasets.visualization_batch` returns (fresh rows every epoch, as the original drew
        them with `next_batch`).
      num_copy: samples per row (`TRAIN.NUM_COPY`).
      zero_z: z = 0 (Stage-I) or random (Stage-II).
      views: the grids per split, one per output of the model's `grid_images`
        (`misc.runs.StageInfo.grids`).
    """

    def __init__(self, run_dir: str | os.PathLike, writer, rows_for_epoch: Callable[[int], dict],
                 num_copy: int, zero_z: bool = True, views: Sequence[GridView] = (GridView(),)):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.writer = writer
        self.rows_for_epoch = rows_for_epoch
        self.num_copy = num_copy
        self.zero_z = zero_z
        self.views = tuple(views)

    def on_epoch_end(self, epoch, logs=None):
        with self.writer.as_default():
            visualize.epoch_grids(self.model, self.rows_for_epoch(epoch), self.run_dir, step=self.iteration,
                                  num_copy=self.num_copy, zero_z=self.zero_z, views=self.views)
        self.writer.flush()


class Snapshots(_IterationCounter):
    """Save a checkpoint every `interval` iterations and at the end of training.

    Port of `saver.save(sess, "<log_dir>/model_<counter>.ckpt")` when `counter % SNAPSHOT_INTERVAL
    == 0` (original `stageI/trainer.py`); the end-of-training snapshot is a port addition so that no
    finished run loses its last iterations. The record's `epoch` is the epoch a resumed run starts at:
    the current one, or the next one if the snapshot falls on the last iteration of an epoch.

    Args:
      run_dir: the run folder.
      interval: `TRAIN.SNAPSHOT_INTERVAL`.
      stage: "stageI" or "stageII".
      dataset: `DATASET_NAME`.
      keep: snapshots kept (the original Saver's 5).
      on_save: called with the weights path after each save (e.g. to print it).
      record: returns more entries for each snapshot's JSON record (e.g. the skipped-step count).
    """

    def __init__(self, run_dir: str | os.PathLike, interval: int, stage: str, dataset: str,
                 keep: int = checkpoint.KEEP_LAST, on_save: Callable[[Path], None] | None = None,
                 record: Callable[[], dict] | None = None):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.interval = interval
        self.stage = stage
        self.dataset = dataset
        self.keep = keep
        self.on_save = on_save
        self.record = record

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.last_saved = self.iteration
        self.next_epoch = None

    def _save(self, epoch: int) -> None:
        path = checkpoint.save_checkpoint(self.model, self.run_dir, epoch=epoch, stage=self.stage,
                                          dataset=self.dataset, keep=self.keep, iteration=self.iteration,
                                          extra=self.record() if self.record else None)
        self.last_saved = self.iteration
        if self.on_save is not None:
            self.on_save(path)

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        if self.iteration % self.interval == 0:
            last_of_epoch = batch + 1 == self.params.get("steps")
            self._save(self.epoch + 1 if last_of_epoch else self.epoch)

    def on_epoch_end(self, epoch, logs=None):
        self.next_epoch = epoch + 1

    def on_train_end(self, logs=None):
        if self.iteration != self.last_saved and self.next_epoch is not None:
            self._save(self.next_epoch)


class EpochLog(keras.callbacks.Callback):
    """Print the epoch means of `d_loss` and `g_loss`, and stop on NaN (port of the epoch log).

    The original printed "Epoch %d | d_loss: %f; g_loss: %f" and raised when a loss was NaN; here
    a NaN becomes a `StackGANError` (one line from the command line, no traceback) before any
    later snapshot could store the diverged weights.

    Args:
      max_epoch: `TRAIN.MAX_EPOCH`, for "epoch k/max".
      print_fn: where the line goes.
      run_dir: named in the NaN message (where the last good snapshot is).
    """

    def __init__(self, max_epoch: int, print_fn: Callable[[str], None] = print,
                 run_dir: str | os.PathLike | None = None):
        super().__init__()
        self.max_epoch = max_epoch
        self.print_fn = print_fn
        self.run_dir = run_dir

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        values = {name: float(logs[name]) for name in LOSS_NAMES if name in logs}
        self.print_fn(f"epoch {epoch + 1}/{self.max_epoch} ({time.monotonic() - self.start:.1f} s): "
                      f"d_loss {values.get('d_loss', float('nan')):.4f}, g_loss {values.get('g_loss', float('nan')):.4f}")
        bad = [name for name, value in values.items() if not math.isfinite(value)]
        if bad:
            where = f" (snapshots so far are in {self.run_dir})" if self.run_dir else ""
            raise StackGANError(f"training diverged: {bad[0]} is {values[bad[0]]} at epoch {epoch + 1}{where}")
