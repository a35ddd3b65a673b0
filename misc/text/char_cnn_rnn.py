"""The char-CNN-RNN text encoder of Reed et al. (CVPR 2016) that made StackGAN's embeddings.

Port of reedscot/icml2016 `modules/HybridCNNLong.lua` + `modules/FixedGRU.lua` with the input
encoding of reedscot/cvpr2016 `util.lua` (reedscot/cvpr2016 `modules/`), and of the flowers
variant, reedscot/cvpr2016 `modules/HybridCNN.lua` + `modules/FixedRNN.lua`. The birds encoder that
produced `char-CNN-RNN-embeddings.pickle` is, per sequence position and channel:

    one-hot 201 x 70
    -> conv width 4 (70 -> 384) + ReLU            198 x 384
    -> max-pool 3/3                                66 x 384
    -> conv width 4 (384 -> 512) + ReLU            63 x 512
    -> max-pool 3/3                                21 x 512
    -> conv width 4 (512 -> 512) + ReLU            18 x 512
    -> FixedGRU over the 18 steps, hidden 512      18 x 512
    -> mean over time, linear 512 -> 1024          1024

The flowers encoder adds a third max-pool 3/2 after the last convolution (18 -> 8 steps,
`third_pool=True`) and replaces the GRU by Reed's ReLU RNN (`rnn_kind="relu"`, `FixedRNN`).

Input encoding. The original worked on bytes (Lua strings): each byte of the text up to the 201st
becomes one row, set at the byte's alphabet position, or left all-zero when the byte is not in the
alphabet; shorter texts are zero-padded at the end. This port does the same on the UTF-8 bytes of
the text, with one documented choice: ASCII upper-case letters are read as lower case. The
alphabet has no upper case; the encoder was trained on lower-cased text, while the original demo
fed raw text, so that "A" became an unknown character there. Every byte of a non-ASCII character
(each of the two bytes of "é", the three of "鸟") is outside the alphabet and gives a zero row.
`exact_demo=True` reproduces the demo instead (hanzhanggit/StackGAN `demo/get_embedding.lua`): no
lower-casing, an upper-case letter gives a zero row. A `CharCnnRnn` carries its own choice
(`exact_demo_encoding`, saved in its config) and `CharCnnRnn.encode_texts` applies it.

`encode_text` (NumPy) and `encode_text_tf` (TensorFlow string ops, usable inside a SavedModel that
takes raw strings) share the 256-entry byte tables and give identical tensors.
"""
from __future__ import annotations

from typing import Sequence, Union

import keras
import numpy as np
import tensorflow as tf
from keras import ops

# reedscot/cvpr2016 `util.lua` alphabet, 1-based positions 1..70. The hyphen appears twice (37 and
# 60); the character -> index table is filled in order, so the later position wins and 37 is never
# produced. The one-hot width stays 70.
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-,;.!?:'\"/\\|_@#$%^&*~`+-=<>()[]{} "
ALPHABET_SIZE = 70
# Characters (bytes) per document: the 201 x 70 one-hot input of HybridCNNLong.
DOC_LENGTH = 201
# Torch training initialised every parameter uniformly in [-0.08, 0.08] (train_sje_hybrid.lua).
INIT_RANGE = 0.08
# HybridCNNLong: temporal convolutions of width 4 and two max-pools of width 3, stride 3.
CONV_WIDTH = 4
POOL_WIDTH = 3
# HybridCNN (the flowers encoder) pools a third time, width 3, stride 2: 18 -> 8 steps.
THIRD_POOL_STRIDE = 2
# Recurrences after the convolutions: Reed's FixedGRU (birds) and FixedRNN, a ReLU RNN (flowers).
RNN_KINDS = ("gru", "relu")
# The widths of the released birds encoder (`..._hybrid_gru18_a1_c512_...`) and a small variant
# for configurations that must train on a CPU in minutes. The small one is a quarter as wide, so
# its init range is 0.08 * sqrt(4): with 0.08 the signal shrinks layer by layer to the point where
# all texts start with nearly the same embedding (2 % variation across captions against 16 % for
# the full width; 13 % with 0.16), and training starts very slowly.
WIDTHS = {
    "full": {"conv_channels": (384, 512, 512), "rnn_dim": 512, "emb_dim": 1024, "init_range": INIT_RANGE},
    "small": {"conv_channels": (96, 128, 128), "rnn_dim": 128, "emb_dim": 1024, "init_range": 2 * INIT_RANGE},
}

