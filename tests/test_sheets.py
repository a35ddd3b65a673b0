"""Tests of misc/generate/sheets.py: the layout of the captioned sheets and interpolation strips."""
import numpy as np
import pytest
from PIL import Image

from misc.generate.sheets import SAMPLES_PER_BLOCK, caption_sheet, save_image, strip_sheet, upsample


def samples(k, size=16, value=200):
    return np.full((k, size, size, 3), value, np.uint8)


def test_caption_sheet_layout_with_a_real_image_and_two_rows():
    size, k = 64, 3
    sheet = caption_sheet("a red circle", [("Stage-I", samples(k, size, 10)), ("Stage-II", samples(k, size, 250))],
                          real=np.full((size, size, 3), 128, np.uint8))
    gap = size // 12
    band = sheet.shape[0] - 2 * size
    assert sheet.shape == (band + 2 * size, 2 * size + gap + k * size, 3)
    assert band >= size // 2
    assert (sheet[band:band + size, size:2 * size] == 128).all()  # the real image after the label
    x = 2 * size + gap
    assert (sheet[band:band + size, x:x + size] == 10).all()  # Stage-I row
    assert (sheet[band + size:, x + (k - 1) * size:] == 250).all()  # last Stage-II sample
    assert sheet[:band].max() == 255  # the caption is drawn in white


def test_more_than_eight_samples_continue_in_a_second_block():
    size = 16
    one = caption_sheet("x", [("S", samples(SAMPLES_PER_BLOCK, size))])
    two = caption_sheet("x", [("S", samples(SAMPLES_PER_BLOCK + 1, size))])
    assert two.shape[1] == one.shape[1]
    assert two.shape[0] == one.shape[0] + size + size // 4


def test_long_captions_wrap_inside_the_sheet():
    short = caption_sheet("a bird", [("S", samples(4, 64))])
    long = caption_sheet("a very long caption " * 20 + "averyveryverylongwordwithoutanyspaces" * 3, [("S", samples(4, 64))])
    assert long.shape[1] == short.shape[1] and long.shape[0] > short.shape[0]


def test_rows_must_agree():
    with pytest.raises(ValueError, match="every row"):
        caption_sheet("x", [("a", samples(2)), ("b", samples(3))])


def test_strip_sheet_places_the_grid_under_the_header():
    rows = np.zeros((2, 3, 8, 8, 3), np.uint8)
    rows[1, 2] = 255
    sheet = strip_sheet(["from: a", "to: b"], rows)
    band = sheet.shape[0] - 16
    assert sheet.shape[1] == 24
    assert (sheet[band + 8:, 16:] == 255).all() and (sheet[band:band + 8] == 0).all()


def test_upsample_and_save(tmp_path):
    big = upsample(samples(2, 16), 64)
    assert big.shape == (2, 64, 64, 3) and (big == 200).all()
    save_image(big[0], tmp_path / "a.png")
    save_image(big[0], tmp_path / "b.jpg")
    with Image.open(tmp_path / "a.png") as png, Image.open(tmp_path / "b.jpg") as jpg:
        assert (png.format, jpg.format, png.size) == ("PNG", "JPEG", (64, 64))
        assert (np.asarray(png) == 200).all()
