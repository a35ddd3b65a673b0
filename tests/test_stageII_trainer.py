"""Tests of the Stage-II training wiring (`stageII/trainer.py`) at tiny widths, in-process."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from misc.config import load_config
from misc.errors import CheckpointError
from tiny_data import TINY

REPO = Path(__file__).resolve().parents[1]
CFG = REPO / "stageII" / "cfg" / "birds.yml"


def tiny_cfg(tmp_path, **extra):
    return load_config(CFG, overrides={**TINY, "OUTPUT_DIR": str(tmp_path / "out"), **extra})


def tiny_gan(cfg):
    from stageI.trainer import build_networks as build_stage1_networks
    from stageII import trainer

    stage1_generator, _ = build_stage1_networks(cfg)
    return trainer.build_gan(cfg, stage1_generator)


def values(variables):
    return [np.array(v.numpy()) for v in variables]


@pytest.fixture(scope="module")
def gan(tmp_path_factory):
    """One tiny `StageIIGAN` for the module (built once: building is the slow part)."""
    import keras

    keras.utils.set_random_seed(0)
    return tiny_gan(tiny_cfg(tmp_path_factory.mktemp("gan")))


def random_batch(cfg, seed=0):
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    b, s = cfg.TRAIN.BATCH_SIZE, 256
    images = rng.uniform(-1, 1, (b, s, s, 3)).astype(np.float32)
    wrong = rng.uniform(-1, 1, (b, s, s, 3)).astype(np.float32)
    embeddings = rng.normal(size=(b, cfg.TEXT.DIMENSION)).astype(np.float32)
    return tuple(tf.constant(x) for x in (images, wrong, embeddings))


def test_generate_shapes_and_noise(gan, tmp_path):
    import tensorflow as tf

    cfg = tiny_cfg(tmp_path)
    z, (eps1, eps2) = gan.sample_noise(3)
    assert z.shape == (3, cfg.Z_DIM) and eps1.shape == eps2.shape == (3, cfg.GAN.EMBEDDING_DIM)
    embedding = tf.zeros((3, cfg.TEXT.DIMENSION))
    lr, hr, mu, log_sigma = gan.generate_stages(embedding, z, (eps1, eps2), training=False)
    assert lr.shape == (3, 64, 64, 3) and hr.shape == (3, 256, 256, 3)
    # The KL is Stage-II's own CA: mu comes from the Stage-II generator.
    _, mu2, _ = gan.generator((lr, embedding, eps2), training=False)
    np.testing.assert_allclose(mu.numpy(), mu2.numpy())
    fake, _, _ = gan.generate(embedding, z, (eps1, eps2), training=False)
    np.testing.assert_allclose(fake.numpy(), hr.numpy())


def test_only_stage2_weights_move_and_stage1_uses_batch_statistics(gan, tmp_path):
    cfg = tiny_cfg(tmp_path)
    steps_before = int(gan.g_optimizer.iterations.numpy())
    stage1 = gan.stage1_generator
    assert not {id(v) for v in stage1.weights} & {id(v) for v in gan.g_variables + gan.d_variables}
    stage1_trainable = values(stage1.trainable_variables)
    moving = [v for v in stage1.non_trainable_variables if "moving_mean" in v.path]
    assert moving
    moving_before = values(moving)
    g_before, d_before = values(gan.generator.trainable_variables), values(gan.discriminator.trainable_variables)
    for step in range(2):
        logs = gan.train_step(random_batch(cfg, seed=step))
    assert all(np.isfinite(float(v)) for v in logs.values())
    for before, after in zip(stage1_trainable, values(stage1.trainable_variables)):
        assert np.array_equal(before, after)  # bit-identical: the Stage-I generator is frozen
    # Its BN ran in training mode (batch statistics), so its moving averages moved (original `stageII/trainer.py`).
    assert any(not np.array_equal(a, b) for a, b in zip(moving_before, values(moving)))
    assert all(not np.array_equal(a, b) for a, b in zip(g_before, values(gan.generator.trainable_variables))
               if a.size > 1)
    assert any(not np.array_equal(a, b) for a, b in zip(d_before, values(gan.discriminator.trainable_variables)))
    assert int(gan.g_optimizer.iterations.numpy()) == steps_before + 2


def test_checkpoint_holds_the_stage1_generator(gan, tmp_path):
    from misc.checkpoint import load_checkpoint, save_checkpoint

    cfg = tiny_cfg(tmp_path)
    gan.train_step(random_batch(cfg))
    gan.iteration_offset = 100
    iteration = gan.iteration
    path = save_checkpoint(gan, tmp_path, epoch=7, stage="stageII", dataset="birds")
    assert path.name == f"model_{iteration}.weights.h5"
    other = tiny_gan(cfg)
    record = load_checkpoint(other, path, stage="stageII", dataset="birds")
    assert record["iteration"] == iteration and other.iteration == iteration
    for a, b in zip(values(gan.stage1_generator.weights), values(other.stage1_generator.weights)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(values(gan.generator.weights), values(other.generator.weights)):
        np.testing.assert_array_equal(a, b)


def fake_snapshot(run_dir, iteration, mtime):
    run_dir.mkdir(parents=True, exist_ok=True)
    weights, record = run_dir / f"model_{iteration}.weights.h5", run_dir / f"model_{iteration}.json"
    weights.write_bytes(b"")
    record.write_text("{}")
    os.utime(weights, (mtime, mtime))
    return weights


def fake_record(weights, stage, dataset="birds", iteration=0, epoch=0):
    weights.with_name(weights.name.replace(".weights.h5", ".json")).write_text(json.dumps(
        {"iteration": iteration, "epoch": epoch, "optimizer_iterations": iteration, "stage": stage,
         "dataset": dataset}))


def test_a_new_run_starts_from_the_newest_stage1_checkpoint(tmp_path):
    from misc.runs import plan_start
    from stageII import STAGE

    cfg = tiny_cfg(tmp_path)
    root = tmp_path / "out" / "birds"
    fake_snapshot(root / "stageI_2024_01_01_00_00_00", 500, mtime=1_000)
    newest = fake_snapshot(root / "stageI_2024_01_02_00_00_00", 300, mtime=3_000)
    fake_snapshot(root / "stageI_2024_01_02_00_00_00", 200, mtime=2_000)
    fake_snapshot(root / "stageII_2024_01_03_00_00_00", 900, mtime=9_000)  # not Stage-I
    fake_snapshot(tmp_path / "out" / "flowers" / "stageI_2024_01_04_00_00_00", 900, mtime=9_000)  # other dataset
    (root / "stageI_2024_01_05_00_00_00").mkdir()  # a run without snapshots
    fake_record(newest, "stageI", iteration=300, epoch=3)
    start = plan_start(cfg, STAGE)
    assert start.snapshot == newest and start.iteration == 300 and not start.resume


def test_without_a_stage1_checkpoint_it_says_what_to_run(tmp_path):
    from misc.runs import plan_start
    from stageII import STAGE

    with pytest.raises(CheckpointError, match="run `make train-stage1` first") as err:
        plan_start(tiny_cfg(tmp_path), STAGE)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("resume, stage, dataset, message", [
    (False, "stageIII", "birds", "this is a stageIII checkpoint, expected stageI or stageII"),
    (True, "stageI", "birds", "this is a stageI checkpoint, expected stageII"),
    (False, "stageI", "flowers", "trained on flowers, not on birds"),
])
def test_a_checkpoint_of_another_stage_or_dataset_is_refused_before_loading(tmp_path, resume, stage, dataset,
                                                                            message):
    from misc.runs import plan_start
    from stageII import STAGE

    weights = fake_snapshot(tmp_path / "run", 4, mtime=1_000)
    fake_record(weights, stage, dataset)
    cfg = tiny_cfg(tmp_path, **({} if resume else {"TRAIN.PRETRAINED_MODEL": str(weights)}))
    with pytest.raises(CheckpointError, match=message):
        plan_start(cfg, STAGE, resume=str(weights) if resume else None)


def test_learning_rate_halves_only_above_the_pretrained_epoch(tmp_path):
    from types import SimpleNamespace

    from misc.gan import adam
    from misc.training import learning_rate_schedule
    from stageII import STAGE

    cfg = load_config(CFG)  # PRETRAINED_EPOCH 600, LR_DECAY_EPOCH 100 (original `stageII/trainer.py`)
    schedule = learning_rate_schedule(cfg, STAGE)
    model = SimpleNamespace(d_optimizer=adam(1.0), g_optimizer=adam(1.0))
    schedule.set_model(model)
    expected = {594: 2e-4, 600: 2e-4, 699: 2e-4, 700: 1e-4, 800: 5e-5, 1199: 6.25e-6}
    for epoch, rate in expected.items():
        schedule.on_epoch_begin(epoch)
        assert float(model.d_optimizer.learning_rate) == pytest.approx(rate)
        assert float(model.g_optimizer.learning_rate) == pytest.approx(rate)


@pytest.mark.parametrize("stage", ["stageI", "stageII"])
def test_train_refuses_evaluation_mode_and_names_the_sampler(stage):
    import importlib

    from misc.errors import ConfigError

    trainer = importlib.import_module(f"{stage}.trainer")
    cfg = load_config(Path(__file__).resolve().parents[1] / stage / "cfg" / "shapes.yml", {"TRAIN.FLAG": False})
    with pytest.raises(ConfigError, match=f"misc.generate.sampler.run_evaluation \\({stage}/run_exp.py runs it\\)"):
        trainer.train(cfg)


@pytest.mark.slow
def test_a_step_at_the_shapes_widths_is_reproducible(tmp_path):
    # At these widths (batch 16, 256 px) the D step's last kernels and the G step's first ones
    # used to overlap and round differently from run to run (2 cores: 14 of 16 repeats differed).
    import keras
    import tensorflow as tf

    cfg = load_config(REPO / "stageII" / "cfg" / "shapes.yml",
                      overrides={"OUTPUT_DIR": str(tmp_path), "TRAIN.BATCH_SIZE": 16})
    keras.utils.set_random_seed(0)
    gan = tiny_gan(cfg)
    state = gan.variables + gan.d_optimizer.variables + gan.g_optimizer.variables
    start = values(state)
    images, wrong, embedding = random_batch(cfg)
    step = {"iteration": tf.constant(5, tf.int64), "first_row": tf.constant(0, tf.int64)}
    train_step = tf.function(gan.train_step)
    ends = []
    for _ in range(6):
        for variable, value in zip(state, start):
            variable.assign(value)
        train_step((images, wrong, embedding, step))
        ends.append(values(state))
    for end in ends[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(ends[0], end))
