"""Benchmarks: training-step time, FLOPs, text-to-image throughput, input-pipeline rate, peak memory.

A port addition (the original has no benchmark). `python -m misc.tools.bench` (`make bench`) builds the
networks with the stages' own builders (`stageI.trainer.build_gan`, `stageII.trainer.build_gan` /
`build_networks`) at the widths of the configs (birds by default), feeds them synthetic tensors and
reports figures, never pass/fail:

* `stage1`, `stage2`: one full training step (`CondGAN.train_step`: a D step, then a G step), run
  as one `tf.function` (XLA with `--xla`) on a fixed synthetic batch; warm-up steps are excluded;
  mean and spread of the timed steps; the step's FLOPs and the FLOP/s achieved.
* `inference`: text -> image batches per second at 64 px (char-CNN-RNN + Stage-I G) and 256 px
  (+ Stage-II G), inference-mode BN, random weights (the speed does not depend on them).
* `pipeline`: samples per second of the NumPy `BatchSampler` and of the `BatchFeeder` tf.data
  pipeline on a synthetic split in the original format (76 px / 304 px images, 10 caption
  embeddings per image), against the samples per second a training step consumes.
* Peak memory of every measurement: the process's peak RSS and, with a GPU, TensorFlow's peak
  GPU allocation.

FLOPs are counted by TensorFlow's profiler (`ProfileOptionBuilder.float_operation`) on the graph
of the traced function, before Grappler or XLA rewrite it: a multiply-add counts as 2 FLOPs, and
only ops with a registered count (convolutions and their gradients, matmuls, element-wise
arithmetic, reductions) are counted; activations (ReLU, leaky ReLU, tanh), random ops and copies
are not. Convolutions and matmuls make up nearly all of the count (`conv_matmul_share`).

The JSON (default `bench_results/results.json`, rewritten atomically after every measurement, so
an interrupted run keeps what it measured) records the device, CPU, versions, options and date.
"""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import logging

import numpy as np

from misc.cli import import_tensorflow, run_cli
from misc.config import Config, load_config, parse_override
from misc.errors import ConfigError
from misc.utils import atomic_write_text

tf = import_tensorflow()  # quietly, before the modules below import TensorFlow

import keras  # noqa: E402

from misc.datasets import BatchFeeder, BatchSampler, SplitData  # noqa: E402
from misc.text.char_cnn_rnn import WIDTHS, CharCnnRnn, encode_text_tf  # noqa: E402
from misc import training  # noqa: E402
from stageI import STAGE as STAGE_I  # noqa: E402
from stageI import trainer as stage1_trainer  # noqa: E402
from stageII import STAGE as STAGE_II  # noqa: E402
from stageII import trainer as stage2_trainer  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SECTIONS = ("stage1", "stage2", "inference", "pipeline")
DEFAULT_OUT = Path("bench_results") / "results.json"
DEFAULT_CFGS = {"stage1": "stageI/cfg/birds.yml", "stage2": "stageII/cfg/birds.yml"}
# Stored image size and crop size of each stage (original `misc/datasets.py`): 76 -> 64 px (Stage-I),
# 304 -> 256 px (Stage-II).
IMAGE_SIZES = {"stage1": (STAGE_I.stored_size, STAGE_I.image_size), "stage2": (STAGE_II.stored_size, STAGE_II.image_size)}
# Full runs: the original's batch (64) and a smaller one. `--quick`: tiny widths and batch, for the test.
DEFAULTS = {"batch_sizes": [64, 16], "steps": 10, "warmup": 1, "time_limit": 60.0}
QUICK_DEFAULTS = {"batch_sizes": [2], "steps": 2, "warmup": 1, "time_limit": 5.0}
QUICK_OVERRIDES = {"GAN.GF_DIM": 8, "GAN.DF_DIM": 4, "GAN.EMBEDDING_DIM": 8, "GAN.R_NUM": 1, "TEXT.DIMENSION": 16}
# At least this many steps are timed, whatever `--time-limit` says, so that there is a spread.
MIN_TIMED_STEPS = 2
# The captions of the synthetic inference batches (one birds caption, repeated; the encoder's cost
# does not depend on the text).
CAPTION = "this bird has a red crown, a short pointed beak and white wings with black bars"
# Synthetic splits: CUB has about 60 images per class, 10 caption embeddings per image.
CLASS_SIZE = 60
CAPTIONS_PER_IMAGE = 10
# Batches taken from a new `BatchFeeder` before timing: more than its queue holds (4), so that the
# timed batches come at the rate the feeder makes them, not from the queue it filled ahead.
FEEDER_DRAIN = 6
# Policies of `--mixed-precision`: bfloat16 on CPUs (oneDNN; float16 has no fast CPU kernels),
# float16 on GPUs.
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# The matrix product whose rate is the machine's practical peak for these networks (4096^3: 137 GFLOP).
MATMUL_SIZE = 4096
MATMUL_REPEATS = 3
MIB = 1024 * 1024
DESCRIPTION = """\
Measure StackGAN at the widths of the configs (birds by default) on synthetic tensors, and write the
figures to a JSON file and as tables (figures, not pass/fail):

  stage1, stage2  one full training step (D step + G step): time (warm-up excluded), FLOPs, FLOP/s
  inference       text -> 64 px and text -> 256 px images per second (char-CNN-RNN + generators)
  pipeline        samples per second of BatchSampler and of the BatchFeeder tf.data pipeline,
                  against the samples per second a training step consumes
  every one       peak memory (process RSS; TensorFlow's peak on GPU:0 when there is a GPU)

Each timed measurement stops after --steps steps or, once 2 steps are timed, after --time-limit
seconds. FLOPs are counted by TensorFlow's profiler on the traced graph (a multiply-add is 2)."""


