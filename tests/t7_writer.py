"""Test helper: write Torch7 binary files laid out as Reed et al.'s char-CNN-RNN checkpoints, without Lua.

Two layers:

* `write_t7(path, obj)`: the Torch7 binary serializer (torch/torch7 `File.lua` `writeObject`,
  `generic/Tensor.c` and `generic/Storage.c` `write`) for `LuaTable`, `TorchInstance`, `Tensor`,
  `Storage` and Python numbers, strings, booleans and None. Every table and torch object gets a
  reference index on first write and is written as a reference afterwards, so shared tensors,
  shared storages and the cycles of an nngraph (node -> data -> reverseMap -> node) come out as
  Torch writes them.
* `write_char_cnn_rnn(path, ...)`: builds the encoder the way the Lua code does (nngraph `Node`,
  `gModule` with its dummy input/output nodes and `split()` select nodes, `mapindex` tables, the
  forward graph reversed from the backward one and sorted topologically) for reedscot/icml2016
  `HybridCNNLong` + `FixedGRU` (18 steps, averaged) or reedscot/cvpr2016 `HybridCNN` + `FixedRNN`
  (third pool, 8 steps), inside the `{protos = {enc_doc = ..., enc_image = ...}, opt = ...}` table
  that `train_sje_hybrid.lua` saves. Parameters are views into one flat `torch.CudaStorage`, as
  after `model_utils.combine_all_parameters`: the Linear maps of all time steps of one role are
  separate tensor objects at the same offset of that storage (`:share`).

The weights written are returned by role, so a test can compute the Lua forward pass itself.
"""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np

TYPE_NIL, TYPE_NUMBER, TYPE_STRING, TYPE_TABLE, TYPE_TORCH, TYPE_BOOLEAN = 0, 1, 2, 3, 4, 5
ALPHABET_SIZE = 70
DOC_LENGTH = 201
TENSOR = "torch.CudaTensor"
STORAGE = "torch.CudaStorage"
WRITE_RECURSION_LIMIT = 20_000


# ------------------------------------------------------------------------------------------------
# Lua values and the serializer
# ------------------------------------------------------------------------------------------------

class LuaTable:
    """A Lua table: ordered (key, value) pairs; keys may be numbers, strings or other tables/objects.

    Equality and hashing are by identity, as for Lua tables, so a table can key another.
    """

    def __init__(self, fields: dict | None = None, items: list | None = None):
        self.pairs: list = []
        for key, value in (fields or {}).items():
            self[key] = value
        for value in items or []:
            self.append(value)

    def __setitem__(self, key, value):
        for i, (k, _) in enumerate(self.pairs):
            if k is key or (type(k) is type(key) and isinstance(k, (int, str)) and k == key):
                self.pairs[i] = (key, value)
                return
        self.pairs.append((key, value))

    def __getitem__(self, key):
        for k, v in self.pairs:
            if k is key or (type(k) is type(key) and isinstance(k, (int, str)) and k == key):
                return v
        raise KeyError(key)

    def length(self) -> int:
        """Lua's `#t` for a sequence: the count of keys 1, 2, ... present."""
        n = 0
        keys = {k for k, _ in self.pairs if type(k) is int}
        while n + 1 in keys:
            n += 1
        return n

    def append(self, value) -> int:
        """`table.insert(t, value)`; returns the new index."""
        index = self.length() + 1
        self[index] = value
        return index


class TorchInstance:
    """An instance of a Torch class without a `write` method (nn modules, nngraph nodes, graphs):
    written as its class name and then its field table."""

    def __init__(self, typename: str, fields: dict | None = None):
        self.typename = typename
        self.fields = LuaTable(fields)


class Storage:
    """A flat `torch.*Storage`; `data` is filled in before writing (see `FlatParameters`)."""

    def __init__(self, typename: str = STORAGE, data: np.ndarray | None = None):
        self.typename = typename
        self.data = data


