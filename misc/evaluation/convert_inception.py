"""Convert Inception-v3 weights from TensorFlow files into a Keras weights file for `make eval`.

Two inputs, two variants of `misc.evaluation.inception.build_inception`:

**The 2015 Inception graph** of the standard TF FID (variant "tf2015").
`classify_image_graph_def.pb` (TensorFlow's inception-2015-12-05 release, the network of
bioinf-jku/TTUR `fid.py` and openai/improved-gan) is a frozen GraphDef: every weight is a `Const`
node. Its 94 convolutions are named after their block and branch (`conv`, `conv_1`, ...,
`mixed/tower/conv_1`, ..., `mixed_10/tower_2/conv`), each with a kernel `<name>/conv2d_params`
(height, width, in, out; no bias) and a batch norm `<name>/batchnorm` with `beta`, `gamma`,
`moving_mean` and `moving_variance` (op BatchNormWithGlobalNormalization, epsilon 0.001, gamma
unused); the classifier is `softmax/weights` (2048, 1008) and `softmax/biases`. Keras'
`InceptionV3` builds the same convolutions in the same order (within each block: the 1x1 branch,
then the branches from left to right, then the pooling branch), each followed by a batch norm
without gamma and with epsilon 0.001, so the conversion is a copy in order, checked shape by shape.
The result loads with `misc.evaluation.inception.build_inception(path, variant="tf2015")`, which also
rebuilds the one structural difference of the 2015 graph (a max pool in the last block's pooling
branch) and its input stage (TF1 bilinear resize to 299, (x - 128) / 128).

**A TF-slim Inception-v3 checkpoint** (variant "slim"), such as StackGAN-inception-model's scorers
fine-tuned on the CUB / Oxford-102 test classes (`model.ckpt-5000`: 51 / 21 outputs, output 0 an
unused background class). `tf.train.load_checkpoint` reads it: a V2 prefix (`model.ckpt-5000`
beside its `.index` and `.data-*` files), a V1 single file, or a folder holding one. Two
generations of TF-slim names are recognised, whichever the checkpoint holds:

* `nets/inception_v3.py` of tensorflow/models' research/slim: `InceptionV3/Conv2d_1a_3x3/weights`,
  `InceptionV3/Mixed_5b/Branch_1/Conv2d_0b_5x5/BatchNorm/beta`, ..., and the classifier, a 1 x 1
  convolution `InceptionV3/Logits/Conv2d_1c_1x1/weights` (1, 1, 2048, N) with `biases` (N,).
* the 2016 `inception/slim/inception_model.py` that StackGAN-inception-model's `inception_score.py`
  imports (`from inception.slim import slim`), and so its checkpoints: `conv0/weights`,
  `mixed_35x35x256a/branch5x5/Conv_1/BatchNorm/beta`, ..., and a fully connected classifier
  `logits/logits/weights` (2048, N) with `biases` (N,).

Each of the 94 convolutions has `weights` (height, width, in, out) and a `BatchNorm` with `beta`,
`moving_mean` and `moving_variance`, and no `gamma`: both slims default to `scale=False`, and both
Inception-v3 arg scopes (and StackGAN-inception-model's `batch_norm_params`) use epsilon 0.001,
which Keras' InceptionV3 also uses; a checkpoint stores neither, so the converter checks the Keras
side. The number of classes is read from the classifier's shape. Where the checkpoint holds
`<name>/ExponentialMovingAverage` shadows for every variable read, the shadows are converted,
because StackGAN-inception-model's scorer restores them (`variables_to_restore()` of an
ExponentialMovingAverage with decay 0.9999); without any, the variables themselves are.

Left out on purpose, and counted in what `convert_slim` returns:

* the auxiliary head (`InceptionV3/AuxLogits/...`, `aux_logits/...`): a training-time side
  classifier that neither the scorer's predictions nor Keras' InceptionV3 use;
* optimiser slots (`.../RMSProp`, `.../RMSProp_1`, `.../Momentum`, `.../Adam`, ...);
* bookkeeping outside the network's scopes (`global_step`, Adam's `beta1_power`, the training
  loss averages `tower_0/.../avg`, ...);
* the raw variables behind the shadows, when the shadows are converted.

Any other name under the network's scopes (a `gamma`, a convolution `biases`, a name of another
network), a missing variable, or a shape that does not fit stops the conversion with one
`StackGANError` before anything is written.

Run `python -m misc.evaluation.convert_inception classify_image_graph_def.pb models/inception/inception_2015.weights.h5`,
or, for StackGAN-inception-model's birds scorer,

    python -m misc.evaluation.convert_inception --slim --inception-classes 51 \
        inception_finetuned_models/birds_valid299/model.ckpt-5000 models/inception/birds_finetuned.weights.h5
    make eval INCEPTION=models/inception/birds_finetuned.weights.h5 \
        ARGS="--inception-variant slim --inception-classes 51 --inception-background"

Nothing is downloaded: the files come from the user (README 'Evaluation weights').
"""
from __future__ import annotations

