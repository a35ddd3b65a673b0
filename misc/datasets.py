"""The data pipeline: load one split of the pickled dataset and draw training batches from it.

Port of the original `misc/datasets.py` (`TextDataset` loads the pickles, `Dataset.next_batch` samples):

* `load_split` reads and validates `<data_dir>/<split>/` (filenames, class ids, text embeddings and
  the pre-processed `76images.pickle` / `304images.pickle`) into a `SplitData`.
* `BatchSampler` reproduces the original sampling rules in NumPy with one seeded generator: a new
  permutation per epoch with the tail skipped, class-aware wrong images, random crop and flip of real
  and wrong images, and the mean of `num_embedding` distinct caption embeddings per image.
* `BatchFeeder` turns a `BatchSampler` into an infinite `tf.data.Dataset` for the training loop,
  one share per replica, fed from a thread through a queue (no Python inside the pipeline).
* `visualization_batch` picks the rows of the sample grids.
* `load_captioned_split` reads a split's caption texts (for the text encoder and the evaluation,
  which run before or without the embeddings pickle); `SplitData.captions` reads the same files.
* The image sizes of the original pipeline and the crop and scale helpers every stage uses.

TensorFlow is imported only by `BatchFeeder`, so NumPy-only users stay fast.
"""
from __future__ import annotations

import atexit
import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from misc.cli import import_tensorflow
from misc.errors import ConfigError, DataError
from misc.pickle_io import load_pickle

# Image sizes of the original pipeline (original misc/preprocess_birds.py and misc/config.py):
# Stage-II trains on 256 px crops of images stored at 304 px (LOAD_SIZE = int(256 * 76 / 64)), and
# Stage-I on 64 px crops of the same images stored at a quarter of that side (LR_HR_RETIO = 4).
LOAD_SIZE = 304
LR_HR_RATIO = 4
LR_SIZE = LOAD_SIZE // LR_HR_RATIO
HR_IMSIZE = 256
LR_IMSIZE = HR_IMSIZE // LR_HR_RATIO
# Captions per image in the text_c10 files of Reed et al.
CAPTIONS_PER_IMAGE = 10

EMBEDDING_FILES = {
    "cnn-rnn": "char-CNN-RNN-embeddings.pickle",
    "skip-thought": "skip-thought-embeddings.pickle",
}
FILENAMES_FILE = "filenames.pickle"
CLASS_INFO_FILE = "class_info.pickle"
# Wrong images that hit the real image's class are moved by one shift drawn from [100, 200) per batch
# (original `next_batch`); the images are stored class-ordered, so this usually lands 2-3 classes away.
WRONG_SHIFT_RANGE = (100, 200)
# Horizontal flip probability of the original `Dataset.transform`.
FLIP_PROBABILITY = 0.5


def image_file_name(image_size: int) -> str:
    """The pre-processed image pickle of one size, e.g. `76images.pickle` (original `TextDataset`)."""
    return f"{image_size}images.pickle"


