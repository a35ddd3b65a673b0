"""Stage-I training: the wiring of data, networks, optimisers and callbacks around `misc.gan.CondGAN`.

Port of the original `stageI/trainer.py` `CondGANTrainer.train` [7.2]: the graph lives in
`misc/gan.py`, the per-iteration and per-epoch bookkeeping in `misc/callbacks.py`, the snapshots in
`misc/checkpoint.py`; this module only connects them for Stage-I (64 px crops of the 76 px images,
z = 0 in the sample grids, learning-rate halvings counted from epoch 0).
"""
from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Callable

from misc.config import Config, save_config
from misc.errors import ConfigError
from misc.preprocess_birds import LR_SIZE

# Stage-I generates and discriminates 64 px images [4.2], random crops of the stored 76 px ones [3.3].
IMAGE_SIZE = 64
STAGE = "stageI"


def build_networks(cfg: Config, sync_bn: bool = False):
    """Create the Stage-I generator and discriminator at the config's widths and build them.

    Args:
      cfg: the resolved config (Z_DIM, GAN.GF_DIM/DF_DIM/EMBEDDING_DIM, TRAIN.COND_AUGMENTATION,
        TEXT.DIMENSION).
      sync_bn: synchronise BN statistics over replicas.

    Returns:
      `(generator, discriminator)`, both built (one inference-mode call on zeros).
    """
    import tensorflow as tf

    from stageI.model import StageIDiscriminator, StageIGenerator

    generator = StageIGenerator(gf_dim=cfg.GAN.GF_DIM, ef_dim=cfg.GAN.EMBEDDING_DIM, z_dim=cfg.Z_DIM,
                                cond_augmentation=cfg.TRAIN.COND_AUGMENTATION, sync_bn=sync_bn, name="generator")
    discriminator = StageIDiscriminator(df_dim=cfg.GAN.DF_DIM, ef_dim=cfg.GAN.EMBEDDING_DIM, sync_bn=sync_bn,
                                        paper_activations=cfg.GAN.D_PAPER_ACTIVATIONS, name="discriminator")
    embedding = tf.zeros((1, cfg.TEXT.DIMENSION))
    images, _, _ = generator((embedding, tf.zeros((1, cfg.Z_DIM))), training=False)
    discriminator((images, embedding), training=False)
    return generator, discriminator


def count_parameters(cfg: Config) -> dict[str, int]:
    """Trainable parameter counts of the Stage-I networks: CA, generator without CA, discriminator.

    Birds defaults: 262,400 / 14,001,792 / 4,029,824, the original's numbers [4.1-4.3].
    """
    import numpy as np

    generator, discriminator = build_networks(cfg)

    def count(variables) -> int:
        return int(sum(np.prod(v.shape) for v in variables))

    ca = count(generator.ca.trainable_variables)
    return {"ca": ca, "generator": count(generator.trainable_variables) - ca,
            "discriminator": count(discriminator.trainable_variables)}


def build_gan(cfg: Config, sync_bn: bool = False):
    """The compiled and built Stage-I `CondGAN` (call inside `strategy.scope()`).

    Port of `CondGANTrainer.init_opt` / `prepare_trainer`: Adam(beta1 0.5) for D and G at the
    config's base learning rates (the schedule callback sets the epoch's rate).
    """
    from misc.gan import CondGAN, adam

    generator, discriminator = build_networks(cfg, sync_bn=sync_bn)
    gan = CondGAN(generator, discriminator, z_dim=cfg.Z_DIM, ef_dim=cfg.GAN.EMBEDDING_DIM,
                  kl_coeff=cfg.TRAIN.COEFF.KL, b_wrong=cfg.TRAIN.B_WRONG,
                  cond_augmentation=cfg.TRAIN.COND_AUGMENTATION, name="cond_gan")
    gan.compile(d_optimizer=adam(cfg.TRAIN.DISCRIMINATOR_LR, name="d_optimizer"),
                g_optimizer=adam(cfg.TRAIN.GENERATOR_LR, name="g_optimizer"))
    gan.build((None, cfg.TEXT.DIMENSION))
    return gan


def new_run_dir(cfg: Config, now: dt.datetime | None = None) -> Path:
    """Create `<OUTPUT_DIR>/<DATASET_NAME>/<CONFIG_NAME>_<YYYY_MM_DD_HH_MM_SS>/` (original layout [8.1]).

    A numeric suffix is added if a run started in the same second.
    """
    stamp = (now or dt.datetime.now()).strftime("%Y_%m_%d_%H_%M_%S")
    base = Path(cfg.OUTPUT_DIR) / cfg.DATASET_NAME / f"{cfg.CONFIG_NAME or STAGE}_{stamp}"
    candidate, k = base, 1
    while True:
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            k += 1
            candidate = base.with_name(f"{base.name}_{k}")


