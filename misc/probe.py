"""How much of each shapes attribute a dataset's caption embeddings carry: a linear probe.

Not a port. A generator can only follow what its text embeddings encode, so before blaming the
GAN for ignoring, say, the shape, check that the shape can be read from the embeddings at all.
For each attribute (shape, colour, background, size, position), a ridge-regression one-vs-rest
classifier is fitted on the training captions that name it (embeddings standardised with the
training mean and deviation) and scored on the training and the test captions that name it.

    python -m misc.probe --data_dir Data/shapes

Reads `<data_dir>/<split>/char-CNN-RNN-embeddings.pickle` (written by `make text-encoder`) and the
captions in `text_c10/`; prints a table and writes JSON with `--json`.

`--write-oracle DIR` writes the other end of the scale: a copy of the dataset (its other files
linked, not copied) whose embeddings are "oracle" embeddings, each caption's named attributes as
one-hot blocks under a fixed random projection to 1024 dimensions (every attribute probes at 1.0).
Training the GAN on it (`--data_dir DIR`) shows what the GAN learns when the text side is perfect.

    python -m misc.probe --data_dir Data/shapes --write-oracle Data/shapes_oracle

`--discriminator RUN` asks a trained Stage-I discriminator which attributes it checks: real images
are scored with a caption of their true attributes, then with the caption changed in one attribute,
and the mean drop of the logit is reported per attribute (`--oracle` for a run trained on oracle
embeddings, else the captions are embedded by `--encoder`).

    python -m misc.probe --discriminator ckt_logs/shapes/stageI_<time> --data_dir Data/shapes

`--classify ATTRIBUTE` asks whether the Stage-I discriminator's image encoder can see an attribute at
all: the encoder (`--df-dim`, `--paper-activations`), freshly initialised, with a linear head on its
4 x 4 map, is trained as a classifier of the attribute on random 64 x 64 crops of the training
images (flipped too, except for the position) for `--steps`, then scored on centre crops of the
training and the test images (whose shape-colour pairs it never saw).

    python -m misc.probe --classify shape --df-dim 8 --steps 1500

`--decode` asks the same of the Stage-I generator: freshly initialised at `--gf-dim`, without the
conditioning augmentation's noise and with z = 0, it is trained as a plain decoder from the oracle
embedding of all five attributes of a training image to that image's centre crop (L1 loss) for
`--steps`; the judge then reads its outputs for the training and the test images. No discriminator
is involved, so this bounds how fast the generator can learn to draw what the caption names.

    python -m misc.probe --decode --gf-dim 16 --steps 2000 --data_dir Data/shapes
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from misc.cli import run_cli
from misc.datasets import EMBEDDING_FILES, crop_flip, load_embeddings
from misc.errors import DataError
from misc.judge import ATTRIBUTES, read_attributes
from misc.pickle_io import dump_pickle
from misc.shapes import ATTRIBUTE_NAMES, caption_attributes
from misc.text_encoder import (CROP_SIZE, center_crop, embed_sentences, images_to_float, load_captioned_split,
                               load_text_encoder)
from misc.utils import atomic_write_text, mkdir_p

# Ridge penalty on the standardised embeddings; the accuracies barely move between 1 and 100.
RIDGE = 10.0

# Oracle embeddings one-hot the values of each attribute of `misc.judge.ATTRIBUTES`, in its order.
# Entries of the projection ~ N(0, ORACLE_SCALE^2): about the per-dimension spread (0.16) of the
# embeddings `make text-encoder` writes, so the GAN sees inputs of the usual size.
ORACLE_SCALE = 0.09
ORACLE_DIM = 1024


def fit_probe(features: np.ndarray, labels: Sequence[str], ridge: float = RIDGE) -> tuple[np.ndarray, list[str]]:
    """Least squares on one-hot targets with an L2 penalty: weights (D + 1, K) and the K class names.

    Args:
      features: float (N, D), already standardised.
      labels: N class names.
      ridge: L2 penalty (the bias column is not penalised).
    """
    classes = sorted(set(labels))
    x = np.concatenate([features, np.ones((len(features), 1), features.dtype)], axis=1).astype(np.float64)
    targets = (np.asarray(labels)[:, None] == np.asarray(classes)[None, :]).astype(np.float64)
    penalty = ridge * np.eye(x.shape[1])
    penalty[-1, -1] = 0.0
    weights = np.linalg.solve(x.T @ x + penalty, x.T @ targets)
    return weights, classes


def predict_probe(weights: np.ndarray, classes: Sequence[str], features: np.ndarray) -> np.ndarray:
    """Class names (N,) predicted by `fit_probe`'s weights for standardised features (N, D)."""
    x = np.concatenate([features, np.ones((len(features), 1), features.dtype)], axis=1).astype(np.float64)
    return np.asarray(classes)[np.argmax(x @ weights, axis=1)]


