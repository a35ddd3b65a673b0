"""Train, apply and evaluate the char-CNN-RNN text encoder: the step the original did in Lua/Torch.

Port of reedscot/cvpr2016 `train_sje_hybrid.lua` (DS-SJE training) and of
the embedding step that produced StackGAN's `char-CNN-RNN-embeddings.pickle`. Commands:

    python -m misc.text.encoder train --data_dir Data/shapes --out models/shapes/text_encoder
    python -m misc.text.encoder embed-dataset --encoder models/shapes/text_encoder --data_dir Data/shapes
    python -m misc.text.encoder embed --encoder models/shapes/text_encoder "a red bird" "a small bird"
    python -m misc.text.encoder retrieval --encoder models/shapes/text_encoder --data_dir Data/shapes

`train` also runs `embed-dataset`, so afterwards `<data_dir>/<split>/char-CNN-RNN-embeddings.pickle`
holds (N, 10, 1024) float32 per split, the layout of the CUB release, for the GAN to read.

Difference from the original: cvpr2016 trained the text encoder against fixed GoogLeNet features of
the images (the image side was the identity). No such features exist for new datasets, so here a
small CNN (`ImageEncoder`) on the 64x64 crops of the dataset's 76x76 images is trained jointly with
the text encoder under the same DS-SJE loss.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from misc.cli import import_tensorflow, run_cli
from misc.errors import CheckpointError, DataError, StackGANError

tf = import_tensorflow()
import keras  # noqa: E402  (after the quiet TensorFlow import)

from misc.text.char_cnn_rnn import (  # noqa: E402
    ALPHABET_SIZE, DOC_LENGTH, WIDTHS, CharCnnRnn, indices_to_one_hot, text_to_indices,
)
from misc.datasets import (  # noqa: E402
    CAPTIONS_PER_IMAGE, LR_IMSIZE, LR_SIZE, CaptionedSplit, center_crop, images_to_float, load_captioned_split,
    read_caption_lines,
)
from misc.pickle_io import dump_pickle  # noqa: E402
from misc.utils import atomic_path, atomic_write_text, mkdir_p  # noqa: E402
from misc.utils import progress as progress_bar  # noqa: E402

EMBEDDINGS_FILE = "char-CNN-RNN-embeddings.pickle"
TEXT_ENCODER_FILE = "char_cnn_rnn.keras"
IMAGE_ENCODER_FILE = "image_encoder.keras"
OPTIONS_FILE = "train_options.json"
DONE_FILE = "DONE"  # written last by `train`: the encoders and the embeddings pickles are complete

# train_sje_hybrid.lua / scripts/train_cub_hybrid.sh: RMSprop at 0.0007, x0.98 after every "epoch"
# of ntrain iterations (ntrain = number of training classes), 40 distinct classes per minibatch.
BASE_LR = 7e-4
LR_DECAY = 0.98
BATCH_CLASSES = 40
# The original ran 200 such epochs (30,000 iterations on CUB's 150 classes). The default here is
# what trains the small width on the shapes dataset in a few CPU minutes (see the README).
DEFAULT_STEPS = 2000
# Torch optim.rmsprop defaults (alpha, epsilon), which the original used.
RMSPROP_RHO = 0.99
RMSPROP_EPSILON = 1e-8
# Channels of the first convolution of the jointly trained image encoder, per width.
IMAGE_CHANNELS = {"small": 16, "full": 64}

MAKE_IT = "make it with `python -m misc.text.encoder train --data_dir DATA_DIR --out {out}` (or `make text-encoder`)"


# --------------------------------------------------------------------------------------------
# Image side and loss
# --------------------------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="stackgan")
class ImageEncoder(keras.Model):
    """Image side of the joint embedding; stands in for cvpr2016's fixed GoogLeNet features.

    Not a port: the original used pre-extracted 1024-d GoogLeNet features with an identity image
    encoder (`image_noop=1`). This is a small CNN trained jointly on the dataset's own images:
    four 3x3 stride-2 convolutions with ReLU (64 -> 4 pixels; `channels`, x2, x4, x8), then a
    linear map of the flattened 4x4 features to `emb_dim`.

    Args:
      channels: channels of the first convolution.
      emb_dim: embedding size, equal to the text encoder's.

    Call args:
      inputs: images in [-1, 1], float32 (B, 64, 64, 3).

    Returns:
      image features (B, emb_dim).
    """

    def __init__(self, channels: int = 32, emb_dim: int = 1024, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.emb_dim = int(emb_dim)
        self.convs = keras.Sequential(
            [keras.layers.Conv2D(self.channels * 2**i, 3, strides=2, padding="same", activation="relu",
                                 name=f"conv{i + 1}") for i in range(4)]
            + [keras.layers.Flatten()],
            name="convs",
        )
        self.projection = keras.layers.Dense(self.emb_dim, name="projection")

    def build(self, input_shape=(None, LR_IMSIZE, LR_IMSIZE, 3)):
        self.call(keras.KerasTensor(tuple(input_shape)))
        self.built = True

    def call(self, inputs):
        return self.projection(self.convs(inputs))

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "emb_dim": self.emb_dim}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def ds_sje_loss(image_features, text_features):
    """Port of cvpr2016 `JointEmbeddingLoss` applied in both directions (DS-SJE, as
    reedscot/cvpr2016 `train_sje_hybrid.lua`).

    With scores S_ij = <image_i, text_j> for a minibatch whose sample i is image i with text i:
      image -> text: sum_i sum_{j != i} max(0, 1 + S_ij - S_ii) / K^2
      text -> image: sum_j sum_{i != j} max(0, 1 + S_ij - S_jj) / K^2
    and the loss is their sum.

    Args:
      image_features: (K, D).
      text_features: (K, D).

    Returns:
      scalar loss.
    """
    scores = tf.matmul(image_features, text_features, transpose_b=True)
    k = tf.shape(scores)[0]
    matching = tf.linalg.diag_part(scores)
    off_diagonal = 1.0 - tf.eye(k, dtype=scores.dtype)
    image_to_text = tf.nn.relu(1.0 + scores - matching[:, None]) * off_diagonal
    text_to_image = tf.nn.relu(1.0 + scores - matching[None, :]) * off_diagonal
    return (tf.reduce_sum(image_to_text) + tf.reduce_sum(text_to_image)) / tf.cast(k * k, scores.dtype)


def learning_rate_schedule(base_lr: float, steps_per_epoch: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """The original's schedule: base_lr x 0.98 ** floor(step / steps_per_epoch)."""
    return keras.optimizers.schedules.ExponentialDecay(
        base_lr, decay_steps=steps_per_epoch, decay_rate=LR_DECAY, staircase=True
    )


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

