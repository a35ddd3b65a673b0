"""Tests of misc/checkpoint.py: snapshot files, resume with full state, and the errors users hit."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from misc import checkpoint
from misc.config import default_config
from misc.errors import CheckpointError
from misc.gan import adam
from stageI.trainer import build_gan
from tiny_data import TINY

B = 4


def tiny_gan(seed=0, **overrides):
    keras.utils.set_random_seed(seed)
    return build_gan(default_config().updated({**TINY, **overrides}))


def batch_with_noise(seed):
    rng = np.random.default_rng(seed)
    def t(*shape, uniform=False):
        x = rng.uniform(-1, 1, shape) if uniform else rng.standard_normal(shape)
        return tf.constant(x, tf.float32)
    noise = {"z_d": t(B, 10), "eps_d": t(B, 8), "z_g": t(B, 10), "eps_g": t(B, 8)}
    return t(B, 64, 64, 3, uniform=True), t(B, 64, 64, 3, uniform=True), t(B, 16), noise


def state(gan):
    return [v.numpy().copy() for v in gan.weights + gan.d_optimizer.variables + gan.g_optimizer.variables]


def assert_same_state(a, b):
    assert len(a) == len(b)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny GAN after one step, saved at iteration 1 (epoch 0 to resume at)."""
    gan = tiny_gan()
    gan.train_step(batch_with_noise(0))
    run_dir = tmp_path_factory.mktemp("run")
    path = checkpoint.save_checkpoint(gan, run_dir, epoch=0, stage="stageI", dataset="birds")
    return gan, run_dir, path


def test_snapshot_files_and_record(trained):
    gan, run_dir, path = trained
    assert path == run_dir / "model_1.weights.h5"
    record = json.loads((run_dir / "model_1.json").read_text())
    assert record["iteration"] == 1 and record["epoch"] == 0 and record["optimizer_iterations"] == 1
    assert record["stage"] == "stageI" and record["dataset"] == "birds"
    assert record["d_learning_rate"] == 2e-4 and record["g_learning_rate"] == 2e-4
    assert checkpoint.latest_checkpoint(run_dir) == path
    assert not [p for p in run_dir.iterdir() if ".tmp" in p.name]  # atomic writes left nothing behind


def test_resume_restores_everything_and_training_continues(trained):
    gan, run_dir, path = trained
    saved = state(gan)
    resumed = tiny_gan(seed=5)  # different initial weights: everything must come from the file
    record = checkpoint.load_checkpoint(resumed, run_dir, stage="stageI", dataset="birds")
    assert record["path"] == str(path) and record["epoch"] == 0
    assert resumed.iteration == 1
    assert_same_state(state(resumed), saved)
    # The same next step on both gives the same result: Adam moments and BN statistics came back.
    batch = batch_with_noise(1)
    gan.train_step(batch)
    resumed.train_step(batch)
    assert resumed.iteration == gan.iteration == 2
    assert_same_state(state(resumed), state(gan))


def test_iteration_offset_survives_a_round_trip(tmp_path, trained):
    # Stage-II continues the Stage-I counter (e.g. 82000) with fresh optimisers (original `stageII/trainer.py`).
    gan, _, _ = trained
    steps = int(gan.g_optimizer.iterations.numpy())
    path = checkpoint.save_checkpoint(gan, tmp_path, epoch=3, stage="stageII", dataset="birds", iteration=82000 + steps)
    gan.iteration_offset = 0
    record = checkpoint.load_checkpoint(gan, path)
    assert record["iteration"] == 82000 + steps and record["epoch"] == 3
    assert gan.iteration == 82000 + steps and gan.iteration_offset == 82000


def test_keeps_the_last_five(tmp_path, trained):
    gan, _, _ = trained
    for iteration in range(10, 80, 10):
        checkpoint.save_checkpoint(gan, tmp_path, epoch=0, stage="stageI", dataset="birds", iteration=iteration)
    kept = checkpoint.list_checkpoints(tmp_path)
    assert [p.name for p in kept] == [f"model_{i}.weights.h5" for i in (30, 40, 50, 60, 70)]
    assert sorted(p.name for p in tmp_path.glob("*.json")) == sorted(f"model_{i}.json" for i in (30, 40, 50, 60, 70))
    assert checkpoint.latest_checkpoint(tmp_path).name == "model_70.weights.h5"
    assert checkpoint.resolve_checkpoint(tmp_path / "model_40.json") == tmp_path / "model_40.weights.h5"


def test_incomplete_snapshots_are_ignored(tmp_path):
    (tmp_path / "model_5.weights.h5").write_bytes(b"")  # no .json: the run died mid-save
    assert checkpoint.latest_checkpoint(tmp_path) is None
    assert checkpoint.latest_checkpoint(tmp_path / "missing") is None
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        checkpoint.resolve_checkpoint(tmp_path)


def test_missing_file(tmp_path, trained):
    gan, _, _ = trained
    missing = tmp_path / "model_9.weights.h5"
    with pytest.raises(CheckpointError, match=f"{missing}: no such checkpoint file"):
        checkpoint.load_checkpoint(gan, missing)


def test_record_missing(tmp_path, trained):
    gan, run_dir, path = trained
    lonely = tmp_path / path.name
    lonely.write_bytes(path.read_bytes())
    with pytest.raises(CheckpointError, match="record is missing"):
        checkpoint.load_checkpoint(gan, lonely)


def test_wrong_stage_or_dataset(trained):
    gan, run_dir, _ = trained
    with pytest.raises(CheckpointError, match="stageI checkpoint, expected stageII"):
        checkpoint.load_checkpoint(gan, run_dir, stage="stageII")
    with pytest.raises(CheckpointError, match="trained on birds, not on flowers"):
        checkpoint.load_checkpoint(gan, run_dir, dataset="flowers")


def test_other_widths_do_not_load(trained):
    _, run_dir, path = trained
    wider = tiny_gan(**{"GAN.GF_DIM": 16})
    with pytest.raises(CheckpointError, match=f"{path}: the checkpoint does not match this model"):
        checkpoint.load_checkpoint(wider, run_dir)


def test_unbuilt_optimizer_state_is_an_error(trained):
    _, _, path = trained
    gan = tiny_gan()
    # Fresh optimisers without slots: Keras would only warn and skip their state (stack notes G3).
    gan.compile(d_optimizer=adam(2e-4), g_optimizer=adam(2e-4))
    with pytest.raises(CheckpointError, match="optimizer state does not match"):
        checkpoint.load_checkpoint(gan, path)
