"""Tests of `misc/evaluation/convert_inception.py` on inputs synthesised with the real names.

The real `classify_image_graph_def.pb` is never downloaded, so the tests write a frozen GraphDef
with random weights under the names and shapes of the 2015 graph and check that the conversion
puts each of them into the right Keras layer. Nor are StackGAN-inception-model's fine-tuned
checkpoints: the tests write TF-slim checkpoints with random weights under research/slim's and the
2016 inception/slim's names (see the TF-slim section below). The fast tests check the name order
against known kernel shapes and every error a user can hit. The research/slim round trip, with
its output parity check (a 95 MB checkpoint, about 6 s), runs with them; the GraphDef round trip
(a 96 MB graph) and the 2016-style checkpoint (190 MB, two more builds) are marked slow.
"""
from __future__ import annotations

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from misc.evaluation import convert_inception
from misc import saver_checkpoint
from misc.cli import run_cli
from misc.evaluation.convert_inception import (
    SLIM_NAMINGS, conv_bn_pairs, convert, graph_conv_names, inception_slim_conv_names, slim_conv_names,
    slim_variable_names)
from misc.errors import StackGANError
from misc.evaluation.inception import build_inception, extract, preprocess

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


# --- TF-slim checkpoints ---------------------------------------------------------------------
#
# No fine-tuned checkpoint is downloaded either. The tests write TF-slim checkpoints themselves: the
# variables come from `_slim_inception_v3`, an inference pass of research/slim's inception_v3.py
# written here in plain TensorFlow ops, which creates each variable under its slim name with the
# shape its input implies. The same function, reading the stored values back, is the independent
# rebuild that the converted Keras network must match.

SLIM_CLASSES = 51  # StackGAN-inception-model's birds scorer: 50 test classes and background output 0
SLIM_EPSILON = 1e-3  # slim's inception_v3 arg scope


