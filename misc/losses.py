"""StackGAN losses (original `stageI/trainer.py`) as small pure functions, one value per example.

Every function returns shape (B,) so that the trainer reduces with `tf.nn.compute_average_loss`,
which divides by the *global* batch and therefore gives correct gradients under `tf.distribute`
(stack notes G2). On one device, the mean of each (B,) result is exactly the original's
`tf.reduce_mean` value.
"""
from __future__ import annotations

import tensorflow as tf


def sigmoid_bce(logits: tf.Tensor, target: float) -> tf.Tensor:
    """Sigmoid cross-entropy of logits against a constant label, per example.

    The original's `tf.nn.sigmoid_cross_entropy_with_logits(logits, tf.ones_like(logits))`
    (or `zeros_like`) before its `tf.reduce_mean`.

    Args:
      logits: (B,) discriminator logits.
      target: the label every example gets, 1.0 (real) or 0.0 (fake).

    Returns:
      (B,) losses.
    """
    logits = tf.convert_to_tensor(logits)
    labels = tf.fill(tf.shape(logits), tf.cast(target, logits.dtype))
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)


def kl_loss(mu: tf.Tensor, log_sigma: tf.Tensor) -> tf.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) of conditioning augmentation: port of `KL_loss` (original `stageI/trainer.py`).

    Element-wise -log sigma + (sigma^2 + mu^2 - 1) / 2 with sigma^2 = exp(2 log sigma), then the
    mean over the ef_dim axis. The original takes the mean over batch *and* ef_dim; the batch mean
    is left to the trainer. The `COEFF.KL` weight (2.0) is applied by the trainer too.

    Args:
      mu: (B, ef_dim) CA mean.
      log_sigma: (B, ef_dim) CA log standard deviation.

    Returns:
      (B,) KL values.
    """
    elementwise = -log_sigma + 0.5 * (tf.exp(2.0 * log_sigma) + tf.square(mu) - 1.0)
    return tf.reduce_mean(elementwise, axis=-1)


def discriminator_loss(
    real_logits: tf.Tensor,
    wrong_logits: tf.Tensor,
    fake_logits: tf.Tensor,
    b_wrong: bool = True,
) -> dict[str, tf.Tensor]:
    """Discriminator loss of both stages (original `stageI/trainer.py`): port of the `d_loss` terms of `CondGANTrainer`.

    d_loss = BCE(real, 1) + (BCE(wrong, 0) + BCE(fake, 0)) / 2, or with `b_wrong=False`
    d_loss = BCE(real, 1) + BCE(fake, 0). The wrong term is returned either way, for logging.

    Args:
      real_logits: (B,) D on (real image, its text).
      wrong_logits: (B,) D on (mismatched real image, the text).
      fake_logits: (B,) D on (generated image, the text).
      b_wrong: the original's `TRAIN.B_WRONG`.

    Returns:
      dict with (B,) tensors `d_loss`, `d_loss_real`, `d_loss_wrong`, `d_loss_fake`.
    """
    d_loss_real = sigmoid_bce(real_logits, 1.0)
    d_loss_wrong = sigmoid_bce(wrong_logits, 0.0)
    d_loss_fake = sigmoid_bce(fake_logits, 0.0)
    if b_wrong:
        d_loss = d_loss_real + 0.5 * (d_loss_wrong + d_loss_fake)
    else:
        d_loss = d_loss_real + d_loss_fake
    return {
        "d_loss": d_loss,
        "d_loss_real": d_loss_real,
        "d_loss_wrong": d_loss_wrong,
        "d_loss_fake": d_loss_fake,
    }


def generator_loss(fake_logits: tf.Tensor) -> tf.Tensor:
    """Non-saturating generator loss (original `stageI/trainer.py`): BCE(D(G(z, c), phi), 1), per example.

    The trainer adds `COEFF.KL * kl_loss` to form the original's `g_loss`.

    Args:
      fake_logits: (B,) D on (generated image, the text).

    Returns:
      (B,) losses.
    """
    return sigmoid_bce(fake_logits, 1.0)
