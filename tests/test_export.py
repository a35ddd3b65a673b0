"""Tests of misc/generate/export.py: the SavedModel that draws images from raw sentences.

The tiny snapshots and text encoder of conftest's `tiny_models` (kernels re-drawn in memory so that the
images vary) are exported twice, Stage-I + Stage-II and Stage-I only; both exports are loaded in a
fresh Python process that imports TensorFlow only (the project's packages are blocked there), and
every signature's outputs are compared with the Keras networks on the same noise.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from misc.generate import export
from misc.errors import StackGANError

# Upper case (read as lower case), non-ASCII bytes (zero rows), a text past the 201-byte window,
# an empty text (all zero rows), and a plain one.
CAPTIONS = ["A small RED circle at the top.", "un oiseau très coloré", "a blue square " * 20, "",
            "a large yellow star on a black background"]
SEED = 7
# Same ops in a graph and eagerly: the float32 results agree to rounding.
ATOL = 1e-5


def spread_weights(network, seed: int) -> None:
    """He-initialise every kernel, so that untrained tiny networks give images that vary over [0, 1].

    With the original's init (std 0.02) the tiny generators' images are 0.5 +- 1e-4, too flat for a
    tolerance to mean anything.
    """
    rng = np.random.default_rng(seed)
    for variable in network.trainable_variables:
        if len(variable.shape) >= 2:
            fan_in = int(np.prod(variable.shape[:-1]))
            variable.assign(rng.standard_normal(variable.shape).astype(np.float32) * np.sqrt(2.0 / fan_in))


@pytest.fixture(scope="module")
def tiny(tiny_models, tmp_path_factory):
    """Tiny models in the trained layouts (conftest `tiny_models`, read-only), and two exports of them
    into a folder of this module: Stage-I + Stage-II, and Stage-I only."""
    from misc.generate.inference import load_encoder, load_generators

    paths = tiny_models
    root = tmp_path_factory.mktemp("export")
    encoder = load_encoder(paths["encoder"])
    models2 = load_generators(paths["stage2"])
    for k, network in enumerate((encoder, models2.stage1_generator, models2.stage2_generator)):
        spread_weights(network, seed=k)
    # What `load_generators(..., stage="stageI")` gives for a Stage-II snapshot.
    models1 = dataclasses.replace(models2, stage2_generator=None)
    out2 = root / "models" / "birds" / export.SAVED_MODEL_DIR  # the default layout
    info2 = export.export_saved_model(models2, encoder, out2, paths["encoder"], print_fn=lambda _: None)
    out1 = root / "stageI_export"
    export.export_saved_model(models1, encoder, out1, paths["encoder"], print_fn=lambda _: None)
    return {**paths, "root": root, "encoder_model": encoder, "models2": models2, "models1": models1,
            "out2": out2, "info2": info2, "out1": out1}


# Runs in a fresh interpreter (-I: no PYTHONPATH, no script folder): the project's packages cannot
# be imported, and every module imported after `import tensorflow` is reported.
SERVE_SCRIPT = textwrap.dedent('''
    import importlib.abc, json, sys, time

    class BlockProject(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("misc", "stageI", "stageII"):
                raise ImportError(f"the SavedModel needed project module {name}")

    sys.meta_path.insert(0, BlockProject())
    import numpy as np
    import tensorflow as tf
    before = set(sys.modules)
    args = json.loads(sys.argv[1])
    data = dict(np.load(args["inputs"]))
    results, report = {}, {}
    for tag, path in (("s2", args["stage2"]), ("s1", args["stage1"])):
        start = time.perf_counter()
        model = tf.saved_model.load(path)
        report[f"{tag}_load_s"] = time.perf_counter() - start
        sig = model.signatures
        report[f"{tag}_signatures"] = {name: sorted(f.structured_input_signature[1]) for name, f in sig.items()}
        noise = {k: data[f"{tag}_{k}"] for k in ("z", "epsilon1", "epsilon2") if f"{tag}_{k}" in data}
        captions = tf.constant(args["captions"])
        for name, out in (
                ("noise", sig["generate_with_noise"](captions=captions, **noise)),
                ("emb_noise", sig["from_embeddings_with_noise"](embeddings=data["embeddings"], **noise)),
                ("seeded", sig["serving_default"](captions=captions, seed=args["seed"])),
                ("seeded_again", sig["serving_default"](captions=captions, seed=args["seed"])),
                ("seeded_head", sig["serving_default"](captions=captions[:2], seed=args["seed"])),
                ("seeded_other", sig["serving_default"](captions=captions, seed=args["seed"] + 1)),
                ("emb_seeded", sig["from_embeddings"](embeddings=data["embeddings"], seed=args["seed"])),
                ("embed", sig["embed_captions"](captions=captions)),
                ("empty", sig["serving_default"](captions=tf.constant([], tf.string), seed=0)),
                # The attribute form, as the README shows it.
                ("attribute", model.serving_default(captions, tf.constant(args["seed"], tf.int64)))):
            for key, value in out.items():
                results[f"{tag}_{name}_{key}"] = value.numpy()
        start = time.perf_counter()
        sig["serving_default"](captions=captions, seed=0)
        report[f"{tag}_call_s"] = time.perf_counter() - start
        try:
            sig["generate_with_noise"](captions=captions[:2], **noise)
        except tf.errors.InvalidArgumentError as err:
            report[f"{tag}_mismatch_error"] = err.message
    np.savez(args["results"], **results)
    report["new_modules"] = sorted(m for m in set(sys.modules) - before
                                   if m.split(".")[0] in ("keras", "misc", "stageI", "stageII"))
    print(json.dumps(report))
''')


@pytest.fixture(scope="module")
def served(tiny):
    """Call every signature of both exports in a TensorFlow-only process; returns (results, report, inputs)."""
    root = tiny["root"]
    n = len(CAPTIONS)
    rng = np.random.default_rng(1)
    inputs = {"embeddings": rng.standard_normal((n, tiny["models2"].text_dim)).astype(np.float32)}
    for tag in ("s2", "s1"):
        models = tiny["models2" if tag == "s2" else "models1"]
        z, epsilon1, epsilon2 = models.sample_noise(n, seed=3)
        inputs.update({f"{tag}_z": z, f"{tag}_epsilon1": epsilon1})
        if epsilon2 is not None:
            inputs[f"{tag}_epsilon2"] = epsilon2
    np.savez(root / "inputs.npz", **inputs)
    script = root / "serve.py"
    script.write_text(SERVE_SCRIPT, encoding="utf-8")
    args = {"inputs": str(root / "inputs.npz"), "results": str(root / "results.npz"), "captions": CAPTIONS,
            "seed": SEED, "stage2": str(tiny["out2"]), "stage1": str(tiny["out1"])}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    proc = subprocess.run([sys.executable, "-I", str(script), json.dumps(args)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return dict(np.load(root / "results.npz")), report, inputs


def reference(models, encoder, captions_or_embeddings, z, epsilon1, epsilon2=None):
    """The Keras networks' images in [0, 1], text encoded with the NumPy `encode_text`."""
    from misc.text.char_cnn_rnn import encode_text

    inputs = captions_or_embeddings
    embeddings = encoder(encode_text(inputs)) if isinstance(inputs, list) else inputs
    stage1, stage2 = models.generate(embeddings, z, epsilon1, epsilon2)
    images = {"stage1_images": (np.asarray(stage1) + 1) / 2}
    if stage2 is not None:
        images["stage2_images"] = (np.asarray(stage2) + 1) / 2
    return images


