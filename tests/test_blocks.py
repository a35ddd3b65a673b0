"""Tests for misc/blocks.py: the shared blocks of the original `stageI/model.py` and `stageII/model.py`."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from misc import blocks
from misc.blocks import CondAugmentation, ConvBlock, LogitHead, ResidualBlock, TextContext, UpSampleBlock
from misc.custom_ops import BN_EPSILON

TEXT_DIM, EF_DIM, BATCH = 16, 8, 3


def _count(layer):
    return sum(int(np.prod(v.shape)) for v in layer.trainable_weights)


def _normal(shape, seed):
    return tf.random.stateless_normal(shape, seed=(seed, 0))


def _leaky(x):
    return np.where(x > 0, x, 0.2 * x)


def _bn_test_phase(layer, x):
    """What a freshly built BN does in inference mode (moving mean 0, variance 1)."""
    return layer.gamma.numpy() * x / np.sqrt(1.0 + BN_EPSILON) + layer.beta.numpy()


# --- Conditioning augmentation (original `stageI/model.py`) ---------------------------------------------------------


def test_ca_parameter_count_at_birds_width():
    ca = CondAugmentation(128)
    ca.build((None, 1024))
    assert _count(ca) == 262_400  # 1024 * 256 + 256


def test_ca_split_of_leaky_fc_output_and_sample_with_given_eps():
    ca = CondAugmentation(EF_DIM)
    embedding = _normal((BATCH, TEXT_DIM), 1)
    epsilon = _normal((BATCH, EF_DIM), 2)
    c_code, mu, log_sigma = ca(embedding, epsilon=epsilon)
    conditions = _leaky(embedding.numpy() @ ca.fc.kernel.numpy() + ca.fc.bias.numpy())
    np.testing.assert_allclose(mu.numpy(), conditions[:, :EF_DIM], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(log_sigma.numpy(), conditions[:, EF_DIM:], rtol=1e-5, atol=1e-7)
    expected = mu.numpy() + np.exp(log_sigma.numpy()) * epsilon.numpy()
    np.testing.assert_allclose(c_code.numpy(), expected, rtol=1e-6, atol=1e-7)
    assert c_code.shape == mu.shape == log_sigma.shape == (BATCH, EF_DIM)


def test_ca_draws_truncated_normal_eps_and_is_seedable():
    ca = CondAugmentation(EF_DIM)
    embedding = _normal((512, TEXT_DIM), 3)
    keras.utils.set_random_seed(7)
    c_code, mu, log_sigma = ca(embedding)
    eps = ((c_code - mu) / tf.exp(log_sigma)).numpy()
    assert np.abs(eps).max() <= 2.0 + 1e-4  # resampled beyond 2 sigma
    assert abs(eps.mean()) < 0.05 and eps.std() == pytest.approx(0.88, abs=0.03)
    keras.utils.set_random_seed(7)
    again, _, _ = ca(embedding)
    np.testing.assert_array_equal(c_code.numpy(), again.numpy())
    different, _, _ = ca(embedding)
    assert not np.array_equal(c_code.numpy(), different.numpy())


def test_ca_without_augmentation_returns_mu():
    ca = CondAugmentation(EF_DIM, cond_augmentation=False)
    embedding = _normal((BATCH, TEXT_DIM), 4)
    c_code, mu, log_sigma = ca(embedding, epsilon=_normal((BATCH, EF_DIM), 5))
    np.testing.assert_array_equal(c_code.numpy(), mu.numpy())
    c_code, mu, _ = ca(embedding, training=True)
    np.testing.assert_array_equal(c_code.numpy(), mu.numpy())
    assert log_sigma.shape == (BATCH, EF_DIM)


# --- Conv, up-sampling and residual blocks ---------------------------------------------------


def test_conv_block_without_bn_or_activation_is_the_bare_conv():
    block = ConvBlock(5, 3, batch_norm=False)
    x = _normal((BATCH, 6, 6, 4), 6)
    y = block(x, training=True)
    assert block.bn is None and block.conv.bias is None
    np.testing.assert_array_equal(y.numpy(), block.conv(x).numpy())


def test_conv_block_applies_bn_then_activation():
    block = ConvBlock(5, 4, strides=2, activation="leaky_relu")
    x = _normal((BATCH, 8, 8, 4), 7)
    y = block(x, training=False).numpy()
    expected = _leaky(_bn_test_phase(block.bn, block.conv(x).numpy()))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    assert y.shape == (BATCH, 4, 4, 5)


def test_upsample_block_is_pixel_replication_then_conv():
    block = UpSampleBlock(4, activation=None)
    x = _normal((BATCH, 4, 4, 6), 8)
    y = block(x, training=False).numpy()
    replicated = np.repeat(np.repeat(x.numpy(), 2, axis=1), 2, axis=2)
    conv = block.conv_block.conv
    expected = _bn_test_phase(block.conv_block.bn, conv(tf.constant(replicated)).numpy())
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    assert y.shape == (BATCH, 8, 8, 4) and y.min() < 0  # no activation
    assert conv.kernel.shape == (3, 3, 6, 4)


def test_upsample_block_final_rgb_form():
    block = UpSampleBlock(3, batch_norm=False, activation="tanh")
    y = block(10.0 * _normal((BATCH, 4, 4, 6), 9)).numpy()
    assert block.conv_block.bn is None
    assert y.shape == (BATCH, 8, 8, 3) and np.abs(y).max() <= 1.0


def test_residual_block_bottleneck_structure():
    block = ResidualBlock(16, 4, "leaky_relu")
    block.build((None, 4, 4, 16))
    kernels = [b.conv.kernel.shape for b in block.branch.layers]
    assert kernels == [(1, 1, 16, 4), (3, 3, 4, 4), (3, 3, 4, 16)]
    assert [b.activation for b in block.branch.layers] == ["leaky_relu", "leaky_relu", None]
    assert all(b.bn is not None for b in block.branch.layers)


def test_residual_block_plain_structure():
    block = ResidualBlock(16)
    block.build((None, 4, 4, 16))
    assert [b.conv.kernel.shape for b in block.branch.layers] == [(3, 3, 16, 16), (3, 3, 16, 16)]
    assert [b.activation for b in block.branch.layers] == ["relu", None]
    assert _count(block) == 2 * (9 * 16 * 16 + 2 * 16)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_residual_block_activates_after_the_add(activation):
    block = ResidualBlock(8, 2, activation)
    x = _normal((BATCH, 4, 4, 8), 10)
    y = block(x, training=True).numpy()
    pre = x.numpy() + block.branch(x, training=True).numpy()
    expected = np.maximum(pre, 0) if activation == "relu" else _leaky(pre)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    assert (y.min() >= 0) == (activation == "relu")


# --- Discriminator text context and logit head -----------------------------------------------


def test_spatial_tile():
    code = tf.constant([[1.0, 2.0], [3.0, 4.0]])
    tiled = blocks.spatial_tile(code, tf.zeros((2, 3, 5, 7))).numpy()
    assert tiled.shape == (2, 3, 5, 2)
    np.testing.assert_array_equal(tiled[1, 2, 4], [3.0, 4.0])
    np.testing.assert_array_equal(tiled[0], np.broadcast_to([1.0, 2.0], (3, 5, 2)))


def test_text_context_is_leaky_fc_on_the_raw_embedding():
    context = TextContext(EF_DIM)
    embedding = _normal((BATCH, TEXT_DIM), 11)
    y = context(embedding).numpy()
    expected = _leaky(embedding.numpy() @ context.fc.kernel.numpy() + context.fc.bias.numpy())
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-7)
    context_128 = TextContext(128)
    context_128.build((None, 1024))
    assert _count(context_128) == 131_200


def test_logit_head_concats_image_code_first_and_returns_one_logit_per_example():
    head = LogitHead(6)
    x_code = _normal((BATCH, 4, 4, 5), 12)
    c_code = _normal((BATCH, EF_DIM), 13)
    logits = head((x_code, c_code), training=False).numpy()
    assert logits.shape == (BATCH,)
    joint_kernel = head.joint.conv.kernel.numpy()[0, 0]  # (5 + EF_DIM, 6)
    logit_kernel = head.logit.kernel.numpy()  # (4, 4, 6, 1)
    assert logit_kernel.shape == (4, 4, 6, 1) and head.logit.bias is None
    tiled = np.broadcast_to(c_code.numpy()[:, None, None], (BATCH, 4, 4, EF_DIM))
    x_c = np.concatenate([x_code.numpy(), tiled], axis=-1)
    hidden = _leaky(_bn_test_phase(head.joint.bn, x_c @ joint_kernel))
    expected = np.einsum("bhwc,hwc->b", hidden, logit_kernel[..., 0])
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-6)


def test_logit_head_parameter_count_at_birds_width():
    head = LogitHead(512)
    head.build(((None, 4, 4, 512), (None, 128)))
    assert _count(head) == 640 * 512 + 2 * 512 + 4 * 4 * 512  # 336,896


# --- Serialization ---------------------------------------------------------------------------

LAYERS = [
    CondAugmentation(EF_DIM, cond_augmentation=False, name="my_ca"),
    ConvBlock(4, 3, strides=2, batch_norm=False, activation="tanh", sync_bn=True),
    UpSampleBlock(4, batch_norm=True, activation=None),
    ResidualBlock(8, 2, "leaky_relu", sync_bn=True),
    ResidualBlock(8),
    TextContext(EF_DIM),
    LogitHead(6, sync_bn=True),
]


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: type(layer).__name__)
def test_get_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    # Registered under the package name, so generic deserialisation finds the class.
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == config
    assert keras.saving.get_registered_name(type(layer)) == f"stackgan>{type(layer).__name__}"