def attribute_probe(train_embeddings: np.ndarray, train_named: Sequence[dict],
                    test_embeddings: np.ndarray, test_named: Sequence[dict],
                    attributes: Sequence[str] = ATTRIBUTE_NAMES, ridge: float = RIDGE) -> dict:
    """Linear-probe accuracy per attribute, on the captions that name it.

    Args:
      train_embeddings, test_embeddings: float (N, D), one row per caption.
      train_named, test_named: per caption, {attribute: value} of what it names.
      attributes: attributes to probe.
      ridge: L2 penalty.

    Returns:
      {attribute: {"classes", "train", "test", "train_captions", "test_captions", "majority"}}, the
      accuracies None where no caption names the attribute; `majority` is the test accuracy of
      always answering the most common training value (the floor to compare with).
    """
    mean = train_embeddings.mean(axis=0)
    std = train_embeddings.std(axis=0) + 1e-6
    out = {}
    for name in attributes:
        train_rows = [i for i, named in enumerate(train_named) if name in named]
        test_rows = [i for i, named in enumerate(test_named) if name in named]
        if len(set(train_named[i][name] for i in train_rows)) < 2:
            out[name] = {"classes": 0, "train": None, "test": None, "train_captions": len(train_rows),
                         "test_captions": len(test_rows), "majority": None}
            continue
        train_labels = [train_named[i][name] for i in train_rows]
        weights, classes = fit_probe((train_embeddings[train_rows] - mean) / std, train_labels, ridge)
        result = {"classes": len(classes), "train_captions": len(train_rows), "test_captions": len(test_rows)}
        for split, rows, embeddings, named in (("train", train_rows, train_embeddings, train_named),
                                               ("test", test_rows, test_embeddings, test_named)):
            if not rows:
                result[split] = None
                continue
            predicted = predict_probe(weights, classes, (embeddings[rows] - mean) / std)
            result[split] = float(np.mean(predicted == np.array([named[i][name] for i in rows])))
        values, counts = np.unique(train_labels, return_counts=True)
        most_common = values[np.argmax(counts)]
        result["majority"] = (float(np.mean([test_named[i][name] == most_common for i in test_rows]))
                              if test_rows else None)
        out[name] = result
    return out


def load_named_embeddings(data_dir: str | os.PathLike, split: str) -> tuple[np.ndarray, list[dict]]:
    """Every caption embedding of a split (N * C, D) and what each caption names.

    Raises:
      DataError: missing files, or a caption that is not a shapes caption.
    """
    data = load_captioned_split(data_dir, split, with_images=False)
    path = Path(data_dir) / split / EMBEDDING_FILES["cnn-rnn"]
    if not path.is_file():
        raise DataError(f"{path}: embeddings not found; `make text-encoder` writes them")
    embeddings = load_embeddings(path, None)
    if embeddings.shape[:2] != (len(data), len(data.captions[0])):
        raise DataError(f"{path}: has shape {embeddings.shape}, expected ({len(data)}, "
                        f"{len(data.captions[0])}, D) for {split}'s captions")
    return embeddings.reshape(-1, embeddings.shape[-1]), named_captions(data_dir, data)


