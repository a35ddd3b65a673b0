"""The conditional GAN training graph shared by both stages.

Port of the graph that the original `stageI/trainer.py` `CondGANTrainer` builds (`build_placeholder`,
`init_opt`, `compute_losses`, `prepare_trainer`) and that `stageII/trainer.py` repeats: one Keras
model that owns a generator and a discriminator, two Adam optimisers, the D step and the G step.
Stage-II subclasses it (overriding `generate`, `sample_noise` and `g_variables`) instead of
re-typing it.
"""
from __future__ import annotations

from typing import Any, Mapping

import keras
import tensorflow as tf

from misc import losses
from misc.custom_ops import ADAM_BETA1, ADAM_EPSILON

# Names of the trackers, in the order the original `stageI/trainer.py` logs them. `kl_loss` is the unweighted
# KL; the original's `g_loss_kl_loss` summary was COEFF.KL times it.
LOSS_NAMES = ("d_loss", "d_loss_real", "d_loss_wrong", "d_loss_fake", "g_loss", "kl_loss")
# Keys of the optional fourth batch element: the training loop's global batch and first row, from
# which the noise is drawn, or the noise itself (tests inject it).
STEP_KEYS = ("iteration", "first_row")
NOISE_KEYS = ("z_d", "eps_d", "z_g", "eps_g")


def adam(learning_rate: float, name: str | None = None) -> keras.optimizers.Adam:
    """Port of the original optimiser, `tf.train.AdamOptimizer(lr, beta1=0.5)` (original `stageI/trainer.py`).

    Args:
      learning_rate: the initial learning rate (the schedule callback overwrites it per epoch).
      name: optimiser name (it names the optimiser's group in weight files).

    Returns:
      A `keras.optimizers.Adam` with beta_1 = 0.5, beta_2 = 0.999 and TF-1's epsilon 1e-8.
    """
    return keras.optimizers.Adam(learning_rate=learning_rate, beta_1=ADAM_BETA1, beta_2=0.999,
                                 epsilon=ADAM_EPSILON, name=name)


