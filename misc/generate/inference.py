"""Load trained models for generation: the one place the sampler, the demo and the export use.

API-STABLE

Port of the restore step of the original's evaluation mode and demo (`CondGANTrainer.evaluate`,
`demo/demo.py`; original `stageI/trainer.py`): build the networks at the widths the checkpoint was trained with,
restore a snapshot, and run the generators in test phase (BN moving averages) with CA sampling on.

* `load_generators(path)` restores a Stage-I or a Stage-II snapshot (`misc/checkpoint.py` format);
  without a path it takes the newest snapshot of a dataset, Stage-II first. A Stage-II snapshot
  holds the whole `StageIIGAN`, the Stage-I generator included, so one file gives both stages.
  The widths come from the `config.yml` that training wrote into the snapshot's run folder.
* `load_encoder(dataset or folder)` loads the trained char-CNN-RNN of `models/<dataset>/text_encoder`.
* `TextToImageModels.generate(...)` maps text embeddings and injected noise to images in [-1, 1];
  `TextToImageModels.sample_noise(n, seed)` draws that noise from a seeded NumPy generator, so the
  same seed gives the same noise whatever the batch size.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from misc.checkpoint import load_checkpoint, read_metadata, resolve_checkpoint
from misc.config import Config, load_config
from misc.errors import CheckpointError
from misc.runs import newest_checkpoint
from misc.text.encoder import TEXT_ENCODER_FILE, load_text_encoder
from stageI import STAGE as STAGE_I
from stageI import trainer as stage1_trainer
from stageII import STAGE as STAGE_II
from stageII import trainer as stage2_trainer

STAGE1 = STAGE_I.name
STAGE2 = STAGE_II.name
STAGES = (STAGE1, STAGE2)
CONFIG_FILE = "config.yml"
MODELS_DIR = "models"
TEXT_ENCODER_DIR = "text_encoder"
# What to run first when nothing is trained yet, per stage.
MAKE_TARGET = {STAGE1: STAGE_I.make_target, STAGE2: STAGE_II.make_target}
# The CA noise is truncated at two standard deviations, as `tf.truncated_normal` (original `stageI/model.py`).
TRUNCATION = 2.0


def truncated_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """float32 samples of N(0, 1) redrawn until they lie within +-2, as `tf.random.truncated_normal`."""
    values = rng.standard_normal(shape)
    outside = np.abs(values) > TRUNCATION
    while outside.any():
        values[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(values) > TRUNCATION
    return values.astype(np.float32)


@dataclass
class TextToImageModels:
    """Trained generators restored from one snapshot, in inference mode.

    Attributes:
      config: the configuration of the run that wrote the snapshot (its `config.yml`).
      stage: the stage of the snapshot, "stageI" or "stageII".
      checkpoint: the `.weights.h5` file restored.
      record: the snapshot's JSON record (iteration, epoch, stage, dataset, ...).
      stage1_generator: `stageI.model.StageIGenerator`, called as
        `stage1_generator((embedding, z, epsilon), training=False)` -> (images 64x64, mu, log_sigma).
      stage2_generator: `stageII.model.StageIIGenerator` (called as
        `((stage1_images, embedding, epsilon), training=False)` -> (images 256x256, mu, log_sigma)), or
        None when only Stage-I was loaded.
    """

    config: Config = field(repr=False)
    stage: str
    checkpoint: Path
    record: dict[str, Any] = field(repr=False)
    stage1_generator: Any = field(repr=False)
    stage2_generator: Any = field(default=None, repr=False)

    @property
    def dataset(self) -> str:
        """`DATASET_NAME` the generators were trained on."""
        return self.config.DATASET_NAME

    @property
    def run_dir(self) -> Path:
        """The run folder of the snapshot."""
        return self.checkpoint.parent

    @property
    def iteration(self) -> int:
        """The training iteration of the snapshot (names the default sample folder)."""
        return int(self.record["iteration"])

    @property
    def z_dim(self) -> int:
        """Size of z (`Z_DIM`)."""
        return int(self.config.Z_DIM)

    @property
    def ef_dim(self) -> int:
        """Size of the CA noise of each stage (`GAN.EMBEDDING_DIM`)."""
        return int(self.config.GAN.EMBEDDING_DIM)

    @property
    def text_dim(self) -> int:
        """Size of the text embeddings the generators take (`TEXT.DIMENSION`)."""
        return int(self.config.TEXT.DIMENSION)

    @property
    def has_stage2(self) -> bool:
        """Whether a Stage-II generator is loaded."""
        return self.stage2_generator is not None

    @property
    def image_size(self) -> int:
        """Side of the final images: 256 with Stage-II, else 64."""
        return 256 if self.has_stage2 else 64

    def sample_noise(self, n: int, seed: int | np.random.Generator = 0
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Noise for `n` images: z ~ N(0, 1) and each stage's CA noise ~ truncated N(0, 1).

        Port of the test-phase noise of the original sampler (original `stageI/trainer.py`). Drawn in NumPy from one
        generator, in the order z, Stage-I epsilon, Stage-II epsilon, so a seed fixes the images.

        Args:
          n: number of images.
          seed: an integer seed or a `np.random.Generator` to draw from.

        Returns:
          `(z (n, z_dim), epsilon1 (n, ef_dim), epsilon2 (n, ef_dim) or None without Stage-II)`, float32.
        """
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        z = rng.standard_normal((n, self.z_dim)).astype(np.float32)
        epsilon1 = truncated_normal(rng, (n, self.ef_dim))
        epsilon2 = truncated_normal(rng, (n, self.ef_dim)) if self.has_stage2 else None
        return z, epsilon1, epsilon2

    def generate(self, embeddings, z, epsilon1, epsilon2=None):
        """Images of text embeddings with the generators in inference mode (BN moving averages).

        Port of the test-phase generator graph of the original's sampler and demo (original
        `stageI/trainer.py`, `demo/demo.py`). Plain
        TensorFlow ops: callable eagerly or inside a `tf.function`.

        Args:
          embeddings: text embeddings (B, text_dim).
          z: noise (B, z_dim).
          epsilon1: Stage-I CA noise (B, ef_dim).
          epsilon2: Stage-II CA noise (B, ef_dim); required when a Stage-II generator is loaded.

        Returns:
          `(stage1_images (B, 64, 64, 3), stage2_images (B, 256, 256, 3) or None)`, float32 tensors
          in [-1, 1].
        """
        embeddings = tf.convert_to_tensor(embeddings, tf.float32)
        stage1_images, _, _ = self.stage1_generator(
            (embeddings, tf.convert_to_tensor(z, tf.float32), tf.convert_to_tensor(epsilon1, tf.float32)),
            training=False)
        if self.stage2_generator is None:
            return stage1_images, None
        if epsilon2 is None:
            raise ValueError("epsilon2 (the Stage-II CA noise) is required when a Stage-II generator is loaded")
        stage2_images, _, _ = self.stage2_generator(
            (stage1_images, embeddings, tf.convert_to_tensor(epsilon2, tf.float32)), training=False)
        return stage1_images, stage2_images


