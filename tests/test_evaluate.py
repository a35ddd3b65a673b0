"""Tests of `misc/evaluation/evaluate.py`: sample names, score arithmetic, and the command end to end.

The end-to-end runs use a shapes dataset of 2 images per class and an untrained judge and text
and image encoders at tiny widths; the Inception plumbing runs on a stand-in
network (the real Inception-v3 takes about a second per image on a CPU: its own run is marked slow).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from misc.data import shapes
from misc.evaluation import evaluate
from misc.text.char_cnn_rnn import CharCnnRnn
from misc.cli import run_cli
from misc.errors import DataError
from misc.evaluation.evaluate import (
    EVAL_FILE, Sample, attribute_accuracy, find_samples, format_table, parse_sample_name, real_view,
)
from misc.evaluation.inception import IMAGE_SIZE, build_inception
from misc.evaluation.judge import ATTRIBUTES, DONE_FILE, JUDGE_FILE, OPTIONS_FILE, ShapesJudge
from misc.datasets import load_captioned_split
from misc.text.encoder import IMAGE_ENCODER_FILE, TEXT_ENCODER_FILE, ImageEncoder

CANDIDATES = 10  # the tiny test split has 24 images, fewer than AttnGAN's 100


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny shapes data, an untrained tiny judge, random tiny encoders; read-only."""
    root = tmp_path_factory.mktemp("evaluate")
    data_dir = shapes.generate_shapes(root / "shapes", seed=0, per_class=2, progress=False)
    # An untrained judge in the layout `train_judge` writes (training is tests/test_judge.py's job).
    keras.utils.set_random_seed(0)
    judge = root / "judge"
    judge.mkdir()
    network = ShapesJudge(channels=4, feature_dim=16)
    network.build()
    network.save(judge / JUDGE_FILE)
    (judge / DONE_FILE).write_text("done\n")
    encoder = root / "encoder"
    encoder.mkdir()
    keras.utils.set_random_seed(0)
    text_encoder = CharCnnRnn(conv_channels=(8, 8, 8), rnn_dim=8, emb_dim=16)
    image_encoder = ImageEncoder(channels=4, emb_dim=16)
    text_encoder.build()
    image_encoder.build()
    text_encoder.save(encoder / TEXT_ENCODER_FILE)
    image_encoder.save(encoder / IMAGE_ENCODER_FILE)
    return data_dir, judge, encoder


def _write_samples(folder: Path, data_dir: Path, captions=(0, 3), noise: bool = False, side: int = 64) -> Path:
    """PNG files named as the sampler does, one per test image and caption: the real centre crop
    (the ceiling) or uniform noise."""
    data = load_captioned_split(data_dir, "test")
    rng = np.random.default_rng(1)
    for name, image in zip(data.filenames, data.images):
        for c in captions:
            path = folder / f"{name}_c{c}_s0.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = (rng.integers(0, 256, (side, side, 3), dtype=np.uint8) if noise
                      else image[6:70, 6:70])
            Image.fromarray(pixels).save(path)
    return folder


def _args(setup, images, *extra) -> list[str]:
    data_dir, judge, encoder = setup
    return ["--images", str(images), "--data_dir", str(data_dir), "--judge", str(judge), "--encoder",
            str(encoder), "--candidates", str(CANDIDATES), "--quiet", *extra]


