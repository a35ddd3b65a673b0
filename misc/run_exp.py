"""The command line of `stageI/run_exp.py` and `stageII/run_exp.py`, written once.

Port of the original `run_exp.py` of both stages (`--cfg`, `--gpu`; `TRAIN.FLAG: False` for the
evaluation mode) with the port's options. Every check that needs no TensorFlow (the config, the
checkpoint to start from, the data) runs first; TensorFlow, which takes seconds to start, is
imported only after them, in `_load`: the one place a stage's trainer or the sampler is imported,
by name, so that this module stays importable without TensorFlow and without the stage packages
above it.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from types import ModuleType
from typing import Sequence

from misc.cli import import_tensorflow
from misc.config import PRECISIONS, load_config, parse_override
from misc.distribute import CLUSTER_TIMEOUT_S, parse_gpu_list, resolve_cluster, select_gpus
from misc.errors import ConfigError
from misc.runs import StageInfo, prepare_run


def build_parser(stage: StageInfo, doc: str) -> argparse.ArgumentParser:
    """The command line of the original `run_exp.py` (`--cfg`, `--gpu`) plus the port's options.

    Args:
      stage: the stage (names the script and the example config).
      doc: the script's module docstring: its first two paragraphs become the description, its
        "Examples:" part the epilog.
    """
    head, examples = doc.split("Examples:", 1)
    parser = argparse.ArgumentParser(
        prog=f"{stage.name}/run_exp.py",
        description="\n\n".join(head.strip().split("\n\n")[:2]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:" + examples,
    )
    parser.add_argument("--cfg", required=True, metavar="YAML", help=f"config file, e.g. {stage.name}/cfg/birds.yml")
    parser.add_argument("--gpu", metavar="IDS", default=None,
                        help="comma-separated GPU indices to use, e.g. 0,1 (several: data-parallel with "
                             "MirroredStrategy); -1 for CPU only; default: all visible GPUs")
    parser.add_argument("--dry-run", action="store_true",
                        help="build the networks at the config's widths, print their trainable parameter "
                             "counts and exit without loading data or writing anything")
    parser.add_argument("--resume", metavar="RUN_DIR_OR_CHECKPOINT", default=None,
                        help="continue a run in its own folder from its newest checkpoint (a run folder) or "
                             "from a given model_<iteration>.weights.h5")
    parser.add_argument("--data_dir", metavar="DIR", default=None,
                        help="dataset folder (overrides DATA_DIR; default Data/<DATASET_NAME>)")
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                        help="override a config key (VALUE read as YAML), e.g. --set TRAIN.MAX_EPOCH=10; repeatable")
    parser.add_argument("--mixed-precision", nargs="?", const="bfloat16", choices=PRECISIONS,
                        default=None, metavar="bfloat16|float16",
                        help="train in mixed precision (TRAIN.MIXED_PRECISION): bfloat16 when given alone (CPUs with "
                             "AMX or AVX-512 bf16, recent GPUs), float16 with loss scaling (GPUs)")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's start-up and device messages")
    workers = parser.add_argument_group(
        "several machines (MultiWorkerMirroredStrategy; every worker runs the same command; also TF_CONFIG)")
    workers.add_argument("--cluster", metavar="HOST:PORT,...|slurm", default=None,
                         help="every worker's address, the same list on each worker (with --task-index), or slurm "
                              "inside a Slurm job step (srun)")
    workers.add_argument("--task-index", metavar="I", type=int, default=None,
                         help="this worker's place in --cluster (0 is the chief, which writes the run folder)")
    workers.add_argument("--cluster-timeout", metavar="S", type=float, default=CLUSTER_TIMEOUT_S,
                         help=f"seconds to wait for the other workers (default {CLUSTER_TIMEOUT_S:.0f})")
    evaluation = parser.add_argument_group(
        "evaluation mode (--set TRAIN.FLAG=False: sample the test split with the snapshot of "
        "TRAIN.PRETRAINED_MODEL, default the newest of this stage)")
    evaluation.add_argument("--out", metavar="DIR", default=None,
                            help="output folder (default <run folder>/samples_<iteration>): "
                                 "test/<filename>_c<caption>_s<sample>.png, sheets/, samples.json")
    evaluation.add_argument("--num-samples", metavar="K", type=int, default=None,
                            help="samples per caption (default min(16, TRAIN.NUM_COPY), as the original)")
    evaluation.add_argument("--num-captions", metavar="N", type=int, default=1,
                            help="captions per test image, the first N (default 1: caption 0, as the original)")
    return parser


def reproducible_threads() -> None:
    """Have TensorFlow, once started, run one op at a time (each on all the cores), unless the user
    set `TF_NUM_INTEROP_THREADS`.

    With several inter-op threads, ops that may overlap (the D step's last and the G step's first,
    a batch being prepared) do overlap, and then some CPU kernels round differently: two identical
    one-epoch Stage-II runs at the shapes widths differed in the third digit of their losses. With
    one thread they end with the same bytes, at no cost in speed on the machine measured
    (docs/training.md, which also says what remains).
    """
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")


def _load(module: str, verbose: bool) -> ModuleType:
    """Start TensorFlow (quietly unless `verbose`) and import `module`, which needs it.

    Called only once the command line's own checks have passed, so that a mistake in the config or
    the data is reported at once.
    """
    import_tensorflow(verbose=verbose)
    return importlib.import_module(module)


def main(stage: StageInfo, doc: str, argv: Sequence[str] | None = None) -> int:
    """Run a stage's command line; returns the exit status.

    Args:
      stage: the stage (`stageI.STAGE`, `stageII.STAGE`).
      doc: the stage script's docstring (the `--help` description and examples).
      argv: the arguments (default `sys.argv[1:]`).
    """
    args = build_parser(stage, doc).parse_args(argv)
    gpus = None if args.gpu is None else parse_gpu_list(args.gpu)
    select_gpus(gpus)
    overrides = dict(parse_override(text) for text in args.overrides)
    if args.data_dir is not None:
        overrides["DATA_DIR"] = args.data_dir
    if args.mixed_precision is not None:
        overrides["TRAIN.MIXED_PRECISION"] = args.mixed_precision
    cfg = load_config(args.cfg, overrides=overrides)
    cluster = resolve_cluster(args.cluster, args.task_index, args.cluster_timeout)
    if args.dry_run:
        for name, count in _load(f"{stage.name}.trainer", args.verbose).count_parameters(cfg).items():
            print(f"{name}: {count}")
        return 0
    if not cfg.TRAIN.FLAG:
        if args.resume:
            raise ConfigError(f"--resume {args.resume}: evaluation mode (TRAIN.FLAG false) does not train; give "
                              "the snapshot to sample with --set TRAIN.PRETRAINED_MODEL=...")
        sampler = _load("misc.generate.sampler", args.verbose)
        out = sampler.run_evaluation(cfg, stage.name, out=args.out, num_samples=args.num_samples,
                                     num_captions=args.num_captions, progress=sys.stderr.isatty())
        print(f"done: {out}")
        return 0
    prepared = prepare_run(cfg, stage, args.resume)
    reproducible_threads()
    trainer = _load(f"{stage.name}.trainer", args.verbose)
    run_dir = trainer.train(cfg, resume=args.resume, gpus=gpus, prepared=prepared, cluster=cluster)
    if cluster is None or cluster.is_chief:
        print(f"done: {run_dir}")
    return 0
