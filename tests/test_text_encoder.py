"""Tests of misc/text/encoder.py: DS-SJE loss and training, embedding files, retrieval, command line."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from misc.text.char_cnn_rnn import CharCnnRnn, indices_to_one_hot
from misc.cli import run_cli
from misc.datasets import load_split
from misc.errors import CheckpointError, DataError
from misc.pickle_io import load_pickle
from misc.datasets import CaptionedSplit, load_captioned_split
from misc.text.encoder import (
    DONE_FILE, EMBEDDINGS_FILE, IMAGE_ENCODER_FILE, OPTIONS_FILE, TEXT_ENCODER_FILE, ImageEncoder,
    JointBatchSampler, ds_sje_loss, embed_sentences, format_retrieval, learning_rate_schedule,
    load_text_encoder, main, make_train_step, retrieval, train,
)

REPO = Path(__file__).resolve().parents[1]


def test_ds_sje_loss_hand_computed():
    images = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    texts = np.array([[1, 0], [0, 1], [0, 0]], np.float32)
    # S = [[1,0,0],[0,1,0],[1,1,0]], diagonal [1,1,0].
    # image -> text: rows 0 and 1 give 0; row 2: (1+1-0) + (1+1-0) = 4.
    # text -> image: column 0: (1+0-1) + (1+1-1) = 1; column 1: 0 + 1 = 1; column 2: 1 + 1 = 2.
    assert float(ds_sje_loss(images, texts)) == pytest.approx((4 + 4) / 9)


def test_ds_sje_loss_matches_loops():
    rng = np.random.default_rng(1)
    images, texts = rng.standard_normal((2, 5, 3)).astype(np.float32)
    scores = images @ texts.T
    k = len(scores)
    expected = sum(max(0, 1 + scores[i, j] - scores[i, i]) + max(0, 1 + scores[j, i] - scores[i, i])
                   for i in range(k) for j in range(k) if j != i) / (k * k)
    assert float(ds_sje_loss(images, texts)) == pytest.approx(expected, rel=1e-5)


def test_learning_rate_decays_by_098_per_epoch_of_classes():
    schedule = learning_rate_schedule(7e-4, steps_per_epoch=10)
    rates = [float(schedule(step)) for step in (0, 9, 10, 25)]
    assert rates == pytest.approx([7e-4, 7e-4, 7e-4 * 0.98, 7e-4 * 0.98 ** 2])


def _tiny_split(n_classes=4, per_class=3, seed=0) -> CaptionedSplit:
    rng = np.random.default_rng(seed)
    n = n_classes * per_class
    return CaptionedSplit(
        data_dir=Path("mem"), split="train",
        images=rng.integers(0, 256, (n, 76, 76, 3), dtype=np.uint8),
        filenames=[f"{i // per_class:03d}.C/img_{i}" for i in range(n)],
        class_ids=np.arange(n) // per_class + 1,
        captions=[[f"caption {c} of image {i}".encode() for c in range(10)] for i in range(n)])


def test_sampler_draws_distinct_classes_deterministically():
    data = _tiny_split()
    batches = [JointBatchSampler(data, batch_classes=40, seed=3).next_batch() for _ in range(2)]
    images, columns = batches[0]
    assert images.shape == (4, 64, 64, 3) and columns.shape == (4, 201)  # K capped at 4 classes
    assert images.min() >= -1 and images.max() <= 1
    np.testing.assert_array_equal(batches[0][1], batches[1][1])  # same seed, same batch
    sampler = JointBatchSampler(data, batch_classes=3, seed=0)
    for _ in range(5):
        picks, caption_ids = sampler.sample()
        assert len(set(data.class_ids[picks])) == 3  # one image from each of 3 distinct classes
        assert caption_ids.min() >= 0 and caption_ids.max() < 10


def test_sampler_needs_two_classes():
    with pytest.raises(DataError, match="at least 2 classes"):
        JointBatchSampler(_tiny_split(n_classes=1))


def test_one_training_step_lowers_the_loss():
    keras.utils.set_random_seed(0)
    text_encoder = CharCnnRnn(conv_channels=(8, 8, 8), rnn_dim=8, emb_dim=16)
    image_encoder = ImageEncoder(channels=4, emb_dim=16)
    text_encoder.build()
    image_encoder.build()
    optimizer = keras.optimizers.RMSprop(1e-2, rho=0.99, epsilon=1e-8)
    step = make_train_step(text_encoder, image_encoder, optimizer)
    images, columns = JointBatchSampler(_tiny_split(), seed=0).next_batch()

    def loss():
        # float64: at these tiny widths the scores are small and a step changes the loss by ~1e-6.
        image_features = np.float64(image_encoder(images))
        return float(ds_sje_loss(image_features, np.float64(text_encoder(indices_to_one_hot(columns)))))

    before = loss()
    step.python_function(images, columns)  # eagerly: the same update without the tracing time
    assert loss() < before


def test_caption_file_with_too_few_lines(tmp_path, tiny_birds):
    data_dir = shutil.copytree(tiny_birds, tmp_path / "birds")
    first = load_pickle(data_dir / "train" / "filenames.pickle")[0]
    (data_dir / "text_c10" / f"{first}.txt").write_text("only one caption\n")
    with pytest.raises(DataError, match="has 1 captions, expected 10"):
        load_captioned_split(data_dir, "train")


def test_missing_split_file(tmp_path):
    with pytest.raises(DataError, match="filenames.pickle: file not found"):
        load_captioned_split(tmp_path, "train")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_birds):
    """A tiny birds copy with an encoder trained for a few steps and its embeddings written."""
    root = tmp_path_factory.mktemp("text_encoder")
    data_dir = shutil.copytree(tiny_birds, root / "birds")
    out = root / "encoder"
    summary = train(data_dir, out, steps=3, batch_classes=40, width="small", seed=0, progress=False)
    return data_dir, out, summary


def test_train_writes_encoders_options_and_embeddings(trained):
    data_dir, out, summary = trained
    assert (out / TEXT_ENCODER_FILE).is_file() and (out / IMAGE_ENCODER_FILE).is_file()
    assert (out / DONE_FILE).read_text().splitlines()[0].startswith("train: ")
    options = json.loads((out / OPTIONS_FILE).read_text())
    assert options["steps"] == 3 and options["batch_classes"] == 3 and options["width"] == "small"
    assert set(summary["embeddings"]) == {"train", "test"}
    assert np.isfinite(options["loss_history"][-1]["loss"])


def test_embeddings_pickle_round_trips_through_the_cub_loader(trained):
    data_dir, out, _ = trained
    path = data_dir / "train" / EMBEDDINGS_FILE
    assert path.read_bytes()[:2] == b"\x80\x02"  # pickle protocol 2, as the original files
    split = load_split(data_dir, "train", 76, text_dim=1024)
    assert split.embeddings.shape == (len(split), 10, 1024) and split.embeddings.dtype == np.float32
    # Row i, column c is the embedding of caption c of image i, as the GAN's sampler assumes.
    encoder = load_text_encoder(out)
    expected = embed_sentences(encoder, [split.caption(1, c) for c in range(10)])
    np.testing.assert_allclose(split.embeddings[1], expected, atol=1e-5)
    assert load_split(data_dir, "test", 76, text_dim=1024).embeddings.shape[1:] == (10, 1024)


def test_embed_sentences_of_awkward_texts(trained):
    encoder = load_text_encoder(trained[1])
    texts = ["", "A RED BIRD", "a red bird", "café", "鸟", "🐦🐦", "x" * 10_000]
    embeddings = embed_sentences(encoder, texts)
    assert embeddings.shape == (7, 1024) and np.isfinite(embeddings).all()
    np.testing.assert_array_equal(embeddings[1], embeddings[2])


def test_retrieval_numbers_and_chance(trained):
    data_dir, out, _ = trained
    result = retrieval(out, data_dir, "test", progress=False)
    n = result["images"]
    assert result["queries"] == 10 * n and result["classes"] == 2
    assert result["chance_top1"] == pytest.approx(1 / n) and result["chance_top5"] == pytest.approx(5 / n)
    assert result["chance_class_top1"] == pytest.approx(0.5)
    assert 0 <= result["top1"] <= result["top5"] <= 1
    assert "top-5 (own image)" in format_retrieval(result)


def test_cli_embed_and_retrieval(trained, tmp_path, capsys):
    data_dir, out, _ = trained
    captions = tmp_path / "captions.txt"
    captions.write_text("a small bird\n\nA LARGE BIRD\n")
    target = tmp_path / "emb.pickle"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, ["embed", "--encoder", str(out), "--captions", str(captions), "--out", str(target),
                       "one more"])
    assert exit_info.value.code == 0
    assert load_pickle(target).shape == (3, 1024)
    assert "wrote 3 x 1024 embeddings" in capsys.readouterr().out
    json_path = tmp_path / "r.json"
    with pytest.raises(SystemExit):
        run_cli(main, ["retrieval", "--encoder", str(out), "--data_dir", str(data_dir), "--json", str(json_path)])
    assert "top-1 (own image)" in capsys.readouterr().out
    assert json.loads(json_path.read_text())["split"] == "test"


def test_missing_encoder_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, ["embed", "--encoder", str(tmp_path / "nowhere"), "a bird"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "misc.text.encoder train" in err



def test_retrieval_needs_the_image_encoder(trained, tmp_path):
    shutil.copy(trained[1] / TEXT_ENCODER_FILE, tmp_path / TEXT_ENCODER_FILE)
    with pytest.raises(CheckpointError, match="image_encoder.keras: no trained image encoder"):
        retrieval(tmp_path, trained[0])


def test_damaged_encoder_file(tmp_path):
    (tmp_path / TEXT_ENCODER_FILE).write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="cannot load the text encoder"):
        load_text_encoder(tmp_path)


def test_embed_needs_sentences(trained, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, ["embed", "--encoder", str(trained[1])])
    assert exit_info.value.code == 2 and "nothing to embed" in capsys.readouterr().err


def test_command_line_process_reports_missing_encoder(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "misc.text.encoder", "embed", "--encoder",
                           str(tmp_path / "none"), "a bird"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.startswith("error:")]) == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error:")


@pytest.mark.slow
def test_default_training_on_shapes_retrieves_above_chance(tmp_path):
    """The `make text-encoder` setting: small width, default steps, on the shapes dataset (minutes)."""
    from misc.data.shapes import generate_shapes

    data_dir = generate_shapes(tmp_path / "shapes", seed=0, progress=False)
    train(data_dir, tmp_path / "encoder", progress=False)
    result = retrieval(tmp_path / "encoder", data_dir, "test", progress=False)
    assert result["top1"] > 5 * result["chance_top1"]
    assert result["top5"] > 5 * result["chance_top5"]
    assert result["class_top1"] > 2 * result["chance_class_top1"]
