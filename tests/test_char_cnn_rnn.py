"""Tests of misc/text/char_cnn_rnn.py: the input encoding and the HybridCNNLong + FixedGRU encoder."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from misc.text.char_cnn_rnn import (
    ALPHABET, ALPHABET_SIZE, BYTE_TO_INDEX, DOC_LENGTH, WIDTHS, CharCnnRnn, FixedGRU, encode_text,
    encode_text_tf, sequence_lengths, text_to_indices,
)

TINY = {"conv_channels": (6, 8, 8), "rnn_dim": 5, "emb_dim": 7}
# Texts a user can hand the encoder: empty, upper case, non-ASCII, emoji, longer than 201.
AWKWARD = ["", "A RED BIRD", "a red bird", "café", "CAFÉ", "鸟", "a bird 🐦!", "tab\tand\nnewline",
           "\x00nul", "x" * 10_000, "the quick-brown fox; (jumps) [over] {the} <lazy> dog?"]


def test_alphabet_facts():
    assert len(ALPHABET) == ALPHABET_SIZE == 70
    assert DOC_LENGTH == 201
    # 1-based positions 37 and 60 are both hyphens; the later one wins, so column 36 never appears.
    assert ALPHABET[36] == ALPHABET[59] == "-"
    assert BYTE_TO_INDEX[ord("-")] == 59
    assert 36 not in set(BYTE_TO_INDEX.tolist())
    assert BYTE_TO_INDEX[ord("a")] == 0 and BYTE_TO_INDEX[ord("0")] == 26 and BYTE_TO_INDEX[ord(" ")] == 69
    assert set(range(ALPHABET_SIZE)) - set(BYTE_TO_INDEX.tolist()) == {36}


def test_encode_text_rows():
    one_hot = encode_text(["ab-", ""])
    assert one_hot.shape == (2, DOC_LENGTH, ALPHABET_SIZE) and one_hot.dtype == np.float32
    assert one_hot[0, 0, 0] == 1 and one_hot[0, 1, 1] == 1 and one_hot[0, 2, 59] == 1
    assert one_hot[0].sum() == 3 and one_hot[1].sum() == 0  # padding and empty text: zero rows


def test_upper_case_reads_as_lower_case():
    np.testing.assert_array_equal(encode_text(["A Red-Bird!"]), encode_text(["a red-bird!"]))


def test_unknown_characters_give_zero_rows_in_place():
    one_hot = encode_text(["a\tb", "aéb"])
    assert one_hot[0, 1].sum() == 0 and one_hot[0, 2, 1] == 1  # tab: one zero row, b stays third
    # é is two UTF-8 bytes, neither in the alphabet: two zero rows, as the byte-wise original did.
    assert one_hot[1, 1:3].sum() == 0 and one_hot[1, 3, 1] == 1


def test_truncation_at_doc_length():
    text = "a" * DOC_LENGTH + "b" * 50
    one_hot = encode_text([text])
    assert one_hot[0, :, 0].sum() == DOC_LENGTH and one_hot[0, :, 1].sum() == 0
    np.testing.assert_array_equal(one_hot, encode_text(["a" * DOC_LENGTH]))


def test_str_and_bytes_agree_and_single_text_is_a_batch_of_one():
    np.testing.assert_array_equal(encode_text(["café"]), encode_text([b"caf\xc3\xa9"]))
    assert encode_text("a bird").shape == (1, DOC_LENGTH, ALPHABET_SIZE)
    with pytest.raises(TypeError, match="str or bytes"):
        text_to_indices([None])


def test_numpy_and_tensorflow_encodings_are_identical():
    np.testing.assert_array_equal(encode_text(AWKWARD), encode_text_tf(AWKWARD).numpy())
    # Every byte value, once each, in one text.
    every_byte = bytes(range(256))
    np.testing.assert_array_equal(encode_text([every_byte]), encode_text_tf([every_byte]).numpy())


def test_empty_batch_encodes_to_no_rows():
    assert encode_text([]).shape == (0, DOC_LENGTH, ALPHABET_SIZE)
    assert tuple(encode_text_tf(tf.constant([], tf.string)).shape) == (0, DOC_LENGTH, ALPHABET_SIZE)


def test_sequence_lengths_of_hybrid_cnn_long():
    assert sequence_lengths() == [201, 198, 66, 63, 21, 18]


def test_layer_output_lengths():
    model = CharCnnRnn(**TINY)
    x = encode_text(["a bird"])
    after_conv1 = model.conv1(x)
    after_conv3 = model.conv3(model.pool2(model.conv2(model.pool1(after_conv1))))
    assert after_conv1.shape == (1, 198, 6) and after_conv3.shape == (1, 18, 8)


def test_full_width_parameter_count():
    # conv 70->384, 384->512, 512->512 (width 4, bias); GRU: 3 input + 3 recurrent 512x512 maps with
    # biases; linear 512 -> 1024.
    model = CharCnnRnn.from_width("full")
    model.build()
    expected = (4 * 70 * 384 + 384) + (4 * 384 * 512 + 512) + (4 * 512 * 512 + 512) \
        + 6 * (512 * 512 + 512) + (512 * 1024 + 1024)
    assert model.count_params() == expected == 4_045_184


def test_init_is_uniform_008():
    model = CharCnnRnn(**TINY)
    model.build()
    values = np.concatenate([w.numpy().ravel() for w in model.weights])
    assert values.min() >= -0.08 and values.max() <= 0.08 and values.std() > 0.03


def test_awkward_texts_give_finite_embeddings():
    model = CharCnnRnn(**TINY)
    embeddings = model(encode_text(AWKWARD)).numpy()
    assert embeddings.shape == (len(AWKWARD), 7) and np.isfinite(embeddings).all()
    np.testing.assert_allclose(embeddings[1], embeddings[2], atol=0)  # upper case = lower case
    np.testing.assert_allclose(model.embed_text(AWKWARD).numpy(), embeddings, atol=1e-6)


def _numpy_gru(layer: FixedGRU, x: np.ndarray) -> np.ndarray:
    """FixedGRU written out step by step from its definition."""
    units = layer.units
    w_u, w_r, w = np.split(layer.input_kernel.numpy(), 3, axis=1)
    b_u, b_r, b = np.split(layer.input_bias.numpy(), 3)
    u_u, u_r = np.split(layer.gate_kernel.numpy(), 2, axis=1)
    c_u, c_r = np.split(layer.gate_bias.numpy(), 2)
    u, c = layer.candidate_kernel.numpy(), layer.candidate_bias.numpy()
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    h = np.tanh(x[:, 0] @ w + b)
    states = [h]
    for t in range(1, x.shape[1]):
        update = sigmoid(x[:, t] @ w_u + b_u + h @ u_u + c_u)
        reset = sigmoid(x[:, t] @ w_r + b_r + h @ u_r + c_r)
        candidate = np.tanh(x[:, t] @ w + b + (reset * h) @ u + c)
        h = update * candidate + (1 - update) * h
        states.append(h)
    assert states[0].shape[-1] == units
    return np.stack(states, axis=1)


def test_fixed_gru_matches_its_definition():
    layer = FixedGRU(4)
    x = np.random.default_rng(0).standard_normal((3, 6, 5)).astype(np.float32)
    out = layer(x).numpy()
    w = layer.input_kernel.numpy()[:, 8:]
    b = layer.input_bias.numpy()[8:]
    np.testing.assert_allclose(out[:, 0], np.tanh(x[:, 0] @ w + b), atol=1e-6)  # step 1: tanh(Wx + b)
    np.testing.assert_allclose(out, _numpy_gru(layer, x), atol=1e-5)


def test_embedding_is_linear_map_of_mean_hidden_state():
    model = CharCnnRnn(**TINY)
    x = encode_text(["a small red bird"])
    embedding = model(x).numpy()
    hidden = model.gru(model.conv3(model.pool2(model.conv2(model.pool1(model.conv1(x)))))).numpy()
    expected = hidden.mean(axis=1) @ model.projection.kernel.numpy() + model.projection.bias.numpy()
    np.testing.assert_allclose(embedding, expected, atol=1e-5)


def test_fixed_gru_needs_static_steps():
    with pytest.raises(ValueError, match="static number of time steps"):
        FixedGRU(3).build((None, None, 4))


def test_widths_and_bad_width():
    assert WIDTHS["full"]["conv_channels"] == (384, 512, 512) and WIDTHS["full"]["emb_dim"] == 1024
    small = CharCnnRnn.from_width("small")
    assert small.emb_dim == 1024 and small.init_range == pytest.approx(0.16)
    assert CharCnnRnn.from_config(small.get_config()).init_range == pytest.approx(0.16)
    assert CharCnnRnn.from_width("full").init_range == pytest.approx(0.08)
    with pytest.raises(ValueError, match="unknown width"):
        CharCnnRnn.from_width("huge")
    with pytest.raises(ValueError, match="three widths"):
        CharCnnRnn(conv_channels=(4, 4))


def test_config_and_keras_save_round_trip(tmp_path):
    model = CharCnnRnn(**TINY, name="enc")
    x = encode_text(["a bird", ""])
    y = model(x).numpy()
    clone = CharCnnRnn.from_config(model.get_config())
    assert clone.conv_channels == (6, 8, 8) and clone.rnn_dim == 5 and clone.emb_dim == 7
    model.save(tmp_path / "enc.keras")
    loaded = keras.models.load_model(tmp_path / "enc.keras")
    assert isinstance(loaded, CharCnnRnn)
    np.testing.assert_allclose(loaded(x).numpy(), y, atol=1e-6)
