"""Inception-v3 pool features and logits for the Inception Score and FID.

Which weights, and why it matters
---------------------------------
Inception Score and FID values are only comparable when they come from the same Inception
weights *and* the same resize. The field uses three sets of weights:

* **The 2015 Inception graph** (`classify_image_graph_def.pb` in TensorFlow's
  inception-2015-12-05 release, 1008 outputs). The standard TF FID (bioinf-jku/TTUR `fid.py`)
  takes its 2048-d `pool_3` features; it feeds 0-255 images of any size, which the graph resizes
  to 299 x 299 with TF1 bilinear resizing (no half-pixel centres) and scales by (x - 128) / 128.
  openai/improved-gan's Inception Score uses the same graph with a softmax over all 1008
  outputs; StackGAN-inception-model used it for COCO. pytorch-fid and torch-fidelity port these weights
  (pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`); torch-fidelity also reproduces the TF1
  resize, while pytorch-fid by default resizes with half-pixel centres and scales by
  x / 127.5 - 1, so its FIDs differ slightly. **These are the weights to prefer for FID.**
  The 2015 graph differs from the later TF-slim / Keras Inception-v3 in one place: the pooling
  branch of its last block (`mixed_10`) max-pools where the later networks average-pool
  (pytorch-fid's `FIDInceptionE_2` patch). Variant `"tf2015"` builds that.
* **Keras' ImageNet weights** (`inception_v3_weights_tf_dim_ordering_tf_kernels.h5`, 1000
  classes, the TF-slim architecture: variant `"slim"`). Different training, different features:
  scores from them are not comparable with the 2015 weights.
* **StackGAN's fine-tuned scorers** (StackGAN-inception-model): the CUB and Oxford-102 Inception Scores of the paper
  came from a TF-slim Inception-v3 fine-tuned on each dataset's 50 / 20 *test* classes (plus a
  background output 0, dropped before the softmax: `misc.evaluation.metrics.softmax_known_classes`).
  Their checkpoints (hanzhanggit/StackGAN-inception-model) are on Google Drive behind an access
  request (issue #6). Architecture: variant `"slim"` with `num_classes=51` (birds) or 21
  (flowers); preprocessing: bilinear resize to 299 and x / 127.5 - 1, as that scorer did.

Nothing is downloaded, ever: `build_inception(weights_path=...)` loads a local Keras file
(`.weights.h5`, legacy `.h5` or `.keras`) holding weights for the chosen architecture. The
docs/evaluation.md ('Evaluation weights') says where to get them; every figure must state which weights
and which variant (resize) it used.
"""
from __future__ import annotations

import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import h5py
import keras
import numpy as np
import tensorflow as tf

from misc.errors import StackGANError
from misc.utils import progress as progress_bar

# Inception-v3's input side and its pool_3 / avg_pool feature width.
IMAGE_SIZE = 299
POOL_DIM = 2048
DEFAULT_VARIANT = "tf2015"
WEIGHT_SUFFIXES = (".weights.h5", ".h5", ".hdf5", ".keras")
_ADVICE = "see docs/evaluation.md, 'Evaluation weights'"
# The Keras messages of a load that left some layers with their initial weights instead of
# raising (a file of another model).
_PARTIAL_LOAD_HINTS = ("could not be loaded", "Skipping", "retain their freshly-initialized")


@dataclass(frozen=True)
class InceptionVariant:
    """Architecture and input pipeline that one family of Inception weights expects.

    Attributes:
      mixed10_pool: "max" or "avg", the pooling in the pooling branch of the last block.
      num_classes: default number of logits.
      half_pixel_resize: bilinear resize with half-pixel centres and antialiasing (PIL's, as
        `scipy.misc.imresize`) if True; TF1 `ResizeBilinear` (no half-pixel centres) if False.
      round_after_resize: round the resized 0-255 image to integers, as the uint8 result of
        `scipy.misc.imresize` was.
      offset, scale: the network input is (x - offset) / scale for x in [0, 255].
    """

    mixed10_pool: str
    num_classes: int
    half_pixel_resize: bool
    round_after_resize: bool
    offset: float
    scale: float


VARIANTS = {
    # The 2015 graph of the standard TF FID and openai/improved-gan.
    "tf2015": InceptionVariant("max", 1008, False, False, 128.0, 128.0),
    # TF-slim / keras.applications: Keras' ImageNet weights and StackGAN-inception-model's fine-tuned scorers.
    "slim": InceptionVariant("avg", 1000, True, True, 127.5, 127.5),
}


def _variant(name: str) -> InceptionVariant:
    if name not in VARIANTS:
        raise ValueError(f"unknown Inception variant {name!r}; choose one of {sorted(VARIANTS)}")
    return VARIANTS[name]


