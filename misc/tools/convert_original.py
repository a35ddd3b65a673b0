"""Convert a checkpoint of the original StackGAN release into this project's run folders.

The original (hanzhanggit/StackGAN, TensorFlow 0.12 + prettytensor) saved every variable with
`tf.train.Saver`; its released models (`birds_model_164000.ckpt`, `flowers_model_130000.ckpt`) are
single-file V1 checkpoints of Stage-II runs, holding the Stage-I generator and discriminator
(`g_net`, `d_net`) next to the Stage-II ones (`hr_g_net`, `hr_d_net`). TensorFlow 2 still reads
them (`tf.train.load_checkpoint`), V1 files, V2 prefixes and folders alike.

Names. prettytensor named each variable after its op and the op's creation index within the
network's scope (`custom_conv2d`, `custom_conv2d_1`, ...; `conv_batch_norm_k`; `custom_fully_connected_k`;
the FC layer's batch norm `fc_batch_norm/batch_norm`), counted per op type in the order the original
`stageI/model.py` and `stageII/model.py` call them. This project's networks create their layers in
that same order, so `original_names` pairs each of our variables with its original name by walking
our convolutions, batch norms and dense layers in order; every name and shape is then checked
against the file. Conv kernels are HWIO in both, dense kernels [in, out], and the original's batch
norm (`mean`, `variance`, `gamma`, `beta`; epsilon 1e-5) is Keras' with the same numbers.

What is written (default `ckt_logs/<dataset>/original_<iteration>/`, the iteration read from the
file name as the original did):

* a Stage-II file: a Stage-II run folder (the Stage-I generator, the Stage-II generator and
  discriminator) and, beside it, `original_<iteration>_stageI/` with the Stage-I generator and
  discriminator, so that every network of the file is usable;
* a Stage-I file (only `g_net`, `d_net`): a Stage-I run folder.

Each folder holds `config.yml` (the dataset's config of that stage, whose widths the networks were
built at), the snapshot `model_<iteration>.weights.h5` + `.json` in the project's format, and
`original.json` (the source, what was mapped and what was skipped). The snapshots have fresh
optimiser state: the release's Adam slots are skipped, as are `beta1_power`, `beta2_power`,
`global_step` and the zero-debias `biased` / `local_step` variables. Each folder is written under
a temporary name and renamed when complete.

    python -m misc.tools.convert_original birds_model_164000.ckpt --dataset birds
    make convert-original CKPT=flowers_model_130000.ckpt DATASET=flowers
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from misc.cli import import_tensorflow, run_cli
from misc.config import Config, load_config, parse_override, save_config
from misc.errors import CheckpointError, StackGANError
from misc.utils import atomic_directory, atomic_write_text

tf = import_tensorflow()  # quietly, before the modules below import TensorFlow

import keras  # noqa: E402

from misc import custom_ops  # noqa: E402
from misc.checkpoint import save_checkpoint  # noqa: E402
from misc.saver_checkpoint import locate, open_checkpoint, read_tensor  # noqa: E402
from stageI import STAGE as STAGE_I  # noqa: E402
from stageI import trainer as stage1_trainer  # noqa: E402
from stageII import STAGE as STAGE_II  # noqa: E402
from stageII import trainer as stage2_trainer  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATASETS = ("birds", "flowers")
INFO_FILE = "original.json"
FORMAT = "stackgan-original-conversion-1"
# Training images of the original splits (8,855 birds, 7,034 flowers): with batch 64 the original's
# `updates_per_epoch` is 138 and 109, which turn the file's iteration into its epoch.
TRAIN_IMAGES = {"birds": 8855, "flowers": 7034}
# Variables of the release that hold no network weight: the five Adam optimisers' slots, their
# power accumulators, prettytensor's global step, and the zero-debias helpers TF >= 0.12 adds.
_SKIP = re.compile(r"(/Adam(_\d+)?$|(^|/)beta[12]_power(_\d+)?$|(^|/)global_step$|/biased$|/local_step$)")
_SCOPES = ("g_net", "d_net", "hr_g_net", "hr_d_net")
# How many names `format_mismatch` shows side by side.
_SHOWN = 4


@dataclass
class OriginalCheckpoint:
    """The network variables of an original checkpoint.

    Attributes:
      path: the file read (a V1 file or a V2 prefix).
      tensors: name -> value, the optimiser and bookkeeping variables left out.
      skipped: the names left out.
      iteration: the iteration counter of its file name.
    """

    path: Path
    tensors: dict[str, np.ndarray]
    skipped: list[str]
    iteration: int

    @property
    def scopes(self) -> set[str]:
        """The top scopes present (`g_net`, `d_net`, `hr_g_net`, `hr_d_net`, or others)."""
        return {name.split("/", 1)[0] for name in self.tensors}


def _indexed(op: str, k: int) -> str:
    """prettytensor's k-th scope of an op type: `op`, `op_1`, `op_2`, ..."""
    return op if k == 0 else f"{op}_{k}"


