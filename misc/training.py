"""The training frame both stages share: precision, strategy, data feeding and the training loop.

Port of the original `CondGANTrainer.train` of `stageI/trainer.py`, which `stageII/trainer.py`
repeated: here it is written once. What differs between the stages comes from the stage's
`misc.runs.StageInfo` (image sizes, the stage it starts from, its grids) and its `restore` function
(how its GAN is built and restored, `stageI/trainer.py`, `stageII/trainer.py`). The graph of a step
is `misc/gan.py`, the per-iteration and per-epoch work `misc/callbacks.py`, the snapshots
`misc/checkpoint.py`.

The loop (`run_loop`) is the project's own rather than `keras.Model.fit`: one loop for one device,
several GPUs and several workers (`fit` of a model with a custom `train_step` fails under
`MultiWorkerMirroredStrategy`, keras-team/keras#20585). Iteration k of a run trains on global batch
k of the data sampler and on noise drawn from (SEED, k), so a run resumed from its snapshot at
iteration k continues exactly as if it had never stopped: same batches, same noise, same
learning rate, and it ends at the same iteration with the same weights.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Callable, Iterator

import keras
import numpy as np
import tensorflow as tf

from misc import callbacks as cb
from misc.config import Config, save_config
from misc.datasets import BatchFeeder
from misc.distribute import Cluster, check_batch_size, cpu_has_bfloat16, get_strategy, use_sync_bn
from misc.errors import StackGANError
from misc.gan import LOSS_NAMES, adam
from misc.runs import PreparedRun, StageInfo, Start, new_run_dir, prepare_run
from misc.utils import progress, scratch_directory

# How a stage builds its GAN for a run: `restore(cfg, start, sync_bn)` returns the compiled and
# built `misc.gan.CondGAN`, with the state of `start.snapshot` loaded (see `stageI/trainer.py`).
Restore = Callable[[Config, Start, bool], keras.Model]
# `TRAIN.MIXED_PRECISION` -> the Keras dtype policy of the networks.
POLICIES = {"none": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
# TensorFlow's errors when a worker of the cluster stops or cannot be reached during training.
_PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
                tf.errors.CancelledError)


@contextlib.contextmanager
def precision(mode: str) -> Iterator[str]:
    """Build networks in the dtype policy of `TRAIN.MIXED_PRECISION` (restored afterwards).

    Variables stay float32 in every mode; bfloat16 and float16 compute the convolutions and
    matrix products in 16 bits (the CA, the logits and the losses stay float32, see `misc.gan`).

    Yields:
      The Keras policy name.
    """
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(POLICIES[mode])
    try:
        yield POLICIES[mode]
    finally:
        keras.mixed_precision.set_global_policy(previous)


def precision_note(mode: str) -> str | None:
    """One line when `TRAIN.MIXED_PRECISION` is the wrong choice for this machine, else None."""
    gpus = tf.config.list_physical_devices("GPU")
    if mode == "bfloat16" and not gpus and not cpu_has_bfloat16():
        return ("note: this CPU has no bfloat16 instructions (avx512_bf16, amx_bf16), so bfloat16 is emulated and "
                "several times slower than float32: drop --mixed-precision here")
    if mode == "float16" and not gpus:
        return ("note: float16 is for GPUs; on a CPU it is emulated and slower than float32 (use bfloat16 on a CPU "
                "with avx512_bf16 or amx_bf16, else float32)")
    return None


def compile_gan(gan, cfg: Config, prefix: str = ""):
    """Attach a stage's two optimisers to its GAN and build it (port of `init_opt` / `prepare_trainer`).

    Adam(beta1 0.5) for D and G at the config's base learning rates (the schedule callback sets the
    epoch's rate), named `<prefix>d_optimizer` and `<prefix>g_optimizer` (Stage-II: "hr_", as the
    original's `hr_` scopes), each wrapped in dynamic loss scaling when `TRAIN.MIXED_PRECISION` is
    float16; then every variable is created (`CondGAN.build`).

    Returns:
      `gan`, compiled and built.
    """
    optimizers = [adam(cfg.TRAIN.DISCRIMINATOR_LR, name=f"{prefix}d_optimizer"),
                  adam(cfg.TRAIN.GENERATOR_LR, name=f"{prefix}g_optimizer")]
    if cfg.TRAIN.MIXED_PRECISION == "float16":
        # Dynamic loss scaling, as float16 gradients underflow: Keras' defaults (start at 2^15,
        # halve on a non-finite step, which is skipped; double after 2000 finite steps).
        optimizers = [keras.optimizers.LossScaleOptimizer(optimizer, name=f"{optimizer.name}_scaled")
                      for optimizer in optimizers]
    gan.compile(d_optimizer=optimizers[0], g_optimizer=optimizers[1])
    gan.build((None, cfg.TEXT.DIMENSION))
    return gan


def gan_options(cfg: Config) -> dict:
    """The `misc.gan.CondGAN` arguments a config sets (Z_DIM, GAN.EMBEDDING_DIM, TRAIN.COEFF.KL, ...)."""
    return {"z_dim": cfg.Z_DIM, "ef_dim": cfg.GAN.EMBEDDING_DIM, "kl_coeff": cfg.TRAIN.COEFF.KL,
            "b_wrong": cfg.TRAIN.B_WRONG, "cond_augmentation": cfg.TRAIN.COND_AUGMENTATION, "seed": cfg.SEED}


def count_parameters(generator: keras.Model, discriminator: keras.Model) -> dict[str, int]:
    """Trainable parameter counts of a stage's networks: its CA, its generator without CA, its discriminator."""
    def count(variables) -> int:
        return int(sum(np.prod(v.shape) for v in variables))

    ca = count(generator.ca.trainable_variables)
    return {"ca": ca, "generator": count(generator.trainable_variables) - ca,
            "discriminator": count(discriminator.trainable_variables)}