def named_captions(data_dir: str | os.PathLike, data) -> list[dict]:
    """What each caption of a `CaptionedSplit` names, captions in order (image by image).

    Raises:
      DataError: a caption is not a shapes caption (naming its file and line).
    """
    named = []
    for filename, captions in zip(data.filenames, data.captions):
        for k, caption in enumerate(captions):
            try:
                named.append(caption_attributes(caption))
            except ValueError as err:
                raise DataError(f"{Path(data_dir) / 'text_c10' / filename}.txt: line {k + 1}: {err}") from None
    return named


def oracle_embeddings(named: Sequence[dict], dim: int = ORACLE_DIM, seed: int = 0,
                      scale: float = ORACLE_SCALE) -> np.ndarray:
    """Embeddings that hold exactly what each caption names: float32 (N, dim).

    Each caption's named attributes become one-hot blocks (one per attribute, zero where the
    caption does not name it; the blocks of `ATTRIBUTES`, 30 values in all), mapped to `dim`
    dimensions by one fixed random matrix with N(0, scale^2) entries drawn from `seed`.
    """
    sizes = [len(values) for values in ATTRIBUTES.values()]
    offsets = dict(zip(ATTRIBUTES, np.cumsum([0] + sizes[:-1])))
    codes = np.zeros((len(named), sum(sizes)), np.float32)
    for i, record in enumerate(named):
        for name, value in record.items():
            codes[i, offsets[name] + ATTRIBUTES[name].index(value)] = 1.0
    projection = scale * np.random.default_rng(seed).standard_normal((sum(sizes), dim))
    return codes @ projection.astype(np.float32)


def _is_copy_or_empty(out: Path) -> bool:
    """Whether the folder `out` is empty or holds only what `write_oracle_dataset` writes: symbolic
    links, and `train/`, `test/` folders of symbolic links and the embeddings pickle."""
    embeddings_file = EMBEDDING_FILES["cnn-rnn"]
    for item in out.iterdir():
        if item.name in ("train", "test") and item.is_dir() and not item.is_symlink():
            if not all(sub.is_symlink() or sub.name == embeddings_file for sub in item.iterdir()):
                return False
        elif not item.is_symlink():
            return False
    return True


def write_oracle_dataset(data_dir: str | os.PathLike, out: str | os.PathLike, seed: int = 0,
                         blank: bool = False) -> Path:
    """A dataset folder like `data_dir` whose embeddings pickles are `oracle_embeddings`.

    With `blank`, every embedding is zero instead: the captions carry nothing, and a GAN trained on
    the copy with `TRAIN.B_WRONG: False` is unconditional (its wrong pairs would be real pairs).
    Every other file and folder of `data_dir` (and of its `train/`, `test/`) is a symbolic link to
    the original; the two embeddings pickles (N, 10, 1024) are written atomically.

    Raises:
      DataError: `data_dir` lacks a split or a caption, or a caption is not a shapes caption;
        `out` is the dataset, a file, a folder holding anything but an earlier copy, or cannot be made.
    """
    data_dir, out = Path(data_dir).resolve(), Path(out)
    if out.resolve() == data_dir:
        raise DataError(f"{out}: is the dataset itself; the oracle copy needs a folder of its own")
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder; the oracle copy needs a folder of its own")
    if out.is_dir() and not _is_copy_or_empty(out):
        raise DataError(f"{out}: holds files of its own (not an earlier oracle copy); "
                        "choose a new or empty folder, nothing was written")
    splits = {}
    for split in ("train", "test"):  # everything read before anything is written
        data = load_captioned_split(data_dir, split, with_images=False)
        if blank:
            embeddings = np.zeros((len(data) * len(data.captions[0]), ORACLE_DIM), np.float32)
        else:
            embeddings = oracle_embeddings(named_captions(data_dir, data), seed=seed)
        splits[split] = embeddings.reshape(len(data), len(data.captions[0]), -1)
    embeddings_file = EMBEDDING_FILES["cnn-rnn"]
    for folder in (Path(), Path("train"), Path("test")):
        try:
            mkdir_p(out / folder)
        except OSError as err:
            raise DataError(f"{out / folder}: cannot make the folder ({err.strerror})") from err
        for item in (data_dir / folder).iterdir():
            link = out / folder / item.name
            if (folder == Path() and item.name in ("train", "test")) or item.name == embeddings_file:
                continue
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(item)
    for split, embeddings in splits.items():
        dump_pickle(embeddings, out / split / embeddings_file, protocol=2)
    return out