def _walk(layer: keras.Layer):
    """Every layer inside `layer`, depth first, each one's sublayers in the order it created them.

    Keras keeps a layer's tracked sublayers in creation order in `_layers`; its own
    `_flatten_layers` visits them in another order.
    """
    for sublayer in layer._layers:
        yield sublayer
        yield from _walk(sublayer)


def _layers(network: keras.Layer, kind: type) -> list:
    """The layers of `kind` inside `network`, in creation order (the order the original called its ops)."""
    return [layer for layer in _walk(network) if type(layer) is kind]


def original_names(network: keras.Layer, scope: str, fc_bn: keras.Layer | None = None) -> dict[str, Any]:
    """Each weight variable of one of our networks under the name the original gave it.

    Args:
      network: a built `StageIGenerator`, `StageIDiscriminator`, `StageIIGenerator` or `StageIIDiscriminator`.
      scope: its scope in the original (`g_net`, `d_net`, `hr_g_net`, `hr_d_net`).
      fc_bn: the batch norm the original created with `fc_batch_norm` (the Stage-I generator's `fc_bn`).

    Returns:
      Original name -> Keras variable, e.g. `g_net/custom_conv2d_3/custom_conv2d_3/w` -> a conv kernel.
    """
    names: dict[str, Any] = {}
    for k, conv in enumerate(_layers(network, keras.layers.Conv2D)):
        op = _indexed("custom_conv2d", k)
        names[f"{scope}/{op}/{op}/w"] = conv.kernel
    for k, dense in enumerate(_layers(network, keras.layers.Dense)):
        op = _indexed("custom_fully_connected", k)
        names[f"{scope}/{op}/Linear/Matrix"] = dense.kernel
        names[f"{scope}/{op}/Linear/bias"] = dense.bias
    norms = [bn for bn in _layers(network, custom_ops.BatchNorm) if bn is not fc_bn]
    prefixes = [f"{scope}/{op}/{op}" for op in (_indexed("conv_batch_norm", k) for k in range(len(norms)))]
    if fc_bn is not None:
        norms.append(fc_bn)
        prefixes.append(f"{scope}/fc_batch_norm/batch_norm")
    for bn, prefix in zip(norms, prefixes):
        names.update({f"{prefix}/gamma": bn.gamma, f"{prefix}/beta": bn.beta, f"{prefix}/mean": bn.moving_mean,
                      f"{prefix}/variance": bn.moving_variance})
    return names


def stage1_names(gan) -> dict[str, Any]:
    """Original name -> variable for a Stage-I `CondGAN` (`g_net`, `d_net`)."""
    return {**original_names(gan.generator, "g_net", gan.generator.fc_bn),
            **original_names(gan.discriminator, "d_net")}


def stage2_names(gan) -> dict[str, Any]:
    """Original name -> variable for a `StageIIGAN` (`g_net`, `hr_g_net`, `hr_d_net`)."""
    return {**original_names(gan.stage1_generator, "g_net", gan.stage1_generator.fc_bn),
            **original_names(gan.generator, "hr_g_net"),
            **original_names(gan.discriminator, "hr_d_net")}


def iteration_from_name(path: str | os.PathLike) -> int | None:
    """The iteration counter in a checkpoint's file name, read as the original read it (the text
    between the last `_` and the last `.`: `birds_model_164000.ckpt` -> 164000), or None."""
    name = Path(path).name
    text = name[name.rfind("_") + 1:name.rfind(".")] if "_" in name and "." in name else ""
    return int(text) if text.isdigit() else None


