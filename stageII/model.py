"""Stage-II networks of StackGAN (original `stageII/model.py`) and their training graph.

`StageIIGenerator` and `StageIIDiscriminator` port the `hr_*` parts of the original
`stageII/model.py` (`CondGAN`); `StageIIGAN` ports the Stage-II graph of the original
`stageII/trainer.py` as a `misc.gan.CondGAN`. The original re-declared the Stage-I networks in its
Stage-II files; here Stage-II imports them from `stageI/model.py`, and both stages build from the
blocks in `misc/blocks.py`.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from misc.blocks import ConditionalGenerator, ConvBlock, ResidualBlock, UpSampleBlock, spatial_tile
from misc.gan import CondGAN
from stageI.model import StageIDiscriminator, unpack_generator_inputs


@keras.saving.register_keras_serializable(package="stackgan")
class StageIIGenerator(ConditionalGenerator):
    """Stage-II generator (original `stageII/model.py`): port of `CondGAN.hr_get_generator` with `hr_g_encode_image`,
    `hr_g_joint_img_text`, `residual_block` and `hr_generator` (scope `hr_g_net`), plus its own CA.

    Encoder: conv 3x3 -> gf_dim, ReLU (no BN); conv 4x4/2 -> gf_dim*2, BN, ReLU; conv 4x4/2 ->
    gf_dim*4, BN, ReLU: (B, 16, 16, gf_dim*4). Joint: concat(image code, c tiled 16x16) -> conv
    3x3 -> gf_dim*4, BN, ReLU. `r_num` plain residual blocks. Decoder: four NN x2 up-sampling
    blocks to gf_dim*2, gf_dim, gf_dim/2, gf_dim/4 (BN, ReLU), then conv 3x3 -> 3, tanh:
    (B, 256, 256, 3).

    The CA layer is `self.ca` (separate weights from the Stage-I generator's CA, fed the same
    text embedding); it is optimised with this generator.

    Args:
      gf_dim: base generator width (`GAN.GF_DIM`); should be a multiple of 4.
      ef_dim: size of c (`GAN.EMBEDDING_DIM`).
      r_num: number of residual blocks (`GAN.R_NUM`, a port addition; the original has 4).
      cond_augmentation: `TRAIN.COND_AUGMENTATION`; False makes c = mu.
      sync_bn: synchronise BN statistics across replicas (`TRAIN.SYNC_BN`).
    """

    def __init__(self, gf_dim: int = 128, ef_dim: int = 128, r_num: int = 4, cond_augmentation: bool = True,
                 sync_bn: bool = False, **kwargs):
        if r_num < 0:
            raise ValueError(f"r_num must be >= 0, got {r_num}")
        super().__init__(gf_dim, ef_dim, cond_augmentation, sync_bn, **kwargs)
        self.r_num = r_num
        self.image_encoder = keras.Sequential(
            [
                ConvBlock(gf_dim, 3, batch_norm=False, activation="relu", sync_bn=sync_bn),  # 64x64
                ConvBlock(gf_dim * 2, 4, 2, activation="relu", sync_bn=sync_bn),  # 32x32
                ConvBlock(gf_dim * 4, 4, 2, activation="relu", sync_bn=sync_bn),  # 16x16
            ],
            name="image_encoder",
        )
        self.joint = ConvBlock(gf_dim * 4, 3, activation="relu", sync_bn=sync_bn, name="joint")
        # An empty keras.Sequential cannot be called, so r_num = 0 means no residual stage.
        residual_blocks = [ResidualBlock(gf_dim * 4, None, "relu", sync_bn) for _ in range(r_num)]
        self.residual = keras.Sequential(residual_blocks, name="residual") if residual_blocks else None
        self.decoder = keras.Sequential(
            [
                UpSampleBlock(gf_dim * 2, sync_bn=sync_bn),  # 32x32
                UpSampleBlock(gf_dim, sync_bn=sync_bn),  # 64x64
                UpSampleBlock(gf_dim // 2, sync_bn=sync_bn),  # 128x128
                UpSampleBlock(gf_dim // 4, sync_bn=sync_bn),  # 256x256
                ConvBlock(3, 3, batch_norm=False, activation="tanh", sync_bn=sync_bn),  # RGB
            ],
            name="decoder",
        )

    def build(self, input_shape):
        """Create all weights without running the network.

        Args:
          input_shape: ((None, 64, 64, 3), (None, text_dim)) (a third, epsilon shape may follow
            and is ignored).
        """
        images_shape, embedding_shape = input_shape[0], input_shape[1]
        self.ca.build(embedding_shape)
        self.image_encoder.build(images_shape)
        x_code_shape = self.image_encoder.compute_output_shape(images_shape)
        self.joint.build((*x_code_shape[:-1], x_code_shape[-1] + self.ef_dim))
        code_shape = self.joint.compute_output_shape(x_code_shape)
        if self.residual is not None:
            self.residual.build(code_shape)
        self.decoder.build(code_shape)

    def call(self, inputs, training=None):
        """Refine Stage-I images to 256x256.

        Args:
          inputs: (stage1_images (B, 64, 64, 3) in [-1, 1], embedding (B, text_dim)) or
            (stage1_images, embedding, epsilon (B, ef_dim)); epsilon is the CA noise, drawn
            inside when absent.
          training: BN phase.

        Returns:
          (images (B, 256, 256, 3) in [-1, 1], mu (B, ef_dim), log_sigma (B, ef_dim)).
        """
        stage1_images, embedding, epsilon = unpack_generator_inputs(inputs)
        c_code, mu, log_sigma = self.ca(embedding, epsilon=epsilon, training=training)
        x_code = self.image_encoder(stage1_images, training=training)
        # Image code first, then c, as in `hr_get_generator`.
        x = tf.concat([x_code, spatial_tile(tf.cast(c_code, x_code.dtype), x_code)], axis=-1)
        x = self.joint(x, training=training)
        if self.residual is not None:
            x = self.residual(x, training=training)
        # Float32 images in mixed precision too (a no-op in float32).
        return tf.cast(self.decoder(x, training=training), "float32"), mu, log_sigma

    def get_config(self):
        return {**super().get_config(), "r_num": self.r_num}


@keras.saving.register_keras_serializable(package="stackgan")
class StageIIDiscriminator(StageIDiscriminator):
    """Stage-II discriminator (original `stageII/model.py`): port of `CondGAN.hr_get_discriminator` with
    `hr_d_encode_image`, `context_embedding` and `discriminator` (scope `hr_d_net`).

    Only the image encoder differs from Stage-I (the text context and logit head are the same
    layer classes, with their own weights): six conv 4x4/2 -> df_dim, df_dim*2, ..., df_dim*32,
    each with leaky ReLU and BN on all but the first; conv 1x1 -> df_dim*16, BN, leaky ReLU;
    conv 1x1 -> df_dim*8, BN (no activation); bottleneck residual (df_dim*8, bottleneck
    df_dim*2, leaky ReLU after the add): (B, 256, 256, 3) -> (B, 4, 4, df_dim*8).

    Args:
      df_dim: base discriminator width (`GAN.DF_DIM`).
      ef_dim: size of the text code (`GAN.EMBEDDING_DIM`).
      sync_bn: synchronise BN statistics across replicas (`TRAIN.SYNC_BN`).
    """

    def make_image_encoder(self) -> keras.Sequential:
        """Port of `hr_d_encode_image`: (B, 256, 256, 3) -> (B, 4, 4, df_dim * 8)."""
        df_dim, sync_bn = self.df_dim, self.sync_bn
        # 128x128 without BN; then 64x64, 32x32, 16x16, 8x8, 4x4 with df_dim*2 .. df_dim*32 channels.
        layers = [ConvBlock(df_dim, 4, 2, batch_norm=False, activation="leaky_relu", sync_bn=sync_bn)]
        for i in range(1, 6):
            layers.append(ConvBlock(df_dim * 2**i, 4, 2, activation="leaky_relu", sync_bn=sync_bn))
        layers += [
            ConvBlock(df_dim * 16, 1, activation="leaky_relu", sync_bn=sync_bn),
            ConvBlock(df_dim * 8, 1, activation=None, sync_bn=sync_bn),  # e0: no activation
            ResidualBlock(df_dim * 8, df_dim * 2, "leaky_relu", sync_bn),
        ]
        return keras.Sequential(layers, name="image_encoder")


class StageIIGAN(CondGAN):
    """Port of the Stage-II graph of the original `stageII/trainer.py` (`init_opt`, default path).

    `generate` runs the Stage-I generator (z and its own CA noise) and feeds its 64 px images and
    the same text embedding to the Stage-II generator (its own CA noise); the KL term is the
    Stage-II CA's. The D step and G step are `CondGAN`'s with the Stage-II D and G.

    The Stage-I generator is frozen by leaving it out of `g_variables` (the original left it out
    of the optimiser's var list). It is *not* marked `trainable=False`: a Keras BN layer with
    `trainable=False` runs in inference mode, whereas the original ran the Stage-I generator
    inside Stage-II training with batch statistics (and kept updating its moving averages).
    Its output goes through `tf.stop_gradient`: the original let the Stage-II G loss back-propagate
    into the Stage-I generator but never applied those gradients, so the updates are identical and
    the stop saves the computation.

    Args:
      stage1_generator: the trained `stageI.model.StageIGenerator` (built, weights loaded).
      generator: the `StageIIGenerator`.
      discriminator: the `StageIIDiscriminator`.
      **kwargs: as `CondGAN` (z_dim, ef_dim, kl_coeff, b_wrong, cond_augmentation, name).
    """

    def __init__(self, stage1_generator: keras.Model, generator: keras.Model, discriminator: keras.Model,
                 **kwargs):
        super().__init__(generator, discriminator, **kwargs)
        self.stage1_generator = stage1_generator

    def sample_noise(self, batch_size, seed=None, first_row=0):
        """z ~ N(0, 1) (B, z_dim) and the pair of CA noises (Stage-I, Stage-II), each (B, ef_dim).

        The CA noises travel as one tuple in `CondGAN`'s `epsilon` slot; `seed` and `first_row` as
        `CondGAN.sample_noise`.
        """
        z, stage1_epsilon = super().sample_noise(batch_size, seed, first_row)
        return z, (stage1_epsilon, self.ca_noise(batch_size, seed, first_row, stream=2))

    def generate_stages(self, embedding, z, epsilon, training: bool):
        """Both stages' images: port of the Stage-II sampler (`sample_encoded_context` twice,
        `generator` and `hr_generator`).

        Args:
          embedding: text embeddings (B, text_dim).
          z: noise (B, z_dim) for the Stage-I generator.
          epsilon: (Stage-I CA noise, Stage-II CA noise), each (B, ef_dim).
          training: BN phase of both generators.

        Returns:
          `(stage1_images (B, 64, 64, 3), hr_images (B, 256, 256, 3), mu, log_sigma)` with the
          Stage-II CA's mu and log_sigma.
        """
        stage1_epsilon, stage2_epsilon = epsilon
        stage1_images, _, _ = self.stage1_generator((embedding, z, stage1_epsilon), training=training)
        stage1_images = tf.stop_gradient(stage1_images)
        hr_images, mu, log_sigma = self.generator((stage1_images, embedding, stage2_epsilon), training=training)
        return stage1_images, hr_images, mu, log_sigma

    def generate(self, embedding, z, epsilon, training: bool):
        """`(hr_images, mu, log_sigma)` of the Stage-II generator on the Stage-I output."""
        _, hr_images, mu, log_sigma = self.generate_stages(embedding, z, epsilon, training)
        return hr_images, mu, log_sigma

    def grid_images(self, embedding, z, epsilon) -> tuple:
        """`(stage1_images, hr_images)` in inference mode: the original's `lr_fake_*` and `hr_fake_*` grids."""
        stage1_images, hr_images, _, _ = self.generate_stages(embedding, z, epsilon, training=False)
        return stage1_images, hr_images

    @property
    def g_variables(self) -> list:
        """The Stage-II generator's weights (its CA included); never the Stage-I generator's."""
        return self.generator.trainable_variables