def _one_line_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as info:
        run_cli(evaluate.main, argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


# --- names -------------------------------------------------------------------------------------

def test_parse_sample_name(tmp_path):
    path = tmp_path / "001.red_circle" / "red_circle_0001_c3_s12.png"
    assert parse_sample_name(path, tmp_path) == ("001.red_circle/red_circle_0001", 3, 12)
    # CUB keys end in digits and underscores too; only the last _c<i>_s<j> is the suffix.
    assert parse_sample_name(tmp_path / "a_c1_s2_c0_s7.PNG", tmp_path) == ("a_c1_s2", 0, 7)
    for bad in ("red_circle_0001.png", "red_circle_0001_c3.png", "x_c3_sA.png", "x_c_s1.png", "x_c1_s1.jpg"):
        with pytest.raises(DataError, match="not a sample name") as info:
            parse_sample_name(tmp_path / "001.red_circle" / bad, tmp_path)
        assert str(tmp_path / "001.red_circle" / bad) in str(info.value)
        assert "<filename>_c<caption index>_s<sample index>.png" in str(info.value)


def test_find_samples_matches_sources(tmp_path):
    names = ["001.red_circle/red_circle_0001", "002.orange_circle/orange_circle_0001"]
    for relative in ("test/001.red_circle/red_circle_0001_c2_s0.png",  # nested under the sampler's folder
                     "002.orange_circle/orange_circle_0001_c0_s1.png",
                     ".partial/001.red_circle/red_circle_0001_c9_s9.png",  # hidden: skipped
                     "eval.json", "grid.jpg"):  # not PNG: skipped
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"")
    samples = find_samples(tmp_path, names)
    assert samples == [
        Sample(tmp_path / "002.orange_circle/orange_circle_0001_c0_s1.png", names[1], 1, 0, 1),
        Sample(tmp_path / "test/001.red_circle/red_circle_0001_c2_s0.png", names[0], 0, 2, 0)]


def test_find_samples_errors(tmp_path):
    with pytest.raises(DataError, match="images folder not found"):
        find_samples(tmp_path / "none", [])
    with pytest.raises(DataError, match="no PNG images in it"):
        find_samples(tmp_path, [])
    stray = tmp_path / "009.red_square" / "red_square_0001_c0_s0.png"
    stray.parent.mkdir()
    stray.write_bytes(b"")
    with pytest.raises(DataError, match="is not in test/filenames.pickle") as info:
        find_samples(tmp_path, ["001.red_circle/red_circle_0001"], where="test/filenames.pickle")
    assert str(stray) in str(info.value) and "--split" in str(info.value)


# --- arithmetic --------------------------------------------------------------------------------

def test_attribute_accuracy_hand_computed():
    named = [{"shape": "star", "colour": "red"},
             {"shape": "circle", "size": "large", "position": "left"},
             {"shape": "star", "colour": "blue", "size": "small"},
             {"shape": "cross"}]
    predicted = {"shape": ["star", "square", "star", "cross"],
                 "colour": ["red", "red", "green", "white"],
                 "background": ["black"] * 4,
                 "size": ["small", "large", "small", "large"],
                 "position": ["top", "right", "top", "top"]}
    result = attribute_accuracy(predicted, named)
    assert result["shape"] == {"correct": 3, "count": 4, "accuracy": 0.75}
    assert result["colour"] == {"correct": 1, "count": 2, "accuracy": 0.5}
    assert result["background"] == {"correct": 0, "count": 0, "accuracy": None}
    assert result["size"] == {"correct": 2, "count": 2, "accuracy": 1.0}
    assert result["position"] == {"correct": 0, "count": 1, "accuracy": 0.0}
    # Every named attribute right: image 0 (star, red) and image 3 (cross); not 1 (shape) or 2 (colour).
    assert result["all_named"] == {"correct": 2, "count": 4, "accuracy": 0.5}
    with pytest.raises(ValueError, match="shape"):
        attribute_accuracy({"shape": ["star"]}, named)


def test_real_view_crops_like_the_gan(setup):
    data_dir = setup[0]
    images76 = load_captioned_split(data_dir, "test").images
    np.testing.assert_array_equal(real_view(images76, data_dir, "test", 64), images76[:, 6:70, 6:70])
    stage2 = real_view(images76, data_dir, "test", 256)  # the centre 256 of the 304 images
    assert stage2.shape == (24, 256, 256, 3) and stage2.dtype == np.uint8
    assert real_view(images76, data_dir, "test", 128).shape == (24, 128, 128, 3)


# --- the command ---------------------------------------------------------------------------------

