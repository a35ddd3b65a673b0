"""Tests for misc/losses.py against hand-computed values (original `stageI/trainer.py`).

Numbers used below:
  BCE(logit 0, any target)  = log 2                  = 0.6931472
  BCE(logit 2, target 1)    = log(1 + e^-2)          = 0.1269280
  BCE(logit 2, target 0)    = 2 + log(1 + e^-2)      = 2.1269280
  BCE(logit -2, target 0)   = log(1 + e^-2)          = 0.1269280
  BCE(logit -2, target 1)   = 2 + log(1 + e^-2)      = 2.1269280
"""
import numpy as np
import pytest
import tensorflow as tf

from misc import losses

LOG2 = 0.6931472
SMALL = 0.1269280  # log(1 + e^-2)
LARGE = 2.1269280  # 2 + log(1 + e^-2)


def test_sigmoid_bce_hand_values():
    logits = tf.constant([0.0, 2.0, -2.0])
    np.testing.assert_allclose(losses.sigmoid_bce(logits, 1.0).numpy(), [LOG2, SMALL, LARGE], rtol=1e-6)
    np.testing.assert_allclose(losses.sigmoid_bce(logits, 0.0).numpy(), [LOG2, LARGE, SMALL], rtol=1e-6)


def test_sigmoid_bce_is_stable_for_large_logits():
    np.testing.assert_allclose(losses.sigmoid_bce(tf.constant([100.0]), 0.0).numpy(), [100.0])
    np.testing.assert_allclose(losses.sigmoid_bce(tf.constant([-100.0]), 1.0).numpy(), [100.0])
    np.testing.assert_allclose(losses.sigmoid_bce(tf.constant([100.0]), 1.0).numpy(), [0.0], atol=1e-30)


def test_kl_loss_hand_values():
    # Rows: (mu, log_sigma) per element; element value -log s + (s^2 + mu^2 - 1) / 2.
    mu = tf.constant([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [2.0, -1.0]])
    log_sigma = tf.constant([[0.0, 0.0], [0.0, 0.0], [np.log(2.0), np.log(2.0)], [0.0, 0.0]], tf.float32)
    kl = losses.kl_loss(mu, log_sigma).numpy()
    expected = [
        0.0,  # N(0, 1) itself
        0.25,  # mean(0.5, 0)
        1.5 - LOG2,  # -log 2 + (4 - 1) / 2 = 0.8068528 in both elements
        (2.0 + 0.5) / 2,  # mean((4 - 1 + 1) / 2, (1 - 1 + 1) / 2) = mean(2, 0.5)
    ]
    np.testing.assert_allclose(kl, expected, rtol=1e-6, atol=1e-7)
    assert kl.shape == (4,)


def test_kl_loss_batch_mean_equals_the_original_mean_over_both_axes():
    mu = tf.random.stateless_normal((5, 7), seed=(1, 1))
    log_sigma = 0.3 * tf.random.stateless_normal((5, 7), seed=(2, 1))
    original = tf.reduce_mean(-log_sigma + 0.5 * (-1.0 + tf.exp(2.0 * log_sigma) + tf.square(mu)))
    ours = tf.reduce_mean(losses.kl_loss(mu, log_sigma))
    np.testing.assert_allclose(ours.numpy(), original.numpy(), rtol=1e-6)


def test_discriminator_loss_with_wrong_images():
    real, wrong, fake = tf.constant([0.0, 0.0]), tf.constant([2.0, 2.0]), tf.constant([-2.0, -2.0])
    out = losses.discriminator_loss(real, wrong, fake)
    assert set(out) == {"d_loss", "d_loss_real", "d_loss_wrong", "d_loss_fake"}
    np.testing.assert_allclose(out["d_loss_real"].numpy(), [LOG2, LOG2], rtol=1e-6)
    np.testing.assert_allclose(out["d_loss_wrong"].numpy(), [LARGE, LARGE], rtol=1e-6)
    np.testing.assert_allclose(out["d_loss_fake"].numpy(), [SMALL, SMALL], rtol=1e-6)
    # log 2 + (2.1269280 + 0.1269280) / 2 = 1.8200752
    np.testing.assert_allclose(out["d_loss"].numpy(), [1.8200752, 1.8200752], rtol=1e-6)


def test_discriminator_loss_without_wrong_images_still_reports_the_wrong_term():
    out = losses.discriminator_loss(
        tf.constant([0.0]), tf.constant([2.0]), tf.constant([-2.0]), b_wrong=False
    )
    np.testing.assert_allclose(out["d_loss"].numpy(), [LOG2 + SMALL], rtol=1e-6)  # 0.8200752
    np.testing.assert_allclose(out["d_loss_wrong"].numpy(), [LARGE], rtol=1e-6)


def test_generator_loss_is_non_saturating():
    g_loss = losses.generator_loss(tf.constant([-2.0, 0.0, 2.0]))
    np.testing.assert_allclose(g_loss.numpy(), [LARGE, LOG2, SMALL], rtol=1e-6)


def test_losses_are_per_example_and_average_like_the_original():
    logits = tf.constant([0.5, -1.0, 3.0, 0.0])
    per_example = losses.generator_loss(logits)
    assert per_example.shape == (4,)
    # On one device compute_average_loss (used by the trainer, notes G2) is the original reduce_mean.
    np.testing.assert_allclose(
        tf.nn.compute_average_loss(per_example).numpy(), tf.reduce_mean(per_example).numpy(), rtol=1e-6
    )


def test_losses_work_inside_tf_function():
    @tf.function
    def total(real, wrong, fake):
        return losses.discriminator_loss(real, wrong, fake)["d_loss"]

    value = total(tf.constant([0.0]), tf.constant([2.0]), tf.constant([-2.0]))
    assert value.numpy() == pytest.approx([1.8200752], rel=1e-6)
