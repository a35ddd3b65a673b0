"""End-to-end tests of the Stage-II command line, each in a subprocess as a user runs it."""
import json
from pathlib import Path

import pytest
from PIL import Image

from tiny_data import event_tags, run_script, sets, tiny_sets

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "stageII" / "run_exp.py"
STAGE1_SCRIPT = REPO / "stageI" / "run_exp.py"
CFG = REPO / "stageII" / "cfg" / "birds.yml"
STAGE1_CFG = REPO / "stageI" / "cfg" / "birds.yml"


def run(args, script=SCRIPT, cwd=REPO, timeout=300):
    return run_script(script, args, cwd, timeout)


def test_dry_run_prints_the_original_parameter_counts_and_writes_nothing(tmp_path):
    result = run(["--cfg", str(CFG), "--dry-run", *sets(f"OUTPUT_DIR={tmp_path / 'out'}"),
                  "--data_dir", str(tmp_path / "no_data")], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # Birds Stage-II: CA 262,400, hr G 26,027,680, hr D 48,603,520 trainable parameters (original `stageII/model.py`).
    assert result.stdout.splitlines() == ["ca: 262400", "generator: 26027680", "discriminator: 48603520"]
    assert list(tmp_path.iterdir()) == []


def test_without_a_stage1_checkpoint_the_error_says_to_train_it(tmp_path):
    result = run(["--cfg", str(CFG), *sets(f"OUTPUT_DIR={tmp_path / 'out'}"), "--data_dir", str(tmp_path / "no")],
                 cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "make train-stage1" in lines[0], result.stderr


@pytest.fixture(scope="module")
def stage2_run(tiny_birds, tmp_path_factory):
    """Tiny Stage-I (1 epoch = 4 iterations), then one Stage-II epoch: (output root, args, result)."""
    out = tmp_path_factory.mktemp("runs") / "out"
    stage1 = run(["--cfg", str(STAGE1_CFG), "--data_dir", str(tiny_birds),
                  *tiny_sets(f"OUTPUT_DIR={out}", "TRAIN.MAX_EPOCH=1")], script=STAGE1_SCRIPT)
    assert stage1.returncode == 0, stage1.stderr[-3000:]
    # 18 images / batch 4: Stage-I ends at iteration 4 = epoch 1, so Stage-II runs epoch 2 (iterations 5..8).
    common = ["--cfg", str(CFG), "--data_dir", str(tiny_birds),
              *tiny_sets(f"OUTPUT_DIR={out}", "TRAIN.SNAPSHOT_INTERVAL=3", "TRAIN.PRETRAINED_EPOCH=1")]
    return out, common, run([*common, *sets("TRAIN.MAX_EPOCH=2")])


def test_train_continues_from_stage1_and_writes_checkpoints_grids_and_summaries(stage2_run):
    out, _, result = stage2_run
    assert result.returncode == 0, result.stderr[-3000:]
    (stage1_dir,) = (out / "birds").glob("stageI_*")
    (run_dir,) = (out / "birds").glob("stageII_*")
    assert f"Stage-I generator from {stage1_dir / 'model_4.weights.h5'} (iteration 4)" in result.stdout
    assert sorted(p.name for p in run_dir.glob("model_*")) == [
        "model_6.json", "model_6.weights.h5", "model_8.json", "model_8.weights.h5"]
    record = json.loads((run_dir / "model_8.json").read_text())
    assert record["stage"] == "stageII" and record["iteration"] == 8 and record["epoch"] == 2
    assert record["optimizer_iterations"] == 4
    for name, size in (("lr_fake_train.jpg", 64), ("lr_fake_test.jpg", 64),
                       ("hr_fake_train.jpg", 256), ("hr_fake_test.jpg", 256)):
        with Image.open(run_dir / name) as grid:
            assert grid.size == (5 * size, 4 * size), name  # 4 rows: a real image + 4 samples
    assert len((run_dir / "test.txt").read_text().splitlines()) == 4
    tags = event_tags(run_dir)
    for tag in ("hr_d_loss", "hr_d_loss_real", "hr_d_loss_wrong", "hr_d_loss_fake", "hr_g_loss", "hr_kl_loss",
                "hr_d_learning_rate", "hr_g_learning_rate"):
        assert sorted(tags[tag]) == [5, 6, 7, 8], tag  # the counter goes on from Stage-I's 4
    assert tags["train"] == tags["test"] == tags["hr_train"] == tags["hr_test"] == [8]


@pytest.mark.slow
def test_resume_continues_in_the_same_folder(stage2_run):
    out, common, first = stage2_run
    assert first.returncode == 0, first.stderr[-3000:]
    (run_dir,) = (out / "birds").glob("stageII_*")
    second = run([*common, *sets("TRAIN.MAX_EPOCH=3"), "--resume", str(run_dir)])
    assert second.returncode == 0, second.stderr[-3000:]
    assert sorted(p.name for p in (out / "birds").iterdir() if p.name.startswith("stageII_")) == [run_dir.name]
    assert "iteration 8, continuing with epoch 3" in second.stdout
    record = json.loads((run_dir / "model_12.json").read_text())
    assert record["iteration"] == 12 and record["epoch"] == 3 and record["optimizer_iterations"] == 8
    assert sorted(event_tags(run_dir)["hr_train"]) == [8, 12]
