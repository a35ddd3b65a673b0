"""Stage-I networks of StackGAN: port of the original `stageI/model.py` (`CondGAN`).

Both networks are subclassed Keras 3 models built from the shared blocks in `misc/blocks.py`.
Default widths are the birds/flowers ones (gf_dim 128, df_dim 64, ef_dim 128, z_dim 100); the
text embedding size (1024 for char-CNN-RNN) is taken from `build` or the first call.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from misc import custom_ops
from misc.blocks import (
    CODE_SIZE,
    ConditionalGenerator,
    ConvBlock,
    LogitHead,
    ResidualBlock,
    TextContext,
    UpSampleBlock,
)


def unpack_generator_inputs(inputs) -> tuple:
    """Split a generator's `inputs` into (first, second, epsilon-or-None).

    Args:
      inputs: a 2-tuple (first, second) or a 3-tuple (first, second, epsilon).

    Returns:
      (first, second, epsilon) with epsilon None for a 2-tuple.

    Raises:
      ValueError: for any other structure (a programming error).
    """
    if not isinstance(inputs, (tuple, list)) or len(inputs) not in (2, 3):
        raise ValueError(f"generator inputs must be a 2- or 3-tuple of tensors, got {type(inputs).__name__}")
    if len(inputs) == 2:
        return inputs[0], inputs[1], None
    return tuple(inputs)


@keras.saving.register_keras_serializable(package="stackgan")
class StageIGenerator(ConditionalGenerator):
    """Stage-I generator (original `stageI/model.py`): port of `CondGAN.generator` (scope `g_net`) with its own CA
    (`CondGAN.generate_condition`, via `CondGANTrainer.sample_encoded_context`).

    concat(c, z) -> FC -> 4*4*gf_dim*8, BN (no activation) -> reshape 4x4
    -> bottleneck residual (gf_dim*8, bottleneck gf_dim*2, ReLU after the add)
    -> NN x2, conv 3x3 -> gf_dim*4, BN (no activation)
    -> bottleneck residual (gf_dim*4, bottleneck gf_dim)
    -> NN x2, conv -> gf_dim*2, BN, ReLU -> NN x2, conv -> gf_dim, BN, ReLU
    -> NN x2, conv -> 3 (no BN), tanh: (B, 64, 64, 3).

    The CA layer is `self.ca`; its weights are part of `trainable_variables` and are optimised
    with the generator, as in the original (CA lives in the `g_net` scope).

    Args:
      gf_dim: base generator width (`GAN.GF_DIM`).
      ef_dim: size of c (`GAN.EMBEDDING_DIM`).
      z_dim: size of z (`Z_DIM`).
      cond_augmentation: `TRAIN.COND_AUGMENTATION`; False makes c = mu.
      sync_bn: synchronise BN statistics across replicas (`TRAIN.SYNC_BN`).
    """

    def __init__(self, gf_dim: int = 128, ef_dim: int = 128, z_dim: int = 100, cond_augmentation: bool = True,
                 sync_bn: bool = False, **kwargs):
        super().__init__(gf_dim, ef_dim, cond_augmentation, sync_bn, **kwargs)
        self.z_dim = z_dim
        self.fc = custom_ops.dense(CODE_SIZE * CODE_SIZE * gf_dim * 8, name="fc")
        self.fc_bn = custom_ops.batch_norm(sync_bn, name="fc_bn")
        self.decoder = keras.Sequential(
            [
                ResidualBlock(gf_dim * 8, gf_dim * 2, "relu", sync_bn),  # node1, 4x4
                UpSampleBlock(gf_dim * 4, activation=None, sync_bn=sync_bn),  # node2_0, 8x8
                ResidualBlock(gf_dim * 4, gf_dim, "relu", sync_bn),  # node2
                UpSampleBlock(gf_dim * 2, sync_bn=sync_bn),  # 16x16
                UpSampleBlock(gf_dim, sync_bn=sync_bn),  # 32x32
                UpSampleBlock(3, batch_norm=False, activation="tanh", sync_bn=sync_bn),  # 64x64 RGB
            ],
            name="decoder",
        )

    def build(self, input_shape):
        """Create all weights without running the network.

        Args:
          input_shape: shapes of the call inputs, e.g. ((None, 1024), (None, 100)) (a third,
            epsilon shape may follow and is ignored).
        """
        embedding_shape = input_shape[0]
        batch = embedding_shape[0]
        self.ca.build(embedding_shape)
        self.fc.build((batch, self.ef_dim + self.z_dim))
        self.fc_bn.build(self.fc.compute_output_shape((batch, self.ef_dim + self.z_dim)))
        self.decoder.build((batch, CODE_SIZE, CODE_SIZE, self.gf_dim * 8))

    def call(self, inputs, training=None):
        """Generate 64x64 images.

        Args:
          inputs: (embedding (B, text_dim), z (B, z_dim)) or (embedding, z, epsilon (B, ef_dim));
            epsilon is the CA noise, drawn inside when absent.
          training: BN phase (batch statistics when True, moving averages when False).

        Returns:
          (images (B, 64, 64, 3) in [-1, 1], mu (B, ef_dim), log_sigma (B, ef_dim)).
        """
        embedding, z, epsilon = unpack_generator_inputs(inputs)
        if z.shape[-1] is not None and z.shape[-1] != self.z_dim:
            raise ValueError(f"z has {z.shape[-1]} features, but this generator has z_dim={self.z_dim}")
        c_code, mu, log_sigma = self.ca(embedding, epsilon=epsilon, training=training)
        # The original concatenates c first, then z (original `stageI/model.py`).
        x = tf.concat([c_code, tf.cast(z, c_code.dtype)], axis=-1)
        x = self.fc_bn(self.fc(x), training=training)
        x = tf.reshape(x, [-1, CODE_SIZE, CODE_SIZE, self.gf_dim * 8])
        # Float32 images in mixed precision too (a no-op in float32).
        return tf.cast(self.decoder(x, training=training), "float32"), mu, log_sigma

    def get_config(self):
        return {**super().get_config(), "z_dim": self.z_dim}


@keras.saving.register_keras_serializable(package="stackgan")
class StageIDiscriminator(keras.Model):
    """Stage-I discriminator (original `stageI/model.py`): port of `CondGAN.get_discriminator` with the templates
    `d_encode_image`, `context_embedding` and `discriminator` (scope `d_net`).

    Image encoder: conv 4x4/2 -> df_dim, leaky ReLU (no BN); -> df_dim*2, BN, leaky ReLU;
    -> df_dim*4, BN (no activation); -> df_dim*8, BN (no activation); bottleneck residual
    (df_dim*8, bottleneck df_dim*2, leaky ReLU after the add). With `paper_activations`, the third
    and fourth convolutions are followed by a leaky ReLU too, as the paper describes every
    down-sampling block (the paper); the original code has none there. Same weights either way.
    Text: `TextContext`. Head: `LogitHead`. The trainer calls it once per batch (real, wrong, fake),
    in training mode, so BN uses each call's own batch statistics, as the original did.

    Args:
      df_dim: base discriminator width (`GAN.DF_DIM`).
      ef_dim: size of the text code (`GAN.EMBEDDING_DIM`).
      sync_bn: synchronise BN statistics across replicas (`TRAIN.SYNC_BN`).
      paper_activations: leaky ReLU after the third and fourth convolutions (`GAN.D_PAPER_ACTIVATIONS`,
        a port addition; False is the original code).
    """

    def __init__(self, df_dim: int = 64, ef_dim: int = 128, sync_bn: bool = False,
                 paper_activations: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.df_dim = df_dim
        self.ef_dim = ef_dim
        self.sync_bn = sync_bn
        self.paper_activations = paper_activations
        self.image_encoder = self.make_image_encoder()
        self.context = TextContext(ef_dim, name="context")
        self.head = LogitHead(df_dim * 8, sync_bn, name="head")

    def make_image_encoder(self) -> keras.Sequential:
        """Port of `d_encode_image`: (B, 64, 64, 3) -> (B, 4, 4, df_dim * 8)."""
        df_dim, sync_bn = self.df_dim, self.sync_bn
        late = "leaky_relu" if self.paper_activations else None  # the code has none after convs 3, 4
        return keras.Sequential(
            [
                ConvBlock(df_dim, 4, 2, batch_norm=False, activation="leaky_relu", sync_bn=sync_bn),  # 32x32
                ConvBlock(df_dim * 2, 4, 2, activation="leaky_relu", sync_bn=sync_bn),  # 16x16
                ConvBlock(df_dim * 4, 4, 2, activation=late, sync_bn=sync_bn),  # 8x8
                ConvBlock(df_dim * 8, 4, 2, activation=late, sync_bn=sync_bn),  # 4x4
                ResidualBlock(df_dim * 8, df_dim * 2, "leaky_relu", sync_bn),
            ],
            name="image_encoder",
        )

    def build(self, input_shape):
        """Create all weights without running the network.

        Args:
          input_shape: ((None, S, S, 3), (None, text_dim)), S = 64 (Stage-I) or 256 (Stage-II).
        """
        images_shape, embedding_shape = input_shape[0], input_shape[1]
        self.image_encoder.build(images_shape)
        self.context.build(embedding_shape)
        x_code_shape = self.image_encoder.compute_output_shape(images_shape)
        self.head.build((x_code_shape, self.context.compute_output_shape(embedding_shape)))

    def call(self, inputs, training=None):
        """Score (image, text) pairs.

        Args:
          inputs: (images (B, S, S, 3) in [-1, 1], embedding (B, text_dim)).
          training: BN phase; the original always runs D with batch statistics (True).

        Returns:
          (B,) logits.
        """
        images, embedding = inputs
        x_code = self.image_encoder(images, training=training)
        c_code = self.context(embedding)
        return self.head((x_code, c_code), training=training)

    def get_config(self):
        config = super().get_config()
        config.update({"df_dim": self.df_dim, "ef_dim": self.ef_dim, "sync_bn": self.sync_bn,
                       "paper_activations": self.paper_activations})
        return config