class JointBatchSampler:
    """Port of train_sje_hybrid.lua's minibatch: K distinct classes, one image and caption each.

    For every class drawn, one random image of the class and one random caption of that image;
    sample i is (image i, caption i). The original also drew one of ten precomputed views of the
    image (crops of it and of its mirror image); here the image gets a random 64x64 crop of its
    76x76 version, without mirroring, because captions may say "on the left".

    Args:
      data: the training split.
      batch_classes: K (40 in the original); at most the number of classes.
      seed: seeds the NumPy generator; same seed, same batches.
    """

    def __init__(self, data: CaptionedSplit, batch_classes: int = BATCH_CLASSES, seed: int = 0):
        self.classes = np.unique(data.class_ids)
        if len(self.classes) < 2:
            raise DataError(f"{data.data_dir / data.split}: needs images of at least 2 classes to train "
                            f"the text encoder, found {len(self.classes)}")
        self.batch_classes = min(int(batch_classes), len(self.classes))
        self.members = {c: np.flatnonzero(data.class_ids == c) for c in self.classes}
        self.indices = text_to_indices([c for caps in data.captions for c in caps]).reshape(
            len(data), CAPTIONS_PER_IMAGE, DOC_LENGTH)
        self.images = data.images
        self.rng = np.random.default_rng(seed)

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """Image indices (K,) of K distinct classes, one random image each, and a caption id (K,) each."""
        classes = self.rng.choice(self.classes, size=self.batch_classes, replace=False)
        picks = np.array([self.rng.choice(self.members[c]) for c in classes])
        return picks, self.rng.integers(0, CAPTIONS_PER_IMAGE, size=len(picks))

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """Returns (images float32 (K, 64, 64, 3) in [-1, 1], caption columns int8 (K, 201))."""
        picks, caption_ids = self.sample()
        span = LR_SIZE - LR_IMSIZE
        crops = []
        for i in picks:
            top, left = self.rng.integers(0, span + 1, size=2)
            crops.append(self.images[i, top: top + LR_IMSIZE, left: left + LR_IMSIZE])
        return images_to_float(np.stack(crops)), self.indices[picks, caption_ids]


