"""Tests for stageII/model.py: Stage-II generator and discriminator (original `stageII/model.py`)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from misc.blocks import CondAugmentation, ConvBlock, LogitHead, ResidualBlock, TextContext
from stageI.model import StageIDiscriminator
from stageII.model import StageIIDiscriminator, StageIIGenerator

TEXT_DIM, EF_DIM, GF_DIM, DF_DIM, BATCH = 16, 8, 8, 4, 2


def _count(layer):
    return sum(int(np.prod(v.shape)) for v in layer.trainable_weights)


def _normal(shape, seed):
    return tf.random.stateless_normal(shape, seed=(seed, 0))


def _g_inputs(seed=0, with_eps=True):
    inputs = (tf.tanh(_normal((BATCH, 64, 64, 3), seed)), _normal((BATCH, TEXT_DIM), seed + 1))
    return inputs + (_normal((BATCH, EF_DIM), seed + 2),) if with_eps else inputs


def _d_inputs(seed=0):
    return tf.tanh(_normal((BATCH, 256, 256, 3), seed)), _normal((BATCH, TEXT_DIM), seed + 1)


def _conv_bn(k, c_in, c_out, bn=True):
    return k * k * c_in * c_out + (2 * c_out if bn else 0)


def _generator_params(gf, ef, r_num):
    """Trainable parameters of the Stage-II generator without its CA, by the layers of the original
    `stageII/model.py`."""
    encoder = _conv_bn(3, 3, gf, bn=False) + _conv_bn(4, gf, 2 * gf) + _conv_bn(4, 2 * gf, 4 * gf)
    joint = _conv_bn(3, 4 * gf + ef, 4 * gf)
    residual = r_num * 2 * _conv_bn(3, 4 * gf, 4 * gf)
    widths = [4 * gf, 2 * gf, gf, gf // 2, gf // 4]
    decoder = sum(_conv_bn(3, a, b) for a, b in zip(widths, widths[1:])) + _conv_bn(3, gf // 4, 3, bn=False)
    return encoder + joint + residual + decoder


def _discriminator_params(df, ef, text_dim):
    """Trainable parameters of the Stage-II discriminator, by the layer table of the original `stageII/model.py`."""
    widths = [3] + [df * 2**i for i in range(6)]
    down = _conv_bn(4, 3, df, bn=False) + sum(_conv_bn(4, a, b) for a, b in zip(widths[1:], widths[2:]))
    squeeze = _conv_bn(1, 32 * df, 16 * df) + _conv_bn(1, 16 * df, 8 * df)
    tail = _conv_bn(1, 8 * df, 2 * df) + _conv_bn(3, 2 * df, 2 * df) + _conv_bn(3, 2 * df, 8 * df)
    head = _conv_bn(1, 8 * df + ef, 8 * df) + _conv_bn(4, 8 * df, 1, bn=False)
    context = text_dim * ef + ef
    return down + squeeze + tail + head + context


@pytest.fixture(scope="module")
def generator():
    model = StageIIGenerator(GF_DIM, EF_DIM)
    model(_g_inputs())
    return model


@pytest.fixture(scope="module")
def discriminator():
    model = StageIIDiscriminator(DF_DIM, EF_DIM)
    model(_d_inputs())
    return model


# --- Shapes, ranges, parameter counts --------------------------------------------------------


@pytest.mark.parametrize("training", [True, False])
def test_generator_shapes_and_range(generator, training):
    images, mu, log_sigma = generator(_g_inputs(), training=training)
    assert images.shape == (BATCH, 256, 256, 3)
    assert mu.shape == log_sigma.shape == (BATCH, EF_DIM)
    assert np.abs(images.numpy()).max() <= 1.0


def test_generator_without_eps_samples(generator):
    # Training mode: an untrained tiny net in inference mode can output exact zeros, because
    # its fresh BN moving statistics do not match its activations.
    a = generator(_g_inputs(with_eps=False), training=True)[0].numpy()
    b = generator(_g_inputs(with_eps=False), training=True)[0].numpy()
    assert not np.array_equal(a, b)


def test_discriminator_shape(discriminator):
    assert discriminator(_d_inputs(), training=True).shape == (BATCH,)


def test_parameter_formulas_give_the_published_counts():
    assert _generator_params(128, 128, 4) == 26_027_680
    assert _discriminator_params(64, 128, 1024) == 48_603_520


def test_parameter_counts_at_tiny_width(generator, discriminator):
    assert _count(generator) - _count(generator.ca) == _generator_params(GF_DIM, EF_DIM, 4)
    assert _count(discriminator) == _discriminator_params(DF_DIM, EF_DIM, TEXT_DIM)


@pytest.mark.slow
def test_parameter_counts_at_birds_width():
    generator = StageIIGenerator()
    generator.build(((None, 64, 64, 3), (None, 1024)))
    discriminator = StageIIDiscriminator()
    discriminator.build(((None, 256, 256, 3), (None, 1024)))
    assert _count(generator.ca) == 262_400
    assert _count(generator) - _count(generator.ca) == 26_027_680
    assert _count(discriminator) == 48_603_520


# --- Structure -------------------------------------------------------------------------------


def test_generator_structure_follows_the_original(generator):
    assert isinstance(generator.ca, CondAugmentation)
    assert generator.ca.fc.kernel.shape == (TEXT_DIM, 2 * EF_DIM)  # its own CA
    encoder = generator.image_encoder.layers
    assert [(b.filters, b.kernel_size, b.strides, b.batch_norm, b.activation) for b in encoder] == [
        (8, 3, 1, False, "relu"),
        (16, 4, 2, True, "relu"),
        (32, 4, 2, True, "relu"),
    ]
    joint = generator.joint
    assert (joint.filters, joint.kernel_size, joint.batch_norm, joint.activation) == (32, 3, True, "relu")
    assert [(type(b), b.filters, b.bottleneck_filters, b.activation) for b in generator.residual.layers] == [
        (ResidualBlock, 32, None, "relu")
    ] * 4
    *ups, rgb = generator.decoder.layers
    assert [(b.filters, b.batch_norm, b.activation) for b in ups] == [
        (width, True, "relu") for width in (16, 8, 4, 2)
    ]
    assert (type(rgb), rgb.filters, rgb.batch_norm, rgb.activation) == (ConvBlock, 3, False, "tanh")


def test_generator_concats_image_code_before_c(generator):
    stage1, embedding, epsilon = _g_inputs()
    kernel = generator.joint.conv.kernel
    original = kernel.numpy()
    try:
        # Zero the input channels after the image code: if c comes second, the text has no effect.
        zeroed = original.copy()
        zeroed[:, :, 4 * GF_DIM :] = 0.0
        kernel.assign(zeroed)
        base = generator((stage1, embedding, epsilon), training=True)[0].numpy()
        other_text = generator((stage1, embedding + 1.0, epsilon), training=True)[0].numpy()
        other_image = generator((stage1 * 0.5, embedding, epsilon), training=True)[0].numpy()
    finally:
        kernel.assign(original)
    np.testing.assert_array_equal(base, other_text)
    assert not np.array_equal(base, other_image)


def test_residual_count_is_configurable():
    model = StageIIGenerator(GF_DIM, EF_DIM, r_num=0)
    images = model(_g_inputs())[0]
    assert model.residual is None and images.shape == (BATCH, 256, 256, 3)
    assert _count(model) - _count(model.ca) == _generator_params(GF_DIM, EF_DIM, 0)
    with pytest.raises(ValueError, match="r_num"):
        StageIIGenerator(GF_DIM, EF_DIM, r_num=-1)


def test_discriminator_structure_and_shared_blocks(discriminator):
    assert isinstance(discriminator, StageIDiscriminator)
    assert isinstance(discriminator.context, TextContext) and isinstance(discriminator.head, LogitHead)
    assert discriminator.head.filters == DF_DIM * 8
    *convs, tail = discriminator.image_encoder.layers
    assert [(b.filters, b.kernel_size, b.strides, b.batch_norm, b.activation) for b in convs] == [
        (4, 4, 2, False, "leaky_relu"),
        (8, 4, 2, True, "leaky_relu"),
        (16, 4, 2, True, "leaky_relu"),
        (32, 4, 2, True, "leaky_relu"),
        (64, 4, 2, True, "leaky_relu"),
        (128, 4, 2, True, "leaky_relu"),
        (64, 1, 1, True, "leaky_relu"),
        (32, 1, 1, True, None),  # e0: BN, no activation before the residual add
    ]
    assert isinstance(tail, ResidualBlock)
    assert (tail.filters, tail.bottleneck_filters, tail.activation) == (32, 8, "leaky_relu")


def test_no_conv_has_a_bias(generator, discriminator):
    for model in (generator, discriminator):
        layers = list(model._flatten_layers(include_self=False, recursive=True))
        convs = [layer for layer in layers if isinstance(layer, keras.layers.Conv2D)]
        assert convs and all(conv.bias is None for conv in convs)


# --- Determinism and serialization -----------------------------------------------------------


def test_get_config_round_trip():
    for model in (
        StageIIGenerator(GF_DIM, EF_DIM, r_num=2, cond_augmentation=False, sync_bn=True, name="g2"),
        StageIIDiscriminator(DF_DIM, EF_DIM, sync_bn=True, name="d2"),
    ):
        config = model.get_config()
        assert type(model).from_config(config).get_config() == config
        assert keras.saving.get_registered_name(type(model)) == f"stackgan>{type(model).__name__}"


def test_keras_file_round_trip(tmp_path, generator, discriminator):
    # Also the determinism check: same weights and same inputs must give identical outputs.
    for model, inputs in ((generator, _g_inputs(seed=40)), (discriminator, _d_inputs(seed=40))):
        path = tmp_path / f"{model.name}.keras"
        model.save(path)
        loaded = keras.models.load_model(path)
        assert type(loaded) is type(model)
        # Inference mode first (it reads the restored moving statistics), then training mode, whose
        # outputs are far from degenerate in an untrained net (see test_generator_without_eps_samples).
        for training in (False, True):
            expected = tf.nest.flatten(model(inputs, training=training))
            got = tf.nest.flatten(loaded(inputs, training=training))
            for x, y in zip(expected, got):
                np.testing.assert_array_equal(x.numpy(), y.numpy())
        assert np.std(expected[0].numpy()) > 1e-3


def test_tf_checkpoint_sees_every_weight(tmp_path, generator):
    path = tf.train.Checkpoint(model=generator).save(str(tmp_path / "g2"))
    saved = [name for name, _ in tf.train.list_variables(path) if name.startswith("model/")]
    assert len(saved) == len(generator.weights)
