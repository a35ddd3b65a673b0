"""Port of the original `misc/custom_ops.py`: the fixed numbers and layer factories of StackGAN.

The original built its networks from prettytensor methods (`custom_conv2d`,
`custom_fully_connected`, `conv_batch_norm`, `fc_batch_norm`, `leaky_rectify`). Here each one is
a factory that returns a Keras 3 layer configured as the original's `stageI/model.py` and
`stageII/model.py` configured it. Every number the original fixes is a named constant below and
appears nowhere else in the port.
"""
from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf

# Standard deviation of every weight initialiser in the original (`stddev=0.02` in both
# `custom_conv2d` and `custom_fully_connected`).
INIT_STDDEV = 0.02
# Decay of the original's BN moving averages (`tf.train.ExponentialMovingAverage(decay=0.9)`).
# Keras updates `moving = moving * momentum + batch * (1 - momentum)` (see the BatchNormalization
# docstring and `call` in keras/src/layers/normalization/batch_normalization.py, Keras 3.15), which
# is exactly the TF rule `shadow = decay * shadow + (1 - decay) * value`: Keras `momentum` = TF decay.
# (Not PyTorch's convention, where the same model would say momentum=0.1.)
BN_MOMENTUM = 0.9
# Epsilon added to the batch variance in `conv_batch_norm` / `fc_batch_norm`.
BN_EPSILON = 1e-5
# Slope of `leaky_rectify(leakiness=0.2)`, used in the discriminators and in CA.
LEAKY_SLOPE = 0.2
# Adam settings of both stages' optimisers (original `stageI/trainer.py`): beta1 = 0.5; epsilon is
# TF-1's default 1e-8
# (Keras 3 defaults to 1e-7, so it must be passed explicitly).
ADAM_BETA1 = 0.5
ADAM_EPSILON = 1e-8


def conv2d(filters: int, kernel_size: int, strides: int = 1, name: str | None = None,
           dtype=None) -> keras.layers.Conv2D:
    """Port of `custom_conv2d`: a 2-D convolution with SAME padding and no bias.

    The original's bias code is commented out, and its weights are drawn from a truncated normal
    with stddev 0.02 (resampled beyond 2 sigma, as Keras' `TruncatedNormal` does).

    Args:
      filters: number of output channels.
      kernel_size: square kernel size (k_h = k_w in every call of the original).
      strides: square stride (d_h = d_w).
      name: optional layer name.
      dtype: the layer's dtype policy; None: the global one (mixed precision, `misc.training.precision`).

    Returns:
      An unbuilt `keras.layers.Conv2D`.
    """
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer=keras.initializers.TruncatedNormal(mean=0.0, stddev=INIT_STDDEV),
        name=name,
        dtype=dtype,
    )


def dense(units: int, name: str | None = None, dtype=None) -> keras.layers.Dense:
    """Port of `custom_fully_connected`: `x W + b` with W ~ N(0, 0.02^2) and b = 0.

    Args:
      units: output size.
      name: optional layer name.
      dtype: the layer's dtype policy; None: the global one.

    Returns:
      An unbuilt `keras.layers.Dense` with no activation.
    """
    return keras.layers.Dense(
        units,
        use_bias=True,
        kernel_initializer=keras.initializers.RandomNormal(mean=0.0, stddev=INIT_STDDEV),
        bias_initializer="zeros",
        name=name,
        dtype=dtype,
    )


