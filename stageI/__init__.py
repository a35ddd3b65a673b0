"""Stage-I StackGAN, text to 64 x 64 images: its networks (`model.py`), how they are built and
restored (`trainer.py`), its configs (`cfg/`) and its command line (`run_exp.py`)."""
from misc.datasets import LR_IMSIZE, LR_SIZE
from misc.runs import StageInfo

# 64 px random crops of the stored 76 px images; the grids use z = 0, as the original's.
STAGE = StageInfo(name="stageI", title="Stage-I", image_size=LR_IMSIZE, stored_size=LR_SIZE,
                  make_target="make train-stage1")
