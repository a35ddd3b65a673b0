"""Tests of misc/text/import_t7.py: Reed's Torch7 char-CNN-RNN encoders into the Keras `CharCnnRnn`.

The .t7 fixtures are written by `t7_writer` at tiny widths, laid out as nngraph saves Reed's
checkpoints. The reference for the imported models is the Lua code's equations written out below
in NumPy, one time step at a time (neither the project's layers nor the importer's interpreter).
Also here: the `CharCnnRnn` options the import needs (third pool, ReLU RNN, exact demo encoding).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import torchfile  # noqa: E402  (a dependency of the package)

from misc.cli import run_cli  # noqa: E402
from misc.datasets import read_caption_lines, read_filenames  # noqa: E402
from misc.errors import StackGANError  # noqa: E402
from misc.pickle_io import load_pickle  # noqa: E402
from misc.text import import_t7 as importer  # noqa: E402
from misc.text.char_cnn_rnn import (  # noqa: E402
    CharCnnRnn, FixedRNN, encode_text, encode_text_tf, sequence_lengths, text_to_indices,
)
from misc.text.encoder import TEXT_ENCODER_FILE, embed_sentences, load_text_encoder  # noqa: E402
from t7_writer import (  # noqa: E402
    Builder, LuaTable, call, gmodule, module, tensor_of, write_char_cnn_rnn, write_t7,
)

REPO = Path(__file__).resolve().parents[1]
TINY = {"conv_channels": (6, 8, 8), "rnn_dim": 5, "emb_dim": 7}
SENTENCES = ["this small bird has a red crown and a short black beak.", "A Flower With Pink PETALS!", "",
             "x" * 300, "0123456789 -,;.!?:'\"/\\|_@#$%^&*~`+-=<>()[]{} \t é"]


# ------------------------------------------------------------------------------------------------
# The Lua code, written out (hanzhanggit/StackGAN demo/get_embedding.lua, reedscot/icml2016
# HybridCNNLong.lua + FixedGRU.lua, reedscot/cvpr2016 HybridCNN.lua + FixedRNN.lua)
# ------------------------------------------------------------------------------------------------

LUA_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-,;.!?:'\"/\\|_@#$%^&*~`+-=<>()[]{} "


def lua_one_hot(text: str, lower_case: bool) -> np.ndarray:
    """get_embedding.lua: dict[char] = position (the later '-' wins); byte t of the text sets row t."""
    column = {}
    for position, char in enumerate(LUA_ALPHABET):
        column[ord(char)] = position
    raw = text.encode("utf-8")
    if lower_case:
        raw = raw.lower()  # bytes.lower() changes ASCII letters only
    x = np.zeros((201, 70))
    for t, byte in enumerate(raw[:201]):
        if byte in column:
            x[t, column[byte]] = 1.0
    return x


def lua_forward(w: dict, x: np.ndarray) -> np.ndarray:
    """One text (201, 70) through the Torch encoder whose weights `t7_writer` returned."""
    sigmoid = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    pools = [(3, 3), (3, 3)] + ([(3, 2)] if w["third_pool"] else [])
    for k in range(3):
        weight, bias = w[f"conv{k + 1}"]  # (out, kW * in): window t is frames t..t+3, one after another
        y = np.stack([weight @ x[t: t + 4].reshape(-1) + bias for t in range(len(x) - 3)])
        x = np.where(y > 1e-6, y, 0.0)  # nn.Threshold()
        if k < len(pools):
            kw, dw = pools[k]
            x = np.stack([x[t * dw: t * dw + kw].max(axis=0) for t in range((len(x) - kw) // dw + 1)])
    assert len(x) == w["steps"]
    lin = lambda role, v: w[role][0] @ v + w[role][1]  # noqa: E731
    if w["rnn"] == "gru":
        h = np.tanh(lin("i2h", x[0]))
        states = [h]
        for xt in x[1:]:
            update = sigmoid(lin("i2h_update", xt) + lin("h2h_update", h))
            reset = sigmoid(lin("i2h_reset", xt) + lin("h2h_reset", h))
            candidate = np.tanh(lin("i2h", xt) + lin("h2h", reset * h))
            h = update * candidate + (1 - update) * h
            states.append(h)
    else:
        r = np.maximum(lin("i2h", x[0]), 0)
        states = [r]
        for xt in x[1:]:
            r = np.maximum(lin("i2h", xt) + lin("h2h", r), 0)
            states.append(r)
    return lin("projection", np.mean(states, axis=0))


def lua_embeddings(weights: dict, texts, lower_case: bool = True) -> np.ndarray:
    return np.stack([lua_forward(weights, lua_one_hot(t, lower_case)) for t in texts])


# ------------------------------------------------------------------------------------------------
# Fixtures
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def t7(tmp_path_factory):
    """{variant: (path, weights)}: the birds layout (GRU) and the flowers layout (ReLU RNN, third pool),
    both as training checkpoints."""
    root = tmp_path_factory.mktemp("t7")
    return {rnn: (root / f"{rnn}.t7", write_char_cnn_rnn(root / f"{rnn}.t7", rnn, seed=i, **TINY))
            for i, rnn in enumerate(("gru", "relu"))}


@pytest.fixture(scope="module")
def imported(t7, tmp_path_factory):
    """{variant: folder} imported with the default encoding, and 'exact': the GRU with the demo's."""
    root = tmp_path_factory.mktemp("imported")
    quiet = lambda line: None  # noqa: E731
    out = {}
    for rnn in ("gru", "relu"):
        out[rnn] = root / rnn
        importer.import_t7(t7[rnn][0], "birds", out[rnn], log=quiet)
    out["exact"] = root / "exact"
    importer.import_t7(t7["gru"][0], "birds", out["exact"], exact_demo_encoding=True, log=quiet)
    return out