class Tensor:
    """A `torch.*Tensor`: a view (size, stride in elements, 0-based offset) into a `Storage`."""

    def __init__(self, storage: Storage | None, offset: int, size: tuple, stride: tuple | None = None,
                 typename: str = TENSOR):
        self.storage = storage
        self.offset = int(offset)
        self.size = tuple(int(s) for s in size)
        if stride is None:
            stride = tuple(int(np.prod(self.size[i + 1:])) for i in range(len(self.size)))
        self.stride = tuple(int(s) for s in stride)
        self.typename = typename


def tensor_of(values, typename: str = TENSOR) -> Tensor:
    """A tensor with its own storage holding `values` (float32)."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    storage_type = typename.replace("Tensor", "Storage")
    return Tensor(Storage(storage_type, values.ravel()), 0, values.shape, typename=typename)


def empty_tensor(typename: str = TENSOR) -> Tensor:
    """`torch.CudaTensor()`: no dimensions, no storage (what a fresh module's output holds)."""
    return Tensor(None, 0, (), (), typename)


class _Writer:
    def __init__(self, stream):
        self.stream = stream
        self.indices: dict[int, int] = {}
        self.keep: list = []  # keeps written objects alive so that their id() stays unique

    def raw(self, fmt: str, *values) -> None:
        self.stream.write(struct.pack("<" + fmt, *values))

    def string(self, value: bytes) -> None:
        self.raw("i", len(value))
        self.stream.write(value)

    def reference(self, obj) -> bool:
        """Write the reference index; True if `obj` was written before (nothing more to write)."""
        key = id(obj)
        if key in self.indices:
            self.raw("i", self.indices[key])
            return True
        self.indices[key] = len(self.indices) + 1
        self.keep.append(obj)
        self.raw("i", self.indices[key])
        return False

    def write(self, obj) -> None:
        if obj is None:
            self.raw("i", TYPE_NIL)
        elif isinstance(obj, bool):
            self.raw("ii", TYPE_BOOLEAN, int(obj))
        elif isinstance(obj, (int, float, np.integer, np.floating)):
            self.raw("id", TYPE_NUMBER, float(obj))
        elif isinstance(obj, (str, bytes)):
            self.raw("i", TYPE_STRING)
            self.string(obj.encode("utf-8") if isinstance(obj, str) else obj)
        elif isinstance(obj, LuaTable):
            self.raw("i", TYPE_TABLE)
            if not self.reference(obj):
                self.raw("i", len(obj.pairs))
                for key, value in obj.pairs:
                    self.write(key)
                    self.write(value)
        elif isinstance(obj, (TorchInstance, Tensor, Storage)):
            self.raw("i", TYPE_TORCH)
            if self.reference(obj):
                return
            self.string(b"V 1")
            self.string(obj.typename.encode())
            if isinstance(obj, Tensor):
                n = len(obj.size)
                self.raw("i", n)
                self.raw(f"{n}q", *obj.size)
                self.raw(f"{n}q", *obj.stride)
                self.raw("q", obj.offset + 1)
                self.write(obj.storage)
            elif isinstance(obj, Storage):
                data = np.ascontiguousarray(obj.data, dtype=np.float32)
                self.raw("q", data.size)
                self.stream.write(data.tobytes())
            else:
                # File.lua writes a copy of the object's fields: a new table with its own index.
                self.write(_copy_table(obj.fields))
        else:
            raise TypeError(f"cannot write {type(obj).__name__} to a Torch7 file")


def _copy_table(table: LuaTable) -> LuaTable:
    copy = LuaTable()
    copy.pairs = list(table.pairs)
    return copy


def write_t7(path: str | Path, obj) -> Path:
    """Write `obj` to `path` in Torch7's binary format (little-endian, 8-byte longs)."""
    path = Path(path)
    # An nngraph nests deeply (node -> data -> mapindex -> data -> reverseMap -> node ...), and this
    # writer recurses as Torch's does.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, WRITE_RECURSION_LIMIT))
    try:
        with open(path, "wb") as stream:
            _Writer(stream).write(obj)
    finally:
        sys.setrecursionlimit(limit)
    return path


# ------------------------------------------------------------------------------------------------
# nn modules and their parameters
# ------------------------------------------------------------------------------------------------

class FlatParameters:
    """One flat storage for all parameters (and one for their gradients), as after
    `model_utils.combine_all_parameters`; `view` gives a new tensor object at an existing offset."""

    def __init__(self, rng: np.random.Generator, scale: float):
        self.rng = rng
        self.scale = scale
        self.storage = Storage(STORAGE)
        self.grad_storage = Storage(STORAGE)
        self.chunks: list[np.ndarray] = []
        self.size = 0

    def new(self, shape: tuple) -> tuple[int, np.ndarray]:
        values = self.rng.uniform(-self.scale, self.scale, size=shape).astype(np.float32)
        offset = self.size
        self.chunks.append(values.ravel())
        self.size += values.size
        return offset, values

    def view(self, offset: int, shape: tuple) -> Tensor:
        return Tensor(self.storage, offset, shape)

    def grad_view(self, offset: int, shape: tuple) -> Tensor:
        return Tensor(self.grad_storage, offset, shape)

    def finish(self) -> None:
        self.storage.data = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)
        self.grad_storage.data = np.zeros(self.size, np.float32)