assert len(ALPHABET) == ALPHABET_SIZE


def _byte_table(lower_case: bool) -> np.ndarray:
    """0-based alphabet column for every byte value, -1 where the byte gives a zero row."""
    table = np.full(256, -1, dtype=np.int32)
    for position, char in enumerate(ALPHABET):
        table[ord(char)] = position  # later duplicates overwrite earlier ones, as in the original
    if lower_case:
        for upper in range(ord("A"), ord("Z") + 1):
            table[upper] = table[upper + ord("a") - ord("A")]
    return table


# The port's default: ASCII upper case read as lower case.
BYTE_TO_INDEX = _byte_table(lower_case=True)
# The original demo's table (get_embedding.lua): bytes as they are, upper case gives a zero row.
EXACT_BYTE_TO_INDEX = _byte_table(lower_case=False)


def byte_table(exact_demo: bool = False) -> np.ndarray:
    """The byte -> alphabet column table: the demo's exact one, or the default that lower-cases."""
    return EXACT_BYTE_TO_INDEX if exact_demo else BYTE_TO_INDEX


Text = Union[str, bytes]


def _as_bytes(text: Text) -> bytes:
    if isinstance(text, bytes):
        return text
    if isinstance(text, str):
        # 'surrogatepass' so that a lone surrogate (possible in a Python str) is encoded instead of
        # raising; its bytes are non-ASCII and become zero rows like any other.
        return text.encode("utf-8", "surrogatepass")
    raise TypeError(f"a text must be str or bytes, got {type(text).__name__}")


def _as_list(texts: Text | Sequence[Text]) -> list:
    return [texts] if isinstance(texts, (str, bytes)) else list(texts)


def text_to_indices(texts: Text | Sequence[Text], exact_demo: bool = False) -> np.ndarray:
    """Alphabet columns of each byte of each text (the compact form of `encode_text`).

    Args:
      texts: a list of texts (str, encoded as UTF-8, or bytes); a single text counts as a list of one.
      exact_demo: encode as the original demo did (upper case gives a zero row) instead of
        reading ASCII upper case as lower case.

    Returns:
      int8 array (B, DOC_LENGTH): the 0-based alphabet column of each byte, -1 for a zero row
      (byte not in the alphabet, or padding after the end of the text).
    """
    texts = _as_list(texts)
    table = byte_table(exact_demo)
    out = np.full((len(texts), DOC_LENGTH), -1, dtype=np.int8)
    for row, text in enumerate(texts):
        raw = np.frombuffer(_as_bytes(text)[:DOC_LENGTH], dtype=np.uint8)
        out[row, : len(raw)] = table[raw]
    return out


def indices_to_one_hot(indices: np.ndarray) -> np.ndarray:
    """One-hot rows (float32, width ALPHABET_SIZE) for alphabet columns; -1 gives a zero row."""
    indices = np.asarray(indices)
    eye = np.concatenate([np.eye(ALPHABET_SIZE, dtype=np.float32), np.zeros((1, ALPHABET_SIZE), np.float32)])
    return eye[np.where(indices < 0, ALPHABET_SIZE, indices)]


def encode_text(texts: Text | Sequence[Text], exact_demo: bool = False) -> np.ndarray:
    """Port of cvpr2016 `util.lua` text -> one-hot, with ASCII upper case read as lower case.

    Args:
      texts: a list of texts (str or bytes); a single text counts as a list of one.
      exact_demo: no lower-casing, as hanzhanggit/StackGAN `demo/get_embedding.lua`: an upper-case
        letter gives a zero row.

    Returns:
      float32 array (B, DOC_LENGTH, ALPHABET_SIZE). Bytes outside the alphabet (including every
      byte of a non-ASCII character) and padding are zero rows; text past DOC_LENGTH bytes is
      dropped; an empty text is all zeros (and still gets a valid embedding).
    """
    return indices_to_one_hot(text_to_indices(texts, exact_demo))