def find_checkpoint(dataset: str = "shapes", output_dir: str | os.PathLike = "ckt_logs",
                    stage: str | None = None) -> Path:
    """The newest snapshot of a dataset: `<output_dir>/<dataset>/stageII_*/` first, then `stageI_*/`.

    Args:
      dataset: `DATASET_NAME`.
      output_dir: `OUTPUT_DIR` of the training runs.
      stage: "stageI" or "stageII" to look only at that stage's runs; None: Stage-II if any.

    Returns:
      The `.weights.h5` path.

    Raises:
      CheckpointError: no run folder of the stage(s) holds a complete snapshot; the message names
        the folder searched and the command to run first.
    """
    _check_stage(stage)
    root = Path(output_dir) / dataset
    for candidate in ((stage,) if stage else (STAGE2, STAGE1)):
        snapshot = newest_checkpoint(root, candidate)
        if snapshot is not None:
            return snapshot
    folders = f"a {stage}_*" if stage else f"a {STAGE2}_* or {STAGE1}_*"
    raise CheckpointError(f"{root}: no trained checkpoint (model_<iteration>.weights.h5 in {folders} run folder) "
                          f"found; run `{MAKE_TARGET[stage or STAGE1]} DATASET={dataset}` first")


def _check_stage(stage: str | None) -> None:
    if stage is not None and stage not in STAGES:
        raise ValueError(f"stage must be None, {STAGE1!r} or {STAGE2!r}, got {stage!r}")


