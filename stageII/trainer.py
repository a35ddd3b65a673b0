"""Stage-II training: the frozen Stage-I generator, the Stage-II networks and their wiring.

Port of the original `stageII/trainer.py` `CondGANTrainer` (default path, `FINETUNE_LR=False`)
[7.3]: the Stage-I generator refines nothing and learns nothing, it only feeds its 64 px images to
the Stage-II generator; only the Stage-II generator (with its own CA) and discriminator are
trained, on 256 px crops of the 304 px images, with the same losses as Stage-I [6]. The iteration
counter and the epoch count continue from the Stage-I checkpoint, and the learning rates are only
halved after `TRAIN.PRETRAINED_EPOCH`.

The training graph is `misc.gan.CondGAN` with `generate`, `sample_noise` and `g_variables`
overridden; the callbacks, snapshots and data feeding are the Stage-I ones (`misc/`).

Deliberate differences from the original:

* It restored the Stage-I weights without their BN moving statistics (these started at 0 / 1);
  here the whole Stage-I generator is restored, moving statistics included. Training is not
  affected (the Stage-I generator runs with batch statistics during training, as in the original),
  but the inference-mode sample grids are meaningful from the first epoch.
* `TRAIN.PRETRAINED_MODEL: ''` finds the newest Stage-I checkpoint of the dataset by itself
  (the original made users edit a time-stamped path, issue #57).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from misc.config import Config
from misc.errors import CheckpointError, ConfigError
from misc.preprocess_birds import LOAD_SIZE, LR_HR_RATIO

# Stage-II generates and discriminates 256 px images [4.4, 4.5], random crops of the stored 304 px
# ones [3.3].
IMAGE_SIZE = 256
STAGE = "stageII"
STAGE1 = "stageI"


def __getattr__(name: str):
    """`StageIIGAN` is defined on first use, so that importing this module does not import TensorFlow
    (the command line imports TensorFlow quietly, after checking the config and the data)."""
    if name == "StageIIGAN":
        globals()[name] = _define_stage2_gan()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _define_stage2_gan():
    import tensorflow as tf

    from misc.gan import CondGAN

    class StageIIGAN(CondGAN):
        """Port of the Stage-II graph of the original `stageII/trainer.py` (`init_opt`, default path).

        `generate` runs the Stage-I generator (z and its own CA noise) and feeds its 64 px images and
        the same text embedding to the Stage-II generator (its own CA noise); the KL term is the
        Stage-II CA's [5]. The D step and G step are `CondGAN`'s with the Stage-II D and G [6].

        The Stage-I generator is frozen by leaving it out of `g_variables` (the original left it out
        of the optimiser's var list). It is *not* marked `trainable=False`: a Keras BN layer with
        `trainable=False` runs in inference mode, whereas the original ran the Stage-I generator
        inside Stage-II training with batch statistics (and kept updating its moving averages) [7.3].
        Its output goes through `tf.stop_gradient`: the original let the Stage-II G loss back-propagate
        into the Stage-I generator but never applied those gradients, so the updates are identical and
        the stop saves the computation.

        Args:
          stage1_generator: the trained `stageI.model.StageIGenerator` (built, weights loaded).
          generator: the `stageII.model.StageIIGenerator`.
          discriminator: the `stageII.model.StageIIDiscriminator`.
          **kwargs: as `CondGAN` (z_dim, ef_dim, kl_coeff, b_wrong, cond_augmentation, name).
        """

        def __init__(self, stage1_generator, generator, discriminator, **kwargs):
            super().__init__(generator, discriminator, **kwargs)
            self.stage1_generator = stage1_generator

        def sample_noise(self, batch_size):
            """z ~ N(0, 1) (B, z_dim) and the pair of CA noises (Stage-I, Stage-II), each (B, ef_dim).

            The CA noises travel as one tuple in `CondGAN`'s `epsilon` slot.
            """
            z, stage1_epsilon = super().sample_noise(batch_size)
            stage2_epsilon = tf.random.truncated_normal((batch_size, self.ef_dim))
            return z, (stage1_epsilon, stage2_epsilon)

        def generate_stages(self, embedding, z, epsilon, training: bool):
            """Both stages' images: port of the Stage-II sampler (`sample_encoded_context` twice,
            `generator` and `hr_generator`).

            Args:
              embedding: text embeddings (B, text_dim).
              z: noise (B, z_dim) for the Stage-I generator.
              epsilon: (Stage-I CA noise, Stage-II CA noise), each (B, ef_dim).
              training: BN phase of both generators.

            Returns:
              `(stage1_images (B, 64, 64, 3), hr_images (B, 256, 256, 3), mu, log_sigma)` with the
              Stage-II CA's mu and log_sigma.
            """
            stage1_epsilon, stage2_epsilon = epsilon
            stage1_images, _, _ = self.stage1_generator((embedding, z, stage1_epsilon), training=training)
            stage1_images = tf.stop_gradient(stage1_images)
            hr_images, mu, log_sigma = self.generator((stage1_images, embedding, stage2_epsilon), training=training)
            return stage1_images, hr_images, mu, log_sigma

        def generate(self, embedding, z, epsilon, training: bool):
            """`(hr_images, mu, log_sigma)` of the Stage-II generator on the Stage-I output."""
            _, hr_images, mu, log_sigma = self.generate_stages(embedding, z, epsilon, training)
            return hr_images, mu, log_sigma

        @property
        def g_variables(self) -> list:
            """The Stage-II generator's weights (its CA included); never the Stage-I generator's."""
            return self.generator.trainable_variables

    return StageIIGAN


def build_networks(cfg: Config, sync_bn: bool = False):
    """Create the Stage-II generator and discriminator at the config's widths, built (no call).

    Args:
      cfg: the resolved config (GAN.GF_DIM/DF_DIM/EMBEDDING_DIM/R_NUM, TRAIN.COND_AUGMENTATION,
        TEXT.DIMENSION).
      sync_bn: synchronise BN statistics over replicas.

    Returns:
      `(generator, discriminator)`.
    """
    from stageII.model import StageIIDiscriminator, StageIIGenerator

    lr_size = IMAGE_SIZE // LR_HR_RATIO
    generator = StageIIGenerator(gf_dim=cfg.GAN.GF_DIM, ef_dim=cfg.GAN.EMBEDDING_DIM, r_num=cfg.GAN.R_NUM,
                                 cond_augmentation=cfg.TRAIN.COND_AUGMENTATION, sync_bn=sync_bn,
                                 name="hr_generator")
    discriminator = StageIIDiscriminator(df_dim=cfg.GAN.DF_DIM, ef_dim=cfg.GAN.EMBEDDING_DIM, sync_bn=sync_bn,
                                         name="hr_discriminator")
    generator.build(((None, lr_size, lr_size, 3), (None, cfg.TEXT.DIMENSION)))
    discriminator.build(((None, IMAGE_SIZE, IMAGE_SIZE, 3), (None, cfg.TEXT.DIMENSION)))
    return generator, discriminator


def count_parameters(cfg: Config) -> dict[str, int]:
    """Trainable parameter counts of the Stage-II networks: CA, generator without CA, discriminator.

    Birds defaults: 262,400 / 26,027,680 / 48,603,520, the original's numbers [4.4, 4.5].
    """
    import numpy as np

    generator, discriminator = build_networks(cfg)

    def count(variables) -> int:
        return int(sum(np.prod(v.shape) for v in variables))

    ca = count(generator.ca.trainable_variables)
    return {"ca": ca, "generator": count(generator.trainable_variables) - ca,
            "discriminator": count(discriminator.trainable_variables)}


def find_stage1_checkpoint(cfg: Config) -> Path:
    """The newest Stage-I checkpoint of the dataset: `<OUTPUT_DIR>/<DATASET_NAME>/stageI_*/model_*.weights.h5`.

    "Newest" is the most recently written snapshot over all Stage-I run folders (ties: the larger
    path, i.e. the later run folder name).

    Raises:
      CheckpointError: no Stage-I run folder holds a complete snapshot.
    """
    from misc.checkpoint import latest_checkpoint

    root = Path(cfg.OUTPUT_DIR) / cfg.DATASET_NAME
    found = [ckpt for run in sorted(root.glob(f"{STAGE1}_*")) if (ckpt := latest_checkpoint(run)) is not None]
    if not found:
        raise CheckpointError(f"{root}: no Stage-I checkpoint ({STAGE1}_*/model_<iteration>.weights.h5) found; "
                              "run `make train-stage1` first or set TRAIN.PRETRAINED_MODEL")
    return max(found, key=lambda path: (os.stat(path).st_mtime, str(path)))


def load_stage1_generator(cfg: Config, path: str | os.PathLike, sync_bn: bool = False):
    """Build the Stage-I GAN at the config's widths and restore a Stage-I snapshot into it.

    Port of the original's restore of the `g_` variables from `TRAIN.PRETRAINED_MODEL` [7.3]
    (here with the BN moving statistics, see the module docstring). Call inside `strategy.scope()`.

    Args:
      cfg: the resolved Stage-II config (the widths must be those Stage-I was trained with).
      path: a Stage-I run folder or `model_<iteration>.weights.h5`.
      sync_bn: synchronise BN statistics over replicas.

    Returns:
      `(stage1_generator, record)`: the generator and the snapshot's JSON record (iteration, epoch).

    Raises:
      CheckpointError: not a Stage-I snapshot of this dataset, or other widths.
    """
    from misc.checkpoint import load_checkpoint
    from stageI.trainer import build_gan

    stage1_gan = build_gan(cfg, sync_bn=sync_bn)
    record = load_checkpoint(stage1_gan, path, stage=STAGE1, dataset=cfg.DATASET_NAME)
    return stage1_gan.generator, record


def build_gan(cfg: Config, stage1_generator, sync_bn: bool = False):
    """The compiled and built `StageIIGAN` around a Stage-I generator (call inside `strategy.scope()`).

    Port of the Stage-II `init_opt` / `prepare_trainer`: Adam(beta1 0.5) for hr_D and hr_G at the
    config's base learning rates (the schedule callback sets the epoch's rate).
    """
    from misc.gan import adam
    from stageII.trainer import StageIIGAN

    generator, discriminator = build_networks(cfg, sync_bn=sync_bn)
    gan = StageIIGAN(stage1_generator, generator, discriminator, z_dim=cfg.Z_DIM,
                                   ef_dim=cfg.GAN.EMBEDDING_DIM, kl_coeff=cfg.TRAIN.COEFF.KL,
                                   b_wrong=cfg.TRAIN.B_WRONG, cond_augmentation=cfg.TRAIN.COND_AUGMENTATION,
                                   name="hr_cond_gan")
    gan.compile(d_optimizer=adam(cfg.TRAIN.DISCRIMINATOR_LR, name="hr_d_optimizer"),
                g_optimizer=adam(cfg.TRAIN.GENERATOR_LR, name="hr_g_optimizer"))
    gan.build((None, cfg.TEXT.DIMENSION))
    return gan


def learning_rate_schedule(cfg: Config):
    """The Stage-II learning-rate callback: halvings every `LR_DECAY_EPOCH` only above `PRETRAINED_EPOCH` [7.3]."""
    from misc.callbacks import LearningRateSchedule

    return LearningRateSchedule(cfg.TRAIN.DISCRIMINATOR_LR, cfg.TRAIN.GENERATOR_LR, cfg.TRAIN.LR_DECAY_EPOCH,
                                pretrained_epoch=cfg.TRAIN.PRETRAINED_EPOCH)


def epoch_grids(gan, rows: dict, run_dir: str | os.PathLike, step: int, num_copy: int) -> dict[str, Path]:
    """Write the Stage-II end-of-epoch grids: port of the Stage-II `epoch_sum_images` [8.2].

    For every split, the same samples (random z, inference mode, CA sampling on) are shown at both
    resolutions: `lr_fake_<split>.jpg` (Stage-I images, next to the real crop taken at every 4th
    pixel, as the original's in-graph 256 -> 64 resize [4.6]) with image summary `<split>`, and
    `hr_fake_<split>.jpg` (Stage-II images next to the real 256 px crop) with summary `hr_<split>`.
    Captions of a split, if given, go to `<split>.txt`.

    Returns:
      `"<lr|hr>_<split>"` -> path of the JPEG written.
    """
    import numpy as np
    import tensorflow as tf

    from misc import visualize

    written = {}
    for split, batch in rows.items():
        embeddings = np.asarray(batch["embeddings"], dtype=np.float32)
        n = embeddings.shape[0]
        z, epsilon = gan.sample_noise(n * num_copy)
        stage1_images, hr_images, _, _ = gan.generate_stages(
            tf.constant(np.repeat(embeddings, num_copy, axis=0)), z, epsilon, training=False)
        real = np.asarray(batch["images"])
        for kind, fake, real_images, tag in (("lr", stage1_images, real[:, ::LR_HR_RATIO, ::LR_HR_RATIO], split),
                                             ("hr", hr_images, real, f"hr_{split}")):
            fake = np.asarray(fake)
            grid = visualize.make_grid(real_images, fake.reshape((n, num_copy) + fake.shape[1:]))
            path = Path(run_dir) / f"{kind}_fake_{split}.jpg"
            visualize.save_jpeg(grid, path)
            visualize.write_grid_summary(tag, grid, step)
            written[f"{kind}_{split}"] = path
        if batch.get("captions"):
            visualize.save_captions(batch["captions"], Path(run_dir) / f"{split}.txt")
    return written


def _sample_grids_callback(run_dir: Path, writer, rows_for_epoch: Callable[[int], dict], num_copy: int):
    """A `misc.callbacks.SampleGrids` that writes both stages' grids with `epoch_grids`."""
    from misc.callbacks import SampleGrids

    class StageIISampleGrids(SampleGrids):
        """Port of the Stage-II end-of-epoch image summaries (random z)."""

        def on_epoch_end(self, epoch, logs=None):
            with self.writer.as_default():
                epoch_grids(self.model, self.rows_for_epoch(epoch), self.run_dir, step=self.iteration,
                            num_copy=self.num_copy)
            self.writer.flush()

    return StageIISampleGrids(run_dir, writer, rows_for_epoch, num_copy, zero_z=False)


def train(cfg: Config, resume: str | None = None, verbose: int = 2,
          print_fn: Callable[[str], None] = print, gpus: list[int] | None = None) -> Path:
    """Train Stage-II as configured (port of the Stage-II `CondGANTrainer.train`).

    Args:
      cfg: the resolved config.
      resume: a Stage-II run folder or snapshot to continue, in its own run folder (the Stage-I
        generator comes back from it too); otherwise a new run folder is made and the Stage-I
        generator is loaded from `TRAIN.PRETRAINED_MODEL` or, if that is '', from the newest Stage-I
        checkpoint under `<OUTPUT_DIR>/<DATASET_NAME>/stageI_*/`.
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
    from stageI.trainer import distribution_and_feeder, fit_and_report, grid_rows_fn

    if not cfg.TRAIN.FLAG:
        raise ConfigError("TRAIN.FLAG: false asks for the original's evaluation mode, which is "
                          "misc.sampler.run_evaluation (stageII/run_exp.py runs it), not training")
    if resume:
        snapshot = resolve_checkpoint(resume)
        stage1_snapshot = None
    else:
        snapshot = None
        stage1_snapshot = (resolve_checkpoint(cfg.TRAIN.PRETRAINED_MODEL) if cfg.TRAIN.PRETRAINED_MODEL
                           else find_stage1_checkpoint(cfg))
    record = read_metadata(snapshot or stage1_snapshot)
    expected_stage = STAGE if snapshot else STAGE1
    if record.get("stage") != expected_stage:  # checked again on load; here before the long data loading
        raise CheckpointError(f"{snapshot or stage1_snapshot}: this is a {record.get('stage')} checkpoint, "
                              f"expected {expected_stage}")

    data_dir = cfg.data_dir()
    train_data = load_split(data_dir, "train", LOAD_SIZE, cfg.EMBEDDING_TYPE, cfg.TEXT.DIMENSION)
    test_data = load_split(data_dir, "test", LOAD_SIZE, cfg.EMBEDDING_TYPE, cfg.TEXT.DIMENSION)
    batch_size = cfg.TRAIN.BATCH_SIZE
    steps_per_epoch = len(train_data) // batch_size
    num_copy = cfg.TRAIN.NUM_COPY
    # Stage-II continues the Stage-I counter: epoch_start = counter // updates_per_epoch [7.3].
    initial_epoch = record["epoch"] if snapshot else record["iteration"] // max(steps_per_epoch, 1)
    if initial_epoch >= cfg.TRAIN.MAX_EPOCH:
        raise ConfigError(f"TRAIN.MAX_EPOCH: nothing to train, the run starts at epoch {initial_epoch} and "
                          f"TRAIN.MAX_EPOCH is {cfg.TRAIN.MAX_EPOCH} (raise it, e.g. --set "
                          f"TRAIN.MAX_EPOCH={initial_epoch + 10})")

    rows_for_epoch = grid_rows_fn(cfg, train_data, test_data, IMAGE_SIZE)  # fails now on missing captions

    import_tensorflow()

    from misc.checkpoint import load_checkpoint
    from stageI.trainer import build_networks as build_stage1_networks

    strategy, sync_bn, feeder = distribution_and_feeder(cfg, train_data, IMAGE_SIZE, record["iteration"], gpus)
    with strategy.scope():
        if snapshot:
            stage1_generator, _ = build_stage1_networks(cfg, sync_bn=sync_bn)
        else:
            stage1_generator, record = load_stage1_generator(cfg, stage1_snapshot, sync_bn=sync_bn)
        gan = build_gan(cfg, stage1_generator, sync_bn=sync_bn)
    if snapshot:
        record = load_checkpoint(gan, snapshot, stage=STAGE, dataset=cfg.DATASET_NAME)
    else:
        gan.iteration_offset = record["iteration"]
    run_dir = snapshot.parent if snapshot else new_run_dir(cfg)
    if snapshot:
        start_line = (f"starting from {snapshot}: iteration {record['iteration']}, continuing with epoch "
                      f"{initial_epoch + 1}")
    else:
        start_line = (f"Stage-I generator from {stage1_snapshot} (iteration {record['iteration']}); Stage-II "
                      f"starts at epoch {initial_epoch + 1}")
    fit_and_report(
        gan, feeder, cfg, run_dir, strategy=strategy, stage=STAGE, initial_epoch=initial_epoch,
        steps_per_epoch=steps_per_epoch, start_line=start_line, lr_schedule=learning_rate_schedule(cfg),
        make_grids=lambda writer: _sample_grids_callback(run_dir, writer, rows_for_epoch, num_copy),
        samples=f"{run_dir}/lr_fake_train.jpg, hr_fake_train.jpg, lr_fake_test.jpg, hr_fake_test.jpg "
                "(captions in test.txt)",
        summary_prefix="hr_", print_fn=print_fn, verbose=verbose)
    return run_dir


def new_run_dir(cfg: Config) -> Path:
    """`<OUTPUT_DIR>/<DATASET_NAME>/<CONFIG_NAME or stageII>_<time>/` via `stageI.trainer.new_run_dir`."""
    from stageI.trainer import new_run_dir as make_run_dir

    return make_run_dir(cfg if cfg.CONFIG_NAME else cfg.updated({"CONFIG_NAME": STAGE}))
