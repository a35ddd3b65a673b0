"""Tests of misc/tools/convert_original.py: the original release's checkpoints into run folders.

The fixtures are checkpoints in the release's formats (V1 single file, as `tf.raw_ops.Save` writes
it; V2 prefix) with the original's variable names, the optimiser and bookkeeping keys included,
at tiny widths. `original_variables` lays out the names and shapes from the original architecture
(hanzhanggit/StackGAN stageI/model.py, stageII/model.py) on its own, and `reference_*` rebuild the
original graphs in plain TensorFlow ops reading the weights by those names: neither uses the
project's layers or the converter's mapping.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from misc.checkpoint import read_metadata
from misc.config import load_config
from misc.errors import CheckpointError, StackGANError
from misc.generate.inference import load_generators
from misc.tools import convert_original
from tiny_data import TINY

REPO = Path(__file__).resolve().parents[1]
WIDTHS = {key: value for key, value in TINY.items() if key != "GAN.R_NUM" and key != "TRAIN.BATCH_SIZE"}
# The original's Stage-II generator has 4 residual blocks (no R_NUM key).
R_NUM = 4
GF, DF, EF, Z, T = (WIDTHS[k] for k in ("GAN.GF_DIM", "GAN.DF_DIM", "GAN.EMBEDDING_DIM", "Z_DIM", "TEXT.DIMENSION"))


def _op(name, k):
    return name if k == 0 else f"{name}_{k}"


def original_variables(gf, df, ef, z, text_dim, stage2=True) -> dict:
    """Name -> shape of the original's variables, in the order its model code creates them."""
    out = {}

    def fc(scope, k, n_in, n_out):
        out[f"{scope}/{_op('custom_fully_connected', k)}/Linear/Matrix"] = (n_in, n_out)
        out[f"{scope}/{_op('custom_fully_connected', k)}/Linear/bias"] = (n_out,)

    def bn(prefix, c):
        for var in ("mean", "variance", "gamma", "beta"):
            out[f"{prefix}/{var}"] = (c,)

    def network(scope, convs, norms):
        for k, shape in enumerate(convs):
            out[f"{scope}/{_op('custom_conv2d', k)}/{_op('custom_conv2d', k)}/w"] = shape
        for k, c in enumerate(norms):
            bn(f"{scope}/{_op('conv_batch_norm', k)}/{_op('conv_batch_norm', k)}", c)

    fc("g_net", 0, text_dim, 2 * ef)
    fc("g_net", 1, ef + z, 16 * gf * 8)
    bn("g_net/fc_batch_norm/batch_norm", 16 * gf * 8)
    network("g_net",
            [(1, 1, 8 * gf, 2 * gf), (3, 3, 2 * gf, 2 * gf), (3, 3, 2 * gf, 8 * gf), (3, 3, 8 * gf, 4 * gf),
             (1, 1, 4 * gf, gf), (3, 3, gf, gf), (3, 3, gf, 4 * gf), (3, 3, 4 * gf, 2 * gf),
             (3, 3, 2 * gf, gf), (3, 3, gf, 3)],
            [2 * gf, 2 * gf, 8 * gf, 4 * gf, gf, gf, 4 * gf, 2 * gf, gf])
    network("d_net",
            [(4, 4, 3, df), (4, 4, df, 2 * df), (4, 4, 2 * df, 4 * df), (4, 4, 4 * df, 8 * df),
             (1, 1, 8 * df, 2 * df), (3, 3, 2 * df, 2 * df), (3, 3, 2 * df, 8 * df), (1, 1, 8 * df + ef, 8 * df),
             (4, 4, 8 * df, 1)],
            [2 * df, 4 * df, 8 * df, 2 * df, 2 * df, 8 * df, 8 * df])
    fc("d_net", 0, text_dim, ef)
    if not stage2:
        return out
    fc("hr_g_net", 0, text_dim, 2 * ef)
    network("hr_g_net",
            [(3, 3, 3, gf), (4, 4, gf, 2 * gf), (4, 4, 2 * gf, 4 * gf), (3, 3, 4 * gf + ef, 4 * gf)]
            + [(3, 3, 4 * gf, 4 * gf)] * (2 * R_NUM)
            + [(3, 3, 4 * gf, 2 * gf), (3, 3, 2 * gf, gf), (3, 3, gf, gf // 2), (3, 3, gf // 2, gf // 4),
               (3, 3, gf // 4, 3)],
            [2 * gf, 4 * gf, 4 * gf] + [4 * gf] * (2 * R_NUM) + [2 * gf, gf, gf // 2, gf // 4])
    fc("hr_d_net", 0, text_dim, ef)
    network("hr_d_net",
            [(4, 4, 3, df)] + [(4, 4, df * 2 ** (i - 1), df * 2 ** i) for i in range(1, 6)]
            + [(1, 1, 32 * df, 16 * df), (1, 1, 16 * df, 8 * df), (1, 1, 8 * df, 2 * df), (3, 3, 2 * df, 2 * df),
               (3, 3, 2 * df, 8 * df), (1, 1, 8 * df + ef, 8 * df), (4, 4, 8 * df, 1)],
            [2 * df, 4 * df, 8 * df, 16 * df, 32 * df, 16 * df, 8 * df, 2 * df, 2 * df, 8 * df, 8 * df])
    return out


JUNK = ["global_step", "beta1_power", "beta2_power_3", "g_net/custom_conv2d/custom_conv2d/w/Adam",
        "hr_d_net/custom_conv2d_1/custom_conv2d_1/w/Adam_1",
        "d_net/conv_batch_norm/conv_batch_norm/d_net/conv_batch_norm/conv_batch_norm/mean/biased",
        "d_net/conv_batch_norm/conv_batch_norm/d_net/conv_batch_norm/conv_batch_norm/mean/local_step"]


def random_weights(shapes: dict, seed=0) -> dict:
    """Values of the original's initialisers' scale, with BN statistics away from 0 / 1."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in shapes.items():
        if name.endswith("/variance"):
            out[name] = rng.uniform(0.5, 2.0, shape)
        elif name.endswith(("/gamma",)):
            out[name] = rng.normal(1.0, 0.2, shape)
        elif name.endswith(("/mean", "/beta", "/bias")):
            out[name] = rng.normal(0.0, 0.2, shape)
        else:
            fan_in = int(np.prod(shape[:-1]))
            out[name] = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
    return {name: value.astype(np.float32) for name, value in out.items()}


def write_v1(path: Path, tensors: dict, junk=JUNK) -> Path:
    """A single-file V1 checkpoint, the released format (`io_ops._save` of `tf.train.Saver` V1)."""
    tensors = {**tensors, **{name: np.zeros((2,), np.float32) for name in junk}}
    names = sorted(tensors)
    tf.raw_ops.Save(filename=str(path), tensor_names=tf.constant(names), data=[tensors[n] for n in names])
    return path


def write_v2(prefix: Path, tensors: dict, junk=JUNK) -> Path:
    tensors = {**tensors, **{name: np.zeros((2,), np.float32) for name in junk}}
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=tf.constant(names), shape_and_slices=[""] * len(names),
                      tensors=[tensors[n] for n in names])
    return prefix


# --------------------------------------------------------------------------- the original graph, rebuilt
def _conv(x, w, stride=1):
    return tf.nn.conv2d(x, w, strides=stride, padding="SAME")


def _bn(x, v, prefix):
    return tf.nn.batch_normalization(x, v[f"{prefix}/mean"], v[f"{prefix}/variance"], v[f"{prefix}/beta"],
                                     v[f"{prefix}/gamma"], 1e-5)


def _leaky(x):
    return tf.maximum(x, 0.2 * x)


def _up(x):
    return tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)


def _ca(v, scope, embedding, epsilon):
    h = _leaky(embedding @ v[f"{scope}/custom_fully_connected/Linear/Matrix"]
               + v[f"{scope}/custom_fully_connected/Linear/bias"])
    return h[:, :EF] + tf.exp(h[:, EF:]) * epsilon


def reference_stage1(v, embedding, z, epsilon):
    """The original `g_net` generator in test phase (BN with its moving statistics)."""
    w = lambda k: v[f"g_net/{_op('custom_conv2d', k)}/{_op('custom_conv2d', k)}/w"]
    b = lambda x, k: _bn(x, v, f"g_net/{_op('conv_batch_norm', k)}/{_op('conv_batch_norm', k)}")
    x = tf.concat([_ca(v, "g_net", embedding, epsilon), z], 1)
    x = x @ v["g_net/custom_fully_connected_1/Linear/Matrix"] + v["g_net/custom_fully_connected_1/Linear/bias"]
    x = _bn(x, v, "g_net/fc_batch_norm/batch_norm")
    x = tf.reshape(x, (-1, 4, 4, 8 * GF))
    branch = b(_conv(tf.nn.relu(b(_conv(tf.nn.relu(b(_conv(x, w(0)), 0)), w(1)), 1)), w(2)), 2)
    x = tf.nn.relu(x + branch)
    x = b(_conv(_up(x), w(3)), 3)
    branch = b(_conv(tf.nn.relu(b(_conv(tf.nn.relu(b(_conv(x, w(4)), 4)), w(5)), 5)), w(6)), 6)
    x = tf.nn.relu(x + branch)
    x = tf.nn.relu(b(_conv(_up(x), w(7)), 7))
    x = tf.nn.relu(b(_conv(_up(x), w(8)), 8))
    return tf.tanh(_conv(_up(x), w(9)))


def reference_stage2(v, images64, embedding, epsilon):
    """The original `hr_g_net` generator in test phase."""
    w = lambda k: v[f"hr_g_net/{_op('custom_conv2d', k)}/{_op('custom_conv2d', k)}/w"]
    b = lambda x, k: _bn(x, v, f"hr_g_net/{_op('conv_batch_norm', k)}/{_op('conv_batch_norm', k)}")
    c = _ca(v, "hr_g_net", embedding, epsilon)
    x = tf.nn.relu(_conv(images64, w(0)))
    x = tf.nn.relu(b(_conv(x, w(1), 2), 0))
    x = tf.nn.relu(b(_conv(x, w(2), 2), 1))
    x = tf.concat([x, tf.tile(c[:, None, None, :], (1, 16, 16, 1))], -1)
    x = tf.nn.relu(b(_conv(x, w(3)), 2))
    for r in range(R_NUM):
        branch = b(_conv(tf.nn.relu(b(_conv(x, w(4 + 2 * r)), 3 + 2 * r)), w(5 + 2 * r)), 4 + 2 * r)
        x = tf.nn.relu(x + branch)
    for k in range(4):
        x = tf.nn.relu(b(_conv(_up(x), w(12 + k)), 11 + k))
    return tf.tanh(_conv(x, w(16)))


def reference_stage1_discriminator(v, images, embedding):
    """The original `d_net` discriminator with batch statistics replaced by the moving ones (test phase)."""
    w = lambda k: v[f"d_net/{_op('custom_conv2d', k)}/{_op('custom_conv2d', k)}/w"]
    b = lambda x, k: _bn(x, v, f"d_net/{_op('conv_batch_norm', k)}/{_op('conv_batch_norm', k)}")
    x = _leaky(_conv(images, w(0), 2))
    x = _leaky(b(_conv(x, w(1), 2), 0))
    x = b(_conv(x, w(2), 2), 1)
    x = b(_conv(x, w(3), 2), 2)
    branch = b(_conv(_leaky(b(_conv(_leaky(b(_conv(x, w(4)), 3)), w(5)), 4)), w(6)), 5)
    x = _leaky(x + branch)
    c = _leaky(embedding @ v["d_net/custom_fully_connected/Linear/Matrix"] + v["d_net/custom_fully_connected/Linear/bias"])
    x = tf.concat([x, tf.tile(c[:, None, None, :], (1, 4, 4, 1))], -1)
    x = _leaky(b(_conv(x, w(7)), 6))
    return tf.reshape(_conv(x, w(8), 4), (-1,))


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A tiny Stage-II release file (V1) with its weights, converted once."""
    root = tmp_path_factory.mktemp("release")
    weights = random_weights(original_variables(GF, DF, EF, Z, T))
    source = write_v1(root / "birds_model_1380.ckpt", weights)
    lines = []
    written = convert_original.convert(source, "birds", output_dir=str(root / "ckt_logs"), overrides=WIDTHS,
                                       print_fn=lines.append)
    return {"root": root, "weights": weights, "source": source, "written": written, "lines": lines}


def noise(n, seed=3):
    rng = np.random.default_rng(seed)
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    return f(n, T), f(n, Z), np.clip(f(n, EF), -2, 2), np.clip(f(n, EF), -2, 2)


def test_a_stage2_file_gives_a_stage2_and_a_stage1_run_folder(release):
    stage2, stage1 = release["written"]
    root = release["root"] / "ckt_logs" / "birds"
    assert stage2 == root / "original_1380" / "model_1380.weights.h5"
    assert stage1 == root / "original_1380_stageI" / "model_1380.weights.h5"
    record = read_metadata(stage2)
    # 1380 iterations at the original's 138 per epoch (8855 birds // 64).
    assert (record["stage"], record["iteration"], record["epoch"], record["optimizer_iterations"]) == ("stageII", 1380, 10, 0)
    assert read_metadata(stage1)["stage"] == "stageI"
    info = json.loads((stage2.parent / "original.json").read_text())
    assert set(info["skipped"]) == set(JUNK) and len(info["variables"]) == 54 + 79 + 59
    assert load_config(stage2.parent / "config.yml").GAN.GF_DIM == GF
    assert sorted(p.name for p in root.iterdir()) == ["original_1380", "original_1380_stageI"]


def test_converted_generators_match_the_original_graph(release):
    v = {name: tf.constant(value) for name, value in release["weights"].items()}
    embedding, z, eps1, eps2 = noise(5)
    models = load_generators(release["written"][0].parent, dataset="birds")
    stage1, stage2 = models.generate(embedding, z, eps1, eps2)
    expected1 = reference_stage1(v, embedding, z, eps1)
    expected2 = reference_stage2(v, expected1, embedding, eps2)
    assert float(tf.reduce_max(tf.abs(stage1 - expected1))) < 1e-5
    assert float(tf.reduce_max(tf.abs(stage2 - expected2))) < 1e-5
    assert float(tf.math.reduce_std(expected2)) > 0.05  # the images are not flat: the test can see a mismatch
    # The Stage-I folder's generator is the same g_net.
    stage1_only = load_generators(release["written"][1].parent, dataset="birds")
    np.testing.assert_allclose(stage1_only.generate(embedding, z, eps1)[0].numpy(), expected1.numpy(), atol=1e-5)


def test_converted_stage1_discriminator_matches_the_original_graph(release):
    from misc.checkpoint import load_checkpoint
    from stageI import trainer

    cfg = load_config(release["written"][1].parent / "config.yml")
    gan = trainer.build_gan(cfg)
    load_checkpoint(gan, release["written"][1])
    v = {name: tf.constant(value) for name, value in release["weights"].items()}
    rng = np.random.default_rng(4)
    images = np.tanh(rng.standard_normal((3, 64, 64, 3))).astype(np.float32)
    embedding = rng.standard_normal((3, T)).astype(np.float32)
    logits = gan.discriminator((images, embedding), training=False)
    assert float(tf.reduce_max(tf.abs(logits - reference_stage1_discriminator(v, images, embedding)))) < 1e-4


def test_a_v2_prefix_a_folder_and_a_stage1_file(tmp_path):
    stage1_weights = random_weights(original_variables(GF, DF, EF, Z, T, stage2=False), seed=1)
    prefix = write_v2(tmp_path / "v2" / "model_276.ckpt", stage1_weights)
    for source in (prefix, tmp_path / "v2", Path(f"{prefix}.index")):
        (written,) = convert_original.convert(source, "flowers", out=tmp_path / "out", overrides=WIDTHS,
                                              print_fn=lambda _: None)
        record = read_metadata(written)
        assert (record["stage"], record["iteration"], record["epoch"]) == ("stageI", 276, 276 // (7034 // 64))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "v2"]


def test_a_folder_of_several_checkpoints_takes_the_one_its_state_file_names(tmp_path):
    weights = random_weights(original_variables(GF, DF, EF, Z, T, stage2=False), seed=2)
    folder = tmp_path / "ckt_logs"
    folder.mkdir()
    write_v1(folder / "model_100.ckpt", weights)
    write_v2(folder / "model_200.ckpt", weights)
    with pytest.raises(CheckpointError, match=r"holds 2 checkpoints \(model_100.ckpt, model_200.ckpt, \.\.\.\); "
                                              "name one of them"):
        convert_original.read_original(folder)
    # The state file the original's Saver wrote names a path on the authors' machine.
    (folder / "checkpoint").write_text('model_checkpoint_path: "/home/han/ckt_logs/birds/model_100.ckpt"\n')
    original = convert_original.read_original(folder)
    assert (original.path, original.iteration) == (folder / "model_100.ckpt", 100)
    np.testing.assert_array_equal(original.tensors["g_net/custom_conv2d/custom_conv2d/w"],
                                  weights["g_net/custom_conv2d/custom_conv2d/w"])


@pytest.mark.parametrize("case, message", [
    ("missing", "1 expected variable(s) missing: g_net/custom_conv2d_9/custom_conv2d_9/w"),
    ("unexpected", "1 not expected: g_net/extra/w [3]"),
    ("shape", "shapes differ: hr_d_net/custom_conv2d_12/custom_conv2d_12/w expected [4, 4, 32, 1], found [4, 4, 32, 2]"),
])
def test_name_and_shape_mismatches_list_what_differs_and_write_nothing(tmp_path, case, message):
    weights = random_weights(original_variables(GF, DF, EF, Z, T))
    if case == "missing":
        del weights["g_net/custom_conv2d_9/custom_conv2d_9/w"]
    elif case == "unexpected":
        weights["g_net/extra/w"] = np.zeros(3, np.float32)
    else:
        weights["hr_d_net/custom_conv2d_12/custom_conv2d_12/w"] = np.zeros((4, 4, 32, 2), np.float32)
    source = write_v1(tmp_path / "model_2000.ckpt", weights)
    with pytest.raises(CheckpointError, match="does not match the original Stage-II networks") as err:
        convert_original.convert(source, "birds", output_dir=str(tmp_path / "out"), overrides=WIDTHS,
                                 print_fn=lambda _: None)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["not_a_checkpoint", "no_iteration", "missing_file", "missing_data", "foreign_out",
                                  "linked_out"])
def test_user_errors_are_one_line_and_write_nothing(tmp_path, case):
    out = tmp_path / "out"
    if case == "not_a_checkpoint":
        source = tmp_path / "model_10.ckpt"
        source.write_text("not a checkpoint")
        expected = "not a TensorFlow checkpoint"
    elif case == "no_iteration":
        source = write_v1(tmp_path / "model.ckpt", {})
        expected = "no iteration counter in the file name"
    elif case == "missing_file":
        source, expected = tmp_path / "nope.ckpt", "checkpoint not found"
    elif case == "missing_data":  # a V2 prefix whose data file did not arrive
        source = write_v2(tmp_path / "v2" / "model_10.ckpt", random_weights(original_variables(GF, DF, EF, Z, T, False)))
        for data in source.parent.glob("model_10.ckpt.data-*"):
            data.unlink()
        expected = "is the checkpoint complete?"
    elif case == "foreign_out":
        source = write_v1(tmp_path / "model_10.ckpt", random_weights(original_variables(GF, DF, EF, Z, T, False)))
        out.mkdir()
        (out / "mine.txt").write_text("keep me")
        expected = "exists and is not an earlier conversion"
    else:  # a link to an empty folder: the conversion would replace the link by a folder
        source = write_v1(tmp_path / "model_10.ckpt", random_weights(original_variables(GF, DF, EF, Z, T, False)))
        (tmp_path / "elsewhere").mkdir()
        out.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
        expected = "is a symbolic link"
    args = [str(source), "--dataset", "birds", "--out", str(out)] + [
        arg for key, value in WIDTHS.items() for arg in ("--set", f"{key}={value}")]
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run([sys.executable, "-m", "misc.tools.convert_original", *args], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0]
    if case == "foreign_out":
        assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    elif case == "linked_out":
        assert out.is_symlink() and not any(out.iterdir())
    else:
        assert not out.exists()


def test_full_width_names_and_shapes_are_the_releases():
    """Appendix A of the reference: every variable of the released birds Stage-II file, name and shape."""
    listed = {}
    for line in (Path(__file__).parent / "data" / "original_release_variables.txt").read_text().splitlines():
        name, shape = line.split(" ", 1)
        listed[name] = tuple(json.loads(shape))
    assert listed == original_variables(128, 64, 128, 100, 1024)  # this test's own layout agrees
    from stageI import trainer as stage1_trainer
    from stageII import trainer as stage2_trainer

    cfg = load_config(REPO / "stageII" / "cfg" / "birds.yml")
    gan1 = stage1_trainer.build_gan(load_config(REPO / "stageI" / "cfg" / "birds.yml"))
    generator1, _ = stage1_trainer.build_networks(cfg)
    gan2 = stage2_trainer.build_gan(cfg, generator1)
    ours = {**convert_original.stage1_names(gan1), **convert_original.stage2_names(gan2)}
    assert {name: tuple(variable.shape) for name, variable in ours.items()} == listed


def test_the_command_line_says_where_the_folders_went(tmp_path):
    source = write_v1(tmp_path / "birds_model_552.ckpt", random_weights(original_variables(GF, DF, EF, Z, T)))
    lines = []
    assert convert_original.main([str(source), "--dataset", "birds", "--ckt-dir", str(tmp_path / "ckt")]
                                 + [arg for key, value in WIDTHS.items() for arg in ("--set", f"{key}={value}")],
                                 print_fn=lines.append) == 0
    assert any("7 optimiser and bookkeeping variables skipped" in line for line in lines)
    assert lines[-1] == f"done: {tmp_path / 'ckt' / 'birds' / 'original_552'}"
    with pytest.raises(StackGANError, match="the original release has birds and flowers"):
        convert_original.convert(source, "shapes", print_fn=lambda _: None)


def test_a_converted_release_continues_stage2_training_with_fresh_optimisers(release, tiny_birds, tmp_path):
    from misc.checkpoint import latest_checkpoint
    from stageII import trainer

    cfg = load_config(REPO / "stageII" / "cfg" / "birds.yml", {
        **TINY, "GAN.R_NUM": R_NUM, "DATA_DIR": str(tiny_birds), "OUTPUT_DIR": str(tmp_path / "out"), "TRAIN.MAX_EPOCH": 346,
        "TRAIN.PRETRAINED_MODEL": str(release["written"][0].parent)})
    lines = []
    run_dir = trainer.train(cfg, print_fn=lines.append)
    start = next(line for line in lines if line.startswith("starting from"))
    # 18 tiny images / batch 4 = 4 iterations per epoch: iteration 1380 begins epoch 346 (1380 // 4 + 1).
    assert "iteration 1380, continuing with epoch 346" in start and "the optimiser state starts fresh" in start
    record = read_metadata(latest_checkpoint(run_dir))
    assert (record["iteration"], record["optimizer_iterations"], record["epoch"]) == (1384, 4, 346)


SERVE_FULL_WIDTH = '''
import json, sys
import numpy as np
import tensorflow as tf

before = set(sys.modules)  # what importing TensorFlow itself brings in
args = json.loads(sys.argv[1])
data = np.load(args["inputs"])
model = tf.saved_model.load(args["export"])
out = model.signatures["from_embeddings_with_noise"](
    embeddings=tf.constant(data["embeddings"]), z=tf.constant(data["z"]),
    epsilon1=tf.constant(data["epsilon1"]), epsilon2=tf.constant(data["epsilon2"]))
seeded = model.signatures["from_embeddings"](embeddings=tf.constant(data["embeddings"]), seed=tf.constant(0, tf.int64))
np.savez(args["results"], **{k: v.numpy() for k, v in out.items()}, seeded_stage2=seeded["stage2_images"].numpy())
print(json.dumps({"signatures": sorted(model.signatures),
                  "modules": sorted(m for m in set(sys.modules) - before
                                    if m.split(".")[0] in ("keras", "misc", "stageI", "stageII"))}))
'''


@pytest.mark.slow
def test_a_full_width_release_file_converts_exports_and_serves_with_tensorflow_alone(tmp_path, monkeypatch):
    """The release's birds Stage-II file at full width (V1, random weights) through `convert_original` and
    `export` on the command line; a process importing only TensorFlow turns embeddings into 64 and 256 px
    images that match the independent rebuild of the original graphs."""
    widths = dict(gf=128, df=64, ef=128, z=100, text_dim=1024)
    weights = random_weights(original_variables(**widths), seed=5)
    source = write_v1(tmp_path / "birds_model_164000.ckpt", weights)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = lambda *cmd: subprocess.run([sys.executable, *cmd], cwd=REPO, env=env, capture_output=True, text=True,
                                      timeout=900)
    converted = run("-m", "misc.tools.convert_original", str(source), "--dataset", "birds",
                    "--ckt-dir", str(tmp_path / "ckt"))
    assert converted.returncode == 0, converted.stderr[-2000:]
    run_dir = tmp_path / "ckt" / "birds" / "original_164000"
    exported = run("-m", "misc.generate.export", "--dataset", "birds", "--checkpoint", str(run_dir),
                   "--out", str(tmp_path / "export"))
    assert exported.returncode == 0, exported.stderr[-2000:]

    rng = np.random.default_rng(8)
    n = 3
    inputs = {"embeddings": rng.standard_normal((n, 1024)).astype(np.float32),
              "z": rng.standard_normal((n, 100)).astype(np.float32),
              "epsilon1": np.clip(rng.standard_normal((n, 128)), -2, 2).astype(np.float32),
              "epsilon2": np.clip(rng.standard_normal((n, 128)), -2, 2).astype(np.float32)}
    np.savez(tmp_path / "inputs.npz", **inputs)
    (tmp_path / "serve.py").write_text(SERVE_FULL_WIDTH, encoding="utf-8")
    clean = {k: v for k, v in env.items() if not k.startswith("PYTHON")}
    args = {"inputs": str(tmp_path / "inputs.npz"), "results": str(tmp_path / "results.npz"),
            "export": str(tmp_path / "export")}
    served = subprocess.run([sys.executable, "-I", str(tmp_path / "serve.py"), json.dumps(args)], cwd=tmp_path,
                            env=clean, capture_output=True, text=True, timeout=600)
    assert served.returncode == 0, served.stderr[-2000:]
    report = json.loads(served.stdout.strip().splitlines()[-1])
    assert report["modules"] == [] and "from_embeddings" in report["signatures"]

    got = np.load(tmp_path / "results.npz")
    assert got["stage1_images"].shape == (n, 64, 64, 3) and got["stage2_images"].shape == (n, 256, 256, 3)
    assert got["seeded_stage2"].shape == (n, 256, 256, 3) and np.isfinite(got["seeded_stage2"]).all()
    monkeypatch.setattr(sys.modules[__name__], "GF", 128)
    monkeypatch.setattr(sys.modules[__name__], "EF", 128)
    v = {name: tf.constant(value) for name, value in weights.items()}
    low = reference_stage1(v, inputs["embeddings"], inputs["z"], inputs["epsilon1"])
    high = reference_stage2(v, low, inputs["embeddings"], inputs["epsilon2"])
    np.testing.assert_allclose(got["stage1_images"], (low.numpy() + 1) / 2, atol=1e-4)
    np.testing.assert_allclose(got["stage2_images"], (high.numpy() + 1) / 2, atol=1e-4)


REAL_CKPT = os.environ.get("STACKGAN_ORIGINAL_CKPT")


@pytest.mark.skipif(not REAL_CKPT, reason="set STACKGAN_ORIGINAL_CKPT to a checkpoint of the original release "
                                          "(e.g. birds_model_164000.ckpt; STACKGAN_ORIGINAL_DATASET=flowers for "
                                          "flowers_model_130000.ckpt)")
def test_real_release_checkpoint(tmp_path, monkeypatch):
    """Acceptance test on a released file: it converts, and the converted generators match the original
    graphs rebuilt from the file's own variables (read here by TensorFlow's checkpoint reader alone)."""
    dataset = os.environ.get("STACKGAN_ORIGINAL_DATASET") or ("flowers" if "flower" in Path(REAL_CKPT).name else "birds")
    written = convert_original.convert(REAL_CKPT, dataset, output_dir=str(tmp_path), print_fn=lambda _: None)
    reader = tf.train.load_checkpoint(REAL_CKPT)
    scopes = {name.split("/", 1)[0] for name in reader.get_variable_to_shape_map()}
    v = {name: tf.constant(reader.get_tensor(name)) for name in reader.get_variable_to_shape_map()
         if name.split("/", 1)[0] in ("g_net", "hr_g_net")}
    ef = int(v["g_net/custom_fully_connected/Linear/Matrix"].shape[1]) // 2
    gf = int(v["g_net/custom_fully_connected_1/Linear/Matrix"].shape[1]) // (16 * 8)
    monkeypatch.setattr(sys.modules[__name__], "GF", gf)
    monkeypatch.setattr(sys.modules[__name__], "EF", ef)
    rng = np.random.default_rng(8)
    n, z_dim = 3, int(v["g_net/custom_fully_connected_1/Linear/Matrix"].shape[0]) - ef
    embedding = rng.standard_normal((n, int(v["g_net/custom_fully_connected/Linear/Matrix"].shape[0]))).astype(np.float32)
    z = rng.standard_normal((n, z_dim)).astype(np.float32)
    eps1, eps2 = (np.clip(rng.standard_normal((n, ef)), -2, 2).astype(np.float32) for _ in range(2))
    models = load_generators(written[0].parent, dataset=dataset)
    low = reference_stage1(v, embedding, z, eps1)
    if "hr_g_net" in scopes:
        stage1, stage2 = models.generate(embedding, z, eps1, eps2)
        np.testing.assert_allclose(stage2.numpy(), reference_stage2(v, low, embedding, eps2).numpy(), atol=1e-4)
    else:
        (stage1,) = models.generate(embedding, z, eps1)[:1]
    np.testing.assert_allclose(stage1.numpy(), low.numpy(), atol=1e-4)
