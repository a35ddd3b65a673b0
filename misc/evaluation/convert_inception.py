"""Convert the 2015 Inception graph of the standard TF FID into a Keras weights file.

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

Run `python -m misc.evaluation.convert_inception classify_image_graph_def.pb models/inception/inception_2015.weights.h5`.
Nothing is downloaded: the .pb file comes from the user (README 'Evaluation weights').
"""
from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from misc.cli import import_tensorflow, run_cli
from misc.errors import StackGANError

tf = import_tensorflow()
import keras  # noqa: E402  (after the quiet TensorFlow import)

from misc.evaluation.inception import build_inception  # noqa: E402
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


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: `python -m misc.evaluation.convert_inception GRAPH.pb OUT.weights.h5`."""
    parser = argparse.ArgumentParser(
        prog="python -m misc.evaluation.convert_inception",
        description="Convert the 2015 Inception graph of the standard TF FID (classify_image_graph_def.pb "
                    "of inception-2015-12-05) into a Keras weights file for `make eval "
                    "INCEPTION=...` (variant tf2015).")
    parser.add_argument("graph", help="classify_image_graph_def.pb")
    parser.add_argument("out", help="weights file to write, e.g. models/inception/inception_2015.weights.h5")
    args = parser.parse_args(argv)
    path = convert(args.graph, args.out)
    print(f"wrote {path} (use it with --inception-weights {path} --inception-variant tf2015)")
    return 0


if __name__ == "__main__":
    run_cli(main)
