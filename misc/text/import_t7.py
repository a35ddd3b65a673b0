"""Import Reed et al.'s Torch7 char-CNN-RNN text encoders (`.t7`) into the Keras `CharCnnRnn`, without Lua.

    python -m misc.text.import_t7 lm_sje_nc4_cub_hybrid_gru18_a1_c512_0.00070_1_10_trainvalids.txt_iter30000.t7 \\
        --dataset birds
    python -m misc.text.import_t7 lm_sje_flowers_c10_hybrid_0.00070_1_10_trainvalids.txt_iter16400.t7 \\
        --dataset flowers --exact-demo-encoding

The files are training checkpoints of reedscot/cvpr2016 `train_sje_hybrid.lua` (`{protos = {enc_doc =
gModule, ...}, opt = ...}`; a file holding the gModule itself works too), read with `torchfile`. The
architecture is read from the nngraph, never from the dataset name: reedscot/icml2016
`HybridCNNLong` + `FixedGRU` (18 steps, averaged; the CUB file) or reedscot/cvpr2016 `HybridCNN` +
`FixedRNN` (third pool, 8 steps; what the flowers file is believed to be). Every weight is mapped by
its structural role in the graph, not by its position in a module list. Then a NumPy interpreter
of the nngraph (an independent port of nngraph's `gModule:updateOutput`) runs the Torch network on a
few sentences and the import is refused unless the Keras model agrees within `TOLERANCE`.

The output folder (default `models/<dataset>/text_encoder`) has the layout `misc.text.encoder`
reads (`char_cnn_rnn.keras`) plus `import_t7.json` (source file, detected architecture, encoding
switch, largest difference measured). It is written to a temporary folder and renamed into place,
so it is never half-written; an earlier import there is replaced, anything else is left alone.

`--exact-demo-encoding` makes the encoder expect text encoded as the original demo did
(hanzhanggit/StackGAN `demo/get_embedding.lua`: no lower-casing); it is stored in the model's config.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from misc.cli import import_tensorflow, run_cli
from misc.errors import CheckpointError
from misc.utils import atomic_directory

import_tensorflow()  # before Keras (via char_cnn_rnn), without TensorFlow's start-up noise

from misc.text.char_cnn_rnn import (  # noqa: E402
    ALPHABET, ALPHABET_SIZE, CONV_WIDTH, DOC_LENGTH, POOL_WIDTH, THIRD_POOL_STRIDE, CharCnnRnn, encode_text,
    sequence_lengths,
)
from misc.text.encoder import TEXT_ENCODER_FILE, load_text_encoder  # noqa: E402

import torchfile  # noqa: E402  (a dependency of the package, setup.py)

IMPORT_FILE = "import_t7.json"
DATASETS = ("birds", "flowers")
# Largest |Keras - Torch| allowed on any embedding component. The two run the same float32 weights;
# summation order and Threshold(1e-6) against ReLU differ by about 1e-6.
TOLERANCE = 1e-4
# torchfile recurses once per nesting level of the nngraph (node -> data -> mapindex -> ...). The
# 18-step FixedGRU graph does not load under Python's default limit of 1000 and does under 2000 (its
# depth does not depend on the widths); the limit is raised for the load only.
LOAD_RECURSION_LIMIT = 20_000
# nn.Threshold() defaults to threshold 1e-6 (torch/nn Threshold.lua): Keras' ReLU differs from it
# by at most the threshold, so thresholds up to this are read as ReLU.
MAX_RELU_THRESHOLD = 1e-5
# Texts for the self-check: lower and upper case, punctuation, empty, and every alphabet character
# (longer than DOC_LENGTH, so truncated), so that every input column of the first convolution counts.
CHECK_SENTENCES = (
    "this bird has a white belly, a short orange beak and black wings.",
    "A Flower With Pink Petals And A YELLOW Center!",
    "",
    ALPHABET * 3,
    "the quick-brown fox; (jumps) [over] {the} <lazy> dog? 0123456789 \"'/\\|_@#$%^&*~`+=",
)
WHERE_FROM = "(Reed et al.'s encoders are the lm_sje_*.t7 files of reedscot/icml2016 and reedscot/cvpr2016)"

RELU_TYPES = ("nn.ReLU", "nn.Threshold")


class T7ImportError(CheckpointError):
    """A Torch7 file cannot be imported as a char-CNN-RNN text encoder."""


class NotTorch7Error(T7ImportError):
    """The file is not a Torch7 file that torchfile can read."""


class NoEncoderError(T7ImportError):
    """A Torch7 file that holds no char-CNN-RNN text encoder."""


class UnsupportedModuleError(T7ImportError):
    """The encoder's graph uses a module type the importer does not know."""


class ArchitectureError(T7ImportError):
    """The encoder's graph is not one of Reed's char-CNN-RNN variants."""