@dataclass
class SplitData:
    """One split of a dataset, loaded and validated (the arrays the original `Dataset` holds).

    Attributes:
      data_dir: dataset root (holds `text_c10/` and the split folders).
      split: `train` or `test`.
      images: uint8 (N, S, S, 3), S = 76 (Stage-I) or 304 (Stage-II).
      embeddings: float32 (N, C, D): C caption embeddings of size D per image (C = 10 for char-CNN-RNN).
      filenames: N names without extension, e.g. `002.Laysan_Albatross/Laysan_Albatross_0002_1027`.
      class_ids: int64 (N,), used for wrong-image sampling and the flowers caption path.
    """

    data_dir: Path
    split: str
    images: np.ndarray
    embeddings: np.ndarray
    filenames: list[str]
    class_ids: np.ndarray

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        n = len(self.filenames)
        if (self.images.ndim != 4 or self.embeddings.ndim != 3
                or not len(self.images) == len(self.embeddings) == len(self.class_ids) == n):
            raise ValueError(f"inconsistent SplitData: images {self.images.shape}, embeddings "
                             f"{self.embeddings.shape}, {len(self.class_ids)} class ids, {n} filenames")

    def __len__(self) -> int:
        return len(self.filenames)

    @property
    def split_dir(self) -> Path:
        """The folder of this split's pickles."""
        return self.data_dir / self.split

    @property
    def image_size(self) -> int:
        """S, the side of the stored images."""
        return int(self.images.shape[1])

    @property
    def captions_per_image(self) -> int:
        """C, the number of caption embeddings per image."""
        return int(self.embeddings.shape[1])

    @property
    def embedding_dim(self) -> int:
        """D, the size of one text embedding."""
        return int(self.embeddings.shape[2])

    def caption_path(self, i: int) -> Path:
        """The caption file of image `i` (see `caption_path`)."""
        return caption_path(self.data_dir, self.filenames[i], int(self.class_ids[i]))

    def captions(self, i: int) -> list[str]:
        """The captions of image `i`: the non-empty stripped lines of its text file.

        Port of the original `Dataset.readCaptions`.

        Raises:
          DataError: the caption file is missing.
        """
        return [line.decode("utf-8", errors="replace") for line in read_caption_lines(self.caption_path(i))]

    def caption(self, i: int, caption_id: int) -> str:
        """Caption `caption_id` of image `i`, the text of embedding `embeddings[i, caption_id]`.

        Raises:
          DataError: the caption file has fewer lines than `caption_id + 1`.
        """
        captions = self.captions(i)
        if caption_id >= len(captions):
            raise DataError(f"{self.caption_path(i)}: has {len(captions)} captions but the embeddings "
                            f"have {self.captions_per_image} per image (caption {caption_id} was drawn)")
        return captions[caption_id]


def caption_path(data_dir: str | os.PathLike, filename: str, class_id: int) -> Path:
    """`<data_dir>/text_c10/<filename>.txt`; flowers names `jpg/image_N` become `class_%05d/image_N`.

    Port of the path logic of the original `Dataset.readCaptions`.
    """
    if filename.startswith("jpg/"):
        filename = f"class_{int(class_id):05d}/{filename[len('jpg/'):]}"
    return Path(data_dir) / "text_c10" / f"{filename}.txt"