def encode_text_tf(texts: tf.Tensor | Sequence[Text], exact_demo: bool = False) -> tf.Tensor:
    """`encode_text` with TensorFlow string ops, so a graph (e.g. a SavedModel) can take raw strings.

    Args:
      texts: a 1-D string tensor (or list of texts).
      exact_demo: as in `encode_text` (a Python bool, fixed when a graph is traced).

    Returns:
      float32 tensor (B, DOC_LENGTH, ALPHABET_SIZE), identical to `encode_text` on the same texts.
    """
    texts = tf.convert_to_tensor(texts, dtype=tf.string)
    texts = tf.reshape(texts, [-1])
    head = tf.strings.substr(texts, 0, DOC_LENGTH, unit="BYTE")
    # Pad every text with NUL bytes to exactly DOC_LENGTH bytes; NUL is not in the alphabet, so
    # padding and a literal NUL both give zero rows, as in `encode_text`.
    padded = tf.strings.substr(tf.strings.join([head, b"\0" * DOC_LENGTH]), 0, DOC_LENGTH, unit="BYTE")
    # decode_raw gives shape [0, 0] for an empty batch; the reshape keeps DOC_LENGTH columns.
    codes = tf.reshape(tf.cast(tf.io.decode_raw(padded, tf.uint8), tf.int32), [-1, DOC_LENGTH])
    columns = tf.gather(tf.constant(byte_table(exact_demo)), codes)
    one_hot = tf.one_hot(columns, ALPHABET_SIZE, dtype=tf.float32)  # -1 gives an all-zero row
    return tf.ensure_shape(one_hot, [None, DOC_LENGTH, ALPHABET_SIZE])


def _uniform_init(init_range: float) -> keras.initializers.Initializer:
    return keras.initializers.RandomUniform(-init_range, init_range)


class _FixedSteps(keras.layers.Layer):
    """What `FixedGRU` and `FixedRNN` share: a hidden size, the uniform init, a static step count."""

    def __init__(self, units: int, init_range: float = INIT_RANGE, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.init_range = float(init_range)

    def _check_steps(self, input_shape) -> None:
        if input_shape[1] is None:
            raise ValueError(f"{type(self).__name__} needs a static number of time steps")

    def _weight(self, shape, name):
        return self.add_weight(shape=shape, initializer=_uniform_init(self.init_range), name=name)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "init_range": self.init_range}


@keras.saving.register_keras_serializable(package="stackgan")
class FixedGRU(_FixedSteps):
    """Port of reedscot/icml2016 `modules/FixedGRU.lua`: a GRU over a fixed number of steps.

    Step 1 has no recurrence: h_1 = tanh(W x_1 + b). Later steps:
      u = sigmoid(W_u x_t + b_u + U_u h + c_u)          (update gate)
      r = sigmoid(W_r x_t + b_r + U_r h + c_r)          (reset gate)
      h~ = tanh(W x_t + b + U (r * h) + c)              (candidate)
      h = u * h~ + (1 - u) * h
    Each linear map is a Torch `nn.Linear` with its own bias; all are shared over time. The step-1
    map is the candidate's input map (W, b). Every parameter starts U(-init_range, init_range).

    Args:
      units: hidden size (512 in the birds encoder).
      init_range: half-width of the uniform init (0.08 in the original training).

    Call args:
      inputs: (B, T, D) with a static number of steps T (18 in the birds encoder).

    Returns:
      all hidden states, (B, T, units).
    """

    def build(self, input_shape):
        self._check_steps(input_shape)
        in_dim, units, weight = input_shape[-1], self.units, self._weight

        # Input maps for (update, reset, candidate) side by side; recurrent maps for the gates side
        # by side; the candidate's recurrent map apart, because it acts on r * h rather than h.
        self.input_kernel = weight((in_dim, 3 * units), "input_kernel")
        self.input_bias = weight((3 * units,), "input_bias")
        self.gate_kernel = weight((units, 2 * units), "gate_kernel")
        self.gate_bias = weight((2 * units,), "gate_bias")
        self.candidate_kernel = weight((units, units), "candidate_kernel")
        self.candidate_bias = weight((units,), "candidate_bias")

    def call(self, inputs):
        units = self.units
        projected = ops.matmul(inputs, self.input_kernel) + self.input_bias  # (B, T, 3 units)
        x_update = projected[..., :units]
        x_reset = projected[..., units : 2 * units]
        x_candidate = projected[..., 2 * units :]
        hidden = ops.tanh(x_candidate[:, 0])
        states = [hidden]
        for t in range(1, inputs.shape[1]):
            gates = ops.matmul(hidden, self.gate_kernel) + self.gate_bias
            update = ops.sigmoid(x_update[:, t] + gates[:, :units])
            reset = ops.sigmoid(x_reset[:, t] + gates[:, units:])
            candidate = ops.tanh(
                x_candidate[:, t] + ops.matmul(reset * hidden, self.candidate_kernel) + self.candidate_bias
            )
            hidden = update * candidate + (1.0 - update) * hidden
            states.append(hidden)
        return ops.stack(states, axis=1)


