"""Text to image: draw any sentences with a trained StackGAN, or walk from one sentence to another.

Port of the original demo (`demo/birds_demo.sh`: `get_embedding.lua`, then `demo/demo.py`) 
in one command: our char-CNN-RNN (`models/<dataset>/text_encoder`) embeds the sentences, the
generators of the newest snapshot of the dataset (Stage-II if trained, else Stage-I) draw k samples
of each in test phase (BN moving averages, z ~ N(0, 1), CA noise ~ truncated N(0, 1)), and each
sentence gets a sheet: its caption, the Stage-I row and, with Stage-II, the Stage-II row.

    python -m misc.generate.demo "a big red star on a blue background" "a small white circle at the top"
    python -m misc.generate.demo --captions Data/shapes/example_captions.txt --num-samples 4 --seed 1
    python -m misc.generate.demo --interpolate "a red circle" "a blue square" --steps 8

Outputs (default folder `results/demo/`): `sentence<k>.jpg` for the k-th sentence and `captions.txt`
listing them; with `--interpolate A B`, `interpolation.jpg` (a row per noise sample, the text
embedding moving linearly from A's to B's over `--steps` columns, z and the CA noise fixed along a
row) and, with Stage-II, `interpolation_stageI.jpg`.

Without sentences it draws the dataset's `Data/<dataset>/example_captions.txt` (as the original
demo), or a few built-in shapes sentences.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from misc.cli import import_tensorflow, run_cli
from misc.datasets import read_caption_lines
from misc.errors import DataError, StackGANError
from misc.utils import atomic_write_text, mkdir_p

import_tensorflow()  # quietly, before the modules below import TensorFlow

from misc.generate.inference import add_model_arguments, load_model_arguments, resolve_model_arguments  # noqa: E402
from misc.generate.sheets import caption_sheet, save_image, strip_sheet, upsample  # noqa: E402
from misc.text.encoder import embed_sentences  # noqa: E402
from misc.visualize import to_uint8  # noqa: E402

DEFAULT_OUT = "results/demo"
# The original demo's TEST.NUM_COPY (original `demo/demo.py`).
DEFAULT_SAMPLES = 8
DEFAULT_STEPS = 8
BATCH_SIZE = 64
EXAMPLES_FILE = "example_captions.txt"
# Drawn when the dataset has no example_captions.txt (shapes vocabulary).
BUILT_IN_EXAMPLES = (
    "A large red circle in the centre on a blue background.",
    "A small yellow star near the top against a black background.",
    "A white square on the left. The background is green.",
    "A medium-sized purple triangle at the bottom on an orange background.",
)
SHEET_NAME = re.compile(r"^sentence(\d+)\.jpg$")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m misc.generate.demo",
        description="Generate images from sentences with a trained StackGAN: one captioned sheet per sentence "
                    "(Stage-I and, if trained, Stage-II samples), or an interpolation between two sentences.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n" + "\n".join(line for line in __doc__.splitlines() if "python -m misc.generate.demo" in line))
    parser.add_argument("sentences", nargs="*", help="sentences to draw (default: the dataset's example captions)")
    parser.add_argument("--captions", metavar="FILE", help="a text file with one sentence per line (blank lines skipped)")
    parser.add_argument("--interpolate", nargs=2, metavar=("A", "B"),
                        help="draw the way from sentence A to sentence B (interpolation.jpg)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                        help=f"columns of the interpolation, A and B included (default {DEFAULT_STEPS})")
    parser.add_argument("--num-samples", type=int, default=DEFAULT_SAMPLES, metavar="K",
                        help=f"samples per sentence, or rows of the interpolation (default {DEFAULT_SAMPLES}, "
                             "as the original demo)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise: same seed, same images (default 0)")
    add_model_arguments(parser, "draw")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output folder (default {DEFAULT_OUT})")
    return parser


def read_caption_file(path: str | Path) -> list[str]:
    """The non-blank lines of a caption file, stripped.

    Raises:
      DataError: the file is missing, unreadable or has no sentence.
    """
    sentences = [line.decode("utf-8", errors="replace") for line in read_caption_lines(path)]
    if not sentences:
        raise DataError(f"{path}: the caption file has no sentence (one sentence per line)")
    return sentences


def example_sentences(dataset: str, data_root: str | Path = "Data") -> tuple[list[str], str]:
    """The dataset's example captions (`Data/<dataset>/example_captions.txt`), else the built-in ones.

    Returns:
      `(sentences, where they came from)`.

    Raises:
      StackGANError: no example file and a dataset other than shapes.
    """
    path = Path(data_root) / dataset / EXAMPLES_FILE
    if path.is_file():
        return read_caption_file(path), str(path)
    if dataset != "shapes":
        raise StackGANError(f"{path}: not found; give sentences as arguments or a file with --captions FILE")
    return list(BUILT_IN_EXAMPLES), "the built-in shapes examples"


def _validate(args: argparse.Namespace) -> None:
    if args.num_samples < 1:
        raise StackGANError(f"--num-samples must be at least 1, got {args.num_samples}")
    if args.interpolate and args.steps < 2:
        raise StackGANError(f"--steps must be at least 2 (A and B), got {args.steps}")


def _generate(models, embeddings: np.ndarray, noise) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 Stage-I and Stage-II (or None) images of `embeddings` (N, D) with noise rows (N, ...)."""
    z, epsilon1, epsilon2 = noise
    stage1, stage2 = [], []
    for start in range(0, len(embeddings), BATCH_SIZE):
        rows = slice(start, start + BATCH_SIZE)
        low, high = models.generate(embeddings[rows], z[rows], epsilon1[rows],
                                    None if epsilon2 is None else epsilon2[rows])
        stage1.append(to_uint8(low))
        if high is not None:
            stage2.append(to_uint8(high))
    return np.concatenate(stage1), (np.concatenate(stage2) if stage2 else None)