def full_caption(record: dict) -> str:
    """One caption naming all five attributes of an image record, e.g.
    'a small red star at the left on a blue background'."""
    place = "in the centre" if record["position"] == "centre" else f"at the {record['position']}"
    return f"a {record['size']} {record['colour']} {record['shape']} {place} on a {record['background']} background"


def changed_record(record: dict, name: str, rng: np.random.Generator) -> dict:
    """`record` with attribute `name` set to another random value (a colour never equal to the other colour)."""
    other = {"colour": record["background"], "background": record["colour"]}.get(name)
    choices = [v for v in ATTRIBUTES[name] if v != record[name] and v != other]
    return {**record, name: choices[rng.integers(len(choices))]}


def discriminator_probe(discriminator, images: np.ndarray, records: Sequence[dict], embed,
                        attributes: Sequence[str] = ATTRIBUTE_NAMES, seed: int = 0) -> dict:
    """Mean drop of a discriminator's logit on real images when their caption names one wrong value.

    Args:
      discriminator: a Stage-I discriminator, called as `((images, embeddings), training=True)` (the
        original always ran D with batch statistics).
      images: float32 (N, 64, 64, 3) in [-1, 1].
      records: the images' attributes (all five).
      embed: list of captions -> float32 (N, D) embeddings.
      attributes: the attributes to change, one at a time.
      seed: seeds the replacement values.

    Returns:
      {"true": mean logit with the true caption, attribute: mean (true - changed) logit}.
    """
    rng = np.random.default_rng(seed)

    def logits(recs):
        out = discriminator((images, embed([full_caption(r) for r in recs])), training=True)
        return np.asarray(out, dtype=np.float64)

    true = logits(records)
    result = {"true": float(true.mean())}
    for name in attributes:
        result[name] = float((true - logits([changed_record(r, name, rng) for r in records])).mean())
    return result


def _discriminator_probe_cli(args) -> int:
    from misc.checkpoint import load_checkpoint, read_metadata, resolve_checkpoint
    from misc.inference import load_run_config
    from stageI.trainer import build_gan

    if args.images < 1:
        raise DataError(f"--images {args.images}: give at least 1 real image per split")
    weights = resolve_checkpoint(args.discriminator)
    if read_metadata(weights).get("stage") != "stageI":
        raise DataError(f"{weights}: not a Stage-I snapshot; --discriminator probes Stage-I's discriminator")
    if args.oracle:
        def embed(sentences):
            return oracle_embeddings([caption_attributes(c) for c in sentences])
    else:
        encoder = load_text_encoder(args.encoder)

        def embed(sentences):
            return embed_sentences(encoder, sentences, progress=False)
    gan = build_gan(load_run_config(weights))
    load_checkpoint(gan, weights, stage="stageI")
    print(f"discriminator of {weights}; text {'oracle embeddings' if args.oracle else 'from ' + str(args.encoder)}")
    print(f"{'split':<8}{'logit, true caption':>21}" + "".join(f"{name:>12}" for name in ATTRIBUTE_NAMES))
    result = {}
    for split in ("train", "test"):
        data = load_captioned_split(args.data_dir, split)
        count = min(args.images, len(data))
        images = images_to_float(center_crop(data.images[:count]))
        records = read_attributes(args.data_dir, split, data.filenames[:count])
        result[split] = discriminator_probe(gan.discriminator, images, records, embed)
        print(f"{split:<8}{result[split]['true']:>21.2f}" + "".join(f"{result[split][n]:>12.2f}"
                                                                   for n in ATTRIBUTE_NAMES))
    print("(mean drop of the logit when the caption names a wrong value of the attribute)")
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(result, indent=2) + "\n")
    return 0