class MismatchError(T7ImportError):
    """The Keras model does not reproduce the Torch network."""


class OutputError(T7ImportError):
    """The output folder exists and is not an earlier import."""


# ------------------------------------------------------------------------------------------------
# Lua values as torchfile returns them (use_list_heuristic=False)
# ------------------------------------------------------------------------------------------------

def _typename(obj) -> str | None:
    """Torch class name ('nn.Linear'), or None for anything that is not a Torch object."""
    if isinstance(obj, torchfile.TorchObject):
        name = obj.torch_typename()
        return name.decode("latin-1") if isinstance(name, bytes) else str(name)
    return None


def _field(obj, name: str):
    """Field `name` of a Torch object or Lua table (torchfile keeps byte-string keys), or None."""
    table = obj._obj if isinstance(obj, torchfile.TorchObject) else obj
    if isinstance(table, dict):
        return table.get(name.encode())
    return None


def _seq(table) -> list:
    """The values at keys 1..n of a Lua table (a dict keyed by numbers, or a list)."""
    if table is None:
        return []
    if isinstance(table, list):
        return table
    out = []
    while len(out) + 1 in table:
        out.append(table[len(out) + 1])
    return out


def _tensor(module, name: str) -> np.ndarray | None:
    value = _field(module, name)
    if value is None or not isinstance(value, np.ndarray) or value.size == 0:
        return None
    return np.array(value, dtype=np.float64)


def _number(module, name: str, default=None) -> float | None:
    value = _field(module, name)
    return default if value is None else value


def _int(module, name: str, default: int | None = None) -> int:
    """An integer field of a module (kW, dW, dimension, ...); a missing one is a malformed module."""
    value = _number(module, name, default)
    if not isinstance(value, (int, float)):
        raise ArchitectureError(f"its {_typename(module)} has no usable {name} field")
    return int(value)


def _label(data) -> str:
    """The nngraph debug label of a node ('[file]:line_'), for messages."""
    label = _field(_field(data, "annotations"), "_debugLabel")
    return label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label or "?")


def _describe(obj) -> str:
    if _typename(obj):
        return f"a {_typename(obj)}"
    if isinstance(obj, np.ndarray):
        return f"a tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, dict):
        keys = sorted(k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k) for k in obj
                      if isinstance(k, (bytes, str, int)))
        shown = ", ".join(keys[:6]) + (", ..." if len(keys) > 6 else "")
        return f"a table with keys {{{shown}}}" if keys else "an empty table"
    return f"a Lua {type(obj).__name__} value"


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _recursion_limit(limit: int) -> Iterator[None]:
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def read_t7(path: str | os.PathLike):
    """The object a Torch7 binary file holds, read with torchfile (tables as dicts keyed by numbers).

    Raises:
      T7ImportError: the file is missing or not a file.
      NotTorch7Error: the file is not a Torch7 file torchfile can read.
    """
    path = Path(path)
    if not path.exists():
        raise T7ImportError(f"{path}: file not found {WHERE_FROM}")
    if not path.is_file():
        raise T7ImportError(f"{path}: is not a file; give the .t7 file itself")
    try:
        # use_list_heuristic=False: the default fails on a table of tensors, which a checkpoint saved
        # after training holds (e.g. SplitTable's output). The graph nests deeper than Python's
        # default recursion limit.
        with _recursion_limit(LOAD_RECURSION_LIMIT):
            return torchfile.load(str(path), use_list_heuristic=False)
    except Exception as err:  # noqa: BLE001  (a foreign file fails anywhere in torchfile, with any type)
        reason = " ".join(str(err).split())[:120]
        raise NotTorch7Error(f"{path}: not a Torch7 file that torchfile can read "
                             f"({type(err).__name__}: {reason})") from None


def find_encoder(obj, path: str | os.PathLike):
    """The text encoder gModule in what a .t7 file holds: `protos.enc_doc` of a training checkpoint
    (as reedscot/icml2016 `txt2img_demo.lua` unwraps it), or the gModule itself.

    Raises:
      NoEncoderError: there is no gModule there.
    """
    if _typename(obj) == "nn.gModule":
        return obj
    protos = _field(obj, "protos") if isinstance(obj, dict) else None
    if protos is not None:
        enc_doc = _field(protos, "enc_doc")
        if _typename(enc_doc) == "nn.gModule":
            return enc_doc
        found = "no protos.enc_doc" if enc_doc is None else f"protos.enc_doc is {_describe(enc_doc)}"
        raise NoEncoderError(f"{path}: a Torch7 file, but {found}, not a char-CNN-RNN text encoder "
                             f"(an nn.gModule)")
    raise NoEncoderError(f"{path}: a Torch7 file, but it holds {_describe(obj)}, not a char-CNN-RNN text "
                         f"encoder (an nn.gModule, or a training checkpoint with protos.enc_doc)")


