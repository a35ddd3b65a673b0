"""Tests of misc/generate/demo.py: sentences to captioned sheets, interpolation, determinism, user errors."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from misc.cli import run_cli
from misc.generate.demo import BUILT_IN_EXAMPLES, example_sentences, interpolation_embeddings, main, read_caption_file
from misc.errors import DataError, StackGANError

REPO = Path(__file__).resolve().parents[1]


def demo_args(tiny_models, out, *extra):
    return ["--dataset", "birds", "--ckt-dir", str(tiny_models["output_dir"]), "--encoder",
            str(tiny_models["encoder"]), "--out", str(out), *extra]


def run_demo(args) -> list:
    lines = []
    assert main(args, print_fn=lines.append) == 0
    return lines


def test_sentences_from_arguments_and_file_give_one_sheet_each(tiny_models, tmp_path):
    captions = tmp_path / "captions.txt"
    captions.write_text("a small bird\n\n  a LARGE bird with red wings  \n")
    out = tmp_path / "demo"
    (out / "sentence7.jpg").parent.mkdir()
    (out / "sentence7.jpg").write_bytes(b"from an earlier, longer run")
    lines = run_demo(demo_args(tiny_models, out, "a yellow bird", "--captions", str(captions), "--num-samples", "2"))
    assert "model_8.weights.h5 (Stage-I and Stage-II, iteration 8)" in lines[0]
    assert lines[-1] == f"done: {out}"
    assert sorted(p.name for p in out.iterdir()) == ["captions.txt", "sentence0.jpg", "sentence1.jpg", "sentence2.jpg"]
    assert (out / "captions.txt").read_text().splitlines() == [
        "sentence0.jpg: a yellow bird", "sentence1.jpg: a small bird", "sentence2.jpg: a LARGE bird with red wings"]
    with Image.open(out / "sentence0.jpg") as sheet:
        # Label column, gap of 256 // 12 px, 2 samples of 256 px; a caption band, then two rows.
        assert sheet.size[0] == 256 + 21 + 2 * 256 and sheet.size[1] >= 128 + 2 * 256


def test_seed_reaches_the_noise_and_repeats_the_sheets(tiny_models, tmp_path, monkeypatch):
    from misc.generate.inference import TextToImageModels

    # The tiny untrained generators give nearly flat images whatever the noise, so equal sheets alone
    # would not show that --seed is used: record the seed the noise is drawn with as well.
    seeds = []
    draw = TextToImageModels.sample_noise
    monkeypatch.setattr(TextToImageModels, "sample_noise",
                        lambda self, n, seed=0: seeds.append(seed) or draw(self, n, seed))
    sheets = []
    for name in ("a", "b"):
        run_demo(demo_args(tiny_models, tmp_path / name, "a red bird", "--num-samples", "2", "--seed", "3",
                           "--stage", "stageI"))
        sheets.append((tmp_path / name / "sentence0.jpg").read_bytes())
    assert seeds == [3, 3]
    assert sheets[0] == sheets[1]  # that another seed draws other noise: tests/test_inference.py


def test_interpolation_strip(tiny_models, tmp_path):
    out = tmp_path / "interp"
    lines = run_demo(demo_args(tiny_models, out, "--interpolate", "a red bird", "a blue bird", "--steps", "3",
                               "--num-samples", "2"))
    assert f"interpolation: {out / 'interpolation.jpg'}" in lines
    with Image.open(out / "interpolation.jpg") as final, Image.open(out / "interpolation_stageI.jpg") as low:
        assert final.size[0] == 3 * 256 and final.size[1] > 2 * 256
        assert low.size[0] == 3 * 64 and low.size[1] > 2 * 64
    assert not list(out.glob("sentence*"))
    # A Stage-I-only interpolation into the same folder removes the Stage-II run's Stage-I strip.
    run_demo(demo_args(tiny_models, out, "--interpolate", "a red bird", "a blue bird", "--steps", "3",
                       "--num-samples", "2", "--stage", "stageI"))
    assert sorted(p.name for p in out.iterdir()) == ["interpolation.jpg"]
    with Image.open(out / "interpolation.jpg") as final:
        assert final.size[0] == 3 * 64


def test_interpolation_embeddings_run_from_a_to_b():
    a, b = np.zeros(4, np.float32), np.arange(4, dtype=np.float32)
    line = interpolation_embeddings(a, b, 5)
    np.testing.assert_array_equal(line[0], a)
    np.testing.assert_array_equal(line[-1], b)
    np.testing.assert_allclose(line[2], (a + b) / 2)


def test_example_sentences(tmp_path):
    assert example_sentences("shapes", tmp_path) == (list(BUILT_IN_EXAMPLES), "the built-in shapes examples")
    (tmp_path / "birds").mkdir()
    (tmp_path / "birds" / "example_captions.txt").write_text("a bird\nanother bird\n")
    assert example_sentences("birds", tmp_path)[0] == ["a bird", "another bird"]
    with pytest.raises(StackGANError, match="give sentences"):
        example_sentences("flowers", tmp_path)


def test_caption_file_errors(tmp_path):
    with pytest.raises(DataError, match="caption file not found"):
        read_caption_file(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n   \n")
    with pytest.raises(DataError, match="has no sentence"):
        read_caption_file(tmp_path / "empty.txt")


@pytest.mark.parametrize("case", ["empty captions", "no model", "no encoder", "encoder size", "steps"])
def test_user_errors_are_one_line_and_write_nothing(case, tiny_models, tmp_path, capsys):
    out = tmp_path / "out"
    args = demo_args(tiny_models, out, "a bird")
    expected = {"empty captions": "has no sentence", "no model": "make train-stage1 DATASET=birds",
                "no encoder": "make text-encoder", "steps": "--steps must be at least 2",
                "encoder size": "the generators take 16-d text embeddings but the text encoder of"}[case]
    if case == "empty captions":
        (tmp_path / "empty.txt").write_text("\n")
        args += ["--captions", str(tmp_path / "empty.txt")]
    elif case == "no model":
        args += ["--ckt-dir", str(tmp_path / "nothing")]
    elif case == "no encoder":
        args += ["--encoder", str(tmp_path / "no_encoder")]
    elif case == "encoder size":
        from misc.text.char_cnn_rnn import CharCnnRnn
        from misc.text.encoder import TEXT_ENCODER_FILE

        small = CharCnnRnn(conv_channels=(8, 8, 8), rnn_dim=8, emb_dim=8)  # the snapshots take 16-d embeddings
        small.build()
        (tmp_path / "small_encoder").mkdir()
        small.save(tmp_path / "small_encoder" / TEXT_ENCODER_FILE)
        args += ["--encoder", str(tmp_path / "small_encoder")]
    else:
        args += ["--interpolate", "a", "b", "--steps", "1"]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and expected in err, err
    assert not out.exists()


def test_command_line_process_reports_a_missing_model_without_traceback(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run([sys.executable, "-m", "misc.generate.demo", "--ckt-dir", str(tmp_path), "a red star"], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"error: {tmp_path / 'shapes'}: no trained checkpoint (model_<iteration>.weights.h5 "
                                     "in a stageII_* or stageI_* run folder) found; run `make train-stage1 "
                                     "DATASET=shapes` first")