def read_original(path: str | os.PathLike, iteration: int | None = None) -> OriginalCheckpoint:
    """Read an original checkpoint's network variables (optimiser and bookkeeping keys skipped).

    Args:
      path: a V1 file, a V2 prefix or one of its files, or a folder (see `misc.saver_checkpoint.locate`).
      iteration: the iteration counter; default: read from the file name.

    Raises:
      CheckpointError: not a TensorFlow checkpoint, or no iteration in its name and none given.
    """
    file = Path(locate(path, "checkpoint"))
    reader, shapes, _ = open_checkpoint(str(file))
    if iteration is None:
        iteration = iteration_from_name(file)
        if iteration is None:
            raise CheckpointError(f"{file}: no iteration counter in the file name (the original's "
                                  "model_<iteration>.ckpt); give it with --iteration N")
    skipped = sorted(name for name in shapes if _SKIP.search(name))
    tensors = {name: read_tensor(reader, name, file) for name in sorted(set(shapes) - set(skipped))}
    return OriginalCheckpoint(file, tensors, skipped, int(iteration))


def format_mismatch(source: Path, what: str, expected: dict[str, tuple], found: dict[str, tuple]) -> str | None:
    """One sentence on the names and shapes that differ between `expected` and `found`, or None."""
    missing = [name for name in expected if name not in found]
    unexpected = [name for name in found if name not in expected]
    wrong = [name for name in expected if name in found and tuple(found[name]) != tuple(expected[name])]
    if not (missing or unexpected or wrong):
        return None

    def listing(names, shapes):
        shown = ", ".join(f"{name} {list(shapes[name])}" for name in names[:_SHOWN])
        return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")

    parts = []
    if missing:
        parts.append(f"{len(missing)} expected variable(s) missing: {listing(missing, expected)}")
    if unexpected:
        parts.append(f"{len(unexpected)} not expected: {listing(unexpected, found)}")
    if wrong:
        parts.append("shapes differ: " + ", ".join(f"{name} expected {list(expected[name])}, found "
                                                   f"{list(found[name])}" for name in wrong[:_SHOWN]))
    return f"{source}: does not match {what}: " + "; ".join(parts)


def _stage_config(stage, dataset: str, output_dir: str, overrides: dict[str, Any]) -> Config:
    return load_config(REPO / stage.name / "cfg" / f"{dataset}.yml",
                       {**overrides, "OUTPUT_DIR": output_dir, "DATASET_NAME": dataset})


def _fill(names: dict[str, Any], original: OriginalCheckpoint) -> None:
    for name, variable in names.items():
        variable.assign(original.tensors[name].astype(variable.dtype))


def _write_run(out: Path, gan, cfg: Config, stage, original: OriginalCheckpoint, names: dict[str, Any],
               epoch: int) -> Path:
    """Write one converted run folder atomically; returns the snapshot's weights path."""
    info = {"format": FORMAT, "source": str(original.path.resolve()), "stage": stage.name,
            "dataset": cfg.DATASET_NAME, "iteration": original.iteration, "epoch": epoch,
            "variables": sorted(names), "skipped": original.skipped,
            "optimizer_state": "fresh: the release's Adam slots are not converted"}
    with atomic_directory(out) as tmp:
        save_config(cfg, tmp / "config.yml")
        weights = save_checkpoint(gan, tmp, epoch=epoch, stage=stage.name, dataset=cfg.DATASET_NAME,
                                  iteration=original.iteration,
                                  extra={"converted_from": str(original.path.resolve())})
        atomic_write_text(tmp / INFO_FILE, json.dumps(info, indent=1) + "\n")
    return out / weights.name


