"""Export a trained StackGAN as one TensorFlow SavedModel that draws images from raw sentences.

New in the port: the serving counterpart of the original demo (`demo/get_embedding.lua` in Lua
Torch, then `demo/demo.py` in TF 0.12) . The SavedModel holds our char-CNN-RNN text encoder
(`models/<dataset>/text_encoder`, with the text -> one-hot step `CharCnnRnn.encode_texts` in the graph) and
the generators of one snapshot, restored by `misc.generate.inference.load_generators` (Stage-I and Stage-II
from a Stage-II snapshot, Stage-I alone from a Stage-I one). Serving it needs TensorFlow alone: no
Keras model classes, no code of this project.

    python -m misc.generate.export                                  # newest snapshot of shapes -> models/shapes/saved_model
    python -m misc.generate.export --dataset birds --checkpoint ckt_logs/birds/stageII_<time>
    python -m misc.generate.export --stage stageI --out /tmp/stageI_model

Signatures (B: the batch, any size). With a seed, the graph draws the noise itself (`seeded_noise`:
row i depends on the seed and i only) and returns it, so a `*_with_noise` call can reproduce or vary
an image:

| signature                    | inputs                                                     | outputs                  |
|------------------------------|------------------------------------------------------------|--------------------------|
| `serving_default`            | captions string [B], seed int64 []                         | images, z, epsilon1(, 2) |
| `generate_with_noise`        | captions [B], z [B, z_dim], epsilon1(, 2) [B, ef_dim]      | images                   |
| `from_embeddings`            | embeddings float32 [B, text_dim], seed int64 []            | images, z, epsilon1(, 2) |
| `from_embeddings_with_noise` | embeddings [B, text_dim], z, epsilon1(, 2)                 | images                   |
| `embed_captions`             | captions [B]                                               | embeddings [B, text_dim] |

"images" are `stage1_images` float32 [B, 64, 64, 3] and, when Stage-II was exported,
`stage2_images` float32 [B, 256, 256, 3]: RGB in [0, 1], (tanh output + 1) / 2, the mapping of the
training sample grids. epsilon2 exists only with Stage-II. The generators run in test phase (BN
moving averages) with CA sampling on, as the original's sampler and demo (original `stageI/trainer.py`,
`demo/demo.py`). The
`from_embeddings*` signatures take any 1024-d char-CNN-RNN embeddings, e.g. the CUB / Oxford-102
ones of the original release.

Output: `<out>/` (default `models/<dataset>/saved_model/`) with the SavedModel and `export.json`
(dataset, snapshot, iteration, text encoder, signatures, image range, noise rule). The JSON sits
inside the folder, so that it is swapped in together with the model and always describes it. Both
are written into a temporary folder next to `<out>` that replaces `<out>` only when complete, so no
half-written export is ever found at `<out>`; an existing folder is replaced only if it is an
earlier export.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from misc.cli import import_tensorflow, run_cli
from misc.errors import CheckpointError, StackGANError
from misc.utils import atomic_directory

tf = import_tensorflow()  # quietly, before the modules below import TensorFlow

import keras  # noqa: E402

from misc.generate.inference import (  # noqa: E402
    MODELS_DIR, add_model_arguments, encoder_dir, load_model_arguments, resolve_model_arguments,
)

SAVED_MODEL_DIR = "saved_model"
INFO_FILE = "export.json"
FORMAT = "stackgan-saved-model-1"


# --------------------------------------------------------------------------------------------
# The graph
# --------------------------------------------------------------------------------------------

def seeded_noise(seed, n, z_dim: int, ef_dim: int, two_stages: bool) -> tuple:
    """The generators' noise for `n` rows from one integer seed, with stateless TF ops.

    Row i uses the seeds `tf.random.experimental.stateless_fold_in([seed, i], k)`, k = 0 for z,
    1 for epsilon1, 2 for epsilon2, so it depends only on (seed, i), never on the batch size: the
    first k rows of a call are those of the same call with only k rows. The values differ from the
    NumPy draws of `misc.generate.inference.TextToImageModels.sample_noise` (the sampler and the demo); give
    those to a `*_with_noise` signature to get the same images as they do.

    Args:
      seed: int64 scalar tensor (or int).
      n: number of rows (int32 scalar tensor or int).
      z_dim: size of z.
      ef_dim: size of each CA noise.
      two_stages: also draw the Stage-II CA noise.

    Returns:
      `(z (n, z_dim), epsilon1 (n, ef_dim))`, plus `epsilon2 (n, ef_dim)` if `two_stages`; float32.
    """
    seed = tf.cast(seed, tf.int64)
    fold_in = tf.random.experimental.stateless_fold_in

    def row(index):
        key = tf.stack([seed, index])
        draws = [tf.random.stateless_normal([z_dim], seed=fold_in(key, 0)),
                 tf.random.stateless_truncated_normal([ef_dim], seed=fold_in(key, 1))]
        if two_stages:
            draws.append(tf.random.stateless_truncated_normal([ef_dim], seed=fold_in(key, 2)))
        return tuple(draws)

    signature = (tf.float32,) * (3 if two_stages else 2)
    return tf.map_fn(row, tf.range(tf.cast(n, tf.int64)), fn_output_signature=signature)


def _at_least_one_row(*tensors) -> tuple:
    """`(rows, tensors)`: the row count of the first tensor, and the tensors with one padding row
    (zeros, or empty strings) appended when they have none, so that the networks never see a batch
    of zero rows; slicing the outputs to `[:rows]` gives the empty result.

    TensorFlow's oneDNN CPU kernels reject an empty batch on some CPUs (seen on an AMD EPYC with TF
    2.21: "input depth must be evenly divisible by filter depth: 70 vs 8" in the text encoder's
    convolution, "Incompatible shapes" in the generator's batch norm), while others return zero rows.
    """
    rows = tf.shape(tensors[0])[0]
    missing = tf.maximum(1 - rows, 0)
    padded = []
    for t in tensors:
        shape = tf.concat([[missing], tf.shape(t)[1:]], 0)
        pad = tf.fill(shape, "") if t.dtype == tf.string else tf.zeros(shape, t.dtype)
        padded.append(tf.concat([t, pad], 0))
    return rows, padded


def _noise_names(two_stages: bool) -> tuple[str, ...]:
    return ("z", "epsilon1", "epsilon2") if two_stages else ("z", "epsilon1")


def _images_doc(two_stages: bool) -> str:
    """What `export.json` says about the output images."""
    sizes = "stage1_images [B, 64, 64, 3], stage2_images [B, 256, 256, 3]" if two_stages else \
        "stage1_images [B, 64, 64, 3] (Stage-I only)"
    return f"float32 RGB in [0, 1] = (tanh output + 1) / 2; {sizes}"


def _noise_doc(two_stages: bool) -> str:
    """What `export.json` says about the seeded noise (`seeded_noise`)."""
    epsilons = "epsilon1 and epsilon2" if two_stages else "epsilon1"
    keys = "k = 0 (z), 1 (epsilon1), 2 (epsilon2)" if two_stages else "k = 0 (z), 1 (epsilon1)"
    return (f"row i of a call with seed s: z ~ N(0, 1) by tf.random.stateless_normal, {epsilons} ~ truncated "
            f"N(0, 1) by tf.random.stateless_truncated_normal, each seeded with "
            f"tf.random.experimental.stateless_fold_in([s, i], k), {keys}")


def build_archive(models, encoder=None):
    """A `keras.export.ExportArchive` with the five signatures of the module docstring.

    Args:
      models: `misc.generate.inference.TextToImageModels` (Stage-I, optionally Stage-II).
      encoder: the trained `misc.text.char_cnn_rnn.CharCnnRnn`; its `emb_dim` must be `models.text_dim`.
        None: only the two `from_embeddings*` signatures.

    Returns:
      `(archive, signatures)`: the archive, ready for `write_out`, and a description of each
      signature's inputs and outputs (`{name: {"inputs": {...}, "outputs": {...}}}`) for `export.json`.
    """
    two_stages = models.has_stage2
    noise_names = _noise_names(two_stages)
    noise_dims = {"z": models.z_dim, "epsilon1": models.ef_dim, "epsilon2": models.ef_dim}
    captions_spec = tf.TensorSpec([None], tf.string, name="captions")
    seed_spec = tf.TensorSpec([], tf.int64, name="seed")
    embeddings_spec = tf.TensorSpec([None, models.text_dim], tf.float32, name="embeddings")
    noise_specs = [tf.TensorSpec([None, noise_dims[k]], tf.float32, name=k) for k in noise_names]

    # The text encoder and the generators are traced once each, as two concrete functions that every
    # signature calls: tracing them per signature made the export several times slower and larger, and
    # a `tf.function` called from several graphs was traced twice.
    def embed_text(captions):
        rows, (padded,) = _at_least_one_row(captions)
        return encoder(encoder.encode_texts(padded))[:rows]  # the encoder's own text encoding

    def generate_images(embeddings, *noise):
        rows = tf.shape(embeddings)[0]
        checks = [tf.debugging.assert_equal(tf.shape(value)[0], rows,
                                            message=f"{name} needs one row per caption or embedding")
                  for name, value in zip(noise_names, noise)]
        with tf.control_dependencies(checks):
            rows, padded = _at_least_one_row(embeddings, *noise)
            stage1_images, stage2_images = models.generate(*padded)
        images = {"stage1_images": (stage1_images[:rows] + 1.0) / 2.0}
        if stage2_images is not None:
            images["stage2_images"] = (stage2_images[:rows] + 1.0) / 2.0
        return images

    generate = tf.function(generate_images, input_signature=[embeddings_spec, *noise_specs],
                           autograph=False).get_concrete_function()

    def generate_seeded(embeddings, seed):
        noise = seeded_noise(seed, tf.shape(embeddings)[0], models.z_dim, models.ef_dim, two_stages)
        return {**generate(embeddings, *noise), **dict(zip(noise_names, noise))}

    endpoints = {
        "from_embeddings": (generate_seeded, [embeddings_spec, seed_spec]),
        "from_embeddings_with_noise": (lambda embeddings, *noise: generate(embeddings, *noise),
                                       [embeddings_spec, *noise_specs]),
    }
    if encoder is not None:
        embed = tf.function(embed_text, input_signature=[captions_spec], autograph=False).get_concrete_function()
        endpoints = {
            "serving_default": (lambda captions, seed: generate_seeded(embed(captions), seed),
                                [captions_spec, seed_spec]),
            "generate_with_noise": (lambda captions, *noise: generate(embed(captions), *noise),
                                    [captions_spec, *noise_specs]),
            **endpoints,
            "embed_captions": (lambda captions: {"embeddings": embed(captions)}, [captions_spec]),
        }
    # No `archive.track(...)`: the endpoints pick up the variables they use, and tracking the
    # networks only adds a slow walk over them looking for lookup tables (they have none).
    archive = keras.export.ExportArchive()
    signatures = {}
    for name, (fn, specs) in endpoints.items():
        function = archive.add_endpoint(name, fn, input_signature=specs)
        outputs = function.get_concrete_function().structured_outputs
        signatures[name] = {"inputs": {spec.name: _describe(spec) for spec in specs},
                            "outputs": {key: _describe(value) for key, value in outputs.items()}}
    return archive, signatures


def _describe(spec) -> str:
    """'float32 [B, 64, 64, 3]' for a TensorSpec (B: the batch, any size)."""
    return f"{spec.dtype.name} {list(spec.shape.as_list())}".replace("None", "B")


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

def is_export(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder this module wrote (it holds `export.json` of this format)."""
    try:
        return json.loads((Path(path) / INFO_FILE).read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_replaceable(out: str | os.PathLike) -> None:
    """Refuse an output path that exists and is neither an earlier export nor an empty folder.

    Raises:
      StackGANError: naming the path (the export would delete what is there).
    """
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return
    if out.is_dir() and not out.is_symlink() and (is_export(out) or not any(out.iterdir())):
        return
    raise StackGANError(f"--out {out}: exists and is not an earlier StackGAN export; give a new folder "
                        f"(an export replaces its output folder entirely)")


def folder_size(path: str | os.PathLike) -> int:
    """Bytes of all files under `path`."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def export_saved_model(models, encoder, out: str | os.PathLike, encoder_path: str | os.PathLike,
                       print_fn: Callable[[str], None] = print) -> dict[str, Any]:
    """Write the SavedModel and `export.json` to `out`, atomically.

    Args:
      models: `misc.generate.inference.TextToImageModels`.
      encoder: the `CharCnnRnn` (`emb_dim == models.text_dim`), or None for an export that takes
        embeddings only (the `from_embeddings*` signatures).
      out: the export folder (replaced if it is an earlier export).
      encoder_path: where the encoder came from (recorded in `export.json`).
      print_fn: progress messages.

    Returns:
      The content of `export.json`.

    Raises:
      CheckpointError: the encoder's embeddings do not fit the generators.
      StackGANError: `out` exists and is not an earlier export.
    """
    if encoder is not None and encoder.emb_dim != models.text_dim:
        raise CheckpointError(f"{models.checkpoint}: the generators take {models.text_dim}-d text embeddings but the "
                              f"text encoder {encoder_path} gives {encoder.emb_dim}-d ones")
    out = Path(out)
    check_replaceable(out)
    print_fn("tracing the signatures ...")
    archive, signatures = build_archive(models, encoder)
    stages = ["stageI", "stageII"] if models.has_stage2 else ["stageI"]
    info = {
        "format": FORMAT,
        "dataset": models.dataset,
        "stages": stages,
        "checkpoint": {"path": str(models.checkpoint), "stage": models.stage,
                       "iteration": models.iteration, "epoch": int(models.record.get("epoch", 0))},
        # A Stage-II snapshot holds the Stage-I generator it was trained on; that one is exported.
        "stage1_generator_from": str(models.checkpoint),
        "text_encoder": str(encoder_path) if encoder is not None else None,
        "z_dim": models.z_dim,
        "ef_dim": models.ef_dim,
        "text_dim": models.text_dim,
        "images": _images_doc(models.has_stage2),
        "noise": _noise_doc(models.has_stage2),
        "signatures": signatures,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "created": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    if encoder is None:
        info["note"] = ("exported without a text encoder: only the signatures that take embeddings "
                        "(from_embeddings, from_embeddings_with_noise; serving_default is from_embeddings)")
    print_fn(f"writing {out} ...")
    with atomic_directory(out) as tmp:
        archive.write_out(str(tmp), verbose=False)
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m misc.generate.export",
        description="Export the newest (or a given) StackGAN snapshot with its text encoder as one TensorFlow "
                    "SavedModel that maps raw sentences (or 1024-d embeddings) to Stage-I and, if trained, "
                    "Stage-II images. Serving it needs TensorFlow only.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n" + "\n".join(line for line in __doc__.splitlines() if "python -m misc.generate.export" in line))
    add_model_arguments(parser, "export")
    parser.add_argument("--out", metavar="DIR",
                        help=f"export folder (default models/<dataset>/{SAVED_MODEL_DIR}); replaced if it holds an "
                             "earlier export")
    return parser


def main(argv: Sequence[str] | None = None, print_fn: Callable[[str], None] = print) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    # The checks that load nothing first: a missing snapshot or a bad --out is reported at once.
    weights, dataset = resolve_model_arguments(args)
    out = Path(args.out) if args.out else Path(MODELS_DIR) / dataset / SAVED_MODEL_DIR
    check_replaceable(out)
    encoder, models = load_model_arguments(args, weights, dataset, encoder_required=False)
    stages = "Stage-I and Stage-II" if models.has_stage2 else "Stage-I only"
    print_fn(f"checkpoint: {models.checkpoint} ({stages}, iteration {models.iteration})")
    if encoder is None:
        print_fn(f"no text encoder in {encoder_dir(dataset)}: exporting the signatures that take embeddings only "
                 f"(from_embeddings, from_embeddings_with_noise); `make text-encoder DATASET={dataset}` or "
                 f"`make import-t7 DATASET={dataset}` adds the ones that take sentences")
    start = time.time()
    info = export_saved_model(models, encoder, out, encoder_dir(args.encoder or dataset), print_fn=print_fn)
    print_fn(f"exported {out} ({folder_size(out) / 2**20:.1f} MiB, {time.time() - start:.0f} s): signatures "
             f"{', '.join(info['signatures'])}; details in {out / INFO_FILE}")
    call = ("m.signatures['serving_default'](captions=tf.constant(['a red star']), seed=0)" if encoder is not None
            else f"m.signatures['from_embeddings'](embeddings=tf.zeros([1, {models.text_dim}]), seed=0)")
    print_fn(f"serve it with TensorFlow alone: m = tf.saved_model.load({str(out)!r}); {call}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    run_cli(main)
