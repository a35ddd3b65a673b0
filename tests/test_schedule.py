"""Tests of misc/schedule.py: the learning-rate halving of the original `stageI/` and `stageII/trainer.py`."""
import pytest

from misc.schedule import learning_rate

BASE = 2e-4


@pytest.mark.parametrize("epoch, expected", [
    (0, BASE), (99, BASE), (100, BASE / 2), (199, BASE / 2), (200, BASE / 4), (599, BASE / 32),
])
def test_stage_i_halves_every_100_epochs(epoch, expected):
    assert learning_rate(epoch, BASE, 100) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("epoch, expected", [
    (0, BASE), (49, BASE), (50, BASE / 2), (100, BASE / 4), (550, BASE / 2048), (599, BASE / 2048),
])
def test_original_stage_i_files_halved_every_50_epochs(epoch, expected):
    # The original birds/flowers Stage-I configs: 11 halvings by epoch 550, final 2e-4 / 2048.
    assert learning_rate(epoch, BASE, 50) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("epoch, expected", [
    (594, BASE), (600, BASE), (699, BASE), (700, BASE / 2), (800, BASE / 4), (1199, BASE / 32),
])
def test_stage_ii_halves_only_above_pretrained_epoch(epoch, expected):
    # Stage-II continues Stage-I's epoch counter (birds starts at 594) and halves at 700..1100.
    assert learning_rate(epoch, BASE, 100, pretrained_epoch=600) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("args", [(10, BASE, 0), (-1, BASE, 100), (10, BASE, 100, -5)])
def test_invalid_arguments(args):
    with pytest.raises(ValueError):
        learning_rate(*args)
