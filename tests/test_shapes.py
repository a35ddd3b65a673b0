"""Tests of `misc/data/shapes.py`: the synthetic shapes dataset in the original data layout."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from misc.data import shapes
from misc.datasets import load_split
from misc.errors import ConfigError, DataError
from misc.pickle_io import dump_pickle, load_pickle

REPO = Path(__file__).resolve().parent.parent
PER_CLASS = 2  # 96 images: a few seconds per dataset
SPLITS = ("train", "test")
PICKLES = ("filenames.pickle", "class_info.pickle", "304images.pickle", "76images.pickle")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A small shapes dataset, seed 0; read-only."""
    return shapes.generate_shapes(tmp_path_factory.mktemp("a") / "shapes", seed=0, per_class=PER_CLASS,
                                  progress=False)


def _records(root: Path, split: str) -> list[dict]:
    return json.loads((root / split / "attributes.json").read_text())


def _captions(root: Path, filename: str) -> list[str]:
    return (root / "text_c10" / f"{filename}.txt").read_text().splitlines()


def _check_captions(attrs: dict, captions: list[str]) -> None:
    assert len(captions) == shapes.CAPTIONS_PER_IMAGE
    mentioned = []
    for caption in captions:
        assert 0 < len(caption) <= shapes.MAX_CAPTION_CHARS, caption
        assert caption[0].isupper() and caption.endswith("."), caption
        # Only characters of the char-CNN-RNN alphabet (after lower-casing) (reedscot/cvpr2016 `util.lua`).
        assert re.fullmatch(r"[A-Za-z ,.'-]+", caption), caption
        named = shapes.caption_attributes(caption)  # raises if two values of one attribute are named
        assert named.get("shape") == attrs["shape"], caption
        for key, value in named.items():
            assert value == attrs[key], (key, attrs, caption)
        mentioned.append(frozenset(named) - {"shape"})
    assert len(set(mentioned)) == len(captions), ("captions mention repeated subsets", captions)
    assert any("colour" in m for m in mentioned)


def test_writes_original_layout(dataset):
    assert shapes.is_complete(dataset)
    manifest = json.loads((dataset / shapes.MANIFEST).read_text())
    assert manifest["seed"] == 0 and manifest["per_class"] == PER_CLASS
    assert manifest["num_images"] == {"train": 36 * PER_CLASS, "test": 12 * PER_CLASS}
    assert manifest["palette"] == {k: list(v) for k, v in shapes.PALETTE.items()}
    assert (dataset / "README.md").read_text().count("(230, 25, 35)") == 1
    assert len((dataset / "example_captions.txt").read_text().splitlines()) == 12
    for split in SPLITS:
        filenames = load_pickle(dataset / split / "filenames.pickle")
        class_ids = load_pickle(dataset / split / "class_info.pickle")
        high = load_pickle(dataset / split / "304images.pickle")
        low = load_pickle(dataset / split / "76images.pickle")
        records = _records(dataset, split)
        n = manifest["num_images"][split]
        assert len(filenames) == len(class_ids) == len(high) == len(low) == len(records) == n
        assert all(type(c) is int for c in class_ids) and class_ids == sorted(class_ids)
        for k, name in enumerate(filenames):
            cls_dir, image_name = name.split("/")
            assert re.fullmatch(r"\d{3}\.[a-z]+_[a-z]+", cls_dir) and int(cls_dir[:3]) == class_ids[k]
            assert image_name.startswith(cls_dir[4:] + "_")
            assert (dataset / "images" / f"{name}.jpg").is_file()
            assert len(_captions(dataset, name)) == 10
            assert records[k]["filename"] == name and records[k]["class_id"] == class_ids[k]
            assert high[k].dtype == np.uint8 and high[k].shape == (304, 304, 3)
            assert low[k].dtype == np.uint8 and low[k].shape == (76, 76, 3)
        np.testing.assert_array_equal(low[0], shapes.downsample(high[0]))
        with Image.open(dataset / "images" / f"{filenames[0]}.jpg") as jpeg:
            assert jpeg.size == (304, 304)
            # JPEG keeps the picture but not the exact per-pixel colour noise: compare 8x8 block means.
            blocks = (np.asarray(jpeg, np.float32) - high[0]).reshape(38, 8, 38, 8, 3).mean(axis=(1, 3))
            assert np.abs(blocks).max() < 6.0
    with open(dataset / "train" / "filenames.pickle", "rb") as f:
        assert f.read(2) == b"\x80\x02"  # pickle protocol 2, as the original's files
    with open(dataset / "train" / "304images.pickle", "rb") as f:
        assert f.read(2) == b"\x80\x04"  # image lists: protocol 4 (raw NumPy buffers)