def _slim_inception_v3(images, param, classes=SLIM_CLASSES):
    """(pool (B, 2048), logits (B, classes)) of research/slim's Inception-v3 at inference.

    `param(name, shape)` returns the variable `InceptionV3/<name>`.
    """
    def conv(x, scope, out, kernel, stride=1, padding="SAME"):
        weights = param(f"{scope}/weights", (*kernel, x.shape[-1], out))
        y = tf.nn.conv2d(x, weights, stride, padding)
        y = tf.nn.batch_normalization(y, param(f"{scope}/BatchNorm/moving_mean", (out,)),
                                      param(f"{scope}/BatchNorm/moving_variance", (out,)),
                                      param(f"{scope}/BatchNorm/beta", (out,)), None, SLIM_EPSILON)
        return tf.nn.relu(y)

    def chain(x, scope, layers):
        for name, *spec in layers:
            x = conv(x, f"{scope}/{name}" if scope else name, *spec)
        return x

    def avg(x):
        return tf.nn.avg_pool2d(x, 3, 1, "SAME")

    def pool(x):
        return tf.nn.max_pool2d(x, 3, 2, "VALID")

    x = chain(tf.convert_to_tensor(images, tf.float32), "", [
        ("Conv2d_1a_3x3", 32, (3, 3), 2, "VALID"), ("Conv2d_2a_3x3", 32, (3, 3), 1, "VALID"),
        ("Conv2d_2b_3x3", 64, (3, 3))])
    x = chain(pool(x), "", [("Conv2d_3b_1x1", 80, (1, 1), 1, "VALID"), ("Conv2d_4a_3x3", 192, (3, 3), 1, "VALID")])
    x = pool(x)
    for block, five, width in (("Mixed_5b", ("Conv2d_0a_1x1", "Conv2d_0b_5x5"), 32),
                               ("Mixed_5c", ("Conv2d_0b_1x1", "Conv_1_0c_5x5"), 64),
                               ("Mixed_5d", ("Conv2d_0a_1x1", "Conv2d_0b_5x5"), 64)):
        x = tf.concat([
            conv(x, f"{block}/Branch_0/Conv2d_0a_1x1", 64, (1, 1)),
            chain(x, f"{block}/Branch_1", [(five[0], 48, (1, 1)), (five[1], 64, (5, 5))]),
            chain(x, f"{block}/Branch_2", [("Conv2d_0a_1x1", 64, (1, 1)), ("Conv2d_0b_3x3", 96, (3, 3)),
                                           ("Conv2d_0c_3x3", 96, (3, 3))]),
            conv(avg(x), f"{block}/Branch_3/Conv2d_0b_1x1", width, (1, 1))], axis=-1)
    x = tf.concat([
        conv(x, "Mixed_6a/Branch_0/Conv2d_1a_1x1", 384, (3, 3), 2, "VALID"),
        chain(x, "Mixed_6a/Branch_1", [("Conv2d_0a_1x1", 64, (1, 1)), ("Conv2d_0b_3x3", 96, (3, 3)),
                                       ("Conv2d_1a_1x1", 96, (3, 3), 2, "VALID")]),
        pool(x)], axis=-1)
    for block, width in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        x = tf.concat([
            conv(x, f"{block}/Branch_0/Conv2d_0a_1x1", 192, (1, 1)),
            chain(x, f"{block}/Branch_1", [("Conv2d_0a_1x1", width, (1, 1)), ("Conv2d_0b_1x7", width, (1, 7)),
                                           ("Conv2d_0c_7x1", 192, (7, 1))]),
            chain(x, f"{block}/Branch_2", [("Conv2d_0a_1x1", width, (1, 1)), ("Conv2d_0b_7x1", width, (7, 1)),
                                           ("Conv2d_0c_1x7", width, (1, 7)), ("Conv2d_0d_7x1", width, (7, 1)),
                                           ("Conv2d_0e_1x7", 192, (1, 7))]),
            conv(avg(x), f"{block}/Branch_3/Conv2d_0b_1x1", 192, (1, 1))], axis=-1)
    x = tf.concat([
        chain(x, "Mixed_7a/Branch_0", [("Conv2d_0a_1x1", 192, (1, 1)), ("Conv2d_1a_3x3", 320, (3, 3), 2, "VALID")]),
        chain(x, "Mixed_7a/Branch_1", [("Conv2d_0a_1x1", 192, (1, 1)), ("Conv2d_0b_1x7", 192, (1, 7)),
                                       ("Conv2d_0c_7x1", 192, (7, 1)), ("Conv2d_1a_3x3", 192, (3, 3), 2, "VALID")]),
        pool(x)], axis=-1)
    for block, three_by_one in (("Mixed_7b", "Conv2d_0b_3x1"), ("Mixed_7c", "Conv2d_0c_3x1")):
        branch_0 = conv(x, f"{block}/Branch_0/Conv2d_0a_1x1", 320, (1, 1))
        branch_1 = conv(x, f"{block}/Branch_1/Conv2d_0a_1x1", 384, (1, 1))
        branch_2 = chain(x, f"{block}/Branch_2", [("Conv2d_0a_1x1", 448, (1, 1)), ("Conv2d_0b_3x3", 384, (3, 3))])
        x = tf.concat([
            branch_0,
            conv(branch_1, f"{block}/Branch_1/Conv2d_0b_1x3", 384, (1, 3)),
            conv(branch_1, f"{block}/Branch_1/{three_by_one}", 384, (3, 1)),
            conv(branch_2, f"{block}/Branch_2/Conv2d_0c_1x3", 384, (1, 3)),
            conv(branch_2, f"{block}/Branch_2/Conv2d_0d_3x1", 384, (3, 1)),
            conv(avg(x), f"{block}/Branch_3/Conv2d_0b_1x1", 192, (1, 1))], axis=-1)
    pooled = tf.reduce_mean(x, axis=(1, 2), keepdims=True)  # slim: an 8 x 8 VALID average pool
    logits = tf.nn.conv2d(pooled, param("Logits/Conv2d_1c_1x1/weights", (1, 1, x.shape[-1], classes)), 1, "VALID")
    logits = logits + param("Logits/Conv2d_1c_1x1/biases", (classes,))
    return tf.squeeze(pooled, (1, 2)).numpy(), tf.squeeze(logits, (1, 2)).numpy()


