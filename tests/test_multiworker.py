"""Multi-worker training: real worker processes on 127.0.0.1 (`misc.tools.launch`), CPU, tiny widths.

The runs are made once for the module: two workers train one epoch, two workers resume that run for
a second epoch, and one process trains both epochs at once; a global batch of 4 is 2 rows per worker.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from misc.tools.launch import free_ports
from misc.config import load_config
from stageI import trainer
from tiny_data import TINY, tiny_sets

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "stageI" / "run_exp.py"
CFG = REPO / "stageI" / "cfg" / "birds.yml"
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(REPO))


def launch(args, workers=2, timeout=400):
    return subprocess.run([sys.executable, "-m", "misc.tools.launch", "--workers", str(workers), "--",
                           str(SCRIPT), *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)


def weights_of(path):
    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


@pytest.fixture(scope="module")
def runs(tiny_birds, tmp_path_factory):
    root = tmp_path_factory.mktemp("multiworker")
    common = ["--cfg", str(CFG), "--data_dir", str(tiny_birds), *tiny_sets("TRAIN.SNAPSHOT_INTERVAL=2")]
    first = launch([*common, "--set", f"OUTPUT_DIR={root / 'two'}", "--set", "TRAIN.MAX_EPOCH=1"])
    run_dirs = sorted((root / "two" / "birds").iterdir()) if (root / "two" / "birds").exists() else []
    resumed = launch([*common, "--set", f"OUTPUT_DIR={root / 'two'}", "--set", "TRAIN.MAX_EPOCH=2",
                      "--resume", str(run_dirs[0])]) if run_dirs else None
    # The same command in one process, in this one (no start-up of another TensorFlow).
    cfg = load_config(CFG, {**TINY, "DATA_DIR": str(tiny_birds), "TRAIN.SNAPSHOT_INTERVAL": 2,
                            "OUTPUT_DIR": str(root / "one"), "TRAIN.MAX_EPOCH": 2})
    single = trainer.train(cfg, print_fn=lambda _: None)
    return {"root": root, "first": first, "resumed": resumed, "single": single, "run_dirs": run_dirs}


def test_two_workers_train_and_only_the_chief_writes(runs):
    first = runs["first"]
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert "launching 2 workers on 127.0.0.1:" in first.stdout
    assert "replicas: 2 on 2 workers (TF_CONFIG)" in first.stdout
    assert "all 2 replicas end with the same weights" in first.stdout
    (run_dir,) = runs["run_dirs"]  # one run folder, the chief's
    saved = [line for line in first.stdout.splitlines() if line.startswith("saved ")]
    assert saved == [f"saved {run_dir / 'model_2.weights.h5'}", f"saved {run_dir / 'model_4.weights.h5'}"]


def test_a_resumed_two_worker_run_continues_at_the_next_iteration(runs):
    resumed = runs["resumed"]
    assert resumed is not None and resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "iteration 4, continuing with epoch 2" in resumed.stdout
    (run_dir,) = runs["run_dirs"]
    assert sorted(p.name for p in (runs["root"] / "two" / "birds").iterdir()) == [run_dir.name]
    record = json.loads((run_dir / "model_8.json").read_text())
    assert (record["iteration"], record["epoch"], record["optimizer_iterations"]) == (8, 2, 8)


def test_two_workers_end_with_the_weights_of_one_process(runs):
    """The same global batches and noise (both are functions of the iteration and the row), batch norm
    over the global batch (synchronised): the workers' result is the single process's, up to float
    rounding of the cross-worker sums."""
    single_dir = runs["single"]
    (run_dir,) = runs["run_dirs"]
    two, one = weights_of(run_dir / "model_8.weights.h5"), weights_of(single_dir / "model_8.weights.h5")
    assert sorted(two) == sorted(one)
    # The bias of the generator's first dense layer feeds a batch norm, so its gradient is zero in
    # theory: Adam turns the rounding noise of that zero into steps of up to the learning rate, and
    # the batch norm's moving mean follows the bias (the SGD comparison of test_distribute.py avoids this).
    noise_driven = {"generator/fc/vars/1", "generator/fc_bn/vars/2"}
    diff = {k: float(np.abs(two[k].astype(np.float64) - one[k]).max()) for k in one if one[k].dtype.kind == "f"}
    assert max(v for k, v in diff.items() if k not in noise_driven) < 2e-5, diff
    assert max(diff[k] for k in noise_driven) <= 8 * 2e-4  # 8 Adam steps of at most the learning rate


@pytest.mark.parametrize("case, message", [
    ("not_json", "TF_CONFIG: not valid JSON"),
    ("no_task", "TF_CONFIG: names no task of this process"),
    ("no_port", "TF_CONFIG: expected HOST:PORT addresses"),
    ("batch", "the batch size 3 does not divide by the 2 replicas"),
    ("unreachable", "could not reach the other workers (127.0.0.1:9) within 5 s"),
])
def test_cluster_errors_are_one_line_with_status_2(tiny_birds, tmp_path, case, message):
    args = ["--cfg", str(CFG), "--data_dir", str(tiny_birds), *tiny_sets(f"OUTPUT_DIR={tmp_path / 'out'}")]
    config = {"not_json": "{cluster:", "no_task": json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}}),
              "no_port": json.dumps({"cluster": {"worker": ["hostA", "127.0.0.1:2"]},
                                     "task": {"type": "worker", "index": 0}}),
              # Nothing answers on port 9 (discard): the other worker never comes.
              "unreachable": json.dumps({"cluster": {"worker": [f"127.0.0.1:{free_ports(1)[0]}", "127.0.0.1:9"]},
                                         "task": {"type": "worker", "index": 0}})}.get(case)
    if case == "batch":
        result = launch([*args, "--set", "TRAIN.BATCH_SIZE=3"], timeout=200)
        stderr = result.stderr
    else:
        env = dict(ENV, TF_CONFIG=config)
        extra = ["--cluster-timeout", "5"] if case == "unreachable" else []
        result = subprocess.run([sys.executable, str(SCRIPT), *args, *extra], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=200)
        stderr = result.stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2, stderr[-2000:]
    assert len(lines) >= 1 and message in lines[0] and "Traceback" not in stderr, stderr[-2000:]
    assert not (tmp_path / "out").exists()
