"""Tests of misc/gan.py: the CondGAN training graph (tiny widths, eager steps on fixed batches)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from misc.config import default_config
from misc.gan import LOSS_NAMES, CondGAN, adam
from stageI.trainer import build_gan
from tiny_data import TINY

B = 4


def tiny_gan(seed=0, **overrides) -> CondGAN:
    keras.utils.set_random_seed(seed)
    return build_gan(default_config().updated({**TINY, **overrides}))


def fixed_batch(seed=1):
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (B, 64, 64, 3)).astype(np.float32)
    wrong = rng.uniform(-1, 1, (B, 64, 64, 3)).astype(np.float32)
    embedding = rng.standard_normal((B, 16)).astype(np.float32)
    noise = {"z_d": rng.standard_normal((B, 10)), "eps_d": rng.standard_normal((B, 8)),
             "z_g": rng.standard_normal((B, 10)), "eps_g": rng.standard_normal((B, 8))}
    noise = {k: tf.constant(v, tf.float32) for k, v in noise.items()}
    return tf.constant(images), tf.constant(wrong), tf.constant(embedding), noise


def values(variables):
    return [v.numpy().copy() for v in variables]


def changed(before, variables):
    return [not np.array_equal(b, v.numpy()) for b, v in zip(before, variables)]


@pytest.fixture(scope="module")
def gan():
    return tiny_gan()


def test_train_step_returns_the_original_loss_names(gan):
    images, wrong, embedding, noise = fixed_batch()
    last = {name: float(value) for name, value in gan.train_step((images, wrong, embedding, noise)).items()}
    assert set(last) == set(LOSS_NAMES)
    assert all(np.isfinite(v) for v in last.values())
    assert [m.name for m in gan.metrics] == list(LOSS_NAMES)
    # d_loss = real + (wrong + fake) / 2; g_loss includes COEFF.KL * KL and KL >= 0 (original `stageI/trainer.py`).
    assert last["d_loss"] == pytest.approx(last["d_loss_real"] + 0.5 * (last["d_loss_wrong"] + last["d_loss_fake"]),
                                           rel=1e-5)
    assert last["kl_loss"] >= 0
    # Both optimisers stepped once per train_step: the original's 1:1 D/G updates.
    assert int(gan.d_optimizer.iterations.numpy()) == int(gan.g_optimizer.iterations.numpy()) >= 1


def test_variables_are_split_by_ownership(gan):
    g_ids = {id(v) for v in gan.g_variables}
    d_ids = {id(v) for v in gan.d_variables}
    assert not g_ids & d_ids
    assert {id(v) for v in gan.generator.ca.trainable_variables} <= g_ids
    assert g_ids | d_ids == {id(v) for v in gan.trainable_variables}
    # build() created the Adam slots (m and v per variable, plus iteration and learning rate).
    assert len(gan.d_optimizer.variables) == 2 + 2 * len(gan.d_variables)
    assert len(gan.g_optimizer.variables) == 2 + 2 * len(gan.g_variables)


def test_d_step_changes_only_discriminator_weights(gan):
    images, wrong, embedding, noise = fixed_batch()
    g_before, d_before = values(gan.g_variables), values(gan.d_variables)
    gan.d_step(images, wrong, embedding, noise["z_d"], noise["eps_d"])
    assert all(changed(d_before, gan.d_variables))
    assert not any(changed(g_before, gan.g_variables))


def test_g_step_changes_only_generator_weights_including_ca(gan):
    _, _, embedding, noise = fixed_batch()
    g_before, d_before = values(gan.g_variables), values(gan.d_variables)
    ca_before = values(gan.generator.ca.trainable_variables)
    gan.g_step(embedding, noise["z_g"], noise["eps_g"])
    assert all(changed(g_before, gan.g_variables))
    assert all(changed(ca_before, gan.generator.ca.trainable_variables))
    assert not any(changed(d_before, gan.d_variables))


def test_one_step_lowers_the_loss_it_optimizes():
    gan = tiny_gan(seed=3, **{"TRAIN.DISCRIMINATOR_LR": 1e-4, "TRAIN.GENERATOR_LR": 1e-4})
    images, wrong, embedding, noise = fixed_batch()
    d_args = (images, wrong, embedding, noise["z_d"], noise["eps_d"])
    d_before = float(tf.reduce_mean(gan.compute_d_losses(*d_args)["d_loss"]))
    gan.d_step(*d_args)
    assert float(tf.reduce_mean(gan.compute_d_losses(*d_args)["d_loss"])) < d_before
    g_args = (embedding, noise["z_g"], noise["eps_g"])
    g_before = float(tf.reduce_mean(gan.compute_g_losses(*g_args)["g_loss"]))
    gan.g_step(*g_args)
    assert float(tf.reduce_mean(gan.compute_g_losses(*g_args)["g_loss"])) < g_before


def test_same_seed_gives_identical_weights_after_two_steps():
    images, wrong, embedding, _ = fixed_batch()
    results = []
    for _ in range(2):
        gan = tiny_gan(seed=7)
        keras.utils.set_random_seed(11)
        for _ in range(2):
            gan.train_step((images, wrong, embedding))  # noise sampled inside, from the seed
        results.append(values(gan.weights) + values(gan.d_optimizer.variables + gan.g_optimizer.variables))
    assert all(np.array_equal(a, b) for a, b in zip(*results))


def test_b_wrong_false_and_no_cond_augmentation():
    gan = tiny_gan(**{"TRAIN.B_WRONG": False, "TRAIN.COND_AUGMENTATION": False})
    images, wrong, embedding, noise = fixed_batch()
    last = {name: float(value) for name, value in gan.train_step((images, wrong, embedding, noise)).items()}
    assert last["d_loss"] == pytest.approx(last["d_loss_real"] + last["d_loss_fake"], rel=1e-5)
    assert last["kl_loss"] == 0.0


def test_bad_batches_are_rejected(gan):
    images, wrong, embedding, noise = fixed_batch()
    with pytest.raises(ValueError, match="lacks"):
        gan.train_step((images, wrong, embedding, {"z_d": noise["z_d"]}))
    with pytest.raises(ValueError, match="must be"):
        gan.train_step((images, wrong))


def test_build_needs_compile_first(gan):
    fresh = CondGAN(gan.generator, gan.discriminator, z_dim=10, ef_dim=8)
    with pytest.raises(RuntimeError, match="compile"):
        fresh.build((None, 16))
    assert adam(1e-3).epsilon == 1e-8 and adam(1e-3).beta_1 == 0.5


def test_the_g_step_starts_only_after_the_whole_d_step(gan):
    # Every op of the G step must come after every update of D (the original's two session.run
    # calls). Without the wait, the two steps' kernels overlapped and Stage-II rounded differently
    # from run to run; here the order is read off the traced graph.
    images, wrong, embedding, _ = fixed_batch()
    step = {"iteration": tf.constant(3, tf.int64), "first_row": tf.constant(0, tf.int64)}
    graph = tf.function(gan.train_step).get_concrete_function((images, wrong, embedding, step)).graph
    ops = graph.get_operations()
    consumers = {op: [] for op in ops}
    for op in ops:
        for parent in [t.op for t in op.inputs] + list(op.control_inputs):
            consumers.setdefault(parent, []).append(op)

    def descendants(start):
        seen, todo = set(), [start]
        while todo:
            for child in consumers.get(todo.pop(), []):
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        return seen

    updates = [op for op in ops if op.name.startswith("d_step/") and "Assign" in op.type]
    # (Placeholders are the captured variable handles, not computations.)
    g_ops = [op for op in ops if op.name.startswith("g_step/") and op.type != "Placeholder"]
    assert len(updates) >= 2 * len(gan.d_variables) and g_ops  # Adam's moments and the weights
    after_all = set.intersection(*(descendants(op) for op in updates))
    early = [op.name for op in g_ops if op not in after_all]
    assert not early, f"{len(early)} G-step ops may run before D's update ends, e.g. {early[:3]}"
