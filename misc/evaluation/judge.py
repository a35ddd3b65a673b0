"""The shapes judge: a small CNN that reads the attributes of a shapes image, to score generated images.

Not a port. The original scored its samples with an Inception-v3 fine-tuned on the test classes
hanzhanggit/StackGAN-inception-model; the `shapes` dataset instead knows every image's attributes exactly
(`<split>/attributes.json`, see `misc.data.shapes`), so a classifier trained on the real training images
can tell whether a generated image shows what its caption asks for. `misc.evaluation.evaluate` uses it.

* `ShapesJudge` is the network: four 3x3 convolutions with batch norm, ReLU and a 2x2 max pool
  each (64 -> 4 pixels; `channels` x1, x2, x4, x8), a dense layer of `feature_dim` ReLU units (the
  features in which `misc.evaluation.evaluate` measures a Frechet distance), and one linear head per
  attribute: shape, colour, background, size, position;
* `train_judge` trains it on the TRAIN split (random 64x64 crops of the 76x76 images, the view the
  Stage-I GAN trains on; no flips, because captions say "on the left"; most images repainted in
  other palette colours by `recolour`, so that shape and colour are learnt apart; half of the crops
  blurred by `blur`, so that flat, soft generated shapes read as what they are), then measures
  its accuracy on the TEST split's centre crops, whose (shape, colour) classes it never saw: the
  ceiling of every judge score;
* `load_judge`, `judge_images`: load a trained judge and apply it.

Run `python -m misc.evaluation.judge --data_dir Data/shapes --out models/shapes/judge` (or `make judge`).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageFilter

from misc.cli import import_tensorflow, run_cli
from misc.errors import CheckpointError, DataError, StackGANError

tf = import_tensorflow()
import keras  # noqa: E402  (after the quiet TensorFlow import)

from misc.data import shapes  # noqa: E402
from misc.datasets import LR_IMSIZE, center_crop, images_to_float, load_captioned_split  # noqa: E402
from misc.utils import atomic_path, atomic_write_text, mkdir_p  # noqa: E402
from misc.utils import progress as progress_bar  # noqa: E402

# The attributes the judge reads, one head each, with their values in head-output order.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": shapes.SHAPES,
    "colour": tuple(shapes.PALETTE),
    "background": tuple(shapes.PALETTE),
    "size": tuple(shapes.SIZES),
    "position": shapes.POSITIONS,
}
ATTRIBUTES_FILE = "attributes.json"
JUDGE_FILE = "judge.keras"
OPTIONS_FILE = "train_options.json"
DONE_FILE = "DONE"  # written last by `train_judge`: the judge and its options are complete
INPUT_SIZE = LR_IMSIZE  # Stage-I's output side; real 76x76 images are cropped to it, larger images resized
# Measured on the shapes dataset (docs/evaluation.md): 60 epochs of the 1440 training images with
# half of the crops blurred (1380 steps, 628 s on 2 CPU cores beside another job) give test-split
# accuracies of 0.977 to 1.000 per attribute. Without blur, 30 epochs were enough for the real images.
DEFAULT_EPOCHS = 60
BATCH_SIZE = 64
LEARNING_RATE = 2e-3
CHANNELS = 16
FEATURE_DIM = 256
# Most training images are repainted in other colours (`recolour`); the rest are shown as they are.
RECOLOUR_PROBABILITY = 0.8
# Half of the training crops are blurred (`blur`, Gaussian, standard deviation drawn uniformly from
# BLUR_SIGMA pixels): generated images are flat, without the real images' background noise, and a
# judge trained on the real images as they are misreads many of their shapes, soft or crisp
# (docs/shapes_investigation.md, "A judge that reads generated shapes better"): of 64 crisp
# decoder outputs it read 24 right, this one all 64.
# With (0.5, 2.0) and 30 epochs the real test shapes read less well (0.87 against 0.97); with
# (0.3, 1.5) and 60 epochs as well (0.98). `--blur-probability 0 --epochs 30` is the earlier judge.
BLUR_PROBABILITY = 0.5
BLUR_SIGMA = (0.3, 1.5)

MAKE_IT = ("train it with `python -m misc.evaluation.judge --data_dir DATA_DIR --out {out}` "
           "(or `make judge`)")


# --------------------------------------------------------------------------------------------
# What a caption names
# --------------------------------------------------------------------------------------------

# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

def read_attributes(data_dir: str | os.PathLike, split: str, filenames: Sequence[str]) -> list[dict]:
    """The `<split>/attributes.json` records of `filenames`, in that order.

    Args:
      data_dir: dataset root.
      split: 'train' or 'test'.
      filenames: the split's filename keys (`filenames.pickle`).

    Returns:
      One dict per filename with at least the keys of `ATTRIBUTES`.

    Raises:
      DataError: the file is missing or malformed, lacks an image, or holds an unknown value.
    """
    path = Path(data_dir) / split / ATTRIBUTES_FILE
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; only the shapes dataset has per-image attributes "
                        "(`make data` writes it)") from None
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not readable JSON ({type(err).__name__})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) and "filename" in r for r in records):
        raise DataError(f"{path}: expected a list of records with a 'filename' each")
    by_name = {r["filename"]: r for r in records}
    out = []
    for name in filenames:
        record = by_name.get(name)
        if record is None:
            raise DataError(f"{path}: has no record of image {name!r}")
        for attribute, values in ATTRIBUTES.items():
            if record.get(attribute) not in values:
                raise DataError(f"{path}: image {name!r} has {attribute} {record.get(attribute)!r}, "
                                f"expected one of {list(values)}")
        out.append(record)
    return out


def attribute_labels(records: Sequence[dict]) -> np.ndarray:
    """Value indices (N, len(ATTRIBUTES)) int32 of records, columns in `ATTRIBUTES` order."""
    return np.array([[ATTRIBUTES[name].index(r[name]) for name in ATTRIBUTES] for r in records],
                    dtype=np.int32).reshape(len(records), len(ATTRIBUTES))


def fit_to_input(image: np.ndarray) -> np.ndarray:
    """A uint8 (H, W, 3) image at the judge's 64x64: as it is, or bicubic-resized as `misc.data.shapes`."""
    if image.shape[:2] == (INPUT_SIZE, INPUT_SIZE):
        return image
    return shapes.downsample(image, INPUT_SIZE)