def encoder_classifier(data_dir: str | os.PathLike, attribute: str, df_dim: int, paper_activations: bool = False,
                       steps: int = 1500, batch_size: int = 32, lr: float = 1e-3, seed: int = 0,
                       log_every: int = 0) -> dict:
    """Train the Stage-I discriminator's image encoder, with a linear head, to classify one attribute.

    Adam (beta1 0.5, as the GAN's) on the softmax cross-entropy; random crops and flips of the
    76 x 76 training images by the GAN's own rule (`misc.datasets.crop_flip`), without the flips
    when the attribute is the position.

    Args:
      data_dir: shapes dataset root.
      attribute: one of `ATTRIBUTE_NAMES`.
      df_dim: the encoder's width (`GAN.DF_DIM`).
      paper_activations: `GAN.D_PAPER_ACTIVATIONS`.
      steps, batch_size, lr, seed: training settings.
      log_every: print the accuracies every this many steps (0: only at the end).

    Returns:
      dict with `train` and `test` accuracy (centre crops, every image of the split) and the settings.
    """
    import keras
    import tensorflow as tf

    from stageI.model import StageIDiscriminator

    if attribute not in ATTRIBUTE_NAMES:
        raise DataError(f"--classify: unknown attribute {attribute!r}; one of {', '.join(ATTRIBUTE_NAMES)}")
    if steps < 1 or batch_size < 1 or df_dim < 1:
        raise DataError(f"--classify needs positive steps, batch size and --df-dim, got --steps {steps}, "
                        f"batch size {batch_size} and --df-dim {df_dim}")
    keras.utils.set_random_seed(seed)
    values = list(ATTRIBUTES[attribute])
    images, labels = {}, {}
    for split in ("train", "test"):
        data = load_captioned_split(data_dir, split)
        images[split] = data.images
        labels[split] = np.array([values.index(r[attribute])
                                  for r in read_attributes(data_dir, split, data.filenames)])
    encoder = StageIDiscriminator(df_dim=df_dim, paper_activations=paper_activations).make_image_encoder()
    model = keras.Sequential([encoder, keras.layers.Flatten(), keras.layers.Dense(len(values))])
    model.build((None, CROP_SIZE, CROP_SIZE, 3))
    optimizer = keras.optimizers.Adam(lr, beta_1=0.5)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))

    def accuracy(split):
        crops = images_to_float(center_crop(images[split]))
        predicted = np.concatenate([np.argmax(model(crops[i:i + 256], training=False), axis=-1)
                                    for i in range(0, len(crops), 256)])
        return float(np.mean(predicted == labels[split]))

    rng = np.random.default_rng(seed)
    for step in range(1, steps + 1):
        picks = rng.integers(0, len(images["train"]), batch_size)
        batch, _, _ = crop_flip(images["train"], picks, CROP_SIZE, rng, flip=attribute != "position")
        train_step(images_to_float(batch), labels["train"][picks])
        if log_every and step % log_every == 0 and step < steps:
            print(f"step {step}: train {accuracy('train'):.3f}, test {accuracy('test'):.3f}", flush=True)
    return {"attribute": attribute, "df_dim": df_dim, "paper_activations": paper_activations, "steps": steps,
            "seed": seed, "train": accuracy("train"), "test": accuracy("test")}