def test_serving_needs_only_tensorflow(served):
    _, report, _ = served
    assert report["new_modules"] == []


@pytest.mark.parametrize("tag", ["s2", "s1"])
def test_string_signature_matches_keras(tiny, served, tag):
    results, _, inputs = served
    models = tiny["models2" if tag == "s2" else "models1"]
    noise = [inputs[f"{tag}_{k}"] for k in ("z", "epsilon1", "epsilon2") if f"{tag}_{k}" in inputs]
    expected = reference(models, tiny["encoder_model"], CAPTIONS, *noise)
    assert sorted(expected) == (["stage1_images", "stage2_images"] if tag == "s2" else ["stage1_images"])
    for key, value in expected.items():
        got = results[f"{tag}_noise_{key}"]
        assert got.shape == value.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, value, atol=ATOL, rtol=0)
        assert 0.0 <= got.min() and got.max() <= 1.0
        assert value.std() > 0.05  # images that vary, so that ATOL is a tight check


@pytest.mark.parametrize("tag", ["s2", "s1"])
def test_embedding_signatures_match_keras(tiny, served, tag):
    results, _, inputs = served
    models = tiny["models2" if tag == "s2" else "models1"]
    noise = [inputs[f"{tag}_{k}"] for k in ("z", "epsilon1", "epsilon2") if f"{tag}_{k}" in inputs]
    for key, value in reference(models, tiny["encoder_model"], inputs["embeddings"], *noise).items():
        np.testing.assert_allclose(results[f"{tag}_emb_noise_{key}"], value, atol=ATOL, rtol=0)
    # The seeded embedding signature draws the same noise as the seeded string signature.
    names = ("z", "epsilon1", "epsilon2") if tag == "s2" else ("z", "epsilon1")
    seeded = [results[f"{tag}_emb_seeded_{k}"] for k in names]
    for k, value in zip(names, seeded):
        np.testing.assert_array_equal(value, results[f"{tag}_seeded_{k}"])
    for key, value in reference(models, tiny["encoder_model"], inputs["embeddings"], *seeded).items():
        np.testing.assert_allclose(results[f"{tag}_emb_seeded_{key}"], value, atol=ATOL, rtol=0)