def read_caption_lines(path: str | os.PathLike) -> list[bytes]:
    """The non-empty stripped lines of a caption or sentence file, as bytes (the original read bytes).

    Raises:
      DataError: the file is missing or unreadable.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        where = (f" (the text_c10 captions of Reed et al. must be in {path.parent})"
                 if "text_c10" in path.parts else "")
        raise DataError(f"{path}: caption file not found{where}") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read the caption file ({err.__class__.__name__})") from None
    return [line.strip() for line in raw.splitlines() if line.strip()]


def _require(path: Path, how_to_make: str) -> None:
    if not path.is_file():
        raise DataError(f"{path}: file not found; {how_to_make}")


def _check_length(path: Path, count: int, reference: Path, n: int, what: str = "entries") -> None:
    if count != n:
        raise DataError(f"{path}: has {count} {what} but {reference} has {n} filenames")


def read_filenames(path: str | os.PathLike) -> list[str]:
    """Read a `filenames.pickle`: a list of names without extension (Python 2 `str` or bytes).

    Raises:
      DataError: unreadable, or not a list of strings.
    """
    path = Path(path)
    raw = load_pickle(path)
    if isinstance(raw, np.ndarray):
        raw = raw.tolist()
    if not isinstance(raw, (list, tuple)):
        raise DataError(f"{path}: expected a list of file names, got {type(raw).__name__}")
    names = [n.decode("utf-8") if isinstance(n, bytes) else n for n in raw]
    if not all(isinstance(n, str) for n in names):
        raise DataError(f"{path}: expected a list of file name strings")
    return names


def _load_class_ids(path: Path) -> np.ndarray:
    raw = load_pickle(path)
    try:
        class_ids = np.asarray(raw)
    except ValueError:
        class_ids = np.asarray(raw, dtype=object)
    if class_ids.ndim != 1 or not np.issubdtype(class_ids.dtype, np.integer):
        raise DataError(f"{path}: expected a list of integer class ids, got {type(raw).__name__} "
                        f"giving an array of dtype {class_ids.dtype} and shape {class_ids.shape}")
    return class_ids.astype(np.int64)


def load_embeddings(path: Path, text_dim: int | None) -> np.ndarray:
    """An embeddings pickle as float32 (N, C, D); 2-D (N, D) files become one caption per image.

    Raises:
      DataError: not a stack of float embeddings, or (with `text_dim`) of another size.
    """
    try:
        embeddings = np.asarray(load_pickle(path))
    except ValueError:
        raise DataError(f"{path}: embeddings of different shapes cannot be stacked into one array") from None
    if embeddings.ndim == 2:
        # One embedding per image (e.g. skip-thought vectors, N x 4800): one caption per image. The
        # original crashed on this shape (issues #16, #41).
        embeddings = embeddings[:, None, :]
    if embeddings.ndim != 3 or not np.issubdtype(embeddings.dtype, np.floating):
        raise DataError(f"{path}: expected float embeddings of shape (N, 10, D) or (N, D), got dtype "
                        f"{embeddings.dtype} and shape {embeddings.shape}")
    if text_dim is not None and embeddings.shape[2] != text_dim:
        raise DataError(f"{path}: embeddings have size {embeddings.shape[2]} but the config's "
                        f"TEXT.DIMENSION is {text_dim}")
    return embeddings.astype(np.float32, copy=False)


def _load_images(path: Path, image_size: int) -> np.ndarray:
    raw = load_pickle(path)
    expected = f"uint8 ({image_size}, {image_size}, 3) images"
    if isinstance(raw, (list, tuple)):
        for k, image in enumerate(raw):
            if (not isinstance(image, np.ndarray) or image.dtype != np.uint8
                    or image.shape != (image_size, image_size, 3)):
                desc = (f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray)
                        else type(image).__name__)
                raise DataError(f"{path}: image {k} is {desc}, expected {expected}")
        return np.stack(raw) if raw else np.zeros((0, image_size, image_size, 3), np.uint8)
    if (isinstance(raw, np.ndarray) and raw.dtype == np.uint8
            and raw.shape[1:] == (image_size, image_size, 3)):
        return raw
    desc = f"{raw.dtype} array of shape {raw.shape}" if isinstance(raw, np.ndarray) else type(raw).__name__
    raise DataError(f"{path}: holds a {desc}, expected a list of {expected}")


def load_split(data_dir: str | os.PathLike, split: str, image_size: int,
               embedding_type: str = "cnn-rnn", text_dim: int | None = None) -> SplitData:
    """Load and validate `<data_dir>/<split>/`.

    Port of the original `TextDataset.get_data`, plus the checks it lacked.

    Args:
      data_dir: dataset root, e.g. `Data/birds`.
      split: `train` or `test`.
      image_size: 76 (Stage-I) or 304 (Stage-II): which `<image_size>images.pickle` to read.
      embedding_type: a key of `EMBEDDING_FILES` (cfg.EMBEDDING_TYPE).
      text_dim: expected embedding size D (cfg.TEXT.DIMENSION); None skips the check.

    Returns:
      The split as a `SplitData`.

    Raises:
      ConfigError: unknown embedding type.
      DataError: a file is missing, unreadable, malformed, or disagrees with the others in length.
    """
    if embedding_type not in EMBEDDING_FILES:
        raise ConfigError(f"EMBEDDING_TYPE '{embedding_type}' is unknown; expected one of "
                          f"{sorted(EMBEDDING_FILES)}")
    data_dir = Path(data_dir)
    split_dir = data_dir / split
    download = (f"download the StackGAN {embedding_type} embeddings for this dataset "
                f"(train/ and test/ folders) into {data_dir}")

    filenames_path = split_dir / FILENAMES_FILE
    _require(filenames_path, download)
    filenames = read_filenames(filenames_path)
    n = len(filenames)

    class_path = split_dir / CLASS_INFO_FILE
    _require(class_path, download)
    class_ids = _load_class_ids(class_path)
    _check_length(class_path, len(class_ids), filenames_path, n)

    embeddings_path = split_dir / EMBEDDING_FILES[embedding_type]
    _require(embeddings_path, download)
    embeddings = load_embeddings(embeddings_path, text_dim)
    _check_length(embeddings_path, len(embeddings), filenames_path, n, "embedding rows")

    images_path = split_dir / image_file_name(image_size)
    script = ("misc/data/preprocess_flowers.py" if filenames and filenames[0].startswith("jpg/")
              else "misc/data/preprocess_birds.py")
    _require(images_path, f"run `python {script} --data_dir {data_dir}` to make it")
    images = _load_images(images_path, image_size)
    _check_length(images_path, len(images), filenames_path, n, "images")

    return SplitData(data_dir=data_dir, split=split, images=images, embeddings=embeddings,
                     filenames=filenames, class_ids=class_ids)


def draw_crops(count: int, room: int, rng: np.random.Generator, flip: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Crop offsets and flips of `count` images, as the original `Dataset.transform` draws them.

    Offsets are floor(room * U[0, 1)) per axis, so 0..room-1 (the last offset, room, is never
    drawn), then a flip with probability 0.5.

    Returns:
      (int (count, 2) (row, column) offsets, bool (count,) flips).
    """
    offsets = np.floor(room * rng.random((count, 2))).astype(np.int64)
    flips = rng.random(count) < FLIP_PROBABILITY if flip else np.zeros(count, bool)
    return offsets, flips


