"""The learning-rate schedule of both stages, as one pure function of the epoch.

Port of the learning-rate halving in the original `stageI/trainer.py` and `stageII/trainer.py`
(`CondGANTrainer.train`): at the start of every epoch that is a non-zero multiple of
`TRAIN.LR_DECAY_EPOCH` both learning rates are halved; Stage-II only halves at epochs strictly above
`TRAIN.PRETRAINED_EPOCH` (its epoch counter continues from Stage-I's).

Deliberate difference: the original kept the current rate in a Python variable, so a resumed run
restarted at the base rate and forgot the halvings already done. Here the rate is computed from the
epoch alone, so a resumed run gets exactly the rate an uninterrupted run would have.
"""
from __future__ import annotations


def learning_rate(epoch: int, base_lr: float, decay_epoch: int, pretrained_epoch: int = 0) -> float:
    """The learning rate used during `epoch` (0-based).

    Port of the original halving rule: `base_lr * 0.5 ** k`, where k counts the epochs e' with
    `pretrained_epoch < e' <= epoch`, `e' % decay_epoch == 0` and `e' != 0`.

    Examples with base 2e-4: Stage-I (decay 100) gives 2e-4 for epochs 0..99, 1e-4 for 100..199,
    5e-5 from 200; the original Stage-I files (decay 50) halved at 50, 100, ...; Stage-II (decay 100,
    pretrained_epoch 600) keeps 2e-4 up to epoch 699 and halves at 700, 800, ...

    Args:
      epoch: the epoch about to run (0-based, counted like the original's epoch counter).
      base_lr: `TRAIN.DISCRIMINATOR_LR` or `TRAIN.GENERATOR_LR`.
      decay_epoch: `TRAIN.LR_DECAY_EPOCH`, the halving period in epochs.
      pretrained_epoch: only epochs strictly above this count (Stage-I: 0; Stage-II:
        `TRAIN.PRETRAINED_EPOCH`).

    Returns:
      The learning rate as a Python float.

    Raises:
      ValueError: `decay_epoch` is not positive, or `epoch`/`pretrained_epoch` is negative.
    """
    if decay_epoch <= 0:
        raise ValueError(f"decay_epoch must be positive, got {decay_epoch}")
    if epoch < 0 or pretrained_epoch < 0:
        raise ValueError(f"epochs must not be negative, got epoch={epoch}, pretrained_epoch={pretrained_epoch}")
    # Multiples of decay_epoch in (pretrained_epoch, epoch]; zero is excluded because
    # pretrained_epoch >= 0 makes the interval open at 0.
    halvings = max(0, epoch // decay_epoch - pretrained_epoch // decay_epoch)
    return float(base_lr) * 0.5 ** halvings
