"""Tests of `misc/evaluation/judge.py`: the caption reader, the judge network, its training, saving and loading."""
from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from misc.evaluation import judge as judge_module
from misc.data import shapes
from misc.cli import run_cli
from misc.errors import CheckpointError, DataError
from misc.evaluation.judge import (
    ATTRIBUTES, DONE_FILE, JUDGE_FILE, OPTIONS_FILE, ShapesJudge, attribute_labels,
    fit_to_input, judge_images, judge_training, load_judge, read_attributes, recolour, stale_judge_note,
    train_judge,
)
from misc.datasets import images_to_float, load_captioned_split

HEAD_SIZES = {"shape": 6, "colour": 8, "background": 8, "size": 3, "position": 5}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A shapes dataset of 2 images per class (72 train, 24 test); read-only."""
    return shapes.generate_shapes(tmp_path_factory.mktemp("data") / "shapes", seed=0, per_class=2, progress=False)


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    """A judge trained for 2 steps of 32 images."""
    out = tmp_path_factory.mktemp("judge") / "judge"
    summary = train_judge(dataset, out, epochs=1, batch_size=32, max_steps=2, seed=0, progress=False)
    return out, summary


# --- data --------------------------------------------------------------------------------------

def test_judge_heads_are_the_attributes_captions_name():
    # Scores compare a head's reading with what `shapes.caption_attributes` says the caption names.
    assert tuple(ATTRIBUTES) == shapes.ATTRIBUTE_NAMES
    assert {name: len(values) for name, values in ATTRIBUTES.items()} == HEAD_SIZES


def test_read_attributes_and_labels(dataset):
    data = load_captioned_split(dataset, "test", with_images=False)
    records = read_attributes(dataset, "test", list(reversed(data.filenames)))
    assert [r["filename"] for r in records] == list(reversed(data.filenames))
    labels = attribute_labels(records)
    assert labels.shape == (24, 5) and labels.dtype == np.int32
    assert [ATTRIBUTES[name][labels[0, k]] for k, name in enumerate(ATTRIBUTES)] == [
        records[0][name] for name in ATTRIBUTES]


def test_read_attributes_errors(dataset, tmp_path):
    with pytest.raises(DataError, match="attributes.json: file not found"):
        read_attributes(tmp_path, "test", [])
    with pytest.raises(DataError, match="has no record of image 'nope'"):
        read_attributes(dataset, "test", ["nope"])
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "attributes.json").write_text('[{"filename": "a", "shape": "blob"}]')
    with pytest.raises(DataError, match="image 'a' has shape 'blob'"):
        read_attributes(tmp_path, "test", ["a"])
    (tmp_path / "test" / "attributes.json").write_text("{not json")
    with pytest.raises(DataError, match="not readable JSON"):
        read_attributes(tmp_path, "test", ["a"])


def test_recolour_repaints_like_the_generator():
    """A repainted image matches the image drawn in the new colours with the same noise."""
    rng = np.random.default_rng(3)
    for k in range(12):
        attrs = shapes.sample_attributes(shapes.SHAPES[k % 6], list(shapes.PALETTE)[k % 8], rng)
        # Drawn at 304 and bicubic-resized to 76, as the dataset's 76x76 images.
        image = shapes.downsample(shapes.render_image(attrs, rng=np.random.default_rng(k)))
        (painted,), (record,) = recolour(image[None], [attrs], np.random.default_rng(k), probability=1.0)
        assert record["colour"] != record["background"] and (record["shape"], record["size"]) == (
            attrs["shape"], attrs["size"])
        expected = shapes.downsample(shapes.render_image(record, rng=np.random.default_rng(k)))  # same noise
        diff = np.abs(painted.astype(int) - expected.astype(int))
        # Equal but where the noise was clipped at 0 or 255 (white and black backgrounds), and for
        # the few edge pixels whose coverage is under the background threshold.
        unclipped = np.all((image > 0) & (image < 255) & (expected > 0) & (expected < 255), axis=-1)
        assert unclipped.mean() > 0.5 and diff[unclipped].mean() < 1.0, (attrs, record)
        assert np.percentile(diff[unclipped], 99) <= 8, (attrs, record)
    kept, records = recolour(image[None], [attrs], rng, probability=0.0)
    assert np.array_equal(kept[0], image) and records == [attrs]


def test_blur_softens_edges_and_keeps_colours():
    rng = np.random.default_rng(0)
    attrs = {**shapes.sample_attributes("star", "red", rng), "size": "large", "position": "centre",
             "center": [0.5, 0.5], "extent": shapes.SIZES["large"]}
    image = shapes.downsample(shapes.render_image(attrs, rng=rng))[6:70, 6:70]
    images = np.stack([image, image])
    kept = judge_module.blur(images, np.random.default_rng(1), probability=0.0)
    assert np.array_equal(kept, images)
    soft = judge_module.blur(images, np.random.default_rng(1), probability=1.0, sigma=(1.5, 1.5))
    assert soft.dtype == np.uint8 and soft.shape == images.shape
    steps = lambda x: np.abs(np.diff(x.astype(int), axis=1)).max()  # the sharpest horizontal edge
    assert steps(soft[0]) < 0.6 * steps(image)
    assert np.abs(soft[0].reshape(-1, 3).mean(0) - image.reshape(-1, 3).mean(0)).max() < 2.0
    assert np.abs(soft[0, 32, 32].astype(int) - shapes.PALETTE["red"]).max() <= 2  # inside the star
    assert np.array_equal(images[0], image)  # the input is not changed


def test_fit_to_input():
    image = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    assert fit_to_input(image).shape == (64, 64, 3) and fit_to_input(image).dtype == np.uint8
    assert fit_to_input(image[:64, :64]) is not None and np.array_equal(fit_to_input(image[:64, :64]), image[:64, :64])


# --- network -----------------------------------------------------------------------------------

def test_output_shapes_and_config_round_trip():
    keras.utils.set_random_seed(0)
    judge = ShapesJudge(channels=4, feature_dim=16)
    judge.build()
    x = np.random.default_rng(0).uniform(-1, 1, (3, 64, 64, 3)).astype(np.float32)
    out = judge(x)
    assert out["features"].shape == (3, 16)
    assert {name: out[name].shape for name in ATTRIBUTES} == {name: (3, n) for name, n in HEAD_SIZES.items()}
    clone = ShapesJudge.from_config(judge.get_config())
    clone.build()
    clone.set_weights(judge.get_weights())
    np.testing.assert_allclose(clone(x)["position"], out["position"], rtol=1e-6)
    # 4 convolutions (4, 8, 16, 32 channels, no bias), 4 batch norms (2 trainable vectors each), the
    # feature layer on the flattened 4 x 4 x 32 map, and the 6 + 8 + 8 + 3 + 5 = 30 head logits.
    convs = 3 * 3 * (3 * 4 + 4 * 8 + 8 * 16 + 16 * 32)
    assert sum(int(np.prod(w.shape)) for w in judge.trainable_weights) == (
        convs + 2 * (4 + 8 + 16 + 32) + (4 * 4 * 32 * 16 + 16) + (16 * 30 + 30))


def test_one_step_lowers_the_loss():
    keras.utils.set_random_seed(0)
    judge = ShapesJudge(channels=4, feature_dim=16)
    judge.build()
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(judge.trainable_variables)
    step = judge_module._make_train_step(judge, optimizer)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (8, 64, 64, 3)).astype(np.float32)
    labels = np.stack([rng.integers(0, n, 8) for n in HEAD_SIZES.values()], axis=1).astype(np.int32)
    before = float(step.python_function(x, labels))  # eagerly: no tracing time
    after = float(step.python_function(x, labels))
    assert after < before


# --- training, saving, loading -------------------------------------------------------------------

def test_train_writes_judge_options_and_done(trained):
    out, summary = trained
    assert (out / JUDGE_FILE).is_file() and (out / DONE_FILE).is_file()
    assert (out / DONE_FILE).stat().st_mtime >= (out / JUDGE_FILE).stat().st_mtime
    options = json.loads((out / OPTIONS_FILE).read_text())
    assert options == summary
    assert options["steps"] == 2 and options["train_images"] == 72 and options["batch_size"] == 32
    assert [h["step"] for h in options["loss_history"]] == [2]
    for split, n in (("train", 72), ("test", 24)):
        assert options["accuracy"][split]["images"] == n
        assert all(0.0 <= options["accuracy"][split][name] <= 1.0 for name in ATTRIBUTES)


def test_default_judge_blurs_and_an_unblurred_one_is_noted(trained, tmp_path):
    out, summary = trained
    # The defaults: half the crops blurred, sigma 0.3-1.5 px, 60 epochs (docs/shapes_investigation.md,
    # "A judge that reads generated shapes better").
    assert (summary["blur_probability"], summary["blur_sigma"]) == (0.5, [0.3, 1.5])
    assert judge_module.DEFAULT_EPOCHS == 60
    assert stale_judge_note(out) is None
    assert judge_training(out)["blur_probability"] == 0.5 and judge_training(out)["steps"] == 2
    old = tmp_path / "old_judge"
    old.mkdir()
    options = {key: value for key, value in summary.items() if not key.startswith("blur")}
    (old / OPTIONS_FILE).write_text(json.dumps(options))  # as the judge before blur wrote it
    note = stale_judge_note(old)
    assert note.startswith(f"note: {old / OPTIONS_FILE}: this judge was trained without blurred crops")
    assert f"python -m misc.evaluation.judge --data_dir DATA_DIR --out {old}`" in note and "\n" not in note
    assert stale_judge_note(tmp_path / "missing") is None and judge_training(tmp_path / "missing") is None


def test_saved_judge_loads_and_reads_images(trained, dataset):
    out, _ = trained
    judge = load_judge(out)
    same = load_judge(out / JUDGE_FILE)
    images = load_captioned_split(dataset, "test").images[:5, 6:70, 6:70]
    features, predicted = judge_images(judge, images, batch_size=2)
    assert features.shape == (5, judge.feature_dim) and features.dtype == np.float32
    assert set(predicted) == set(ATTRIBUTES)
    for name, values in predicted.items():
        assert values.shape == (5,) and set(values) <= set(ATTRIBUTES[name])
    np.testing.assert_allclose(same(images_to_float(images))["features"], features, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        judge_images(judge, images.astype(np.float32))


def test_missing_and_damaged_judge_are_one_line_errors(trained, tmp_path):
    with pytest.raises(CheckpointError, match="no trained judge here") as info:
        load_judge(tmp_path / "nothing")
    assert "make judge" in str(info.value) and "\n" not in str(info.value)
    damaged = tmp_path / "judge"
    damaged.mkdir()
    (damaged / JUDGE_FILE).write_bytes(b"not a zip archive")
    (damaged / DONE_FILE).write_text("done\n")
    with pytest.raises(CheckpointError, match="cannot load the judge") as info:
        load_judge(damaged)
    assert str(damaged / JUDGE_FILE) in str(info.value) and "\n" not in str(info.value)


def test_cli_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        run_cli(judge_module.main, ["--data_dir", str(tmp_path / "none"), "--out", str(tmp_path / "j")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "dataset folder not found" in err
    with pytest.raises(SystemExit) as info:
        run_cli(judge_module.main, ["--data_dir", str(tmp_path), "--epochs", "0"])
    assert info.value.code == 2 and "must be positive" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        run_cli(judge_module.main, ["--data_dir", str(tmp_path), "--blur-probability", "1.5"])
    assert info.value.code == 2 and "--blur-probability must lie in [0, 1]" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        run_cli(judge_module.main, ["--data_dir", str(tmp_path), "--blur-sigma", "2", "1"])
    assert info.value.code == 2 and "--blur-sigma needs 0 < LOW <= HIGH" in capsys.readouterr().err
