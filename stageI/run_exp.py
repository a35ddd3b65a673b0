"""Train the Stage-I StackGAN (text -> 64x64 image) from a YAML config.

Outputs go to <OUTPUT_DIR>/<DATASET_NAME>/stageI_<date_time>/: config.yml, TensorBoard event
files, model_<iteration>.weights.h5 checkpoints, train.jpg/test.jpg sample grids. With --set
TRAIN.FLAG=False it samples the test split instead (evaluation mode, see the last options).

Port of the original `stageI/run_exp.py`: load the config, build the data and the model, train.

Examples:
  python stageI/run_exp.py --cfg stageI/cfg/birds.yml
  python stageI/run_exp.py --cfg stageI/cfg/birds.yml --gpu 0,1 --set TRAIN.MAX_EPOCH=300
  python stageI/run_exp.py --cfg stageI/cfg/birds.yml --resume ckt_logs/birds/stageI_2024_01_01_12_00_00
  python stageI/run_exp.py --cfg stageI/cfg/birds.yml --dry-run
  python stageI/run_exp.py --cfg stageI/cfg/shapes.yml --set TRAIN.FLAG=False   # evaluation sampler
"""
from __future__ import annotations

import functools

from misc import run_exp
from misc.cli import run_cli
from stageI import STAGE


# `main(argv)` runs the command line of `misc/run_exp.py` for this stage and returns the exit status.
main = functools.partial(run_exp.main, STAGE, __doc__)


if __name__ == "__main__":
    run_cli(main)
