"""Tests for stageI/model.py: Stage-I generator and discriminator (original `stageI/model.py`)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from misc.blocks import LogitHead, ResidualBlock, TextContext, UpSampleBlock
from stageI.model import StageIDiscriminator, StageIGenerator, unpack_generator_inputs

TEXT_DIM, EF_DIM, GF_DIM, DF_DIM, Z_DIM, BATCH = 16, 8, 8, 4, 10, 3


def _count(layer):
    return sum(int(np.prod(v.shape)) for v in layer.trainable_weights)


def _normal(shape, seed):
    return tf.random.stateless_normal(shape, seed=(seed, 0))


def _g_inputs(batch=BATCH, seed=0, with_eps=True):
    inputs = (_normal((batch, TEXT_DIM), seed), _normal((batch, Z_DIM), seed + 1))
    return inputs + (_normal((batch, EF_DIM), seed + 2),) if with_eps else inputs


def _d_inputs(batch=BATCH, seed=0):
    images = tf.tanh(_normal((batch, 64, 64, 3), seed))
    return images, _normal((batch, TEXT_DIM), seed + 1)


def _all_sublayers(model):
    return list(model._flatten_layers(include_self=False, recursive=True))


@pytest.fixture(scope="module")
def generator():
    model = StageIGenerator(GF_DIM, EF_DIM, Z_DIM)
    model(_g_inputs())
    return model


@pytest.fixture(scope="module")
def discriminator():
    model = StageIDiscriminator(DF_DIM, EF_DIM)
    model(_d_inputs())
    return model


# --- Shapes, ranges, parameter counts --------------------------------------------------------


@pytest.mark.parametrize("training", [True, False])
def test_generator_shapes_and_range(generator, training):
    images, mu, log_sigma = generator(_g_inputs(), training=training)
    assert images.shape == (BATCH, 64, 64, 3)
    assert mu.shape == log_sigma.shape == (BATCH, EF_DIM)
    assert np.abs(images.numpy()).max() <= 1.0


def test_generator_draws_eps_when_not_given(generator):
    keras.utils.set_random_seed(3)
    first = generator(_g_inputs(with_eps=False), training=False)[0].numpy()
    second = generator(_g_inputs(with_eps=False), training=False)[0].numpy()
    keras.utils.set_random_seed(3)
    again = generator(_g_inputs(with_eps=False), training=False)[0].numpy()
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, again)


def test_discriminator_shape(discriminator):
    assert discriminator(_d_inputs(), training=True).shape == (BATCH,)


def test_parameter_counts_at_birds_width():
    generator = StageIGenerator()
    generator.build(((None, 1024), (None, 100)))
    discriminator = StageIDiscriminator()
    discriminator.build(((None, 64, 64, 3), (None, 1024)))
    assert _count(generator.ca) == 262_400
    assert _count(generator) - _count(generator.ca) == 14_001_792
    assert _count(discriminator) == 4_029_824
    assert _count(discriminator.context) == 131_200


# --- Layer settings --------------------------------------------------------------------------


def test_no_conv_has_a_bias_and_bn_settings(generator, discriminator):
    for model in (generator, discriminator):
        layers = _all_sublayers(model)
        convs = [layer for layer in layers if isinstance(layer, keras.layers.Conv2D)]
        bns = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
        assert convs and all(conv.bias is None and conv.padding == "same" for conv in convs)
        assert bns and all(bn.momentum == 0.9 and bn.epsilon == 1e-5 and not bn.synchronized for bn in bns)
    # Only the FC layers (CA, generator FC, text context) carry biases.
    # (Paths without the model's own name, which Keras numbers by how many were made before.)
    biases = sorted(f"{kind}/{v.path.split('/', 1)[1]}" for kind, m in (("g", generator), ("d", discriminator))
                    for v in m.weights if v.path.endswith("bias"))
    assert biases == ["d/context/fc/bias", "g/ca/fc/bias", "g/fc/bias"]


def test_generator_structure_follows_the_original(generator):
    res1, up1, res2, up2, up3, up4 = generator.decoder.layers
    assert isinstance(res1, ResidualBlock) and isinstance(up1, UpSampleBlock)
    assert (res1.filters, res1.bottleneck_filters, res1.activation) == (64, 16, "relu")
    assert (up1.filters, up1.activation) == (32, None)  # no ReLU before res2
    assert (res2.filters, res2.bottleneck_filters, res2.activation) == (32, 8, "relu")
    assert [(b.filters, b.batch_norm, b.activation) for b in (up2, up3, up4)] == [
        (16, True, "relu"),
        (8, True, "relu"),
        (3, False, "tanh"),
    ]
    assert generator.fc.kernel.shape == (EF_DIM + Z_DIM, 4 * 4 * GF_DIM * 8)


def test_generator_has_no_activation_after_fc_bn_and_concats_c_before_z(generator):
    embedding, z, epsilon = _g_inputs()
    images = generator((embedding, z, epsilon), training=False)[0]
    c_code = generator.ca(embedding, epsilon=epsilon)[0]
    h0 = generator.fc_bn(generator.fc(tf.concat([c_code, z], -1)), training=False)
    assert h0.numpy().min() < 0  # negative values reach the residual block unchanged
    by_hand = generator.decoder(tf.reshape(h0, [-1, 4, 4, GF_DIM * 8]), training=False)
    np.testing.assert_allclose(images.numpy(), by_hand.numpy(), atol=1e-6)


def test_concat_order_c_then_z():
    model = StageIGenerator(GF_DIM, EF_DIM, Z_DIM)
    embedding, z, epsilon = _g_inputs()
    model((embedding, z, epsilon))
    kernel = model.fc.kernel.numpy()
    kernel[EF_DIM:] = 0.0  # rows that multiply z
    model.fc.kernel.assign(kernel)
    base = model((embedding, z, epsilon), training=False)[0].numpy()
    other_z = model((embedding, 5.0 * z, epsilon), training=False)[0].numpy()
    np.testing.assert_array_equal(base, other_z)
    other_text = model((embedding + 1.0, z, epsilon), training=False)[0].numpy()
    assert not np.array_equal(base, other_text)


def test_discriminator_structure_and_activation_placement(discriminator):
    encoder = discriminator.image_encoder.layers
    assert [(b.filters, b.kernel_size, b.strides, b.batch_norm, b.activation) for b in encoder[:4]] == [
        (4, 4, 2, False, "leaky_relu"),
        (8, 4, 2, True, "leaky_relu"),
        (16, 4, 2, True, None),  # conv3: BN, no activation
        (32, 4, 2, True, None),  # conv4: BN, no activation
    ]
    tail = encoder[4]
    assert isinstance(tail, ResidualBlock)
    assert (tail.filters, tail.bottleneck_filters, tail.activation) == (32, 8, "leaky_relu")
    assert isinstance(discriminator.context, TextContext) and isinstance(discriminator.head, LogitHead)
    assert discriminator.head.filters == DF_DIM * 8
    # Numerically: conv2 is leaky-activated (positive channel means), conv3 is BN only (mean 0).
    x = _d_inputs()[0]
    h2 = encoder[1](encoder[0](x, training=True), training=True)
    h3 = encoder[2](h2, training=True).numpy()
    assert h2.numpy().mean(axis=(0, 1, 2)).min() > 0
    assert h3.min() < -0.5 and np.abs(h3.mean(axis=(0, 1, 2))).max() < 1e-4


def test_paper_activations_add_leaky_relu_after_conv3_and_conv4_only(discriminator):
    paper = StageIDiscriminator.from_config({**discriminator.get_config(), "paper_activations": True})
    paper(_d_inputs())
    paper.set_weights(discriminator.get_weights())  # same weights: the option adds no parameter
    assert _count(paper) == _count(discriminator)
    assert [b.activation for b in paper.image_encoder.layers[:4]] == ["leaky_relu"] * 4
    x = _d_inputs()[0]
    h = x
    for block in paper.image_encoder.layers[:3]:
        h = block(h, training=True)
    paper_conv4 = paper.image_encoder.layers[3](h, training=True).numpy()
    plain_conv4 = discriminator.image_encoder.layers[3](h, training=True).numpy()
    assert plain_conv4.min() < -0.5
    np.testing.assert_allclose(paper_conv4, np.where(plain_conv4 > 0, plain_conv4, 0.2 * plain_conv4), atol=1e-5)
    assert not np.allclose(paper((x, _d_inputs()[1]), training=True).numpy(),
                           discriminator((x, _d_inputs()[1]), training=True).numpy(), atol=1e-4)


# --- BN phases, sync BN, determinism ---------------------------------------------------------


def test_discriminator_uses_per_call_batch_statistics():
    model = StageIDiscriminator(DF_DIM, EF_DIM)
    real, wrong, fake = (_d_inputs(seed=s) for s in (10, 20, 30))
    model(real)
    alone = model(real, training=True).numpy()
    # Three separate calls, as the trainer makes them: each uses only its own batch.
    outputs = [model(batch, training=True).numpy() for batch in (real, wrong, fake)]
    np.testing.assert_allclose(outputs[0], alone, atol=1e-6)
    np.testing.assert_allclose(model(real, training=True).numpy(), alone, atol=1e-6)
    # One call on the concatenation would mix the statistics and give other logits.
    joint = model(tuple(tf.concat(parts, 0) for parts in zip(real, wrong, fake)), training=True).numpy()
    assert not np.allclose(joint[:BATCH], alone, atol=1e-4)
    # Inference mode uses the moving averages instead.
    assert not np.allclose(model(real, training=False).numpy(), alone, atol=1e-4)


def test_sync_bn_matches_plain_bn_without_a_strategy(generator, discriminator):
    for plain, cls, inputs in (
        (generator, StageIGenerator, _g_inputs()),
        (discriminator, StageIDiscriminator, _d_inputs()),
    ):
        synced = cls.from_config({**plain.get_config(), "sync_bn": True})
        synced(inputs)
        synced.set_weights(plain.get_weights())
        bns = [bn for bn in _all_sublayers(synced) if isinstance(bn, keras.layers.BatchNormalization)]
        assert bns and all(bn.synchronized for bn in bns)
        for training in (True, False):
            expected = tf.nest.flatten(plain(inputs, training=training))[0].numpy()
            got = tf.nest.flatten(synced(inputs, training=training))[0].numpy()
            np.testing.assert_allclose(got, expected, atol=1e-4)


def test_same_weights_and_inputs_give_same_outputs(generator):
    clone = StageIGenerator.from_config(generator.get_config())
    clone(_g_inputs())
    clone.set_weights(generator.get_weights())
    for training in (True, False):
        a = generator(_g_inputs(seed=5), training=training)
        b = clone(_g_inputs(seed=5), training=training)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_same_seed_gives_same_initial_weights():
    weights = []
    for _ in range(2):
        keras.utils.set_random_seed(11)
        model = StageIDiscriminator(DF_DIM, EF_DIM)
        model.build(((None, 64, 64, 3), (None, TEXT_DIM)))
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


# --- Serialization ---------------------------------------------------------------------------


def test_get_config_round_trip():
    for model in (
        StageIGenerator(GF_DIM, EF_DIM, Z_DIM, cond_augmentation=False, sync_bn=True, name="g"),
        StageIDiscriminator(DF_DIM, EF_DIM, sync_bn=True, name="d"),
        StageIDiscriminator(DF_DIM, EF_DIM, paper_activations=True, name="d_paper"),
    ):
        config = model.get_config()
        assert type(model).from_config(config).get_config() == config
        assert keras.saving.get_registered_name(type(model)) == f"stackgan>{type(model).__name__}"


def test_keras_file_round_trip(tmp_path, generator, discriminator):
    for model, inputs in ((generator, _g_inputs(seed=40)), (discriminator, _d_inputs(seed=40))):
        path = tmp_path / f"{model.name}.keras"
        model.save(path)
        loaded = keras.models.load_model(path)
        assert type(loaded) is type(model)
        # Inference mode first (it reads the restored moving statistics), then training mode, whose
        # outputs are far from degenerate in an untrained net.
        for training in (False, True):
            expected = tf.nest.flatten(model(inputs, training=training))
            got = tf.nest.flatten(loaded(inputs, training=training))
            for x, y in zip(expected, got):
                np.testing.assert_array_equal(x.numpy(), y.numpy())
        assert np.std(expected[0].numpy()) > 1e-3


def test_tf_checkpoint_sees_every_weight(tmp_path, generator, discriminator):
    # Sublayers live in attributes or keras.Sequential, which tf.train.Checkpoint tracks (notes G6).
    for model in (generator, discriminator):
        path = tf.train.Checkpoint(model=model).save(str(tmp_path / model.name))
        saved = [name for name, _ in tf.train.list_variables(path) if name.startswith("model/")]
        assert len(saved) == len(model.weights)


def test_generator_input_errors(generator):
    embedding, z, _ = _g_inputs()
    with pytest.raises(ValueError, match="2- or 3-tuple"):
        unpack_generator_inputs(embedding)
    with pytest.raises(ValueError, match="z_dim=10"):
        generator((embedding, tf.zeros((BATCH, Z_DIM + 1))))


def test_config_key_selects_the_paper_activations():
    from misc.config import load_config
    from stageI.trainer import build_networks

    tiny = {"GAN.GF_DIM": GF_DIM, "GAN.DF_DIM": DF_DIM, "GAN.EMBEDDING_DIM": EF_DIM, "TEXT.DIMENSION": TEXT_DIM}
    for value in (False, True):
        _, discriminator = build_networks(load_config(None, {**tiny, "GAN.D_PAPER_ACTIVATIONS": value}))
        assert discriminator.paper_activations is value
        expected = "leaky_relu" if value else None
        assert [b.activation for b in discriminator.image_encoder.layers[2:4]] == [expected, expected]
