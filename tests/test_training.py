"""Tests of misc/training.py: the training loop's exact resume, and training in mixed precision.

In-process, at tiny widths, on the tiny birds of conftest (18 training images: 4 iterations of
batch 4 per epoch).
"""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from misc import callbacks as cb
from misc import training
from misc.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, read_metadata, save_checkpoint
from misc.config import default_config, load_config
from stageI import trainer
from tiny_data import TINY, run_script, tiny_sets

REPO = Path(__file__).resolve().parents[1]
CFG = REPO / "stageI" / "cfg" / "birds.yml"


def weights_of(path: Path) -> dict:
    """Every dataset of a `.weights.h5` file (networks, optimisers, BN statistics) by its path."""
    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights_of(a), weights_of(b)
    assert sorted(wa) == sorted(wb)
    different = [name for name in wa if not np.array_equal(wa[name], wb[name])]
    assert not different, f"{len(different)} of {len(wa)} differ, e.g. {different[:3]}"


def tiny_cfg(tiny_birds, out, **extra):
    return load_config(CFG, {**TINY, "DATA_DIR": str(tiny_birds), "OUTPUT_DIR": str(out),
                             "TRAIN.SNAPSHOT_INTERVAL": 5, "TRAIN.MAX_EPOCH": 3, **extra})


class Killed(Exception):
    """Stands for the process being killed."""


def test_a_run_killed_between_checkpoints_and_resumed_ends_as_an_uninterrupted_run(tiny_birds, tmp_path, monkeypatch):
    # 3 epochs of 4 iterations, snapshots at 5, 10 and the end (12).
    whole = trainer.train(tiny_cfg(tiny_birds, tmp_path / "whole"), print_fn=lambda _: None)
    assert [p.name for p in list_checkpoints(whole)] == ["model_5.weights.h5", "model_10.weights.h5",
                                                         "model_12.weights.h5"]
    record = read_metadata(whole / "model_5.weights.h5")
    assert record["epoch"] == 1  # iteration 5 is the second of epoch 1: the resumed run continues there

    summaries = cb.ScalarSummaries.on_train_batch_end

    def killed_at_7(self, batch, logs=None):
        summaries(self, batch, logs)
        if self.iteration == 7:
            raise Killed()

    monkeypatch.setattr(cb.ScalarSummaries, "on_train_batch_end", killed_at_7)
    with pytest.raises(Killed):
        trainer.train(tiny_cfg(tiny_birds, tmp_path / "killed"), print_fn=lambda _: None)
    monkeypatch.undo()
    (run_dir,) = (tmp_path / "killed" / "birds").iterdir()
    assert latest_checkpoint(run_dir).name == "model_5.weights.h5"  # iterations 6 and 7 are lost
    lines = []
    trainer.train(tiny_cfg(tiny_birds, tmp_path / "killed"), resume=str(run_dir), print_fn=lines.append)
    assert any("iteration 5, continuing with epoch 2" in line for line in lines), lines
    assert any("(epoch 2 from its iteration 2)" in line for line in lines), lines
    assert latest_checkpoint(run_dir).name == "model_12.weights.h5"
    assert_same_weights(whole / "model_12.weights.h5", run_dir / "model_12.weights.h5")