# --------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="stackgan")
class ShapesJudge(keras.Model):
    """Small CNN with one classification head per shapes attribute (not a port; module docstring).

    Args:
      attributes: {attribute: values}, one head of len(values) logits each; `ATTRIBUTES` by default.
      channels: channels of the first convolution (then x2, x4, x8).
      feature_dim: width of the penultimate layer, the features `misc.evaluation.evaluate` compares.

    Call args:
      inputs: images in [-1, 1], float32 (B, 64, 64, 3).
      training: batch norm uses batch statistics when True.

    Returns:
      {"features": (B, feature_dim), <attribute>: logits (B, len(values)) for each attribute}.
    """

    def __init__(self, attributes: dict[str, Sequence[str]] | None = None, channels: int = CHANNELS,
                 feature_dim: int = FEATURE_DIM, **kwargs):
        super().__init__(**kwargs)
        self.attributes = {name: list(values) for name, values in (attributes or ATTRIBUTES).items()}
        self.channels = int(channels)
        self.feature_dim = int(feature_dim)
        layers = []
        # Full-resolution convolutions then 2x2 max pools: the points of a small star or cross
        # (16 pixels wide) are lost by stride-2 convolutions (measured: 77 % test shape accuracy).
        for i, multiple in enumerate((1, 2, 4, 8)):
            layers += [keras.layers.Conv2D(self.channels * multiple, 3, padding="same", use_bias=False,
                                           name=f"conv{i + 1}"),
                       keras.layers.BatchNormalization(name=f"bn{i + 1}"),
                       keras.layers.ReLU(name=f"relu{i + 1}"),
                       keras.layers.MaxPooling2D(2, name=f"pool{i + 1}")]
        # Flatten, not global pooling: the position heads need to know where things are.
        layers += [keras.layers.Flatten(name="flatten"),
                   keras.layers.Dense(self.feature_dim, activation="relu", name="features")]
        self.body = keras.Sequential(layers, name="body")
        # One dense layer holds every head (split after), so no layer sits in a dict (stack notes G6).
        self.head_sizes = [len(values) for values in self.attributes.values()]
        self.heads = keras.layers.Dense(sum(self.head_sizes), name="heads")

    def build(self, input_shape=(None, INPUT_SIZE, INPUT_SIZE, 3)):
        self.call(keras.KerasTensor(tuple(input_shape)))
        self.built = True

    def call(self, inputs, training=False):
        features = self.body(inputs, training=training)
        logits = keras.ops.split(self.heads(features), np.cumsum(self.head_sizes)[:-1].tolist(), axis=-1)
        return {"features": features, **dict(zip(self.attributes, logits))}

    def get_config(self):
        return {**super().get_config(), "attributes": self.attributes, "channels": self.channels,
                "feature_dim": self.feature_dim}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def judge_images(judge: ShapesJudge, images: np.ndarray, batch_size: int = 256
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Features and predicted attribute values of 64x64 images.

    Args:
      judge: a trained `ShapesJudge`.
      images: uint8 (N, 64, 64, 3) (see `fit_to_input`).
      batch_size: images per forward pass.

    Returns:
      (features float32 (N, feature_dim), {attribute: predicted values, a str array (N,)}).
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3) or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 (N, {INPUT_SIZE}, {INPUT_SIZE}, 3) images, got {images.dtype} "
                         f"{images.shape}")
    features, indices = [], {name: [] for name in judge.attributes}
    for start in range(0, len(images), batch_size):
        out = judge(images_to_float(images[start:start + batch_size]), training=False)
        features.append(keras.ops.convert_to_numpy(out["features"]))
        for name in judge.attributes:
            indices[name].append(np.argmax(keras.ops.convert_to_numpy(out[name]), axis=1))
    predicted = {name: np.asarray(values, dtype=object)[np.concatenate(indices[name])].astype(str)
                 for name, values in judge.attributes.items()}
    return np.concatenate(features).astype(np.float32), predicted