def learning_rate_schedule(cfg: Config, stage: StageInfo) -> cb.LearningRateSchedule:
    """The stage's learning-rate callback: halvings every `LR_DECAY_EPOCH` epochs, for a stage that
    starts from a previous one only above `TRAIN.PRETRAINED_EPOCH` (the original `stageII/trainer.py`)."""
    return cb.LearningRateSchedule(cfg.TRAIN.DISCRIMINATOR_LR, cfg.TRAIN.GENERATOR_LR, cfg.TRAIN.LR_DECAY_EPOCH,
                                   pretrained_epoch=cfg.TRAIN.PRETRAINED_EPOCH if stage.previous else 0)


def describe_start(stage: StageInfo, start: Start, initial_epoch: int) -> str | None:
    """The line that says where a run starts (None for a run from scratch)."""
    if start.snapshot is None:
        return None
    if start.stage != stage.name:
        line = (f"{stage.previous.title} generator from {start.snapshot} (iteration {start.iteration}); "
                f"{stage.title} starts at epoch {initial_epoch + 1}")
    else:
        line = f"starting from {start.snapshot}: iteration {start.iteration}, continuing with epoch {initial_epoch + 1}"
    if "converted_from" in start.record:
        line += (f"; the optimiser state starts fresh (converted from the original release's "
                 f"{start.record['converted_from']}, whose Adam state is not converted)")
    return line


def loss_scales(gan) -> dict[str, float]:
    """The current float16 loss scale of each optimiser (empty without loss scaling)."""
    return {f"{side}_loss_scale": float(optimizer.dynamic_scale.numpy())
            for side, optimizer in (("d", gan.d_optimizer), ("g", gan.g_optimizer))
            if isinstance(optimizer, keras.optimizers.LossScaleOptimizer)}


def distributed_step(gan, strategy):
    """One training iteration on every replica, as one `tf.function`: the global batch's losses.

    Each replica runs `gan.train_step` on its share; the returned losses are the means over the
    replicas (each a mean over the same number of rows), so over the global batch.
    """
    @tf.function
    def step(batch):
        losses = strategy.run(gan.train_step, args=(batch,))
        return {name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
                for name, value in losses.items()}

    return step