def generator_decoder(data_dir: str | os.PathLike, gf_dim: int = 16, steps: int = 1500, batch_size: int = 32,
                      lr: float = 1e-3, seed: int = 0, judge: str | os.PathLike = "models/shapes/judge",
                      ef_dim: int = 128, z_dim: int = 100, log_every: int = 0,
                      grid: str | os.PathLike | None = None) -> dict:
    """Train the Stage-I generator as a decoder of oracle embeddings and let the judge read its outputs.

    Input: the oracle embedding (`oracle_embeddings`) of all five attributes of an image, z = 0, no
    conditioning-augmentation noise. Target: the image's 64 x 64 centre crop. L1 loss, Adam (beta1
    0.5, as the GAN's), batches drawn with replacement.

    Args:
      data_dir: shapes dataset root (or a `misc.shapes --hold` copy).
      gf_dim, ef_dim, z_dim: the generator's `GAN.GF_DIM`, `GAN.EMBEDDING_DIM`, `Z_DIM` (the
        defaults are those of `stageI/cfg/shapes.yml`).
      steps, batch_size, lr, seed: training settings.
      judge: folder of the trained shapes judge.
      log_every: print the judge's readings every this many steps (0: only at the end).
      grid: if given, write the outputs for 8 x 8 test images, spread over the split, to this file
        (JPEG if it ends in .jpg or .jpeg, else PNG).

    Returns:
      dict with the settings, the last batch's `l1` and, for `train` and `test`, the fraction of
      the split's outputs whose attribute the judge reads as the image's (moving-average batch norm).
    """
    import keras
    import tensorflow as tf

    from misc.judge import accuracy_per_attribute, load_judge
    from misc.sheets import save_image
    from misc.visualize import to_uint8
    from stageI.model import StageIGenerator

    if min(steps, batch_size, gf_dim) < 1:
        raise DataError(f"--decode needs positive steps, batch size and --gf-dim, got --steps {steps}, "
                        f"batch size {batch_size} and --gf-dim {gf_dim}")
    if grid:  # found out before the training, not after it
        if Path(grid).is_dir():
            raise DataError(f"--grid {grid}: is a folder; give an image file name")
        try:
            mkdir_p(Path(grid).parent)
        except OSError as err:
            raise DataError(f"--grid {grid}: cannot make its folder ({err.strerror})") from err
    reader = load_judge(judge)
    keras.utils.set_random_seed(seed)
    targets, inputs, records = {}, {}, {}
    for split in ("train", "test"):
        data = load_captioned_split(data_dir, split)
        records[split] = read_attributes(data_dir, split, data.filenames)
        targets[split] = images_to_float(center_crop(data.images))
        inputs[split] = oracle_embeddings([{k: r[k] for k in ATTRIBUTE_NAMES} for r in records[split]])
    generator = StageIGenerator(gf_dim=gf_dim, ef_dim=ef_dim, z_dim=z_dim, cond_augmentation=False)
    generator.build(((None, inputs["train"].shape[1]), (None, z_dim)))
    optimizer = keras.optimizers.Adam(lr, beta_1=0.5)

    @tf.function
    def train_step(e, x):
        with tf.GradientTape() as tape:
            y, _, _ = generator((e, tf.zeros((tf.shape(e)[0], z_dim))), training=True)
            loss = tf.reduce_mean(tf.abs(y - x))
        grads = tape.gradient(loss, generator.trainable_variables)
        optimizer.apply_gradients(zip(grads, generator.trainable_variables))
        return loss

    def outputs(split):
        e = inputs[split]
        return to_uint8(np.concatenate([
            generator((e[i:i + 256], np.zeros((len(e[i:i + 256]), z_dim), np.float32)), training=False)[0]
            for i in range(0, len(e), 256)]))

    def readings():
        return {split: accuracy_per_attribute(reader, outputs(split), records[split]) for split in ("train", "test")}

    rng = np.random.default_rng(seed)
    for step in range(1, steps + 1):
        picks = rng.integers(0, len(targets["train"]), batch_size)
        loss = float(train_step(inputs["train"][picks], targets["train"][picks]))
        if log_every and step % log_every == 0 and step < steps:
            read = readings()
            print(f"step {step}: L1 {loss:.3f}, shape read on train {read['train']['shape']:.3f}, "
                  f"test {read['test']['shape']:.3f}", flush=True)
    result = {"gf_dim": gf_dim, "steps": steps, "seed": seed, "l1": loss, **readings()}
    if grid:
        picks = np.linspace(0, len(inputs["test"]) - 1, 64).astype(int)
        tiles = outputs("test")[picks]  # (64, s, s, 3) -> 8 rows of 8
        size = tiles.shape[1]
        save_image(tiles.reshape(8, 8, size, size, 3).transpose(0, 2, 1, 3, 4).reshape(8 * size, 8 * size, 3),
                   grid)
    return result