def accuracy_per_attribute(judge: ShapesJudge, images: np.ndarray, records: Sequence[dict]) -> dict[str, float]:
    """Fraction of 64x64 `images` whose every attribute the judge reads as `records` say."""
    _, predicted = judge_images(judge, images)
    return {name: float(np.mean(predicted[name] == np.array([r[name] for r in records])))
            for name in judge.attributes}


# --------------------------------------------------------------------------------------------
# Training, saving, loading
# --------------------------------------------------------------------------------------------

def _make_train_step(judge: ShapesJudge, optimizer: keras.optimizers.Optimizer):
    """One Adam step on the sum of the heads' mean cross-entropies; a tf.function(x, labels) -> loss."""
    names = list(judge.attributes)

    @tf.function
    def train_step(images, labels):
        with tf.GradientTape() as tape:
            out = judge(images, training=True)
            loss = tf.add_n([tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels[:, k], out[name]))
                             for k, name in enumerate(names)])
        variables = judge.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    return train_step


# Below this estimated coverage a pixel is background: about 3 standard deviations of its noise
# projected on the closest pair of palette colours (orange / yellow, 96 levels apart).
_BACKGROUND_COVERAGE = 0.05


def recolour(images: np.ndarray, records: Sequence[dict], rng: np.random.Generator,
             probability: float = 1.0) -> tuple[np.ndarray, list[dict]]:
    """Repaint shapes images with other (shape colour, background colour) pairs of the palette.

    The training classes tie each shape to a few colours, so a judge trained on them alone reads
    the shape off the colour and fails on the test classes (measured: 4 % shape accuracy on the
    test split). Repainting breaks that tie. Every pixel is `bg + a * (fg - bg) + noise`, with `a`
    the shape's coverage after anti-aliasing and the bicubic resize (ringing makes it overshoot
    [0, 1] slightly), so with `a` estimated by projecting the pixel onto `fg - bg`,
    `pixel + (bg' - bg) + a * ((fg' - bg') - (fg - bg))` is the same image painted with fg', bg',
    its background noise, edges and ringing kept. Where |a| < 0.05 it is set to 0: that is
    background, whose noise (about 1.6 levels in the 76x76 images, against at least 96 levels
    between two palette colours) would otherwise be scaled with the colour difference. Checked
    against images drawn in the new colours with the same noise (tests/test_judge.py).

    Args:
      images: uint8 (N, S, S, 3) shapes images.
      records: their attributes (`read_attributes`): the colour names of `fg` and `bg`.
      rng: draws which images are repainted and their new pair (uniform over ordered pairs of
        distinct palette colours).
      probability: chance that an image is repainted.

    Returns:
      (uint8 repainted images, records with the new colour and background).
    """
    names = list(shapes.PALETTE)
    palette = np.array([shapes.PALETTE[name] for name in names], dtype=np.float32)
    out, new_records = images.astype(np.float32), []
    for k, record in enumerate(records):
        if rng.random() >= probability:
            new_records.append(record)
            continue
        fg_new, bg_new = rng.choice(len(names), size=2, replace=False)
        fg, bg = palette[names.index(record["colour"])], palette[names.index(record["background"])]
        direction = fg - bg
        coverage = (out[k] - bg) @ direction / (direction @ direction)
        coverage = np.where(np.abs(coverage) < _BACKGROUND_COVERAGE, 0.0, coverage)[..., None]
        out[k] += (palette[bg_new] - bg) + coverage * ((palette[fg_new] - palette[bg_new]) - direction)
        new_records.append({**record, "colour": names[fg_new], "background": names[bg_new]})
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), new_records


