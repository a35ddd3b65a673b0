"""Stage-II StackGAN, a Stage-I image and its text to 256 x 256: its networks and training graph
(`model.py`), how they are built and restored (`trainer.py`), its configs (`cfg/`) and its command
line (`run_exp.py`)."""
from misc.datasets import HR_IMSIZE, LOAD_SIZE, LR_HR_RATIO
from misc.runs import GridView, StageInfo
from stageI import STAGE as STAGE1

# 256 px random crops of the stored 304 px images; a new run starts from the newest Stage-I
# snapshot. The grids show both outputs (the original's lr_fake_* and hr_fake_* images, with the
# image summaries `<split>` and `hr_<split>`) with random z; its scalars are prefixed "hr_".
STAGE = StageInfo(name="stageII", title="Stage-II", image_size=HR_IMSIZE, stored_size=LOAD_SIZE,
                  make_target="make train-stage2", previous=STAGE1,
                  grids=(GridView("lr_fake_", "", LR_HR_RATIO), GridView("hr_fake_", "hr_", 1)),
                  zero_z=False, summary_prefix="hr_")