def test_embed_captions_matches_keras_encoder(tiny, served):
    from misc.text.char_cnn_rnn import encode_text

    results, _, _ = served
    expected = np.asarray(tiny["encoder_model"](encode_text(CAPTIONS)))
    np.testing.assert_allclose(results["s2_embed_embeddings"], expected, atol=ATOL, rtol=0)
    assert results["s2_empty_stage1_images"].shape == (0, 64, 64, 3)
    assert results["s2_empty_stage2_images"].shape == (0, 256, 256, 3)


@pytest.mark.parametrize("tag", ["s2", "s1"])
def test_seeded_signature(tiny, served, tag):
    results, _, _ = served
    models = tiny["models2" if tag == "s2" else "models1"]
    two_stages = tag == "s2"
    names = ("z", "epsilon1", "epsilon2") if two_stages else ("z", "epsilon1")
    # The noise it returns is `seeded_noise`, and the images are the Keras networks' on it.
    expected_noise = export.seeded_noise(SEED, len(CAPTIONS), models.z_dim, models.ef_dim, two_stages)
    noise = [results[f"{tag}_seeded_{k}"] for k in names]
    for got, want in zip(noise, expected_noise):
        np.testing.assert_array_equal(got, np.asarray(want))
    assert np.abs(noise[1]).max() <= 2.0  # truncated normal
    images = ("stage1_images", "stage2_images") if two_stages else ("stage1_images",)
    for key, value in reference(models, tiny["encoder_model"], CAPTIONS, *noise).items():
        np.testing.assert_allclose(results[f"{tag}_seeded_{key}"], value, atol=ATOL, rtol=0)
    for key in images:
        seeded = results[f"{tag}_seeded_{key}"]
        np.testing.assert_array_equal(results[f"{tag}_seeded_again_{key}"], seeded)  # same seed, same images
        np.testing.assert_array_equal(results[f"{tag}_attribute_{key}"], seeded)
        np.testing.assert_allclose(results[f"{tag}_seeded_head_{key}"], seeded[:2], atol=ATOL, rtol=0)  # batch-free
        assert np.abs(results[f"{tag}_seeded_other_{key}"] - seeded).max() > 1e-3  # other seed, other images
    assert (f"{tag}_seeded_stage2_images" in results) == two_stages