@pytest.mark.slow
def test_a_run_killed_by_a_signal_and_resumed_from_the_command_line_ends_the_same(tiny_birds, tmp_path):
    common = ["--cfg", str(CFG), "--data_dir", str(tiny_birds),
              *tiny_sets("TRAIN.SNAPSHOT_INTERVAL=5", "TRAIN.MAX_EPOCH=4")]
    whole = run_script(REPO / "stageI" / "run_exp.py", [*common, "--set", f"OUTPUT_DIR={tmp_path / 'whole'}"], REPO)
    assert whole.returncode == 0, whole.stderr[-2000:]
    # Unbuffered: the "saved" line must arrive when it is printed, not when the run ends.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(REPO / "stageI" / "run_exp.py"), *common, "--set",
                             f"OUTPUT_DIR={tmp_path / 'killed'}"], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    for line in proc.stdout:
        if "model_5.weights.h5" in line:  # between the snapshots at 5 and 10
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=120)
    (run_dir,) = (tmp_path / "killed" / "birds").iterdir()
    assert latest_checkpoint(run_dir).name in ("model_5.weights.h5", "model_10.weights.h5")
    resumed = run_script(REPO / "stageI" / "run_exp.py", [*common, "--set", f"OUTPUT_DIR={tmp_path / 'killed'}",
                                                          "--resume", str(run_dir)], REPO)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    (whole_dir,) = (tmp_path / "whole" / "birds").iterdir()
    assert_same_weights(whole_dir / "model_16.weights.h5", run_dir / "model_16.weights.h5")


# --------------------------------------------------------------------------- mixed precision
def tiny_gan(mode="none", seed=0, optimizer=None):
    cfg = default_config().updated({**TINY, "TRAIN.MIXED_PRECISION": mode})
    keras.utils.set_random_seed(seed)
    with training.precision(mode):
        gan = trainer.build_gan(cfg)
        if optimizer is not None:
            gan.compile(d_optimizer=optimizer(), g_optimizer=optimizer())
            gan.build((None, 16))
    return gan


def fixed_batch(scale=1.0, rows=4):
    rng = np.random.default_rng(1)
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    noise = {"z_d": f(rows, 10), "eps_d": f(rows, 8), "z_g": f(rows, 10), "eps_g": f(rows, 8)}
    return (np.tanh(f(rows, 64, 64, 3)), np.tanh(f(rows, 64, 64, 3)), f(rows, 16) * np.float32(scale), noise)


def values(variables):
    return [np.array(v.numpy()) for v in variables]


def test_mixed_precision_keeps_variables_ca_logits_and_losses_in_float32():
    gan = tiny_gan("bfloat16")
    assert gan.generator.compute_dtype == "bfloat16" and gan.discriminator.compute_dtype == "bfloat16"
    assert {v.dtype for v in gan.weights} == {"float32"}
    assert gan.generator.ca.compute_dtype == "float32" and gan.discriminator.head.logit.compute_dtype == "float32"
    images, _, embedding, noise = fixed_batch()
    fake, mu, log_sigma = gan.generate(embedding, noise["z_d"], noise["eps_d"], training=False)
    assert (fake.dtype, mu.dtype, log_sigma.dtype) == (tf.float32,) * 3
    assert gan.discriminator((images, embedding), training=False).dtype == tf.float32
    losses = gan.train_step(fixed_batch())
    assert {value.dtype for value in losses.values()} == {tf.float32}
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after building


def test_a_bfloat16_step_moves_the_weights_a_float32_step_moves():
    """Plain SGD shows the gradients themselves. bfloat16 keeps 8 bits of mantissa, and batch norm over
    a small batch at tiny widths magnifies the rounding: the discriminator's update (on float32 input
    images) agrees within a few tens of per cent, the generator's (through both networks) in direction."""
    sgd = lambda: keras.optimizers.SGD(0.01)
    plain, mixed = tiny_gan("none", optimizer=sgd), tiny_gan("bfloat16", optimizer=sgd)
    mixed.set_weights(plain.get_weights())
    before = values(plain.trainable_variables)
    batch = fixed_batch(rows=16)
    plain.train_step(batch)
    mixed.train_step(batch)

    def moves(gan, network):
        start = dict(zip([id(v) for v in plain.trainable_variables], before))
        pairs = zip(getattr(gan, network).trainable_variables, getattr(plain, network).trainable_variables)
        return np.concatenate([(np.array(v.numpy()) - start[id(p)]).ravel() for v, p in pairs])

    for network in ("discriminator", "generator"):
        a, b = moves(plain, network), moves(mixed, network)
        assert np.count_nonzero(a) == pytest.approx(np.count_nonzero(b), rel=0.01), network  # the same weights move
        cosine = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
        relative = float(np.linalg.norm(a - b) / np.linalg.norm(a))
        if network == "discriminator":
            assert cosine > 0.97 and relative < 0.25, (cosine, relative)
        else:
            assert cosine > 0.8, (cosine, relative)