# ------------------------------------------------------------------------------------------------
# NumPy interpreter of the Torch network (port of nngraph gModule:updateOutput and of each
# module's updateOutput in evaluation mode)
# ------------------------------------------------------------------------------------------------

def _temporal_convolution(m, x):
    """nn.TemporalConvolution: weight (out, kW*in) applied to kW consecutive frames, frame-major."""
    w, b = _tensor(m, "weight"), _tensor(m, "bias")
    kw, dw = _int(m, "kW"), _int(m, "dW", 1)
    batched = x.ndim == 3
    x = x if batched else x[None]
    if x.shape[-1] * kw != w.shape[1]:
        raise ArchitectureError(f"a TemporalConvolution takes {w.shape[1] // kw} channels but gets {x.shape[-1]}")
    steps = (x.shape[1] - kw) // dw + 1
    windows = np.concatenate([x[:, k: k + dw * (steps - 1) + 1: dw] for k in range(kw)], axis=-1)
    y = windows @ w.T + (0 if b is None else b)
    return y if batched else y[0]


def _temporal_max_pooling(m, x):
    kw = _int(m, "kW")
    dw = _int(m, "dW", kw)
    time_axis = x.ndim - 2
    steps = (x.shape[time_axis] - kw) // dw + 1
    frames = [np.take(x, range(t * dw, t * dw + kw), axis=time_axis).max(axis=time_axis) for t in range(steps)]
    return np.stack(frames, axis=time_axis)


def _split_table(m, x):
    dim = _int(m, "dimension")
    n_input_dims = _number(m, "nInputDims")
    if dim < 0:
        dim = x.ndim + dim + 1
    elif n_input_dims is not None and x.ndim == int(n_input_dims) + 1:
        dim += 1  # a batch dimension in front
    return [np.take(x, i, axis=dim - 1) for i in range(x.shape[dim - 1])]


def _linear(m, x):
    w, b = _tensor(m, "weight"), _tensor(m, "bias")
    return x @ w.T + (0 if b is None else b)


def _threshold(m, x):
    threshold = float(_number(m, "threshold", 1e-6))
    return np.where(x > threshold, x, float(_number(m, "val", 0)))


def _dropout(m, x):
    # Evaluation mode (the demos call :evaluate()): nn.Dropout v2 passes the input through; the older
    # v1 scales it by 1 - p.
    return x if _field(m, "v2") else x * (1.0 - float(_number(m, "p", 0.5)))


def _product(xs):
    out = xs[0]
    for x in xs[1:]:
        out = out * x
    return out


MODULES: dict[str, Callable] = {
    "nn.Identity": lambda m, x: x,
    "nn.TemporalConvolution": _temporal_convolution,
    "nn.TemporalMaxPooling": _temporal_max_pooling,
    "nn.Threshold": _threshold,
    "nn.ReLU": _threshold,
    "nn.SplitTable": _split_table,
    "nn.Linear": _linear,
    "nn.Tanh": lambda m, x: np.tanh(x),
    "nn.Sigmoid": lambda m, x: 1.0 / (1.0 + np.exp(-x)),
    "nn.CAddTable": lambda m, xs: sum(xs[1:], xs[0]),
    "nn.CMulTable": lambda m, xs: _product(xs),
    "nn.MulConstant": lambda m, x: x * float(_number(m, "constant_scalar")),
    "nn.AddConstant": lambda m, x: x + float(_number(m, "constant_scalar")),
    "nn.Dropout": _dropout,
    "nngraph.JustElement": lambda m, xs: xs[0],
    # The containers, run by `run_module` itself (listed so that `check_module_types` knows them).
    "nn.Sequential": None,
    "nn.gModule": None,
}


def check_module_types(module, node: str | None = None) -> None:
    """Raise `UnsupportedModuleError` naming the first module type `MODULES` does not cover (and
    the debug label of the graph node that holds it: the Lua file and line that made it)."""
    name = _typename(module)
    if name not in MODULES:
        at = f" (graph node {node})" if node else ""
        raise UnsupportedModuleError(
            f"the encoder uses the module type {name or _describe(module)}{at}, which the importer cannot run "
            f"(it runs {', '.join(sorted(MODULES))})")
    if name == "nn.Sequential":
        for child in _seq(_field(module, "modules")):
            check_module_types(child, node)
    elif name == "nn.gModule":
        for graph_node in _seq(_field(module, "forwardnodes")):
            data = _field(graph_node, "data")
            child = _field(data, "module")
            if child is not None:
                check_module_types(child, _label(data))


def _input_position(child_data, data) -> int:
    """nngraph `child.data.mapindex[node.data]`: which input of the child this node feeds."""
    mapindex = _field(child_data, "mapindex")
    for k, value in enumerate(_seq(mapindex), start=1):
        if value is data:
            return k
    raise ArchitectureError(f"the graph node {_label(child_data)} does not list one of its inputs")