def grid_rows_fn(cfg: Config, train_data, test_data, image_size: int) -> Callable[[int], dict]:
    """The rows of each epoch's sample grids (port of the batch `epoch_sum_images` assembles [8.2]).

    Returns a function of the epoch: `TRAIN.NUM_COPY` training rows (averaged embeddings) and as
    many test rows (one caption each), cropped to `image_size`, drawn with seed `SEED + epoch`.
    Both stages use it. It draws epoch 0's rows right away, so a missing caption file fails before
    training starts.
    """
    from misc.datasets import visualization_batch

    num_copy = cfg.TRAIN.NUM_COPY

    def rows_for_epoch(epoch: int) -> dict:
        train_rows = visualization_batch(train_data, num_copy, image_size, cfg.TRAIN.NUM_EMBEDDING, cfg.SEED + epoch)
        train_rows.pop("captions")  # the original lists only the test captions (test.txt)
        test_rows = visualization_batch(test_data, num_copy, image_size, 1, cfg.SEED + epoch)
        return {"train": train_rows, "test": test_rows}

    rows_for_epoch(0)
    return rows_for_epoch


def distribution_and_feeder(cfg: Config, train_data, image_size: int, iteration: int,
                            gpus: list[int] | None):
    """The strategy, whether batch norm is synchronised, and the batch feeder of a run (both stages).

    Seeds everything with `SEED + iteration`: a resumed run draws new batches and noise instead of
    replaying those of the run's first iterations.

    Returns:
      `(strategy, sync_bn, feeder)`; the caller closes the feeder.
    """
    import keras

    from misc.datasets import BatchFeeder
    from misc.distribute import check_batch_size, get_strategy, use_sync_bn

    strategy = get_strategy(expected_gpus=None if gpus is None else len(gpus))
    check_batch_size(cfg.TRAIN.BATCH_SIZE, strategy)
    seed = cfg.SEED + iteration
    keras.utils.set_random_seed(seed)
    feeder = BatchFeeder(train_data, cfg.TRAIN.BATCH_SIZE, image_size, cfg.TRAIN.NUM_EMBEDDING, seed)
    return strategy, use_sync_bn(cfg.TRAIN.SYNC_BN, strategy), feeder


def fit_and_report(gan, feeder, cfg: Config, run_dir: Path, *, strategy, stage: str, initial_epoch: int,
                   steps_per_epoch: int, start_line: str | None, lr_schedule, make_grids: Callable,
                   samples: str, summary_prefix: str = "", print_fn: Callable[[str], None] = print,
                   verbose: int = 2) -> None:
    """The epoch loop both stages share: config, run messages, TensorBoard writer, callbacks, `fit`.

    Port of the original's training loop and its summaries, snapshots and per-epoch images [7.2,
    7.3, 8]; what differs between the stages comes in as arguments.

    Args:
      gan: the built (and, if resuming, restored) GAN; `feeder`: its `BatchFeeder`, closed here.
      cfg: the resolved config, written to `<run_dir>/config.yml`.
      run_dir: the run folder.
      strategy: the distribution strategy (for the replica count).
      stage: "stageI" or "stageII", recorded in the snapshots.
      initial_epoch: epochs already done; steps_per_epoch: iterations per epoch.
      start_line: where the run starts from, printed after the run folder (None: nothing).
      lr_schedule: the stage's learning-rate callback.
      make_grids: `writer -> callback` writing the stage's end-of-epoch sample grids.
      samples: the grid files, for the message.
      summary_prefix: TensorBoard scalar prefix ("hr_" for Stage-II [8.2]).
    """
    import tensorflow as tf

    from misc import callbacks as cb

    save_config(cfg, run_dir / "config.yml")
    print_fn(f"run folder: {run_dir}")
    if start_line:
        print_fn(start_line)
    print_fn(f"replicas: {strategy.num_replicas_in_sync}; {steps_per_epoch} iterations per epoch, "
             f"epochs {initial_epoch + 1}..{cfg.TRAIN.MAX_EPOCH}")
    print_fn(f"checkpoints: {run_dir}/model_<iteration>.weights.h5 every {cfg.TRAIN.SNAPSHOT_INTERVAL} "
             "iterations and at the end")
    print_fn(f"samples: {samples} after every epoch")
    print_fn(f"TensorBoard logs: {run_dir} (tensorboard --logdir {run_dir})")

    writer = tf.summary.create_file_writer(str(run_dir))
    callbacks = [
        lr_schedule,
        cb.ScalarSummaries(writer, interval=cfg.TRAIN.SUMMARY_INTERVAL, prefix=summary_prefix),
        cb.Snapshots(run_dir, cfg.TRAIN.SNAPSHOT_INTERVAL, stage=stage, dataset=cfg.DATASET_NAME,
                     on_save=lambda path: print_fn(f"saved {path}")),
        make_grids(writer),
        cb.EpochLog(cfg.TRAIN.MAX_EPOCH, print_fn=print_fn, run_dir=run_dir),
    ]
    try:
        gan.fit(feeder.dataset(), steps_per_epoch=steps_per_epoch, epochs=cfg.TRAIN.MAX_EPOCH,
                initial_epoch=initial_epoch, callbacks=callbacks, verbose=verbose, shuffle=False)
    finally:
        feeder.close()
        writer.close()
        sys.stdout.flush()