# --------------------------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------------------------

def _save_model(model: keras.Model, path: Path) -> None:
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def _load_model(path: Path, kind: str, out: Path) -> keras.Model:
    if not path.is_file():
        raise CheckpointError(f"{path}: no trained {kind} here; {MAKE_IT.format(out=out)}")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as err:  # a damaged archive fails deep inside Keras with varied types
        raise CheckpointError(f"{path}: cannot load the {kind} ({type(err).__name__}: {err})") from None


def load_text_encoder(encoder: str | os.PathLike) -> CharCnnRnn:
    """The trained `CharCnnRnn` from a folder written by `train` (or a `.keras` file).

    Raises:
      CheckpointError: nothing trained there, or the file is damaged.
    """
    encoder = Path(encoder)
    if encoder.suffix == ".keras":
        return _load_model(encoder, "text encoder", encoder.parent)
    return _load_model(encoder / TEXT_ENCODER_FILE, "text encoder", encoder)


def load_image_encoder(encoder: str | os.PathLike) -> ImageEncoder:
    """The image encoder trained jointly with the text encoder in folder `encoder`."""
    encoder = Path(encoder)
    return _load_model(encoder / IMAGE_ENCODER_FILE, "image encoder", encoder)


# --------------------------------------------------------------------------------------------
# Embedding
# --------------------------------------------------------------------------------------------

def _embed_indices(encoder: CharCnnRnn, indices: np.ndarray, batch_size: int, progress: bool, desc: str) -> np.ndarray:
    """Embeddings (M, emb_dim) of texts given as alphabet columns (M, DOC_LENGTH), in batches."""
    out = np.zeros((len(indices), encoder.emb_dim), np.float32)
    starts = range(0, len(indices), batch_size)
    # Eager calls: a tf.function would be traced again for every new encoder and batch shape,
    # which costs more than it saves at these sizes.
    for start in progress_bar(starts, desc=desc, unit="batch", disable=not progress or len(starts) < 2, leave=False):
        out[start: start + batch_size] = encoder(indices_to_one_hot(indices[start: start + batch_size]),
                                                 training=False).numpy()
    return out


def embed_sentences(encoder: CharCnnRnn, sentences: Sequence[str | bytes], batch_size: int = 256,
                    progress: bool = False) -> np.ndarray:
    """Embeddings of any sentences: what the original's Lua `get_embedding` step did.

    Args:
      encoder: a trained `CharCnnRnn` (see `load_text_encoder`).
      sentences: texts (str or bytes); any text is valid (see `misc.text.char_cnn_rnn.encode_text`).
      batch_size: sentences per forward pass.
      progress: show a progress bar.

    Returns:
      float32 (M, emb_dim).
    """
    indices = text_to_indices(list(sentences), encoder.exact_demo_encoding)
    return _embed_indices(encoder, indices, batch_size, progress, "embedding")


def embed_dataset(encoder: CharCnnRnn, data_dir: str | os.PathLike, splits: Sequence[str] = ("train", "test"),
                  batch_size: int = 256, progress: bool = True) -> dict:
    """Write `<data_dir>/<split>/char-CNN-RNN-embeddings.pickle`, (N, 10, emb_dim) float32, per split.

    The file has the layout of the original CUB release (pickle protocol 2, written atomically), so
    the GAN cannot tell a dataset embedded here from the original.

    Args:
      encoder: the trained text encoder.
      data_dir: dataset root.
      splits: splits to embed.
      batch_size: captions per forward pass.
      progress: show progress bars.

    Returns:
      {split: path written}.
    """
    written = {}
    for split in splits:
        data = load_captioned_split(data_dir, split, with_images=False)
        captions = [c for caps in data.captions for c in caps]
        flat = _embed_indices(encoder, text_to_indices(captions, encoder.exact_demo_encoding), batch_size, progress,
                              f"embedding {split}")
        path = Path(data_dir) / split / EMBEDDINGS_FILE
        dump_pickle(flat.reshape(len(data), CAPTIONS_PER_IMAGE, encoder.emb_dim), path, protocol=2)
        written[split] = path
    return written


