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

from typing import Sequence  # noqa: E402

from misc import run_exp  # noqa: E402
from misc.cli import run_cli  # noqa: E402
from stageI import STAGE  # noqa: E402

DESCRIPTION = ("Train the Stage-I StackGAN (text -> 64x64 image). Outputs go to "
               "<OUTPUT_DIR>/<DATASET_NAME>/stageI_<date_time>/: config.yml, TensorBoard event files, "
               "model_<iteration>.weights.h5 checkpoints, train.jpg/test.jpg sample grids. "
               "With --set TRAIN.FLAG=False it samples the test split instead (evaluation mode, see the "
               "last options).")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line (`misc/run_exp.py`); returns the exit status."""
    return run_exp.main(STAGE, DESCRIPTION, __doc__, argv)


if __name__ == "__main__":
    run_cli(main)
