"""Run folders and where a training run starts, all read without TensorFlow.

Both stages' command line (`misc/run_exp.py`) settles all of this before TensorFlow starts, so that
a user's mistake costs no start-up time, and `misc/training.py` trains from the result:

* `StageInfo`: what the training frame knows of a stage before building it.
* `new_run_dir`: `<OUTPUT_DIR>/<DATASET_NAME>/<CONFIG_NAME>_<time>/`, the original's layout.
* `newest_checkpoint`: the most recent snapshot of one stage's runs of a dataset.
* `plan_start`: the snapshot a run starts from, and whether it resumes that snapshot's run.
* `prepare_run`: `plan_start`, the two data splits and the grid rows: every check a training run
  makes before its first step.
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from misc.checkpoint import latest_checkpoint, read_metadata, resolve_checkpoint
from misc.config import Config
from misc.datasets import SplitData, load_split, visualization_batch
from misc.errors import CheckpointError, ConfigError


@dataclass(frozen=True)
class GridView:
    """One set of end-of-epoch grids: one generator output, its files and its image summaries.

    Attributes:
      file_prefix: prefix of `<prefix><split>.jpg` ("" for Stage-I, "lr_fake_" / "hr_fake_" for the
        two outputs of Stage-II, as the original named them).
      tag_prefix: prefix of the image summary `<prefix><split>` ("" or "hr_").
      stride: the real image beside the samples is the crop taken at every `stride`-th pixel (4 for
        Stage-II's 64 px view of its 256 px crop, as the original's in-graph resize).
    """

    file_prefix: str = ""
    tag_prefix: str = ""
    stride: int = 1


@dataclass(frozen=True)
class StageInfo:
    """What the training frame needs to know of a stage before TensorFlow starts.

    Attributes:
      name: "stageI" or "stageII": names run folders and checkpoint records, and the package whose
        `trainer` module builds the stage.
      title: the stage's name in messages ("Stage-I").
      image_size: side of the images it generates and discriminates (random crops of the stored ones).
      stored_size: side of the stored images it crops (`<stored_size>images.pickle`).
      make_target: the command that trains it, named when no snapshot exists yet.
      previous: the stage whose snapshot starts a new run of this one (Stage-II: Stage-I), or None.
      grids: its end-of-epoch grids, one `GridView` per generator output.
      zero_z: the grids use z = 0 (Stage-I, "expect similar backgrounds") or random z (Stage-II).
      summary_prefix: prefix of its TensorBoard scalars ("hr_" for Stage-II, as the original).
    """

    name: str
    title: str
    image_size: int
    stored_size: int
    make_target: str
    previous: StageInfo | None = None
    grids: tuple[GridView, ...] = (GridView(),)
    zero_z: bool = True
    summary_prefix: str = ""


@dataclass
class Start:
    """The snapshot a training run starts from.

    Attributes:
      snapshot: its `.weights.h5` file, or None for a run from scratch.
      record: its JSON record (`{"iteration": 0, "epoch": 0}` from scratch).
      resume: the run continues in the snapshot's own folder (`--resume`), rather than in a new one.
    """

    snapshot: Path | None = None
    record: dict[str, Any] = field(default_factory=lambda: {"iteration": 0, "epoch": 0})
    resume: bool = False

    @property
    def stage(self) -> str | None:
        """The stage of the snapshot (None from scratch)."""
        return self.record.get("stage")

    @property
    def iteration(self) -> int:
        """The iteration counter the run continues from."""
        return int(self.record["iteration"])


@dataclass
class PreparedRun:
    """Everything a training run has checked and loaded before TensorFlow starts.

    Attributes:
      start: where it starts.
      train_data, test_data: the splits, at the stage's stored size.
      steps_per_epoch: iterations per epoch (N // batch, the original's `updates_per_epoch`).
      initial_epoch: the epoch the run starts in (its first iteration's).
      rows_for_epoch: epoch -> the rows of that epoch's sample grids.
    """

    start: Start
    train_data: SplitData
    test_data: SplitData
    steps_per_epoch: int
    initial_epoch: int
    rows_for_epoch: Callable[[int], dict]


def new_run_dir(cfg: Config, default_name: str, now: dt.datetime | None = None) -> Path:
    """Create `<OUTPUT_DIR>/<DATASET_NAME>/<CONFIG_NAME or default_name>_<YYYY_MM_DD_HH_MM_SS>/`.

    The original's layout; a numeric suffix is added if a run started in the same second.
    """
    stamp = (now or dt.datetime.now()).strftime("%Y_%m_%d_%H_%M_%S")
    base = Path(cfg.OUTPUT_DIR) / cfg.DATASET_NAME / f"{cfg.CONFIG_NAME or default_name}_{stamp}"
    candidate, k = base, 1
    while True:
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            k += 1
            candidate = base.with_name(f"{base.name}_{k}")


def newest_checkpoint(root: str | os.PathLike, stage: str) -> Path | None:
    """The most recently written snapshot over the run folders `<root>/<stage>_*/`, or None.

    Ties go to the larger path (the later run folder name).
    """
    found = [ckpt for run in sorted(Path(root).glob(f"{stage}_*")) if (ckpt := latest_checkpoint(run)) is not None]
    if not found:
        return None
    return max(found, key=lambda path: (os.stat(path).st_mtime, str(path)))


def plan_start(cfg: Config, stage: StageInfo, resume: str | os.PathLike | None = None) -> Start:
    """The snapshot a training run starts from (port of the original's restore logic, without loading).

    `--resume` continues a run of this stage in its own folder. Otherwise a new run folder is made,
    from `TRAIN.PRETRAINED_MODEL` if set (as the original did), else, for a stage that builds on a
    previous one (Stage-II), from the newest snapshot of that stage (the original made users edit
    a time-stamped path into the config, its issue #57), else from scratch.

    Raises:
      ConfigError: evaluation mode, or both `--resume` and `TRAIN.PRETRAINED_MODEL`.
      CheckpointError: no such snapshot, one of another stage or dataset, or (for Stage-II) no
        previous-stage snapshot yet.
    """
    if not cfg.TRAIN.FLAG:
        raise ConfigError("TRAIN.FLAG: false asks for the original's evaluation mode, which is "
                          f"misc.generate.sampler.run_evaluation ({stage.name}/run_exp.py runs it), not training")
    if resume and cfg.TRAIN.PRETRAINED_MODEL:
        raise ConfigError(f"--resume {resume}: TRAIN.PRETRAINED_MODEL is also set; give only one of them")
    if resume:
        snapshot, expected = resolve_checkpoint(resume), [stage.name]
    elif cfg.TRAIN.PRETRAINED_MODEL:
        # A snapshot of the previous stage (the original Stage-II's start), or of this stage (the
        # original Stage-I's restart; a Stage-II snapshot converted from the original release).
        snapshot = resolve_checkpoint(cfg.TRAIN.PRETRAINED_MODEL)
        expected = [stage.previous.name, stage.name] if stage.previous else [stage.name]
    elif stage.previous:
        root = Path(cfg.OUTPUT_DIR) / cfg.DATASET_NAME
        snapshot, expected = newest_checkpoint(root, stage.previous.name), [stage.previous.name]
        if snapshot is None:
            raise CheckpointError(f"{root}: no {stage.previous.title} checkpoint ({stage.previous.name}_*/model_"
                                  f"<iteration>.weights.h5) found; run `{stage.previous.make_target}` first or set "
                                  "TRAIN.PRETRAINED_MODEL")
    else:
        return Start()
    record = read_metadata(snapshot)
    if record.get("stage") not in expected:
        raise CheckpointError(f"{snapshot}: this is a {record.get('stage')} checkpoint, expected "
                              f"{' or '.join(expected)}")
    if record.get("dataset") != cfg.DATASET_NAME:
        raise CheckpointError(f"{snapshot}: this checkpoint was trained on {record.get('dataset')}, "
                              f"not on {cfg.DATASET_NAME}")
    return Start(snapshot=snapshot, record=record, resume=bool(resume))


def grid_rows_fn(cfg: Config, train_data: SplitData, test_data: SplitData, image_size: int) -> Callable[[int], dict]:
    """The rows of each epoch's sample grids (port of the batch `epoch_sum_images` assembles).

    Returns a function of the epoch: `TRAIN.NUM_COPY` training rows (averaged embeddings) and as
    many test rows (one caption each), cropped to `image_size`, drawn with seed `SEED + epoch`.
    It draws epoch 0's rows right away, so a missing caption file fails before training starts.
    """
    num_copy = cfg.TRAIN.NUM_COPY

    def rows_for_epoch(epoch: int) -> dict:
        train_rows = visualization_batch(train_data, num_copy, image_size, cfg.TRAIN.NUM_EMBEDDING, cfg.SEED + epoch)
        train_rows.pop("captions")  # the original lists only the test captions (test.txt)
        test_rows = visualization_batch(test_data, num_copy, image_size, 1, cfg.SEED + epoch)
        return {"train": train_rows, "test": test_rows}

    rows_for_epoch(0)
    return rows_for_epoch


def _check_epochs_left(cfg: Config, initial_epoch: int) -> None:
    if initial_epoch >= cfg.TRAIN.MAX_EPOCH:
        raise ConfigError(f"TRAIN.MAX_EPOCH: nothing to train, the run starts at epoch {initial_epoch} and "
                          f"TRAIN.MAX_EPOCH is {cfg.TRAIN.MAX_EPOCH} (raise it, e.g. --set "
                          f"TRAIN.MAX_EPOCH={initial_epoch + 10})")


def prepare_run(cfg: Config, stage: StageInfo, resume: str | os.PathLike | None = None) -> PreparedRun:
    """Check and load what a training run needs before its first step, in the original's order.

    The checkpoint to start from, then the data (both splits, the caption files of the grid rows).
    A run continues the iteration counter of its snapshot, and iteration k belongs to epoch
    k // steps_per_epoch (`epoch_start = counter // updates_per_epoch` in the original).

    Raises:
      ConfigError, DataError, CheckpointError: one sentence each, as `plan_start` and `load_split`;
        and when no epoch is left to train.
    """
    start = plan_start(cfg, stage, resume)
    same_stage = start.snapshot is None or start.stage == stage.name
    if same_stage:  # the epoch is the record's: checked before the long data loading
        _check_epochs_left(cfg, int(start.record["epoch"]))
    data_dir = cfg.data_dir()
    train_data = load_split(data_dir, "train", stage.stored_size, cfg.EMBEDDING_TYPE, cfg.TEXT.DIMENSION)
    test_data = load_split(data_dir, "test", stage.stored_size, cfg.EMBEDDING_TYPE, cfg.TEXT.DIMENSION)
    steps_per_epoch = len(train_data) // cfg.TRAIN.BATCH_SIZE
    # Iteration k is in epoch k // steps_per_epoch, for a resumed run as for one that starts from
    # the previous stage (the original Stage-II's `epoch_start = counter // updates_per_epoch`).
    initial_epoch = start.iteration // max(steps_per_epoch, 1)
    _check_epochs_left(cfg, initial_epoch)
    rows_for_epoch = grid_rows_fn(cfg, train_data, test_data, stage.image_size)  # fails now on missing captions
    return PreparedRun(start, train_data, test_data, steps_per_epoch, initial_epoch, rows_for_epoch)