@keras.saving.register_keras_serializable(package="stackgan")
class FixedRNN(_FixedSteps):
    """Port of reedscot/cvpr2016 `modules/FixedRNN.lua`: a ReLU RNN over a fixed number of steps.

    Step 1 has no recurrence: r_1 = ReLU(W x_1 + b); later steps r_t = ReLU(W x_t + b + U r_{t-1} + c).
    W, b (i2h) and U, c (h2h) are Torch `nn.Linear` maps shared over time. Every parameter starts
    U(-init_range, init_range).

    Args:
      units: hidden size (cnn_dim in the original).
      init_range: half-width of the uniform init (0.08 in the original training).

    Call args:
      inputs: (B, T, D) with a static number of steps T (8 in the flowers encoder).

    Returns:
      all hidden states, (B, T, units); the original's output is their mean (`CharCnnRnn` takes it).
    """

    def build(self, input_shape):
        self._check_steps(input_shape)
        weight = self._weight

        self.input_kernel = weight((input_shape[-1], self.units), "input_kernel")
        self.input_bias = weight((self.units,), "input_bias")
        self.recurrent_kernel = weight((self.units, self.units), "recurrent_kernel")
        self.recurrent_bias = weight((self.units,), "recurrent_bias")

    def call(self, inputs):
        projected = ops.matmul(inputs, self.input_kernel) + self.input_bias  # (B, T, units)
        hidden = ops.relu(projected[:, 0])
        states = [hidden]
        for t in range(1, inputs.shape[1]):
            hidden = ops.relu(projected[:, t] + ops.matmul(hidden, self.recurrent_kernel) + self.recurrent_bias)
            states.append(hidden)
        return ops.stack(states, axis=1)