def test_existing_loader_reads_it(dataset, tmp_path):
    root = tmp_path / "shapes"
    shutil.copytree(dataset, root)
    for split in SPLITS:
        n = len(load_pickle(root / split / "filenames.pickle"))
        fake = np.random.default_rng(0).standard_normal((n, 10, 16)).astype(np.float32)
        dump_pickle(fake, root / split / "char-CNN-RNN-embeddings.pickle")
        for size in (76, 304):
            data = load_split(root, split, size, text_dim=16)
            assert data.images.shape == (n, size, size, 3) and data.embeddings.shape == (n, 10, 16)
            assert data.filenames == load_pickle(root / split / "filenames.pickle")
        assert data.captions(3) == _captions(root, data.filenames[3])
        np.testing.assert_array_equal(data.class_ids, load_pickle(root / split / "class_info.pickle"))
    assert shapes.is_complete(root)


def test_deterministic_from_seed(dataset, tmp_path):
    again = shapes.generate_shapes(tmp_path / "again", seed=0, per_class=PER_CLASS, progress=False)
    files = sorted(p.relative_to(dataset) for p in dataset.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (dataset / rel).read_bytes() == (again / rel).read_bytes(), rel

    other = shapes.generate_shapes(tmp_path / "other", seed=1, per_class=1, progress=False)
    names = load_pickle(dataset / "train" / "filenames.pickle")
    images = load_pickle(dataset / "train" / "304images.pickle")
    for name, image in zip(load_pickle(other / "train" / "filenames.pickle"),
                           load_pickle(other / "train" / "304images.pickle")):
        assert not np.array_equal(image, images[names.index(name)])
        assert _captions(other, name) != _captions(dataset, name)
    # The class split does not depend on the seed.
    assert ({n.split("/")[0] for n in load_pickle(other / "test" / "filenames.pickle")}
            == {n.split("/")[0] for n in load_pickle(dataset / "test" / "filenames.pickle")})


def test_first_images_do_not_depend_on_per_class(dataset, tmp_path):
    small = shapes.generate_shapes(tmp_path / "one", seed=0, per_class=1, progress=False)
    names = load_pickle(small / "test" / "filenames.pickle")
    images = load_pickle(small / "test" / "76images.pickle")
    all_names = load_pickle(dataset / "test" / "filenames.pickle")
    all_images = load_pickle(dataset / "test" / "76images.pickle")
    for name, image in zip(names, images):
        np.testing.assert_array_equal(image, all_images[all_names.index(name)])


def test_class_split():
    split = shapes.split_classes()
    train, test = split["train"], split["test"]
    assert len(train) == 36 and len(test) == 12
    assert not {c["id"] for c in train} & {c["id"] for c in test}
    assert sorted(c["id"] for c in train + test) == list(range(1, 49))
    assert {c["shape"] for c in train} == set(shapes.SHAPES)
    assert {c["colour"] for c in train} == set(shapes.PALETTE)
    assert {c["shape"] for c in test} == set(shapes.SHAPES)
    assert shapes.class_list()[0]["dir"] == "001.red_circle"


def test_dataset_classes_follow_split(dataset):
    split = shapes.split_classes()
    for name in SPLITS:
        ids = set(load_pickle(dataset / name / "class_info.pickle"))
        assert ids == {c["id"] for c in split[name]}
        for record in _records(dataset, name):
            cls = shapes.class_list()[record["class_id"] - 1]
            assert (record["shape"], record["colour"]) == (cls["shape"], cls["colour"])
            assert record["background"] != record["colour"]


def test_pixels_match_captions(dataset):
    """The shape's pixels have the colour its captions name; the corners have the background's."""
    for split in SPLITS:
        images = load_pickle(dataset / split / "304images.pickle")
        low = load_pickle(dataset / split / "76images.pickle")
        for record, image, small in zip(_records(dataset, split), images, low):
            named = set()
            for caption in _captions(dataset, record["filename"]):
                named |= {shapes.caption_attributes(caption).get("colour")} - {None}
            assert named == {record["colour"]}
            x, y = (np.asarray(record["center"]) * 304).astype(int)
            patch = image[y - 3:y + 4, x - 3:x + 4].reshape(-1, 3).astype(int)
            assert np.abs(patch - shapes.PALETTE[named.pop()]).max() <= 1, record
            corners = [image[:10, :10], image[:10, -10:], image[-10:, :10], image[-10:, -10:]]
            for corner in corners:
                mean = corner.reshape(-1, 3).mean(axis=0)
                assert np.abs(mean - shapes.PALETTE[record["background"]]).max() < 4, record
            if record["size"] != "small":
                centre = small[y // 4, x // 4].astype(int)
                assert np.abs(centre - shapes.PALETTE[record["colour"]]).max() <= 6, record


def test_captions_agree_with_attributes(dataset):
    for split in SPLITS:
        for record in _records(dataset, split):
            _check_captions(record, _captions(dataset, record["filename"]))


def test_many_random_captions_agree():
    rng = np.random.default_rng(123)
    for k in range(400):
        attrs = shapes.sample_attributes(shapes.SHAPES[k % 6], list(shapes.PALETTE)[k % 8], rng)
        _check_captions(attrs, shapes.make_captions(attrs, rng))
    assert len(shapes.make_captions(attrs, rng, n=20)) == 20


def test_geometry_matches_size_and_position():
    """Bounding boxes of drawn shapes: size ranges never overlap; off-centre shapes never look central."""
    rng = np.random.default_rng(7)
    extents = {size: [] for size in shapes.SIZES}
    for k in range(240):
        attrs = shapes.sample_attributes(shapes.SHAPES[k % 6], "red", rng)
        mask = shapes._shape_mask(attrs, 304) > 0.5
        rows, cols = np.nonzero(mask)
        top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        assert top > 0 and left > 0 and bottom < 304 and right < 304, attrs
        extent = max(bottom - top, right - left) / 304
        assert abs(extent - attrs["extent"]) < 0.01, attrs
        extents[attrs["size"]].append(extent)
        cx, cy = (left + right) / 2 / 304, (top + bottom) / 2 / 304
        offset = {"centre": (0, 0), "left": (-1, 0), "right": (1, 0), "top": (0, -1), "bottom": (0, 1)}
        dx, dy = offset[attrs["position"]]
        for along, centre in ((dx, cx), (dy, cy)):
            if along == 0:
                assert abs(centre - 0.5) <= 0.035, attrs
            else:
                assert along * (centre - 0.5) >= 0.13, attrs
    assert max(extents["small"]) < min(extents["medium"]) and max(extents["medium"]) < min(extents["large"])


def test_regenerating_replaces_and_interruption_leaves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "shapes"
    shapes.generate_shapes(out, seed=0, per_class=1, progress=False)
    before = (out / "train" / "76images.pickle").read_bytes()
    # Same seed and size: already complete, nothing is rewritten.
    (out / "train" / "char-CNN-RNN-embeddings.pickle").write_bytes(b"kept")
    shapes.generate_shapes(out, seed=0, per_class=1, progress=False)
    assert (out / "train" / "char-CNN-RNN-embeddings.pickle").read_bytes() == b"kept"

    def fail_after(calls: int):
        """A `render_image` that dies after `calls` images, like a full disk or a Ctrl-C."""
        real, done = shapes.render_image, []

        def render(*args, **kwargs):
            done.append(1)
            if len(done) > calls:
                raise OSError("disk full")
            return real(*args, **kwargs)
        return render

    monkeypatch.setattr(shapes, "render_image", fail_after(5))
    with pytest.raises(OSError):
        shapes.generate_shapes(out, seed=1, per_class=1, progress=False)
    assert (out / "train" / "76images.pickle").read_bytes() == before and shapes.is_complete(out)
    monkeypatch.setattr(shapes, "render_image", fail_after(5))
    with pytest.raises(OSError):
        shapes.generate_shapes(tmp_path / "fresh", seed=0, per_class=1, progress=False)
    assert not (tmp_path / "fresh").exists()
    monkeypatch.undo()

    shapes.generate_shapes(out, seed=1, per_class=1, progress=False)
    assert json.loads((out / shapes.MANIFEST).read_text())["seed"] == 1
    assert (out / "train" / "76images.pickle").read_bytes() != before
    assert not (out / "train" / "char-CNN-RNN-embeddings.pickle").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shapes"]  # no temporary folders left


def test_is_complete_needs_every_file(dataset, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(dataset, root)
    assert shapes.is_complete(root)
    (root / "test" / "304images.pickle").unlink()
    assert not shapes.is_complete(root)
    assert not shapes.is_complete(tmp_path / "missing")


def test_user_errors(tmp_path):
    with pytest.raises(ConfigError, match="per_class"):
        shapes.generate_shapes(tmp_path / "x", per_class=0)
    foreign = tmp_path / "birds"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=str(foreign)):
        shapes.generate_shapes(foreign, per_class=1, progress=False)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_cli(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        shapes.main(["--per-class", "0"])
    assert exit_info.value.code == 2
    out = tmp_path / "cli"
    assert shapes.main(["--out", str(out), "--per-class", "1", "--seed", "3", "--quiet"]) == 0
    assert f"to {out}" in capsys.readouterr().out
    assert json.loads((out / shapes.MANIFEST).read_text())["seed"] == 3
    assert shapes.main(["--out", str(out), "--per-class", "1", "--seed", "3", "--quiet"]) == 0
    assert "already holds" in capsys.readouterr().out
    assert shapes.main(["--out", str(out), "--per-class", "1", "--seed", "4", "--quiet"]) == 0
    assert "wrote 36 train and 12 test images (seed 4)" in capsys.readouterr().out
    assert json.loads((out / shapes.MANIFEST).read_text())["seed"] == 4


@pytest.mark.parametrize("command", [["-m", "misc.data.shapes"], [str(REPO / "misc" / "data" / "shapes.py")]])
def test_cli_help_writes_nothing(tmp_path, command):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, *command, "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--per-class" in result.stdout and "--seed" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_cli_user_error_is_one_line(tmp_path):
    (tmp_path / "Data" / "shapes").mkdir(parents=True)
    (tmp_path / "Data" / "shapes" / "other.txt").write_text("x")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", "misc.data.shapes", "--per-class", "1"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("error: Data/shapes: exists and is not a shapes dataset")
    assert "Traceback" not in result.stderr


# --- reading captions back ---------------------------------------------------------------------

def test_caption_attributes_of_hand_written_captions():
    assert shapes.caption_attributes("A tiny green disk is shown on the right-hand side against a purple background.") == {
        "shape": "circle", "colour": "green", "background": "purple", "size": "small", "position": "right"}
    assert shapes.caption_attributes(b"The background is blue and there is a star.") == {
        "shape": "star", "background": "blue"}
    assert shapes.caption_attributes("A plus sign. It is coloured violet and medium in size.") == {
        "shape": "cross", "colour": "purple", "size": "medium"}
    assert shapes.caption_attributes("Over a white backdrop, a rhombus in the upper part.") == {
        "shape": "diamond", "background": "white", "position": "top"}
    with pytest.raises(ValueError, match="several values"):
        shapes.caption_attributes("A red square and a blue square on the left.")


def test_caption_attributes_are_exactly_what_the_generator_chose(monkeypatch):
    """Every caption names the shape plus exactly the subset `misc.data.shapes` decided to mention."""
    chosen = []
    original = shapes._caption

    def recording(attrs, mention, rng):
        caption = original(attrs, mention, rng)
        chosen.append((attrs, mention, caption))
        return caption

    monkeypatch.setattr(shapes, "_caption", recording)
    rng = np.random.default_rng(5)
    for k in range(300):
        attrs = shapes.sample_attributes(shapes.SHAPES[k % 6], list(shapes.PALETTE)[k % 8], rng)
        shapes.make_captions(attrs, rng)
    assert len(chosen) == 3000
    for attrs, mention, caption in chosen:
        named = shapes.caption_attributes(caption)
        assert set(named) == {"shape"} | set(mention), caption
        assert all(attrs[name] == value for name, value in named.items()), caption