def run_gmodule(gmodule, x):
    """Port of nngraph `gModule:updateOutput`: walk `forwardnodes` in order; a node's inputs are
    ordered by its `mapindex`; a `selectindex` node picks one element of its input table; a node
    without a module passes its input on; one input is passed unwrapped."""
    nodes = _seq(_field(gmodule, "forwardnodes"))
    innode = _field(gmodule, "innode")
    n_inputs = _number(gmodule, "nInputs") or len(_seq(_field(innode, "children")))
    inputs = [x] if n_inputs <= 1 else list(x)
    received: dict[int, dict[int, object]] = {id(_field(innode, "data")): dict(enumerate(inputs, start=1))}
    outputs: dict[int, object] = {}
    for node in nodes:
        data = _field(node, "data")
        got = received.pop(id(data), {})
        args = [got[k] for k in sorted(got)]
        if _field(data, "selectindex") is not None:
            value = args[0][int(_field(data, "selectindex")) - 1]
        else:
            value = args[0] if len(args) == 1 else args
            module = _field(data, "module")
            if module is not None:
                value = run_module(module, value)
        outputs[id(data)] = value
        for child in _seq(_field(node, "children")):
            child_data = _field(child, "data")
            received.setdefault(id(child_data), {})[_input_position(child_data, data)] = value
    return outputs[id(_field(_field(gmodule, "outnode"), "data"))]


def run_module(module, x):
    """The evaluation-mode output of a Torch module (float64 NumPy), as nn computes it."""
    name = _typename(module)
    if name == "nn.Sequential":
        for child in _seq(_field(module, "modules")):
            x = run_module(child, x)
        return x
    if name == "nn.gModule":
        return run_gmodule(module, x)
    if MODULES.get(name) is None:
        raise UnsupportedModuleError(f"the encoder uses the module type {name}, which the importer cannot run")
    return MODULES[name](module, x)


# ------------------------------------------------------------------------------------------------
# Architecture and weights, by structural role
# ------------------------------------------------------------------------------------------------

@dataclass
class _Node:
    data: object
    module: object
    type: str | None
    inputs: list = field(default_factory=list)
    consumers: list = field(default_factory=list)


class _GraphView:
    """The forward graph of a gModule as nodes with ordered inputs and their consumers."""

    def __init__(self, gmodule):
        raw = _seq(_field(gmodule, "forwardnodes"))
        self.nodes: list[_Node] = []
        by_data: dict[int, _Node] = {}
        for node in raw:
            data = _field(node, "data")
            module = _field(data, "module")
            by_data[id(data)] = _Node(data, module, _typename(module))
            self.nodes.append(by_data[id(data)])
        try:
            for node in raw:
                record = by_data[id(_field(node, "data"))]
                record.inputs = [by_data[id(d)] for d in _seq(_field(record.data, "mapindex"))]
                record.consumers = [by_data[id(_field(c, "data"))] for c in _seq(_field(node, "children"))]
            self.innode = by_data[id(_field(_field(gmodule, "innode"), "data"))]
            self.outnode = by_data[id(_field(_field(gmodule, "outnode"), "data"))]
        except KeyError:
            raise ArchitectureError("its nngraph links to nodes outside its forwardnodes") from None


def _linear_of(node: _Node):
    """The nn.Linear a graph node applies (alone or as the only module of a Sequential), or None."""
    if node.type == "nn.Linear":
        return node.module
    if node.type == "nn.Sequential":
        children = _seq(_field(node.module, "modules"))
        if len(children) == 1 and _typename(children[0]) == "nn.Linear":
            return children[0]
    return None


def _flatten(module) -> list:
    """Modules of nested Sequentials in order; anything else as one item."""
    if _typename(module) == "nn.Sequential":
        return [m for child in _seq(_field(module, "modules")) for m in _flatten(child)]
    return [module]


@dataclass
class Architecture:
    """What the importer found in a Torch encoder: widths, variant and weights in Torch layout."""
    cnn: str                      # "HybridCNNLong" (two pools) or "HybridCNN" (three pools)
    rnn: str                      # "FixedGRU" or "FixedRNN"
    steps: int
    conv: list                    # [(weight (out, kW*in), bias)] x 3
    rnn_weights: dict             # role -> (weight (out, in), bias)
    projection: tuple             # (weight (emb, hidden), bias)
    thresholds: list

    @property
    def conv_channels(self) -> tuple:
        return tuple(w.shape[0] for w, _ in self.conv)

    @property
    def rnn_dim(self) -> int:
        return self.projection[0].shape[1]

    @property
    def emb_dim(self) -> int:
        return self.projection[0].shape[0]

    def summary(self) -> dict:
        return {"cnn": self.cnn, "rnn": self.rnn, "steps": self.steps, "averaged": True,
                "conv_channels": list(self.conv_channels), "rnn_dim": self.rnn_dim, "emb_dim": self.emb_dim,
                "thresholds": self.thresholds}

    def describe(self) -> str:
        return (f"{self.cnn} + {self.rnn} ({self.steps} steps, averaged): convolutions "
                f"{'/'.join(map(str, self.conv_channels))}, hidden {self.rnn_dim}, embedding {self.emb_dim}")


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ArchitectureError(message)