def load_run_config(weights_path: str | os.PathLike) -> Config:
    """The configuration a snapshot was trained with: `config.yml` of its run folder.

    Raises:
      CheckpointError: the run folder has no `config.yml`.
    """
    path = Path(weights_path).parent / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: the run's configuration is missing, so the network widths of "
                              f"{Path(weights_path).name} are unknown (training writes it into every run folder)")
    return load_config(path)


def load_generators(checkpoint: str | os.PathLike | None = None, dataset: str | None = None,
                    output_dir: str | os.PathLike = "ckt_logs", stage: str | None = None) -> TextToImageModels:
    """Restore the generators of a snapshot for generation.

    Port of the restore in the original's `evaluate` and demo (original `stageI/trainer.py`,
    `demo/demo.py`), which rebuilt the graph and
    restored every variable: here the stage's `CondGAN` is built at the run's widths and the whole
    snapshot is loaded into it (`misc.checkpoint.load_checkpoint`, which checks that it fits), then
    only the generators are kept.

    Args:
      checkpoint: a run folder (its newest snapshot), a `model_<iteration>.weights.h5` or its `.json`;
        None: the newest snapshot of `dataset` under `output_dir` (Stage-II first, see `find_checkpoint`).
      dataset: with a path, the dataset the snapshot must have been trained on (None: any); without
        one, the dataset to search (None: "shapes").
      output_dir: where the training runs are (`OUTPUT_DIR`), searched when no path is given.
      stage: None: all the snapshot's stages; "stageI": only the Stage-I generator (of a Stage-I
        snapshot, or the one inside a Stage-II snapshot); "stageII": a Stage-II snapshot is required.

    Returns:
      The `TextToImageModels`.

    Raises:
      CheckpointError: nothing found (naming the folder and the command to run first), a snapshot of
        another dataset, a Stage-I snapshot where Stage-II is required, a missing `config.yml`, or
        weights that do not fit.
    """
    _check_stage(stage)
    if checkpoint is None:
        weights_path = find_checkpoint(dataset or "shapes", output_dir, stage)
    else:
        weights_path = resolve_checkpoint(checkpoint)
    record = read_metadata(weights_path)
    saved_stage = record.get("stage")
    if saved_stage not in STAGES:
        raise CheckpointError(f"{weights_path}: the checkpoint's record names no stage (got {saved_stage!r})")
    if stage == STAGE2 and saved_stage != STAGE2:
        raise CheckpointError(f"{weights_path}: this is a {saved_stage} checkpoint, a {STAGE2} one is needed "
                              f"(run `{MAKE_TARGET[STAGE2]}` first)")
    if checkpoint is not None and dataset is not None and record.get("dataset") != dataset:
        raise CheckpointError(f"{weights_path}: this checkpoint was trained on {record.get('dataset')}, "
                              f"not on {dataset}")
    cfg = load_run_config(weights_path)
    if saved_stage == STAGE1:
        gan = stage1_trainer.build_gan(cfg)
        record = load_checkpoint(gan, weights_path, stage=STAGE1)
        stage1_generator, stage2_generator = gan.generator, None
    else:
        stage1_generator, _ = stage1_trainer.build_networks(cfg)
        gan = stage2_trainer.build_gan(cfg, stage1_generator)
        record = load_checkpoint(gan, weights_path, stage=STAGE2)
        stage2_generator = None if stage == STAGE1 else gan.generator
    return TextToImageModels(config=cfg, stage=saved_stage, checkpoint=Path(weights_path), record=record,
                             stage1_generator=stage1_generator, stage2_generator=stage2_generator)


def encoder_dir(dataset_or_dir: str | os.PathLike = "shapes", models_dir: str | os.PathLike = MODELS_DIR) -> Path:
    """The text-encoder folder: `dataset_or_dir` itself if it is a folder or a `.keras` file, else
    `<models_dir>/<dataset>/text_encoder`."""
    path = Path(dataset_or_dir)
    if path.is_dir() or path.suffix == ".keras" or len(path.parts) > 1:
        return path
    return Path(models_dir) / str(dataset_or_dir) / TEXT_ENCODER_DIR


