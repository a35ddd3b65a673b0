"""The `shapes` dataset: coloured geometric shapes with captions, in the original StackGAN data layout.

A small synthetic stand-in for CUB birds that trains in minutes and can be scored automatically: every
image shows one foreground shape on a background of mild noise around a base colour, and its ten
captions describe it in words, each mentioning a different subset of its attributes. The files follow
the release layout of `Data/birds` (the original README) so the ordinary loader
(`misc.datasets.load_split`) and trainers read them unchanged; only the embeddings file is missing,
which `misc.text.encoder` writes from the captions.

Attributes of an image (all colours are exact sRGB values of `PALETTE`):

- shape: circle, square, triangle, diamond, star, cross (`SHAPES`);
- colour of the shape and colour of the background, two different entries of `PALETTE`;
- size: small / medium / large, the shape's larger dimension is about 25 / 40 / 55 % of the image
  side (`SIZES`, jittered by at most +-6 %);
- position: centre, left, right, top, bottom (`POSITIONS`); an off-centre shape keeps 2-6 % of the
  image side between its bounding box and that border, and is centred within +-3 % on the other axis.

A class is a (shape, colour) pair: 48 classes, numbered 1..48 shape-major (`001.red_circle`,
`002.orange_circle`, ...). Train and test classes are disjoint, 36 : 12 as CUB's 150 : 50; the split
is fixed (it does not depend on `--seed`) and keeps every shape and every colour in train.

Files written under the output folder (default `Data/shapes/`):

    images/<class_dir>/<name>.jpg         the 304x304 images, JPEG quality 95, for people to look at
    text_c10/<class_dir>/<name>.txt       10 captions, one per line
    train/ and test/:
        filenames.pickle                  list of '<class_dir>/<name>' strings (class-ordered)
        class_info.pickle                 list of int class ids (1-based) aligned with filenames
        304images.pickle, 76images.pickle lists of uint8 (S, S, 3) arrays; 76 = bicubic resize of 304
        attributes.json                   per image: filename, class_id, shape, colour, background,
                                          size, position, center [x, y] and extent (fractions of the
                                          image side) -- for scoring generated images
    example_captions.txt                  one caption per test class (demo input, as in Data/birds)
    README.md                             palette, attributes and caption vocabulary in words
    shapes_manifest.json                  seed, counts, palette, class split; written last

Pickles use protocol 2, as the original's, except the image lists (protocol 4, see
`misc.pickle_io.IMAGE_PICKLE_PROTOCOL`). The dataset is built in a hidden sibling folder and moved
onto the output folder only when complete, so an interrupted run never leaves a dataset that looks
complete; `is_complete` checks the manifest. Everything is deterministic from `--seed`: image `j` of
class `k` draws from its own generator seeded with `(seed, k, j)`, so it does not depend on how many
images per class are made.

Run `python -m misc.data.shapes --help` (or `make data`).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

from misc.cli import run_cli
from misc.errors import ConfigError, DataError
from misc.pickle_io import IMAGE_PICKLE_PROTOCOL, dump_pickle
from misc.datasets import CAPTIONS_PER_IMAGE, LOAD_SIZE, LR_SIZE
from misc.utils import atomic_write_text, mkdir_p
from misc.utils import progress as progress_bar

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 25, 35),
    "orange": (245, 130, 30),
    "yellow": (250, 225, 40),
    "green": (40, 170, 60),
    "blue": (30, 90, 220),
    "purple": (140, 50, 180),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "cross")
# Fraction of the image side covered by the shape's larger dimension.
SIZES: dict[str, float] = {"small": 0.25, "medium": 0.40, "large": 0.55}
POSITIONS: tuple[str, ...] = ("centre", "left", "right", "top", "bottom")

# Words a caption may use for each attribute value; a caption never uses a word listed under another
# value of the same attribute, so captions can be parsed back (tests and scoring rely on this).
COLOUR_WORDS: dict[str, tuple[str, ...]] = {name: (name,) for name in PALETTE}
COLOUR_WORDS["purple"] = ("purple", "violet")
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disk"),
    "square": ("square",),
    "triangle": ("triangle",),
    "diamond": ("diamond", "rhombus"),
    "star": ("star",),
    "cross": ("cross", "plus"),
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "medium": ("medium", "mid"),
    "large": ("big", "large", "huge"),
}
POSITION_WORDS: dict[str, tuple[str, ...]] = {
    "centre": ("centre", "center", "centred", "centered", "middle"),
    "left": ("left",),
    "right": ("right",),
    "top": ("top", "upper"),
    "bottom": ("bottom", "lower"),
}
BACKGROUND_WORDS: tuple[str, ...] = ("background", "backdrop")

MAX_CAPTION_CHARS = 200  # the char-CNN-RNN reads 201 characters (reedscot/cvpr2016 `util.lua`)
DEFAULT_PER_CLASS = 40  # 48 x 40 = 1920 images: about 45 s of CPU, 0.9 GB on disk (measured)
JPEG_QUALITY = 95
SUPERSAMPLE = 4  # shapes are drawn at 4x and box-filtered down, for anti-aliased edges
NOISE_SIGMA = 8.0  # std of the background noise, in 0..255 levels
SIZE_JITTER = 0.06  # relative; keeps the three size ranges well apart (<= .265, .376-.424, >= .517)
BORDER_MARGIN = (0.02, 0.06)  # gap between an off-centre shape and its border, fraction of the side
CROSS_AXIS_JITTER = 0.03  # shift of the centre along the axes a position does not name
DIAMOND_ASPECT = 0.75  # width / height; a diamond is never a square turned by 45 degrees
STAR_INNER_RATIO = 0.45  # inner / outer radius of the five-pointed star
CROSS_ARM = 1.0 / 3.0  # arm thickness / overall width of the plus-shaped cross
SPLIT_SEED = 2017  # fixes the class split for every --seed
FORMAT_VERSION = 1
MANIFEST = "shapes_manifest.json"


def class_list() -> list[dict[str, Any]]:
    """All 48 classes in id order: shape-major, then colour in `PALETTE` order.

    Returns:
      One dict per class with `id` (1-based), `shape`, `colour` and `dir` (e.g. '001.red_circle').
    """
    classes = []
    for shape in SHAPES:
        for colour in PALETTE:
            cid = len(classes) + 1
            classes.append({"id": cid, "shape": shape, "colour": colour,
                            "dir": f"{cid:03d}.{colour}_{shape}"})
    return classes


def split_classes() -> dict[str, list[dict[str, Any]]]:
    """The class-disjoint train / test split (36 / 12 classes), the same for every seed.

    Each shape gives two of its colours to test, taken pairwise from one fixed permutation of the
    palette, so every colour is a test colour once or twice and every shape and colour stays in train.

    Returns:
      {'train': [...], 'test': [...]}, entries of `class_list()` in id order.
    """
    colours = list(PALETTE)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(colours))
    test_ids = {s * len(colours) + int(order[k % len(colours)]) + 1
                for s in range(len(SHAPES)) for k in (2 * s, 2 * s + 1)}
    classes = class_list()
    return {"train": [c for c in classes if c["id"] not in test_ids],
            "test": [c for c in classes if c["id"] in test_ids]}


def sample_attributes(shape: str, colour: str, rng: np.random.Generator) -> dict[str, Any]:
    """Draw the background, size, position and exact geometry of one image of class (shape, colour).

    Args:
      shape: an entry of `SHAPES`.
      colour: a key of `PALETTE`, the shape's colour.
      rng: source of randomness.

    Returns:
      A dict with `shape`, `colour`, `background`, `size`, `position`, and the geometry `center`
      ([x, y], fractions of the side, origin top left) and `extent` (the shape's larger dimension,
      fraction of the side), rounded to 4 decimals -- exactly what `render_image` draws.
    """
    backgrounds = [name for name in PALETTE if name != colour]
    background = backgrounds[rng.integers(len(backgrounds))]
    size = list(SIZES)[rng.integers(len(SIZES))]
    position = POSITIONS[rng.integers(len(POSITIONS))]
    jitter = rng.uniform(-SIZE_JITTER, SIZE_JITTER)
    extent = SIZES[size] * (1.0 + jitter)
    margin = rng.uniform(*BORDER_MARGIN)
    cx, cy = 0.5 + rng.uniform(-CROSS_AXIS_JITTER, CROSS_AXIS_JITTER, size=2)
    near, far = margin + extent / 2.0, 1.0 - margin - extent / 2.0
    if position == "left":
        cx = near
    elif position == "right":
        cx = far
    elif position == "top":
        cy = near
    elif position == "bottom":
        cy = far
    return {
        "shape": shape,
        "colour": colour,
        "background": background,
        "size": size,
        "position": position,
        "center": [round(float(cx), 4), round(float(cy), 4)],
        "extent": round(float(extent), 4),
    }


def _unit_polygon(shape: str) -> np.ndarray:
    """Vertices (K, 2) of a polygonal shape in arbitrary units, y pointing down."""
    if shape == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    if shape == "triangle":  # equilateral, pointing up
        return np.array([[0, -np.sqrt(3) / 2], [1, np.sqrt(3) / 2], [-1, np.sqrt(3) / 2]])
    if shape == "diamond":
        return np.array([[0, -1], [DIAMOND_ASPECT, 0], [0, 1], [-DIAMOND_ASPECT, 0]], dtype=np.float64)
    if shape == "star":  # five points, one pointing up
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, STAR_INNER_RATIO)
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    if shape == "cross":
        a = CROSS_ARM
        return np.array([[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a], [a, 1], [-a, 1],
                         [-a, a], [-1, a], [-1, -a], [-a, -a]])
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def _shape_mask(attrs: dict[str, Any], size: int) -> np.ndarray:
    """Coverage in [0, 1] (size, size) of the shape, anti-aliased by supersampling."""
    big = size * SUPERSAMPLE
    cx, cy = (np.asarray(attrs["center"], dtype=np.float64) * big)
    half = attrs["extent"] * big / 2.0
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    if attrs["shape"] == "circle":
        draw.ellipse([cx - half, cy - half, cx + half, cy + half], fill=255)
    else:
        points = _unit_polygon(attrs["shape"])
        low, high = points.min(axis=0), points.max(axis=0)
        # Scale so the larger side of the bounding box is the extent, and centre that box.
        points = (points - (low + high) / 2.0) * (2.0 * half / (high - low).max()) + (cx, cy)
        draw.polygon([tuple(p) for p in points], fill=255)
    return np.asarray(mask.reduce(SUPERSAMPLE), dtype=np.float32) / 255.0


def render_image(attrs: dict[str, Any], size: int = LOAD_SIZE, *, rng: np.random.Generator) -> np.ndarray:
    """Draw one image: the shape in its flat palette colour over a noisy background.

    Args:
      attrs: attributes from `sample_attributes` (shape, colour, background, center, extent).
      size: side of the square image in pixels.
      rng: source of the background noise.

    Returns:
      uint8 array (size, size, 3). Pixels fully inside the shape are exactly `PALETTE[colour]`;
      background pixels are `PALETTE[background]` plus Gaussian noise of std `NOISE_SIGMA`, clipped.
    """
    alpha = _shape_mask(attrs, size)[..., None]
    # In-place float32 arithmetic: this function is most of the generation time.
    image = rng.standard_normal((size, size, 3), dtype=np.float32)
    image *= NOISE_SIGMA
    image += np.asarray(PALETTE[attrs["background"]], dtype=np.float32)
    towards_shape = np.asarray(PALETTE[attrs["colour"]], dtype=np.float32) - image
    towards_shape *= alpha
    image += towards_shape
    np.rint(image, out=image)
    np.clip(image, 0, 255, out=image)
    return image.astype(np.uint8)


def downsample(image: np.ndarray, size: int = LR_SIZE) -> np.ndarray:
    """Bicubic resize of a uint8 image, as the original `misc/preprocess_birds.py` makes 76 from 304."""
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC))


# ---- captions ---------------------------------------------------------------------------------------
# A caption is built from a noun phrase ("a big red star"), optional place and background phrases and
# sometimes a second sentence ("It is red."). Which attributes a caption mentions is decided first;
# each phrase below only ever states the attribute value it is listed under.

_OPTIONAL = ("colour", "background", "size", "position")
_NOUNS = {
    "circle": ("circle", "circle", "disk"),
    "square": ("square",),
    "triangle": ("triangle",),
    "diamond": ("diamond", "diamond", "rhombus"),
    "star": ("star", "star", "five-pointed star"),
    "cross": ("cross", "cross", "plus sign"),
}
_SIZE_ADJECTIVES = {
    "small": ("small", "little", "tiny"),
    "medium": ("medium-sized", "mid-sized", "medium"),
    "large": ("big", "large", "huge"),
}
_SIZE_PREDICATES = {
    "small": ("small", "quite small", "rather small", "tiny"),
    "medium": ("medium-sized", "of medium size", "mid-sized", "medium in size"),
    "large": ("big", "large", "quite large", "very big", "huge"),
}
_COLOUR_PREDICATES = ("{c}", "{c}", "coloured {c}", "colored {c}", "{c} in colour", "{c} in color")
_PLACES = {
    "centre": ("in the centre", "in the center", "in the middle", "in the middle of the picture",
               "at the centre of the image", "centred in the frame", "centered in the image"),
    "left": ("on the left", "on the left side", "in the left part of the image", "towards the left",
             "on the left-hand side", "in the left half of the picture"),
    "right": ("on the right", "on the right side", "in the right part of the image", "towards the right",
              "on the right-hand side", "in the right half of the picture"),
    "top": ("at the top", "in the upper part", "in the upper part of the picture", "near the top",
            "towards the top of the image", "in the top half"),
    "bottom": ("at the bottom", "in the lower part", "in the lower part of the picture", "near the bottom",
               "towards the bottom of the image", "in the bottom half"),
}
_BACKGROUND_PHRASES = ("on a {c} background", "on a {c} background", "against a {c} background",
                       "on a plain {c} background", "over a {c} backdrop", "with a {c} background",
                       "on a grainy {c} background", "in front of a {c} background")
_LEADS = ("", "", "this is ", "there is ", "the picture shows ", "the image shows ", "an image of ",
          "a picture of ", "a drawing of ", "the image contains ", "here we see ", "i can see ", "we see ",
          "a simple picture of ", "the only shape is ", "this picture has ")
_VERBS = ("is shown", "can be seen", "sits", "is drawn", "appears", "is placed", "is painted")
_BACKGROUND_FIRST = ("on a {c} background there is {np}{place}", "a {c} background with {np}{place}",
                     "the background is {c} and there is {np}{place}")
_PLACE_FIRST = ("{place}, there is {np}{bg}", "{place} we see {np}{bg}", "{place} sits {np}{bg}")


def _pick(options: Sequence[str], rng: np.random.Generator) -> str:
    return options[rng.integers(len(options))]


def _finish(sentences: list[str]) -> str:
    """Join sentences, turn 'a orange' into 'an orange', capitalise and end with a period."""
    text = re.sub(r"\ba (?=[aeiou])", "an ", ". ".join(sentences))
    return ". ".join(s[0].upper() + s[1:] for s in text.split(". ")) + "."


def _caption(attrs: dict[str, Any], mention: frozenset[str], rng: np.random.Generator) -> str:
    """One caption of `attrs` that mentions the shape plus exactly the attributes in `mention`."""
    noun = _pick(_NOUNS[attrs["shape"]], rng)
    colour = _pick(COLOUR_WORDS[attrs["colour"]], rng)
    background = _pick(COLOUR_WORDS[attrs["background"]], rng)
    # Colour and size are said inside the noun phrase ("a big red star") or in a second sentence.
    colour_inside = "colour" in mention and rng.random() < 0.75
    size_inside = "size" in mention and rng.random() < 0.7
    adjectives = ([_pick(_SIZE_ADJECTIVES[attrs["size"]], rng)] if size_inside else []) + (
        [colour] if colour_inside else [])
    noun_phrase = "a " + " ".join(adjectives + [noun])
    predicates = []
    if "size" in mention and not size_inside:
        predicates.append(_pick(_SIZE_PREDICATES[attrs["size"]], rng))
    if "colour" in mention and not colour_inside:
        predicates.append(_pick(_COLOUR_PREDICATES, rng).format(c=colour))
    rng.shuffle(predicates)
    place = " " + _pick(_PLACES[attrs["position"]], rng) if "position" in mention else ""
    bg_phrase = ""
    bg_sentence = ""
    if "background" in mention:
        if rng.random() < 0.2:  # now and then as its own sentence, "The background is blue."
            bg_sentence = f"the background is {background}"
        else:
            bg_phrase = " " + _pick(_BACKGROUND_PHRASES, rng).format(c=background)

    frames = ["lead"]
    if place or bg_phrase:
        frames.append("verb")
    if bg_phrase:
        frames.append("background_first")
    if place:
        frames.append("place_first")
    frame = _pick(frames, rng)
    tail = [p for p in (place, bg_phrase) if p]
    rng.shuffle(tail)
    if frame == "lead":
        text = _pick(_LEADS, rng) + noun_phrase + "".join(tail)
    elif frame == "verb":
        text = noun_phrase + " " + _pick(_VERBS, rng) + "".join(tail)
    elif frame == "background_first":
        text = _pick(_BACKGROUND_FIRST, rng).format(c=background, np=noun_phrase, place=place)
    else:
        text = _pick(_PLACE_FIRST, rng).format(place=place.strip(), np=noun_phrase, bg=bg_phrase)
    sentences = [text]
    if predicates:
        subject = _pick(("it", f"the {noun}"), rng)
        sentences.append(f"{subject} is " + " and ".join(predicates))
    if bg_sentence:
        sentences.append(bg_sentence)
    return _finish(sentences)


def make_captions(attrs: dict[str, Any], rng: np.random.Generator, n: int = CAPTIONS_PER_IMAGE) -> list[str]:
    """Write `n` captions of one image, each mentioning a different subset of its attributes.

    Every caption names the shape; which of colour, background, size and position it adds is drawn
    without replacement from the 16 subsets (subsets with the shape's colour, which defines the class,
    are drawn more often), so the ten captions of an image all differ. No caption states a value the
    image does not have.

    Args:
      attrs: attributes from `sample_attributes`.
      rng: source of randomness.
      n: number of captions; beyond 16 the subsets repeat.

    Returns:
      `n` sentences of at most `MAX_CAPTION_CHARS` characters, capitalised, ending with a period.
    """
    subsets = [frozenset(a for bit, a in enumerate(_OPTIONAL) if mask >> bit & 1) for mask in range(16)]
    weights = np.array([(2.0 if "colour" in s else 1.0) * (0.3 if not s else 1.0) for s in subsets])
    chosen: list[frozenset[str]] = []
    while len(chosen) < n:
        take = min(n - len(chosen), len(subsets))
        picks = rng.choice(len(subsets), size=take, replace=False, p=weights / weights.sum())
        chosen.extend(subsets[i] for i in picks)
    return [_caption(attrs, mention, rng) for mention in chosen]


# ---- reading captions back ---------------------------------------------------------------------------

# The attributes a caption can name, in the order `caption_attributes` returns them.
ATTRIBUTE_NAMES = ("shape", "colour", "background", "size", "position")


def _lookup(table: dict[str, tuple[str, ...]]) -> dict[str, str]:
    return {word: value for value, words in table.items() for word in words}


_COLOUR_LOOKUP = _lookup(COLOUR_WORDS)
_OTHER_LOOKUPS = {"shape": _lookup(SHAPE_WORDS), "size": _lookup(SIZE_WORDS), "position": _lookup(POSITION_WORDS)}


def caption_attributes(caption: str | bytes) -> dict[str, str]:
    """The attributes a shapes caption names, with the value it names for each.

    Reads the caption with the vocabulary above (the dataset's README lists it), which never uses
    a word of one value for another value of the same attribute: a colour word right before
    'background'/'backdrop' or right after 'background is' names the background, every other
    colour word the shape's colour; the shape, size and position words are unambiguous.

    Args:
      caption: one caption (str, or UTF-8 bytes as `load_captioned_split` reads them).

    Returns:
      {attribute: value} for the attributes named, e.g. {'shape': 'star', 'colour': 'red'};
      attributes in `ATTRIBUTE_NAMES` order.

    Raises:
      ValueError: the caption names two values of one attribute (not a shapes caption).
    """
    text = caption.decode("utf-8", "replace") if isinstance(caption, bytes) else caption
    words = re.findall(r"[a-z]+", text.lower())
    named: dict[str, set[str]] = {name: set() for name in ATTRIBUTE_NAMES}
    for i, word in enumerate(words):
        if word in _COLOUR_LOOKUP:
            after = words[i + 1] if i + 1 < len(words) else ""
            about_background = after in BACKGROUND_WORDS or (
                i >= 2 and words[i - 1] == "is" and words[i - 2] in BACKGROUND_WORDS)
            named["background" if about_background else "colour"].add(_COLOUR_LOOKUP[word])
        for name, table in _OTHER_LOOKUPS.items():
            if word in table:
                named[name].add(table[word])
    clashes = {name: sorted(values) for name, values in named.items() if len(values) > 1}
    if clashes:
        raise ValueError(f"caption {text!r} names several values of one attribute: {clashes}")
    return {name: values.pop() for name, values in named.items() if values}


# ---- writing the dataset ----------------------------------------------------------------------------

_README = """# The `shapes` dataset

Synthetic StackGAN data written by `python -m misc.data.shapes` (seed {seed}, {per_class} images per class).
Each {high}x{high} image shows one flat-coloured shape on a background of its base colour plus Gaussian
noise (std {sigma} levels). The `{low}images.pickle` files hold bicubic {low}x{low} resizes.

## Attributes

| attribute | values |
|---|---|
| shape | {shapes} |
| colour (shape) | one palette colour; the class is (shape, colour) |
| background | one palette colour, never the shape's colour |
| size | {sizes} (the shape's larger dimension as a fraction of the image side, +-{jitter:.0%}) |
| position | {positions} (off-centre shapes keep 2-6 % of the side to their border) |

Palette (exact sRGB of the shape pixels and the background base colour):

| name | RGB | words in captions |
|---|---|---|
{palette}

Captions use these words for the other attributes (and none of them for anything else):

{vocabulary}

`<split>/attributes.json` lists, per image in the order of `filenames.pickle`, the attributes plus
`center` ([x, y], fractions of the side from the top left) and `extent`. To score a generated image
against a caption, compare the median colour inside the shape and in the corners with the palette
(nearest palette entry) and the shape's bounding box with the size and position named.

## Classes

Train ({n_train} classes): {train}

Test ({n_test} classes): {test}
"""


def _readme(seed: int, per_class: int, train: list[dict], test: list[dict]) -> str:
    palette = "\n".join(f"| {name} | {rgb} | {', '.join(COLOUR_WORDS[name])} |"
                        for name, rgb in PALETTE.items())
    vocab = []
    for title, table in (("shape", SHAPE_WORDS), ("size", SIZE_WORDS), ("position", POSITION_WORDS)):
        vocab.append(f"- {title}: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in table.items()))
    vocab.append("- the background colour word comes right before 'background'/'backdrop' or right after "
                 "'background is'; every other colour word names the shape's colour")
    return _README.format(
        seed=seed, per_class=per_class, high=LOAD_SIZE, low=LR_SIZE, sigma=NOISE_SIGMA,
        shapes=", ".join(SHAPES), positions=", ".join(POSITIONS), jitter=SIZE_JITTER,
        sizes=", ".join(f"{k} {v:.0%}" for k, v in SIZES.items()), palette=palette,
        vocabulary="\n".join(vocab), n_train=len(train), n_test=len(test),
        train=", ".join(c["dir"] for c in train), test=", ".join(c["dir"] for c in test))


def is_complete(out_dir: str | os.PathLike) -> bool:
    """Whether `out_dir` holds a finished shapes dataset of the current format.

    Args:
      out_dir: the dataset folder.

    Returns:
      True if its manifest (written last) is readable, of this `FORMAT_VERSION`, and every file it
      lists exists.
    """
    out_dir = Path(out_dir)
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        return False
    return all((out_dir / name).is_file() for name in manifest.get("files", []))


def _holds(out_dir: Path, seed: int, per_class: int) -> bool:
    """Whether `out_dir` is a complete shapes dataset made with this seed and size."""
    if not is_complete(out_dir):
        return False
    manifest = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
    return manifest.get("seed") == seed and manifest.get("per_class") == per_class


def _write_split(root: Path, name: str, classes: list[dict], seed: int, per_class: int, bar) -> list[str]:
    """Render, caption and save one split under `root`; return one example caption per class."""
    filenames, class_ids, high, low, records, examples = [], [], [], [], [], []
    for cls in classes:
        for j in range(1, per_class + 1):
            rng = np.random.default_rng([seed, cls["id"], j])
            attrs = sample_attributes(cls["shape"], cls["colour"], rng)
            image = render_image(attrs, LOAD_SIZE, rng=rng)
            captions = make_captions(attrs, rng)
            filename = f"{cls['dir']}/{cls['colour']}_{cls['shape']}_{j:04d}"
            image_path = root / "images" / f"{filename}.jpg"
            mkdir_p(image_path.parent)
            Image.fromarray(image).save(image_path, quality=JPEG_QUALITY)
            text_path = root / "text_c10" / f"{filename}.txt"
            mkdir_p(text_path.parent)
            text_path.write_text("\n".join(captions) + "\n", encoding="utf-8")
            if j == 1:  # the longest caption mentions the most attributes: the best demo input
                examples.append(max(captions, key=len))
            filenames.append(filename)
            class_ids.append(cls["id"])
            high.append(image)
            low.append(downsample(image))
            records.append({"filename": filename, "class_id": cls["id"], **attrs})
            bar.update(1)
    split = root / name
    dump_pickle(filenames, split / "filenames.pickle")
    dump_pickle(class_ids, split / "class_info.pickle")
    dump_pickle(high, split / f"{LOAD_SIZE}images.pickle", protocol=IMAGE_PICKLE_PROTOCOL)
    dump_pickle(low, split / f"{LR_SIZE}images.pickle", protocol=IMAGE_PICKLE_PROTOCOL)
    atomic_write_text(split / "attributes.json", json.dumps(records, indent=1) + "\n")
    return examples


def generate_shapes(out_dir: str | os.PathLike = "Data/shapes", seed: int = 0,
                    per_class: int = DEFAULT_PER_CLASS, progress: bool = True, force: bool = False) -> Path:
    """Write the shapes dataset in the original release layout (see the module docstring).

    Args:
      out_dir: destination folder; an older shapes dataset there is replaced.
      seed: seed of every random choice (the class split is fixed and does not depend on it).
      per_class: images per class (48 classes; 36 train, 12 test).
      progress: show a progress bar.
      force: regenerate even if `out_dir` already holds a complete dataset with this seed and size.

    Returns:
      The dataset folder.

    Raises:
      ConfigError: `per_class` is not positive.
      DataError: `out_dir` exists, is not empty and is not a shapes dataset.
    """
    out_dir = Path(out_dir)
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ConfigError(f"shapes per_class must be a positive integer, got {per_class!r}")
    foreign = not (out_dir / MANIFEST).is_file() and (not out_dir.is_dir() or any(out_dir.iterdir()))
    if out_dir.exists() and foreign:
        raise DataError(f"{out_dir}: exists and is not a shapes dataset (no {MANIFEST}); "
                        "remove it or choose another output folder")
    if not force and _holds(out_dir, seed, per_class):
        return out_dir

    splits = split_classes()
    mkdir_p(out_dir.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        total = sum(map(len, splits.values())) * per_class
        with progress_bar(total=total, desc="shapes", unit="img", disable=not progress) as bar:
            examples = {name: _write_split(tmp, name, cls, seed, per_class, bar)
                        for name, cls in splits.items()}
        atomic_write_text(tmp / "example_captions.txt", "\n".join(examples["test"]) + "\n")
        atomic_write_text(tmp / "README.md", _readme(seed, per_class, splits["train"], splits["test"]))
        files = ["README.md", "example_captions.txt"] + [
            f"{split}/{name}" for split in splits
            for name in ("filenames.pickle", "class_info.pickle", f"{LOAD_SIZE}images.pickle",
                         f"{LR_SIZE}images.pickle", "attributes.json")]
        manifest = {
            "generator": "misc.data.shapes", "format_version": FORMAT_VERSION,
            "seed": seed, "per_class": per_class,
            "num_images": {split: len(cls) * per_class for split, cls in splits.items()},
            "classes": {split: [c["dir"] for c in cls] for split, cls in splits.items()},
            "palette": {name: list(rgb) for name, rgb in PALETTE.items()},
            "shapes": list(SHAPES), "sizes": SIZES, "positions": list(POSITIONS),
            "image_sizes": [LOAD_SIZE, LR_SIZE], "files": files,
        }
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=1) + "\n")
        _move_into_place(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out_dir


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    """Replace `out_dir` (absent, empty, or an older shapes dataset) with the finished `tmp`."""
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    os.replace(out_dir, old / "dataset")
    os.replace(tmp, out_dir)
    shutil.rmtree(old)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: `python -m misc.data.shapes [--out DIR] [--seed N] [--per-class N]`."""
    parser = argparse.ArgumentParser(
        prog="python -m misc.data.shapes",
        description="Write the synthetic `shapes` dataset (coloured shapes with 10 captions per image) "
                    "in the original StackGAN data layout: images/, text_c10/, train/ and test/ with "
                    "filenames, class_info, 304images and 76images pickles, plus attributes.json for "
                    "scoring.",
        epilog="The text embeddings are not written here; run the text encoder on the captions afterwards.")
    parser.add_argument("--out", default="Data/shapes", help="output folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--per-class", type=_positive_int, default=DEFAULT_PER_CLASS,
                        help="images per class; 48 classes, 36 train / 12 test (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--force", action="store_true",
                        help="regenerate even if the folder already holds this exact dataset")
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    if not args.force and _holds(out_dir, args.seed, args.per_class):
        print(f"{out_dir} already holds this shapes dataset (seed {args.seed}); use --force to rewrite it")
        return 0
    generate_shapes(out_dir, seed=args.seed, per_class=args.per_class, progress=not args.quiet, force=True)
    counts = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))["num_images"]
    print(f"wrote {counts['train']} train and {counts['test']} test images (seed {args.seed}) to {out_dir}")
    return 0


if __name__ == "__main__":
    run_cli(main)
