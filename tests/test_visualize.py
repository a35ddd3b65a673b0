"""Tests of misc/visualize.py: pixel mapping, grid layout and the end-of-epoch grid files."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from misc import visualize
from misc.config import default_config
from stageI.trainer import build_gan
from tiny_data import TINY



def test_to_uint8_is_linear_and_clipped():
    x = np.array([-1.5, -1.0, 0.0, 0.5, 1.0, 2.0], np.float32)
    assert visualize.to_uint8(x).tolist() == [0, 0, 128, 191, 255, 255]


def test_make_grid_layout():
    n, m, s = 3, 4, 2
    real = np.full((n, s, s, 3), -1.0, np.float32)
    fake = np.stack([np.full((m, s, s, 3), (i + 1) / 10, np.float32) for i in range(n)])
    fake[1, 2] = 1.0
    grid = visualize.make_grid(real, fake)
    assert grid.shape == (n * s, (m + 1) * s, 3) and grid.dtype == np.uint8
    assert (grid[:, :s] == 0).all()  # first column: the real images
    assert (grid[0:s, s:] == visualize.to_uint8(0.1)).all()  # row 0: samples of text 0
    assert (grid[s:2 * s, 3 * s:4 * s] == 255).all()  # row 1, sample 2
    with pytest.raises(ValueError):
        visualize.make_grid(real[:2], fake)


@pytest.fixture(scope="module")
def gan():
    keras.utils.set_random_seed(0)
    return build_gan(default_config().updated(TINY))


def test_sample_rows_zero_z_uses_inference_mode(gan):
    embeddings = np.random.default_rng(0).standard_normal((2, 16)).astype(np.float32)
    (fake,) = visualize.sample_rows(gan, embeddings, num_copy=3)
    assert fake.shape == (2, 3, 64, 64, 3)
    assert np.abs(fake).max() <= 1.0
    # Only the CA noise differs along a row (z = 0), so the samples of a row differ from each other.
    assert not np.array_equal(fake[0, 0], fake[0, 1])


def test_epoch_grids_files_and_summaries(gan, tmp_path):
    n = 4
    rng = np.random.default_rng(1)
    rows = {split: {"images": rng.uniform(-1, 1, (n, 64, 64, 3)).astype(np.float32),
                    "embeddings": rng.standard_normal((n, 16)).astype(np.float32)} for split in ("train", "test")}
    rows["test"]["captions"] = [f"caption {i}" for i in range(n)]
    writer = tf.summary.create_file_writer(str(tmp_path / "logs"))
    with writer.as_default():
        written = visualize.epoch_grids(gan, rows, tmp_path, step=7, num_copy=n)
    writer.close()
    assert written == {"train": tmp_path / "train.jpg", "test": tmp_path / "test.jpg"}
    for path in written.values():
        with Image.open(path) as image:
            assert image.format == "JPEG"
            assert image.size == ((n + 1) * 64, n * 64)  # width, height: Stage-I grid 320 x 256 px
    assert (tmp_path / "test.txt").read_text().splitlines() == [f"{i}: caption {i}" for i in range(n)]
    assert not (tmp_path / "train.txt").exists()
    tags = set()
    for event_file in (tmp_path / "logs").glob("events*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            tags |= {(v.tag, event.step) for v in event.summary.value}
    assert tags == {("train", 7), ("test", 7)}
