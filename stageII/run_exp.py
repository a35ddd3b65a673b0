"""Train the Stage-II StackGAN (Stage-I 64x64 image + text -> 256x256 image) from a YAML config.

The Stage-I generator comes from TRAIN.PRETRAINED_MODEL or, if that is empty, from the newest
<OUTPUT_DIR>/<DATASET_NAME>/stageI_*/ checkpoint. Outputs go to
<OUTPUT_DIR>/<DATASET_NAME>/stageII_<date_time>/: config.yml, TensorBoard event files,
model_<iteration>.weights.h5 checkpoints, lr_fake_*/hr_fake_* sample grids. With --set
TRAIN.FLAG=False it samples the test split instead (evaluation mode, see the last options).

Port of the original `stageII/run_exp.py`: load the config, the Stage-I generator, the data and the
Stage-II networks, train.

Examples:
  # on the newest ckt_logs/birds/stageI_*/ checkpoint, or on a given Stage-I run:
  python stageII/run_exp.py --cfg stageII/cfg/birds.yml
  python stageII/run_exp.py --cfg stageII/cfg/birds.yml --set TRAIN.PRETRAINED_MODEL=ckt_logs/birds/stageI_2024_01_01_12_00_00
  # continue a Stage-II run in its folder; parameter counts; the evaluation sampler:
  python stageII/run_exp.py --cfg stageII/cfg/birds.yml --resume ckt_logs/birds/stageII_2024_01_05_08_00_00
  python stageII/run_exp.py --cfg stageII/cfg/birds.yml --dry-run
  python stageII/run_exp.py --cfg stageII/cfg/shapes.yml --set TRAIN.FLAG=False
"""
from __future__ import annotations

import functools

from misc import run_exp
from misc.cli import run_cli
from stageII import STAGE


# `main(argv)` runs the command line of `misc/run_exp.py` for this stage and returns the exit status.
main = functools.partial(run_exp.main, STAGE, __doc__)


if __name__ == "__main__":
    run_cli(main)