def module(typename: str, **fields) -> TorchInstance:
    """An nn module with the fields every `nn.Module` has after training on a GPU."""
    base = {"output": empty_tensor(), "gradInput": empty_tensor(), "train": True, "_type": TENSOR}
    return TorchInstance(typename, {**base, **fields})


class Builder:
    """Creates modules with parameters in one `FlatParameters`; `rename` maps class names (to make
    a file with a module type the importer does not know)."""

    def __init__(self, rng: np.random.Generator, scale: float, rename: dict | None = None):
        self.params = FlatParameters(rng, scale)
        self.rename = rename or {}

    def module(self, typename: str, **fields) -> TorchInstance:
        return module(self.rename.get(typename, typename), **fields)

    def weighted(self, typename: str, weight_shape: tuple, bias_shape: tuple, share: dict | None = None,
                 **fields) -> tuple[TorchInstance, dict]:
        """A module with `weight` and `bias`; `share` (a previous return value) reuses its offsets."""
        if share is None:
            w_offset, w = self.params.new(weight_shape)
            b_offset, b = self.params.new(bias_shape)
            share = {"w_offset": w_offset, "b_offset": b_offset, "weight": w, "bias": b}
        m = self.module(
            typename,
            weight=self.params.view(share["w_offset"], weight_shape),
            bias=self.params.view(share["b_offset"], bias_shape),
            gradWeight=self.params.grad_view(share["w_offset"], weight_shape),
            gradBias=self.params.grad_view(share["b_offset"], bias_shape),
            **fields,
        )
        return m, share

    def linear(self, in_dim: int, out_dim: int, share: dict | None = None) -> tuple[TorchInstance, dict]:
        return self.weighted("nn.Linear", (out_dim, in_dim), (out_dim,), share)

    def sequential(self, *modules: TorchInstance) -> TorchInstance:
        return self.module("nn.Sequential", modules=LuaTable(items=list(modules)))


# ------------------------------------------------------------------------------------------------
# nngraph
# ------------------------------------------------------------------------------------------------

class Node:
    """`nngraph.Node`: `data` holds the module, `mapindex` (input order) and `reverseMap`; in the
    graph being built (the backward graph) `children` are the node's inputs."""

    _debug_line = 0

    def __init__(self, data: dict):
        Node._debug_line += 1
        self.data = LuaTable(data)
        for key in ("mapindex", "reverseMap"):
            if not _has(self.data, key):
                self.data[key] = LuaTable()
        if not _has(self.data, "annotations"):
            self.data["annotations"] = LuaTable({"_debugLabel": f"[modules/Fixture.lua]:{Node._debug_line}_"})
        self.children: list[Node] = []
        self.torch = TorchInstance("nngraph.Node", {"data": self.data, "children": LuaTable(), "id": 0,
                                                    "visited": False, "marked": False})

    def add(self, child: "Node", domap: bool) -> None:
        """nngraph `Node:add`: `child` becomes an input of this node, at the next mapindex."""
        self.children.append(child)
        self.torch.fields["children"].append(child.torch)
        if domap:
            index = self.data["mapindex"].append(child.data)
            self.data["mapindex"][child.data] = index
            child.data["reverseMap"][self.torch] = True

    def split(self, n: int) -> list["Node"]:
        """nngraph `Node:split(n)`: a pass-through node and n select nodes."""
        label = self.data["annotations"]["_debugLabel"]
        mnode = Node({"nSplitOutputs": n, "annotations": LuaTable({"_debugLabel": label + "-mnode"})})
        mnode.add(self, True)
        selects = []
        for i in range(1, n + 1):
            annotations = LuaTable({"_debugLabel": f"{label}-{i}"})
            node = Node({"selectindex": i, "input": LuaTable(), "annotations": annotations})
            node.add(mnode, True)
            selects.append(node)
        return selects


