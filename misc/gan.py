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
# Keys of the optional fourth batch element that injects the noise instead of sampling it.
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


class LastValue(keras.metrics.Metric):
    """The value of one loss at the latest training step, averaged over replicas.

    The `Mean` trackers average over the epoch (what the progress bar and the epoch log show); the
    original wrote the value of every single iteration to TensorBoard, which this keeps.
    Under `tf.distribute` each replica stores its own value; reading the result outside the replicas
    sums values and counts over replicas, giving their mean.
    """

    def __init__(self, name: str, **kwargs):
        super().__init__(name=name, **kwargs)
        self.value = self.add_variable(shape=(), initializer="zeros", name="value")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, value):
        self.value.assign(tf.cast(value, self.dtype))
        self.count.assign(1.0)

    def result(self):
        return tf.math.divide_no_nan(self.value, self.count)


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

    Noise: a batch is `(images, wrong_images, embeddings)` and the noise is sampled in the graph
    (independently on every replica); or `(images, wrong_images, embeddings, noise)` where `noise`
    is a dict with keys `z_d`, `eps_d`, `z_g`, `eps_g` (global-batch tensors, split over replicas
    like the images), which makes a step fully reproducible.

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
    """

    def __init__(self, generator: keras.Model, discriminator: keras.Model, z_dim: int = 100,
                 ef_dim: int = 128, kl_coeff: float = 2.0, b_wrong: bool = True,
                 cond_augmentation: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.z_dim = int(z_dim)
        self.ef_dim = int(ef_dim)
        self.kl_coeff = float(kl_coeff)
        self.b_wrong = bool(b_wrong)
        self.cond_augmentation = bool(cond_augmentation)
        self.d_optimizer: keras.optimizers.Optimizer | None = None
        self.g_optimizer: keras.optimizers.Optimizer | None = None
        self.trackers = {name: keras.metrics.Mean(name=name) for name in LOSS_NAMES}
        self.last_values = {name: LastValue(name=f"last_{name}") for name in LOSS_NAMES}
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
        """The original's global iteration `counter`: training steps done (plus `iteration_offset`)."""
        return self.iteration_offset + int(self.g_optimizer.iterations.numpy())

    def last_step_losses(self) -> dict[str, float]:
        """The losses of the latest training step (mean over replicas), keyed by `LOSS_NAMES`."""
        return {name: float(metric.result()) for name, metric in self.last_values.items()}

    # ----------------------------------------------------------------------------- graph
    def sample_noise(self, batch_size) -> tuple[tf.Tensor, Any]:
        """Draw z ~ N(0, 1) of shape (B, z_dim) and the CA noise epsilon ~ truncated N(0, 1) (B, ef_dim).

        Port of the original's in-graph `tf.random_normal` (z) and `tf.truncated_normal` (CA).
        Stateful TF random ops: seeded by `keras.utils.set_random_seed`, different on every replica.
        Stage-II overrides this when its generator needs more noise.
        """
        z = tf.random.normal((batch_size, self.z_dim))
        epsilon = tf.random.truncated_normal((batch_size, self.ef_dim))
        return z, epsilon

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
            loss = tf.nn.compute_average_loss(per_example["d_loss"])
        variables = self.d_variables
        grads = tape.gradient(loss, variables)
        self.d_optimizer.apply_gradients(zip(grads, variables))
        return {name: tf.reduce_mean(value) for name, value in per_example.items()}

    def g_step(self, embedding, z, epsilon) -> dict[str, tf.Tensor]:
        """One Adam step of the generator (and its CA) on `g_loss`; returns the batch-mean losses."""
        with tf.GradientTape() as tape:
            per_example = self.compute_g_losses(embedding, z, epsilon)
            loss = tf.nn.compute_average_loss(per_example["g_loss"])
        variables = self.g_variables
        grads = tape.gradient(loss, variables)
        self.g_optimizer.apply_gradients(zip(grads, variables))
        return {name: tf.reduce_mean(value) for name, value in per_example.items()}

    def train_step(self, data) -> dict[str, tf.Tensor]:
        """One iteration of the loop of the original `stageI/trainer.py`: a D step, then a G step with fresh noise."""
        images, wrong_images, embedding, noise = _unpack_batch(data)
        if noise is None:
            batch_size = tf.shape(embedding)[0]
            z_d, eps_d = self.sample_noise(batch_size)
            z_g, eps_g = self.sample_noise(batch_size)
        else:
            z_d, eps_d, z_g, eps_g = (noise[key] for key in NOISE_KEYS)
        step_losses = self.d_step(images, wrong_images, embedding, z_d, eps_d)
        step_losses.update(self.g_step(embedding, z_g, eps_g))
        for name in LOSS_NAMES:
            self.trackers[name].update_state(step_losses[name])
            self.last_values[name].update_state(step_losses[name])
        return {name: tracker.result() for name, tracker in self.trackers.items()}


def _unpack_batch(data) -> tuple[Any, Any, Any, Mapping | None]:
    """Split a batch into images, wrong images, embeddings and the optional noise dict."""
    if len(data) == 3:
        images, wrong_images, embedding = data
        return images, wrong_images, embedding, None
    if len(data) == 4:
        images, wrong_images, embedding, noise = data
        missing = [key for key in NOISE_KEYS if key not in noise]
        if missing:
            raise ValueError(f"the noise dict of a batch lacks {missing}")
        return images, wrong_images, embedding, noise
    raise ValueError(f"a batch must be (images, wrong_images, embeddings[, noise]), got {len(data)} elements")