def cli_error(argv, capsys) -> str:
    """Run the command line in-process; it must exit 2 with one line on stderr. Returns the line."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(importer.main, [str(a) for a in argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def leftovers(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------------------------------------------
# The writer's files are what torchfile reads from a real checkpoint
# ------------------------------------------------------------------------------------------------

def test_torchfile_reads_the_writers_nngraph(t7):
    path, _ = t7["gru"]
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 5000))  # the nested graph is deeper than Python's default
    try:
        top = torchfile.load(str(path), use_list_heuristic=False)
    finally:
        sys.setrecursionlimit(limit)
    enc = top.protos.enc_doc
    assert enc.torch_typename() == b"nn.gModule" and top.protos.enc_image is not None
    nodes = [enc.forwardnodes[k] for k in range(1, len(enc.forwardnodes) + 1)]
    types = [n.data.module.torch_typename() if n.data.module is not None else None for n in nodes]
    assert types == [None, b"nn.Identity", b"nn.Sequential", b"nn.SplitTable", b"nn.gModule", b"nn.Dropout",
                     b"nn.Linear", None]
    # mapindex holds both directions: position -> parent's data and parent's data -> position.
    parent, child = nodes[2].data, nodes[3].data
    assert child.mapindex[1] is parent and child.mapindex[parent] == 1
    assert nodes[2].children[1] is nodes[3]  # the forward graph's children are the consumers
    rnn = nodes[4].data.module
    rnn_nodes = [rnn.forwardnodes[k] for k in range(1, len(rnn.forwardnodes) + 1)]
    assert rnn.nInputs == 18 == sum(n.data.selectindex is not None for n in rnn_nodes)
    assert sum(n.data.nSplitOutputs == 18 for n in rnn_nodes) == 1
    # Shared time steps: separate tensors, one view of the flat CudaStorage (float32).
    linears = [n.data.module.modules[1] for n in rnn_nodes
               if n.data.module is not None and n.data.module.torch_typename() == b"nn.Sequential"]
    pointers = {lin.weight.__array_interface__["data"][0] for lin in linears}
    assert len(linears) == 18 + 5 * 17 and len(pointers) == 6
    assert all(lin.weight.dtype == np.float32 for lin in linears)
    projection = nodes[6].data.module
    conv1 = nodes[2].data.module.modules[1]
    assert projection.weight.shape == (7, 5) and conv1.weight.shape == (6, 4 * 70)


def test_read_t7_raises_the_recursion_limit_only_while_loading(t7):
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)  # Python's default, too low for the GRU's graph
    try:
        top = importer.read_t7(t7["gru"][0])
        assert sys.getrecursionlimit() == 1000
    finally:
        sys.setrecursionlimit(limit)
    assert isinstance(top.protos.enc_doc.forwardnodes, dict)  # use_list_heuristic=False


# ------------------------------------------------------------------------------------------------
# Both variants import and compute what the Lua code computes
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rnn, cnn, kind, steps", [("gru", "HybridCNNLong", "FixedGRU", 18),
                                                   ("relu", "HybridCNN", "FixedRNN", 8)])
def test_imported_encoder_matches_the_lua_equations(t7, imported, rnn, cnn, kind, steps):
    _, weights = t7[rnn]
    encoder = load_text_encoder(imported[rnn])
    assert isinstance(encoder, CharCnnRnn) and encoder.third_pool == (rnn == "relu") and encoder.rnn_kind == rnn
    assert not encoder.exact_demo_encoding
    expected = lua_embeddings(weights, SENTENCES)
    assert np.ptp(expected, axis=0).max() > 0.05  # the texts give different embeddings: a real test
    np.testing.assert_allclose(embed_sentences(encoder, SENTENCES), expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(encoder.embed_text(SENTENCES).numpy(), expected, rtol=0, atol=1e-5)
    record = json.loads((imported[rnn] / importer.IMPORT_FILE).read_text())
    arch = record["architecture"]
    assert (arch["cnn"], arch["rnn"], arch["steps"]) == (cnn, kind, steps)
    assert arch["conv_channels"] == [6, 8, 8] and arch["rnn_dim"] == 5 and arch["emb_dim"] == 7
    assert record["source"] == str(t7[rnn][0].resolve()) and record["exact_demo_encoding"] is False
    assert 0 <= record["check"]["max_abs_difference"] <= 1e-5
    assert sorted(p.name for p in imported[rnn].iterdir()) == sorted([TEXT_ENCODER_FILE, importer.IMPORT_FILE])


def test_bare_gmodule_file_and_architecture_from_the_graph(t7, tmp_path, monkeypatch):
    # A file holding the gModule itself; and --dataset only names the default folder: the flowers
    # name on the GRU file still gives the GRU.
    path = tmp_path / "bare.t7"
    weights = write_char_cnn_rnn(path, "gru", wrap=False, seed=5, **TINY)
    monkeypatch.chdir(tmp_path)
    record = importer.import_t7(path, "flowers", log=lambda line: None)
    folder = tmp_path / "models" / "flowers" / "text_encoder"
    assert record["out"] == str(Path("models/flowers/text_encoder")) and record["architecture"]["rnn"] == "FixedGRU"
    np.testing.assert_allclose(embed_sentences(load_text_encoder(folder), SENTENCES[:2]),
                               lua_embeddings(weights, SENTENCES[:2]), rtol=0, atol=1e-5)


def test_interpreter_runs_the_graph_as_the_lua_code(t7):
    for rnn in ("gru", "relu"):
        path, weights = t7[rnn]
        enc = importer.find_encoder(importer.read_t7(path), path)
        x = np.stack([lua_one_hot(t, True) for t in SENTENCES])
        np.testing.assert_allclose(importer.run_module(enc, x), lua_embeddings(weights, SENTENCES), atol=1e-12)


# ------------------------------------------------------------------------------------------------
# The encoding switch
# ------------------------------------------------------------------------------------------------

def test_exact_demo_encoding_gives_zero_rows_for_upper_case():
    default, exact = encode_text(["Ab"]), encode_text(["Ab"], exact_demo=True)
    assert default[0, 0, 0] == 1 and default[0, 0].sum() == 1  # 'A' read as 'a'
    assert exact[0, 0].sum() == 0 and exact[0, 1, 1] == 1  # 'A' unknown, 'b' in place
    assert text_to_indices(["Z"], exact_demo=True)[0, 0] == -1
    for lower_case in (True, False):
        for text in SENTENCES:
            np.testing.assert_array_equal(encode_text([text], exact_demo=not lower_case)[0],
                                          lua_one_hot(text, lower_case))


def test_numpy_and_tensorflow_encodings_agree_for_both_settings():
    texts = SENTENCES + [bytes(range(256)), "A RED BIRD", "café", "鸟"]
    for exact in (False, True):
        np.testing.assert_array_equal(encode_text(texts, exact_demo=exact),
                                      encode_text_tf(texts, exact_demo=exact).numpy())


def test_imported_exact_encoder_keeps_its_switch(t7, imported):
    _, weights = t7["gru"]
    exact, default = load_text_encoder(imported["exact"]), load_text_encoder(imported["gru"])
    assert exact.exact_demo_encoding and not default.exact_demo_encoding
    assert json.loads((imported["exact"] / importer.IMPORT_FILE).read_text())["exact_demo_encoding"] is True
    assert exact.encode_texts(["A"]).numpy()[0, 0].sum() == 0 and default.encode_texts(["A"]).numpy()[0, 0, 0] == 1
    np.testing.assert_allclose(exact.embed_text(SENTENCES).numpy(), lua_embeddings(weights, SENTENCES, False),
                               rtol=0, atol=1e-5)
    upper, lower = exact.embed_text(["A RED BIRD", "a red bird"]).numpy()
    assert np.abs(upper - lower).max() > 1e-3
    upper, lower = default.embed_text(["A RED BIRD", "a red bird"]).numpy()
    np.testing.assert_array_equal(upper, lower)


# ------------------------------------------------------------------------------------------------
# CharCnnRnn options
# ------------------------------------------------------------------------------------------------

def test_third_pool_and_relu_rnn_shapes_and_parameters():
    assert sequence_lengths(third_pool=True) == [201, 198, 66, 63, 21, 18, 8]
    model = CharCnnRnn(**TINY, third_pool=True, rnn_kind="relu")
    x = encode_text(["a flower"])
    hidden = model.rnn(model.pool3(model.conv3(model.pool2(model.conv2(model.pool1(model.conv1(x)))))))
    assert hidden.shape == (1, 8, 5) and model(x).shape == (1, 7)
    # FixedRNN: i2h 8 -> 5 and h2h 5 -> 5, each with a bias.
    assert model.rnn.count_params() == (8 * 5 + 5) + (5 * 5 + 5)
    with pytest.raises(ValueError, match="unknown rnn_kind"):
        CharCnnRnn(**TINY, rnn_kind="lstm")
    with pytest.raises(ValueError, match="static number of time steps"):
        FixedRNN(3).build((None, None, 4))


def test_options_survive_save_and_old_configs_get_the_defaults(tmp_path):
    model = CharCnnRnn(**TINY, third_pool=True, rnn_kind="relu", exact_demo_encoding=True, name="enc")
    x = encode_text(["a flower"], exact_demo=True)
    y = model(x).numpy()
    model.save(tmp_path / "enc.keras")
    loaded = keras.models.load_model(tmp_path / "enc.keras")
    assert (loaded.third_pool, loaded.rnn_kind, loaded.exact_demo_encoding) == (True, "relu", True)
    np.testing.assert_allclose(loaded(x).numpy(), y, atol=1e-6)
    old = {k: v for k, v in CharCnnRnn(**TINY).get_config().items()
           if k not in ("third_pool", "rnn_kind", "exact_demo_encoding")}
    clone = CharCnnRnn.from_config(old)  # a config saved before the options existed
    assert (clone.third_pool, clone.rnn_kind, clone.exact_demo_encoding) == (False, "gru", False)


# ------------------------------------------------------------------------------------------------
# Errors: one line, exit 2, nothing written
# ------------------------------------------------------------------------------------------------

def _not_an_encoder_graph(path: Path) -> None:
    b = Builder(np.random.default_rng(0), 0.5)
    inp = call(b.module("nn.Identity"))
    linear, _ = b.linear(70, 3)
    graph = gmodule(b, [inp], [call(linear, inp)])
    b.params.finish()
    write_t7(path, LuaTable({"protos": LuaTable({"enc_doc": graph})}))


@pytest.mark.parametrize("case, expected", [
    ("unknown module", "module type nn.HardTanh"),
    ("plain table", "holds a table with keys {epoch, name}"),
    ("tensor", "holds a tensor of shape (2, 3)"),
    ("protos without enc_doc", "no protos.enc_doc"),
    ("enc_doc not a gModule", "protos.enc_doc is a nn.Linear"),
    ("other graph", "expected nn.TemporalConvolution as module 1 of the encoder, found nn.Linear"),
    ("text file", "not a Torch7 file that torchfile can read"),
    ("empty file", "not a Torch7 file that torchfile can read"),
    ("missing file", "file not found"),
])
def test_bad_files_are_one_line_errors_and_write_nothing(tmp_path, capsys, case, expected):
    path = tmp_path / "in.t7"
    if case == "unknown module":
        write_char_cnn_rnn(path, "gru", rename={"nn.Tanh": "nn.HardTanh"}, **TINY)
    elif case == "plain table":
        write_t7(path, LuaTable({"epoch": 3, "name": "lm_sje"}))
    elif case == "tensor":
        write_t7(path, tensor_of(np.zeros((2, 3))))
    elif case == "protos without enc_doc":
        write_t7(path, LuaTable({"protos": LuaTable({"enc_image": module("nn.Identity")})}))
    elif case == "enc_doc not a gModule":
        write_t7(path, LuaTable({"protos": LuaTable({"enc_doc": module("nn.Linear")})}))
    elif case == "other graph":
        _not_an_encoder_graph(path)
    elif case == "text file":
        path.write_text("th> torch.save('x.t7', net)\n")
    elif case == "empty file":
        path.write_bytes(b"")
    out = tmp_path / "out" / "text_encoder"
    line = cli_error([path, "--dataset", "birds", "--out", out], capsys)
    assert str(path) in line and expected in line, line
    assert not (tmp_path / "out").exists()


def test_every_error_is_a_stackgan_error():
    for name in ("T7ImportError", "NotTorch7Error", "NoEncoderError", "UnsupportedModuleError",
                 "ArchitectureError", "MismatchError", "OutputError"):
        assert issubclass(getattr(importer, name), StackGANError)


def test_a_mismatch_refuses_to_write(t7, tmp_path, monkeypatch):
    build = importer.build_keras

    def off_by_a_little(arch, exact):
        model = build(arch, exact)
        model.projection.bias.assign(model.projection.bias.numpy() + 1e-3)
        return model

    monkeypatch.setattr(importer, "build_keras", off_by_a_little)
    with pytest.raises(importer.MismatchError, match="differs from the Torch network by up to 0.001"):
        importer.import_t7(t7["relu"][0], "flowers", tmp_path / "enc", log=lambda line: None)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("existing", ["file", "other folder", "trained encoder", "link to an import"])
def test_existing_output_that_is_not_an_import_is_kept(t7, tmp_path, capsys, existing):
    out = tmp_path / "text_encoder"
    if existing == "file":
        out.write_text("notes")
    elif existing == "link to an import":  # an import would replace the link by a folder
        (tmp_path / "shared_encoder").mkdir()
        (tmp_path / "shared_encoder" / importer.IMPORT_FILE).write_text("{}")
        out.symlink_to(tmp_path / "shared_encoder", target_is_directory=True)
    else:
        out.mkdir()
        (out / ("notes.txt" if existing == "other folder" else TEXT_ENCODER_FILE)).write_text("mine")
    before = {p.name: p.read_bytes() for p in ([out] if out.is_file() else out.iterdir())}
    line = cli_error([t7["relu"][0], "--dataset", "flowers", "--out", out], capsys)
    expected = {"file": "exists and is not a folder", "other folder": "is not a text encoder folder",
                "trained encoder": "holds a text encoder trained with misc.text.encoder",
                "link to an import": "is a symbolic link"}[existing]
    assert str(out) in line and expected in line and "choose another --out" in line
    assert {p.name: p.read_bytes() for p in ([out] if out.is_file() else out.iterdir())} == before
    assert out.is_symlink() == (existing == "link to an import")
    assert leftovers(tmp_path) == []


def test_reimport_replaces_an_earlier_import_in_one_rename(t7, tmp_path):
    out = tmp_path / "text_encoder"
    importer.import_t7(t7["gru"][0], "birds", out, log=lambda line: None)
    importer.import_t7(t7["gru"][0], "birds", out, exact_demo_encoding=True, log=lambda line: None)
    assert load_text_encoder(out).exact_demo_encoding
    assert leftovers(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["text_encoder"]


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------

def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        importer.main(["--help"])
    text = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert all(option in text for option in ("T7FILE", "--dataset", "{birds,flowers}", "--out",
                                             "--exact-demo-encoding"))


def test_command_line_end_to_end(t7, tmp_path):
    out = tmp_path / "enc"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "misc.text.import_t7", str(t7["relu"][0]), "--dataset", "flowers",
                           "--out", str(out), "--exact-demo-encoding"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "HybridCNN + FixedRNN (8 steps" in proc.stdout and f"wrote {out}" in proc.stdout
    encoder = load_text_encoder(out)
    assert encoder.exact_demo_encoding and encoder.rnn_kind == "relu"
    np.testing.assert_allclose(encoder.embed_text(SENTENCES).numpy(),
                               lua_embeddings(t7["relu"][1], SENTENCES, lower_case=False), rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# Acceptance: a real Reed .t7 (optional)
# ------------------------------------------------------------------------------------------------

# Per caption, |ours - release| / |release| (L2). The release was computed in float32 on a GPU; the
# same network in float32 on a CPU differs by summation order, about 1e-6 relative. 1e-3 leaves a
# thousandfold margin for that and still fails on a wrong weight or a different text encoding.
RELEASE_TOLERANCE = 1e-3
REAL_T7 = os.environ.get("STACKGAN_T7")


@pytest.mark.skipif(not REAL_T7, reason="set STACKGAN_T7 to a Reed char-CNN-RNN .t7 file (e.g. lm_sje_nc4_cub_"
                                        "hybrid_gru18_a1_c512_0.00070_1_10_trainvalids.txt_iter30000.t7)")
def test_real_reed_encoder(tmp_path):
    record = importer.import_t7(REAL_T7, "birds", tmp_path / "enc", log=lambda line: None)
    assert record["check"]["max_abs_difference"] <= importer.TOLERANCE
    encoder = load_text_encoder(tmp_path / "enc")
    embeddings = embed_sentences(encoder, ["this bird is red with white and has a very short beak.", "A FLOWER", ""])
    assert embeddings.shape == (3, 1024) and np.isfinite(embeddings).all()

    release_path, captions_dir = os.environ.get("STACKGAN_T7_EMBEDDINGS"), os.environ.get("STACKGAN_T7_CAPTIONS")
    if not (release_path and captions_dir):
        return
    # The release's (N, 10, 1024) rows follow filenames.pickle of the same split folder.
    release = np.asarray(load_pickle(release_path), dtype=np.float64)
    names = read_filenames(Path(release_path).parent / "filenames.pickle")
    for i in range(3):
        captions = read_caption_lines(Path(captions_dir) / f"{names[i]}.txt")[: release.shape[1]]
        ours = embed_sentences(encoder, captions).astype(np.float64)
        theirs = release[i, : len(captions)]
        error = np.linalg.norm(ours - theirs, axis=1) / np.linalg.norm(theirs, axis=1)
        assert error.max() <= RELEASE_TOLERANCE, (names[i], error)
