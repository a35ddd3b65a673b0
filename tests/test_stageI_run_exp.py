"""End-to-end tests of the Stage-I command line, each in a subprocess as a user runs it."""
import json
from pathlib import Path

import pytest
from PIL import Image

from tiny_data import event_tags, run_script, sets, tiny_sets

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "stageI" / "run_exp.py"
CFG = REPO / "stageI" / "cfg" / "birds.yml"


def run(args, cwd=REPO, timeout=300):
    return run_script(SCRIPT, args, cwd, timeout)


def test_dry_run_prints_the_original_parameter_counts_and_writes_nothing(tmp_path):
    result = run(["--cfg", str(CFG), "--dry-run", *sets(f"OUTPUT_DIR={tmp_path / 'out'}"),
                  "--data_dir", str(tmp_path / "no_data")], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # Birds Stage-I: CA 262,400, G 14,001,792, D 4,029,824 trainable parameters (original `stageI/model.py`).
    assert result.stdout.splitlines() == ["ca: 262400", "generator: 14001792", "discriminator: 4029824"]
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def first_run(tiny_birds, tmp_path_factory):
    """One epoch of tiny Stage-I training through the command line: (output root, args, result)."""
    out = tmp_path_factory.mktemp("runs") / "out"
    common = ["--cfg", str(CFG), "--data_dir", str(tiny_birds),
              *tiny_sets(f"OUTPUT_DIR={out}", "TRAIN.SNAPSHOT_INTERVAL=3", "TRAIN.SUMMARY_INTERVAL=1")]
    return out, common, run([*common, *sets("TRAIN.MAX_EPOCH=1")])


def test_train_writes_config_checkpoints_grids_and_summaries(first_run):
    out, _, result = first_run
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (out / "birds").iterdir()
    assert run_dir.name.startswith("stageI_")
    assert f"run folder: {run_dir}" in result.stdout and "TensorBoard logs:" in result.stdout
    # 18 training images / batch 4 = 4 iterations per epoch: snapshots at 3 and at the end (4).
    assert sorted(p.name for p in run_dir.glob("model_*")) == [
        "model_3.json", "model_3.weights.h5", "model_4.json", "model_4.weights.h5"]
    assert json.loads((run_dir / "model_4.json").read_text())["epoch"] == 1
    assert "GF_DIM: 8" in (run_dir / "config.yml").read_text()
    for name in ("train.jpg", "test.jpg"):
        with Image.open(run_dir / name) as grid:
            assert grid.size == (5 * 64, 4 * 64)  # NUM_COPY = 4 rows of a real image + 4 samples
    assert len((run_dir / "test.txt").read_text().splitlines()) == 4
    tags = event_tags(run_dir)
    for tag in ("d_loss", "d_loss_real", "d_loss_wrong", "d_loss_fake", "g_loss", "kl_loss",
                "d_learning_rate", "g_learning_rate"):
        assert sorted(tags[tag]) == [1, 2, 3, 4], tag  # every iteration, at the iteration counter
    assert tags["train"] == tags["test"] == [4]  # end of the epoch


@pytest.mark.slow
def test_resume_continues_in_the_same_folder(first_run):
    out, common, first = first_run
    assert first.returncode == 0, first.stderr[-3000:]
    (run_dir,) = (out / "birds").iterdir()
    second = run([*common, *sets("TRAIN.MAX_EPOCH=2"), "--resume", str(run_dir)])
    assert second.returncode == 0, second.stderr[-3000:]
    assert list((out / "birds").iterdir()) == [run_dir]
    assert "iteration 4, continuing with epoch 2" in second.stdout
    record = json.loads((run_dir / "model_8.json").read_text())
    assert record["iteration"] == 8 and record["epoch"] == 2 and record["optimizer_iterations"] == 8
    tags = event_tags(run_dir)
    assert sorted(tags["g_loss"]) == list(range(1, 9))  # the counter went on from 4
    assert sorted(tags["train"]) == [4, 8]


@pytest.mark.parametrize("case", ["missing_cfg", "bad_key", "bad_value", "missing_data", "bad_resume", "no_epochs",
                                  "bad_gpu"])
def test_user_errors_are_one_line(case, tmp_path):
    args = {
        "missing_cfg": ["--cfg", str(tmp_path / "nope.yml")],
        "bad_key": ["--cfg", str(CFG), *sets("TRAIN.NO_SUCH_KEY=1")],
        "bad_value": ["--cfg", str(CFG), *sets("TRAIN.MAX_EPOCH=many")],
        "missing_data": ["--cfg", str(CFG), "--data_dir", str(tmp_path / "no_data"),
                         *sets(f"OUTPUT_DIR={tmp_path / 'out'}")],
        "bad_resume": ["--cfg", str(CFG), "--resume", str(tmp_path), *sets(f"OUTPUT_DIR={tmp_path / 'out'}")],
        "no_epochs": ["--cfg", str(CFG), *sets("TRAIN.MAX_EPOCH=0", f"OUTPUT_DIR={tmp_path / 'out'}")],
        "bad_gpu": ["--cfg", str(CFG), "--gpu", "0,x"],
    }[case]
    result = run(args, cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
    expected = {"missing_cfg": "nope.yml", "bad_key": "NO_SUCH_KEY", "bad_value": "TRAIN.MAX_EPOCH",
                "missing_data": "no_data", "bad_resume": "holds no checkpoint", "no_epochs": "nothing to train",
                "bad_gpu": "--gpu 0,x"}[case]
    assert expected in lines[0]