def _chain(gmodule) -> list:
    """The modules of the outer graph in order; it must be a chain (one input per module node)."""
    view = _GraphView(gmodule)
    modules = []
    for node in view.nodes:
        if node.module is None:
            continue
        _expect(len(node.inputs) == 1, f"its outer graph is not a chain (node {_label(node.data)} has "
                                       f"{len(node.inputs)} inputs)")
        modules += [m for m in _flatten(node.module) if _typename(m) != "nn.Identity"]
    return modules


def _take(modules: list, position: int, *types: str):
    found = _typename(modules[position]) if position < len(modules) else "the end of the graph"
    _expect(found in types, f"expected {' or '.join(types)} as module {position + 1} of the encoder, found {found}")
    return modules[position]


def analyse(gmodule) -> Architecture:
    """Read the variant and every weight of a Reed char-CNN-RNN from its nngraph.

    Expected chain (reedscot/icml2016 `HybridCNNLong.lua`, reedscot/cvpr2016 `HybridCNN.lua`):
    3 x (TemporalConvolution width 4, Threshold, [TemporalMaxPooling]), SplitTable over time, the
    recurrence as a nested gModule, Dropout, Linear. The recurrence's maps get their roles from
    where they sit (see `_rnn_roles`).

    Raises:
      ArchitectureError: anything else, with what was found where.
    """
    chain = _chain(gmodule)
    pos, conv, thresholds, pools = 0, [], [], []
    in_dim, length = ALPHABET_SIZE, DOC_LENGTH
    for k in range(3):
        c = _take(chain, pos, "nn.TemporalConvolution")
        w, b = _tensor(c, "weight"), _tensor(c, "bias")
        kw, dw = _int(c, "kW"), _int(c, "dW", 1)
        _expect(kw == CONV_WIDTH and dw == 1, f"convolution {k + 1} has width {kw}, stride {dw}; "
                                              f"CharCnnRnn has width {CONV_WIDTH}, stride 1")
        _expect(w is not None and b is not None and w.shape[1] == kw * in_dim and b.shape == (w.shape[0],),
                f"convolution {k + 1} has weights {None if w is None else w.shape} for {in_dim} input channels")
        conv.append((w, b))
        t = _take(chain, pos + 1, *RELU_TYPES)
        threshold, val = float(_number(t, "threshold", 1e-6)), float(_number(t, "val", 0))
        _expect(0 <= threshold <= MAX_RELU_THRESHOLD and val == 0,
                f"activation {k + 1} is Threshold({threshold:g}, {val:g}), not a ReLU")
        thresholds.append(threshold)
        pos += 2
        length -= kw - 1
        if pos < len(chain) and _typename(chain[pos]) == "nn.TemporalMaxPooling":
            p = chain[pos]
            pools.append((k + 1, _int(p, "kW"), _int(p, "dW", _int(p, "kW"))))
            length = (length - pools[-1][1]) // pools[-1][2] + 1
            pos += 1
        in_dim = w.shape[0]
    # (after convolution k, width, stride): HybridCNNLong, or HybridCNN with its third pool.
    long_pools = [(1, POOL_WIDTH, POOL_WIDTH), (2, POOL_WIDTH, POOL_WIDTH)]
    _expect(pools in (long_pools, long_pools + [(3, POOL_WIDTH, THIRD_POOL_STRIDE)]),
            f"its max-pools (after convolution, width, stride) are {pools}; CharCnnRnn has (1, 3, 3), "
            f"(2, 3, 3) and optionally (3, 3, 2)")
    third_pool = len(pools) == 3
    _expect(length == sequence_lengths(DOC_LENGTH, third_pool)[-1], f"its convolutions leave {length} steps")

    split = _take(chain, pos, "nn.SplitTable")
    dim, n_dims = _int(split, "dimension"), _number(split, "nInputDims")
    _expect((dim == 2 and n_dims is None) or (dim == 1 and n_dims == 2),
            f"its SplitTable splits dimension {dim} (nInputDims {n_dims}), not time")
    rnn = _take(chain, pos + 1, "nn.gModule")
    pos += 2
    scale = 1.0
    while pos < len(chain) and _typename(chain[pos]) == "nn.Dropout":
        if not _field(chain[pos], "v2"):
            scale *= 1.0 - float(_number(chain[pos], "p", 0.5))  # v1 scales by 1 - p when evaluating
        pos += 1
    proj = _take(chain, pos, "nn.Linear")
    _expect(pos + 1 == len(chain), f"modules follow the final Linear: {[_typename(m) for m in chain[pos + 1:]]}")
    w, b = _tensor(proj, "weight"), _tensor(proj, "bias")
    _expect(w is not None and b is not None and b.shape == (w.shape[0],), "its final Linear has no weight or bias")

    kind, roles = _rnn_roles(rnn, length)
    hidden = roles["h2h"][0].shape[0]
    for role, (rw, _) in roles.items():
        _expect(rw.shape == (hidden, in_dim if role.startswith("i2h") else hidden),
                f"the recurrence's {role} map is {rw.shape[0]} x {rw.shape[1]}")
    _expect(w.shape[1] == hidden, f"the final Linear takes {w.shape[1]} inputs, the recurrence gives {hidden}")
    return Architecture(cnn="HybridCNN" if third_pool else "HybridCNNLong", rnn=kind, steps=length, conv=conv,
                        rnn_weights=roles, projection=(w * scale, b), thresholds=thresholds)


