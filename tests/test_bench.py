"""Tests of `misc/tools/bench.py`: the FLOP count against hand counts, the timing rule, and `--quick` end to end."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from misc.tools import bench

REPO = Path(__file__).resolve().parents[1]


def run_bench(args, cwd=REPO, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "misc.tools.bench", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("batch, size, in_channels, filters, kernel, stride", [
    # The first conv of the Stage-I discriminator at the birds widths: 64x64x3 -> 32x32x64, 4x4/2.
    (1, 64, 3, 64, 4, 2),
    # A 3x3/1 conv of the up-sampling blocks, on a batch of 2.
    (2, 16, 8, 4, 3, 1),
])
def test_conv_flops_equal_the_hand_count(batch, size, in_channels, filters, kernel, stride):
    import tensorflow as tf

    from misc import custom_ops

    conv = custom_ops.conv2d(filters, kernel, stride)
    spec = tf.TensorSpec((batch, size, size, in_channels))
    flops = bench.function_flops(tf.function(conv), spec)
    out = size // stride  # SAME padding
    # One multiply-add (2 FLOPs) per output element and kernel tap and input channel; no bias.
    hand = 2 * batch * out * out * filters * kernel * kernel * in_channels
    assert flops["by_op"] == {"Conv2D": hand}
    assert flops["total"] == hand
    if (batch, size, in_channels, filters) == (1, 64, 3, 64):
        assert hand == 6_291_456


def test_time_calls_stops_at_the_step_count_or_after_the_time_limit_with_at_least_two_steps():
    calls = []
    timing = bench.time_calls(lambda: calls.append(1), warmup=2, steps=5, time_limit=1e9)
    assert len(calls) == 7 and timing["steps"] == 5 and len(timing["warmup_s"]) == 2
    calls.clear()
    timing = bench.time_calls(lambda: calls.append(1), warmup=0, steps=5, time_limit=1e-9)
    assert len(calls) == bench.MIN_TIMED_STEPS == timing["steps"]
    assert timing["time_s"]["min"] <= timing["time_s"]["median"] <= timing["time_s"]["max"]
    assert len(timing["time_s"]["all"]) == timing["steps"]


def test_summarize_gives_mean_and_sample_spread():
    stats = bench.summarize([1.0, 2.0, 3.0])
    assert stats["mean"] == 2.0 and stats["std"] == 1.0 and stats["median"] == 2.0
    assert bench.summarize([4.0])["std"] == 0.0


def test_format_tables_aligns_every_row_under_its_header_and_skips_empty_sections():
    time_s = {"mean": 0.3123, "std": 0.01, "min": 0.3, "max": 0.33}
    results = {
        "environment": {"device": "cpu"}, "options": {"policy": "float32", "xla": False}, "notes": ["shared"],
        "matmul": {"gflop_per_s": 9.0, "size": 4096, "dtype": "float32"},
        "train": [{"stage": "stageI", "batch_size": 32, "steps": 10, "time_s": time_s, "flops_per_step": 12.3e9,
                   "achieved_flops_per_s": 4.5e9, "of_matmul_rate": 0.5, "samples_per_s": 102.4,
                   "memory": {"rss_peak_mb": 1234.5}}],
        "inference": [],
        "pipeline": [{"stage": "stageII", "crop_size": 256, "batch_size": 16, "sampler": {"samples_per_s": 1234.5},
                      "tf_data": {"samples_per_s": 2345.6}, "train_step_consumes_samples_per_s": 12.345,
                      "headroom": None}],
    }
    lines = bench.format_tables(results).splitlines()
    assert lines[0] == "device: cpu; policy float32, XLA off"
    assert lines[1].startswith("matmul peak: 9 GFLOP/s (4096^3 float32 matrix product")
    assert not any("inference" in line for line in lines)
    header, row = lines[lines.index("training step (D step + G step, synthetic batch; warm-up excluded)") + 1:][:2]
    assert header.split() == ["stage", "batch", "steps", "mean", "s", "std", "s", "min", "s", "max", "s",
                              "GFLOP/step", "GFLOP/s", "of", "matmul", "img/s", "peak", "RSS", "MB"]
    assert row.split() == ["stageI", "32", "10", "0.312", "0.010", "0.300", "0.330", "12.3", "4.5", "50%", "102.40",
                           "1234"]
    assert len(row) == len(header) and header.endswith("peak RSS MB") and row.endswith("1234")
    header, row = lines[-4:-2]
    assert header.split()[-1] == "headroom" and row.split() == ["stageII", "256", "16", "1234", "2346", "12.3", "-"]
    assert len(row) == len(header)
    assert lines[-1] == "note: shared"


@pytest.mark.parametrize("args, says", [
    (["--only", "stage3"], "--only"),
    (["--batch-sizes", "64,0"], "--batch-sizes"),
    (["--steps", "0"], "--steps"),
    (["--set", "GAN.NO_SUCH_KEY=1"], "GAN.NO_SUCH_KEY"),
])
def test_bad_options_exit_2_with_one_error_line(args, says, tmp_path):
    result = run_bench([*args, "--out", str(tmp_path / "r.json")], timeout=120)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and says in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r.json").exists()


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "results" / "quick.json"
    result = run_bench(["--quick", "--out", str(out)])
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result


def test_quick_run_writes_complete_json_and_prints_the_tables(quick_run):
    out, result = quick_run
    results = json.loads(out.read_text())
    assert results["complete"] is True
    assert [p.name for p in out.parent.iterdir()] == ["quick.json"]  # no temporary file left behind
    assert f"results: {out}" in result.stdout
    for heading in ("training step", "text -> image inference", "input pipeline"):
        assert heading in result.stdout

    env = results["environment"]
    for key in ("date", "device", "cpu_model", "cpu_count", "cpu_usable", "tensorflow", "keras", "python",
                "memory_total_mb", "load_average_at_start", "load_average_at_end"):
        assert env[key] not in (None, ""), key
    options = results["options"]
    assert options["quick"] is True and options["batch_sizes"] == [2] and options["sections"] == list(bench.SECTIONS)
    assert options["policy"] == "float32" and options["xla"] is False
    assert results["configs"]["stage1"]["GAN"]["GF_DIM"] == 8
    assert results["matmul"]["dtype"] == "float32" and results["matmul"]["gflop_per_s"] > 0
    assert all(0 < r["of_matmul_rate"] for r in results["train"] + results["inference"])


def test_quick_run_times_both_training_steps_with_flops_and_memory(quick_run):
    results = json.loads(quick_run[0].read_text())
    assert [(r["stage"], r["batch_size"], r["image_size"]) for r in results["train"]] == [
        ("stage1", 2, 64), ("stage2", 2, 256)]
    for r in results["train"]:
        assert r["steps"] == 2 and len(r["warmup_s"]) == 1 and r["time_s"]["mean"] > 0
        assert r["flops_per_step"] > 0 and r["flops_by_op"]["Conv2D"] > 0
        assert r["flops_by_op"]["Conv2DBackpropFilter"] > 0 and r["flops_by_op"]["Conv2DBackpropInput"] > 0
        assert r["achieved_flops_per_s"] == pytest.approx(r["flops_per_step"] / r["time_s"]["mean"])
        assert r["samples_per_s"] == pytest.approx(2 / r["time_s"]["mean"])
        assert r["losses_finite"] and set(r["epoch_mean_losses"]) == {
            "d_loss", "d_loss_real", "d_loss_wrong", "d_loss_fake", "g_loss", "kl_loss"}
        assert r["compute_dtype"] == "float32"
        memory = r["memory"]
        assert memory["rss_peak_mb"] >= memory["rss_at_start_mb"] > 0 and memory["rss_peak_process_mb"] > 0
        assert memory["rss_peak_scope"] in ("measurement", "process") and "gpu_peak_mb" not in memory
    stage1, stage2 = results["train"]
    assert stage2["flops_per_step"] > stage1["flops_per_step"]


def test_quick_run_measures_inference_and_the_pipeline_against_the_training_steps(quick_run):
    results = json.loads(quick_run[0].read_text())
    inference = {r["what"]: r for r in results["inference"]}
    assert set(inference) == {"text_to_64px", "text_to_256px"}
    for r in inference.values():
        assert r["images_per_s"] > 0 and r["images_dtype"] == "float32"
        assert r["flops_per_image"] > r["text_encoder_flops_per_image"] > 0
    assert inference["text_to_256px"]["flops_per_image"] > inference["text_to_64px"]["flops_per_image"]

    train_rate = {r["stage"]: r["samples_per_s"] for r in results["train"]}
    pipeline = {r["stage"]: r for r in results["pipeline"]}
    assert [(pipeline[s]["stored_image_size"], pipeline[s]["crop_size"]) for s in ("stage1", "stage2")] == [
        (76, 64), (304, 256)]
    for stage, r in pipeline.items():
        assert r["sampler"]["samples_per_s"] > 0 and r["tf_data"]["samples_per_s"] > 0
        assert r["train_step_consumes_samples_per_s"] == train_rate[stage]
        assert r["headroom"] == pytest.approx(r["tf_data"]["samples_per_s"] / train_rate[stage])
