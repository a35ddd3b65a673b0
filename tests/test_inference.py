"""Tests of misc/generate/inference.py: finding and restoring snapshots for generation, the text encoder, noise."""
import os
import shutil

import numpy as np
import pytest

from misc.errors import CheckpointError
from misc.generate.inference import (
    TRUNCATION, encoder_dir, find_checkpoint, load_encoder, load_generators, truncated_normal,
)


def test_no_checkpoint_names_the_folder_and_the_command_to_run_first(tmp_path):
    with pytest.raises(CheckpointError) as err:
        find_checkpoint("shapes", tmp_path)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'shapes'}: no trained checkpoint")
    assert "`make train-stage1 DATASET=shapes` first" in message and "\n" not in message
    with pytest.raises(CheckpointError, match="make train-stage2 DATASET=birds"):
        load_generators(None, dataset="birds", output_dir=tmp_path, stage="stageII")


def test_a_run_folder_without_a_complete_snapshot_does_not_count(tmp_path):
    run = tmp_path / "shapes" / "stageI_2000_01_01_00_00_00"
    run.mkdir(parents=True)
    (run / "model_5.weights.h5").write_bytes(b"")  # no JSON record: an interrupted save
    with pytest.raises(CheckpointError, match="no trained checkpoint"):
        find_checkpoint("shapes", tmp_path)


def test_missing_text_encoder_names_the_folder_and_make_text_encoder(tmp_path):
    with pytest.raises(CheckpointError) as err:
        load_encoder("flowers", tmp_path)
    assert str(err.value) == (f"{tmp_path / 'flowers' / 'text_encoder'}: no trained text encoder (char_cnn_rnn.keras) "
                              "here; run `make text-encoder DATASET=flowers` first")
    assert encoder_dir("shapes") == encoder_dir("models/shapes/text_encoder")


def test_truncated_normal_is_bounded_and_seeded():
    a = truncated_normal(np.random.default_rng(3), (400, 50))
    b = truncated_normal(np.random.default_rng(3), (400, 50))
    assert a.dtype == np.float32 and np.abs(a).max() <= TRUNCATION
    np.testing.assert_array_equal(a, b)
    assert 0.85 < a.std() < 0.9  # the std of N(0, 1) truncated at 2 sigma is 0.880


def test_default_is_the_stage2_snapshot_with_both_generators(tiny_models):
    models = load_generators(None, dataset="birds", output_dir=tiny_models["output_dir"])
    assert models.stage == "stageII" and models.has_stage2 and models.image_size == 256
    assert models.checkpoint == tiny_models["stage2"] / "model_8.weights.h5" and models.iteration == 8
    assert (models.z_dim, models.ef_dim, models.text_dim, models.dataset) == (10, 8, 16, "birds")
    z, epsilon1, epsilon2 = models.sample_noise(3, seed=7)
    assert z.shape == (3, 10) and epsilon1.shape == epsilon2.shape == (3, 8)
    embeddings = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    low, high = models.generate(embeddings, z, epsilon1, epsilon2)
    assert low.shape == (3, 64, 64, 3) and high.shape == (3, 256, 256, 3)
    assert -1 <= float(np.min(high)) and float(np.max(high)) <= 1
    # Inference mode and injected noise: the same inputs give the same images.
    again = models.generate(embeddings, *models.sample_noise(3, seed=7))
    np.testing.assert_array_equal(np.asarray(high), np.asarray(again[1]))
    other = models.generate(embeddings, *models.sample_noise(3, seed=8))
    assert not np.array_equal(np.asarray(high), np.asarray(other[1]))
    with pytest.raises(ValueError, match="epsilon2"):
        models.generate(embeddings, z, epsilon1)


def test_stage_choices(tiny_models):
    stage1 = load_generators(None, dataset="birds", output_dir=tiny_models["output_dir"], stage="stageI")
    assert stage1.stage == "stageI" and not stage1.has_stage2 and stage1.image_size == 64
    assert stage1.sample_noise(2)[2] is None
    # The Stage-I generator inside a Stage-II snapshot.
    inner = load_generators(tiny_models["stage2"], stage="stageI")
    assert inner.stage == "stageII" and inner.stage2_generator is None
    with pytest.raises(CheckpointError, match="this is a stageI checkpoint, a stageII one is needed"):
        load_generators(tiny_models["stage1"], stage="stageII")
    with pytest.raises(CheckpointError, match="trained on birds, not on shapes"):
        load_generators(tiny_models["stage1"], dataset="shapes")


def test_a_snapshot_without_its_run_config_is_refused(tiny_models, tmp_path):
    run = tmp_path / "stageI_copy"
    shutil.copytree(tiny_models["stage1"], run)
    os.remove(run / "config.yml")
    with pytest.raises(CheckpointError, match="config.yml: the run's configuration is missing"):
        load_generators(run)


def test_load_encoder_from_the_models_folder(tiny_models):
    assert load_encoder("birds", tiny_models["models_dir"]).emb_dim == 16
    assert load_encoder(tiny_models["encoder"]).emb_dim == 16
