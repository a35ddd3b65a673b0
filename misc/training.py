"""The training frame both stages share: strategy, data feeding, callbacks and the epoch loop.

Port of the original `CondGANTrainer.train` of `stageI/trainer.py`, which `stageII/trainer.py`
repeated: here it is written once. What differs between the stages comes from the
stage's `misc.runs.StageInfo` (image sizes, the stage it starts from, its grids) and its `restore`
function (how its GAN is built and restored, `stageI/trainer.py`, `stageII/trainer.py`). The graph
of a step is `misc/gan.py`, the per-iteration and per-epoch work `misc/callbacks.py`, the snapshots
`misc/checkpoint.py`.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from misc import callbacks as cb
from misc.config import Config, save_config
from misc.datasets import BatchFeeder, SplitData
from misc.distribute import check_batch_size, get_strategy, use_sync_bn
from misc.gan import adam
from misc.runs import PreparedRun, StageInfo, Start, new_run_dir, prepare_run

# How a stage builds its GAN for a run: `restore(cfg, start, sync_bn)` returns the compiled and
# built `misc.gan.CondGAN`, with the state of `start.snapshot` loaded (see `stageI/trainer.py`).
Restore = Callable[[Config, Start, bool], keras.Model]


def compile_gan(gan, cfg: Config, prefix: str = ""):
    """Attach a stage's two optimisers to its GAN and build it (port of `init_opt` / `prepare_trainer`).

    Adam(beta1 0.5) for D and G at the config's base learning rates (the schedule callback sets the
    epoch's rate), named `<prefix>d_optimizer` and `<prefix>g_optimizer` (Stage-II: "hr_", as the
    original's `hr_` scopes); then every variable is created (`CondGAN.build`).

    Returns:
      `gan`, compiled and built.
    """
    gan.compile(d_optimizer=adam(cfg.TRAIN.DISCRIMINATOR_LR, name=f"{prefix}d_optimizer"),
                g_optimizer=adam(cfg.TRAIN.GENERATOR_LR, name=f"{prefix}g_optimizer"))
    gan.build((None, cfg.TEXT.DIMENSION))
    return gan


def gan_options(cfg: Config) -> dict:
    """The `misc.gan.CondGAN` arguments a config sets (Z_DIM, GAN.EMBEDDING_DIM, TRAIN.COEFF.KL, ...)."""
    return {"z_dim": cfg.Z_DIM, "ef_dim": cfg.GAN.EMBEDDING_DIM, "kl_coeff": cfg.TRAIN.COEFF.KL,
            "b_wrong": cfg.TRAIN.B_WRONG, "cond_augmentation": cfg.TRAIN.COND_AUGMENTATION}


def count_parameters(generator: keras.Model, discriminator: keras.Model) -> dict[str, int]:
    """Trainable parameter counts of a stage's networks: its CA, its generator without CA, its discriminator."""
    def count(variables) -> int:
        return int(sum(np.prod(v.shape) for v in variables))

    ca = count(generator.ca.trainable_variables)
    return {"ca": ca, "generator": count(generator.trainable_variables) - ca,
            "discriminator": count(discriminator.trainable_variables)}


def distribution_and_feeder(cfg: Config, train_data: SplitData, image_size: int, iteration: int,
                            gpus: list[int] | None):
    """The strategy, whether batch norm is synchronised, and the batch feeder of a run.

    Seeds everything with `SEED + iteration` (before the networks are built, so their initial
    weights follow the seed): a resumed run draws new batches and noise instead of replaying those
    of the run's first iterations.

    Returns:
      `(strategy, sync_bn, feeder)`; the caller closes the feeder.
    """
    strategy = get_strategy(expected_gpus=None if gpus is None else len(gpus))
    check_batch_size(cfg.TRAIN.BATCH_SIZE, strategy)
    seed = cfg.SEED + iteration
    keras.utils.set_random_seed(seed)
    feeder = BatchFeeder(train_data, cfg.TRAIN.BATCH_SIZE, image_size, cfg.TRAIN.NUM_EMBEDDING, seed)
    return strategy, use_sync_bn(cfg.TRAIN.SYNC_BN, strategy), feeder


def learning_rate_schedule(cfg: Config, stage: StageInfo) -> cb.LearningRateSchedule:
    """The stage's learning-rate callback: halvings every `LR_DECAY_EPOCH` epochs, for a stage that
    starts from a previous one only above `TRAIN.PRETRAINED_EPOCH` (the original `stageII/trainer.py`)."""
    return cb.LearningRateSchedule(cfg.TRAIN.DISCRIMINATOR_LR, cfg.TRAIN.GENERATOR_LR, cfg.TRAIN.LR_DECAY_EPOCH,
                                   pretrained_epoch=cfg.TRAIN.PRETRAINED_EPOCH if stage.previous else 0)