def _random_slim_variables(seed=0, classes=SLIM_CLASSES):
    """Random values for every variable `_slim_inception_v3` reads, by slim name, in creation order.

    He-scaled kernels and batch-norm statistics near the identity keep the activations of the 94
    layers of order one, so that relative differences are meaningful.
    """
    rng = np.random.default_rng(seed)
    values = {}

    def create(name, shape):
        name = f"InceptionV3/{name}"
        if name not in values:
            if name.endswith("/weights"):
                value = rng.standard_normal(shape, np.float32) * np.float32(np.sqrt(2.0 / np.prod(shape[:-1])))
            elif name.endswith("/moving_variance"):
                value = rng.uniform(0.5, 1.5, shape).astype(np.float32)
            else:  # beta, moving_mean, biases
                value = rng.normal(0.0, 0.1, shape).astype(np.float32)
            values[name] = value
        return values[name]

    # The smallest input Inception-v3 takes: shapes depend on the channels only.
    _slim_inception_v3(np.zeros((1, 75, 75, 3), np.float32), create, classes)
    return values


def _reader_of(values):
    def read(name, shape):
        value = values[f"InceptionV3/{name}"]
        assert value.shape == shape, (name, value.shape, shape)
        return value
    return read


def _write_slim_v2(values, prefix):
    """A V2 checkpoint (`prefix.index`, `prefix.data-00000-of-00001`) holding `values` by name."""
    names = list(values)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[values[name] for name in names])
    return prefix


def _write_slim_v1(values, path):
    """A V1 checkpoint, one file, as TensorFlow wrote them in 2016."""
    names = list(values)
    tf.raw_ops.Save(filename=str(path), tensor_names=names, data=[values[name] for name in names])
    return path


# The table in the docstring of nets/inception_v3.py, from the 2016 inception/slim scopes to research/slim's,
# and each block's branches in the 2016 names, in the order of research/slim's Branch_0, Branch_1, ...
OLD_BLOCKS = {
    "Conv2d_1a_3x3": "conv0", "Conv2d_2a_3x3": "conv1", "Conv2d_2b_3x3": "conv2", "Conv2d_3b_1x1": "conv3",
    "Conv2d_4a_3x3": "conv4", "Mixed_5b": "mixed_35x35x256a", "Mixed_5c": "mixed_35x35x288a",
    "Mixed_5d": "mixed_35x35x288b", "Mixed_6a": "mixed_17x17x768a", "Mixed_6b": "mixed_17x17x768b",
    "Mixed_6c": "mixed_17x17x768c", "Mixed_6d": "mixed_17x17x768d", "Mixed_6e": "mixed_17x17x768e",
    "Mixed_7a": "mixed_17x17x1280a", "Mixed_7b": "mixed_8x8x2048a", "Mixed_7c": "mixed_8x8x2048b",
}
OLD_BRANCHES = {
    "Mixed_5": ("branch1x1", "branch5x5", "branch3x3dbl", "branch_pool"),
    "Mixed_6a": ("branch3x3", "branch3x3dbl"),
    "Mixed_6": ("branch1x1", "branch7x7", "branch7x7dbl", "branch_pool"),
    "Mixed_7a": ("branch3x3", "branch7x7x3"),
    "Mixed_7": ("branch1x1", "branch3x3", "branch3x3dbl", "branch_pool"),
}


def _old_scopes(scopes):
    """The 2016 inception/slim scope of each research/slim convolution scope.

    Inside a branch the 2016 layers were unnamed, `Conv`, `Conv_1`, ... in creation order, which is
    the order of research/slim's layer codes (0a < 0b < ... < 1a; 1x3 before 3x1).
    """
    def order(scope):
        code, kernel = re.search(r"(\d[a-z])_(\d+x\d+)$", scope).groups()
        return code, kernel

    old = {}
    for scope in scopes:
        parts = scope.split("/")[1:]  # without InceptionV3/
        if len(parts) == 1:
            old[scope] = OLD_BLOCKS[parts[0]]
            continue
        block, branch, _ = parts
        siblings = sorted((s for s in scopes if s.startswith(f"InceptionV3/{block}/{branch}/")), key=order)
        branches = OLD_BRANCHES.get(block) or OLD_BRANCHES[block[:-1]]
        rank = siblings.index(scope)
        old[scope] = f"{OLD_BLOCKS[block]}/{branches[int(branch[-1])]}/Conv" + (f"_{rank}" if rank else "")
    return old


@pytest.fixture(scope="module")
def slim_values():
    return _random_slim_variables()


@pytest.fixture(scope="module")
def slim_model():
    return build_inception(variant="slim", num_classes=SLIM_CLASSES)


def _conv_scopes(values):
    return [name[:-len("/weights")] for name in values if name.endswith("/weights") and "/Logits/" not in name]