def _has(table: LuaTable, key) -> bool:
    try:
        table[key]
        return True
    except KeyError:
        return False


def call(m: TorchInstance, *inputs: Node) -> Node:
    """`module(input)` or `module({input1, input2})` in nngraph: a node holding `m`."""
    node = Node({"module": m, "input": LuaTable()})
    for inp in inputs:
        node.add(inp, True)
    return node


def _graph_object(nodes: list, edges: list) -> TorchInstance:
    return TorchInstance("graph.Graph", {
        "nodes": LuaTable(items=nodes),
        "edges": LuaTable(items=[TorchInstance("graph.Edge", {"from": a, "to": b}) for a, b in edges]),
    })


def _topsort(roots: list, children) -> list:
    """Topological order (every node after the nodes pointing to it) of the nodes reachable from `roots`."""
    order, seen = [], set()

    def visit(node):  # depth-first post-order, reversed below: a valid topological order
        stack = [(node, iter(children(node)))]
        seen.add(id(node))
        while stack:
            top, it = stack[-1]
            for nxt in it:
                if id(nxt) not in seen:
                    seen.add(id(nxt))
                    stack.append((nxt, iter(children(nxt))))
                    break
            else:
                order.append(top)
                stack.pop()

    for root in roots:
        if id(root) not in seen:
            visit(root)
    return order[::-1]


def gmodule(builder: Builder, inputs: list[Node], outputs: list[Node]) -> TorchInstance:
    """nngraph `gModule(inputs, outputs)`: the dummy in/out nodes, the backward graph (bg, node ->
    inputs), the forward graph (fg, new node objects sharing each `data`, node -> consumers) and
    `forwardnodes`, its topological order."""
    outnode = Node({"input": LuaTable()})
    for node in outputs:
        outnode.add(node, True)
    innode = Node({"input": LuaTable()})
    if len(inputs) == 1:
        inputs[0].add(innode, True)
    else:
        for node, select in zip(inputs, innode.split(len(inputs))):
            node.add(select, True)

    bg_nodes = _topsort([outnode], lambda n: n.children)
    bg_edges = [(n, c) for n in bg_nodes for c in n.children]
    fg = {id(n): TorchInstance("nngraph.Node", {"data": n.data, "children": LuaTable(), "id": 0,
                                               "visited": False, "marked": False}) for n in bg_nodes}
    consumers: dict[int, list] = {id(n): [] for n in bg_nodes}
    for n, c in bg_edges:
        consumers[id(c)].append(n)
        fg[id(c)].fields["children"].append(fg[id(n)])
    forward = _topsort([innode], lambda n: consumers[id(n)])
    for i, node in enumerate(forward, start=1):
        fg[id(node)].fields["id"] = i
        node.data["forwardNodeId"] = i
    for i, node in enumerate(bg_nodes, start=1):
        node.torch.fields["id"] = i
    forwardnodes = [fg[id(n)] for n in forward]
    modules = [n.data["module"] for n in forward if _has(n.data, "module")]
    return builder.module(
        "nn.gModule",
        modules=LuaTable(items=modules),
        forwardnodes=LuaTable(items=forwardnodes),
        backwardnodes=LuaTable(items=[n.torch for n in bg_nodes]),
        innode=fg[id(innode)],
        outnode=outnode.torch,
        fg=_graph_object(forwardnodes, [(fg[id(c)], fg[id(n)]) for n, c in bg_edges]),
        bg=_graph_object([n.torch for n in bg_nodes], [(n.torch, c.torch) for n, c in bg_edges]),
        nInputs=len(inputs),
        verbose=False,
    )


