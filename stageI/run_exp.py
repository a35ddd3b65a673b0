"""Train Stage-I StackGAN (64x64) from a YAML config.

Port of the original `stageI/run_exp.py`: load the config, build the data and the model, train.

Examples:
  python stageI/run_exp.py --cfg stageI/cfg/birds.yml
  python stageI/run_exp.py --cfg stageI/cfg/birds.yml --gpu 0,1 --set TRAIN.MAX_EPOCH=300
  python stageI/run_exp.py --cfg stageI/cfg/birds.yml --resume ckt_logs/birds/stageI_2024_01_01_12_00_00
  python stageI/run_exp.py --cfg stageI/cfg/birds.yml --dry-run
  python stageI/run_exp.py --cfg stageI/cfg/shapes.yml --set TRAIN.FLAG=False   # evaluation sampler
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("misc") is None:  # not pip-installed: run from the repository checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
from typing import Sequence  # noqa: E402

from misc.cli import import_tensorflow, run_cli  # noqa: E402
from misc.config import load_config, parse_override  # noqa: E402
from misc.distribute import parse_gpu_list, select_gpus  # noqa: E402


DESCRIPTION = ("Train the Stage-I StackGAN (text -> 64x64 image). Outputs go to "
               "<OUTPUT_DIR>/<DATASET_NAME>/stageI_<date_time>/: config.yml, TensorBoard event files, "
               "model_<iteration>.weights.h5 checkpoints, train.jpg/test.jpg sample grids. "
               "With --set TRAIN.FLAG=False it samples the test split instead (evaluation mode, see the "
               "last options).")


def build_parser(stage: str, description: str, doc: str) -> argparse.ArgumentParser:
    """The command line of the original `run_exp.py` (`--cfg`, `--gpu`) plus the port's options.

    Args:
      stage: "stageI" or "stageII" (names the script and the example config).
      description: what the script trains and where its outputs go.
      doc: the script's module docstring; its "Examples:" part becomes the epilog.
    """
    parser = argparse.ArgumentParser(
        prog=f"{stage}/run_exp.py",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:" + doc.split("Examples:", 1)[1],
    )
    parser.add_argument("--cfg", required=True, metavar="YAML", help=f"config file, e.g. {stage}/cfg/birds.yml")
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
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's start-up and device messages")
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


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the Stage-I command line."""
    return build_parser("stageI", DESCRIPTION, __doc__).parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    from stageI import trainer

    return run(parse_args(argv), trainer)


def run(args: argparse.Namespace, trainer) -> int:
    """Carry out a parsed command line with a stage's trainer module (`count_parameters`, `train`)."""
    gpus = None if args.gpu is None else parse_gpu_list(args.gpu)
    select_gpus(gpus)
    overrides = dict(parse_override(text) for text in args.overrides)
    if args.data_dir is not None:
        overrides["DATA_DIR"] = args.data_dir
    cfg = load_config(args.cfg, overrides=overrides)
    if args.dry_run:
        import_tensorflow(verbose=args.verbose)
        for name, count in trainer.count_parameters(cfg).items():
            print(f"{name}: {count}")
        return 0
    if args.verbose:
        import_tensorflow(verbose=True)  # otherwise the trainer imports it quietly, after checking the data
    if not cfg.TRAIN.FLAG:
        return evaluate(args, cfg, trainer.STAGE)
    verbose = 1 if sys.stdout.isatty() else 2
    run_dir = trainer.train(cfg, resume=args.resume, verbose=verbose, gpus=gpus)
    print(f"done: {run_dir}")
    return 0


def evaluate(args: argparse.Namespace, cfg, stage: str) -> int:
    """The original's evaluation mode (`TRAIN.FLAG: False`): `misc.sampler.run_evaluation`."""
    from misc.errors import ConfigError
    from misc.sampler import run_evaluation

    if args.resume:
        raise ConfigError(f"--resume {args.resume}: evaluation mode (TRAIN.FLAG false) does not train; give the "
                          "snapshot to sample with --set TRAIN.PRETRAINED_MODEL=...")
    out = run_evaluation(cfg, stage, out=args.out, num_samples=args.num_samples, num_captions=args.num_captions,
                         progress=sys.stderr.isatty())
    print(f"done: {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