def format_table(result: dict) -> str:
    lines = [f"{'attribute':<12}{'train':>8}{'test':>8}{'majority':>10}{'captions (test)':>17}"]
    for name, r in result.items():
        cells = [f"{r[k]:>8.3f}" if r[k] is not None else f"{'-':>8}" for k in ("train", "test")]
        majority = f"{r['majority']:>10.3f}" if r["majority"] is not None else f"{'-':>10}"
        lines.append(f"{name:<12}{cells[0]}{cells[1]}{majority}{r['test_captions']:>17}")
    return "\n".join(lines)


# The modes of the command (None: the embedding probe) and the options that only one mode reads.
_MODES = {"write_oracle": "--write-oracle", "discriminator": "--discriminator", "classify": "--classify",
          "decode": "--decode"}
_MODE_OPTIONS = {  # dest: (flag, the modes that read it)
    "ridge": ("--ridge", (None,)),
    "json": ("--json", (None, "classify", "discriminator", "decode")),
    "blank": ("--blank", ("write_oracle",)),
    "oracle": ("--oracle", ("discriminator",)),
    "encoder": ("--encoder", ("discriminator",)),
    "images": ("--images", ("discriminator",)),
    "df_dim": ("--df-dim", ("classify",)),
    "paper_activations": ("--paper-activations", ("classify",)),
    "steps": ("--steps", ("classify", "decode")),
    "seed": ("--seed", ("classify", "decode")),
    "gf_dim": ("--gf-dim", ("decode",)),
    "judge": ("--judge", ("decode",)),
    "grid": ("--grid", ("decode",)),
}