def draw_sentences(models, encoder, sentences: Sequence[str], out: Path, num_samples: int, seed: int) -> list[Path]:
    """Write `sentence<k>.jpg` per sentence and `captions.txt` (port of the loop of the original
    `demo/demo.py`).

    Returns:
      The sheets written.
    """
    embeddings = np.repeat(embed_sentences(encoder, list(sentences)), num_samples, axis=0)
    stage1, stage2 = _generate(models, embeddings, models.sample_noise(len(embeddings), seed))
    size = models.image_size
    written = []
    for k, sentence in enumerate(sentences):
        rows = slice(k * num_samples, (k + 1) * num_samples)
        sheet_rows = [("Stage-I", upsample(stage1[rows], size))]
        if stage2 is not None:
            sheet_rows.append(("Stage-II", stage2[rows]))
        path = out / f"sentence{k}.jpg"
        save_image(caption_sheet(sentence, sheet_rows), path)
        written.append(path)
    for stale in out.iterdir():  # sheets of a previous, longer run would be mistaken for this run's
        match = SHEET_NAME.match(stale.name)
        if match and int(match.group(1)) >= len(sentences):
            stale.unlink()
    atomic_write_text(out / "captions.txt", "".join(f"sentence{k}.jpg: {s}\n" for k, s in enumerate(sentences)))
    return written


def interpolation_embeddings(start: np.ndarray, end: np.ndarray, steps: int) -> np.ndarray:
    """`steps` embeddings on the line from `start` to `end`, both included: (steps, D)."""
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    return ((1.0 - t) * start[None] + t * end[None]).astype(np.float32)


def draw_interpolation(models, encoder, first: str, second: str, out: Path, steps: int, num_samples: int,
                       seed: int) -> list[Path]:
    """Write `interpolation.jpg` (and `interpolation_stageI.jpg` with Stage-II): one row per noise
    sample, the text embedding moving linearly from `first`'s to `second`'s along the row.

    Returns:
      The sheets written.
    """
    ends = embed_sentences(encoder, [first, second])
    line = interpolation_embeddings(ends[0], ends[1], steps)
    embeddings = np.tile(line, (num_samples, 1))  # row r, column j: line[j]
    z, epsilon1, epsilon2 = models.sample_noise(num_samples, seed)
    noise = tuple(None if a is None else np.repeat(a, steps, axis=0) for a in (z, epsilon1, epsilon2))
    stage1, stage2 = _generate(models, embeddings, noise)
    header = [f"from: {first}", f"to: {second}"]
    written = []
    for name, images in (("interpolation.jpg", stage2 if stage2 is not None else stage1),
                         ("interpolation_stageI.jpg", stage1 if stage2 is not None else None)):
        if images is None:
            # A Stage-II run's Stage-I strip would otherwise sit beside this run's sheet as if it were its pair.
            (out / name).unlink(missing_ok=True)
            continue
        grid = images.reshape((num_samples, steps) + images.shape[1:])
        save_image(strip_sheet(header, grid), out / name)
        written.append(out / name)
    return written


def main(argv: Sequence[str] | None = None, print_fn: Callable[[str], None] = print) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    _validate(args)
    # The checks that load nothing first: a bad caption file or a missing snapshot is reported at once.
    weights, dataset = resolve_model_arguments(args)
    sentences = list(args.sentences)
    if args.captions:
        sentences += read_caption_file(args.captions)
    if not sentences and not args.interpolate:
        sentences, source = example_sentences(dataset)
        print_fn(f"no sentences given: drawing the {len(sentences)} examples of {source}")
    encoder, models = load_model_arguments(args, weights, dataset)
    stages = "Stage-I and Stage-II" if models.has_stage2 else "Stage-I"
    print_fn(f"checkpoint: {models.checkpoint} ({stages}, iteration {models.iteration})")
    out = mkdir_p(args.out)
    if sentences:
        sheets = draw_sentences(models, encoder, sentences, out, args.num_samples, args.seed)
        print_fn(f"{len(sheets)} sheet(s) of {args.num_samples} samples: {out}/sentence<k>.jpg "
                 f"(sentences in {out / 'captions.txt'})")
    if args.interpolate:
        for path in draw_interpolation(models, encoder, *args.interpolate, out, args.steps, args.num_samples,
                                       args.seed):
            print_fn(f"interpolation: {path}")
    print_fn(f"done: {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
