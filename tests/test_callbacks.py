"""Tests of misc/callbacks.py, driven by hand with stand-in models (no training needed)."""
import math
from types import SimpleNamespace

import pytest
import tensorflow as tf

from misc import callbacks as cb
from misc.errors import StackGANError
from misc.gan import LOSS_NAMES, adam


STEP_LOSSES = {name: float(i) for i, name in enumerate(LOSS_NAMES)}


def stub_model(iteration=0):
    return SimpleNamespace(iteration=iteration, d_optimizer=adam(1.0), g_optimizer=adam(1.0))


def run_epochs(callback, model, epochs, steps, first_epoch=0, losses=STEP_LOSSES):
    """Call the hooks in the order `misc.training.run_loop` does, each iteration with `losses`."""
    callback.set_model(model)
    callback.set_params({"steps": steps, "epochs": first_epoch + epochs})
    callback.on_train_begin()
    for epoch in range(first_epoch, first_epoch + epochs):
        callback.on_epoch_begin(epoch)
        for batch in range(steps):
            callback.on_train_batch_end(batch, dict(losses))
        callback.on_epoch_end(epoch, dict(losses))
    callback.on_train_end()


def read_scalars(log_dir):
    found = {}
    for path in log_dir.glob("events*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                found[(value.tag, event.step)] = float(tf.make_ndarray(value.tensor))
    return found


def test_learning_rate_schedule_sets_both_optimizers():
    model = stub_model()
    callback = cb.LearningRateSchedule(2e-4, 1e-4, decay_epoch=100)
    callback.set_model(model)
    for epoch, d_lr, g_lr in [(0, 2e-4, 1e-4), (99, 2e-4, 1e-4), (100, 1e-4, 5e-5), (250, 5e-5, 2.5e-5)]:
        callback.on_epoch_begin(epoch)
        assert float(model.d_optimizer.learning_rate) == pytest.approx(d_lr)
        assert float(model.g_optimizer.learning_rate) == pytest.approx(g_lr)
    stage_ii = cb.LearningRateSchedule(2e-4, 2e-4, decay_epoch=100, pretrained_epoch=600)
    stage_ii.set_model(model)
    stage_ii.on_epoch_begin(650)
    assert float(model.g_optimizer.learning_rate) == pytest.approx(2e-4)


def test_scalar_summaries_use_the_original_tags_and_the_iteration_counter(tmp_path):
    model = stub_model(iteration=10)
    model.d_optimizer.learning_rate = 2e-4
    writer = tf.summary.create_file_writer(str(tmp_path))
    run_epochs(cb.ScalarSummaries(writer, interval=2), model, epochs=1, steps=4)
    writer.close()
    scalars = read_scalars(tmp_path)
    tags = set(LOSS_NAMES) | {"d_learning_rate", "g_learning_rate"}
    assert set(scalars) == {(tag, step) for tag in tags for step in (12, 14)}
    assert scalars[("d_loss_wrong", 12)] == 2.0
    assert scalars[("d_learning_rate", 14)] == pytest.approx(2e-4)


def test_snapshots_every_interval_and_at_the_end(monkeypatch):
    saved = []
    monkeypatch.setattr(cb.checkpoint, "save_checkpoint",
                        lambda model, run_dir, epoch, stage, dataset, keep, iteration, extra: saved.append((iteration, epoch)))
    run_epochs(cb.Snapshots("run", interval=3, stage="stageI", dataset="birds"), stub_model(), epochs=2, steps=4)
    # Iteration 3 is mid-epoch 0; 6 is mid-epoch 1; the end of training (8) resumes at epoch 2.
    assert saved == [(3, 0), (6, 1), (8, 2)]


def test_snapshot_on_the_last_iteration_of_an_epoch_resumes_at_the_next(monkeypatch):
    saved = []
    monkeypatch.setattr(cb.checkpoint, "save_checkpoint",
                        lambda model, run_dir, epoch, stage, dataset, keep, iteration, extra: saved.append((iteration, epoch)))
    run_epochs(cb.Snapshots("run", interval=4, stage="stageI", dataset="birds"), stub_model(iteration=40),
               epochs=2, steps=4, first_epoch=10)
    assert saved == [(44, 11), (48, 12)]  # no second snapshot of iteration 48 at the end


def test_sample_grids_each_epoch_at_the_iteration(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(cb.visualize, "epoch_grids",
                        lambda model, rows, run_dir, step, num_copy, zero_z, views: calls.append((rows, step, zero_z)))
    writer = tf.summary.create_file_writer(str(tmp_path))
    run_epochs(cb.SampleGrids(tmp_path, writer, lambda epoch: {"epoch": epoch}, num_copy=4), stub_model(iteration=5),
               epochs=2, steps=3)
    assert calls == [({"epoch": 0}, 8, True), ({"epoch": 1}, 11, True)]


def test_epoch_log_prints_means_and_stops_on_nan():
    lines = []
    log = cb.EpochLog(max_epoch=600, print_fn=lines.append, run_dir="ckt_logs/birds/run")
    log.on_epoch_begin(0)
    log.on_epoch_end(0, {"d_loss": 1.25, "g_loss": 0.5, "kl_loss": 0.1})
    assert lines[0].startswith("epoch 1/600 (") and lines[0].endswith("d_loss 1.2500, g_loss 0.5000")
    log.on_epoch_begin(1)
    with pytest.raises(StackGANError, match=r"training diverged: g_loss is nan at epoch 2 .*ckt_logs/birds/run"):
        log.on_epoch_end(1, {"d_loss": 1.0, "g_loss": math.nan})