def test_signatures_and_record(tiny, served):
    _, report, _ = served
    noise2 = ["captions", "epsilon1", "epsilon2", "z"]
    assert report["s2_signatures"] == {
        "serving_default": ["captions", "seed"], "generate_with_noise": noise2,
        "from_embeddings": ["embeddings", "seed"],
        "from_embeddings_with_noise": ["embeddings", "epsilon1", "epsilon2", "z"], "embed_captions": ["captions"]}
    assert report["s1_signatures"]["generate_with_noise"] == ["captions", "epsilon1", "z"]
    assert "z needs one row" in report["s2_mismatch_error"]

    info = json.loads((tiny["out2"] / export.INFO_FILE).read_text())
    assert info == tiny["info2"]
    assert info["dataset"] == "birds" and info["stages"] == ["stageI", "stageII"]
    assert info["checkpoint"]["iteration"] == 8 and info["checkpoint"]["stage"] == "stageII"
    assert info["checkpoint"]["path"].endswith("model_8.weights.h5")
    assert info["signatures"]["serving_default"]["outputs"]["stage2_images"] == "float32 [B, 256, 256, 3]"
    assert info["signatures"]["from_embeddings"]["inputs"]["embeddings"] == "float32 [B, 16]"
    info1 = json.loads((tiny["out1"] / export.INFO_FILE).read_text())
    assert info1["stages"] == ["stageI"]
    assert "stage2_images" not in info1["signatures"]["serving_default"]["outputs"]
    assert "epsilon2" not in info1["noise"]
    # Exports are ordinary folders (mkdtemp's 0700 is not kept), with no temporary folders left.
    assert tiny["out2"].stat().st_mode & 0o055 == 0o055
    assert [p.name for p in tiny["out2"].parent.iterdir() if p.name.startswith(".")] == []


class StubArchive:
    """Stands in for the `ExportArchive` where a test is about the files around it, not the graph."""

    def __init__(self, fail: bool = False):
        self.fail = fail

    def write_out(self, path, verbose=False):
        (Path(path) / "saved_model.pb").write_bytes(b"half" if self.fail else b"stub")
        if self.fail:
            raise OSError("disk full")