def test_real_images_score_as_their_own_ceiling(setup, tmp_path, capsys):
    images = _write_samples(tmp_path / "real", setup[0])
    assert evaluate.main(_args(setup, images)) == 0
    out, err = capsys.readouterr()
    assert "note:" not in err  # a judge without train_options.json is not called stale
    result = json.loads((images / EVAL_FILE).read_text())
    assert (result["samples"], result["captions"], result["source_images"], result["split_images"]) == (48, 48, 24, 24)
    assert result["split"] == "test" and result["seed"] == 0 and result["image_size"] == 64
    assert result["weights"]["judge"] == str(setup[1] / JUDGE_FILE) and result["weights"]["inception"] is None
    judge = result["judge"]
    assert judge["generated"] == judge["real"]  # the images are the real ones
    assert set(judge["generated"]) == set(ATTRIBUTES) | {"all_named"}
    assert judge["generated"]["shape"]["count"] == 48  # every caption names the shape
    assert judge["frechet_distance"] >= 0.0 and judge["reference_images"] == 24
    rp = result["r_precision"]
    assert rp["generated"] == rp["real"] and rp["candidates"] == CANDIDATES and rp["chance"] == 0.1
    assert "skipped" in result["inception"]
    assert result["diversity"]["generated"] is None  # one sample per caption: nothing to compare
    for text in ("48 generated images (64x64)", "of split 'test'", "seed 0", "R-precision (1 of 10", "skipped",
                 str(setup[1] / JUDGE_FILE), f"wrote {images / EVAL_FILE}"):
        assert text in out, text


def test_a_judge_trained_without_blur_is_noted(setup, tmp_path, capsys):
    data_dir, judge, encoder = setup
    old = tmp_path / "old_judge"
    shutil.copytree(judge, old)
    (old / OPTIONS_FILE).write_text(json.dumps({"epochs": 30, "steps": 690, "seed": 0}))
    images = _write_samples(tmp_path / "real", data_dir)
    assert evaluate.main(_args(setup, images, "--judge", str(old))) == 0
    err = capsys.readouterr().err
    assert f"note: {old / OPTIONS_FILE}: this judge was trained without blurred crops" in err
    training = json.loads((images / EVAL_FILE).read_text())["weights"]["judge_training"]
    assert training["epochs"] == 30 and training["blur_probability"] is None
    # The same judge named by its .keras file: the file is recorded as is, and its folder's
    # settings and note still apply.
    assert evaluate.main(_args(setup, images, "--judge", str(old / JUDGE_FILE))) == 0
    assert f"note: {old / OPTIONS_FILE}: this judge" in capsys.readouterr().err
    weights = json.loads((images / EVAL_FILE).read_text())["weights"]
    assert weights["judge"] == str(old / JUDGE_FILE) and weights["judge_training"]["epochs"] == 30


def test_noise_is_further_from_real_images_than_real_images(setup, tmp_path, capsys):
    real = _write_samples(tmp_path / "real", setup[0])
    noise = _write_samples(tmp_path / "noise", setup[0], noise=True)
    evaluate.main(_args(setup, real, "--out", str(tmp_path / "real.json")))
    evaluate.main(_args(setup, noise, "--out", str(tmp_path / "noise.json")))
    capsys.readouterr()
    real_fd = json.loads((tmp_path / "real.json").read_text())["judge"]["frechet_distance"]
    noise_fd = json.loads((tmp_path / "noise.json").read_text())["judge"]["frechet_distance"]
    assert 0.0 <= real_fd < noise_fd
    assert not (noise / EVAL_FILE).exists()


def test_inception_scores_with_a_stand_in_network(setup, tmp_path, capsys, monkeypatch):
    """IS and FID plumbing, with a small network in place of Inception-v3 (same inputs and outputs)."""
    built = {}

    def stand_in(weights_path, variant, num_classes):
        built.update(path=weights_path, variant=variant, classes=num_classes)
        inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
        pool = keras.layers.Dense(6)(keras.layers.GlobalAveragePooling2D()(keras.layers.AveragePooling2D(13)(inputs)))
        model = keras.Model(inputs, {"pool": pool, "logits": keras.layers.Dense(5)(pool)})
        model.inception_variant = variant
        return model

    monkeypatch.setattr(evaluate, "build_inception", stand_in)
    images = _write_samples(tmp_path / "big", setup[0], captions=(0,), noise=True, side=128)
    evaluate.main(_args(setup, images, "--inception-weights", "w.weights.h5", "--inception-variant", "slim"))
    out = capsys.readouterr().out
    assert built == {"path": "w.weights.h5", "variant": "slim", "classes": None}
    result = json.loads((images / EVAL_FILE).read_text())
    assert result["image_size"] == 128 and result["samples"] == 24
    inception = result["inception"]
    assert inception["fid"] > 0 and inception["reference_images"] == 24
    generated = inception["inception_score"]["generated"]
    # Fewer than 64 images: all are kept (the original's floor(N / 64) batches would keep none).
    assert generated["images"] == 24 and generated["dropped"] == 0 and generated["splits"] == 10
    assert 1.0 <= generated["mean"] <= 5.0
    assert result["weights"]["inception_variant"] == "slim" and "half-pixel" in result["weights"]["inception_resize"]
    assert "Inception Score (10 splits)" in out and "FID" in out
    assert "Inception Score (10 splits)" in format_table(result)


