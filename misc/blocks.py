"""The building blocks both StackGAN stages share, each written once (original `stageI/model.py`,
`stageII/model.py`).

The original typed its blocks inline in each network (and typed the Stage-I networks twice, once
per stage). Here every repeated pattern is one Keras layer:

| layer              | ports                                                                    |
|--------------------|--------------------------------------------------------------------------|
| `CondAugmentation` | `CondGAN.generate_condition` + `CondGANTrainer.sample_encoded_context`    |
| `ConvBlock`        | the chain `custom_conv2d().conv_batch_norm().apply(act)`                  |
| `UpSampleBlock`    | `resize_nearest_neighbor` x2 followed by a 3x3 `ConvBlock`                |
| `ResidualBlock`    | the residual nodes of `generator`, `residual_block`, `d_encode_image`     |
| `TextContext`      | `CondGAN.context_embedding`                                               |
| `LogitHead`        | the tiling/concat of `get_discriminator` + `CondGAN.discriminator`        |

Sublayers are direct attributes or live in `keras.Sequential`, never in Python lists or dicts,
because `tf.train.Checkpoint` silently drops layers held in lists/dicts (stack notes G6).
All tensors are NHWC. Each layer builds its sublayers from shapes in `build` and reports
`compute_output_shape`, so Keras never has to trace `call` symbolically (nested traces made the
first call of a network several seconds slower).
"""
from __future__ import annotations

import keras
import tensorflow as tf

from misc import custom_ops

# The original's `s16`: side of the map the Stage-I generator starts from (64 / 16) and of the
# image code both discriminators reduce their input to (64 / 16 in Stage-I, 256 / 64 in
# Stage-II). The discriminators' logit convolution covers exactly this map.
CODE_SIZE = 4