def load_encoder(dataset_or_dir: str | os.PathLike = "shapes", models_dir: str | os.PathLike = MODELS_DIR):
    """The trained char-CNN-RNN text encoder (`misc.text.char_cnn_rnn.CharCnnRnn`).

    Port of the encoder loading of the original demo's `get_embedding.lua` (original `demo/demo.py`).

    Args:
      dataset_or_dir: a dataset name (the encoder of `<models_dir>/<dataset>/text_encoder`), or the
        encoder folder (or its `.keras` file) itself.
      models_dir: where the trained models are.

    Returns:
      The `CharCnnRnn`; `misc.text.encoder.embed_sentences(encoder, sentences)` embeds text.

    Raises:
      CheckpointError: no trained encoder there (naming the folder and `make text-encoder`), or a
        damaged file.
    """
    path = encoder_dir(dataset_or_dir, models_dir)
    model_file = path if path.suffix == ".keras" else path / TEXT_ENCODER_FILE
    if not model_file.is_file():
        dataset = path.parent.name if path.name == TEXT_ENCODER_DIR else "<dataset>"
        raise CheckpointError(f"{path}: no trained text encoder ({TEXT_ENCODER_FILE}) here; run "
                              f"`make text-encoder DATASET={dataset}` first")
    return load_text_encoder(path)


def add_model_arguments(parser, action: str) -> None:
    """Add the options by which the demo and the export pick a trained model.

    `--dataset`, `--checkpoint`, `--ckt-dir`, `--stage`, `--encoder`; read them back with
    `resolve_model_arguments` and `load_model_arguments`.

    Args:
      parser: an `argparse.ArgumentParser`.
      action: the verb for the help texts ("draw", "export").
    """
    parser.add_argument("--dataset", default=None,
                        help=f"dataset whose newest snapshot and text encoder to {action} with (default: the "
                             "--checkpoint's dataset, else shapes)")
    parser.add_argument("--checkpoint", metavar="PATH",
                        help="a run folder or model_<iteration>.weights.h5 (default: the newest of the dataset "
                             "under --ckt-dir, Stage-II first)")
    parser.add_argument("--ckt-dir", default="ckt_logs", metavar="DIR", help="where the training runs are")
    parser.add_argument("--stage", choices=STAGES, default=None,
                        help=f"only this stage's snapshots (stageI: {action} with Stage-I only, also from a "
                             "Stage-II snapshot)")
    parser.add_argument("--encoder", metavar="DIR", help="text encoder folder (default models/<dataset>/text_encoder)")


def resolve_model_arguments(args) -> tuple[Path, str]:
    """The snapshot and dataset that `add_model_arguments`' options name (files only, nothing loaded).

    Returns:
      `(weights file, dataset name)`.

    Raises:
      CheckpointError: no such snapshot, or none trained yet (naming the command to run first).
    """
    if args.checkpoint:
        weights = resolve_checkpoint(args.checkpoint)
        return weights, args.dataset or read_metadata(weights).get("dataset") or "shapes"
    dataset = args.dataset or "shapes"
    return find_checkpoint(dataset, args.ckt_dir, args.stage), dataset


def has_encoder(dataset_or_dir: str | os.PathLike, models_dir: str | os.PathLike = MODELS_DIR) -> bool:
    """Whether a trained text encoder is where `load_encoder` looks."""
    path = encoder_dir(dataset_or_dir, models_dir)
    return (path if path.suffix == ".keras" else path / TEXT_ENCODER_FILE).is_file()


def load_model_arguments(args, weights: Path, dataset: str, encoder_required: bool = True):
    """The text encoder and the generators that `add_model_arguments`' options name.

    Args:
      args: the parsed options.
      weights, dataset: as `resolve_model_arguments` returns them.
      encoder_required: False: without `--encoder` and without a trained encoder of the dataset,
        give None for the encoder instead of failing.

    Returns:
      `(encoder or None, TextToImageModels)`.

    Raises:
      CheckpointError: a missing encoder, or one whose embedding size the generators do not take.
    """
    optional = not encoder_required and not args.encoder and not has_encoder(dataset)
    encoder = None if optional else load_encoder(args.encoder or dataset)
    models = load_generators(weights, dataset=args.dataset, stage=args.stage)
    if encoder is not None and encoder.emb_dim != models.text_dim:
        raise CheckpointError(f"{models.checkpoint}: the generators take {models.text_dim}-d text embeddings but the "
                              f"text encoder of {args.encoder or dataset} gives {encoder.emb_dim}-d ones")
    return encoder, models