def embed_images(image_encoder: ImageEncoder, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Image features (N, emb_dim) of uint8 76x76 images, centre-cropped to 64."""
    crops = images_to_float(center_crop(images))
    out = np.zeros((len(crops), image_encoder.emb_dim), np.float32)
    for start in range(0, len(crops), batch_size):
        out[start: start + batch_size] = image_encoder(crops[start: start + batch_size], training=False).numpy()
    return out


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------

def train(data_dir: str | os.PathLike, out: str | os.PathLike, steps: int = DEFAULT_STEPS,
          batch_classes: int = BATCH_CLASSES, lr: float = BASE_LR, width: str = "small", seed: int = 0,
          embed_splits: Sequence[str] = ("train", "test"), progress: bool = True) -> dict:
    """Port of train_sje_hybrid.lua: DS-SJE training of the text encoder with a joint image encoder.

    Args:
      data_dir: dataset root with `train/` (filenames, class_info, 76images pickles) and `text_c10/`.
      out: folder for the trained encoders (`char_cnn_rnn.keras`, `image_encoder.keras`), the options
        and, written last, `DONE` (the file `make text-encoder` waits for).
      steps: iterations (the original: 200 "epochs" of (number of classes) iterations).
      batch_classes: distinct classes per minibatch (40 in the original).
      lr: RMSprop learning rate, x0.98 after every epoch of (number of classes) iterations.
      width: 'full' (the birds encoder) or 'small'; see `misc.text.char_cnn_rnn.WIDTHS`.
      seed: seeds weights and batches.
      embed_splits: after training, write the embeddings pickle of these splits (may be empty).
      progress: show progress bars.

    Returns:
      a summary dict (also written to `<out>/train_options.json`).
    """
    if width not in WIDTHS:
        raise StackGANError(f"--width {width!r}: choose one of {sorted(WIDTHS)}")
    if steps < 1 or batch_classes < 2:
        raise StackGANError(f"--steps must be at least 1 and --batch-classes at least 2, "
                            f"got {steps} and {batch_classes}")
    out = Path(out)
    (out / DONE_FILE).unlink(missing_ok=True)  # a rerun that fails must not look complete
    data = load_captioned_split(data_dir, "train")
    sampler = JointBatchSampler(data, batch_classes, seed=seed)
    steps_per_epoch = len(sampler.classes)  # the original's "epoch": one iteration per training class

    keras.utils.set_random_seed(seed)
    text_encoder = CharCnnRnn.from_width(width, name="char_cnn_rnn")
    image_encoder = ImageEncoder(IMAGE_CHANNELS[width], text_encoder.emb_dim, name="image_encoder")
    text_encoder.build()
    image_encoder.build()
    optimizer = keras.optimizers.RMSprop(learning_rate_schedule(lr, steps_per_epoch),
                                         rho=RMSPROP_RHO, epsilon=RMSPROP_EPSILON)
    variables = text_encoder.trainable_variables + image_encoder.trainable_variables
    optimizer.build(variables)
    train_step = make_train_step(text_encoder, image_encoder, optimizer)

    history = []
    running = []
    start = time.time()
    bar = progress_bar(range(steps), desc="text encoder", unit="step", disable=not progress)
    for step in bar:
        images, columns = sampler.next_batch()
        loss = float(train_step(images, columns))
        running.append(loss)
        if (step + 1) % 50 == 0 or step + 1 == steps:
            history.append({"step": step + 1, "loss": float(np.mean(running))})
            bar.set_postfix(loss=f"{history[-1]['loss']:.4f}", refresh=False)
            running = []
    elapsed = time.time() - start

    mkdir_p(out)
    _save_model(text_encoder, out / TEXT_ENCODER_FILE)
    _save_model(image_encoder, out / IMAGE_ENCODER_FILE)
    summary = {
        "data_dir": str(data_dir), "width": width, **WIDTHS[width], "image_channels": IMAGE_CHANNELS[width],
        "steps": steps, "batch_classes": sampler.batch_classes, "train_classes": steps_per_epoch,
        "base_lr": lr, "lr_decay": LR_DECAY, "decay_every_steps": steps_per_epoch, "seed": seed,
        "train_seconds": round(elapsed, 1), "loss_history": history,
    }
    summary["conv_channels"] = list(summary["conv_channels"])
    atomic_write_text(out / OPTIONS_FILE, json.dumps(summary, indent=2) + "\n")
    summary["embeddings"] = {split: str(p) for split, p in
                             embed_dataset(text_encoder, data_dir, embed_splits, progress=progress).items()}
    atomic_write_text(out / DONE_FILE, "".join(f"{split}: {p}\n" for split, p in summary["embeddings"].items()))
    return summary


def make_train_step(text_encoder: CharCnnRnn, image_encoder: ImageEncoder, optimizer):
    """One DS-SJE update of both encoders; returns a `tf.function(images, caption_columns) -> loss`."""
    variables = text_encoder.trainable_variables + image_encoder.trainable_variables

    @tf.function(autograph=False)
    def train_step(images, columns):
        one_hot = tf.one_hot(tf.cast(columns, tf.int32), ALPHABET_SIZE, dtype=tf.float32)  # -1: zero row
        with tf.GradientTape() as tape:
            loss = ds_sje_loss(image_encoder(images, training=True), text_encoder(one_hot, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    return train_step


# --------------------------------------------------------------------------------------------
# Retrieval
# --------------------------------------------------------------------------------------------

def retrieval(encoder: str | os.PathLike, data_dir: str | os.PathLike, split: str = "test",
              batch_size: int = 256, progress: bool = True) -> dict:
    """Text-to-image retrieval of a trained encoder pair among the images of one split.

    Every caption of every image is a query; all images of the split are ranked by the score
    <image features, caption embedding>. Reported: top-1 and top-5 accuracy (the caption's own
    image ranks first / in the first five), class-level top-1 (the top image has the caption's
    class, the sense in which Reed et al. evaluate), and the chance level of each.

    Returns:
      dict with the numbers, the counts and the chance levels.
    """
    text_encoder = load_text_encoder(encoder)
    image_encoder = load_image_encoder(encoder)
    data = load_captioned_split(data_dir, split)
    n = len(data)
    image_features = embed_images(image_encoder, data.images, batch_size)
    captions = [c for caps in data.captions for c in caps]
    text_features = _embed_indices(text_encoder, text_to_indices(captions, text_encoder.exact_demo_encoding),
                                   batch_size, progress, f"embedding {split}")
    source = np.repeat(np.arange(n), CAPTIONS_PER_IMAGE)
    top1 = top5 = class_top1 = 0
    for start in range(0, len(source), batch_size):
        scores = text_features[start: start + batch_size] @ image_features.T  # (q, N)
        own = source[start: start + batch_size]
        rank = (scores > scores[np.arange(len(own)), own][:, None]).sum(axis=1)
        top1 += int((rank < 1).sum())
        top5 += int((rank < 5).sum())
        class_top1 += int((data.class_ids[scores.argmax(axis=1)] == data.class_ids[own]).sum())
    queries = len(source)
    class_sizes = {c: int((data.class_ids == c).sum()) for c in np.unique(data.class_ids)}
    return {
        "split": split, "data_dir": str(data_dir), "encoder": str(encoder),
        "images": n, "queries": queries, "classes": len(class_sizes),
        "top1": top1 / queries, "top5": top5 / queries, "class_top1": class_top1 / queries,
        "chance_top1": 1.0 / n, "chance_top5": min(5, n) / n,
        "chance_class_top1": float(sum(s * s for s in class_sizes.values()) / (n * n)),
    }


def format_retrieval(result: dict) -> str:
    """The retrieval numbers as a small text table."""
    rows = [("top-1 (own image)", "top1", "chance_top1"), ("top-5 (own image)", "top5", "chance_top5"),
            ("top-1 (same class)", "class_top1", "chance_class_top1")]
    lines = [f"text-to-image retrieval, {result['data_dir']}/{result['split']}: {result['queries']} captions, "
             f"{result['images']} images, {result['classes']} classes",
             f"{'metric':<20}{'encoder':>10}{'chance':>10}"]
    lines += [f"{name:<20}{result[key]:>10.4f}{result[chance]:>10.4f}" for name, key, chance in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m misc.text.encoder",
        description="Train, apply and evaluate the char-CNN-RNN text encoder (Reed et al. 2016).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="DS-SJE training with a joint image encoder, then embed the dataset")
    p.add_argument("--data_dir", required=True, help="dataset root with train/, test/ and text_c10/")
    p.add_argument("--out", required=True, help="folder for the trained encoders, e.g. models/shapes/text_encoder")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"iterations (default {DEFAULT_STEPS}; the original ran 200 epochs of one iteration "
                        "per training class, 30000 on CUB)")
    p.add_argument("--batch-classes", type=int, default=BATCH_CLASSES,
                   help=f"distinct classes per minibatch (default {BATCH_CLASSES}, capped at the class count)")
    p.add_argument("--lr", type=float, default=BASE_LR, help=f"RMSprop learning rate (default {BASE_LR})")
    p.add_argument("--width", choices=sorted(WIDTHS), default="small",
                   help="'full' = the released birds encoder (384/512/512 convs, GRU 512); 'small' for CPUs")
    p.add_argument("--seed", type=int, default=0, help="seeds the initial weights and the minibatches")
    p.add_argument("--no-embed", action="store_true", help="do not write the embeddings pickles afterwards")

    p = sub.add_parser("embed-dataset", help="write <data_dir>/<split>/char-CNN-RNN-embeddings.pickle")
    p.add_argument("--encoder", required=True, help="folder written by `train`")
    p.add_argument("--data_dir", required=True)
    p.add_argument("--splits", nargs="+", default=["train", "test"])

    p = sub.add_parser("embed", help="embed sentences given on the command line or in a file")
    p.add_argument("--encoder", required=True, help="folder written by `train`")
    p.add_argument("--captions", help="text file, one sentence per line (blank lines skipped)")
    p.add_argument("--out", help="write the (M, emb_dim) float32 array here (.pickle, or .npy)")
    p.add_argument("sentences", nargs="*", help="sentences to embed")

    p = sub.add_parser("retrieval", help="text-to-image retrieval on a split (top-1, top-5, chance)")
    p.add_argument("--encoder", required=True, help="folder written by `train`")
    p.add_argument("--data_dir", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--json", help="where to write the numbers (default <encoder>/retrieval_<split>.json)")
    return parser


def _read_sentences(args) -> list:
    sentences = list(args.sentences)
    if args.captions:
        sentences += read_caption_lines(args.captions)
    if not sentences:
        raise StackGANError("nothing to embed: give sentences as arguments or a file with --captions FILE")
    return sentences


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "train":
        if not Path(args.data_dir).is_dir():
            raise DataError(f"{args.data_dir}: dataset folder not found")
        splits = [] if args.no_embed else [split for split in ("train", "test")
                                           if (Path(args.data_dir) / split / "filenames.pickle").is_file()]
        summary = train(args.data_dir, args.out, steps=args.steps, batch_classes=args.batch_classes, lr=args.lr,
                        width=args.width, seed=args.seed, embed_splits=splits)
        print(f"trained {summary['steps']} steps in {summary['train_seconds']} s, "
              f"final loss {summary['loss_history'][-1]['loss']:.4f}")
        print(f"text encoder: {Path(args.out) / TEXT_ENCODER_FILE}")
        print(f"image encoder: {Path(args.out) / IMAGE_ENCODER_FILE}")
        for split, path in summary["embeddings"].items():
            print(f"embeddings ({split}): {path}")
    elif args.command == "embed-dataset":
        encoder = load_text_encoder(args.encoder)
        for split, path in embed_dataset(encoder, args.data_dir, args.splits).items():
            print(f"embeddings ({split}): {path}")
    elif args.command == "embed":
        encoder = load_text_encoder(args.encoder)
        sentences = _read_sentences(args)
        embeddings = embed_sentences(encoder, sentences, progress=True)
        if args.out:
            out = Path(args.out)
            if out.suffix == ".npy":
                with atomic_path(out, suffix=".npy") as tmp:
                    np.save(tmp, embeddings)
            else:
                dump_pickle(embeddings, out, protocol=2)
            print(f"wrote {embeddings.shape[0]} x {embeddings.shape[1]} embeddings to {out}")
        else:
            for sentence, emb in zip(sentences, embeddings):
                text = sentence.decode("utf-8", "replace") if isinstance(sentence, bytes) else sentence
                head = " ".join(f"{v:+.4f}" for v in emb[:4])
                print(f"{text[:60]!r}: |e|={np.linalg.norm(emb):.3f} [{head} ...]")
            print(f"{embeddings.shape[0]} x {embeddings.shape[1]} embeddings (use --out FILE to save them)")
    elif args.command == "retrieval":
        result = retrieval(args.encoder, args.data_dir, args.split)
        print(format_retrieval(result))
        path = Path(args.json) if args.json else Path(args.encoder) / f"retrieval_{args.split}.json"
        atomic_write_text(path, json.dumps(result, indent=2) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