class CondGAN(keras.Model):
    """Port of the original `CondGANTrainer` training graph (Stage-I; Stage-II subclasses it).

    A training step is a D step and then a G step (1:1, original `stageI/trainer.py`):

    * D step: sample z ~ N(0, 1) and the CA noise epsilon ~ truncated N(0, 1); fake = G(embedding, z,
      epsilon) in training mode; D is called separately on the real, the wrong and the fake images
      (training mode, so every call uses its own batch statistics, original `stageI/model.py`);
      d_loss = BCE(real, 1) + (BCE(wrong, 0) + BCE(fake, 0)) / 2; Adam step on D's weights.
    * G step: fresh z and epsilon (the original re-ran its random ops in a second `session.run`);
      g_loss = BCE(D(fake), 1) + COEFF.KL * KL; Adam step on G's weights, including its CA.

    The losses are those of `compute_losses` in the original `stageI/trainer.py`.

    Per-example losses are reduced with `tf.nn.compute_average_loss`, which divides by the global
    batch, so the gradients Keras sums over replicas equal the single-device gradients.

    The optimisers only see the variables their network owns (`d_variables`, `g_variables`),
    instead of the original's name-prefix filter (`g_`, `d_`).

    Noise. The training loop's batches are `(images, wrong_images, embeddings, step)` with `step` =
    `{"iteration": k, "first_row": r}` (`misc.datasets.BatchFeeder`): the noise of global batch k is
    drawn with stateless ops from (`seed`, k), row by row of the global batch, so a resumed run draws
    what an uninterrupted one would have, and a replica holding rows r.. of the batch draws exactly
    those rows' noise, whatever the number of replicas. The D step's noise and the G step's are two
    independent draws, as the original re-ran its random ops in each `session.run`. Given
    `(images, wrong_images, embeddings)` alone, the noise comes from TensorFlow's global generator;
    given `(..., noise)` with keys `z_d`, `eps_d`, `z_g`, `eps_g`, it is that noise.

    Mixed precision. The networks compute in the global Keras dtype policy (`misc.training.precision`
    sets it); the conditioning augmentation, the discriminator's logits, the KL term and every loss
    are float32. With float16, `misc.training.compile_gan` wraps both optimisers in
    `keras.optimizers.LossScaleOptimizer`: the scaled loss is differentiated, the optimiser unscales
    the gradients, and a step whose gradients are not finite is skipped while the scale halves.

    Args:
      generator: a model called as `generator((embedding, z, epsilon), training=...)` that returns
        `(images, mu, log_sigma)`, e.g. `stageI.model.StageIGenerator`.
      discriminator: a model called as `discriminator((images, embedding), training=...)` that
        returns logits of shape (B,), e.g. `stageI.model.StageIDiscriminator`.
      z_dim: noise size (`Z_DIM`).
      ef_dim: size of the CA output and its noise (`GAN.EMBEDDING_DIM`).
      kl_coeff: weight of the KL term (`TRAIN.COEFF.KL`).
      b_wrong: include the mismatched-pair term in the D loss (`TRAIN.B_WRONG`).
      cond_augmentation: CA sampling and KL term on (`TRAIN.COND_AUGMENTATION`); off means c = mu
        and no KL, as in the original.
      seed: the seed of the training noise (`SEED`).
    """

    def __init__(self, generator: keras.Model, discriminator: keras.Model, z_dim: int = 100,
                 ef_dim: int = 128, kl_coeff: float = 2.0, b_wrong: bool = True,
                 cond_augmentation: bool = True, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.z_dim = int(z_dim)
        self.ef_dim = int(ef_dim)
        self.kl_coeff = float(kl_coeff)
        self.b_wrong = bool(b_wrong)
        self.cond_augmentation = bool(cond_augmentation)
        self.seed = int(seed)
        self.d_optimizer: keras.optimizers.Optimizer | None = None
        self.g_optimizer: keras.optimizers.Optimizer | None = None
        self.trackers = {name: keras.metrics.Mean(name=name) for name in LOSS_NAMES}
        # Added to the optimisers' iteration count to give the original's global `counter`: 0 for a
        # fresh Stage-I run; Stage-II continues the Stage-I counter (set by the checkpoint loader).
        self.iteration_offset = 0

    # ----------------------------------------------------------------------------- set-up
    def compile(self, d_optimizer: keras.optimizers.Optimizer, g_optimizer: keras.optimizers.Optimizer,
                **kwargs) -> None:
        """Attach the two optimisers (port of `prepare_trainer`).

        `optimizer=None` keeps Keras from creating a spurious default optimiser (whose learning
        rate the TensorBoard callback would log). Call `build` right after, so that both
        optimisers own their slot variables before any weights are loaded.

        Args:
          d_optimizer: optimiser of the discriminator's weights, e.g. `adam(2e-4, "d_optimizer")`.
          g_optimizer: optimiser of the generator's weights (including its CA).
          **kwargs: passed to `keras.Model.compile` (e.g. `jit_compile`).
        """
        super().compile(optimizer=None, **kwargs)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer

    def build(self, embedding_shape: tuple[int | None, int]) -> None:
        """Create every variable: G and D (one inference-mode call each) and both optimisers' slots.

        Keras never builds a model with a custom `train_step` by itself; without the optimiser
        slots, `load_weights` would silently skip the saved optimiser state.

        Args:
          embedding_shape: `(batch, text_dim)` of the text embeddings, e.g. `(None, 1024)`.
        """
        if self.d_optimizer is None or self.g_optimizer is None:
            raise RuntimeError("CondGAN.build needs the optimisers: call compile(d_optimizer, g_optimizer) first")
        embedding = tf.zeros((1, int(embedding_shape[-1])))
        z, epsilon = self.sample_noise(1)
        fake, _, _ = self.generate(embedding, z, epsilon, training=False)
        self.discriminator((fake, embedding), training=False)
        self.d_optimizer.build(self.d_variables)
        self.g_optimizer.build(self.g_variables)

    @property
    def d_variables(self) -> list:
        """The weights the D optimiser updates: the discriminator's trainable variables."""
        return self.discriminator.trainable_variables

    @property
    def g_variables(self) -> list:
        """The weights the G optimiser updates: the generator's, its CA included.

        A subclass whose `generate` also runs frozen networks (Stage-II runs the Stage-I generator)
        keeps them out of this list, or overrides it.
        """
        return self.generator.trainable_variables

    @property
    def metrics(self) -> list:
        """The epoch-mean trackers (reset by `fit` at every epoch), in `LOSS_NAMES` order."""
        return list(self.trackers.values())

    @property
    def iteration(self) -> int:
        """The original's global iteration `counter`: optimiser steps done (plus `iteration_offset`).

        A float16 step skipped for non-finite gradients is not counted here; the training loop
        counts every iteration itself.
        """
        return self.iteration_offset + int(self.g_optimizer.iterations.numpy())

    # ----------------------------------------------------------------------------- graph
    def sample_noise(self, batch_size, seed=None, first_row=0) -> tuple[tf.Tensor, Any]:
        """Draw z ~ N(0, 1) of shape (B, z_dim) and the CA noise epsilon ~ truncated N(0, 1) (B, ef_dim).

        Port of the original's in-graph `tf.random_normal` (z) and `tf.truncated_normal` (CA).
        Stage-II overrides this when its generator needs more noise.

        Args:
          batch_size: B, the rows drawn.
          seed: None: stateful TF random ops (seeded by `keras.utils.set_random_seed`, different on
            every replica). Else a shape-(2,) int64 seed: stateless draws of rows 0..first_row+B-1,
            of which rows first_row.. are returned, so a row's noise depends on (seed, row) only.
          first_row: the first row drawn (with `seed`).
        """
        if seed is None:
            return tf.random.normal((batch_size, self.z_dim)), tf.random.truncated_normal((batch_size, self.ef_dim))
        z = tf.random.stateless_normal((first_row + batch_size, self.z_dim),
                                       seed=tf.random.experimental.stateless_fold_in(seed, 0))[first_row:]
        return z, self.ca_noise(batch_size, seed, first_row, stream=1)

    def ca_noise(self, batch_size, seed=None, first_row=0, stream: int = 1):
        """A CA noise epsilon ~ truncated N(0, 1) of shape (B, ef_dim), as `sample_noise` draws it.

        With `seed`, stream k is the stateless draw of rows first_row.. from `fold_in(seed, k)` (z uses
        stream 0, the Stage-I CA 1, the Stage-II CA 2); without, a stateful draw.
        """
        if seed is None:
            return tf.random.truncated_normal((batch_size, self.ef_dim))
        return tf.random.stateless_truncated_normal(
            (first_row + batch_size, self.ef_dim), seed=tf.random.experimental.stateless_fold_in(seed, stream))[first_row:]

    def step_seeds(self, iteration) -> tuple[tf.Tensor, tf.Tensor]:
        """The stateless seeds of the D step's and the G step's noise at global batch `iteration`."""
        base = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(iteration, tf.int64)])
        fold_in = tf.random.experimental.stateless_fold_in
        return fold_in(base, 0), fold_in(base, 1)

    def generate(self, embedding, z, epsilon, training: bool):
        """Run the generator: port of `CondGAN.generator` with CA (`generate_condition`).

        Args:
          embedding: text embeddings (B, text_dim).
          z: noise (B, z_dim).
          epsilon: CA noise (B, ef_dim).
          training: batch statistics (True) or moving averages (False) in the generator's BN.

        Returns:
          `(fake_images, mu, log_sigma)`; mu and log_sigma are those of the CA whose KL is trained.
        """
        return self.generator((embedding, z, epsilon), training=training)

    def grid_images(self, embedding, z, epsilon) -> tuple:
        """The images of the end-of-epoch grids, generated in inference mode: `(fake_images,)`.

        Stage-II returns its Stage-I images too; `misc.visualize.epoch_grids` draws one grid each.
        """
        return (self.generate(embedding, z, epsilon, training=False)[0],)

    def compute_d_losses(self, images, wrong_images, embedding, z, epsilon) -> dict[str, tf.Tensor]:
        """Per-example D losses (port of `compute_losses`, D part) with G and D in training mode.

        Returns:
          Dict `d_loss`, `d_loss_real`, `d_loss_wrong`, `d_loss_fake`, each of shape (B,).
        """
        fake, _, _ = self.generate(embedding, z, epsilon, training=True)
        fake = tf.stop_gradient(fake)
        real_logits = self.discriminator((images, embedding), training=True)
        if self.b_wrong:
            wrong_logits = self.discriminator((wrong_images, embedding), training=True)
        else:
            # The original does not run D on the wrong images without B_WRONG; the term is unused.
            wrong_logits = tf.zeros_like(real_logits)
        fake_logits = self.discriminator((fake, embedding), training=True)
        return losses.discriminator_loss(real_logits, wrong_logits, fake_logits, b_wrong=self.b_wrong)

    def compute_g_losses(self, embedding, z, epsilon) -> dict[str, tf.Tensor]:
        """Per-example G losses (port of `compute_losses`, G part) with G and D in training mode.

        Returns:
          Dict `g_loss` (adversarial + COEFF.KL * KL) and `kl_loss` (unweighted KL), shape (B,).
        """
        fake, mu, log_sigma = self.generate(embedding, z, epsilon, training=True)
        fake_logits = self.discriminator((fake, embedding), training=True)
        g_loss = losses.generator_loss(fake_logits)
        if self.cond_augmentation:
            kl = losses.kl_loss(mu, log_sigma)
            g_loss = g_loss + self.kl_coeff * kl
        else:
            kl = tf.zeros_like(g_loss)
        return {"g_loss": g_loss, "kl_loss": kl}

    def d_step(self, images, wrong_images, embedding, z, epsilon) -> dict[str, tf.Tensor]:
        """One Adam step of the discriminator on `d_loss`; returns the batch-mean losses."""
        with tf.GradientTape() as tape:
            per_example = self.compute_d_losses(images, wrong_images, embedding, z, epsilon)
            # A float16 loss-scale optimiser scales the loss here and unscales the gradients.
            loss = self.d_optimizer.scale_loss(tf.nn.compute_average_loss(per_example["d_loss"]))
        variables = self.d_variables
        self.d_optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return {name: tf.reduce_mean(value) for name, value in per_example.items()}

    def g_step(self, embedding, z, epsilon) -> dict[str, tf.Tensor]:
        """One Adam step of the generator (and its CA) on `g_loss`; returns the batch-mean losses."""
        with tf.GradientTape() as tape:
            per_example = self.compute_g_losses(embedding, z, epsilon)
            loss = self.g_optimizer.scale_loss(tf.nn.compute_average_loss(per_example["g_loss"]))
        variables = self.g_variables
        self.g_optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return {name: tf.reduce_mean(value) for name, value in per_example.items()}

    def d_step_done(self, d_losses: Mapping[str, tf.Tensor]) -> list[tf.Tensor]:
        """Tensors that exist only once the D step is over: its losses and a read of every variable of
        the model and of D's optimiser (a superset of what the D step writes: D's weights, the slots,
        the batch-norm statistics of every network it ran). TensorFlow orders each read after the
        variable's last write, as it runs one variable's ops in program order."""
        written = [*self.variables, *self.d_optimizer.variables]
        return [*d_losses.values(), *(tf.identity(v.value) for v in written)]

    def train_step(self, data) -> dict[str, tf.Tensor]:
        """One iteration of the loop of the original `stageI/trainer.py`: a D step, then a G step with fresh noise.

        Returns:
          This step's losses (means over this replica's rows), keyed by `LOSS_NAMES`; the epoch
          means are in `metrics`.
        """
        images, wrong_images, embedding, extra = _unpack_batch(data)
        batch_size = tf.shape(embedding)[0]
        if extra is None:
            z_d, eps_d = self.sample_noise(batch_size)
            z_g, eps_g = self.sample_noise(batch_size)
        elif "iteration" in extra:
            seed_d, seed_g = self.step_seeds(extra["iteration"])
            first_row = tf.cast(extra["first_row"], tf.int32)
            z_d, eps_d = self.sample_noise(batch_size, seed_d, first_row)
            z_g, eps_g = self.sample_noise(batch_size, seed_g, first_row)
        else:
            z_d, eps_d, z_g, eps_g = (extra[key] for key in NOISE_KEYS)
        with tf.name_scope("d_step"):
            step_losses = self.d_step(images, wrong_images, embedding, z_d, eps_d)
        # The original ran the two steps as two `session.run` calls. Inside one `tf.function`, the G
        # step's first ops could start while the D step's last ones still ran (TensorFlow orders the
        # reads of D's weights after their update, so the values were right), and kernels that
        # overlap on a CPU round differently from run to run: one Stage-II step at the shapes widths
        # ended with different weights in 14 of 16 repeats. The G step now waits for the whole D
        # step. (The training command also runs one op at a time: `misc.run_exp.reproducible_threads`.)
        with tf.control_dependencies(self.d_step_done(step_losses)), tf.name_scope("g_step"):
            step_losses.update(self.g_step(embedding, z_g, eps_g))
        for name in LOSS_NAMES:
            self.trackers[name].update_state(step_losses[name])
        return step_losses


def _unpack_batch(data) -> tuple[Any, Any, Any, Mapping | None]:
    """Split a batch into images, wrong images, embeddings and the optional step or noise dict."""
    if len(data) == 3:
        images, wrong_images, embedding = data
        return images, wrong_images, embedding, None
    if len(data) == 4:
        images, wrong_images, embedding, extra = data
        wanted = STEP_KEYS if "iteration" in extra else NOISE_KEYS
        missing = [key for key in wanted if key not in extra]
        if missing:
            raise ValueError(f"the dict of a batch lacks {missing}")
        return images, wrong_images, embedding, extra
    raise ValueError(f"a batch must be (images, wrong_images, embeddings[, step or noise]), got {len(data)} elements")