def make_feeder_fn(prepared: PreparedRun, cfg: Config, stage: StageInfo, feeders: list) -> Callable:
    """The `distribute_datasets_from_function` function: this worker's replicas' shares of every
    global batch from iteration `prepared.start.iteration` on (its feeders are appended to `feeders`)."""
    def dataset_fn(context: tf.distribute.InputContext):
        local = context.num_replicas_in_sync // context.num_input_pipelines
        rows = cfg.TRAIN.BATCH_SIZE // context.num_replicas_in_sync
        first = context.input_pipeline_id * local
        shares = [((first + r) * rows, rows) for r in range(local)]
        feeder = BatchFeeder(prepared.train_data, cfg.TRAIN.BATCH_SIZE, stage.image_size, cfg.TRAIN.NUM_EMBEDDING,
                             cfg.SEED, start=prepared.start.iteration, shares=shares)
        feeders.append(feeder)
        return feeder.dataset()

    return dataset_fn


def run_loop(gan, strategy, dataset, callbacks: list, cfg: Config, prepared: PreparedRun,
             show_progress: bool = True, record: dict | None = None) -> None:
    """Train from `prepared.start.iteration` to the end of epoch `TRAIN.MAX_EPOCH - 1`.

    Port of the original's epoch loop: iteration k belongs to epoch k // steps_per_epoch, so a run
    that starts at iteration k continues that epoch at its (k mod steps_per_epoch)-th batch. The
    callbacks are called as `fit` calls them: per epoch (begin, end with the epoch means) and per
    iteration (end, with that iteration's losses and, with float16, the loss scales and the count
    of skipped steps).

    `record`, if given, is kept current with the run's count of skipped steps (`skipped_steps`),
    for the snapshots' JSON records (`train` hands the same dict to `Snapshots`).

    Raises:
      StackGANError: a worker of the cluster stopped or cannot be reached (one line).
    """
    steps = prepared.steps_per_epoch
    iteration = prepared.start.iteration
    skipped = int(prepared.start.record.get("skipped_steps", 0))
    callback_list = keras.callbacks.CallbackList(callbacks, model=gan,
                                                 epochs=cfg.TRAIN.MAX_EPOCH, steps=steps)
    record = {} if record is None else record
    record["skipped_steps"] = skipped
    step = distributed_step(gan, strategy)
    batches = iter(dataset)
    callback_list.on_train_begin()
    try:
        for epoch in range(iteration // steps, cfg.TRAIN.MAX_EPOCH):
            gan.reset_metrics()
            callback_list.on_epoch_begin(epoch)
            totals = dict.fromkeys(LOSS_NAMES, 0.0)
            first = iteration - epoch * steps
            bar = progress(range(first, steps), desc=f"epoch {epoch + 1}/{cfg.TRAIN.MAX_EPOCH}", unit="it",
                           leave=False, disable=not show_progress)
            scales_before = loss_scales(gan)
            for batch in bar:
                losses = {name: float(value) for name, value in step(next(batches)).items()}
                iteration += 1
                scales = loss_scales(gan)
                skipped += sum(scales[key] < scales_before[key] for key in scales)
                scales_before = scales
                record["skipped_steps"] = skipped
                for name in LOSS_NAMES:
                    totals[name] += losses[name]
                done = batch + 1 - first
                bar.set_postfix({"d_loss": f"{totals['d_loss'] / done:.4f}",
                                 "g_loss": f"{totals['g_loss'] / done:.4f}"}, refresh=False)
                extra = {**scales, "skipped_steps": float(skipped)} if scales else {}
                callback_list.on_train_batch_end(batch, {**losses, **extra})
            bar.close()
            means = {name: total / max(steps - first, 1) for name, total in totals.items()}
            callback_list.on_epoch_end(epoch, means)
    except _PEER_ERRORS as err:
        raise _peer_stopped(err, f"training stopped at iteration {iteration}") from None
    callback_list.on_train_end()


def _peer_stopped(err: Exception, what: str) -> StackGANError:
    """The one-line error for a cluster whose worker stopped or cannot be reached."""
    reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    return StackGANError(f"{what}: a worker of the cluster stopped or cannot be reached ({type(err).__name__}: "
                         f"{reason[:200]}); resume with the same command and --resume <run folder>")


def replica_fingerprints(gan, strategy) -> list[float]:
    """A float64 fingerprint of the weights (networks and optimisers) held by each replica.

    Synchronous training keeps every replica's copy identical; a cluster run checks this at its end.
    """
    variables = gan.weights + gan.d_optimizer.variables + gan.g_optimizer.variables

    @tf.function
    def gather():
        def local():
            total = tf.add_n([tf.reduce_sum(tf.cast(v, tf.float64)) * (k + 1) for k, v in enumerate(variables)
                              if "float" in str(v.dtype)])
            return tf.distribute.get_replica_context().all_gather(tf.reshape(total, [1]), axis=0)

        return strategy.experimental_local_results(strategy.run(local))[0]

    return [float(value) for value in gather().numpy()]


@contextlib.contextmanager
def _output_folder(run_dir: Path | None, is_chief: bool) -> Iterator[Path]:
    """The folder the chief writes; other workers write their copies of snapshots and grids into a
    temporary folder, removed at the end (the run folder is the chief's alone)."""
    if is_chief:
        yield run_dir
        return
    with scratch_directory("stackgan-worker-") as scratch:  # also removes those of killed workers
        yield scratch


def train(cfg: Config, stage: StageInfo, restore: Restore, resume: str | None = None,
          print_fn: Callable[[str], None] = print, gpus: list[int] | None = None,
          prepared: PreparedRun | None = None, cluster: Cluster | None = None,
          show_progress: bool | None = None) -> Path | None:
    """Train a stage as configured (port of `CondGANTrainer.train`).

    Args:
      cfg: the resolved config.
      stage: the stage to train.
      restore: the stage's builder (`stageI.trainer.restore`, `stageII.trainer.restore`).
      resume: a run folder or snapshot to continue, in its own run folder; otherwise a new run
        folder is made (see `misc.runs.plan_start` for where it starts).
      print_fn: where the run's messages go (the chief's only).
      gpus: the GPU indices `--gpu` selected (checked against what TensorFlow sees); None: all.
      prepared: the result of `misc.runs.prepare_run` for these arguments, if the caller already
        checked them (the command line does, before TensorFlow starts).
      cluster: the workers of a multi-worker run (`misc.distribute.resolve_cluster`); every worker
        runs this function with the same arguments, and only the chief (task 0) writes.
      show_progress: a progress bar per epoch (default: on a terminal).

    Returns:
      The run folder: the chief's; on other workers the resumed folder, or None in a new run.

    Raises:
      ConfigError, DataError, CheckpointError: user errors (one sentence each); StackGANError when a
        loss becomes NaN or a worker of the cluster stops.
    """
    strategy = get_strategy(expected_gpus=None if gpus is None else len(gpus), cluster=cluster)
    prepared = prepared or prepare_run(cfg, stage, resume)
    start = prepared.start
    check_batch_size(cfg.TRAIN.BATCH_SIZE, strategy)
    is_chief = cluster is None or cluster.is_chief
    say = print_fn if is_chief else (lambda _: None)
    note = precision_note(cfg.TRAIN.MIXED_PRECISION)
    if note:
        say(note)
    keras.utils.set_random_seed(cfg.SEED + start.iteration)  # the initial weights of a new run
    with precision(cfg.TRAIN.MIXED_PRECISION), strategy.scope():
        gan = restore(cfg, start, use_sync_bn(cfg.TRAIN.SYNC_BN, strategy))
    run_dir = start.snapshot.parent if start.resume else (new_run_dir(cfg, stage.name) if is_chief else None)
    feeders: list[BatchFeeder] = []
    dataset = strategy.distribute_datasets_from_function(make_feeder_fn(prepared, cfg, stage, feeders))
    try:
        with _output_folder(run_dir, is_chief) as out:
            if is_chief:
                save_config(cfg, out / "config.yml")
                _announce(say, cfg, stage, out, strategy, prepared, cluster)
            writer = tf.summary.create_file_writer(str(out))
            record: dict = {}  # kept current by run_loop, read by Snapshots
            callbacks = [
                learning_rate_schedule(cfg, stage),
                cb.ScalarSummaries(writer, interval=cfg.TRAIN.SUMMARY_INTERVAL, prefix=stage.summary_prefix),
                cb.Snapshots(out, cfg.TRAIN.SNAPSHOT_INTERVAL, stage=stage.name, dataset=cfg.DATASET_NAME,
                             on_save=lambda path: say(f"saved {path}"), record=lambda: dict(record)),
                cb.SampleGrids(out, writer, prepared.rows_for_epoch, cfg.TRAIN.NUM_COPY, zero_z=stage.zero_z,
                               views=stage.grids),
                cb.EpochLog(cfg.TRAIN.MAX_EPOCH, print_fn=say, run_dir=out),
            ]
            try:
                run_loop(gan, strategy, dataset, callbacks, cfg, prepared,
                         show_progress=is_chief and (sys.stderr.isatty() if show_progress is None else show_progress),
                         record=record)
            finally:
                writer.close()
        if cluster is not None:
            try:
                fingerprints = replica_fingerprints(gan, strategy)
            except _PEER_ERRORS as err:
                raise _peer_stopped(err, "training ended, but comparing the replicas failed") from None
            if len(set(fingerprints)) > 1:
                raise StackGANError(f"the {len(fingerprints)} replicas of the cluster ended with different weights "
                                    f"(fingerprints {fingerprints}); the run folder's snapshots are the chief's")
            say(f"all {len(fingerprints)} replicas end with the same weights (fingerprint {fingerprints[0]:.12g})")
    finally:
        for feeder in feeders:
            feeder.close()
        sys.stdout.flush()
    return run_dir


def _announce(say: Callable[[str], None], cfg: Config, stage: StageInfo, run_dir: Path, strategy,
              prepared: PreparedRun, cluster: Cluster | None) -> None:
    """The run's first lines: its folder, where it starts, its replicas, outputs and logs."""
    start = prepared.start
    grids = ", ".join(f"{view.file_prefix}{split}.jpg" for split in ("train", "test") for view in stage.grids)
    say(f"run folder: {run_dir}")
    line = describe_start(stage, start, prepared.initial_epoch)
    if line:
        say(line)
    # A Slurm cluster's addresses are known to TensorFlow's resolver only.
    count = len(cluster.workers) or strategy.cluster_resolver.cluster_spec().num_tasks("worker") if cluster else 0
    workers = f" on {count} workers ({cluster.source})" if cluster else ""
    position = start.iteration % prepared.steps_per_epoch
    at = f" (epoch {prepared.initial_epoch + 1} from its iteration {position + 1})" if position else ""
    say(f"replicas: {strategy.num_replicas_in_sync}{workers}; {prepared.steps_per_epoch} iterations per epoch, "
        f"epochs {prepared.initial_epoch + 1}..{cfg.TRAIN.MAX_EPOCH}{at}; precision: "
        f"{POLICIES[cfg.TRAIN.MIXED_PRECISION]}")
    say(f"checkpoints: {run_dir}/model_<iteration>.weights.h5 every {cfg.TRAIN.SNAPSHOT_INTERVAL} "
        "iterations and at the end")
    say(f"samples: {grids} in {run_dir} after every epoch (captions in test.txt)")
    say(f"TensorBoard logs: {run_dir} (tensorboard --logdir {run_dir})")