def sequence_lengths(doc_length: int = DOC_LENGTH, third_pool: bool = False) -> list[int]:
    """Time steps after each stage: [201, 198, 66, 63, 21, 18] for HybridCNNLong, then 8 with the
    third pool of HybridCNN."""
    lengths = [doc_length]
    for stage in ("conv", "pool", "conv", "pool", "conv") + (("pool3",) if third_pool else ()):
        prev = lengths[-1]
        if stage == "conv":
            lengths.append(prev - CONV_WIDTH + 1)
        else:
            stride = THIRD_POOL_STRIDE if stage == "pool3" else POOL_WIDTH
            lengths.append((prev - POOL_WIDTH) // stride + 1)
    return lengths


@keras.saving.register_keras_serializable(package="stackgan")
class CharCnnRnn(keras.Model):
    """Port of reedscot/icml2016 `HybridCNNLong.cnn` with `FixedGRU` and averaged hidden states, and
    of reedscot/cvpr2016 `HybridCNN.cnn` with `FixedRNN` (`third_pool=True, rnn_kind="relu"`).

    The birds encoder StackGAN's embeddings came from (`lm_sje_nc4_cub_hybrid_gru18_a1_c512`):
    three width-4 temporal convolutions with ReLU and two 3/3 max-pools (201 -> 18 steps), a GRU
    over the 18 steps, the mean of its hidden states, and a linear map to `emb_dim`. The original's
    dropout before the linear map had rate 0 and is left out. Every parameter starts
    U(-init_range, init_range), 0.08 in the original training.

    Args:
      conv_channels: output channels of the three convolutions; the last is the original's cnn_dim.
      rnn_dim: hidden size of the recurrence (the original used cnn_dim).
      emb_dim: embedding size (1024).
      init_range: half-width of the uniform init of every parameter.
      third_pool: add HybridCNN's third max-pool (width 3, stride 2; 18 -> 8 steps).
      rnn_kind: "gru" (`FixedGRU`, birds) or "relu" (`FixedRNN`, flowers).
      exact_demo_encoding: the texts this encoder expects are encoded as the original demo did (no
        lower-casing; see `encode_text`). Kept in the config; `encode_texts` and `embed_text` use it.

    Call args:
      inputs: one-hot text, float32 (B, DOC_LENGTH, ALPHABET_SIZE), as made by `encode_text`.

    Returns:
      embeddings, float32 (B, emb_dim).
    """

    def __init__(self, conv_channels: Sequence[int] = (384, 512, 512), rnn_dim: int = 512, emb_dim: int = 1024,
                 init_range: float = INIT_RANGE, third_pool: bool = False, rnn_kind: str = "gru",
                 exact_demo_encoding: bool = False, **kwargs):
        super().__init__(**kwargs)
        if len(conv_channels) != 3:
            raise ValueError(f"conv_channels needs three widths, got {tuple(conv_channels)}")
        if rnn_kind not in RNN_KINDS:
            raise ValueError(f"unknown rnn_kind {rnn_kind!r}; choose one of {list(RNN_KINDS)}")
        self.conv_channels = tuple(int(c) for c in conv_channels)
        self.rnn_dim = int(rnn_dim)
        self.emb_dim = int(emb_dim)
        self.init_range = float(init_range)
        self.third_pool = bool(third_pool)
        self.rnn_kind = rnn_kind
        self.exact_demo_encoding = bool(exact_demo_encoding)

        def conv(channels, name):
            return keras.layers.Conv1D(
                channels, CONV_WIDTH, padding="valid", activation="relu", name=name,
                kernel_initializer=_uniform_init(init_range), bias_initializer=_uniform_init(init_range),
            )

        self.conv1 = conv(self.conv_channels[0], "conv1")
        self.pool1 = keras.layers.MaxPooling1D(POOL_WIDTH, POOL_WIDTH, name="pool1")
        self.conv2 = conv(self.conv_channels[1], "conv2")
        self.pool2 = keras.layers.MaxPooling1D(POOL_WIDTH, POOL_WIDTH, name="pool2")
        self.conv3 = conv(self.conv_channels[2], "conv3")
        # Optional layers exist only when used, so that a saved birds encoder keeps its layout.
        if self.third_pool:
            self.pool3 = keras.layers.MaxPooling1D(POOL_WIDTH, THIRD_POOL_STRIDE, name="pool3")
        if rnn_kind == "gru":
            self.gru = FixedGRU(self.rnn_dim, init_range, name="gru")
        else:
            self.rnn = FixedRNN(self.rnn_dim, init_range, name="rnn")
        self.projection = keras.layers.Dense(
            self.emb_dim, name="projection",
            kernel_initializer=_uniform_init(init_range), bias_initializer=_uniform_init(init_range),
        )

    @classmethod
    def from_width(cls, width: str = "full", **kwargs) -> "CharCnnRnn":
        """The encoder at a named width from `WIDTHS` ('full' = the original birds encoder)."""
        if width not in WIDTHS:
            raise ValueError(f"unknown width {width!r}; choose one of {sorted(WIDTHS)}")
        return cls(**WIDTHS[width], **kwargs)

    def build(self, input_shape=(None, DOC_LENGTH, ALPHABET_SIZE)):
        self.call(keras.KerasTensor(tuple(input_shape)))
        self.built = True

    def call(self, inputs):
        x = self.conv3(self.pool2(self.conv2(self.pool1(self.conv1(inputs)))))
        if self.third_pool:
            x = self.pool3(x)
        hidden = self.gru(x) if self.rnn_kind == "gru" else self.rnn(x)
        return self.projection(ops.mean(hidden, axis=1))

    def encode_texts(self, texts: tf.Tensor | Sequence[Text]) -> tf.Tensor:
        """One-hot (B, DOC_LENGTH, ALPHABET_SIZE) of raw texts with `encode_text_tf`, encoded the way
        this encoder expects (`exact_demo_encoding`); usable in a traced graph."""
        return encode_text_tf(texts, exact_demo=self.exact_demo_encoding)

    def embed_text(self, texts: tf.Tensor | Sequence[Text]) -> tf.Tensor:
        """Embeddings (B, emb_dim) of raw texts, encoded in-graph with `encode_texts`."""
        return self(self.encode_texts(texts))

    def get_config(self):
        return {
            **super().get_config(),
            "conv_channels": list(self.conv_channels),
            "rnn_dim": self.rnn_dim,
            "emb_dim": self.emb_dim,
            "init_range": self.init_range,
            "third_pool": self.third_pool,
            "rnn_kind": self.rnn_kind,
            "exact_demo_encoding": self.exact_demo_encoding,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