# ------------------------------------------------------------------------------------------------
# Reed's encoders
# ------------------------------------------------------------------------------------------------

def _fixed_gru(b: Builder, steps: int, in_dim: int, dim: int, weights: dict) -> TorchInstance:
    """reedscot/icml2016 `modules/FixedGRU.lua` with avg = 1 (i2h maps take `in_dim` inputs)."""
    inputs = [call(b.module("nn.Identity")) for _ in range(steps)]
    first: dict = {}
    hids = []

    def step_linear(role, src_dim):
        m, share = b.linear(src_dim, dim, first.get(role))
        first.setdefault(role, share)
        return b.sequential(m)

    for i in range(steps):
        # Every step creates its own Sequential{Linear}, sharing the first step's weights.
        i2h_update, i2h_reset, i2h = (step_linear(r, in_dim) for r in ("i2h_update", "i2h_reset", "i2h"))
        if i == 0:
            hids.append(call(b.module("nn.Tanh"), call(i2h, inputs[0])))
            continue
        h2h_update, h2h_reset, h2h = (step_linear(r, dim) for r in ("h2h_update", "h2h_reset", "h2h"))
        update = call(b.module("nn.Sigmoid"), call(b.module("nn.CAddTable"), call(i2h_update, inputs[i]),
                                                   call(h2h_update, hids[i - 1])))
        reset = call(b.module("nn.Sigmoid"), call(b.module("nn.CAddTable"), call(i2h_reset, inputs[i]),
                                                  call(h2h_reset, hids[i - 1])))
        gated = call(b.module("nn.CMulTable"), reset, hids[i - 1])
        candidate = call(b.module("nn.Tanh"), call(b.module("nn.CAddTable"), call(i2h, inputs[i]), call(h2h, gated)))
        zh = call(b.module("nn.CMulTable"), update, candidate)
        one_minus = call(b.module("nn.AddConstant", constant_scalar=1, inplace=False),
                         call(b.module("nn.MulConstant", constant_scalar=-1, inplace=False), update))
        zhm1 = call(b.module("nn.CMulTable"), one_minus, hids[i - 1])
        hids.append(call(b.module("nn.CAddTable"), zh, zhm1))
    total = hids[0]
    for h in hids[1:]:
        total = call(b.module("nn.CAddTable"), total, h)
    out = call(b.module("nn.MulConstant", constant_scalar=1.0 / steps, inplace=False), total)
    weights.update({role: (share["weight"], share["bias"]) for role, share in first.items()})
    return gmodule(b, inputs, [out])


def _fixed_rnn(b: Builder, steps: int, in_dim: int, dim: int, weights: dict) -> TorchInstance:
    """reedscot/cvpr2016 `modules/FixedRNN.lua` (always averaged)."""
    inputs = [call(b.module("nn.Identity")) for _ in range(steps)]
    first: dict = {}

    def step_linear(role, src_dim):
        m, share = b.linear(src_dim, dim, first.get(role))
        first.setdefault(role, share)
        return b.sequential(m)

    relu, total = [], None
    for i in range(steps):
        i2h = step_linear("i2h", in_dim)
        if i == 0:
            relu.append(call(b.module("nn.ReLU", threshold=0, val=0, inplace=False), call(i2h, inputs[0])))
            total = relu[0]
            continue
        h2h = step_linear("h2h", dim)
        summed = call(b.module("nn.CAddTable"), call(i2h, inputs[i]), call(h2h, relu[i - 1]))
        relu.append(call(b.module("nn.ReLU", threshold=0, val=0, inplace=False), summed))
        total = call(b.module("nn.CAddTable"), total, relu[i])
    out = call(b.module("nn.MulConstant", constant_scalar=1.0 / steps, inplace=False), total)
    weights.update({role: (share["weight"], share["bias"]) for role, share in first.items()})
    return gmodule(b, inputs, [out])