def spatial_tile(code: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """Tile a (B, C) code over the spatial grid of an NHWC feature map.

    The original's `tf.expand_dims` twice followed by `tf.tile(code, [1, s, s, 1])`, used for the
    text code in both discriminators and for c in the Stage-II generator.

    Args:
      code: (B, C) tensor.
      like: (B, H, W, _) tensor whose H and W the result takes.

    Returns:
      (B, H, W, C) tensor; every spatial position holds `code`.
    """
    height_width = tf.shape(like)[1:3]
    code = code[:, tf.newaxis, tf.newaxis, :]
    return tf.tile(code, tf.concat([[1], height_width, [1]], axis=0))


@keras.saving.register_keras_serializable(package="stackgan")
class CondAugmentation(keras.layers.Layer):
    """Conditioning Augmentation (original `stageI/model.py`): port of `CondGAN.generate_condition` and
    `CondGANTrainer.sample_encoded_context`.

    FC 1024 -> 2 * ef_dim, leaky ReLU on the *whole* output, split into mu (first half) and
    log sigma (second half; log standard deviation, not log variance), then
    c = mu + exp(log sigma) * eps with eps a truncated standard normal (resampled beyond 2 sigma).
    With `cond_augmentation=False`, c = mu. As in the original, the sample is drawn in both the
    training and the inference phase (the original's sampling graphs also sample eps).

    Args:
      ef_dim: size of c (the original's `ef_dim`, `GAN.EMBEDDING_DIM`).
      cond_augmentation: the original's `TRAIN.COND_AUGMENTATION`.
    """

    def __init__(self, ef_dim: int = 128, cond_augmentation: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.ef_dim = ef_dim
        self.cond_augmentation = cond_augmentation
        self.fc = custom_ops.dense(2 * ef_dim, name="fc", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.fc.build(input_shape)

    def compute_output_shape(self, input_shape):
        code_shape = (input_shape[0], self.ef_dim)
        return code_shape, code_shape, code_shape

    def call(self, embedding, epsilon=None, training=None):
        """Compute the conditioning code.

        Args:
          embedding: (B, text_dim) text embedding phi.
          epsilon: optional (B, ef_dim) noise; when None it is drawn with
            `tf.random.truncated_normal` from TF's global generator (seed it with
            `keras.utils.set_random_seed`). Ignored when `cond_augmentation` is False.
          training: unused; CA behaves the same in both phases.

        Returns:
          (c_code, mu, log_sigma), each (B, ef_dim).
        """
        del training
        conditions = custom_ops.leaky_relu(self.fc(embedding))
        mu = conditions[:, : self.ef_dim]
        log_sigma = conditions[:, self.ef_dim :]
        if not self.cond_augmentation:
            return mu, mu, log_sigma
        if epsilon is None:
            # Drawn in float32 and cast below: XLA on CPU has no bfloat16 TruncatedNormal kernel.
            epsilon = tf.random.truncated_normal(tf.shape(mu))
        c_code = mu + tf.exp(log_sigma) * tf.cast(epsilon, mu.dtype)
        return c_code, mu, log_sigma

    def get_config(self):
        config = super().get_config()
        config.update({"ef_dim": self.ef_dim, "cond_augmentation": self.cond_augmentation})
        return config


class ConditionalGenerator(keras.Model):
    """What both stages' generators share: their width, batch-norm setting and their own CA.

    Each stage's generator owns a `CondAugmentation` (`self.ca`) whose weights are optimised with
    it, as the original's CA lives in the `g_net` and `hr_g_net` scopes; `stageI.model.StageIGenerator`
    and `stageII.model.StageIIGenerator` add their networks on top.

    Args:
      gf_dim: base generator width (`GAN.GF_DIM`).
      ef_dim: size of c (`GAN.EMBEDDING_DIM`).
      cond_augmentation: `TRAIN.COND_AUGMENTATION`; False makes c = mu.
      sync_bn: synchronise BN statistics across replicas (`TRAIN.SYNC_BN`).
    """

    def __init__(self, gf_dim: int = 128, ef_dim: int = 128, cond_augmentation: bool = True,
                 sync_bn: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.gf_dim = gf_dim
        self.ef_dim = ef_dim
        self.cond_augmentation = cond_augmentation
        self.sync_bn = sync_bn
        # Float32 whatever the policy: mu, log sigma and the KL term stay float32 in mixed precision.
        self.ca = CondAugmentation(ef_dim, cond_augmentation, name="ca", dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update({"gf_dim": self.gf_dim, "ef_dim": self.ef_dim, "cond_augmentation": self.cond_augmentation,
                       "sync_bn": self.sync_bn})
        return config


@keras.saving.register_keras_serializable(package="stackgan")
class ConvBlock(keras.layers.Layer):
    """conv -> optional BN -> optional activation: the original's recurring chain
    `custom_conv2d(...).conv_batch_norm().apply(act)`.

    Args:
      filters: output channels.
      kernel_size: square kernel size.
      strides: square stride (SAME padding; 4x4/2 on even sizes pads 1 on each side).
      batch_norm: follow the conv with `conv_batch_norm`.
      activation: "relu", "leaky_relu", "tanh" or None (see `custom_ops.activation`).
      sync_bn: synchronise BN statistics across replicas.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int,
        strides: int = 1,
        batch_norm: bool = True,
        activation: str | None = None,
        sync_bn: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.batch_norm = batch_norm
        self.activation = activation
        self.sync_bn = sync_bn
        self._activation_fn = custom_ops.activation(activation)
        self.conv = custom_ops.conv2d(filters, kernel_size, strides, name="conv")
        self.bn = custom_ops.batch_norm(sync_bn, name="bn") if batch_norm else None

    def build(self, input_shape):
        self.conv.build(input_shape)
        if self.bn is not None:
            self.bn.build(self.conv.compute_output_shape(input_shape))

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def call(self, inputs, training=None):
        x = self.conv(inputs)
        if self.bn is not None:
            x = self.bn(x, training=training)
        return self._activation_fn(x)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "batch_norm": self.batch_norm,
                "activation": self.activation,
                "sync_bn": self.sync_bn,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="stackgan")
class UpSampleBlock(keras.layers.Layer):
    """Up-sampling block of both generators: port of
    `apply(tf.image.resize_nearest_neighbor, [2s, 2s]).custom_conv2d(k=3, d=1).conv_batch_norm()`
    followed, where the original has it, by `apply(tf.nn.relu)`.

    Nearest-neighbour x2 (pixel replication, identical to `resize_nearest_neighbor` at an exact
    factor of 2), then a 3x3/1 `ConvBlock`.

    Args:
      filters: output channels.
      batch_norm: whether BN follows the conv (False only for the final RGB conv).
      activation: activation after the conv/BN; None where the original has none (Stage-I
        generator before its 8x8 residual block), "tanh" for the final RGB conv.
      sync_bn: synchronise BN statistics across replicas.
    """

    def __init__(
        self,
        filters: int,
        batch_norm: bool = True,
        activation: str | None = "relu",
        sync_bn: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = filters
        self.batch_norm = batch_norm
        self.activation = activation
        self.sync_bn = sync_bn
        self.upsample = keras.layers.UpSampling2D(size=2, interpolation="nearest", name="upsample")
        self.conv_block = ConvBlock(
            filters, 3, 1, batch_norm=batch_norm, activation=activation, sync_bn=sync_bn, name="conv_block"
        )

    def build(self, input_shape):
        self.upsample.build(input_shape)
        self.conv_block.build(self.upsample.compute_output_shape(input_shape))

    def compute_output_shape(self, input_shape):
        return self.conv_block.compute_output_shape(self.upsample.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        return self.conv_block(self.upsample(inputs), training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "batch_norm": self.batch_norm,
                "activation": self.activation,
                "sync_bn": self.sync_bn,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="stackgan")
class ResidualBlock(keras.layers.Layer):
    """Residual block: output = act(x + branch(x)), with no activation at the end of the branch.

    Two forms, as in the original:
    * bottleneck (`bottleneck_filters` set): 1x1 -> b, BN, act; 3x3 -> b, BN, act; 3x3 -> filters,
      BN. Port of nodes `node1`/`node2` of Stage-I `CondGAN.generator` (act = ReLU, b = C/4) and
      of `node1` of `d_encode_image` / `hr_d_encode_image` (act = leaky ReLU, b = df_dim * 2).
    * plain (`bottleneck_filters=None`): 3x3 -> filters, BN, act; 3x3 -> filters, BN. Port of
      Stage-II `CondGAN.residual_block` (act = ReLU).

    The input must already have `filters` channels.

    Args:
      filters: channels of the input and output.
      bottleneck_filters: width of the bottleneck form, or None for the plain form.
      activation: "relu" (generators) or "leaky_relu" (discriminators), used inside the branch
        and after the addition.
      sync_bn: synchronise BN statistics across replicas.
    """

    def __init__(
        self,
        filters: int,
        bottleneck_filters: int | None = None,
        activation: str = "relu",
        sync_bn: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = filters
        self.bottleneck_filters = bottleneck_filters
        self.activation = activation
        self.sync_bn = sync_bn
        self._activation_fn = custom_ops.activation(activation)
        if bottleneck_filters is None:
            branch = [ConvBlock(filters, 3, activation=activation, sync_bn=sync_bn)]
        else:
            branch = [
                ConvBlock(bottleneck_filters, 1, activation=activation, sync_bn=sync_bn),
                ConvBlock(bottleneck_filters, 3, activation=activation, sync_bn=sync_bn),
            ]
        branch.append(ConvBlock(filters, 3, activation=None, sync_bn=sync_bn))
        self.branch = keras.Sequential(branch, name="branch")

    def build(self, input_shape):
        self.branch.build(input_shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, inputs, training=None):
        return self._activation_fn(inputs + self.branch(inputs, training=training))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "bottleneck_filters": self.bottleneck_filters,
                "activation": self.activation,
                "sync_bn": self.sync_bn,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="stackgan")
class TextContext(keras.layers.Layer):
    """Text compression of both discriminators: port of `CondGAN.context_embedding`.

    FC text_dim -> ef_dim on the *raw* text embedding (not on the CA sample), then leaky ReLU.
    `LogitHead` tiles the result over the image code (the original does it in `get_discriminator`).

    Args:
      ef_dim: size of the text code.
    """

    def __init__(self, ef_dim: int = 128, **kwargs):
        super().__init__(**kwargs)
        self.ef_dim = ef_dim
        self.fc = custom_ops.dense(ef_dim, name="fc")

    def build(self, input_shape):
        self.fc.build(input_shape)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.ef_dim)

    def call(self, embedding):
        """Compress the text embedding.

        Args:
          embedding: (B, text_dim) raw text embedding phi.

        Returns:
          (B, ef_dim) text code.
        """
        return custom_ops.leaky_relu(self.fc(embedding))

    def get_config(self):
        config = super().get_config()
        config.update({"ef_dim": self.ef_dim})
        return config


@keras.saving.register_keras_serializable(package="stackgan")
class LogitHead(keras.layers.Layer):
    """Logit head of both discriminators: port of the tail of `CondGAN.get_discriminator`
    (tile the text code, concat image code first) and of the `CondGAN.discriminator` template.

    concat(image code, tiled text code) -> conv 1x1 -> filters, BN, leaky ReLU -> conv 4x4/4 -> 1.
    The last conv spans the whole 4x4 map, i.e. a fully-connected layer with one output and no
    bias; with SAME padding a 4x4/4 conv on a 4x4 map pads nothing, so it equals 'VALID'.

    Args:
      filters: channels of the 1x1 conv (`df_dim * 8` in the original).
      sync_bn: synchronise BN statistics across replicas.
    """

    def __init__(self, filters: int = 512, sync_bn: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.sync_bn = sync_bn
        self.joint = ConvBlock(filters, 1, activation="leaky_relu", sync_bn=sync_bn, name="joint")
        # Float32 logits in mixed precision, so that the losses are computed in float32.
        self.logit = custom_ops.conv2d(1, CODE_SIZE, strides=CODE_SIZE, name="logit", dtype="float32")

    def build(self, input_shape):
        x_code_shape, c_code_shape = input_shape
        joint_shape = (*x_code_shape[:-1], x_code_shape[-1] + c_code_shape[-1])
        self.joint.build(joint_shape)
        self.logit.build(self.joint.compute_output_shape(joint_shape))

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0],)

    def call(self, inputs, training=None):
        """Score an (image code, text code) pair.

        Args:
          inputs: tuple (x_code (B, 4, 4, C), c_code (B, ef_dim)).
          training: BN phase.

        Returns:
          (B,) logits.
        """
        x_code, c_code = inputs
        x_c_code = tf.concat([x_code, spatial_tile(c_code, x_code)], axis=-1)
        logits = self.logit(self.joint(x_c_code, training=training))
        # (B, 1, 1, 1) -> (B,); squeeze (not reshape) fails loudly if the code was not 4x4.
        return tf.squeeze(logits, axis=[1, 2, 3])

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "sync_bn": self.sync_bn})
        return config
