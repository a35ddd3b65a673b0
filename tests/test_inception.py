"""Tests for misc/evaluation/inception.py: the plumbing of the Inception-v3 extractor, with random weights.

No real Inception weights exist in the repository (they are never downloaded), so these tests
check shapes, weight files and their errors, and the preprocessing against a NumPy reference.
The full-size network is built once per module; each further build costs a few seconds on CPU.
"""
import h5py
import keras
import numpy as np
import pytest

from misc.errors import StackGANError
from misc.evaluation.inception import IMAGE_SIZE, POOL_DIM, build_inception, extract, preprocess


@pytest.fixture(scope="module")
def images():
    """Three small uint8 RGB images, like generated 64 x 64 samples read from files."""
    return np.random.default_rng(0).integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def model():
    """The default (2015-graph, 1008 classes) network with random weights."""
    return build_inception()


@pytest.fixture(scope="module")
def features(model, images):
    """`extract` of the module model, in batches of 2 so the last batch is partial."""
    return extract(model, images, batch_size=2)


@pytest.fixture(scope="module")
def saved_weights(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "random_inception.weights.h5"
    model.save_weights(path)
    return path


def _assert_one_line_error(excinfo, path):
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(path) in message and "docs/evaluation.md, 'Evaluation weights'" in message


# --- network and extraction ------------------------------------------------------------------

def test_extract_shapes_and_values(features, images):
    pool, logits = features
    assert pool.shape == (len(images), POOL_DIM) and pool.dtype == np.float32
    assert logits.shape == (len(images), 1008) and logits.dtype == np.float32
    assert np.all(np.isfinite(pool)) and np.all(np.isfinite(logits))
    assert not np.allclose(pool[0], pool[1], rtol=1e-3, atol=0.0)  # inputs reach the network


def test_default_variant_max_pools_in_the_last_block(model):
    # keras.applications' InceptionV3 has 9 average pools in block branches; the 2015 graph
    # max-pools in the last one, which a model lists only if its graph uses it.
    assert isinstance(model.get_layer("mixed10_pool_max"), keras.layers.MaxPooling2D)
    assert sum(isinstance(layer, keras.layers.AveragePooling2D) for layer in model.layers) == 8
    assert model.inception_variant == "tf2015"


def test_weights_file_round_trip_gives_identical_features(saved_weights, features, images):
    loaded = build_inception(weights_path=saved_weights)
    # One batch of 3 here against batches of 2 + 1 in `features`: batching does not matter either.
    pool, logits = extract(loaded, list(images), batch_size=3, progress=True)
    # Another random initialisation differs by ~1e-4; round-off between batchings is ~1e-9.
    np.testing.assert_allclose(pool, features[0], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(logits, features[1], rtol=1e-5, atol=1e-8)


def test_missing_weights_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "inception_v3.weights.h5"
    with pytest.raises(StackGANError, match="not found") as excinfo:
        build_inception(weights_path=path)
    _assert_one_line_error(excinfo, path)


@pytest.mark.parametrize("name, content, match", [
    ("classify_image_graph_def.pb", b"\x08\x01", "unsupported Inception weights format"),
    ("inception.weights.h5", b"not hdf5 at all", "not an HDF5"),
    ("inception.keras", b"not a zip", "not a .keras archive"),
])
def test_unreadable_weights_file_is_a_one_line_error(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(StackGANError, match=match) as excinfo:
        build_inception(weights_path=path)
    _assert_one_line_error(excinfo, path)


def test_weights_of_another_model_are_a_one_line_error(tmp_path):
    path = tmp_path / "tiny.weights.h5"
    tiny = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    tiny.save_weights(path)
    with pytest.raises(StackGANError, match="does not hold the weights") as excinfo:
        build_inception(weights_path=path, variant="slim", include_top=False)
    _assert_one_line_error(excinfo, path)


def test_weights_with_another_class_count_are_a_one_line_error(saved_weights):
    with pytest.raises(StackGANError, match="with 1000 classes") as excinfo:
        build_inception(weights_path=saved_weights, variant="slim")
    _assert_one_line_error(excinfo, saved_weights)


def test_unknown_variant_is_rejected_before_building():
    with pytest.raises(ValueError, match="unknown Inception variant"):
        build_inception(variant="pytorch")


@pytest.mark.slow
def test_keras_h5_and_keras_archive_load_into_both_variants(model, features, images, tmp_path):
    """Keras' ImageNet file is a legacy weights-only `.h5` of keras.applications.InceptionV3."""
    # Keras 3 writes that format only through this private helper.
    from keras.src.legacy.saving import legacy_h5_format

    reference = keras.applications.InceptionV3(
        weights=None, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), classifier_activation=None)
    h5_path = tmp_path / "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"
    with h5py.File(h5_path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, reference)
    slim = build_inception(weights_path=h5_path, variant="slim")
    _, logits = extract(slim, images)
    expected = reference(preprocess(images, variant="slim"), training=False)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-8)

    archive = tmp_path / "inception.keras"
    model.save(archive)
    features_only = build_inception(weights_path=archive, include_top=False)
    pool, none = extract(features_only, images)
    assert none is None
    np.testing.assert_allclose(pool, features[0], rtol=1e-5, atol=1e-8)


# --- preprocessing ---------------------------------------------------------------------------

def _bilinear_reference(image, out_size, half_pixel):
    """Separable bilinear resize of one (H, W, C) float image, written from the definitions."""
    def weights(in_size):
        dst = np.arange(out_size, dtype=np.float64)
        if half_pixel:
            src = np.clip((dst + 0.5) * in_size / out_size - 0.5, 0.0, None)
        else:
            src = dst * in_size / out_size
        lo = np.minimum(np.floor(src).astype(int), in_size - 1)
        hi = np.minimum(lo + 1, in_size - 1)
        frac = src - lo
        matrix = np.zeros((out_size, in_size))
        matrix[np.arange(out_size), lo] += 1.0 - frac
        matrix[np.arange(out_size), hi] += frac
        return matrix

    rows, cols = weights(image.shape[0]), weights(image.shape[1])
    return np.einsum("ih,jw,hwc->ijc", rows, cols, image.astype(np.float64))


def test_preprocess_resize_matches_a_numpy_bilinear_reference():
    image = np.random.default_rng(1).integers(0, 256, size=(1, 5, 7, 3), dtype=np.uint8)
    # 2015 graph: TF1 ResizeBilinear (no half-pixel centres), then (x - 128) / 128.
    expected = (_bilinear_reference(image[0], IMAGE_SIZE, half_pixel=False) - 128.0) / 128.0
    np.testing.assert_allclose(preprocess(image, variant="tf2015")[0], expected, atol=2e-5)
    # StackGAN scorer: half-pixel bilinear (PIL, upsampling), uint8 rounding, x / 127.5 - 1.
    reference = _bilinear_reference(image[0], IMAGE_SIZE, half_pixel=True)
    got_levels = (preprocess(image, variant="slim")[0] + 1.0) * 127.5
    np.testing.assert_allclose(got_levels, np.round(got_levels), atol=1e-3)  # whole grey levels
    assert np.max(np.abs(got_levels - reference)) <= 0.5 + 1e-3


@pytest.mark.parametrize("variant, white", [("tf2015", 127.0 / 128.0), ("slim", 1.0)])
def test_preprocess_range_shape_and_dtype(variant, white):
    black = np.zeros((1, 64, 64, 3), np.uint8)
    out = preprocess(np.concatenate([black, black + 255]), variant=variant)
    assert out.shape == (2, IMAGE_SIZE, IMAGE_SIZE, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], -1.0)
    np.testing.assert_allclose(out[1], white)


def test_preprocess_maps_generator_floats_like_uint8():
    uint8 = np.random.default_rng(2).integers(0, 256, size=(2, 16, 16, 3), dtype=np.uint8)
    floats = uint8.astype(np.float32) / 127.5 - 1.0  # what a tanh generator's output means
    np.testing.assert_allclose(preprocess(floats), preprocess(uint8), atol=1e-5)


def test_preprocess_repeats_grey_channels_and_keeps_299_inputs():
    shape = (2, IMAGE_SIZE, IMAGE_SIZE)
    grey = np.random.default_rng(3).integers(0, 256, size=shape, dtype=np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    out = preprocess(grey[..., None])
    np.testing.assert_array_equal(out, preprocess(grey))
    np.testing.assert_array_equal(out, preprocess(rgb))
    np.testing.assert_allclose(out, (rgb.astype(np.float32) - 128.0) / 128.0, atol=1e-6)


def test_preprocess_rejects_bad_images():
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        preprocess(np.full((1, 8, 8, 3), 255.0, np.float32))
    with pytest.raises(ValueError, match="N, H, W, 3"):
        preprocess(np.zeros((1, 8, 8, 4), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        preprocess(np.full((1, 8, 8, 3), 300, np.int32))
