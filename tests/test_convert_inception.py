"""Tests of `misc/evaluation/convert_inception.py` on a GraphDef synthesised with the 2015 graph's node names.

The real `classify_image_graph_def.pb` is never downloaded, so the tests write a frozen GraphDef
with random weights under the names and shapes of the 2015 graph and check that the conversion
puts each of them into the right Keras layer. The fast tests check the name order against known
kernel shapes and the errors that need no network; the full round trip (a 96 MB graph, two
Inception-v3 builds) is marked slow.
"""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from misc.evaluation import convert_inception
from misc.cli import run_cli
from misc.evaluation.convert_inception import conv_bn_pairs, convert, graph_conv_names
from misc.errors import StackGANError
from misc.evaluation.inception import build_inception

# Kernel shapes of some 2015-graph convolutions, from the Inception-v3 architecture (Szegedy et al.
# 2016; TF-slim's Mixed_5b..Mixed_7c): the pairing must give exactly these to the named nodes.
KNOWN_SHAPES = {
    "conv": (3, 3, 3, 32),
    "conv_4": (3, 3, 80, 192),
    "mixed/tower/conv_1": (5, 5, 48, 64),
    "mixed/tower_2/conv": (1, 1, 192, 32),
    "mixed_1/tower_2/conv": (1, 1, 256, 64),
    "mixed_3/conv": (3, 3, 288, 384),
    "mixed_4/tower/conv_1": (1, 7, 128, 128),
    "mixed_4/tower/conv_2": (7, 1, 128, 192),
    "mixed_4/tower_1/conv_1": (7, 1, 128, 128),
    "mixed_8/tower/conv_1": (3, 3, 192, 320),
    "mixed_9/tower/mixed/conv": (1, 3, 384, 384),
    "mixed_9/tower/mixed/conv_1": (3, 1, 384, 384),
    "mixed_10/tower_1/conv": (1, 1, 2048, 448),
    "mixed_10/tower_2/conv": (1, 1, 2048, 192),
}


@pytest.fixture(scope="module")
def shapes_by_name():
    pairs = conv_bn_pairs(build_inception())
    return {name: tuple(conv.kernel.shape) for name, (conv, _) in zip(graph_conv_names(), pairs)}


@pytest.fixture(scope="module")
def synthetic(shapes_by_name, tmp_path_factory):
    """(GraphDef with random weights under the 2015 graph's names, its values, its .pb file)."""
    graph, values = _graph(shapes_by_name)
    return graph, values, _write(graph, tmp_path_factory.mktemp("graph") / "classify_image_graph_def.pb")


def _graph(shapes_by_name, seed=0):
    """A frozen GraphDef holding random weights under the 2015 graph's names; also the values."""
    rng = np.random.default_rng(seed)
    graph = tf.compat.v1.GraphDef()
    values = {}

    def const(name, value):
        values[name] = value
        node = graph.node.add()
        node.name, node.op = name, "Const"
        node.attr["dtype"].type = tf.float32.as_datatype_enum
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))

    for name, shape in shapes_by_name.items():
        const(f"{name}/conv2d_params", rng.normal(0, 0.1, shape).astype(np.float32))
        for part in ("beta", "gamma", "moving_mean", "moving_variance"):
            const(f"{name}/batchnorm/{part}", rng.uniform(0.5, 1.5, shape[-1]).astype(np.float32))
        node = graph.node.add()
        node.name, node.op = f"{name}/batchnorm", "BatchNormWithGlobalNormalization"
        node.input.extend([f"{name}/Conv2D"] + [f"{name}/batchnorm/{p}" for p in
                                                ("moving_mean", "moving_variance", "beta", "gamma")])
        node.attr["variance_epsilon"].f = 1e-3
        node.attr["scale_after_normalization"].b = False
    const("softmax/weights", rng.normal(0, 0.1, (2048, 1008)).astype(np.float32))
    const("softmax/biases", rng.normal(0, 0.1, (1008,)).astype(np.float32))
    return graph, values