import argparse
import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from misc.cli import import_tensorflow, run_cli
from misc.errors import StackGANError

tf = import_tensorflow()
import keras  # noqa: E402  (after the quiet TensorFlow import)

from misc.evaluation.inception import build_inception  # noqa: E402
from misc.saver_checkpoint import locate, looks_like_checkpoint, open_checkpoint, read_tensor  # noqa: E402
from misc.utils import atomic_path  # noqa: E402

# The 2015 graph's BatchNormWithGlobalNormalization epsilon, equal to Keras InceptionV3's.
BN_EPSILON = 1e-3
CLASSIFIER = "softmax"


def graph_conv_names() -> list[str]:
    """The 94 convolutions of the 2015 graph, in the order Keras' InceptionV3 creates them."""
    names = ["conv", "conv_1", "conv_2", "conv_3", "conv_4"]  # the stem, around pool and pool_1
    for block in ("mixed", "mixed_1", "mixed_2"):  # 35 x 35: 1x1, 5x5, double 3x3, pool branches
        names += [f"{block}/conv", f"{block}/tower/conv", f"{block}/tower/conv_1", f"{block}/tower_1/conv",
                  f"{block}/tower_1/conv_1", f"{block}/tower_1/conv_2", f"{block}/tower_2/conv"]
    names += ["mixed_3/conv", "mixed_3/tower/conv", "mixed_3/tower/conv_1", "mixed_3/tower/conv_2"]
    for block in ("mixed_4", "mixed_5", "mixed_6", "mixed_7"):  # 17 x 17: 1x1, 7x7, double 7x7, pool
        names += [f"{block}/conv", f"{block}/tower/conv", f"{block}/tower/conv_1", f"{block}/tower/conv_2"]
        names += [f"{block}/tower_1/conv"] + [f"{block}/tower_1/conv_{k}" for k in range(1, 5)]
        names += [f"{block}/tower_2/conv"]
    names += ["mixed_8/tower/conv", "mixed_8/tower/conv_1"] + [
        "mixed_8/tower_1/conv"] + [f"mixed_8/tower_1/conv_{k}" for k in range(1, 4)]
    for block in ("mixed_9", "mixed_10"):  # 8 x 8: 1x1, split 3x3, double split 3x3, pool
        names += [f"{block}/conv", f"{block}/tower/conv", f"{block}/tower/mixed/conv",
                  f"{block}/tower/mixed/conv_1", f"{block}/tower_1/conv", f"{block}/tower_1/conv_1",
                  f"{block}/tower_1/mixed/conv", f"{block}/tower_1/mixed/conv_1", f"{block}/tower_2/conv"]
    return names


def _creation_index(layer: keras.layers.Layer) -> int:
    """Keras numbers automatic layer names in creation order: conv2d, conv2d_1, conv2d_2, ..."""
    match = re.search(r"_(\d+)$", layer.name)
    return int(match.group(1)) if match else 0