# Roles of the recurrence's linear maps: (source, what it feeds) -> Reed's name.
_GRU_ROLES = {("x", "candidate"): "i2h", ("x", "update"): "i2h_update", ("x", "reset"): "i2h_reset",
              ("h", "candidate"): "h2h", ("h", "update"): "h2h_update", ("h", "reset"): "h2h_reset"}
_RNN_ROLES = {("x", "relu"): "i2h", ("h", "relu"): "h2h"}


def _gate(node: _Node) -> str:
    """A GRU sigmoid's role: the reset gate multiplies the previous state before a linear map
    (`h2h(r * h)`); the update gate multiplies the candidate, a Tanh output (`u * h~`)."""
    products = [c for c in node.consumers if c.type == "nn.CMulTable"]
    if any(_linear_of(c) is not None for p in products for c in p.consumers):
        return "reset"
    if any(i.type == "nn.Tanh" for p in products for i in p.inputs):
        return "update"
    raise ArchitectureError(f"the sigmoid at node {_label(node.data)} is neither a GRU update nor reset gate")


def _rnn_roles(gmodule, steps: int) -> tuple[str, dict]:
    """The recurrence's kind and its maps by role, each checked to be shared over all time steps.

    Roles (reedscot/icml2016 `FixedGRU.lua`, reedscot/cvpr2016 `FixedRNN.lua`): a map whose input
    comes from the gModule's inputs is i2h, otherwise h2h; it feeds a Tanh (the candidate), a
    Sigmoid (a gate, see `_gate`) or a ReLU, directly at step 1 or through a CAddTable later.
    """
    view = _GraphView(gmodule)
    n_inputs = int(_number(gmodule, "nInputs") or 0)
    _expect(n_inputs == steps, f"its recurrence takes {n_inputs} steps, the convolutions give {steps}")
    from_input = {id(view.innode)}
    for node in view.nodes:
        if node.type in (None, "nn.Identity") and node.inputs and all(id(i) in from_input for i in node.inputs):
            from_input.add(id(node))
    found: dict[tuple, list] = {}
    for node in view.nodes:
        linear = _linear_of(node)
        if linear is None:
            continue
        _expect(len(node.inputs) == 1 and len(node.consumers) == 1,
                f"the linear map at node {_label(node.data)} has {len(node.inputs)} inputs and "
                f"{len(node.consumers)} uses")
        source = "x" if id(node.inputs[0]) in from_input else "h"
        target = node.consumers[0]
        if target.type == "nn.CAddTable" and len(target.consumers) == 1:
            target = target.consumers[0]
        if target.type == "nn.Tanh":
            use = "candidate"
        elif target.type == "nn.Sigmoid":
            use = _gate(target)
        elif target.type in RELU_TYPES:
            use = "relu"
        else:
            raise ArchitectureError(f"the linear map at node {_label(node.data)} feeds {target.type}, not a "
                                    f"GRU or ReLU RNN step")
        found.setdefault((source, use), []).append(linear)

    gated = any(use in ("update", "reset") for _, use in found)
    kind, names = ("FixedGRU", _GRU_ROLES) if gated else ("FixedRNN", _RNN_ROLES)
    _expect(set(found) == set(names), f"its recurrence has linear maps {sorted(found)}; a {kind} has {sorted(names)}")
    roles = {}
    for key, linears in found.items():
        name = names[key]
        _expect(len(linears) == (steps if name == "i2h" else steps - 1),
                f"its recurrence has {len(linears)} {name} maps for {steps} steps")
        w, b = _tensor(linears[0], "weight"), _tensor(linears[0], "bias")
        _expect(w is not None and b is not None, f"its {name} map has no weight or bias")
        for other in linears[1:]:
            # In the released files the steps share one view of the flat parameter storage.
            _expect(np.array_equal(_tensor(other, "weight"), w) and np.array_equal(_tensor(other, "bias"), b),
                    f"its {name} maps differ between time steps")
        roles[name] = (w, b)

    # The output must be the mean of all states (avg = 1); a last-state FixedGRU is another model.
    final = view.outnode.inputs[0] if len(view.outnode.inputs) == 1 else None
    constant = None if final is None or final.type != "nn.MulConstant" else _number(final.module, "constant_scalar")
    _expect(constant is not None and math.isclose(float(constant), 1.0 / steps, rel_tol=1e-9),
            f"its recurrence does not return the mean of its {steps} states (FixedGRU with avg = 0?)")
    return kind, roles