# ---------------------------------------------------------------------------------------- options
def _positive_int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers such as 64,16, got {text!r}")
    return values


def _sections(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in SECTIONS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(SECTIONS)}, got {text!r}")
    return [name for name in SECTIONS if name in names]


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m misc.tools.bench`."""
    parser = argparse.ArgumentParser(
        prog="python -m misc.tools.bench",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m misc.tools.bench                                   # birds widths, batches 64 and 16\n"
               "  python -m misc.tools.bench --only stage1,pipeline --steps 5\n"
               "  python -m misc.tools.bench --mixed-precision --xla --batch-sizes 64\n"
               "  python -m misc.tools.bench --set GAN.GF_DIM=64 --out bench_results/gf64.json\n"
               "  python -m misc.tools.bench --quick                           # tiny widths: does it all run?\n"
               "  make bench ARGS='--only stage1 --steps 3'",
    )
    parser.add_argument("--only", type=_sections, default=list(SECTIONS), metavar="LIST",
                        help=f"comma-separated measurements to run, from {','.join(SECTIONS)} (default: all)")
    parser.add_argument("--batch-sizes", type=_positive_int_list, default=None, metavar="LIST",
                        help=f"batch sizes to measure (default {','.join(map(str, DEFAULTS['batch_sizes']))})")
    parser.add_argument("--steps", type=_positive(int), default=None,
                        help=f"timed steps (or calls, or batches) per measurement, at most "
                             f"(default {DEFAULTS['steps']})")
    parser.add_argument("--warmup", type=int, default=None,
                        help=f"untimed steps before the timed ones; the first one includes graph building and "
                             f"XLA compilation (default {DEFAULTS['warmup']})")
    parser.add_argument("--time-limit", type=_positive(float), default=None, metavar="SECONDS",
                        help=f"stop a measurement's timed steps after this long, once {MIN_TIMED_STEPS} are timed "
                             f"(default {DEFAULTS['time_limit']:g})")
    parser.add_argument("--mixed-precision", nargs="?", const="bfloat16", default="none",
                        choices=("none", "bfloat16", "float16"), metavar="bfloat16|float16",
                        help="measure in mixed precision as training does (TRAIN.MIXED_PRECISION): bfloat16 when "
                             "given alone, float16 with dynamic loss scaling (GPUs)")
    parser.add_argument("--xla", action=argparse.BooleanOptionalAction, default=None,
                        help="compile the measured functions with XLA (jit_compile); default: what Keras fit "
                             "does, i.e. XLA on a GPU, not on a CPU")
    parser.add_argument("--quick", action="store_true",
                        help="tiny widths (GF_DIM 8, DF_DIM 4, EMBEDDING_DIM 8, R_NUM 1, TEXT.DIMENSION 16), "
                             "batch 2, 2 timed steps: checks that everything runs (about a minute of CPU time, mostly "
                             "graph building); the figures mean nothing")
    parser.add_argument("--cfg1", default=DEFAULT_CFGS["stage1"], metavar="YAML",
                        help=f"Stage-I config, for its widths (default {DEFAULT_CFGS['stage1']})")
    parser.add_argument("--cfg2", default=DEFAULT_CFGS["stage2"], metavar="YAML",
                        help=f"Stage-II config, for its widths (default {DEFAULT_CFGS['stage2']})")
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                        help="override a key of both configs, e.g. --set GAN.GF_DIM=64; repeatable")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data and the noise (default 0)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), metavar="JSON",
                        help=f"where the results go (default {DEFAULT_OUT})")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line and fill in the defaults of a full or a `--quick` run."""
    args = build_parser().parse_args(argv)
    defaults = QUICK_DEFAULTS if args.quick else DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.warmup < 0:
        raise ConfigError(f"--warmup {args.warmup}: must not be negative")
    return args


def load_configs(args: argparse.Namespace) -> dict[str, Config]:
    """The Stage-I and Stage-II configs, with `--quick`'s tiny widths and then `--set` applied."""
    overrides = dict(QUICK_OVERRIDES) if args.quick else {}
    overrides.update(parse_override(text) for text in args.overrides)
    overrides["TRAIN.MIXED_PRECISION"] = args.mixed_precision
    return {stage: load_config(getattr(args, f"cfg{stage[-1]}"), overrides=overrides) for stage in ("stage1", "stage2")}


# ---------------------------------------------------------------------------------------- measuring tools
def graph_flops(graph) -> dict[str, Any]:
    """FLOPs of a TensorFlow graph, counted by TensorFlow's profiler (`float_operation`).

    A multiply-add counts as 2 FLOPs (a `Conv2D` costs 2 * N * H_out * W_out * K_h * K_w * C_in *
    C_out); ops without a registered count (activations, random ops, copies) count 0.

    Args:
      graph: a `tf.Graph`, e.g. `concrete_function.graph`; every counted op needs a static shape.

    Returns:
      `{"total": int, "by_op": {op type: int}, "conv_matmul_share": float}`.
    """
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)  # the profiler's v1 shape helper logs a deprecation notice
    try:
        result = tf.compat.v1.profiler.profile(graph=graph, cmd="op", options=options)
    finally:
        logger.setLevel(level)
    # The "op" view is a chain of op types, each node holding its own FLOPs and the next type as child.
    by_op, nodes = {}, list(result.children)
    while nodes:
        node = nodes.pop()
        if node.float_ops:
            by_op[node.name] = int(node.float_ops)
        nodes.extend(node.children)
    total = int(result.total_float_ops)
    heavy = sum(flops for op, flops in by_op.items() if op.startswith(("Conv", "MatMul", "BatchMatMul")))
    return {"total": total, "by_op": dict(sorted(by_op.items(), key=lambda item: -item[1])),
            "conv_matmul_share": heavy / total if total else 0.0}


def function_flops(fn, *specs) -> dict[str, Any]:
    """`graph_flops` of the graph that `fn` (a `tf.function`) traces for the input `specs`."""
    return graph_flops(fn.get_concrete_function(*specs).graph)


def summarize(times: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation, min, median and max of timings (seconds), and the timings."""
    values = np.asarray(times, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "min": float(values.min()), "median": float(np.median(values)), "max": float(values.max()),
            "all": [round(float(v), 6) for v in values]}


def time_calls(call: Callable[[], Any], warmup: int, steps: int, time_limit: float,
               label: str = "") -> dict[str, Any]:
    """Time `call()` (which must block until its work is done) after `warmup` untimed calls.

    Stops after `steps` timed calls or, once `MIN_TIMED_STEPS` are timed, when the timed calls have
    taken more than `time_limit` seconds. Prints each call's time on one line, as progress.

    Returns:
      `{"warmup_s": [...], "steps": n, "time_s": summarize(...)}`.
    """
    print(f"  {label}: ", end="", flush=True)
    warm = []
    for _ in range(warmup):
        start = time.perf_counter()
        call()
        warm.append(time.perf_counter() - start)
        print(f"(warm-up {warm[-1]:.3g} s) ", end="", flush=True)
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < steps:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
        print(f"{times[-1]:.3g} ", end="", flush=True)
        if len(times) >= min(MIN_TIMED_STEPS, steps) and time.perf_counter() - began > time_limit:
            break
    print("s", flush=True)
    return {"warmup_s": [round(t, 6) for t in warm], "steps": len(times), "time_s": summarize(times)}


def _proc_status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status (e.g. VmRSS, VmHWM) in MiB; None where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


class MemoryProbe:
    """Peak memory of one measurement: process RSS and, with a GPU, TensorFlow's GPU allocations.

    `start()` resets the kernel's RSS high-water mark of the process (`/proc/self/clear_refs`,
    Linux >= 4.0) and TensorFlow's GPU peak, so `rss_peak_mb` (VmHWM) covers only the measurement.
    Where the reset is refused, `rss_peak_mb` is `resource.getrusage`'s peak over the process's
    life (`rss_peak_scope` says which). `rss_peak_process_mb` is always the latter. Either way a
    peak includes everything the process holds (TensorFlow, the models built, the data).
    """

    def __init__(self, gpu: bool):
        self.gpu = gpu
        self.resettable = False
        self.rss_start_mb: float | None = None

    def start(self) -> None:
        gc.collect()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.resettable = _proc_status_mb("VmHWM") is not None
        except OSError:
            self.resettable = False
        self.rss_start_mb = _proc_status_mb("VmRSS")
        if self.gpu:
            tf.config.experimental.reset_memory_stats("GPU:0")

    def peak(self) -> dict[str, Any]:
        process_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        peak = _proc_status_mb("VmHWM") if self.resettable else process_peak
        out = {"rss_peak_mb": round(peak, 1), "rss_peak_scope": "measurement" if self.resettable else "process",
               "rss_peak_process_mb": round(process_peak, 1),
               "rss_at_start_mb": None if self.rss_start_mb is None else round(self.rss_start_mb, 1)}
        if self.gpu:
            out["gpu_peak_mb"] = round(tf.config.experimental.get_memory_info("GPU:0")["peak"] / MIB, 1)
        return out


def matmul_rate(dtype: str, quick: bool = False) -> dict[str, Any]:
    """The machine's matrix-product rate in `dtype`: the best of `MATMUL_REPEATS` products of two
    `MATMUL_SIZE`-square matrices (256 with `quick`), after one untimed product."""
    size = 256 if quick else MATMUL_SIZE
    a = tf.random.stateless_normal((size, size), seed=(1, 2), dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(tf.transpose(a), dtype)
    product = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y)[:1, :1], tf.float32)))
    product(a, b)
    times = []
    for _ in range(MATMUL_REPEATS):
        start = time.perf_counter()
        product(a, b).numpy()
        times.append(time.perf_counter() - start)
    flops = 2.0 * size ** 3
    print(f"matmul {size}^3 {dtype}: {flops / min(times) / 1e9:.0f} GFLOP/s", flush=True)
    return {"dtype": dtype, "size": size, "flops": flops, "seconds": [round(s, 6) for s in times],
            "gflop_per_s": flops / min(times) / 1e9}


def _release_models() -> None:
    """Free the models of a finished measurement, keeping the dtype policy (which `clear_session` resets)."""
    policy = keras.mixed_precision.global_policy()
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(policy)
    gc.collect()


# ---------------------------------------------------------------------------------------- measurements
def build_stage_gan(stage: str, cfg: Config):
    """The compiled and built GAN of a stage, from the stage's own builder (random weights)."""
    if stage == "stage1":
        return stage1_trainer.build_gan(cfg)
    stage1_generator, _ = stage1_trainer.build_networks(cfg)  # a trained one would be loaded from a checkpoint
    return stage2_trainer.build_gan(cfg, stage1_generator)


def bench_train(stage: str, cfg: Config, args: argparse.Namespace, memory: MemoryProbe,
                record: Callable[[dict], None]) -> None:
    """Time one full training step of `stage` at every batch size; `record` each result."""
    crop = IMAGE_SIZES[stage][1]
    print(f"{stage}: building the networks (GF_DIM {cfg.GAN.GF_DIM}, DF_DIM {cfg.GAN.DF_DIM})", flush=True)
    gan = build_stage_gan(stage, cfg)
    for batch_size in args.batch_sizes:
        memory.start()
        rng = tf.random.Generator.from_seed(args.seed)
        images = rng.uniform((batch_size, crop, crop, 3), -1.0, 1.0)
        wrong_images = rng.uniform((batch_size, crop, crop, 3), -1.0, 1.0)
        embeddings = rng.normal((batch_size, cfg.TEXT.DIMENSION))
        # What `fit` runs per step: the model's train_step inside one tf.function. `train_step` has no
        # Python control flow on tensors, so AutoGraph would give the same graph, only slower to trace.
        step = tf.function(lambda x, w, e: gan.train_step((x, w, e)), jit_compile=args.xla, autograph=False)
        specs = [tf.TensorSpec(t.shape, t.dtype) for t in (images, wrong_images, embeddings)]
        start = time.perf_counter()
        flops = function_flops(step, *specs)
        trace_s = time.perf_counter() - start
        last = {}

        def call():
            last.update({name: float(value) for name, value in step(images, wrong_images, embeddings).items()})

        timing = time_calls(call, args.warmup, args.steps, args.time_limit, f"{stage} batch {batch_size}")
        mean = timing["time_s"]["mean"]
        record({"stage": stage, "batch_size": batch_size, "image_size": crop,
                "compute_dtype": gan.generator.compute_dtype, "trace_and_count_s": round(trace_s, 3), **timing,
                "flops_per_step": flops["total"], "flops_by_op": flops["by_op"],
                "conv_matmul_share": round(flops["conv_matmul_share"], 4),
                "achieved_flops_per_s": flops["total"] / mean, "samples_per_s": batch_size / mean,
                "epoch_mean_losses": last, "losses_finite": bool(np.all(np.isfinite(list(last.values())))),
                "memory": memory.peak()})
    del gan
    _release_models()


def build_text_encoder(cfg: Config, quick: bool):
    """A char-CNN-RNN with random weights at the original widths (`small` for `--quick`), giving
    `TEXT.DIMENSION`-sized embeddings."""
    return CharCnnRnn(**{**WIDTHS["small" if quick else "full"], "emb_dim": cfg.TEXT.DIMENSION}, name="text_encoder")


def bench_inference(cfgs: dict[str, Config], args: argparse.Namespace, memory: MemoryProbe,
                    record: Callable[[dict], None]) -> None:
    """Images per second of text -> 64 px (encoder, Stage-I G) and text -> 256 px (+ Stage-II G)."""
    cfg1, cfg2 = cfgs["stage1"], cfgs["stage2"]
    print("inference: building the text encoder and the generators", flush=True)
    encoder = build_text_encoder(cfg1, args.quick)
    encoder.build()
    generator1, _ = stage1_trainer.build_networks(cfg1)
    # Stage-II runs its own Stage-I generator (Stage-II widths), as `StageIIGAN` does.
    hr_stage1_generator, _ = stage1_trainer.build_networks(cfg2)
    generator2, _ = stage2_trainer.build_networks(cfg2)

    # String ops cannot be compiled by XLA: the text is one-hot encoded in a plain tf.function.
    encode = tf.function(encode_text_tf, autograph=False)

    # The noise is drawn here in float32, as `CondGAN.sample_noise` draws it for training: the CA
    # layer's own draw (epsilon left out) asks for a truncated normal in the compute dtype, which
    # XLA on a CPU has no kernel for in bfloat16 (`--mixed-precision --xla` fails there).
    def z_noise(one_hot, z_dim):
        return tf.random.normal((tf.shape(one_hot)[0], z_dim))

    def ca_noise(one_hot, ef_dim):
        return tf.random.truncated_normal((tf.shape(one_hot)[0], ef_dim))

    def text_to_64(one_hot):
        embedding = encoder(one_hot)
        inputs = (embedding, z_noise(one_hot, cfg1.Z_DIM), ca_noise(one_hot, cfg1.GAN.EMBEDDING_DIM))
        return generator1(inputs, training=False)[0]

    def text_to_256(one_hot):
        # The inference path of `StageIIGAN.generate_stages`: Stage-I G, then Stage-II G on its output.
        embedding = encoder(one_hot)
        inputs = (embedding, z_noise(one_hot, cfg2.Z_DIM), ca_noise(one_hot, cfg2.GAN.EMBEDDING_DIM))
        stage1_images = hr_stage1_generator(inputs, training=False)[0]
        hr_inputs = (stage1_images, embedding, ca_noise(one_hot, cfg2.GAN.EMBEDDING_DIM))
        return generator2(hr_inputs, training=False)[0]

    encoder_flops: dict[int, int] = {}  # per batch size; the same for both resolutions
    for name, size, fn in (("text_to_64px", 64, text_to_64), ("text_to_256px", 256, text_to_256)):
        generate = tf.function(fn, jit_compile=args.xla, autograph=False)
        for batch_size in args.batch_sizes:
            memory.start()
            texts = tf.constant([CAPTION] * batch_size)
            one_hot_spec = tf.TensorSpec(encode(texts).shape, tf.float32)
            start = time.perf_counter()
            flops = function_flops(generate, one_hot_spec)
            if batch_size not in encoder_flops:
                encoder_flops[batch_size] = function_flops(tf.function(encoder, autograph=False), one_hot_spec)["total"]
            trace_s = time.perf_counter() - start

            dtypes = set()

            def call():
                images = generate(encode(texts))
                images.numpy()  # images delivered to the host
                dtypes.add(images.dtype.name)

            timing = time_calls(call, args.warmup, args.steps, args.time_limit, f"{name} batch {batch_size}")
            mean = timing["time_s"]["mean"]
            record({"what": name, "image_size": size, "batch_size": batch_size, "images_dtype": dtypes.pop(),
                    "trace_and_count_s": round(trace_s, 3),
                    **timing, "images_per_s": batch_size / mean, "flops_per_image": flops["total"] / batch_size,
                    "text_encoder_flops_per_image": encoder_flops[batch_size] / batch_size,
                    "achieved_flops_per_s": flops["total"] / mean, "memory": memory.peak()})
    del encoder, generator1, hr_stage1_generator, generator2
    _release_models()


def synthetic_split(n: int, image_size: int, text_dim: int, seed: int) -> SplitData:
    """An in-memory split in the original format: uint8 (n, S, S, 3) images stored class-ordered,
    10 float32 caption embeddings per image, CUB-like file names and class ids."""
    rng = np.random.default_rng(seed)
    return SplitData(
        data_dir=Path("synthetic"), split="train",
        images=rng.integers(0, 256, size=(n, image_size, image_size, 3), dtype=np.uint8),
        embeddings=rng.standard_normal((n, CAPTIONS_PER_IMAGE, text_dim), dtype=np.float32),
        filenames=[f"{i // CLASS_SIZE + 1:03d}.Synthetic/Synthetic_{i:04d}" for i in range(n)],
        class_ids=np.arange(n, dtype=np.int64) // CLASS_SIZE + 1)


def bench_pipeline(stage: str, cfg: Config, args: argparse.Namespace, memory: MemoryProbe,
                   record: Callable[[dict], None]) -> None:
    """Samples per second of `BatchSampler` (NumPy) and of the `BatchFeeder` tf.data pipeline.

    The comparison with the training steps is added by `compare_pipeline_with_training`.
    """
    image_size, crop = IMAGE_SIZES[stage]
    for batch_size in args.batch_sizes:
        memory.start()
        # Several batches' worth of images, so that permutations and wrong-image draws vary.
        data = synthetic_split(max(4 * batch_size, 2 * CLASS_SIZE), image_size, cfg.TEXT.DIMENSION, args.seed)
        sampler = BatchSampler(data, batch_size, crop, cfg.TRAIN.NUM_EMBEDDING, args.seed)
        label = f"{stage} pipeline batch {batch_size}"
        sampler_timing = time_calls(sampler.next_batch, args.warmup, args.steps, args.time_limit,
                                    f"{label}, BatchSampler")
        with BatchFeeder(data, batch_size, crop, cfg.TRAIN.NUM_EMBEDDING, args.seed) as feeder:
            batches = iter(feeder.dataset())
            for _ in range(FEEDER_DRAIN):
                next(batches)
            feeder_timing = time_calls(lambda: next(batches), args.warmup, max(args.steps, 5), args.time_limit,
                                       f"{label}, BatchFeeder")
        record({"stage": stage, "batch_size": batch_size, "stored_image_size": image_size, "crop_size": crop,
                "images_in_split": len(data),
                "sampler": {**sampler_timing, "samples_per_s": batch_size / sampler_timing["time_s"]["mean"]},
                "tf_data": {**feeder_timing, "samples_per_s": batch_size / feeder_timing["time_s"]["mean"]},
                "train_step_consumes_samples_per_s": None, "headroom": None,
                "memory": memory.peak()})
        del data, sampler


def compare_pipeline_with_training(results: dict[str, Any]) -> None:
    """Set each pipeline entry's `train_step_consumes_samples_per_s` (batch / step time of the same
    stage and batch size, if measured) and `headroom` (tf.data samples per second over that)."""
    consumed = {(r["stage"], r["batch_size"]): r["samples_per_s"] for r in results["train"]}
    for entry in results["pipeline"]:
        rate = consumed.get((entry["stage"], entry["batch_size"]))
        entry["train_step_consumes_samples_per_s"] = rate
        entry["headroom"] = None if rate is None else entry["tf_data"]["samples_per_s"] / rate


# ---------------------------------------------------------------------------------------- environment
def _cpu_info() -> dict[str, Any]:
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model is None:
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"cpu_model": model, "cpu_count": os.cpu_count(), "cpu_usable": usable,
            "cpu_bf16_instructions": sorted(flags.intersection(CPU_BF16_FLAGS))}


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def environment(tf, gpus: list) -> dict[str, Any]:
    """Device, CPU, memory, versions, date and load of the machine running the benchmark."""
    gpu_names = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus]
    try:
        with open("/proc/meminfo") as f:
            mem_total_mb = round(int(f.readline().split()[1]) / 1024)
    except (OSError, ValueError, IndexError):
        mem_total_mb = None
    cpu = _cpu_info()
    device = f"GPU:0 {gpu_names[0]}" if gpus else f"CPU {cpu['cpu_model']} ({cpu['cpu_usable']} cores)"
    return {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "device": device,
            "gpus": gpu_names, **cpu, "memory_total_mb": mem_total_mb,
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
            "python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "platform": platform.platform(), "git_commit": _git_commit()}


# ---------------------------------------------------------------------------------------- report
def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _table(title: str, columns: Sequence[tuple[str, int, Callable[[dict], str]]], rows: Sequence[dict]) -> list[str]:
    """A titled plain-text table: the first column left-aligned, the others right-aligned.

    Args:
      title: the line above the header.
      columns: (header, width, cell) per column; `cell(row)` formats the row's value as a string.
      rows: the result records.
    """
    def line(cells):
        return "".join(f"{cell:{'<' if i == 0 else '>'}{width}}" for i, (cell, (_, width, _)) in
                       enumerate(zip(cells, columns)))
    return ["", title, line([header for header, _, _ in columns])] + [
        line([cell(row) for _, _, cell in columns]) for row in rows]


def _seconds(statistic: str, width: int) -> tuple[str, int, Callable[[dict], str]]:
    """A column of one timing statistic (`mean`, `std`, ...) of `time_s`."""
    return f"{statistic} s", width, lambda r: f"{r['time_s'][statistic]:.3f}"


_BATCH = ("batch", 6, lambda r: str(r["batch_size"]))
_ACHIEVED = ("GFLOP/s", 9, lambda r: f"{r['achieved_flops_per_s'] / 1e9:.1f}")
_OF_PEAK = ("of matmul", 10, lambda r: "-" if r.get("of_matmul_rate") is None else f"{r['of_matmul_rate']:.0%}")
_PEAK_RSS = ("peak RSS MB", 12, lambda r: f"{r['memory']['rss_peak_mb']:.0f}")
_TRAIN_COLUMNS = (
    ("stage", 8, lambda r: r["stage"]), _BATCH, ("steps", 6, lambda r: str(r["steps"])),
    _seconds("mean", 9), _seconds("std", 8), _seconds("min", 8), _seconds("max", 8),
    ("GFLOP/step", 12, lambda r: f"{r['flops_per_step'] / 1e9:.1f}"), _ACHIEVED, _OF_PEAK,
    ("img/s", 8, lambda r: f"{r['samples_per_s']:.2f}"), _PEAK_RSS,
)
_INFERENCE_COLUMNS = (
    ("what", 15, lambda r: r["what"]), _BATCH, ("calls", 6, lambda r: str(r["steps"])),
    _seconds("mean", 9), _seconds("std", 8),
    ("images/s", 10, lambda r: f"{r['images_per_s']:.2f}"),
    ("GFLOP/img", 11, lambda r: f"{r['flops_per_image'] / 1e9:.2f}"), _ACHIEVED, _OF_PEAK, _PEAK_RSS,
)
_PIPELINE_COLUMNS = (
    ("stage", 8, lambda r: r["stage"]), ("crop", 5, lambda r: str(r["crop_size"])), _BATCH,
    ("sampler/s", 11, lambda r: f"{r['sampler']['samples_per_s']:.0f}"),
    ("tf.data/s", 11, lambda r: f"{r['tf_data']['samples_per_s']:.0f}"),
    ("step uses/s", 12, lambda r: _fmt(r["train_step_consumes_samples_per_s"])),
    ("headroom", 10, lambda r: _fmt(r["headroom"])),
)


def format_tables(results: dict[str, Any]) -> str:
    """The results as plain-text tables."""
    lines = [f"device: {results['environment']['device']}; policy {results['options']['policy']}, "
             f"XLA {'on' if results['options']['xla'] else 'off'}"]
    matmul = results.get("matmul")
    if matmul:
        lines.append(f"matmul peak: {matmul['gflop_per_s']:.0f} GFLOP/s ({matmul['size']}^3 {matmul['dtype']} matrix "
                     "product, best of its repeats); 'of matmul' is each step's rate against it")
    if results["train"]:
        lines += _table("training step (D step + G step, synthetic batch; warm-up excluded)",
                        _TRAIN_COLUMNS, results["train"])
    if results["inference"]:
        lines += _table("text -> image inference (char-CNN-RNN + generators, inference-mode BN)",
                        _INFERENCE_COLUMNS, results["inference"])
    if results["pipeline"]:
        lines += _table("input pipeline (synthetic split, original format) against what a training step consumes",
                        _PIPELINE_COLUMNS, results["pipeline"])
    for note in results["notes"]:
        lines += ["", f"note: {note}"]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the measurements `args` asks for; write and return the results."""
    cfgs = load_configs(args)
    out = Path(args.out)
    gpus = tf.config.list_physical_devices("GPU")
    args.xla = bool(gpus) if args.xla is None else args.xla
    policy = training.POLICIES[args.mixed_precision]
    env = environment(tf, gpus)
    notes = []
    if not gpus:
        notes.append("CPU timings; on a machine shared with other work they vary from run to run "
                     f"(load average {env['load_average_at_start']} at the start)")
    precision_note = training.precision_note(args.mixed_precision)
    if precision_note:
        notes.append(precision_note.removeprefix("note: "))
    results: dict[str, Any] = {
        "schema": 1, "complete": False, "environment": env,
        "options": {"sections": args.only, "batch_sizes": args.batch_sizes, "steps": args.steps,
                    "warmup": args.warmup, "time_limit_s": args.time_limit, "mixed_precision": args.mixed_precision,
                    "policy": policy, "xla": args.xla, "quick": args.quick, "seed": args.seed,
                    "overrides": args.overrides, "argv": sys.argv[1:]},
        "configs": {stage: {"path": getattr(args, f"cfg{stage[-1]}"), "Z_DIM": cfg.Z_DIM,
                            "GAN": cfg.GAN.to_dict(), "TEXT.DIMENSION": cfg.TEXT.DIMENSION,
                            "TRAIN.NUM_EMBEDDING": cfg.TRAIN.NUM_EMBEDDING}
                    for stage, cfg in cfgs.items()},
        "flop_counting": "TensorFlow profiler, ProfileOptionBuilder.float_operation, on the graph of the traced "
                         "tf.function (before Grappler/XLA); a multiply-add is 2 FLOPs; activations, random ops and "
                         "copies count 0",
        "train": [], "inference": [], "pipeline": [], "notes": notes,
    }

    def save() -> None:
        compare_pipeline_with_training(results)
        atomic_write_text(out, json.dumps(results, indent=2) + "\n")

    def recorder(section: str) -> Callable[[dict], None]:
        def record(entry: dict) -> None:
            if "achieved_flops_per_s" in entry and results.get("matmul"):
                entry["of_matmul_rate"] = entry["achieved_flops_per_s"] / (results["matmul"]["gflop_per_s"] * 1e9)
            results[section].append(entry)
            save()
        return record

    memory = MemoryProbe(gpu=bool(gpus))
    keras.utils.set_random_seed(args.seed)
    if {"stage1", "stage2", "inference"} & set(args.only):
        results["matmul"] = matmul_rate(keras.mixed_precision.Policy(policy).compute_dtype, args.quick)
        save()
    # The quickest measurements first, so that an interrupted run has kept most of them.
    with training.precision(args.mixed_precision):
        if "pipeline" in args.only:
            for stage in ("stage1", "stage2"):
                bench_pipeline(stage, cfgs[stage], args, memory, recorder("pipeline"))
        if "inference" in args.only:
            bench_inference(cfgs, args, memory, recorder("inference"))
        for stage in ("stage1", "stage2"):
            if stage in args.only:
                bench_train(stage, cfgs[stage], args, memory, recorder("train"))
    if any(not r["losses_finite"] for r in results["train"]):
        notes.append("some training steps gave non-finite losses (see epoch_mean_losses)")
    results["environment"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    results["complete"] = True
    save()
    print()
    print(format_tables(results))
    print(f"\nresults: {out}")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    run_cli(main)
