"""Tests of misc/data/preprocess_birds.py and misc/data/preprocess_flowers.py."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from misc.data import preprocess_birds as birds
from misc.data import preprocess_flowers as flowers
from misc.datasets import load_split
from misc.errors import DataError
from misc.pickle_io import load_pickle
from tiny_data import make_tiny_birds, python2_pickle_bytes

REPO = Path(__file__).resolve().parents[1]


def test_outputs_on_tiny_birds(tiny_birds):
    for split, n in (("train", 18), ("test", 12)):
        names = load_pickle(tiny_birds / split / "filenames.pickle")
        assert len(names) == n
        for size in (304, 76):
            images = load_pickle(tiny_birds / split / f"{size}images.pickle")
            assert isinstance(images, list) and len(images) == n
            stacked = np.stack(images)
            assert stacked.shape == (n, size, size, 3) and stacked.dtype == np.uint8
        # Grey JPEGs (every third image) come out with three equal channels.
        grey = np.stack(load_pickle(tiny_birds / split / "76images.pickle"))[2]
        assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 0], grey[..., 2])
    # The low-res image is the bicubic resize of the 304 image.
    hr = load_pickle(tiny_birds / "train" / "304images.pickle")[0]
    lr = load_pickle(tiny_birds / "train" / "76images.pickle")[0]
    expected = np.asarray(Image.fromarray(hr).resize((76, 76), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(lr, expected)


def test_bytescale_reproduces_scipy():
    data = np.array([[10.0, 15.0], [20.0, 12.5]])
    # (x - min) * 255 / (max - min), rounded half up: 12.5 -> 63.75 -> 64, 15 -> 127.5 -> 128.
    np.testing.assert_array_equal(birds.bytescale(data), [[0, 128], [255, 64]])
    assert birds.bytescale(data).dtype == np.uint8
    flat = np.full((2, 2, 3), 77.0)  # max == min: SciPy used a scale of 1, so all zeros
    np.testing.assert_array_equal(birds.bytescale(flat), np.zeros((2, 2, 3), np.uint8))
    raw = np.array([[3, 200]], dtype=np.uint8)
    assert birds.bytescale(raw) is raw


def test_crop_box_geometry():
    # Centre (int((2*30 + 41) / 2), int((2*20 + 30) / 2)) = (50, 35); half-side int(0.75 * 41) = 30.
    assert birds.crop_box((150, 200, 3), (30, 20, 41, 30)) == (5, 65, 20, 80)
    # Clipped at the top-left border: the crop is no longer square.
    assert birds.crop_box((150, 200, 3), (0, 0, 40, 20)) == (0, 40, 0, 50)
    # Clipped at the bottom-right border.
    # Centre (105, 90), half-side int(22.5) = 22.
    assert birds.crop_box((100, 120, 3), (90, 80, 30, 20)) == (68, 100, 83, 120)


def test_crop_selects_the_box_end_to_end(tmp_path):
    # Outside the expected crop rows 5:65, columns 20:80 the image is 50; inside, the left half is
    # 0 and the right half 200. After the per-image stretch the crop must be exactly 0 | 255: any
    # pixel from outside would show up as 64 along the border.
    img = np.full((150, 200, 3), 50, np.uint8)
    img[5:65, 20:50] = 0
    img[5:65, 50:80] = 200
    path = tmp_path / "bird.jpg"
    Image.fromarray(img).save(path, format="PNG")  # lossless, whatever the extension says
    hr, lr = birds.load_image_pair(path, (30, 20, 41, 30))
    assert hr.shape == (304, 304, 3) and lr.shape == (76, 76, 3)
    assert hr[:, :140].max() == 0 and hr[:, 164:].min() == 255
    assert lr[:, :34].max() == 0 and lr[:, 42:].min() == 255
    # Without a box (flowers) the whole image is squashed: the border is kept.
    whole, _ = birds.load_image_pair(path, None)
    assert whole[0, 0, 0] == 64  # 50 stretched from 0..200 to 0..255 is 63.75


def test_read_image_modes(tmp_path):
    rgba = np.random.default_rng(0).integers(0, 256, (5, 6, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(birds.read_image(tmp_path / "a.png"), rgba[..., :3])
    Image.fromarray(rgba[..., 0], "L").save(tmp_path / "g.png")
    grey = birds.read_image(tmp_path / "g.png")
    assert grey.shape == (5, 6, 3) and grey.dtype == np.float64
    np.testing.assert_array_equal(grey[..., 2], rgba[..., 0])
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="bad.jpg: cannot be read as an image"):
        birds.read_image(tmp_path / "bad.jpg")
    with pytest.raises(DataError, match="none.jpg: image not found"):
        birds.read_image(tmp_path / "none.jpg")


@pytest.fixture
def small_birds(tmp_path):
    """Four images, not preprocessed: cheap to break in different ways."""
    return make_tiny_birds(tmp_path, n_train_classes=1, n_test_classes=1, per_class=2, preprocess=False)


def test_main_writes_and_reports(small_birds, capsys):
    assert birds.main(["--data_dir", str(small_birds), "--no_progress"]) == 0
    out = capsys.readouterr().out
    for split in ("train", "test"):
        for size in (304, 76):
            assert f"wrote {small_birds / split / f'{size}images.pickle'}" in out
    assert load_split(small_birds, "test", 304).images.shape == (2, 304, 304, 3)
    assert not list(small_birds.glob("*/.*.tmp"))


def test_bbox_rows_follow_images_txt_order(small_birds):
    boxes = birds.load_bbox(small_birds)
    rows = (small_birds / "CUB_200_2011" / "images.txt").read_text().split("\n")
    bbox_rows = (small_birds / "CUB_200_2011" / "bounding_boxes.txt").read_text().split("\n")
    name = rows[2].split()[1][:-len(".jpg")]
    assert boxes[name] == tuple(int(float(v)) for v in bbox_rows[2].split()[1:])


def test_errors(small_birds):
    cub = small_birds / "CUB_200_2011"
    names = load_pickle(small_birds / "train" / "filenames.pickle")

    jpeg = cub / "images" / f"{names[1]}.jpg"
    saved = jpeg.read_bytes()
    jpeg.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DataError, match=f"{jpeg}: cannot be read as an image"):
        birds.preprocess_birds(small_birds, progress=False)
    jpeg.unlink()
    with pytest.raises(DataError) as err:
        birds.preprocess_birds(small_birds, progress=False)
    assert str(err.value) == (f"{jpeg}: image listed in {small_birds / 'train' / 'filenames.pickle'} "
                              f"not found")
    jpeg.write_bytes(saved)

    (small_birds / "test" / "filenames.pickle").write_bytes(python2_pickle_bytes(names + ["999.X/X_1"]))
    with pytest.raises(DataError, match=r"images.txt: does not list '999.X/X_1.jpg', which .*test/filenames"):
        birds.preprocess_birds(small_birds, progress=False)

    bbox = cub / "bounding_boxes.txt"
    rows = bbox.read_text().splitlines()
    bbox.write_text("\n".join(rows[:-1]))
    with pytest.raises(DataError, match="bounding_boxes.txt: has 3 rows but .*images.txt has 4"):
        birds.preprocess_birds(small_birds, progress=False)
    bbox.write_text("\n".join(["1 0 0 x 4"] + rows[1:]))
    with pytest.raises(DataError, match="bounding_boxes.txt: line 1 is not numeric"):
        birds.preprocess_birds(small_birds, progress=False)
    bbox.write_text("\n".join(rows[:2] + ["3 0 0 4"] + rows[3:]))
    with pytest.raises(DataError, match="bounding_boxes.txt: line 3 has 4 fields, expected 5"):
        birds.preprocess_birds(small_birds, progress=False)
    bbox.unlink()
    with pytest.raises(DataError, match="bounding_boxes.txt: file not found; download CUB_200_2011"):
        birds.preprocess_birds(small_birds, progress=False)
    shutil.rmtree(small_birds / "train")
    with pytest.raises(DataError, match="train/filenames.pickle: file not found"):
        flowers.preprocess_flowers(small_birds, progress=False)


def test_cli_error_is_one_line_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "misc" / "data" / "preprocess_birds.py"), "--data_dir", str(tmp_path)],
        capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {tmp_path}/CUB_200_2011/images.txt: file not found")


def test_flowers(tmp_path, capsys):
    root = tmp_path / "flowers"
    (root / "jpg").mkdir(parents=True)
    names = {"train": ["jpg/image_00001", "jpg/image_00002"], "test": ["jpg/image_00003"]}
    step = np.zeros((60, 90, 3), np.uint8)
    step[:, 45:] = 200
    for split, split_names in names.items():
        (root / split).mkdir()
        (root / split / "filenames.pickle").write_bytes(python2_pickle_bytes(split_names))
        for name in split_names:
            Image.fromarray(step).save(root / f"{name}.jpg", format="PNG")
    assert flowers.main(["--data_dir", str(root), "--no_progress"]) == 0
    assert f"wrote {root / 'test' / '76images.pickle'}" in capsys.readouterr().out
    hr = np.stack(load_pickle(root / "train" / "304images.pickle"))
    assert hr.shape == (2, 304, 304, 3) and hr.dtype == np.uint8
    # No crop: the whole image is squashed, so the step stays in the middle.
    assert hr[:, :, :140].max() == 0 and hr[:, :, 164:].min() == 255


def test_help_names_the_default():
    with pytest.raises(SystemExit) as exit_info:
        flowers.main(["--help"])
    assert exit_info.value.code == 0