def test_a_float16_overflow_is_skipped_and_the_loss_scale_drops_then_recovers():
    gan = tiny_gan("float16")
    assert isinstance(gan.d_optimizer, keras.optimizers.LossScaleOptimizer)
    assert training.loss_scales(gan) == {"d_loss_scale": 2.0 ** 15, "g_loss_scale": 2.0 ** 15}  # Keras' start
    for optimizer in (gan.d_optimizer, gan.g_optimizer):
        optimizer.dynamic_growth_steps = 2  # grow back after 2 finite steps (Keras' default: 2000)
        optimizer.dynamic_scale.assign(2.0 ** 4)  # low enough that this tiny model's steps are finite
    scales = lambda: training.loss_scales(gan)
    start = scales()
    weights = values(gan.trainable_variables)
    gan.train_step(fixed_batch(scale=np.inf))  # an overflow: every gradient is non-finite
    assert all(np.array_equal(a, b) for a, b in zip(weights, values(gan.trainable_variables)))  # skipped
    assert scales() == {"d_loss_scale": 2.0 ** 3, "g_loss_scale": 2.0 ** 3}
    for _ in range(2):
        gan.train_step(fixed_batch())
    assert scales() == start
    assert not all(np.array_equal(a, b) for a, b in zip(weights, values(gan.trainable_variables)))


def test_a_float16_checkpoint_holds_float32_weights_and_the_loss_scale(tmp_path):
    gan = tiny_gan("float16")
    gan.train_step(fixed_batch(scale=np.inf))
    path = save_checkpoint(gan, tmp_path, epoch=0, stage="stageI", dataset="birds")
    assert {w.dtype for w in weights_of(path).values() if w.dtype.kind == "f"} == {np.dtype("float32")}
    other = tiny_gan("float16", seed=3)
    load_checkpoint(other, path)
    assert training.loss_scales(other) == {"d_loss_scale": 2.0 ** 14, "g_loss_scale": 2.0 ** 14}
    for a, b in zip(values(gan.weights), values(other.weights)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", ["bfloat16", "float16"])
def test_training_in_mixed_precision_then_sampling_in_float32(tiny_birds, tmp_path, mode):
    from misc.generate.inference import load_generators

    cfg = tiny_cfg(tiny_birds, tmp_path, **{"TRAIN.MAX_EPOCH": 1, "TRAIN.MIXED_PRECISION": mode})
    lines = []
    run_dir = trainer.train(cfg, print_fn=lines.append)
    assert any(line.endswith(f"precision: mixed_{mode}") for line in lines), lines
    if mode == "float16":
        from tiny_data import event_tags

        tags = event_tags(run_dir)
        assert sorted(tags["d_loss_scale"]) == sorted(tags["g_loss_scale"]) == [1, 2, 3, 4]
        # The last snapshot's record carries the run's count of skipped steps, as TensorBoard shows it.
        import tensorflow as tf

        logged = {}
        for path in run_dir.glob("events.out.tfevents.*"):
            for event in tf.compat.v1.train.summary_iterator(str(path)):
                for value in event.summary.value:
                    if value.tag.endswith("skipped_steps"):
                        logged[event.step] = float(tf.make_ndarray(value.tensor))
        assert logged and json.loads((run_dir / "model_4.json").read_text())["skipped_steps"] == logged[4]
    models = load_generators(run_dir, dataset="birds")
    assert models.stage1_generator.compute_dtype == "float32"
    images, _ = models.generate(*(np.zeros((2, n), np.float32) for n in (16, 10, 8)))
    assert images.shape == (2, 64, 64, 3) and np.isfinite(images.numpy()).all()
