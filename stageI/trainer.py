"""Stage-I: how its networks and GAN are built and restored, for training, sampling and export.

Port of the Stage-I parts of the original `stageI/trainer.py` `CondGANTrainer` (`init_opt`,
`prepare_trainer`, the restore in `train`) (original `stageI/trainer.py`); the training loop both stages share is
`misc/training.py`, the graph of a step `misc/gan.py`.
"""
from __future__ import annotations

import os
from pathlib import Path

import tensorflow as tf

from misc import training
from misc.checkpoint import load_checkpoint
from misc.config import Config
from misc.gan import CondGAN
from misc.runs import Start
from stageI import STAGE
from stageI.model import StageIDiscriminator, StageIGenerator


def build_networks(cfg: Config, sync_bn: bool = False) -> tuple[StageIGenerator, StageIDiscriminator]:
    """Create the Stage-I generator and discriminator at the config's widths and build them.

    Args:
      cfg: the resolved config (Z_DIM, GAN.GF_DIM/DF_DIM/EMBEDDING_DIM, TRAIN.COND_AUGMENTATION,
        TEXT.DIMENSION).
      sync_bn: synchronise BN statistics over replicas.

    Returns:
      `(generator, discriminator)`, both built (one inference-mode call on zeros).
    """
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

    Birds defaults: 262,400 / 14,001,792 / 4,029,824, the original's numbers (original `stageI/model.py`).
    """
    return training.count_parameters(*build_networks(cfg))


def build_gan(cfg: Config, sync_bn: bool = False) -> CondGAN:
    """The compiled and built Stage-I `CondGAN` (call inside `strategy.scope()`; port of `init_opt`)."""
    generator, discriminator = build_networks(cfg, sync_bn=sync_bn)
    return training.compile_gan(CondGAN(generator, discriminator, **training.gan_options(cfg), name="cond_gan"), cfg)


def restore(cfg: Config, start: Start, sync_bn: bool = False) -> CondGAN:
    """The Stage-I GAN of a run, with the whole state of `start.snapshot` if there is one (port of
    the original's `saver.restore` of `TRAIN.PRETRAINED_MODEL`). Call inside `strategy.scope()`."""
    gan = build_gan(cfg, sync_bn=sync_bn)
    if start.snapshot is not None:
        load_checkpoint(gan, start.snapshot, stage=STAGE.name, dataset=cfg.DATASET_NAME)
    return gan


def train(cfg: Config, resume: str | os.PathLike | None = None, **kwargs) -> Path:
    """Train Stage-I as configured: `misc.training.train` with this stage (port of `CondGANTrainer.train`).

    Args:
      cfg: the resolved config.
      resume: a run folder or snapshot to continue in its own folder.
      **kwargs: as `misc.training.train` (print_fn, gpus, prepared, cluster, show_progress).

    Returns:
      The run folder.
    """
    return training.train(cfg, STAGE, restore, resume=resume, **kwargs)