def conv_bn_pairs(model: keras.Model) -> list[tuple[keras.layers.Conv2D, keras.layers.BatchNormalization]]:
    """The model's (convolution, its batch norm) pairs in creation order, i.e. `graph_conv_names` order."""
    convs = sorted((layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)), key=_creation_index)
    norms = {id(layer.input): layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)}
    return [(conv, norms[id(conv.output)]) for conv in convs]


def read_graph_constants(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, "tf.compat.v1.NodeDef"]]:
    """The `Const` values and every node of a frozen GraphDef file, by node name.

    Raises:
      StackGANError: the file is missing or not a GraphDef.
    """
    path = Path(path)
    if not path.is_file():
        raise StackGANError(f"{path}: GraphDef file not found (classify_image_graph_def.pb of "
                            "inception-2015-12-05; see README 'Evaluation weights')")
    graph = tf.compat.v1.GraphDef()
    try:
        graph.ParseFromString(path.read_bytes())
    except Exception as err:  # protobuf's DecodeError and friends
        raise StackGANError(f"{path}: not a binary GraphDef ({type(err).__name__})") from None
    if not graph.node:
        raise StackGANError(f"{path}: not a binary GraphDef (no nodes)")
    nodes = {node.name: node for node in graph.node}
    constants = {name: tf.make_ndarray(node.attr["value"].tensor)
                 for name, node in nodes.items() if node.op == "Const"}
    return constants, nodes


def _constant(constants: dict[str, np.ndarray], name: str, shape: tuple, path: Path) -> np.ndarray:
    if name not in constants:
        raise StackGANError(f"{path}: has no constant {name!r}; is it the 2015 Inception graph?")
    value = constants[name]
    if tuple(value.shape) != tuple(shape):
        raise StackGANError(f"{path}: {name} has shape {tuple(value.shape)}, the Keras layer needs {tuple(shape)}")
    return value.astype(np.float32)


def _check_batch_norm(nodes: dict, name: str, path: Path) -> None:
    """The graph's batch norm must be the one Keras computes: epsilon 0.001, no gamma."""
    node = nodes.get(f"{name}/batchnorm")
    if node is None or node.op != "BatchNormWithGlobalNormalization":
        return  # constants only (e.g. a graph pruned to its weights): nothing more to check
    epsilon = node.attr["variance_epsilon"].f
    if not np.isclose(epsilon, BN_EPSILON, rtol=1e-4):
        raise StackGANError(f"{path}: {name}/batchnorm has epsilon {epsilon:.3g}, Keras' InceptionV3 uses "
                            f"{BN_EPSILON}")
    if node.attr["scale_after_normalization"].b:
        raise StackGANError(f"{path}: {name}/batchnorm scales by gamma, which Keras' InceptionV3 has no weight for")


