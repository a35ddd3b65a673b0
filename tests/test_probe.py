"""The linear probe of caption embeddings (misc/probe.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from misc import probe, shapes
from misc.pickle_io import dump_pickle
from misc.shapes import caption_attributes
from misc.text_encoder import load_captioned_split

SHAPES = list(shapes.SHAPES)


def _named(rng, n):
    """n caption records: every one names a shape, half of them a size."""
    return [{"shape": SHAPES[rng.integers(len(SHAPES))], **({"size": "small"} if i % 2 else {})}
            for i in range(n)]


def _encode(named, rng, dim=32, noise=0.1):
    """Embeddings whose first len(SHAPES) dimensions one-hot the shape, the rest noise."""
    x = rng.normal(0.0, noise, size=(len(named), dim))
    for i, record in enumerate(named):
        x[i, SHAPES.index(record["shape"])] += 1.0
    return x.astype(np.float32)


def test_probe_reads_an_encoded_attribute_and_not_a_missing_one():
    rng = np.random.default_rng(0)
    train, test = _named(rng, 300), _named(rng, 120)
    result = probe.attribute_probe(_encode(train, rng), train, _encode(test, rng), test,
                                   attributes=("shape", "size", "colour"))
    assert result["shape"]["train"] == 1.0 and result["shape"]["test"] == 1.0
    assert result["shape"]["classes"] == len(SHAPES)
    assert result["shape"]["train_captions"] == 300 and result["shape"]["test_captions"] == 120
    # One size value only: nothing to tell apart, so no accuracy.
    assert result["size"]["train"] is None and result["size"]["train_captions"] == 150
    # Never named.
    assert result["colour"]["train"] is None and result["colour"]["test_captions"] == 0


def test_probe_on_noise_is_near_the_majority_on_test():
    rng = np.random.default_rng(1)
    train, test = _named(rng, 600), _named(rng, 600)
    x_train = rng.normal(size=(600, 32)).astype(np.float32)
    x_test = rng.normal(size=(600, 32)).astype(np.float32)
    result = probe.attribute_probe(x_train, train, x_test, test, attributes=("shape",))
    assert result["shape"]["test"] < 0.3  # chance is 1/6
    assert 0.1 < result["shape"]["majority"] < 0.25


def test_fit_probe_is_least_squares_without_penalty():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 4))
    labels = ["a" if v > 0 else "b" for v in x[:, 0]]
    weights, classes = probe.fit_probe(x, labels, ridge=0.0)
    design = np.concatenate([x, np.ones((50, 1))], axis=1)
    targets = np.stack([[1.0 if l == c else 0.0 for c in classes] for l in labels])
    expected, *_ = np.linalg.lstsq(design, targets, rcond=None)
    np.testing.assert_allclose(weights, expected, atol=1e-8)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return shapes.generate_shapes(tmp_path_factory.mktemp("data") / "shapes", seed=0, per_class=2, progress=False)


def _write_shape_embeddings(data_dir, rng):
    """Embeddings pickles that encode each caption's shape (as `make text-encoder` would, ideally)."""
    for split in ("train", "test"):
        data = load_captioned_split(data_dir, split, with_images=False)
        named = [caption_attributes(c) for caps in data.captions for c in caps]
        x = _encode(named, rng).reshape(len(data), len(data.captions[0]), -1)
        dump_pickle(x, data_dir / split / "char-CNN-RNN-embeddings.pickle", protocol=2)