def build_keras(arch: Architecture, exact_demo_encoding: bool = False) -> CharCnnRnn:
    """A `CharCnnRnn` holding the Torch weights.

    TemporalConvolution weight (out, kW*in), frame-major -> Conv1D kernel (kW, in, out); nn.Linear
    weight (out, in) -> kernel (in, out); the GRU's three input maps and two gate maps side by side
    in `FixedGRU`'s order (update, reset, candidate).
    """
    model = CharCnnRnn(arch.conv_channels, arch.rnn_dim, arch.emb_dim, third_pool=arch.cnn == "HybridCNN",
                       rnn_kind="gru" if arch.rnn == "FixedGRU" else "relu",
                       exact_demo_encoding=exact_demo_encoding, name="char_cnn_rnn")
    model.build()
    for layer, (w, b) in zip((model.conv1, model.conv2, model.conv3), arch.conv):
        out, in_dim = w.shape[0], w.shape[1] // CONV_WIDTH
        layer.kernel.assign(w.reshape(out, CONV_WIDTH, in_dim).transpose(1, 2, 0))
        layer.bias.assign(b)
    r = arch.rnn_weights
    if arch.rnn == "FixedGRU":
        model.gru.input_kernel.assign(np.concatenate([r["i2h_update"][0].T, r["i2h_reset"][0].T, r["i2h"][0].T], 1))
        model.gru.input_bias.assign(np.concatenate([r["i2h_update"][1], r["i2h_reset"][1], r["i2h"][1]]))
        model.gru.gate_kernel.assign(np.concatenate([r["h2h_update"][0].T, r["h2h_reset"][0].T], 1))
        model.gru.gate_bias.assign(np.concatenate([r["h2h_update"][1], r["h2h_reset"][1]]))
        model.gru.candidate_kernel.assign(r["h2h"][0].T)
        model.gru.candidate_bias.assign(r["h2h"][1])
    else:
        model.rnn.input_kernel.assign(r["i2h"][0].T)
        model.rnn.input_bias.assign(r["i2h"][1])
        model.rnn.recurrent_kernel.assign(r["h2h"][0].T)
        model.rnn.recurrent_bias.assign(r["h2h"][1])
    model.projection.kernel.assign(arch.projection[0].T)
    model.projection.bias.assign(arch.projection[1])
    return model


def largest_difference(model: CharCnnRnn, gmodule, sentences: Sequence[str] = CHECK_SENTENCES) -> float:
    """max |Keras - Torch| over the embeddings of `sentences`, encoded with the model's own setting;
    the Torch side is the NumPy interpreter in float64."""
    one_hot = encode_text(list(sentences), exact_demo=model.exact_demo_encoding)
    keras_out = np.asarray(model(one_hot, training=False), dtype=np.float64)
    torch_out = np.asarray(run_module(gmodule, one_hot.astype(np.float64)), dtype=np.float64)
    if torch_out.shape != keras_out.shape:
        raise MismatchError(f"the Torch network gives embeddings of shape {torch_out.shape}, Keras {keras_out.shape}")
    return float(np.max(np.abs(keras_out - torch_out))) if keras_out.size else 0.0


# ------------------------------------------------------------------------------------------------
# Output folder
# ------------------------------------------------------------------------------------------------