def apply_crops(images: np.ndarray, indices: np.ndarray, offsets: np.ndarray, flips: np.ndarray,
                crop_size: int) -> np.ndarray:
    """uint8 (len(indices), s, s, 3) crops of `images[indices]` at `offsets`, mirrored where `flips`."""
    out = np.empty((len(indices), crop_size, crop_size, images.shape[3]), dtype=images.dtype)
    for k, (i, (row, col), flipped) in enumerate(zip(indices, offsets, flips)):
        crop = images[i, row:row + crop_size, col:col + crop_size]
        out[k] = crop[:, ::-1] if flipped else crop
    return out


def crop_flip(images: np.ndarray, indices: np.ndarray, crop_size: int, rng: np.random.Generator,
              flip: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random crop and horizontal flip of `images[indices]`, each image independently.

    Port of the original `Dataset.transform` (`draw_crops`, then `apply_crops`).

    Args:
      flip: False crops only (no flip is drawn), for labels that a mirror image would contradict.

    Returns:
      (uint8 (B, s, s, 3) crops, int (B, 2) (row, column) offsets, bool (B,) flips).
    """
    offsets, flips = draw_crops(len(indices), images.shape[1] - crop_size, rng, flip)
    return apply_crops(images, indices, offsets, flips, crop_size), offsets, flips


def images_to_float(images: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> float32 -1..1 as the original `Dataset`: x * (2 / 255) - 1 in float32."""
    return images.astype(np.float32) * np.float32(2.0 / 255) - np.float32(1.0)


def center_crop(images: np.ndarray, size: int = LR_IMSIZE) -> np.ndarray:
    """The central `size` x `size` window of (N, S, S, C) images (S - size even or odd: offset floor)."""
    offset = (images.shape[1] - size) // 2
    return images[:, offset: offset + size, offset: offset + size]


def _draw_caption_ids(count: int, captions: int, num_embedding: int, rng: np.random.Generator) -> np.ndarray:
    """`num_embedding` distinct caption ids out of `captions` for each of `count` images: (count, k)."""
    # argsort of uniform noise = an independent random permutation per row; its first k entries are
    # k distinct captions, as np.random.choice(10, k, replace=False) was in the original.
    return np.argsort(rng.random((count, captions)), axis=1)[:, :num_embedding]


def _mean_embeddings(embeddings: np.ndarray, indices: np.ndarray, caption_ids: np.ndarray) -> np.ndarray:
    """float32 (B, D): the mean of the chosen captions' embeddings of each image."""
    return embeddings[indices[:, None], caption_ids].mean(axis=1, dtype=np.float32)


def _sample_embeddings(embeddings: np.ndarray, indices: np.ndarray, num_embedding: int,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Mean of `num_embedding` distinct random caption embeddings per image.

    Port of the original `Dataset.sample_embeddings` (window > 1 averages, window == 1 picks one).

    Returns:
      (float32 (B, D) embeddings, int (B, num_embedding) caption ids).
    """
    caption_ids = _draw_caption_ids(len(indices), embeddings.shape[1], num_embedding, rng)
    return _mean_embeddings(embeddings, indices, caption_ids), caption_ids


def _check_sizes(data: SplitData, count: int, crop_size: int, num_embedding: int) -> None:
    """Raise if `count` images (a batch or grid rows), `crop_size` or `num_embedding` do not fit `data`."""
    if min(count, crop_size, num_embedding) < 1:
        raise ConfigError(f"batch size ({count}), crop size ({crop_size}) and TRAIN.NUM_EMBEDDING "
                          f"({num_embedding}) must all be positive")
    if count > len(data):
        raise DataError(f"{data.split_dir}: the {data.split} split has {len(data)} images, fewer than "
                        f"one batch of {count}")
    if crop_size > data.image_size:
        raise DataError(f"{data.split_dir / image_file_name(data.image_size)}: images are "
                        f"{data.image_size} px, smaller than the {crop_size} px crop")


class BatchSampler:
    """Draws training batches with the original's rules, in NumPy, each batch from its own seed.

    Port of the original `Dataset.next_batch` (original `misc/datasets.py`):

    1. Indices come from a new random permutation each epoch; a batch never wraps around the end of
       the permutation, so the last N mod B images of each permutation are skipped.
    2. Wrong images: B indices uniform over 0..N-1; those whose class equals the real image's class
       are moved by one shift drawn per batch from [100, 200), modulo N, with no second check.
    3. Real and wrong images are each randomly cropped to `crop_size` and flipped (p = 0.5),
       independently per image, and mapped to [-1, 1].
    4. The text embedding of each image is the mean of `num_embedding` distinct captions' embeddings.

    Batch k is a pure function of (seed, k): epoch e = k // steps_per_epoch takes its permutation
    from a generator seeded with (seed, e), and the batch's other draws come from one seeded with
    (seed, e, k mod steps_per_epoch, 1). A run resumed at iteration k therefore reads the batches an
    uninterrupted run would have read, and the workers of a cluster draw disjoint rows of the same
    global batch (`batch(k, rows)`). The original drew everything from NumPy's global generator.

    Attributes:
      steps_per_epoch: N // batch_size, batches per permutation (original `updates_per_epoch`).
      num_embedding: captions averaged per image (the requested value capped at C).
      position: the batch `next_batch` draws next.
    """

    def __init__(self, data: SplitData, batch_size: int, crop_size: int, num_embedding: int = 4,
                 seed: int = 0, start: int = 0):
        """Args:
          data: the split to sample from.
          batch_size: B, the global batch.
          crop_size: s, the side of the random crops (64 for Stage-I, 256 for Stage-II).
          num_embedding: captions averaged per image (cfg.TRAIN.NUM_EMBEDDING); capped at C.
          seed: seed of every random choice.
          start: the first batch `next_batch` draws.

        Raises:
          DataError: the split has fewer than `batch_size` images, or its images are smaller than the crop.
          ConfigError: a size is not positive.
        """
        _check_sizes(data, batch_size, crop_size, num_embedding)
        self.data = data
        self.batch_size = batch_size
        self.crop_size = crop_size
        self.num_embedding = min(num_embedding, data.captions_per_image)
        self.steps_per_epoch = len(data) // batch_size
        self.seed = int(seed)
        self.position = int(start)
        self._permutation: tuple[int, np.ndarray] | None = None

    @property
    def epochs_completed(self) -> int:
        """Permutations finished by `next_batch`; -1 before the first batch, as in the original."""
        return (self.position - 1) // self.steps_per_epoch if self.position else -1

    def permutation(self, epoch: int) -> np.ndarray:
        """The order of the images in `epoch`."""
        if self._permutation is None or self._permutation[0] != epoch:
            self._permutation = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.data)))
        return self._permutation[1]

    def next_batch(self) -> dict[str, Any]:
        """The batch at `position`, which then moves on by one (see `batch`)."""
        self.position += 1
        return self.batch(self.position - 1)

    def batch(self, index: int, rows: slice | None = None) -> dict[str, Any]:
        """Draw global batch `index`, or only its `rows` (a worker's share; every draw is made for
        the whole batch, so a share is exactly those rows of the whole).

        Returns:
          A dict with `images`, `wrong_images` float32 (b, s, s, 3) in [-1, 1] and `embeddings`
          float32 (b, D), b the rows asked for; and, for inspection, `indices`, `wrong_indices` (b,),
          `wrong_draws` (b,) (the uniform draws before the class shift), `wrong_shift` (int),
          `caption_ids` (b, num_embedding), `crop_offsets`, `wrong_crop_offsets` (b, 2) (row,
          column), `flips`, `wrong_flips` (b,) bool.
        """
        data, b = self.data, self.batch_size
        n, room = len(data), data.image_size - self.crop_size
        epoch, step = divmod(int(index), self.steps_per_epoch)
        indices = self.permutation(epoch)[step * b:(step + 1) * b]
        rng = np.random.default_rng([self.seed, epoch, step, 1])
        wrong_draws = rng.integers(0, n, size=b)
        wrong_shift = int(rng.integers(*WRONG_SHIFT_RANGE))
        collision = data.class_ids[indices] == data.class_ids[wrong_draws]
        wrong_indices = np.where(collision, (wrong_draws + wrong_shift) % n, wrong_draws)
        crop_offsets, flips = draw_crops(b, room, rng)
        wrong_crop_offsets, wrong_flips = draw_crops(b, room, rng)
        caption_ids = _draw_caption_ids(b, data.captions_per_image, self.num_embedding, rng)
        out = {"indices": indices, "wrong_indices": wrong_indices, "wrong_draws": wrong_draws,
               "caption_ids": caption_ids, "crop_offsets": crop_offsets, "wrong_crop_offsets": wrong_crop_offsets,
               "flips": flips, "wrong_flips": wrong_flips}
        out = {key: value[rows] if rows is not None else value for key, value in out.items()}
        return {
            "images": images_to_float(apply_crops(data.images, out["indices"], out["crop_offsets"], out["flips"],
                                                  self.crop_size)),
            "wrong_images": images_to_float(apply_crops(data.images, out["wrong_indices"], out["wrong_crop_offsets"],
                                                        out["wrong_flips"], self.crop_size)),
            "embeddings": _mean_embeddings(data.embeddings, out["indices"], out["caption_ids"]),
            "wrong_shift": wrong_shift,
            **out,
        }


class BatchFeeder:
    """Feeds `BatchSampler` batches to TensorFlow through a queue filled by a Python thread.

    The obvious `tf.data.Dataset.from_generator` runs the sampler inside a `py_func`; measured on a
    2-core CPU, merely having such a pipeline alive made every Stage-I training step about 1.9 times
    slower (the step's large buffers were page-faulted again on every step: 4 s of CPU instead of
    2.2), even with a trivial generator. Here a daemon thread runs the sampler and enqueues its
    batches into a `tf.queue.FIFOQueue`; the dataset only dequeues, so the pipeline holds no Python
    code and the batches are exactly the sampler's, in order.

    Under `tf.distribute` each replica takes one share of every global batch: the feeder of a
    worker yields, for global batch k = start, start + 1, ..., the share of each of its replicas in
    turn (the order `strategy.distribute_datasets_from_function` hands elements to local replicas).

    Use as a context manager (or call `close`); feeders still open at interpreter exit are closed.

    Args:
      data, batch_size, crop_size, num_embedding, seed: as for `BatchSampler` (`batch_size` is the global batch).
      start: the first global batch (the iteration a run continues from).
      shares: the rows of the global batch each local replica takes, `(first row, rows)` per
        replica; default: the whole batch.
      capacity: shares prepared ahead of the training step.
    """

    def __init__(self, data: SplitData, batch_size: int, crop_size: int, num_embedding: int = 4,
                 seed: int = 0, start: int = 0, shares: Sequence[tuple[int, int]] | None = None,
                 capacity: int = 4):
        self._sampler = BatchSampler(data, batch_size, crop_size, num_embedding, seed, start)  # validates
        self.shares = list(shares) if shares is not None else [(0, batch_size)]
        sizes = {rows for _, rows in self.shares}
        if len(sizes) != 1 or any(first < 0 or first + rows > batch_size for first, rows in self.shares):
            raise ValueError(f"shares {self.shares} are not equal slices of a batch of {batch_size}")
        rows = sizes.pop()
        tf = import_tensorflow()
        self._tf = tf
        self.shapes = [(rows, crop_size, crop_size, 3), (rows, crop_size, crop_size, 3),
                       (rows, data.embedding_dim), (), ()]
        self._queue = tf.queue.FIFOQueue(capacity, [tf.float32] * 3 + [tf.int64] * 2, shapes=self.shapes)
        self._closed = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._fill, name="stackgan-batch-feeder", daemon=True)
        self._thread.start()
        _OPEN_FEEDERS.add(self)

    def _fill(self) -> None:
        try:
            while not self._closed.is_set():
                index = self._sampler.position
                self._sampler.position += 1
                for first, rows in self.shares:
                    batch = self._sampler.batch(index, slice(first, first + rows))
                    self._queue.enqueue((batch["images"], batch["wrong_images"], batch["embeddings"],
                                         np.int64(index), np.int64(first)))
        except self._tf.errors.CancelledError:
            pass  # closed while waiting for room in the queue
        except BaseException as err:  # noqa: BLE001 - surfaced to the consumer by `close`
            self.error = err
            self._queue.close(cancel_pending_enqueues=True)

    def dataset(self):
        """An infinite `tf.data.Dataset` of `(images, wrong_images, embeddings, step)` shares.

        `step` is `{"iteration": k, "first_row": r}`: the global batch the share belongs to and its
        first row, from which `misc.gan.CondGAN.train_step` draws the share's noise.
        """
        queue = self._queue

        def dequeue(_):
            images, wrong, embeddings, iteration, first_row = queue.dequeue()
            return images, wrong, embeddings, {"iteration": iteration, "first_row": first_row}

        return self._tf.data.Dataset.from_tensors(0).repeat().map(dequeue)

    def close(self) -> None:
        """Stop the thread; re-raise an error the sampler hit, if any."""
        if not self._closed.is_set():
            self._closed.set()
            self._queue.close(cancel_pending_enqueues=True)
            self._thread.join(timeout=10)
            _OPEN_FEEDERS.discard(self)
        if self.error is not None:
            raise self.error

    def __enter__(self) -> "BatchFeeder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_OPEN_FEEDERS: "weakref.WeakSet[BatchFeeder]" = weakref.WeakSet()


@atexit.register
def _close_open_feeders() -> None:
    for feeder in list(_OPEN_FEEDERS):
        try:
            feeder.close()
        except BaseException:  # noqa: BLE001 - exiting anyway
            pass


def visualization_batch(data: SplitData, n_rows: int, crop_size: int, num_embedding: int,
                        seed: int) -> dict[str, Any]:
    """Rows for a sample grid: random distinct images, cropped and flipped as in training.

    Port of the original end-of-epoch `next_batch(batch_size, window)` calls of `epoch_sum_images`
    (training rows with window = NUM_EMBEDDING, test rows with window = 1).

    Args:
      data: the split to draw from.
      n_rows: number of rows (distinct images).
      crop_size: side of the crops.
      num_embedding: captions averaged per row (capped at C); 1 uses one random caption and returns
        its text, as the original's window == 1 path.
      seed: seed of the draws.

    Returns:
      `images` float32 (n_rows, s, s, 3) in [-1, 1], `embeddings` float32 (n_rows, D), `captions`
      (list of n_rows str: the caption used if num_embedding == 1, else each image's first caption
      as a label), `indices` (n_rows,), `caption_ids` (n_rows, k).

    Raises:
      DataError: fewer than `n_rows` images, or a caption file is missing or too short.
    """
    _check_sizes(data, n_rows, crop_size, num_embedding)
    rng = np.random.default_rng(seed)
    indices = rng.permutation(len(data))[:n_rows]
    images, _, _ = crop_flip(data.images, indices, crop_size, rng)
    k = min(num_embedding, data.captions_per_image)
    embeddings, caption_ids = _sample_embeddings(data.embeddings, indices, k, rng)
    chosen = caption_ids[:, 0] if k == 1 else np.zeros(n_rows, dtype=np.int64)
    captions = [data.caption(int(i), int(c)) for i, c in zip(indices, chosen)]
    return {"images": images_to_float(images), "embeddings": embeddings, "captions": captions,
            "indices": indices, "caption_ids": caption_ids}


@dataclass
class CaptionedSplit:
    """One split's images, classes and caption texts (the text encoder, the judge and the evaluation).

    The text encoder writes the embeddings pickle that `load_split` requires, so this reads a split
    without it.

    Attributes:
      data_dir, split: as `SplitData`.
      images: uint8 (N, 76, 76, 3), or (0, 76, 76, 3) when read without images.
      filenames, class_ids: as `SplitData`.
      captions: N lists of `CAPTIONS_PER_IMAGE` byte strings.
    """

    data_dir: Path
    split: str
    images: np.ndarray
    filenames: list
    class_ids: np.ndarray
    captions: list

    def __len__(self) -> int:
        return len(self.filenames)


def load_captioned_split(data_dir: str | os.PathLike, split: str, with_images: bool = True) -> CaptionedSplit:
    """Read `<data_dir>/<split>/` file names, classes and 76 px images, and the `text_c10` captions.

    Args:
      data_dir: dataset root (e.g. Data/birds).
      split: 'train' or 'test'.
      with_images: also load `76images.pickle` (not needed to embed captions).

    Returns:
      The `CaptionedSplit`, with the first `CAPTIONS_PER_IMAGE` captions of every image.

    Raises:
      DataError: a file is missing or malformed, the files disagree in length, or a caption file
        has fewer than `CAPTIONS_PER_IMAGE` captions.
    """
    data_dir = Path(data_dir)
    split_dir = data_dir / split
    filenames_path = split_dir / FILENAMES_FILE
    _require(filenames_path, f"the {split} split of {data_dir} is incomplete")
    filenames = read_filenames(filenames_path)
    class_path = split_dir / CLASS_INFO_FILE
    _require(class_path, f"the {split} split of {data_dir} is incomplete")
    class_ids = _load_class_ids(class_path)
    _check_length(class_path, len(class_ids), filenames_path, len(filenames))
    images = np.zeros((0, LR_SIZE, LR_SIZE, 3), np.uint8)
    if with_images:
        images_path = split_dir / image_file_name(LR_SIZE)
        _require(images_path, f"the {split} split of {data_dir} is incomplete")
        images = _load_images(images_path, LR_SIZE)
        _check_length(images_path, len(images), filenames_path, len(filenames), "images")
    captions = []
    for name, class_id in zip(filenames, class_ids):
        path = caption_path(data_dir, name, class_id)
        lines = read_caption_lines(path)
        if len(lines) < CAPTIONS_PER_IMAGE:
            raise DataError(f"{path}: has {len(lines)} captions, expected {CAPTIONS_PER_IMAGE}")
        captions.append(lines[:CAPTIONS_PER_IMAGE])
    return CaptionedSplit(data_dir, split, images, filenames, class_ids, captions)