def test_cli_exports_stage1_when_only_stage1_is_trained(tiny, tmp_path, monkeypatch):
    """`python -m misc.generate.export` with defaults: the newest snapshot (here Stage-I only) to models/<dataset>/saved_model.

    The graph is stubbed (the fixture's exports cover it); this checks the wiring around it.
    """
    (tmp_path / "ckt_logs" / "birds").mkdir(parents=True)
    (tmp_path / "ckt_logs" / "birds" / tiny["stage1"].name).symlink_to(tiny["stage1"], target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    built = []
    monkeypatch.setattr(export, "build_archive", lambda models, encoder=None: built.append(models) or (StubArchive(), {}))
    lines = []
    assert export.main(["--dataset", "birds", "--encoder", str(tiny["encoder"])], print_fn=lines.append) == 0
    assert not built[0].has_stage2
    out = tmp_path / "models" / "birds" / export.SAVED_MODEL_DIR
    info = json.loads((out / export.INFO_FILE).read_text())
    assert info["stages"] == ["stageI"] and info["checkpoint"]["stage"] == "stageI"
    assert info["checkpoint"]["iteration"] == 4 and info["dataset"] == "birds"
    assert (out / "saved_model.pb").read_bytes() == b"stub"
    assert any(line.startswith(f"exported {Path('models') / 'birds' / 'saved_model'} (") for line in lines)
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []


def _run_cli(argv, capsys) -> tuple[int, str]:
    from misc.cli import run_cli

    with pytest.raises(SystemExit) as exit_info:
        run_cli(export.main, argv)
    return exit_info.value.code, capsys.readouterr().err.strip()


def test_no_trained_model_names_the_command(tmp_path, capsys):
    code, err = _run_cli(["--ckt-dir", str(tmp_path / "ckt_logs"), "--dataset", "shapes"], capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert "make train-stage1 DATASET=shapes" in err


def test_no_text_encoder_names_the_command(tiny, capsys):
    missing = tiny["root"] / "elsewhere" / "birds" / "text_encoder"
    code, err = _run_cli(["--checkpoint", str(tiny["stage1"]), "--encoder", str(missing),
                          "--out", str(tiny["root"] / "never")], capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert "make text-encoder DATASET=birds" in err
    assert not (tiny["root"] / "never").exists()


def test_without_a_text_encoder_only_the_embedding_signatures_are_exported(tiny, tmp_path, monkeypatch):
    import tensorflow as tf

    monkeypatch.chdir(tmp_path)  # no models/birds/text_encoder here
    out, lines = tmp_path / "embeddings_only", []
    assert export.main(["--checkpoint", str(tiny["stage1"]), "--out", str(out)], print_fn=lines.append) == 0
    assert any(line.startswith("no text encoder in models/birds/text_encoder: exporting the signatures that take "
                               "embeddings only") for line in lines)
    info = json.loads((out / export.INFO_FILE).read_text())
    assert info["text_encoder"] is None and "without a text encoder" in info["note"]
    assert sorted(info["signatures"]) == ["from_embeddings", "from_embeddings_with_noise"]
    model = tf.saved_model.load(str(out))
    # Keras names the first endpoint `serving_default` too when none has that name.
    assert sorted(model.signatures) == ["from_embeddings", "from_embeddings_with_noise", "serving_default"]
    embeddings = tf.random.stateless_normal([2, tiny["models1"].text_dim], seed=[1, 2])
    images = model.signatures["from_embeddings"](embeddings=embeddings, seed=0)
    assert images["stage1_images"].shape == (2, 64, 64, 3)
    same = model.signatures["serving_default"](embeddings=embeddings, seed=0)
    np.testing.assert_array_equal(same["stage1_images"].numpy(), images["stage1_images"].numpy())


def test_out_that_is_not_an_export_is_refused(tiny, tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    code, err = _run_cli(["--checkpoint", str(tiny["stage1"]), "--encoder", str(tiny["encoder"]),
                          "--out", str(tmp_path)], capsys)
    assert code == 2 and "is not an earlier StackGAN export" in err
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        export.main(["--help"])
    assert exit_info.value.code == 0
    assert "--checkpoint" in capsys.readouterr().out


def _fake_export(path: Path, text: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / export.INFO_FILE).write_text(json.dumps({"format": export.FORMAT, "text": text}))


def test_failed_export_keeps_the_old_one(tiny, tmp_path, monkeypatch):
    out = tmp_path / "saved_model"
    _fake_export(out, "old")

    monkeypatch.setattr(export, "build_archive", lambda models, encoder: (StubArchive(fail=True), {}))
    with pytest.raises(OSError, match="disk full"):
        export.export_saved_model(tiny["models1"], tiny["encoder_model"], out, tiny["encoder"], print_fn=lambda _: None)
    assert json.loads((out / export.INFO_FILE).read_text())["text"] == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved_model"]


def test_check_replaceable(tmp_path):
    export.check_replaceable(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    export.check_replaceable(tmp_path / "empty")
    _fake_export(tmp_path / "old", "x")
    export.check_replaceable(tmp_path / "old")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StackGANError, match="not an earlier StackGAN export"):
        export.check_replaceable(tmp_path / "file")