def check_output(out: Path) -> None:
    """The output folder may be absent, empty, or an earlier import (replaced); nothing else.

    Raises:
      OutputError: a file, a symbolic link, a folder with other files, or an encoder trained with
        misc.text.encoder (which an import must not destroy).
    """
    if not out.exists() and not out.is_symlink():
        parent = next((p for p in out.absolute().parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise OutputError(f"{out}: cannot be created, {parent} is a file; choose another --out")
        return
    if out.is_symlink():
        raise OutputError(f"{out}: is a symbolic link, which an import would replace by a folder; "
                          "choose another --out (or the folder it points to)")
    if not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder; choose another --out")
    entries = {p.name for p in out.iterdir()}
    if not entries or (IMPORT_FILE in entries and entries <= {IMPORT_FILE, TEXT_ENCODER_FILE}):
        return
    if TEXT_ENCODER_FILE in entries:
        raise OutputError(f"{out}: holds a text encoder trained with misc.text.encoder, which an import does "
                          f"not replace; remove the folder or choose another --out")
    raise OutputError(f"{out}: exists and is not a text encoder folder; choose another --out")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def default_out(dataset: str) -> Path:
    """`models/<dataset>/text_encoder`, where `misc.generate` looks for the text encoder."""
    return Path("models") / dataset / "text_encoder"


def import_t7(t7_path: str | os.PathLike, dataset: str, out: str | os.PathLike | None = None,
              exact_demo_encoding: bool = False, log: Callable[[str], None] = print) -> dict:
    """Import a Reed char-CNN-RNN `.t7` into a text encoder folder that `load_text_encoder` reads.

    Args:
      t7_path: the Torch7 file (training checkpoint with `protos.enc_doc`, or the gModule itself).
      dataset: 'birds' or 'flowers'; names the default output folder and is recorded, nothing else.
      out: output folder (default `models/<dataset>/text_encoder`).
      exact_demo_encoding: the encoder expects the original demo's encoding (no lower-casing).
      log: where progress lines go.

    Returns:
      The record written to `import_t7.json` (with `out`).

    Raises:
      T7ImportError (a StackGANError): the file, its graph, the self-check or the output folder;
        nothing is written then.
    """
    t7_path = Path(t7_path)
    out = Path(out) if out is not None else default_out(dataset)
    check_output(out)
    log(f"reading {t7_path}")
    encoder = find_encoder(read_t7(t7_path), t7_path)
    try:
        check_module_types(encoder)
        arch = analyse(encoder)
        log(f"found {arch.describe()}")
        model = build_keras(arch, exact_demo_encoding)
        difference = largest_difference(model, encoder)
    except (UnsupportedModuleError, ArchitectureError, MismatchError) as err:
        raise type(err)(f"{t7_path}: {err}") from None
    if not difference <= TOLERANCE:  # also refuses NaN
        raise MismatchError(f"{t7_path}: the Keras model differs from the Torch network by up to {difference:.3g} "
                            f"(limit {TOLERANCE:g}); nothing written")
    log(f"checked on {len(CHECK_SENTENCES)} sentences against the nngraph interpreter: largest difference "
        f"{difference:.2e} (limit {TOLERANCE:g})")
    record = {
        "source": str(t7_path.resolve()),
        "source_bytes": t7_path.stat().st_size,
        "source_sha256": _sha256(t7_path),
        "dataset": dataset,
        "architecture": arch.summary(),
        "exact_demo_encoding": bool(exact_demo_encoding),
        "check": {"sentences": len(CHECK_SENTENCES), "max_abs_difference": difference, "tolerance": TOLERANCE},
        "files": [TEXT_ENCODER_FILE, IMPORT_FILE],
    }

    # Written next to `out` and renamed into place; it must load and reproduce the import first.
    with atomic_directory(out) as folder:
        model.save(folder / TEXT_ENCODER_FILE)
        one_hot = encode_text(list(CHECK_SENTENCES), exact_demo=exact_demo_encoding)
        if not np.allclose(load_text_encoder(folder)(one_hot), model(one_hot), rtol=0, atol=1e-6):
            raise MismatchError(f"{folder / TEXT_ENCODER_FILE}: the saved encoder does not reproduce the import")
        (folder / IMPORT_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        check_output(out)  # it may have appeared while the import ran
    log(f"wrote {out} ({TEXT_ENCODER_FILE}, {IMPORT_FILE})")
    return {**record, "out": str(out)}


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m misc.text.import_t7",
        description="Import a Torch7 char-CNN-RNN text encoder of Reed et al. (lm_sje_*.t7) into the Keras "
                    "CharCnnRnn, without Lua. The architecture (HybridCNNLong + FixedGRU, or HybridCNN + "
                    "FixedRNN) is read from the file's nngraph; the import is checked against a NumPy run of "
                    "the Torch network and refused if they differ.")
    parser.add_argument("t7file", metavar="T7FILE", help="the .t7 file (a training checkpoint with protos.enc_doc, "
                                                         "or the encoder's gModule)")
    parser.add_argument("--dataset", required=True, choices=DATASETS,
                        help="names the default output folder and is recorded; the architecture comes from the file")
    parser.add_argument("--out", metavar="DIR", help="output folder (default models/<dataset>/text_encoder); "
                                                     "an earlier import there is replaced, nothing else")
    parser.add_argument("--exact-demo-encoding", action="store_true",
                        help="make the encoder read text as the original demo did (get_embedding.lua): no "
                             "lower-casing, so an upper-case letter is an unknown character; stored in the model")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import_t7(args.t7file, args.dataset, args.out, exact_demo_encoding=args.exact_demo_encoding)
    return 0


if __name__ == "__main__":
    run_cli(main)