def test_missing_or_corrupt_weights_are_one_line_errors(setup, tmp_path, capsys):
    images = _write_samples(tmp_path / "real", setup[0], captions=(0,))
    err = _one_line_error(capsys, _args(setup, images, "--inception-weights", str(tmp_path / "none.weights.h5")))
    assert "Inception weights file not found" in err and "docs/evaluation.md" in err
    corrupt = tmp_path / "bad.weights.h5"
    corrupt.write_bytes(b"garbage")
    err = _one_line_error(capsys, _args(setup, images, "--inception-weights", str(corrupt)))
    assert "not an HDF5 weights file" in err
    damaged = tmp_path / "judge"
    damaged.mkdir()
    (damaged / JUDGE_FILE).write_bytes(b"not a zip archive")
    (damaged / "DONE").write_text("x\n")
    err = _one_line_error(capsys, _args(setup, images) + ["--judge", str(damaged)])
    assert "cannot load the judge" in err and str(damaged / JUDGE_FILE) in err
    err = _one_line_error(capsys, _args(setup, images) + ["--judge", str(tmp_path / "nojudge")])
    assert "no trained judge here" in err and "make judge" in err
    err = _one_line_error(capsys, _args(setup, images) + ["--encoder", str(tmp_path / "noencoder")])
    assert "text encoder" in err
    assert not (images / EVAL_FILE).exists()


def test_bad_sample_folders_are_one_line_errors(setup, tmp_path, capsys):
    images = _write_samples(tmp_path / "real", setup[0], captions=(0,))
    first = sorted(images.rglob("*.png"))[0]
    high = first.with_name(first.name.replace("_c0_", "_c10_"))
    first.rename(high)
    err = _one_line_error(capsys, _args(setup, images))
    assert str(high) in err and "caption index 10" in err and "has 10 captions" in err
    high.unlink()
    bad = images / "001.red_circle" / "oops.png"
    bad.parent.mkdir(exist_ok=True)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(bad)
    err = _one_line_error(capsys, _args(setup, images))
    assert str(bad) in err and "not a sample name" in err
    bad.unlink()
    second = sorted(images.rglob("*.png"))[1]
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(second)
    err = _one_line_error(capsys, _args(setup, images))
    assert str(second) in err and "one size" in err
    second.write_bytes(b"not a png")
    err = _one_line_error(capsys, _args(setup, images))
    assert str(second) in err and "not a readable image" in err
    err = _one_line_error(capsys, _args(setup, images) + ["--candidates", "100"])
    assert "has only 24 images" in err and "--candidates 24" in err


@pytest.mark.slow
def test_end_to_end_with_a_real_inception_network(setup, tmp_path, capsys):
    """The real Inception-v3 architecture (random weights from a saved file) on 12 samples."""
    weights = tmp_path / "inception.weights.h5"
    build_inception().save_weights(weights)
    images = _write_samples(tmp_path / "real", setup[0], captions=(0,))
    for path in sorted(images.rglob("*.png"))[12:]:
        path.unlink()
    evaluate.main(_args(setup, images, "--inception-weights", str(weights)))
    result = json.loads((images / EVAL_FILE).read_text())
    assert result["samples"] == 12 and result["weights"]["inception_variant"] == "tf2015"
    assert result["inception"]["fid"] >= 0 and result["inception"]["inception_score"]["generated"]["images"] == 12
    assert "FID" in capsys.readouterr().out