def train(cfg: Config, resume: str | None = None, verbose: int = 2,
          print_fn: Callable[[str], None] = print, gpus: list[int] | None = None) -> Path:
    """Train Stage-I as configured (port of `CondGANTrainer.train`).

    Args:
      cfg: the resolved config.
      resume: a run folder or snapshot to continue, in its own run folder; otherwise a new run
        folder is made (starting from `TRAIN.PRETRAINED_MODEL` if set, as the original resumed).
      verbose: Keras progress output (1: progress bar, 2: one line per epoch).
      print_fn: where the run's messages go.
      gpus: the GPU indices `--gpu` selected (checked against what TensorFlow sees); None: all.

    Returns:
      The run folder.

    Raises:
      ConfigError, DataError, CheckpointError: user errors (one sentence each); StackGANError when a
        loss becomes NaN.
    """
    from misc.checkpoint import read_metadata, resolve_checkpoint
    from misc.cli import import_tensorflow
    from misc.datasets import load_split

    if not cfg.TRAIN.FLAG:
        raise ConfigError("TRAIN.FLAG: false asks for the original's evaluation mode, which is "
                          "misc.sampler.run_evaluation (stageI/run_exp.py runs it), not training")
    if resume and cfg.TRAIN.PRETRAINED_MODEL:
        raise ConfigError(f"--resume {resume}: TRAIN.PRETRAINED_MODEL is also set; give only one of them")
    start = resume or cfg.TRAIN.PRETRAINED_MODEL or None
    snapshot = resolve_checkpoint(start) if start else None
    record = read_metadata(snapshot) if snapshot else {"iteration": 0, "epoch": 0}
    if record["epoch"] >= cfg.TRAIN.MAX_EPOCH:
        raise ConfigError(f"TRAIN.MAX_EPOCH: nothing to train, the run starts at epoch {record['epoch']} and "
                          f"TRAIN.MAX_EPOCH is {cfg.TRAIN.MAX_EPOCH} (raise it, e.g. --set TRAIN.MAX_EPOCH=600)")

    # The data first (port of the original order): its errors come before TensorFlow's start-up.
    data_dir = cfg.data_dir()
    train_data = load_split(data_dir, "train", LR_SIZE, cfg.EMBEDDING_TYPE, cfg.TEXT.DIMENSION)
    test_data = load_split(data_dir, "test", LR_SIZE, cfg.EMBEDDING_TYPE, cfg.TEXT.DIMENSION)
    batch_size = cfg.TRAIN.BATCH_SIZE
    steps_per_epoch = len(train_data) // batch_size
    num_copy = cfg.TRAIN.NUM_COPY
    rows_for_epoch = grid_rows_fn(cfg, train_data, test_data, IMAGE_SIZE)  # fails now on missing captions

    import_tensorflow()

    from misc import callbacks as cb
    from misc.checkpoint import load_checkpoint

    strategy, sync_bn, feeder = distribution_and_feeder(cfg, train_data, IMAGE_SIZE, record["iteration"], gpus)
    with strategy.scope():
        gan = build_gan(cfg, sync_bn=sync_bn)
    if snapshot:
        record = load_checkpoint(gan, snapshot, stage=STAGE, dataset=cfg.DATASET_NAME)
    run_dir = snapshot.parent if resume else new_run_dir(cfg)
    initial_epoch = record["epoch"]
    start_line = (f"starting from {snapshot}: iteration {record['iteration']}, continuing with epoch "
                  f"{initial_epoch + 1}") if snapshot else None
    fit_and_report(
        gan, feeder, cfg, run_dir, strategy=strategy, stage=STAGE, initial_epoch=initial_epoch,
        steps_per_epoch=steps_per_epoch, start_line=start_line,
        lr_schedule=cb.LearningRateSchedule(cfg.TRAIN.DISCRIMINATOR_LR, cfg.TRAIN.GENERATOR_LR,
                                            cfg.TRAIN.LR_DECAY_EPOCH),
        make_grids=lambda writer: cb.SampleGrids(run_dir, writer, rows_for_epoch, num_copy, zero_z=True),
        samples=f"{run_dir}/train.jpg, {run_dir}/test.jpg (captions in test.txt)",
        print_fn=print_fn, verbose=verbose)
    return run_dir