def is_conversion(path: Path) -> bool:
    """Whether `path` is a run folder this module wrote."""
    try:
        return json.loads((path / INFO_FILE).read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _check_out(out: Path) -> None:
    if out.is_symlink():
        raise StackGANError(f"{out}: is a symbolic link, which a conversion would replace by a folder; "
                            "give a new folder with --out")
    if out.exists() and not (out.is_dir() and (is_conversion(out) or not any(out.iterdir()))):
        raise StackGANError(f"{out}: exists and is not an earlier conversion; give a new folder with --out")


def convert(path: str | os.PathLike, dataset: str, out: str | os.PathLike | None = None,
            output_dir: str = "ckt_logs", iteration: int | None = None, overrides: dict[str, Any] | None = None,
            print_fn: Callable[[str], None] = print) -> list[Path]:
    """Convert an original checkpoint into run folders of this project (see the module docstring).

    Args:
      path: the original checkpoint (file, V2 prefix or folder).
      dataset: "birds" or "flowers": the configs whose widths the networks are built at.
      out: the (Stage-II, or Stage-I for a Stage-I file) run folder; default
        `<output_dir>/<dataset>/original_<iteration>`.
      output_dir: where run folders go (`OUTPUT_DIR`).
      iteration: the iteration counter, if the file name has none.
      overrides: dotted config keys for both stages' configs (other widths than the release's).
      print_fn: where progress messages go.

    Returns:
      The snapshots written (`model_<iteration>.weights.h5`), the main one first.

    Raises:
      CheckpointError: an unreadable file, or names or shapes that differ from the networks'.
      StackGANError: an output folder that exists and is not an earlier conversion.
    """
    if dataset not in DATASETS:
        raise StackGANError(f"--dataset {dataset}: the original release has birds and flowers models")
    original = read_original(path, iteration)
    scopes = original.scopes
    stage = STAGE_II if {"hr_g_net", "hr_d_net"} & scopes else STAGE_I
    out = Path(out) if out else Path(output_dir) / dataset / f"original_{original.iteration}"
    stage1_out = out.with_name(f"{out.name}_stageI") if stage is STAGE_II else out
    for folder in {out, stage1_out}:
        _check_out(folder)
    print_fn(f"{original.path}: {len(original.tensors)} network variables ({', '.join(sorted(scopes))}), "
             f"{len(original.skipped)} optimiser and bookkeeping variables skipped; iteration {original.iteration}")

    overrides = dict(overrides or {})
    cfg1 = _stage_config(STAGE_I, dataset, output_dir, overrides)
    gan1 = stage1_trainer.build_gan(cfg1)
    names = dict(stage1_names(gan1))
    if stage is STAGE_II:
        cfg2 = _stage_config(STAGE_II, dataset, output_dir, overrides)
        stage1_generator, _ = stage1_trainer.build_networks(cfg2)
        gan2 = stage2_trainer.build_gan(cfg2, stage1_generator)
        names2 = stage2_names(gan2)
        names.update({name: variable for name, variable in names2.items() if not name.startswith("g_net/")})
        widths = f"the original Stage-II networks at the widths of stageII/cfg/{dataset}.yml"
    else:
        widths = f"the original Stage-I networks at the widths of stageI/cfg/{dataset}.yml"
    expected = {name: tuple(variable.shape) for name, variable in names.items()}
    found = {name: value.shape for name, value in original.tensors.items()}
    problem = format_mismatch(original.path, widths, expected, found)
    if problem:
        raise CheckpointError(problem)

    epoch = original.iteration // (TRAIN_IMAGES[dataset] // cfg1.TRAIN.BATCH_SIZE)
    _fill(stage1_names(gan1), original)
    runs = [(stage1_out, gan1, cfg1, STAGE_I, stage1_names(gan1))]
    if stage is STAGE_II:
        _fill(names2, original)
        runs.insert(0, (out, gan2, cfg2, STAGE_II, names2))
    written = []
    for folder, gan, cfg, run_stage, run_names in runs:
        written.append(_write_run(folder, gan, cfg, run_stage, original, run_names, epoch))
        print_fn(f"wrote {folder}/: a {run_stage.title} snapshot at iteration {original.iteration} (epoch {epoch}), "
                 f"{len(run_names)} variables")
    return written


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m misc.tools.convert_original",
        description="Convert a checkpoint of the original StackGAN release (TensorFlow 0.12; V1 file, V2 prefix or "
                    "folder) into this project's run folders: a Stage-II file gives a Stage-II run folder and a "
                    "Stage-I one beside it, a Stage-I file a Stage-I run folder. Every variable is checked by name "
                    "and shape; optimiser state is not converted.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n" + "\n".join(line for line in __doc__.splitlines() if "convert" in line and "  " in line[:6]))
    parser.add_argument("checkpoint", metavar="CKPT", help="the original checkpoint, e.g. birds_model_164000.ckpt")
    parser.add_argument("--dataset", required=True, choices=DATASETS,
                        help="which release the file is (the widths come from that dataset's configs)")
    parser.add_argument("--out", metavar="DIR", help="the run folder (default <ckt-dir>/<dataset>/original_<iteration>)")
    parser.add_argument("--ckt-dir", default="ckt_logs", metavar="DIR", help="where run folders go (default ckt_logs)")
    parser.add_argument("--iteration", type=int, metavar="N", help="the iteration, if the file name has none")
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                        help="override a key of both configs, e.g. GAN.GF_DIM=64 for a model trained at other widths")
    return parser


def main(argv: Sequence[str] | None = None, print_fn: Callable[[str], None] = print) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    overrides = dict(parse_override(text) for text in args.overrides)
    written = convert(args.checkpoint, args.dataset, args.out, args.ckt_dir, args.iteration, overrides,
                      print_fn=print_fn)
    print_fn(f"done: {written[0].parent}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    run_cli(main)