def _write(graph, path):
    path.write_bytes(graph.SerializeToString())
    return path


def test_names_follow_the_keras_creation_order(shapes_by_name):
    assert len(graph_conv_names()) == len(set(graph_conv_names())) == 94
    for name, shape in KNOWN_SHAPES.items():
        assert shapes_by_name[name] == shape, name


def _edited(graph, tmp_path, name, edit):
    """A copy of `graph` with `edit(node)` applied to node `name` (removed if `edit` is None)."""
    copy = tf.compat.v1.GraphDef()
    copy.CopyFrom(graph)
    (index,) = [i for i, node in enumerate(copy.node) if node.name == name]
    if edit is None:
        del copy.node[index]
    else:
        edit(copy.node[index])
    return _write(copy, tmp_path / "edited.pb")


@pytest.mark.slow
def test_round_trip_puts_every_weight_in_its_layer(synthetic, tmp_path, capsys):
    _, values, pb = synthetic
    out = tmp_path / "inception_2015.weights.h5"
    assert convert_inception.main([str(pb), str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    model = build_inception(out, variant="tf2015")
    for name, (conv, norm) in zip(graph_conv_names(), conv_bn_pairs(model)):
        np.testing.assert_array_equal(conv.kernel.numpy(), values[f"{name}/conv2d_params"])
        for part, weight in zip(("beta", "moving_mean", "moving_variance"), norm.weights):
            np.testing.assert_array_equal(weight.numpy(), values[f"{name}/batchnorm/{part}"])
    dense = model.get_layer("predictions")
    np.testing.assert_array_equal(dense.kernel.numpy(), values["softmax/weights"])
    np.testing.assert_array_equal(dense.bias.numpy(), values["softmax/biases"])


def test_wrong_files_fail_before_the_network_is_built(tmp_path, capsys):
    out = str(tmp_path / "out.weights.h5")
    with pytest.raises(StackGANError, match="GraphDef file not found"):
        convert(tmp_path / "none.pb", out)
    with pytest.raises(StackGANError, match="not a binary GraphDef"):
        convert(_write_bytes(tmp_path / "text.pb", b"\xff\xfenot a protobuf at all"), out)
    with pytest.raises(StackGANError, match="must be a .weights.h5 file"):
        convert(tmp_path / "none.pb", tmp_path / "out.h5")
    graph = tf.compat.v1.GraphDef()
    node = graph.node.add()
    node.name, node.op = "conv/conv2d_params", "Const"
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.zeros((3, 3, 3, 32), np.float32)))
    pb = _write(graph, tmp_path / "other.pb")
    with pytest.raises(SystemExit) as info:
        run_cli(convert_inception.main, [str(pb), out])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no constant 'conv/batchnorm/beta'" in err and str(pb) in err
    assert not (tmp_path / "out.weights.h5").exists()


@pytest.mark.slow
def test_weights_that_do_not_fit_name_the_node(synthetic, tmp_path, capsys):
    graph, values, _ = synthetic
    out = str(tmp_path / "out.weights.h5")
    name = "mixed_2/conv/conv2d_params"
    flat = tf.make_tensor_proto(values[name].reshape(-1))
    with pytest.raises(StackGANError, match=rf"{name} has shape \(18432,\)"):
        convert(_edited(graph, tmp_path, name, lambda node: node.attr["value"].tensor.CopyFrom(flat)), out)

    def small_epsilon(node):
        node.attr["variance_epsilon"].f = 1e-5

    pb = _edited(graph, tmp_path, "conv/batchnorm", small_epsilon)
    with pytest.raises(SystemExit) as info:
        run_cli(convert_inception.main, [str(pb), out])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "conv/batchnorm has epsilon 1e-05" in err
    assert not (tmp_path / "out.weights.h5").exists()


def _write_bytes(path, data):
    path.write_bytes(data)
    return path