def _check_weights_file(path: Path) -> None:
    """Fail fast, before the network is built, on a file that cannot hold Keras weights."""
    if not path.is_file():
        raise StackGANError(f"{path}: Inception weights file not found; {_ADVICE}.")
    name = path.name.lower()
    if not name.endswith(WEIGHT_SUFFIXES):
        raise StackGANError(
            f"{path}: unsupported Inception weights format, expected a .weights.h5, .h5 or "
            f".keras file; {_ADVICE}.")
    if name.endswith(".keras"):
        if not zipfile.is_zipfile(path):
            raise StackGANError(f"{path}: not a .keras archive (not a zip file); {_ADVICE}.")
    elif not h5py.is_hdf5(path):
        raise StackGANError(f"{path}: not an HDF5 weights file; {_ADVICE}.")


def _replace_mixed10_pool(model: keras.Model) -> keras.Model:
    """Copy of `model` whose last block max-pools in its pooling branch (the 2015 graph).

    The other layers are shared, not copied: the pooling layer holds no weights, so a weights file
    fits both variants.
    """
    mixed9 = model.get_layer("mixed9")  # keras.applications names the block outputs mixed0..10
    (target,) = [
        layer for layer in model.layers
        if isinstance(layer, keras.layers.AveragePooling2D) and layer.input is mixed9.output]

    def swap(layer: keras.layers.Layer) -> keras.layers.Layer:
        if layer is target:
            return keras.layers.MaxPooling2D(3, strides=1, padding="same", name="mixed10_pool_max")
        return layer

    return keras.models.clone_model(model, clone_function=swap)


def build_inception(
    weights_path: str | Path | None = None,
    variant: str = DEFAULT_VARIANT,
    num_classes: int | None = None,
    include_top: bool = True,
) -> keras.Model:
    """Inception-v3 that returns pool features and logits, with weights from a local file.

    Built on `keras.applications.InceptionV3(weights=None, input_shape=(299, 299, 3))`, so nothing
    is downloaded; `variant="tf2015"` swaps the pooling of the last block's pooling branch for a
    max pool to match the 2015 graph of the standard TF FID (module docstring). Port, for the
    Keras stack, of the networks behind StackGAN-inception-model's `inference` and TTUR's
    `pool_3` features.

    Args:
      weights_path: `.weights.h5`, legacy `.h5` (e.g. Keras' ImageNet file) or `.keras` file
        with weights for this architecture; None keeps random weights (tests only).
      variant: "tf2015" (2015 graph: FID, improved-gan IS) or "slim" (Keras ImageNet weights,
        StackGAN's fine-tuned scorers); see `VARIANTS`.
      num_classes: number of logits; None takes the variant's (1008 or 1000). StackGAN's
        fine-tuned scorers have 51 (birds) or 21 (flowers), background output 0 included.
      include_top: False builds the feature extractor only (no logits, FID only); a weights file
        with a classifier still loads into it.

    Returns:
      A `keras.Model` mapping (B, 299, 299, 3) inputs, prepared by `preprocess`, to
      {"pool": (B, 2048), "logits": (B, num_classes)} ("logits" only with `include_top`). Its
      attribute `inception_variant` tells `extract` which preprocessing to use.

    Raises:
      StackGANError: the weights file is missing, not a Keras weights file, or holds weights of
        another model.
    """
    spec = _variant(variant)
    num_classes = spec.num_classes if num_classes is None else int(num_classes)
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    path = None if weights_path is None else Path(weights_path)
    if path is not None:
        _check_weights_file(path)

    base = keras.applications.InceptionV3(
        include_top=include_top, weights=None, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
        pooling="avg", classes=num_classes, classifier_activation=None)
    if include_top:
        outputs = {"pool": base.get_layer("avg_pool").output, "logits": base.output}
    else:
        outputs = {"pool": base.output}
    model = keras.Model(base.input, outputs, name=f"inception_v3_{variant}")
    if spec.mixed10_pool == "max":
        model = _replace_mixed10_pool(model)
    model.inception_variant = variant

    if path is not None:
        head = f"with {num_classes} classes" if include_top else "feature extractor"
        what = f"an Inception-v3 {head} (variant {variant!r})"
        _load_weights(model, path, what)
    return model


def _load_weights(model: keras.Model, path: Path, what: str) -> None:
    """`model.load_weights(path)`, with any mismatch turned into one `StackGANError` sentence."""
    message = f"{path}: does not hold the weights of {what}; {_ADVICE}."
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(str(path))
        except Exception as err:  # any failure to read a user's file is that file's fault
            raise StackGANError(message) from err
    if any(hint in str(w.message) for w in caught for hint in _PARTIAL_LOAD_HINTS):
        raise StackGANError(message)
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _as_3_channels(images: np.ndarray) -> np.ndarray:
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"images must be (N, H, W, 3), (N, H, W, 1) or (N, H, W), got {images.shape}")
    if images.shape[-1] == 1:
        # Grey to RGB by repeating the channel (StackGAN-inception-model's `np.resize` meant to).
        images = np.repeat(images, 3, axis=-1)
    return images


