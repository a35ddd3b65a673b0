"""Tests of misc/generate/sampler.py through the command lines that run it (`TRAIN.FLAG: false`)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from misc.cli import run_cli
from misc.datasets import read_filenames
from misc.generate.sampler import sample_name
from stageI import run_exp as stage1_run_exp
from stageII import run_exp as stage2_run_exp

REPO = Path(__file__).resolve().parents[1]
STAGE1_CFG = REPO / "stageI" / "cfg" / "birds.yml"
STAGE2_CFG = REPO / "stageII" / "cfg" / "birds.yml"


def eval_args(cfg, data_dir, output_dir, *extra):
    return ["--cfg", str(cfg), "--data_dir", str(data_dir), "--set", "TRAIN.FLAG=False",
            "--set", f"OUTPUT_DIR={output_dir}", *extra]


def tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def runs(tiny_models, tmp_path):
    """A writable copy of the tiny snapshots (the sampler writes into the run folder by default)."""
    return Path(shutil.copytree(tiny_models["output_dir"], tmp_path / "ckt_logs"))


def test_stage2_writes_one_png_per_sample_in_both_trees_and_a_sheet_per_caption(runs, tiny_birds, capsys):
    args = eval_args(STAGE2_CFG, tiny_birds, runs, "--num-samples", "2", "--num-captions", "2")
    assert stage2_run_exp.main(args) == 0
    out = runs / "birds" / "stageII_2000_01_01_00_00_01" / "samples_8"  # the default: <run>/samples_<iteration>
    assert f"done: {out}" in capsys.readouterr().out
    filenames = read_filenames(tiny_birds / "test" / "filenames.pickle")
    expected = sorted(sample_name(f, c, k) for f in filenames for c in range(2) for k in range(2))
    for folder, size in (("test", 256), ("test_stageI", 64)):
        written = sorted(str(p.relative_to(out / folder)) for p in (out / folder).rglob("*.png"))
        assert written == expected, folder
        with Image.open(out / folder / expected[0]) as image:
            assert image.size == (size, size) and image.mode == "RGB"
    # The dataset's class folders are kept: test/<NNN.Class>/<name>_c<i>_s<k>.png.
    assert (out / "test" / filenames[0].split("/")[0]).is_dir()
    sheets = sorted(str(p.relative_to(out / "sheets")) for p in (out / "sheets").rglob("*.jpg"))
    assert sheets == sorted(f"{f}_c{c}.jpg" for f in filenames for c in range(2))
    manifest = json.loads((out / "samples.json").read_text())
    assert manifest["files"] == len(expected) and manifest["stage"] == "stageII" and manifest["seed"] == 0
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []  # no temporary folder left

    # Same seed, same files; a second run replaces the first's folder (nothing stale is left).
    before = tree(out)
    (out / "test" / "stale.png").write_bytes(b"")
    assert stage2_run_exp.main(args) == 0
    assert tree(out) == before


def test_stage1_command_line_samples_the_stage1_snapshot(runs, tiny_birds, tmp_path):
    out = tmp_path / "samples"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run([sys.executable, str(REPO / "stageI" / "run_exp.py"),
                             *eval_args(STAGE1_CFG, tiny_birds, runs, "--num-samples", "3", "--out", str(out))],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stageI_2000_01_01_00_00_00/model_4.weights.h5 (stageI, iteration 4)" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == f"done: {out}"
    pngs = list((out / "test").rglob("*.png"))
    assert len(pngs) == 12 * 3 and not (out / "test_stageI").exists()  # 12 test images, caption 0, k = 3
    with Image.open(pngs[0]) as image:
        assert image.size == (64, 64)
    assert len(list((out / "sheets").rglob("*_c0.jpg"))) == 12


def one_line_error(capsys, main, args) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_user_errors_are_one_line_and_write_nothing(tiny_models, tiny_birds, tmp_path, capsys):
    empty = tmp_path / "no_runs"
    err = one_line_error(capsys, stage1_run_exp.main, eval_args(STAGE1_CFG, tiny_birds, empty))
    assert "no trained checkpoint" in err and "make train-stage1 DATASET=birds" in err
    err = one_line_error(capsys, stage2_run_exp.main, eval_args(STAGE2_CFG, tiny_birds, empty))
    assert "make train-stage2 DATASET=birds" in err
    output_dir = tiny_models["output_dir"]
    err = one_line_error(capsys, stage2_run_exp.main, eval_args(
        STAGE2_CFG, tiny_birds, output_dir, "--set", f"TRAIN.PRETRAINED_MODEL={tiny_models['stage1']}"))
    assert "this is a stageI checkpoint" in err
    err = one_line_error(capsys, stage1_run_exp.main, eval_args(STAGE1_CFG, tiny_birds, output_dir, "--resume",
                                                                str(tiny_models["stage1"])))
    assert "--resume" in err and "TRAIN.PRETRAINED_MODEL" in err
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    err = one_line_error(capsys, stage1_run_exp.main, eval_args(STAGE1_CFG, tiny_birds, output_dir, "--out",
                                                                str(foreign)))
    assert "was not written by the sampler" in err
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    err = one_line_error(capsys, stage1_run_exp.main, eval_args(STAGE1_CFG, tmp_path / "no_data", output_dir,
                                                                "--out", str(tmp_path / "new")))
    assert "filenames.pickle: file not found" in err and not (tmp_path / "new").exists()
    assert not list(tiny_models["stage1"].glob("samples_*"))