def test_slim_names_follow_the_keras_creation_order(slim_values, slim_model):
    scopes = _conv_scopes(slim_values)
    assert len(scopes) == 94
    assert sorted(slim_conv_names()) == sorted(scopes)
    pairs = conv_bn_pairs(slim_model)
    for name, (conv, norm) in zip(slim_conv_names(), pairs):
        assert tuple(conv.kernel.shape) == slim_values[f"{name}/weights"].shape, name
        assert tuple(norm.beta.shape) == slim_values[f"{name}/BatchNorm/beta"].shape, name
    old = _old_scopes(scopes)
    assert inception_slim_conv_names() == [old[name] for name in slim_conv_names()]
    # Spot checks against the 2016 file (inception_model.py) and the odd research/slim scopes.
    assert old["InceptionV3/Mixed_7a/Branch_1/Conv2d_1a_3x3"] == "mixed_17x17x1280a/branch7x7x3/Conv_3"
    assert old["InceptionV3/Mixed_7c/Branch_1/Conv2d_0c_3x1"] == "mixed_8x8x2048b/branch3x3/Conv_2"
    assert slim_values["InceptionV3/Mixed_6a/Branch_0/Conv2d_1a_1x1/weights"].shape == (3, 3, 288, 384)
    names = slim_variable_names(SLIM_NAMINGS[0])
    assert len(names) == len(set(names)) == 378 and set(names) == set(slim_values)
    assert names[:-2:4] == [f"{name}/weights" for name in slim_conv_names()]
    assert names[-2:] == ["InceptionV3/Logits/Conv2d_1c_1x1/weights", "InceptionV3/Logits/Conv2d_1c_1x1/biases"]


def _names_only(slim_values):
    """A checkpoint's worth of names with one-element values, except the classifier (51 outputs)."""
    small = {name: np.zeros(1, np.float32) for name in slim_values}
    for name in ("InceptionV3/Logits/Conv2d_1c_1x1/weights", "InceptionV3/Logits/Conv2d_1c_1x1/biases"):
        small[name] = slim_values[name]
    return small


def _drop(name):
    def edit(values):
        del values[name]
    return edit


def _add(name):
    def edit(values):
        values[name] = np.zeros(1, np.float32)
    return edit


def _average_some(values):
    for name in list(values)[:10]:
        values[f"{name}/ExponentialMovingAverage"] = values[name]


