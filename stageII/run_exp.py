"""Train Stage-II StackGAN (64x64 -> 256x256) from a YAML config, on top of a trained Stage-I.

Port of the original `stageII/run_exp.py`: load the config, the Stage-I generator, the data and the
Stage-II networks, train.

Examples:
  python stageII/run_exp.py --cfg stageII/cfg/birds.yml
  python stageII/run_exp.py --cfg stageII/cfg/birds.yml --set TRAIN.PRETRAINED_MODEL=ckt_logs/birds/stageI_2024_01_01_12_00_00
  python stageII/run_exp.py --cfg stageII/cfg/birds.yml --resume ckt_logs/birds/stageII_2024_01_05_08_00_00
  python stageII/run_exp.py --cfg stageII/cfg/birds.yml --dry-run
  python stageII/run_exp.py --cfg stageII/cfg/shapes.yml --set TRAIN.FLAG=False   # evaluation sampler
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
from stageII import STAGE  # noqa: E402

DESCRIPTION = ("Train the Stage-II StackGAN (Stage-I 64x64 image + text -> 256x256 image). The Stage-I "
               "generator comes from TRAIN.PRETRAINED_MODEL or, if that is empty, from the newest "
               "<OUTPUT_DIR>/<DATASET_NAME>/stageI_*/ checkpoint. Outputs go to "
               "<OUTPUT_DIR>/<DATASET_NAME>/stageII_<date_time>/: config.yml, TensorBoard event files, "
               "model_<iteration>.weights.h5 checkpoints, lr_fake_*/hr_fake_* sample grids. "
               "With --set TRAIN.FLAG=False it samples the test split instead (evaluation mode, see the "
               "last options).")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line (`misc/run_exp.py`); returns the exit status."""
    return run_exp.main(STAGE, DESCRIPTION, __doc__, argv)


if __name__ == "__main__":
    run_cli(main)