@keras.saving.register_keras_serializable(package="stackgan")
class BatchNorm(keras.layers.BatchNormalization):
    """Keras' batch normalisation computed by TensorFlow's fused kernel where it can be.

    Same variables, same rule and the same numbers (to float rounding) as
    `keras.layers.BatchNormalization` with `axis=-1`: in training mode the batch's own mean and
    biased variance normalise it and move the averages `moving = momentum * moving +
    (1 - momentum) * batch`; in inference mode the moving averages normalise it. Keras 3 builds
    that from `moments` and element-wise ops, whose forward and backward pass take about 3.5 times
    as long as `FusedBatchNormV3` on a Stage-II feature map (docs/benchmarks.md). This layer calls
    the fused kernel for 2-D and 4-D inputs (a 2-D batch as a 1 x 1 image) without a mask and
    leaves synchronised statistics, masks and other ranks to Keras.

    The fused kernel returns the batch variance with Bessel's correction (divided by n - 1); the
    original (`tf.nn.moments`) and Keras average the biased one (divided by n), so it is rescaled
    by (n - 1) / n before it moves the averages. A bfloat16 or float16 input stays in its dtype;
    the kernel computes the statistics in float32 and the variables stay float32.
    """

    def _fused(self, inputs) -> bool:
        return (keras.backend.backend() == "tensorflow" and not self.synchronized and not self.renorm
                and self.axis in (-1, len(inputs.shape) - 1) and len(inputs.shape) in (2, 4)
                and self.scale and self.center)

    def call(self, inputs, training=None, mask=None):
        if mask is not None or not self._fused(inputs):
            return super().call(inputs, training=training, mask=mask)
        x = inputs
        if x.dtype not in (tf.float32, tf.bfloat16, tf.float16):
            x = tf.cast(x, tf.float32)
        flat = len(inputs.shape) == 2
        if flat:
            x = x[:, tf.newaxis, tf.newaxis, :]
        gamma = tf.cast(self.gamma, tf.float32)
        beta = tf.cast(self.beta, tf.float32)
        if training and self.trainable:
            y, mean, unbiased, *_ = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta, mean=tf.zeros_like(gamma), variance=tf.ones_like(gamma),
                epsilon=self.epsilon, data_format="NHWC", is_training=True)
            shape = tf.shape(x)
            n = tf.cast(shape[0] * shape[1] * shape[2], tf.float32)
            variance = unbiased * ((n - 1.0) / tf.maximum(n, 1.0))
            moving_mean = tf.cast(self.moving_mean, tf.float32)
            moving_variance = tf.cast(self.moving_variance, tf.float32)
            self.moving_mean.assign(moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            y, *_ = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta, mean=tf.cast(self.moving_mean, tf.float32),
                variance=tf.cast(self.moving_variance, tf.float32), epsilon=self.epsilon,
                data_format="NHWC", is_training=False)
        if flat:
            y = y[:, 0, 0, :]
        return tf.cast(y, self.compute_dtype)


def batch_norm(synchronized: bool = False, name: str | None = None) -> BatchNorm:
    """Port of `conv_batch_norm` and `fc_batch_norm` (the same normalisation over the last axis).

    gamma ~ N(1, 0.02^2), beta = 0, moving mean 0 and variance 1 at start, decay 0.9, epsilon 1e-5.
    In training mode the batch statistics of *this call* are used and the moving averages are
    updated; in inference mode the moving averages are used, as in the original's two phases.

    Args:
      synchronized: compute the batch statistics over all replicas of a `tf.distribute` strategy
        (a port addition: the original ran on one GPU, where this makes no difference).
      name: optional layer name.

    Returns:
      An unbuilt `BatchNorm` (a `keras.layers.BatchNormalization` computed by the fused kernel).
    """
    return BatchNorm(
        axis=-1,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        gamma_initializer=keras.initializers.RandomNormal(mean=1.0, stddev=INIT_STDDEV),
        beta_initializer="zeros",
        synchronized=synchronized,
        name=name,
    )


def leaky_relu(x):
    """Port of `leaky_rectify(x, leakiness=0.2)`: max(x, 0.2 x).

    Args:
      x: a tensor.

    Returns:
      The activated tensor, same shape and dtype.
    """
    return keras.ops.leaky_relu(x, negative_slope=LEAKY_SLOPE)


# The only activations the original uses: ReLU in the generators, leaky ReLU in CA and the
# discriminators, tanh on the generated image.
_ACTIVATIONS: dict[str, Callable] = {
    "relu": keras.ops.relu,
    "leaky_relu": leaky_relu,
    "tanh": keras.ops.tanh,
}
ACTIVATION_NAMES = tuple(_ACTIVATIONS)


def activation(name: str | None) -> Callable:
    """Look up one of the original's activations by name.

    Args:
      name: "relu", "leaky_relu", "tanh", or None for no activation.

    Returns:
      A function tensor -> tensor (the identity for None).

    Raises:
      ValueError: for any other name (a programming error, not a user error).
    """
    if name is None:
        return lambda x: x
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATION_NAMES} or None")
    return _ACTIVATIONS[name]