@pytest.mark.parametrize("edit, args, match", [
    (_drop("InceptionV3/Mixed_5b/Branch_1/Conv2d_0b_5x5/BatchNorm/moving_mean"), [],
     r"1 of 378 expected variables missing, 0 unexpected \(expected \| found: "
     r"InceptionV3/Mixed_5b/Branch_1/Conv2d_0b_5x5/BatchNorm/moving_mean \| "
     r"InceptionV3/AuxLogits/Conv2d_2b_1x1/biases, - \| global_step\)"),
    (_add("InceptionV3/Conv2d_1a_3x3/BatchNorm/gamma"), [],
     r"0 of 378 expected variables missing, 1 unexpected \(expected \| found: - \| "
     r"InceptionV3/Conv2d_1a_3x3/BatchNorm/gamma\)"),
    (_average_some, [], r"ExponentialMovingAverage shadows for only 10 of 378 variables"),
    (None, ["--inception-classes", "21"], r"Conv2d_1c_1x1/weights has 51 outputs, not the 21 asked for"),
], ids=["missing", "unexpected", "some averages", "class count"])
def test_slim_checkpoints_that_do_not_fit_fail_before_the_network_is_built(
        slim_values, tmp_path, capsys, edit, args, match):
    values = {**_names_only(slim_values), "global_step": np.array(5000, np.int64),
              "InceptionV3/AuxLogits/Conv2d_2b_1x1/biases": np.zeros(1, np.float32)}
    if edit is not None:
        edit(values)
    prefix = _write_slim_v2(values, tmp_path / "model.ckpt-5000")
    out = tmp_path / "out.weights.h5"
    with pytest.raises(SystemExit) as info:
        run_cli(convert_inception.main, ["--slim", str(prefix), str(out), *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(prefix) in err and re.search(match, err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ckpt-5000.data-00000-of-00001",
                                                           "model.ckpt-5000.index"]


def test_slim_variables_of_the_wrong_shape_are_listed(slim_values, tmp_path, capsys):
    prefix = _write_slim_v2(_names_only(slim_values), tmp_path / "model.ckpt-5000")
    out = tmp_path / "out.weights.h5"
    with pytest.raises(SystemExit) as info:
        run_cli(convert_inception.main, ["--slim", str(prefix), str(out)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert ("376 variables of the wrong shape or type for an Inception-v3 with 51 classes (expected | found: "
            "InceptionV3/Conv2d_1a_3x3/weights (3, 3, 3, 32) | InceptionV3/Conv2d_1a_3x3/weights (1,) float32") in err
    assert not out.exists()


@pytest.mark.parametrize("make, match", [
    (lambda d: d / "missing.ckpt", "TF-slim checkpoint not found"),
    (lambda d: _write_bytes(d / "model.ckpt-5000", b"\x08\x01 a protobuf or any other file"),
     "not a TensorFlow checkpoint"),
    (lambda d: _write_bytes(d / "model.ckpt-5000.index", b"\x00" * 64), "not a TensorFlow checkpoint"),
    (lambda d: _write_bytes(d / "model.ckpt-5000", b"\x00" * 64 + saver_checkpoint.TABLE_MAGIC),
     "not a readable TensorFlow checkpoint (DataLossError)"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "holds no TensorFlow checkpoint"),
], ids=["absent", "other file", "other index", "broken table", "empty folder"])
def test_files_that_are_not_slim_checkpoints_are_one_line_errors(tmp_path, capsys, make, match):
    source = make(tmp_path)
    out = tmp_path / "out.weights.h5"
    with pytest.raises(SystemExit) as info:
        run_cli(convert_inception.main, ["--slim", str(source), str(out)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err, err
    assert not out.exists()


def test_checkpoint_without_slim_flag_and_folders_of_checkpoints(slim_values, tmp_path, capsys):
    small = _names_only(slim_values)
    folder = tmp_path / "birds_valid299"
    folder.mkdir()
    _write_slim_v1(small, folder / "model.ckpt-4000")
    _write_slim_v2(small, folder / "model.ckpt-5000")
    out = tmp_path / "out.weights.h5"
    with pytest.raises(SystemExit):
        run_cli(convert_inception.main, [str(folder / "model.ckpt-5000"), str(out)])
    assert "looks like a TensorFlow checkpoint, not a GraphDef; add --slim" in capsys.readouterr().err
    with pytest.raises(StackGANError, match=r"holds 2 checkpoints \(model.ckpt-4000, model.ckpt-5000, \.\.\.\)"):
        saver_checkpoint.locate(folder)
    # The state file of the authors' machine names an absolute path that does not exist here.
    (folder / "checkpoint").write_text('model_checkpoint_path: "/home/han/birds_valid299/model.ckpt-4000"\n')
    assert saver_checkpoint.locate(folder) == str(folder / "model.ckpt-4000")
    for name in ("model.ckpt-5000.index", "model.ckpt-5000.data-00000-of-00001", "model.ckpt-5000"):
        assert saver_checkpoint.locate(folder / name) == str(folder / "model.ckpt-5000")


def test_keras_batch_norm_unlike_slims_stops_the_conversion(slim_values, tmp_path, monkeypatch, capsys):
    def other_epsilon(*args, **kwargs):
        model = build_inception(*args, **kwargs)
        next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)).epsilon = 1e-5
        return model

    monkeypatch.setattr(convert_inception, "build_inception", other_epsilon)
    prefix = _write_slim_v2(_names_only(slim_values), tmp_path / "model.ckpt-5000")
    out = tmp_path / "out.weights.h5"
    with pytest.raises(SystemExit):
        run_cli(convert_inception.main, ["--slim", str(prefix), str(out)])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "normalises with epsilon 1e-05" in err and "epsilon 0.001, no gamma" in err
    assert not out.exists()


@pytest.fixture(scope="module")
def slim_converted(slim_values, tmp_path_factory):
    """(V2 checkpoint with research/slim's names, its conversion, the converter's report)."""
    folder = tmp_path_factory.mktemp("slim")
    values = {**slim_values, "global_step": np.array(5000, np.int64),
              "InceptionV3/AuxLogits/Conv2d_1b_1x1/weights": np.zeros((1, 1, 768, 128), np.float32),
              "InceptionV3/Conv2d_1a_3x3/weights/Momentum": np.zeros((3, 3, 3, 32), np.float32)}
    prefix = _write_slim_v2(values, folder / "model.ckpt-5000")
    out = folder / "birds_finetuned.weights.h5"
    result = convert_inception.convert_slim(prefix, out, num_classes=SLIM_CLASSES)
    return prefix, out, result


def test_slim_round_trip_matches_an_independent_rebuild(slim_values, slim_converted):
    _, out, result = slim_converted
    assert result.out == out and result.num_classes == SLIM_CLASSES and not result.averaged
    assert result.skipped == {"auxiliary head": 1, "optimiser slots": 1, "bookkeeping": 1,
                              "raw values behind the averages": 0}
    # Loaded as `make eval INCEPTION=... ARGS="--inception-variant slim --inception-classes 51"` loads it.
    model = build_inception(out, variant="slim", num_classes=SLIM_CLASSES)
    for name, (conv, norm) in zip(slim_conv_names(), conv_bn_pairs(model)):
        np.testing.assert_array_equal(conv.kernel.numpy(), slim_values[f"{name}/weights"])
        np.testing.assert_array_equal(norm.moving_variance.numpy(), slim_values[f"{name}/BatchNorm/moving_variance"])
    images = np.random.default_rng(4).integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)
    pool, logits = extract(model, images)
    expected_pool, expected_logits = _slim_inception_v3(preprocess(images, variant="slim"), _reader_of(slim_values))
    assert np.std(expected_logits) > 0.1 and np.ptp(expected_logits, axis=0).min() > 1e-3  # not degenerate
    for got, want in ((pool, expected_pool), (logits, expected_logits)):
        assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))


@pytest.mark.slow
def test_inception_slim_v1_checkpoint_with_averages_converts_the_averages(slim_values, slim_converted,
                                                                          tmp_path, capsys):
    """StackGAN-inception-model's kind: 2016 names, one V1 file, moving averages, training leftovers."""
    old = _old_scopes(_conv_scopes(slim_values))
    values = {"global_step": np.array(5000, np.int64), "tower_0/total_loss/avg": np.float32(1.5)}
    for name, value in slim_values.items():
        if "/Logits/" in name:
            # The 2016 classifier is fully connected: (2048, N) weights.
            target = "logits/logits/" + name.rsplit("/", 1)[1]
            value = value.reshape(value.shape[-2:]) if value.ndim == 4 else value
        else:
            scope, part = re.match(r"(.*?)/(weights|BatchNorm/.*)$", name).groups()
            target = f"{old[scope]}/{part}"
        values[target] = np.full_like(value, 7.0)  # the raw variable, which the scorer does not restore
        values[f"{target}/ExponentialMovingAverage"] = value
        if target.endswith("/weights"):
            values[f"{target}/RMSProp"] = values[f"{target}/RMSProp_1"] = np.zeros(1, np.float32)
    for name in ("aux_logits/proj/weights", "aux_logits/FC/weights", "aux_logits/FC/weights/ExponentialMovingAverage"):
        values[name] = np.zeros(1, np.float32)
    folder = tmp_path / "birds_valid299"
    folder.mkdir()
    _write_slim_v1(values, folder / "model.ckpt-5000")
    (folder / "checkpoint").write_text('model_checkpoint_path: "/home/han/birds_valid299/model.ckpt-5000"\n')
    out = tmp_path / "birds_finetuned.weights.h5"
    assert convert_inception.main(["--slim", str(folder), str(out), "--inception-classes", "51"]) == 0
    printed = capsys.readouterr().out
    assert "2016 inception/slim" in printed and "their ExponentialMovingAverage shadows" in printed
    assert "3 auxiliary head, 190 optimiser slots, 2 bookkeeping, 378 raw values behind the averages" in printed
    assert f"make eval INCEPTION={out}" in printed and "--inception-classes 51 --inception-background" in printed
    converted = build_inception(out, variant="slim", num_classes=SLIM_CLASSES).get_weights()
    reference = build_inception(slim_converted[1], variant="slim", num_classes=SLIM_CLASSES).get_weights()
    assert len(converted) == len(reference) == 94 * 4 + 2
    for got, want in zip(converted, reference):
        np.testing.assert_array_equal(got, want)
