"""Tests for misc/custom_ops.py: the constants and layer settings of the original `misc/custom_ops.py`."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from misc import custom_ops

# Standard deviation of a standard normal truncated at +-2 (no rescaling, as in TF and Keras):
# sqrt(1 - 2 * 2 * phi(2) / (Phi(2) - Phi(-2))).
_TRUNCATED_STD_RATIO = math.sqrt(
    1 - 4 * math.exp(-2) / math.sqrt(2 * math.pi) / math.erf(2 / math.sqrt(2))
)


def test_constants_are_the_original_numbers():
    assert custom_ops.INIT_STDDEV == 0.02
    assert custom_ops.BN_MOMENTUM == 0.9
    assert custom_ops.BN_EPSILON == 1e-5
    assert custom_ops.LEAKY_SLOPE == 0.2
    assert custom_ops.ADAM_BETA1 == 0.5
    assert custom_ops.ADAM_EPSILON == 1e-8


def test_conv2d_has_no_bias_and_truncated_normal_weights():
    keras.utils.set_random_seed(0)
    conv = custom_ops.conv2d(64, 4, strides=2, name="c")
    conv.build((None, 8, 8, 64))
    assert conv.name == "c"
    assert conv.use_bias is False and conv.bias is None
    assert [tuple(w.shape) for w in conv.weights] == [(4, 4, 64, 64)]
    assert conv.padding == "same" and conv.strides == (2, 2)
    kernel = conv.kernel.numpy()
    # Truncated at 2 sigma = 0.04; std of the truncated normal is 0.02 * 0.8796.
    assert np.abs(kernel).max() <= 2 * custom_ops.INIT_STDDEV
    assert abs(kernel.mean()) < 1e-3
    assert kernel.std() == pytest.approx(custom_ops.INIT_STDDEV * _TRUNCATED_STD_RATIO, rel=0.03)


def test_conv2d_same_padding_pads_one_each_side_for_4x4_stride_2():
    # TF SAME on an even size with a 4x4/2 kernel pads 1 on each side (= PyTorch padding=1).
    conv = custom_ops.conv2d(3, 4, strides=2)
    x = tf.random.stateless_normal((2, 8, 8, 2), seed=(1, 2))
    y = conv(x)
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    expected = tf.nn.conv2d(padded, conv.kernel, strides=2, padding="VALID")
    assert y.shape == (2, 4, 4, 3)
    np.testing.assert_allclose(y.numpy(), expected.numpy(), atol=1e-6)


def test_dense_has_normal_kernel_and_zero_bias():
    keras.utils.set_random_seed(0)
    fc = custom_ops.dense(256)
    fc.build((None, 256))
    kernel = fc.kernel.numpy()
    np.testing.assert_array_equal(fc.bias.numpy(), 0.0)
    assert fc.activation is keras.activations.linear
    assert kernel.std() == pytest.approx(custom_ops.INIT_STDDEV, rel=0.03)
    # Not truncated: a plain normal has about 4.6 % of its values beyond 2 sigma.
    assert np.mean(np.abs(kernel) > 2 * custom_ops.INIT_STDDEV) == pytest.approx(0.0455, abs=0.005)


def test_batch_norm_settings_and_initial_values():
    keras.utils.set_random_seed(0)
    bn = custom_ops.batch_norm(name="b")
    bn.build((None, 4, 4, 4096))
    assert bn.name == "b"
    assert bn.momentum == 0.9 and bn.epsilon == 1e-5 and bn.axis == -1
    assert bn.synchronized is False
    assert custom_ops.batch_norm(synchronized=True).synchronized is True
    gamma = bn.gamma.numpy()
    assert gamma.mean() == pytest.approx(1.0, abs=1e-3)
    assert gamma.std() == pytest.approx(custom_ops.INIT_STDDEV, rel=0.05)
    np.testing.assert_array_equal(bn.beta.numpy(), 0.0)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), 0.0)
    np.testing.assert_array_equal(bn.moving_variance.numpy(), 1.0)
    assert len(bn.trainable_weights) == 2


def test_batch_norm_momentum_is_tf_decay_and_uses_biased_batch_variance():
    bn = custom_ops.batch_norm()
    x = tf.constant([[1.0, 10.0], [3.0, 10.0], [5.0, 16.0]])
    y = bn(x, training=True).numpy()
    mean = np.array([3.0, 12.0])
    var = np.array([8.0 / 3.0, 8.0])  # biased (divide by N), like tf.nn.moments
    # moving = 0.9 * moving + 0.1 * batch, from (0, 1).
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.1 * mean, rtol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.9 + 0.1 * var, rtol=1e-6)
    expected = bn.gamma.numpy() * (x.numpy() - mean) / np.sqrt(var + 1e-5) + bn.beta.numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    # Inference phase uses the moving statistics.
    y_test = bn(x, training=False).numpy()
    expected_test = (
        bn.gamma.numpy() * (x.numpy() - bn.moving_mean.numpy()) / np.sqrt(bn.moving_variance.numpy() + 1e-5)
    )
    np.testing.assert_allclose(y_test, expected_test, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(8, 6, 6, 5), (12, 7)])
@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_fused_batch_norm_matches_keras_batch_norm(shape, policy, monkeypatch):
    """The fused kernel gives Keras' outputs, gradients and moving averages, in both phases."""
    calls = []
    kernel = tf.raw_ops.FusedBatchNormV3

    def counted(**kwargs):
        calls.append(kwargs["is_training"])
        return kernel(**kwargs)

    monkeypatch.setattr(tf.raw_ops, "FusedBatchNormV3", counted)
    fused = custom_ops.BatchNorm(momentum=0.9, epsilon=1e-5, dtype=policy,
                                 gamma_initializer=keras.initializers.RandomNormal(1.0, 0.3),
                                 beta_initializer=keras.initializers.RandomNormal(0.0, 0.3))
    plain = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, dtype=policy)
    fused.build(shape)
    plain.build(shape)
    plain.set_weights(fused.get_weights())
    x = tf.random.stateless_normal(shape, seed=(1, 2)) * 3.0 + 1.0
    weight = tf.random.stateless_normal(shape, seed=(3, 4))
    tol = 1e-5 if policy == "float32" else 2e-2
    for training in (True, False):
        grads = []
        for layer in (fused, plain):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=training)
                loss = tf.reduce_sum(tf.cast(y, tf.float32) * weight)
            grads.append([y] + tape.gradient(loss, [x] + layer.trainable_weights))
        assert grads[0][0].dtype == grads[1][0].dtype == fused.compute_dtype
        for a, b in zip(*grads):
            a, b = np.asarray(tf.cast(a, tf.float32)), np.asarray(tf.cast(b, tf.float32))
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.abs(b).max())
        for a, b in zip(fused.non_trainable_weights, plain.non_trainable_weights):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5)
    assert calls == [True, False]  # the fused kernel ran, not Keras' fallback


def test_leaky_relu_slope():
    y = custom_ops.leaky_relu(tf.constant([-1.0, 0.0, 2.0, -10.0]))
    np.testing.assert_allclose(y.numpy(), [-0.2, 0.0, 2.0, -2.0], rtol=1e-6)


def test_activation_lookup():
    x = tf.constant([-1.0, 0.5])
    assert custom_ops.activation(None)(x) is x
    np.testing.assert_allclose(custom_ops.activation("relu")(x).numpy(), [0.0, 0.5])
    np.testing.assert_allclose(custom_ops.activation("leaky_relu")(x).numpy(), [-0.2, 0.5], rtol=1e-6)
    np.testing.assert_allclose(custom_ops.activation("tanh")(x).numpy(), np.tanh([-1.0, 0.5]), rtol=1e-6)
    with pytest.raises(ValueError, match="unknown activation 'elu'"):
        custom_ops.activation("elu")
