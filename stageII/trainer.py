"""Stage-II: how its networks and GAN are built and restored, for training, sampling and export.

Port of the Stage-II parts of the original `stageII/trainer.py` `CondGANTrainer` (default path,
`FINETUNE_LR=False`) (original `stageII/trainer.py`): the frozen Stage-I generator only feeds its 64 px images to the
Stage-II generator; the Stage-II generator (with its own CA) and discriminator are trained, on
256 px crops of the 304 px images, with the same losses as Stage-I, by the training loop both
stages share (`misc/training.py`). A new run continues the Stage-I iteration counter and epoch
count, and the learning rates are only halved after `TRAIN.PRETRAINED_EPOCH`.

Deliberate differences from the original:

* It restored the Stage-I weights without their BN moving statistics (these started at 0 / 1);
  here the whole Stage-I generator is restored, moving statistics included. Training is not
  affected (the Stage-I generator runs with batch statistics during training and keeps updating
  its moving averages, as in the original), but the inference-mode sample grids are meaningful
  from the first epoch.
* `TRAIN.PRETRAINED_MODEL: ''` finds the newest Stage-I checkpoint of the dataset by itself
  (the original made users edit a time-stamped path, its issue #57).
"""
from __future__ import annotations

import os
from pathlib import Path

from misc import training
from misc.checkpoint import load_checkpoint
from misc.config import Config
from misc.datasets import LR_HR_RATIO
from misc.runs import Start
from stageI import trainer as stage1_trainer
from stageII import STAGE
from stageII.model import StageIIDiscriminator, StageIIGAN, StageIIGenerator


def build_networks(cfg: Config, sync_bn: bool = False) -> tuple[StageIIGenerator, StageIIDiscriminator]:
    """Create the Stage-II generator and discriminator at the config's widths, built (no call).

    Args:
      cfg: the resolved config (GAN.GF_DIM/DF_DIM/EMBEDDING_DIM/R_NUM, TRAIN.COND_AUGMENTATION,
        TEXT.DIMENSION).
      sync_bn: synchronise BN statistics over replicas.

    Returns:
      `(generator, discriminator)`.
    """
    lr_size = STAGE.image_size // LR_HR_RATIO
    generator = StageIIGenerator(gf_dim=cfg.GAN.GF_DIM, ef_dim=cfg.GAN.EMBEDDING_DIM, r_num=cfg.GAN.R_NUM,
                                 cond_augmentation=cfg.TRAIN.COND_AUGMENTATION, sync_bn=sync_bn,
                                 name="hr_generator")
    discriminator = StageIIDiscriminator(df_dim=cfg.GAN.DF_DIM, ef_dim=cfg.GAN.EMBEDDING_DIM, sync_bn=sync_bn,
                                         name="hr_discriminator")
    generator.build(((None, lr_size, lr_size, 3), (None, cfg.TEXT.DIMENSION)))
    discriminator.build(((None, STAGE.image_size, STAGE.image_size, 3), (None, cfg.TEXT.DIMENSION)))
    return generator, discriminator


def count_parameters(cfg: Config) -> dict[str, int]:
    """Trainable parameter counts of the Stage-II networks: CA, generator without CA, discriminator.

    Birds defaults: 262,400 / 26,027,680 / 48,603,520, the original's numbers (original `stageII/model.py`).
    """
    return training.count_parameters(*build_networks(cfg))


def build_gan(cfg: Config, stage1_generator, sync_bn: bool = False) -> StageIIGAN:
    """The compiled and built `StageIIGAN` around a Stage-I generator (call inside `strategy.scope()`;
    port of the Stage-II `init_opt`, with the `hr_` optimisers)."""
    generator, discriminator = build_networks(cfg, sync_bn=sync_bn)
    gan = StageIIGAN(stage1_generator, generator, discriminator, **training.gan_options(cfg), name="hr_cond_gan")
    return training.compile_gan(gan, cfg, prefix="hr_")


def load_stage1_generator(cfg: Config, path: str | os.PathLike, sync_bn: bool = False):
    """Build the Stage-I GAN at the config's widths and restore a Stage-I snapshot into it.

    Port of the original's restore of the `g_` variables from `TRAIN.PRETRAINED_MODEL` (original `stageII/trainer.py`)
    (here with the BN moving statistics, see the module docstring). Call inside `strategy.scope()`.

    Returns:
      `(stage1_generator, record)`: the generator and the snapshot's JSON record (iteration, epoch).

    Raises:
      CheckpointError: not a Stage-I snapshot of this dataset, or other widths.
    """
    stage1_gan = stage1_trainer.build_gan(cfg, sync_bn=sync_bn)
    record = load_checkpoint(stage1_gan, path, stage=STAGE.previous.name, dataset=cfg.DATASET_NAME)
    return stage1_gan.generator, record


def restore(cfg: Config, start: Start, sync_bn: bool = False) -> StageIIGAN:
    """The Stage-II GAN of a run (call inside `strategy.scope()`).

    From a Stage-II snapshot, its whole state, the Stage-I generator included. From a Stage-I
    snapshot, that generator, with the iteration counter continued from it (original `stageII/trainer.py`).
    """
    if start.stage == STAGE.name:
        stage1_generator, _ = stage1_trainer.build_networks(cfg, sync_bn=sync_bn)
        gan = build_gan(cfg, stage1_generator, sync_bn=sync_bn)
        load_checkpoint(gan, start.snapshot, stage=STAGE.name, dataset=cfg.DATASET_NAME)
        return gan
    stage1_generator, record = load_stage1_generator(cfg, start.snapshot, sync_bn=sync_bn)
    gan = build_gan(cfg, stage1_generator, sync_bn=sync_bn)
    gan.iteration_offset = record["iteration"]
    return gan


def train(cfg: Config, resume: str | os.PathLike | None = None, **kwargs) -> Path:
    """Train Stage-II as configured: `misc.training.train` with this stage (port of the Stage-II
    `CondGANTrainer.train`).

    Args:
      cfg: the resolved config.
      resume: a Stage-II run folder or snapshot to continue in its own folder; otherwise the
        Stage-I generator comes from `TRAIN.PRETRAINED_MODEL` or, if that is '', from the newest
        Stage-I checkpoint under `<OUTPUT_DIR>/<DATASET_NAME>/stageI_*/`.
      **kwargs: as `misc.training.train` (print_fn, gpus, prepared, cluster, show_progress).

    Returns:
      The run folder.
    """
    return training.train(cfg, STAGE, restore, resume=resume, **kwargs)