def build_char_cnn_rnn(rnn: str = "gru", conv_channels=(6, 8, 8), rnn_dim: int = 5, emb_dim: int = 7,
                       third_pool: bool | None = None, seed: int = 0, scale: float = 0.5,
                       rename: dict | None = None, dropout: float = 0.0) -> tuple[TorchInstance, dict]:
    """Reed's encoder as an `nn.gModule` (reedscot/icml2016 `HybridCNNLong.lua`, or reedscot/cvpr2016
    `HybridCNN.lua` when `third_pool`; default: the third pool with the ReLU RNN, as the flowers file).

    Returns:
      (gModule, weights): weights by role, as float32 arrays in Torch layout: `conv1..3` (W (out,
      kW*in), b), `projection` (W (out, in), b), and the RNN's maps (`i2h`, `h2h`, and for the GRU
      `i2h_update`, `h2h_update`, `i2h_reset`, `h2h_reset`), plus `steps`, `third_pool`, `rnn`.
    """
    if third_pool is None:
        third_pool = rnn == "relu"
    b = Builder(np.random.default_rng(seed), scale, rename)
    weights: dict = {"rnn": rnn, "third_pool": third_pool}
    layers, length, in_dim = [], DOC_LENGTH, ALPHABET_SIZE
    pools = [(3, 3), (3, 3)] + ([(3, 2)] if third_pool else [None])
    for k, (channels, pool) in enumerate(zip(conv_channels, pools), start=1):
        conv, share = b.weighted("nn.TemporalConvolution", (channels, 4 * in_dim), (channels,),
                                 inputFrameSize=in_dim, outputFrameSize=channels, kW=4, dW=1)
        weights[f"conv{k}"] = (share["weight"], share["bias"])
        layers += [conv, b.module("nn.Threshold", threshold=1e-6, val=0, inplace=False)]
        length = length - 3
        if pool is not None:
            layers.append(b.module("nn.TemporalMaxPooling", kW=pool[0], dW=pool[1], indices=empty_tensor()))
            length = (length - pool[0]) // pool[1] + 1
        in_dim = channels
    weights["steps"] = length

    inputs = [call(b.module("nn.Identity"))]
    features = call(b.sequential(*layers), inputs[0])
    # After training, SplitTable's output is a table of tensors (the last minibatch's time steps):
    # the table torchfile's list heuristic trips on.
    split_buffers = LuaTable(items=[tensor_of(np.zeros((2, in_dim))) for _ in range(length)])
    steps = call(b.module("nn.SplitTable", dimension=2, output=split_buffers), features)
    make_rnn = _fixed_gru if rnn == "gru" else _fixed_rnn
    hidden = call(make_rnn(b, length, in_dim, rnn_dim, weights), steps)
    dropped = call(b.module("nn.Dropout", p=dropout, v2=True, noise=empty_tensor()), hidden)
    projection, share = b.linear(rnn_dim, emb_dim)
    weights["projection"] = (share["weight"], share["bias"])
    model = gmodule(b, inputs, [call(projection, dropped)])
    b.params.finish()
    return model, weights


def checkpoint(enc_doc, opt_savefile: str = "sje_flowers_c10_hybrid") -> LuaTable:
    """The table `train_sje_hybrid.lua` saves: `protos` (image and text encoders), `opt`, losses."""
    enc_image = module("nn.Identity")
    return LuaTable({
        "protos": LuaTable({"enc_image": enc_image, "enc_doc": enc_doc}),
        "opt": LuaTable({"savefile": opt_savefile, "doc_length": DOC_LENGTH, "learning_rate": 0.0007,
                         "symmetric": 1, "num_caption": 10, "gpuid": 0}),
        "train_losses": LuaTable(items=[1.5, 1.25]),
        "val_loss": 0,
        "val_losses": LuaTable(),
        "i": 2,
        "epoch": 0.01,
        "vocab": LuaTable({"a": 1, "b": 2}),
    })


def write_char_cnn_rnn(path: str | Path, rnn: str = "gru", wrap: bool = True, **kwargs) -> dict:
    """Write an encoder built by `build_char_cnn_rnn(rnn, **kwargs)` to `path`, inside the training
    checkpoint table (`wrap`) or as the bare gModule; returns its weights by role."""
    model, weights = build_char_cnn_rnn(rnn, **kwargs)
    write_t7(path, checkpoint(model) if wrap else model)
    return weights