def convert(graph_path: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the weights of the 2015 graph into a Keras `.weights.h5` file for variant "tf2015".

    Args:
      graph_path: `classify_image_graph_def.pb`.
      out: the weights file to write (atomically); must end in `.weights.h5`.

    Returns:
      `out`.

    Raises:
      StackGANError: unreadable graph, a missing constant, or a shape that does not fit.
    """
    graph_path, out = Path(graph_path), Path(out)
    if not out.name.endswith(".weights.h5"):
        raise StackGANError(f"{out}: the output must be a .weights.h5 file")
    constants, nodes = read_graph_constants(graph_path)
    needed = [f"{name}/{part}" for name in graph_conv_names() for part in
              ("conv2d_params", "batchnorm/beta", "batchnorm/moving_mean", "batchnorm/moving_variance")]
    for name in needed + [f"{CLASSIFIER}/weights", f"{CLASSIFIER}/biases"]:
        if name not in constants:  # before the network is built: a wrong file fails at once
            raise StackGANError(f"{graph_path}: has no constant {name!r}; is it the 2015 Inception graph?")
    model = build_inception(None, variant="tf2015")
    pairs = conv_bn_pairs(model)
    names = graph_conv_names()
    assert len(pairs) == len(names), (len(pairs), len(names))
    for name, (conv, norm) in zip(names, pairs):
        conv.set_weights([_constant(constants, f"{name}/conv2d_params", conv.kernel.shape, graph_path)])
        _check_batch_norm(nodes, name, graph_path)
        norm.set_weights([_constant(constants, f"{name}/batchnorm/{part}", (norm.beta.shape[0],), graph_path)
                          for part in ("beta", "moving_mean", "moving_variance")])
    dense = model.get_layer("predictions")
    dense.set_weights([_constant(constants, f"{CLASSIFIER}/weights", dense.kernel.shape, graph_path),
                       _constant(constants, f"{CLASSIFIER}/biases", dense.bias.shape, graph_path)])
    with atomic_path(out, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
    return out


# --- TF-slim checkpoints -------------------------------------------------------------------------

# Batch norm of TF-slim's Inception-v3 (both arg scopes, and StackGAN-inception-model's
# `batch_norm_params`): epsilon 0.001 and, by slim's default scale=False, no gamma.
SLIM_BN_EPSILON = 1e-3
SLIM_SCOPE = "InceptionV3"
EMA_SUFFIX = "/ExponentialMovingAverage"
# The slots TF1 optimisers create beside each variable they train.
_OPTIMIZER_SLOT = re.compile(r"/(RMSProp|Momentum|Adam|Adagrad|AdagradDA|Adadelta|Ftrl|ProximalAdagrad)(_\d+)?$")
_SHOWN = 3  # names an error message lists
SKIP_REASONS = ("auxiliary head", "optimiser slots", "bookkeeping", "raw values behind the averages")


def slim_conv_names() -> list[str]:
    """The 94 convolution scopes of research/slim's `nets/inception_v3.py`, in Keras' creation order."""
    names = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"]
    for block in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):  # 35 x 35: 1x1, 5x5, double 3x3, pool branches
        # Mixed_5c's 5x5 branch kept two odd scopes of the first release, and its checkpoints with them.
        five = ("Conv2d_0b_1x1", "Conv_1_0c_5x5") if block == "Mixed_5c" else ("Conv2d_0a_1x1", "Conv2d_0b_5x5")
        names += [f"{block}/Branch_0/Conv2d_0a_1x1"] + [f"{block}/Branch_1/{name}" for name in five]
        names += [f"{block}/Branch_2/Conv2d_{code}" for code in ("0a_1x1", "0b_3x3", "0c_3x3")]
        names += [f"{block}/Branch_3/Conv2d_0b_1x1"]
    # Both stride-2 convolutions of Mixed_6a are scoped `Conv2d_1a_1x1` though their kernels are 3 x 3.
    names += ["Mixed_6a/Branch_0/Conv2d_1a_1x1"]
    names += [f"Mixed_6a/Branch_1/Conv2d_{code}" for code in ("0a_1x1", "0b_3x3", "1a_1x1")]
    for block in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):  # 17 x 17: 1x1, 7x7, double 7x7, pool
        names += [f"{block}/Branch_0/Conv2d_0a_1x1"]
        names += [f"{block}/Branch_1/Conv2d_{code}" for code in ("0a_1x1", "0b_1x7", "0c_7x1")]
        names += [f"{block}/Branch_2/Conv2d_{code}" for code in ("0a_1x1", "0b_7x1", "0c_1x7", "0d_7x1", "0e_1x7")]
        names += [f"{block}/Branch_3/Conv2d_0b_1x1"]
    names += [f"Mixed_7a/Branch_0/Conv2d_{code}" for code in ("0a_1x1", "1a_3x3")]
    names += [f"Mixed_7a/Branch_1/Conv2d_{code}" for code in ("0a_1x1", "0b_1x7", "0c_7x1", "1a_3x3")]
    for block, three_by_one in (("Mixed_7b", "0b_3x1"), ("Mixed_7c", "0c_3x1")):  # 8 x 8; they differ here only
        names += [f"{block}/Branch_0/Conv2d_0a_1x1"]
        names += [f"{block}/Branch_1/Conv2d_{code}" for code in ("0a_1x1", "0b_1x3", three_by_one)]
        names += [f"{block}/Branch_2/Conv2d_{code}" for code in ("0a_1x1", "0b_3x3", "0c_1x3", "0d_3x1")]
        names += [f"{block}/Branch_3/Conv2d_0b_1x1"]
    return [f"{SLIM_SCOPE}/{name}" for name in names]


def inception_slim_conv_names() -> list[str]:
    """The 94 convolution scopes of the 2016 `inception/slim/inception_model.py`, in Keras' creation order.

    Its layers take the default scope `Conv`, `Conv_1`, ... in order inside each branch.
    """
    def branch(block: str, name: str, count: int) -> list[str]:
        return [f"{block}/{name}/Conv" + (f"_{k}" if k else "") for k in range(count)]

    names = [f"conv{k}" for k in range(5)]
    for block in ("mixed_35x35x256a", "mixed_35x35x288a", "mixed_35x35x288b"):
        names += (branch(block, "branch1x1", 1) + branch(block, "branch5x5", 2) + branch(block, "branch3x3dbl", 3)
                  + branch(block, "branch_pool", 1))
    names += branch("mixed_17x17x768a", "branch3x3", 1) + branch("mixed_17x17x768a", "branch3x3dbl", 3)
    for block in ("mixed_17x17x768b", "mixed_17x17x768c", "mixed_17x17x768d", "mixed_17x17x768e"):
        names += (branch(block, "branch1x1", 1) + branch(block, "branch7x7", 3) + branch(block, "branch7x7dbl", 5)
                  + branch(block, "branch_pool", 1))
    # The 8 x 8 x 1280 block kept the scope `mixed_17x17x1280a` so as not to void older checkpoints.
    names += branch("mixed_17x17x1280a", "branch3x3", 2) + branch("mixed_17x17x1280a", "branch7x7x3", 4)
    for block in ("mixed_8x8x2048a", "mixed_8x8x2048b"):
        names += (branch(block, "branch1x1", 1) + branch(block, "branch3x3", 3) + branch(block, "branch3x3dbl", 4)
                  + branch(block, "branch_pool", 1))
    return names


@dataclass(frozen=True)
class SlimNaming:
    """Where one generation of TF-slim keeps Inception-v3's variables.

    Attributes:
      title: how messages name it.
      convs: the 94 convolution scopes in Keras' creation order.
      logits: the classifier's scope, holding `weights` and `biases`.
      logits_is_conv: the classifier is a 1 x 1 convolution, weights (1, 1, 2048, N), rather than a
        fully connected layer, weights (2048, N).
      aux: prefix of the auxiliary head (skipped).
      network: regular expression matching the names inside the network; others are bookkeeping.
    """

    title: str
    convs: tuple[str, ...]
    logits: str
    logits_is_conv: bool
    aux: str
    network: str


SLIM_NAMINGS = (
    SlimNaming("research/slim nets/inception_v3.py (InceptionV3/...)", tuple(slim_conv_names()),
               f"{SLIM_SCOPE}/Logits/Conv2d_1c_1x1", True, f"{SLIM_SCOPE}/AuxLogits/", rf"{SLIM_SCOPE}/"),
    SlimNaming("the 2016 inception/slim of StackGAN-inception-model (conv0, mixed_35x35x256a, ...)",
               tuple(inception_slim_conv_names()), "logits/logits", False, "aux_logits/",
               r"(conv\d+|mixed_\w+|logits)/"),
)


def slim_variable_names(naming: SlimNaming) -> list[str]:
    """The 378 variables the conversion reads, in Keras' creation order: 94 x 4, then the classifier's 2."""
    names = [f"{conv}/{part}" for conv in naming.convs
             for part in ("weights", "BatchNorm/beta", "BatchNorm/moving_mean", "BatchNorm/moving_variance")]
    return names + [f"{naming.logits}/weights", f"{naming.logits}/biases"]


@dataclass(frozen=True)
class SlimPlan:
    """Which checkpoint variable fills which expected variable, decided from the names alone.

    Attributes:
      naming: the naming the checkpoint follows.
      sources: expected name (`slim_variable_names` order) -> the checkpoint variable to read, the
        name itself or its ExponentialMovingAverage shadow.
      averaged: whether the shadows are read.
      skipped: checkpoint variables left out, by reason (`SKIP_REASONS`).
    """

    naming: SlimNaming
    sources: dict[str, str]
    averaged: bool
    skipped: dict[str, list[str]]


def _mismatch(path: str, what: str, expected: list[str], found: list[str]) -> StackGANError:
    """One line: what is wrong, then the first few expected and found names side by side."""
    pairs = itertools.zip_longest(expected[:_SHOWN], found[:_SHOWN], fillvalue="-")
    listing = ", ".join(f"{want} | {have}" for want, have in pairs)
    return StackGANError(f"{path}: {what} (expected | found: {listing})")


def plan_slim(shapes: dict[str, tuple[int, ...]], path: str = "checkpoint") -> SlimPlan:
    """Match a checkpoint's variable names against TF-slim's Inception-v3 (see the module docstring).

    Args:
      shapes: every variable of the checkpoint and its shape, as `tf.train.list_variables` gives.
      path: the checkpoint, for messages.

    Returns:
      The plan, for the naming that explains most expected names.

    Raises:
      StackGANError: an expected variable is missing, a name under the network's scopes is not
        expected, or only some variables have ExponentialMovingAverage shadows.
    """
    def present(naming: SlimNaming) -> int:
        return sum(name in shapes or name + EMA_SUFFIX in shapes for name in slim_variable_names(naming))

    naming = max(SLIM_NAMINGS, key=present)  # ties (no Inception-v3 at all): research/slim's names
    expected = slim_variable_names(naming)
    wanted = set(expected)
    skipped = {reason: [] for reason in SKIP_REASONS}
    unexpected = []
    for key in shapes:
        base = key[:-len(EMA_SUFFIX)] if key.endswith(EMA_SUFFIX) else key
        if base in wanted:
            continue
        if _OPTIMIZER_SLOT.search(key):
            skipped["optimiser slots"].append(key)
        elif base.startswith(naming.aux):
            skipped["auxiliary head"].append(key)
        elif not re.match(naming.network, base):
            skipped["bookkeeping"].append(key)
        else:
            unexpected.append(key)
    missing = [name for name in expected if name not in shapes and name + EMA_SUFFIX not in shapes]
    if missing or unexpected:
        # With nothing unexpected (say, another network entirely), show what the file holds instead.
        found = sorted(unexpected) or sorted(key for keys in skipped.values() for key in keys)
        raise _mismatch(path, f"not Inception-v3 in the names of {naming.title}: {len(missing)} of "
                              f"{len(expected)} expected variables missing, {len(unexpected)} unexpected",
                        missing, found)
    shadowed = [name for name in expected if name + EMA_SUFFIX in shapes]
    if 0 < len(shadowed) < len(expected):
        raise _mismatch(path, f"ExponentialMovingAverage shadows for only {len(shadowed)} of {len(expected)} "
                              "variables, where StackGAN-inception-model's scorer restores one for each",
                        [name + EMA_SUFFIX for name in expected if name not in shadowed],
                        [name + EMA_SUFFIX for name in shadowed])
    averaged = bool(shadowed)
    if averaged:
        skipped["raw values behind the averages"] = [name for name in expected if name in shapes]
    sources = {name: name + EMA_SUFFIX if averaged else name for name in expected}
    return SlimPlan(naming, sources, averaged, skipped)


def _check_keras_batch_norms(model: keras.Model) -> None:
    """Keras' batch norms must compute slim's: epsilon 0.001, a beta, no gamma."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            if not np.isclose(layer.epsilon, SLIM_BN_EPSILON, rtol=1e-6) or layer.scale or not layer.center:
                raise StackGANError(
                    f"Keras' InceptionV3 layer {layer.name} normalises with epsilon {layer.epsilon:g}, "
                    f"scale={layer.scale}, center={layer.center}; TF-slim's Inception-v3 uses epsilon "
                    f"{SLIM_BN_EPSILON:g}, no gamma and a beta, so the converted network would compute "
                    "something else")


def _keras_shapes(model: keras.Model, naming: SlimNaming) -> dict[str, tuple[int, ...]]:
    """The shape each expected checkpoint variable must have to fill `model`."""
    pairs = conv_bn_pairs(model)
    assert len(pairs) == len(naming.convs), (len(pairs), len(naming.convs))
    shapes = {}
    for name, (conv, norm) in zip(naming.convs, pairs):
        shapes[f"{name}/weights"] = tuple(conv.kernel.shape)
        for part in ("beta", "moving_mean", "moving_variance"):
            shapes[f"{name}/BatchNorm/{part}"] = tuple(getattr(norm, part).shape)
    dense = model.get_layer("predictions")
    kernel = tuple(dense.kernel.shape)
    shapes[f"{naming.logits}/weights"] = (1, 1) + kernel if naming.logits_is_conv else kernel
    shapes[f"{naming.logits}/biases"] = tuple(dense.bias.shape)
    return shapes


@dataclass(frozen=True)
class SlimConversion:
    """What `convert_slim` read and wrote.

    Attributes:
      out: the weights file written.
      checkpoint: the checkpoint prefix or file read.
      naming: `SlimNaming.title` of the checkpoint's names.
      num_classes: the classifier's outputs (StackGAN's scorers: 51 or 21, background output 0 included).
      averaged: whether the ExponentialMovingAverage shadows were converted.
      skipped: how many checkpoint variables were left out, by reason (`SKIP_REASONS`).
    """

    out: Path
    checkpoint: str
    naming: str
    num_classes: int
    averaged: bool
    skipped: dict[str, int]


def convert_slim(checkpoint: str | os.PathLike, out: str | os.PathLike,
                 num_classes: int | None = None) -> SlimConversion:
    """Write a TF-slim Inception-v3 checkpoint into a Keras `.weights.h5` file for variant "slim".

    Port, for Keras' InceptionV3, of the restore in StackGAN-inception-model's `inception_score.py`
    (the network of its `inference`, the moving averages it restores); see the module docstring.

    Args:
      checkpoint: a V2 prefix such as `model.ckpt-5000`, a V1 checkpoint file, or a folder holding one.
      out: the weights file to write (atomically); must end in `.weights.h5`.
      num_classes: if given, the classifier must have this many outputs.

    Returns:
      What was converted; `out` loads with `build_inception(out, variant="slim",
      num_classes=result.num_classes)`.

    Raises:
      StackGANError: no readable checkpoint, a missing or unexpected variable, a shape that does not
        fit, another class count than `num_classes`, or a Keras batch norm unlike slim's.
    """
    shown, out = str(checkpoint), Path(out)
    if not out.name.endswith(".weights.h5"):
        raise StackGANError(f"{out}: the output must be a .weights.h5 file")
    prefix = locate(checkpoint, "TF-slim checkpoint")
    reader, shapes, dtypes = open_checkpoint(prefix, shown)
    plan = plan_slim(shapes, shown)
    naming = plan.naming
    logits = plan.sources[f"{naming.logits}/weights"]
    classes = shapes[logits][-1] if shapes[logits] else 0
    if classes < 1:
        raise StackGANError(f"{shown}: {logits} has shape {shapes[logits]}, not a classifier's")
    if num_classes is not None and classes != num_classes:
        raise StackGANError(f"{shown}: the classifier {logits} has {classes} outputs, not the {num_classes} asked for")

    model = build_inception(None, variant="slim", num_classes=classes)
    _check_keras_batch_norms(model)
    needed = _keras_shapes(model, naming)
    wrong = [name for name, shape in needed.items()
             if shapes[plan.sources[name]] != shape or not dtypes[plan.sources[name]].is_floating]
    if wrong:
        raise _mismatch(shown, f"{len(wrong)} variables of the wrong shape or type for an Inception-v3 with "
                               f"{classes} classes",
                        [f"{name} {needed[name]}" for name in wrong],
                        [f"{plan.sources[name]} {shapes[plan.sources[name]]} {dtypes[plan.sources[name]].name}"
                         for name in wrong])

    def read(name: str) -> np.ndarray:
        return read_tensor(reader, plan.sources[name], shown).astype(np.float32)

    for name, (conv, norm) in zip(naming.convs, conv_bn_pairs(model)):
        conv.kernel.assign(read(f"{name}/weights"))
        for part in ("beta", "moving_mean", "moving_variance"):
            getattr(norm, part).assign(read(f"{name}/BatchNorm/{part}"))
    dense = model.get_layer("predictions")
    # A 1 x 1 convolution over the pooled 1 x 1 x 2048 map is this dense layer: drop the two unit axes.
    dense.kernel.assign(read(f"{naming.logits}/weights").reshape(dense.kernel.shape))
    dense.bias.assign(read(f"{naming.logits}/biases"))
    with atomic_path(out, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
    return SlimConversion(out, prefix, naming.title, classes, plan.averaged,
                          {reason: len(names) for reason, names in plan.skipped.items()})


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: `python -m misc.evaluation.convert_inception [--slim] INPUT OUT.weights.h5`; see `--help`."""
    parser = argparse.ArgumentParser(
        prog="python -m misc.evaluation.convert_inception",
        description="Convert Inception-v3 weights into a Keras weights file for `make eval INCEPTION=...`: "
                    "the 2015 Inception graph of the standard TF FID (classify_image_graph_def.pb of "
                    "inception-2015-12-05; variant tf2015), or, with --slim, a TF-slim Inception-v3 checkpoint "
                    "such as StackGAN-inception-model's fine-tuned scorers (variant slim). The input kind is "
                    "not guessed: a checkpoint needs --slim.")
    parser.add_argument("source", metavar="INPUT",
                        help="classify_image_graph_def.pb; with --slim a checkpoint: a prefix such as "
                             "model.ckpt-5000 beside its .index and .data files, a V1 checkpoint file, or a folder "
                             "holding one")
    parser.add_argument("out", metavar="OUT",
                        help="weights file to write, e.g. models/inception/inception_2015.weights.h5 or "
                             "models/inception/birds_finetuned.weights.h5")
    parser.add_argument("--slim", action="store_true",
                        help="INPUT is a TF-slim Inception-v3 checkpoint, with the names of research/slim "
                             "(InceptionV3/...) or of the 2016 inception/slim (conv0, mixed_35x35x256a, ...); its "
                             "ExponentialMovingAverage shadows are converted when it has them; the auxiliary head, "
                             "optimiser slots and bookkeeping are skipped")
    parser.add_argument("--inception-classes", type=int, metavar="N",
                        help="with --slim: fail unless the classifier has N outputs (default: read from the "
                             "checkpoint)")
    args = parser.parse_args(argv)
    if not args.slim:
        if args.inception_classes is not None:
            parser.error("--inception-classes goes with --slim (the 2015 graph has 1008 outputs)")
        if looks_like_checkpoint(Path(args.source)):
            raise StackGANError(f"{args.source}: looks like a TensorFlow checkpoint, not a GraphDef; add --slim")
        path = convert(args.source, args.out)
        print(f"wrote {path} (use it with --inception-weights {path} --inception-variant tf2015)")
        return 0
    result = convert_slim(args.source, args.out, args.inception_classes)
    weights = "their ExponentialMovingAverage shadows" if result.averaged else "the variables themselves (no averages)"
    left_out = ", ".join(f"{count} {reason}" for reason, count in result.skipped.items() if count) or "nothing"
    print(f"read {result.checkpoint}: the names of {result.naming}, {weights}; left out: {left_out}")
    print(f"wrote {result.out}: {result.num_classes} classes; use it with `make eval INCEPTION={result.out} "
          f"ARGS=\"--inception-variant slim --inception-classes {result.num_classes} --inception-background\"` "
          "(--inception-background: output 0 is the unused background class of StackGAN-inception-model's scorers)")
    return 0


if __name__ == "__main__":
    run_cli(main)