def _to_0_255(images: np.ndarray) -> np.ndarray:
    """uint8 / integer images as they are; float images in [-1, 1] mapped linearly onto [0, 255]."""
    if np.issubdtype(images.dtype, np.integer):
        if images.size and (images.min() < 0 or images.max() > 255):
            raise ValueError("integer images must lie in [0, 255]")
        return images.astype(np.float32)
    images = images.astype(np.float32)
    if images.size and (images.min() < -1.0 - 1e-5 or images.max() > 1.0 + 1e-5):
        raise ValueError(
            "float images must lie in [-1, 1] (generator output); pass 0-255 images as uint8")
    return (np.clip(images, -1.0, 1.0) + 1.0) * 127.5


def _preprocess_tensor(images: np.ndarray, variant: str) -> tf.Tensor:
    spec = _variant(variant)
    pixels = tf.convert_to_tensor(_to_0_255(_as_3_channels(np.asarray(images))))
    size = (IMAGE_SIZE, IMAGE_SIZE)
    if spec.half_pixel_resize:
        # PIL's bilinear filter, which `scipy.misc.imresize` used: half-pixel centres, and a
        # widened (antialiasing) kernel when shrinking; TF's antialias does the same.
        resized = tf.image.resize(pixels, size, method="bilinear", antialias=True)
    else:
        # The ResizeBilinear op inside the 2015 graph (TF1 default: no half-pixel centres).
        resized = tf.raw_ops.ResizeBilinear(
            images=pixels, size=size, align_corners=False, half_pixel_centers=False)
    if spec.round_after_resize:
        resized = tf.clip_by_value(tf.round(resized), 0.0, 255.0)
    return (resized - spec.offset) / spec.scale


def preprocess(images: np.ndarray, variant: str = DEFAULT_VARIANT) -> np.ndarray:
    """Resize images bilinearly to 299 x 299 and scale them to the network's input range.

    Port of `preprocess` of StackGAN-inception-model (variant "slim": PIL bilinear resize
    as `scipy.misc.imresize`, rounded to integers as its uint8 result, then x / 127.5 - 1) and of
    the input stage of the 2015 graph of the standard TF FID (variant "tf2015": TF1 bilinear
    resize without half-pixel centres, no rounding, then (x - 128) / 128). PIL's fixed-point
    arithmetic can round a pixel differently from TF's resize, so "slim" matches the original to
    about one grey level.

    Args:
      images: (N, H, W, 3) images, uint8 in [0, 255] (as read from image files) or float in
        [-1, 1] (generator output, mapped to (x + 1) * 127.5 without rounding); grey (N, H, W)
        or (N, H, W, 1) images get their channel repeated.
      variant: "tf2015" or "slim", as given to `build_inception`.

    Returns:
      (N, 299, 299, 3) float32 network inputs, in [-1, 1].
    """
    return _preprocess_tensor(images, variant).numpy()


def extract(
    model: keras.Model,
    images: np.ndarray | Sequence[np.ndarray],
    batch_size: int = 64,
    variant: str | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Pool features and logits of `images`, batch by batch.

    Port of the batching loop of StackGAN-inception-model's `get_inception_score`, except that every
    image is used:
    the original shuffled and dropped the last N mod 64 images, which is the caller's choice here
    (see `misc.evaluation.metrics.inception_score`). Images are preprocessed one batch at a time, so N is
    limited only by the memory of `images` itself.

    Args:
      model: a model from `build_inception`.
      images: (N, H, W, C) array (uint8 or float in [-1, 1], see `preprocess`), or any sequence
        whose slices are such arrays or lists of (H, W, C) images of one size.
      batch_size: images per forward pass (64 in the original scorer).
      variant: preprocessing to use; None takes the model's `inception_variant`.
      progress: show a tqdm progress bar.

    Returns:
      (pool (N, 2048) float32, logits (N, num_classes) float32 or None for a model built with
      `include_top=False`).
    """
    variant = variant or getattr(model, "inception_variant", DEFAULT_VARIANT)
    _variant(variant)
    total = len(images)
    if total == 0:
        raise ValueError("no images to extract features from")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")

    def forward(batch: tf.Tensor) -> dict:
        return model(batch, training=False)

    if total > batch_size:
        # Tracing the 313-layer graph costs about two eager passes on a CPU, so only several
        # batches pay for it; the signature gives one trace for every batch size.
        forward = tf.function(
            forward, input_signature=[tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32)])
    pools, logits = [], []
    with progress_bar(total=total, unit="img", desc="inception", disable=not progress) as bar:
        for start in range(0, total, batch_size):
            batch = images[start:start + batch_size]
            if isinstance(batch, (list, tuple)):
                batch = np.stack(batch)
            outputs = forward(_preprocess_tensor(batch, variant))
            pools.append(outputs["pool"].numpy())
            if "logits" in outputs:
                logits.append(outputs["logits"].numpy())
            bar.update(len(batch))
    return np.concatenate(pools), (np.concatenate(logits) if logits else None)