def test_cli_prints_the_table_and_writes_json(dataset, tmp_path, capsys):
    _write_shape_embeddings(dataset, np.random.default_rng(3))
    out = tmp_path / "probe.json"
    assert probe.main(["--data_dir", str(dataset), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split()[:3] == ["attribute", "train", "test"]
    result = json.loads(out.read_text())
    assert set(result) == {"shape", "colour", "background", "size", "position"}
    assert result["shape"]["test"] == 1.0  # the test classes' shapes were never seen with their colours
    assert result["shape"]["test_captions"] > 0


def test_cli_missing_embeddings_is_one_line(tmp_path, capsys):
    data_dir = shapes.generate_shapes(tmp_path / "shapes", seed=1, per_class=1, progress=False)
    with pytest.raises(SystemExit) as exit_info:
        probe.run_cli(probe.main, ["--data_dir", str(data_dir)])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "char-CNN-RNN-embeddings.pickle" in err and "make text-encoder" in err


def test_oracle_embeddings_hold_exactly_what_is_named():
    named = [{"shape": "star", "colour": "red"}, {"shape": "star"}, {"shape": "circle", "colour": "red"}, {}]
    x = probe.oracle_embeddings(named, dim=64)
    assert x.shape == (4, 64) and x.dtype == np.float32
    np.testing.assert_allclose(x[3], 0.0)  # names nothing
    np.testing.assert_allclose(x[0] - x[1], x[2] - probe.oracle_embeddings([{"shape": "circle"}], dim=64)[0],
                               atol=1e-6)  # "red" adds the same vector to any shape
    np.testing.assert_array_equal(x, probe.oracle_embeddings(named, dim=64))  # fixed projection


def test_write_oracle_makes_a_dataset_the_loader_reads_and_the_probe_reads_perfectly(dataset, tmp_path, capsys):
    from misc.datasets import load_split

    out = tmp_path / "oracle"
    assert probe.main(["--data_dir", str(dataset), "--write-oracle", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    assert (out / "train" / "76images.pickle").is_symlink() and (out / "text_c10").is_symlink()
    assert not (out / "train" / "char-CNN-RNN-embeddings.pickle").is_symlink()
    split = load_split(out, "train", 76, "cnn-rnn", 1024)  # the GAN's own loader
    assert split.embeddings.shape[1:] == (10, 1024)
    x_train, named_train = probe.load_named_embeddings(out, "train")
    x_test, named_test = probe.load_named_embeddings(out, "test")
    result = probe.attribute_probe(x_train, named_train, x_test, named_test)
    assert all(r["test"] == 1.0 for r in result.values() if r["test"] is not None)
    # Written again over itself: the links are replaced, nothing breaks.
    assert probe.main(["--data_dir", str(dataset), "--write-oracle", str(out)]) == 0


def test_write_oracle_blank_writes_zero_embeddings_the_loader_reads(dataset, tmp_path, capsys):
    from misc.datasets import load_split

    out = tmp_path / "blank"
    assert probe.main(["--data_dir", str(dataset), "--write-oracle", str(out), "--blank"]) == 0
    assert "TRAIN.B_WRONG=False" in capsys.readouterr().out
    split = load_split(out, "train", 76, "cnn-rnn", 1024)
    captions = load_captioned_split(dataset, "train", with_images=False)
    assert split.embeddings.shape == (len(captions.filenames), 10, 1024)
    assert not np.any(split.embeddings)
    assert (out / "test" / "char-CNN-RNN-embeddings.pickle").is_file()


@pytest.mark.parametrize("extra, named", [
    (["--blank"], "--write-oracle"),
    (["--seed", "1"], "--classify"),
    (["--steps", "10", "--write-oracle", "x"], "--classify"),
    (["--oracle"], "--discriminator"),
    (["--images", "8", "--classify", "shape"], "--discriminator"),
    (["--ridge", "2", "--classify", "shape"], "embedding probe"),
    (["--json", "x.json", "--write-oracle", "x"], "--discriminator"),
    (["--classify", "shape", "--discriminator", "run"], "choose one"),
    (["--gf-dim", "8", "--classify", "shape"], "--decode"),
    (["--grid", "x.png"], "--decode"),
    (["--decode", "--classify", "shape"], "choose one"),
])
def test_an_option_the_mode_would_ignore_is_one_line(dataset, tmp_path, monkeypatch, capsys, extra, named):
    monkeypatch.chdir(tmp_path)  # where a relative "x" would land if the command ran anyway
    with pytest.raises(SystemExit) as exit_info:
        probe.run_cli(probe.main, ["--data_dir", str(dataset)] + extra)
    assert exit_info.value.code != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err
    assert list(tmp_path.iterdir()) == []


def test_write_oracle_refuses_a_file_or_a_folder_of_other_files_and_touches_neither(dataset, tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine\n")
    folder = tmp_path / "results"
    (folder / "train").mkdir(parents=True)
    (folder / "README.md").write_text("mine\n")
    (folder / "train" / "filenames.pickle").write_text("mine\n")
    for out, says in ((a_file, "not a folder"), (folder, "holds files of its own")):
        with pytest.raises(SystemExit) as exit_info:
            probe.run_cli(probe.main, ["--data_dir", str(dataset), "--write-oracle", str(out)])
        assert exit_info.value.code != 0
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and says in err
    assert a_file.read_text() == "mine\n"
    assert (folder / "README.md").read_text() == "mine\n" and not (folder / "README.md").is_symlink()
    assert (folder / "train" / "filenames.pickle").read_text() == "mine\n"
    assert sorted(p.name for p in folder.rglob("*")) == ["README.md", "filenames.pickle", "train"]


def test_write_oracle_refuses_to_overwrite_the_dataset(dataset, capsys):
    with pytest.raises(SystemExit) as exit_info:
        probe.run_cli(probe.main, ["--data_dir", str(dataset), "--write-oracle", str(dataset)])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "folder of its own" in err


def test_full_caption_names_all_five_attributes_and_changed_record_changes_one():
    rng = np.random.default_rng(0)
    record = {"shape": "star", "colour": "red", "background": "blue", "size": "small", "position": "centre"}
    assert caption_attributes(probe.full_caption(record)) == record
    for name in probe.ATTRIBUTES:
        for _ in range(20):
            changed = probe.changed_record(record, name, rng)
            assert caption_attributes(probe.full_caption(changed)) == changed
            assert [k for k in record if changed[k] != record[k]] == [name]
            assert changed["colour"] != changed["background"]


def test_discriminator_probe_measures_what_the_discriminator_reads():
    """A discriminator that reads only the shape out of oracle embeddings drops only for the shape."""
    projection = np.concatenate([probe.oracle_embeddings([{name: value} for value in values])
                                 for name, values in probe.ATTRIBUTES.items()])  # (30, 1024)
    decode = np.linalg.pinv(projection)  # embeddings -> the one-hot codes
    records = [{"shape": SHAPES[i % 6], "colour": "red", "background": "blue", "size": "small",
                "position": "left"} for i in range(12)]
    images = np.zeros((12, 64, 64, 3), np.float32)
    true_shape = np.array([SHAPES.index(r["shape"]) for r in records])

    def discriminator(inputs, training):
        _, embeddings = inputs
        codes = embeddings @ decode
        return codes[np.arange(len(codes)), true_shape]  # 1 when the text names the image's shape, else 0

    def embed(captions):
        return probe.oracle_embeddings([caption_attributes(c) for c in captions])

    result = probe.discriminator_probe(discriminator, images, records, embed)
    assert result["true"] == pytest.approx(1.0, abs=1e-4) and result["shape"] == pytest.approx(1.0, abs=1e-4)
    assert all(abs(result[name]) < 1e-4 for name in ("colour", "background", "size", "position"))


def test_discriminator_cli_on_a_real_snapshot(dataset, tiny_models, tmp_path, capsys):
    out = tmp_path / "d.json"
    assert probe.main(["--discriminator", str(tiny_models["stage1"]), "--encoder", str(tiny_models["encoder"]),
                       "--data_dir", str(dataset), "--images", "8", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mean drop of the logit" in printed
    result = json.loads(out.read_text())
    assert set(result) == {"train", "test"} and set(result["train"]) == {"true", *probe.ATTRIBUTES}
    assert all(np.isfinite(v) for split in result.values() for v in split.values())
    with pytest.raises(SystemExit) as exit_info:
        probe.run_cli(probe.main, ["--discriminator", str(tiny_models["stage2"]), "--data_dir", str(dataset)])
    assert exit_info.value.code != 0
    assert "not a Stage-I snapshot" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        probe.run_cli(probe.main, ["--discriminator", str(tiny_models["stage1"]), "--data_dir", str(dataset),
                                   "--images", "0"])
    assert "at least 1 real image" in capsys.readouterr().err


def test_classify_learns_a_colour_and_writes_json(dataset, tmp_path, capsys):
    out = tmp_path / "classify.json"
    assert probe.main(["--data_dir", str(dataset), "--classify", "background", "--df-dim", "4",
                       "--paper-activations", "--steps", "200", "--seed", "3", "--json", str(out)]) == 0
    assert "chance 0.125" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["attribute"] == "background" and result["steps"] == 200 and result["paper_activations"]
    assert result["seed"] == 3
    assert result["train"] > 0.5  # eight colours: chance 0.125
    assert 0.0 <= result["test"] <= 1.0


def test_classify_bad_settings_are_one_line(dataset, capsys):
    with pytest.raises(SystemExit) as exit_info:
        probe.run_cli(probe.main, ["--data_dir", str(dataset), "--classify", "shape", "--steps", "0"])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--steps" in err


@pytest.fixture(scope="module")
def untrained_judge(tmp_path_factory):
    """An untrained tiny judge in the layout `train_judge` writes (enough to read outputs with)."""
    import keras

    from misc.judge import DONE_FILE, JUDGE_FILE, ShapesJudge

    judge = tmp_path_factory.mktemp("judge")
    keras.utils.set_random_seed(0)
    network = ShapesJudge(channels=4, feature_dim=16)
    network.build()
    network.save(judge / JUDGE_FILE)
    (judge / DONE_FILE).write_text("done\n")
    return judge


def test_decode_trains_the_generator_towards_the_images_and_writes_json_and_grid(dataset, untrained_judge,
                                                                                   tmp_path, capsys):
    first = probe.generator_decoder(dataset, gf_dim=2, steps=1, judge=untrained_judge)
    out, grid = tmp_path / "decode.json", tmp_path / "grid.png"
    assert probe.main(["--data_dir", str(dataset), "--decode", "--gf-dim", "2", "--steps", "60",
                       "--judge", str(untrained_judge), "--json", str(out), "--grid", str(grid)]) == 0
    printed = capsys.readouterr().out
    assert "GF_DIM 2" in printed and "after 60 steps" in printed
    result = json.loads(out.read_text())
    assert result["steps"] == 60 and result["gf_dim"] == 2
    assert result["l1"] < first["l1"]  # it learns to draw the images (a mean colour at least)
    for split in ("train", "test"):
        assert set(result[split]) == set(shapes.ATTRIBUTE_NAMES)
        assert all(0.0 <= v <= 1.0 for v in result[split].values())
    from PIL import Image
    assert Image.open(grid).size == (8 * 64, 8 * 64)


@pytest.mark.parametrize("extra, says", [
    (["--gf-dim", "0"], "--gf-dim"),
    (["--grid", "{tmp}"], "is a folder"),
    (["--grid", "{tmp}/a_file/grid.png"], "cannot make its folder"),
])
def test_decode_bad_settings_are_one_line_before_any_training(dataset, untrained_judge, tmp_path, capsys,
                                                               monkeypatch, extra, says):
    import stageI.model

    def no_training(*args, **kwargs):
        raise AssertionError("the generator was built before the settings were checked")

    monkeypatch.setattr(stageI.model, "StageIGenerator", no_training)
    (tmp_path / "a_file").write_text("mine\n")
    extra = [e.format(tmp=tmp_path) for e in extra]
    with pytest.raises(SystemExit) as exit_info:
        probe.run_cli(probe.main, ["--data_dir", str(dataset), "--decode", "--steps", "1",
                                   "--judge", str(untrained_judge)] + extra)
    assert exit_info.value.code != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