def _mode(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str | None:
    """The one mode `args` asks for (None: the embedding probe).

    Raises:
      DataError: two modes at once, or an option given that the chosen mode does not read.
    """
    modes = [dest for dest in _MODES if getattr(args, dest)]
    if len(modes) > 1:
        raise DataError(f"{' and '.join(_MODES[m] for m in modes)}: choose one of them per command")
    mode = modes[0] if modes else None
    for dest, (flag, readers) in _MODE_OPTIONS.items():
        if getattr(args, dest) != parser.get_default(dest) and mode not in readers:
            wanted = " or ".join(_MODES[r] if r else "the embedding probe (no mode option)" for r in readers)
            raise DataError(f"{flag}: only with {wanted}; this command would ignore it")
    return mode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m misc.probe",
        description="Linear-probe accuracy of each shapes attribute in the caption embeddings: fitted on "
                    "the training captions that name it, scored on the training and test captions that "
                    "name it.")
    parser.add_argument("--data_dir", default="Data/shapes", help="shapes dataset root (default: %(default)s)")
    parser.add_argument("--ridge", type=float, default=RIDGE, help="L2 penalty (default: %(default)s)")
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    parser.add_argument("--write-oracle", metavar="DIR",
                        help="instead, write a copy of the dataset into DIR (other files linked) whose "
                             "embeddings hold exactly the attributes each caption names")
    parser.add_argument("--blank", action="store_true",
                        help="with --write-oracle: all-zero embeddings instead, for an unconditional GAN "
                             "(train it with --set TRAIN.B_WRONG=False)")
    parser.add_argument("--discriminator", metavar="RUN",
                        help="instead, probe the discriminator of this Stage-I run folder or snapshot: the drop "
                             "of its logit on real images when the caption names one wrong attribute value")
    parser.add_argument("--oracle", action="store_true",
                        help="with --discriminator: the run was trained on --write-oracle embeddings")
    parser.add_argument("--encoder", default="models/shapes/text_encoder",
                        help="with --discriminator: the text encoder of the run (default: %(default)s)")
    parser.add_argument("--images", type=int, default=512,
                        help="with --discriminator: real images per split (default: %(default)s)")
    parser.add_argument("--classify", metavar="ATTRIBUTE", choices=ATTRIBUTE_NAMES,
                        help="instead, train the Stage-I discriminator's image encoder with a linear head to "
                             "classify this attribute (one of %(choices)s) and report its accuracy")
    parser.add_argument("--df-dim", type=int, default=8,
                        help="with --classify: the encoder's width, GAN.DF_DIM (default: %(default)s)")
    parser.add_argument("--paper-activations", action="store_true",
                        help="with --classify: leaky ReLU after convolutions 3 and 4 (GAN.D_PAPER_ACTIVATIONS)")
    parser.add_argument("--decode", action="store_true",
                        help="instead, train the Stage-I generator as a plain decoder (oracle embedding of an "
                             "image's five attributes to the image, L1 loss, no discriminator) and report "
                             "what the judge reads in its outputs")
    parser.add_argument("--gf-dim", type=int, default=16,
                        help="with --decode: the generator's width, GAN.GF_DIM (default: %(default)s)")
    parser.add_argument("--judge", default="models/shapes/judge",
                        help="with --decode: the shapes judge (default: %(default)s)")
    parser.add_argument("--grid", metavar="FILE",
                        help="with --decode: also write the outputs for 64 test images to this image file")
    parser.add_argument("--steps", type=int, default=1500,
                        help="with --classify or --decode: training steps of batch 32 (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="with --classify or --decode: seed of the initial weights and of the batches; "
                             "with --classify the test-image accuracy of the shape moves by more than 0.2 "
                             "between seeds (default: %(default)s)")
    args = parser.parse_args(argv)
    mode = _mode(parser, args)
    if not Path(args.data_dir).is_dir():
        raise DataError(f"{args.data_dir}: dataset folder not found (`make data` writes Data/shapes)")
    if mode == "classify":
        result = encoder_classifier(args.data_dir, args.classify, args.df_dim, args.paper_activations,
                                    steps=args.steps, seed=args.seed, log_every=250)
        activations = "paper" if args.paper_activations else "code"
        print(f"{args.classify} read by the Stage-I discriminator's image encoder (DF_DIM {args.df_dim}, "
              f"{activations} activations, seed {args.seed}) after {args.steps} steps: "
              f"train images {result['train']:.3f}, test images {result['test']:.3f}, "
              f"chance {1 / len(ATTRIBUTES[args.classify]):.3f}")
        if args.json:
            atomic_write_text(Path(args.json), json.dumps(result, indent=2) + "\n")
        return 0
    if mode == "decode":
        result = generator_decoder(args.data_dir, args.gf_dim, steps=args.steps, seed=args.seed,
                                   judge=args.judge, log_every=250, grid=args.grid)
        print(f"the Stage-I generator (GF_DIM {args.gf_dim}, seed {args.seed}) as a decoder of oracle "
              f"embeddings after {args.steps} steps, L1 {result['l1']:.3f}; the judge reads as the image's:")
        print(f"{'attribute':<12}{'train':>8}{'test':>8}")
        for name in ATTRIBUTE_NAMES:
            print(f"{name:<12}{result['train'][name]:>8.3f}{result['test'][name]:>8.3f}")
        if args.json:
            atomic_write_text(Path(args.json), json.dumps(result, indent=2) + "\n")
        return 0
    if mode == "discriminator":
        return _discriminator_probe_cli(args)
    if mode == "write_oracle":
        out = write_oracle_dataset(args.data_dir, args.write_oracle, blank=args.blank)
        if args.blank:
            print(f"all-zero embeddings: {out}/{{train,test}}/{EMBEDDING_FILES['cnn-rnn']} (an unconditional "
                  f"GAN: --data_dir {out} --set TRAIN.B_WRONG=False)")
        else:
            print(f"oracle embeddings: {out}/{{train,test}}/{EMBEDDING_FILES['cnn-rnn']} "
                  f"(train a GAN on them with --data_dir {out})")
        return 0
    train_x, train_named = load_named_embeddings(args.data_dir, "train")
    test_x, test_named = load_named_embeddings(args.data_dir, "test")
    result = attribute_probe(train_x, train_named, test_x, test_named, ridge=args.ridge)
    print(format_table(result))
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    run_cli(main)