def fit_and_report(gan, feeder: BatchFeeder, cfg: Config, stage: StageInfo, run_dir: Path, *, strategy,
                   prepared: PreparedRun, start_line: str | None, print_fn: Callable[[str], None] = print,
                   verbose: int = 2) -> None:
    """The epoch loop: config, run messages, TensorBoard writer, callbacks, `fit`.

    Port of the original's training loop and its summaries, snapshots and per-epoch images [7.2,
    7.3, 8].

    Args:
      gan: the built (and, if resuming, restored) GAN; `feeder`: its `BatchFeeder`, closed here.
      cfg: the resolved config, written to `<run_dir>/config.yml`.
      stage: the stage trained.
      run_dir: the run folder.
      strategy: the distribution strategy (for the replica count).
      prepared: the checked start, steps per epoch, initial epoch and grid rows.
      start_line: where the run starts from, printed after the run folder (None: nothing).
      print_fn: where the run's messages go.
      verbose: Keras progress output (1: progress bar, 2: one line per epoch).
    """
    save_config(cfg, run_dir / "config.yml")
    grids = ", ".join(f"{view.file_prefix}{split}.jpg" for split in ("train", "test") for view in stage.grids)
    print_fn(f"run folder: {run_dir}")
    if start_line:
        print_fn(start_line)
    print_fn(f"replicas: {strategy.num_replicas_in_sync}; {prepared.steps_per_epoch} iterations per epoch, "
             f"epochs {prepared.initial_epoch + 1}..{cfg.TRAIN.MAX_EPOCH}")
    print_fn(f"checkpoints: {run_dir}/model_<iteration>.weights.h5 every {cfg.TRAIN.SNAPSHOT_INTERVAL} "
             "iterations and at the end")
    print_fn(f"samples: {grids} in {run_dir} after every epoch (captions in test.txt)")
    print_fn(f"TensorBoard logs: {run_dir} (tensorboard --logdir {run_dir})")

    writer = tf.summary.create_file_writer(str(run_dir))
    callbacks = [
        learning_rate_schedule(cfg, stage),
        cb.ScalarSummaries(writer, interval=cfg.TRAIN.SUMMARY_INTERVAL, prefix=stage.summary_prefix),
        cb.Snapshots(run_dir, cfg.TRAIN.SNAPSHOT_INTERVAL, stage=stage.name, dataset=cfg.DATASET_NAME,
                     on_save=lambda path: print_fn(f"saved {path}")),
        cb.SampleGrids(run_dir, writer, prepared.rows_for_epoch, cfg.TRAIN.NUM_COPY, zero_z=stage.zero_z,
                       views=stage.grids),
        cb.EpochLog(cfg.TRAIN.MAX_EPOCH, print_fn=print_fn, run_dir=run_dir),
    ]
    try:
        gan.fit(feeder.dataset(), steps_per_epoch=prepared.steps_per_epoch, epochs=cfg.TRAIN.MAX_EPOCH,
                initial_epoch=prepared.initial_epoch, callbacks=callbacks, verbose=verbose, shuffle=False)
    finally:
        feeder.close()
        writer.close()
        sys.stdout.flush()


def describe_start(stage: StageInfo, start: Start, initial_epoch: int) -> str | None:
    """The line that says where a run starts (None for a run from scratch)."""
    if start.snapshot is None:
        return None
    if start.stage != stage.name:
        line = (f"{stage.previous.title} generator from {start.snapshot} (iteration {start.iteration}); "
                f"{stage.title} starts at epoch {initial_epoch + 1}")
    else:
        line = f"starting from {start.snapshot}: iteration {start.iteration}, continuing with epoch {initial_epoch + 1}"
    if "converted_from" in start.record:
        line += (f"; the optimiser state starts fresh (converted from the original release's "
                 f"{start.record['converted_from']}, whose Adam state is not converted)")
    return line


def train(cfg: Config, stage: StageInfo, restore: Restore, resume: str | None = None, verbose: int = 2,
          print_fn: Callable[[str], None] = print, gpus: list[int] | None = None,
          prepared: PreparedRun | None = None) -> Path:
    """Train a stage as configured (port of `CondGANTrainer.train`).

    Args:
      cfg: the resolved config.
      stage: the stage to train.
      restore: the stage's builder (`stageI.trainer.restore`, `stageII.trainer.restore`).
      resume: a run folder or snapshot to continue, in its own run folder; otherwise a new run
        folder is made (see `misc.runs.plan_start` for where it starts).
      verbose: Keras progress output (1: progress bar, 2: one line per epoch).
      print_fn: where the run's messages go.
      gpus: the GPU indices `--gpu` selected (checked against what TensorFlow sees); None: all.
      prepared: the result of `misc.runs.prepare_run` for these arguments, if the caller already
        checked them (the command line does, before TensorFlow starts).

    Returns:
      The run folder.

    Raises:
      ConfigError, DataError, CheckpointError: user errors (one sentence each); StackGANError when a
        loss becomes NaN.
    """
    prepared = prepared or prepare_run(cfg, stage, resume)
    start = prepared.start
    strategy, sync_bn, feeder = distribution_and_feeder(cfg, prepared.train_data, stage.image_size,
                                                        start.iteration, gpus)
    try:
        with strategy.scope():
            gan = restore(cfg, start, sync_bn)
    except BaseException:
        feeder.close()
        raise
    run_dir = start.snapshot.parent if start.resume else new_run_dir(cfg, stage.name)
    fit_and_report(gan, feeder, cfg, stage, run_dir, strategy=strategy, prepared=prepared,
                   start_line=describe_start(stage, start, prepared.initial_epoch), print_fn=print_fn,
                   verbose=verbose)
    return run_dir