def blur(images: np.ndarray, rng: np.random.Generator, probability: float = 1.0,
         sigma: tuple[float, float] = BLUR_SIGMA) -> np.ndarray:
    """Gaussian-blur each uint8 image with chance `probability`, its std drawn uniformly from `sigma`.

    With `probability` 0 nothing is drawn from `rng`, so a judge trained without blur is the same as
    before this option existed.
    """
    out = images.copy()
    if probability <= 0.0:
        return out
    for k in range(len(images)):
        if rng.random() < probability:
            radius = float(rng.uniform(*sigma))
            out[k] = np.asarray(Image.fromarray(images[k]).filter(ImageFilter.GaussianBlur(radius)))
    return out


def _random_crops(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random INPUT_SIZE crop of each 76x76 image, offsets 0..12 as Stage-I's (no flips)."""
    room = images.shape[1] - INPUT_SIZE
    offsets = rng.integers(0, room + 1, size=(len(images), 2))
    return np.stack([image[r:r + INPUT_SIZE, c:c + INPUT_SIZE] for image, (r, c) in zip(images, offsets)])


def train_judge(data_dir: str | os.PathLike, out: str | os.PathLike, epochs: int = DEFAULT_EPOCHS,
                batch_size: int = BATCH_SIZE, lr: float = LEARNING_RATE, seed: int = 0,
                recolour_probability: float = RECOLOUR_PROBABILITY, max_steps: int | None = None,
                progress: bool = True, blur_probability: float = BLUR_PROBABILITY,
                blur_sigma: tuple[float, float] = BLUR_SIGMA) -> dict:
    """Train a `ShapesJudge` on the train split of a shapes dataset and save it under `out`.

    Writes `judge.keras`, `train_options.json` (these options, the loss history, the time and the
    accuracy per attribute on the train and test splits' centre crops) and, last, `DONE`.

    Args:
      data_dir: shapes dataset root (train/ and test/ with 76images.pickle and attributes.json).
      out: output folder, e.g. models/shapes/judge.
      epochs: passes over the training images.
      batch_size: images per step.
      lr: Adam learning rate.
      seed: seeds the initial weights, the batch order, the crops and the repainting.
      recolour_probability: chance that a training image is repainted with other colours (`recolour`).
      blur_probability: chance that a training crop is blurred (`blur`).
      blur_sigma: (low, high) pixels, the range of the blur's standard deviation.
      max_steps: stop after this many steps (tests); None trains every epoch.
      progress: show a progress bar.

    Returns:
      The summary written to `train_options.json`.

    Raises:
      StackGANError: bad options; DataError: missing or malformed data files.
    """
    if epochs < 1 or batch_size < 1 or not lr > 0 or (max_steps is not None and max_steps < 1):
        raise StackGANError(f"--epochs, --batch-size and --max-steps must be positive and --lr above 0, "
                            f"got {epochs}, {batch_size}, {max_steps} and {lr}")
    if not 0.0 <= recolour_probability <= 1.0:
        raise StackGANError(f"--recolour-probability must lie in [0, 1], got {recolour_probability}")
    if not 0.0 <= blur_probability <= 1.0:
        raise StackGANError(f"--blur-probability must lie in [0, 1], got {blur_probability}")
    if not 0.0 < blur_sigma[0] <= blur_sigma[1]:
        raise StackGANError(f"--blur-sigma needs 0 < LOW <= HIGH, got {blur_sigma[0]} {blur_sigma[1]}")
    out = Path(out)
    (out / DONE_FILE).unlink(missing_ok=True)  # a rerun that fails must not look complete
    splits = {}
    for split in ("train", "test"):
        data = load_captioned_split(data_dir, split)
        splits[split] = (data.images, read_attributes(data_dir, split, data.filenames))
    images, records = splits["train"]

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    judge = ShapesJudge(name="shapes_judge")
    judge.build()
    optimizer = keras.optimizers.Adam(lr)
    optimizer.build(judge.trainable_variables)
    train_step = _make_train_step(judge, optimizer)

    steps_per_epoch = -(-len(images) // batch_size)
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    history, running, step = [], [], 0
    start = time.time()
    with progress_bar(total=total, desc="judge", unit="step", disable=not progress) as bar:
        while step < total:
            order = rng.permutation(len(images))
            for first in range(0, len(order), batch_size):
                batch = order[first:first + batch_size]
                painted, painted_records = recolour(images[batch], [records[i] for i in batch], rng,
                                                    recolour_probability)
                crops = images_to_float(blur(_random_crops(painted, rng), rng, blur_probability, blur_sigma))
                running.append(float(train_step(crops, attribute_labels(painted_records))))
                step += 1
                bar.update(1)
                if step % steps_per_epoch == 0 or step == total:
                    history.append({"step": step, "loss": float(np.mean(running))})
                    bar.set_postfix(loss=f"{history[-1]['loss']:.4f}", refresh=False)
                    running = []
                if step == total:
                    break
    elapsed = time.time() - start

    accuracy = {split: accuracy_per_attribute(judge, center_crop(split_images, INPUT_SIZE), split_records)
                for split, (split_images, split_records) in splits.items()}
    mkdir_p(out)
    with atomic_path(out / JUDGE_FILE, suffix=".keras") as tmp:
        judge.save(tmp)
    summary = {
        "data_dir": str(data_dir), "epochs": epochs, "steps": step, "batch_size": batch_size, "lr": lr,
        "seed": seed, "recolour_probability": recolour_probability, "blur_probability": blur_probability,
        "blur_sigma": list(blur_sigma), "channels": judge.channels, "feature_dim": judge.feature_dim,
        "attributes": judge.attributes, "train_images": len(images), "train_seconds": round(elapsed, 1),
        "loss_history": history,
        "accuracy": {split: {"images": len(splits[split][1]), **values} for split, values in accuracy.items()},
    }
    atomic_write_text(out / OPTIONS_FILE, json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / DONE_FILE, f"{out / JUDGE_FILE}\n")
    return summary


def judge_file_and_folder(path: str | os.PathLike) -> tuple[Path, Path]:
    """The judge's `.keras` file and the folder holding its `train_options.json`.

    `path` is a judge folder (written by `train_judge`) or the `.keras` file in one.
    """
    path = Path(path)
    if path.suffix == ".keras":
        return path, path.parent
    return path / JUDGE_FILE, path


def judge_training(path: str | os.PathLike) -> dict | None:
    """The settings the judge at `path` (folder or `.keras` file) was trained with, for a report.

    None when its folder has no readable `train_options.json`; a setting the file lacks (a judge
    trained before the option existed) is None.
    """
    try:
        options = json.loads((judge_file_and_folder(path)[1] / OPTIONS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return {key: options.get(key) for key in ("epochs", "steps", "seed", "recolour_probability",
                                               "blur_probability", "blur_sigma")}


def stale_judge_note(path: str | os.PathLike) -> str | None:
    """A one-line note when the judge at `path` (folder or `.keras` file) was trained without blur, else None.

    Such a judge (the default before blur was) reads real shapes well but misreads many generated
    ones, so its shape figures for generated images are a lower bound.
    """
    training = judge_training(path)
    if training is None or (training["blur_probability"] or 0.0) > 0.0:
        return None
    folder = judge_file_and_folder(path)[1]
    return (f"note: {folder / OPTIONS_FILE}: this judge was trained without blurred crops (the earlier "
            "default) and misreads many generated shapes; retrain it with `python -m misc.evaluation.judge --data_dir "
            f"DATA_DIR --out {folder}` (the default folder: rm -r models/shapes/judge && make judge)")


def load_judge(path: str | os.PathLike) -> ShapesJudge:
    """The trained judge in folder `path` (written by `train_judge`), or a `.keras` file.

    Raises:
      CheckpointError: no finished training there, or the file is not a judge.
    """
    path = Path(path)
    file, out = judge_file_and_folder(path)
    if path.suffix != ".keras":
        if not (path / DONE_FILE).is_file():
            raise CheckpointError(f"{path}: no trained judge here (no {DONE_FILE} file); "
                                  f"{MAKE_IT.format(out=out)}")
    if not file.is_file():
        raise CheckpointError(f"{file}: judge file not found; {MAKE_IT.format(out=out)}")
    try:
        judge = keras.models.load_model(file, compile=False)
    except Exception as err:  # a damaged archive fails deep inside Keras with varied types
        raise CheckpointError(f"{file}: cannot load the judge ({type(err).__name__}); "
                              f"{MAKE_IT.format(out=out)}") from None
    if not isinstance(judge, ShapesJudge):
        raise CheckpointError(f"{file}: holds a {type(judge).__name__}, not a shapes judge; "
                              f"{MAKE_IT.format(out=out)}")
    return judge


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Command line: `python -m misc.evaluation.judge --data_dir DIR --out DIR [--epochs N] [--seed N] ...`."""
    parser = argparse.ArgumentParser(
        prog="python -m misc.evaluation.judge",
        description="Train the shapes judge: a small CNN reading shape, colour, background colour, size "
                    "and position of a 64x64 image, trained on the train split; prints its accuracy per "
                    "attribute on the test split (the ceiling of the judge scores of `misc.evaluation.evaluate`).")
    parser.add_argument("--data_dir", default="Data/shapes", help="shapes dataset root (default: %(default)s)")
    parser.add_argument("--out", default="models/shapes/judge", help="output folder (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="default: %(default)s")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="default: %(default)s")
    parser.add_argument("--lr", type=float, default=LEARNING_RATE, help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    parser.add_argument("--recolour-probability", type=float, default=RECOLOUR_PROBABILITY,
                        help="chance that a training image is repainted in other palette colours, so that "
                             "shape and colour are learnt apart (default: %(default)s)")
    parser.add_argument("--blur-probability", type=float, default=BLUR_PROBABILITY,
                        help="chance that a training crop is Gaussian-blurred, so that the soft edges of "
                             "generated images read as the shapes they are (default: %(default)s)")
    parser.add_argument("--blur-sigma", type=float, nargs=2, default=BLUR_SIGMA, metavar=("LOW", "HIGH"),
                        help="range of the blur's standard deviation in pixels (default: %g %g)" % BLUR_SIGMA)
    parser.add_argument("--max-steps", type=int, help="stop after this many steps (quick checks)")
    args = parser.parse_args(argv)
    if not Path(args.data_dir).is_dir():
        raise DataError(f"{args.data_dir}: dataset folder not found (`make data` writes Data/shapes)")
    summary = train_judge(args.data_dir, args.out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          seed=args.seed, recolour_probability=args.recolour_probability,
                          max_steps=args.max_steps, blur_probability=args.blur_probability,
                          blur_sigma=tuple(args.blur_sigma))
    print(f"trained {summary['steps']} steps in {summary['train_seconds']} s, "
          f"final loss {summary['loss_history'][-1]['loss']:.4f}")
    print(f"{'accuracy':<12}" + "".join(f"{name:>12}" for name in ATTRIBUTES))
    for split, values in summary["accuracy"].items():
        print(f"{split + ' (' + str(values['images']) + ')':<12}"
              + "".join(f"{values[name]:>12.4f}" for name in ATTRIBUTES))
    print(f"judge: {Path(args.out) / JUDGE_FILE}")
    return 0


if __name__ == "__main__":
    run_cli(main)
