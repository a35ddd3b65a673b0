"""Evaluation metrics as pure NumPy functions: Inception Score, Frechet distance, R-precision.

Nothing here touches a network: the functions take the numbers a classifier or encoder produced
(softmax predictions, pool features, embeddings), so each can be checked against an independent
computation on known inputs. `misc/evaluation/inception.py` produces the Inception-v3 outputs they consume.

* `inception_score` follows the StackGAN scorer (hanzhanggit/StackGAN-inception-model).
* `frechet_distance` / `feature_statistics` follow the standard TF FID (bioinf-jku/TTUR `fid.py`),
  with the matrix square root done without SciPy (see `frechet_distance`).
* `r_precision` is the R = 1 retrieval score of AttnGAN (Xu et al., CVPR 2018).

All arithmetic is in float64 whatever the input dtype.
"""
from __future__ import annotations

import numpy as np

# hanzhanggit/StackGAN-inception-model: "split predictions into 10 equal parts".
IS_SPLITS = 10
# AttnGAN's R-precision ranks the true match among 100 candidates (1 true + 99 mismatched).
R_PRECISION_CANDIDATES = 100
# Row sums of softmax outputs computed in float32 are 1 only to about 1e-6.
_PROB_SUM_TOLERANCE = 1e-3
# Guards the cosine similarity of an all-zero embedding against 0 / 0.
_NORM_EPSILON = 1e-12
# Queries per block when gathering candidate embeddings, to bound memory to ~100 MB at D = 1024.
_R_PRECISION_BLOCK = 128


def softmax_known_classes(logits: np.ndarray, background_index: int | None = 0) -> np.ndarray:
    """Softmax over the classifier's real classes, without its background logit.

    Port of the `known_logits = tf.slice(logits, [0, 1], ...)` + `tf.nn.softmax` step of
    StackGAN-inception-model's `main`: TF-slim classifiers reserve output 0 for an unused
    background class, which the scorer drops before the softmax. The 2015 Inception graph of the
    standard TF FID and openai/improved-gan (1008 outputs) and Keras' ImageNet weights (1000) are
    scored with a softmax over all their outputs: pass `background_index=None` for those.

    Args:
      logits: (N, C) classifier logits.
      background_index: column to drop before the softmax, or None to keep every column.

    Returns:
      (N, C - 1) float64 probabilities (N, C with `background_index=None`); rows sum to 1.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2:
        raise ValueError(f"logits must be 2-D (N, C), got shape {logits.shape}")
    if background_index is not None:
        logits = np.delete(logits, background_index, axis=1)
    if logits.shape[1] == 0:
        raise ValueError("no class is left for the softmax")
    shifted = logits - logits.max(axis=1, keepdims=True)  # exp cannot overflow
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def inception_score(probs: np.ndarray, splits: int = IS_SPLITS) -> tuple[float, float]:
    """Inception Score mean and standard deviation over `splits` parts.

    Port of `get_inception_score` of hanzhanggit/StackGAN-inception-model: the (N, C)
    predictions are cut into `splits` consecutive parts with boundaries `i * N // splits`, as the
    original does. Nothing is dropped here: when N is a multiple of `splits` the parts are equal,
    otherwise their sizes differ by at most one. Per part,
    IS = exp(mean_x KL(p(y|x) || p(y))) with p(y) the part's mean prediction; the result is the mean
    and the (population, ddof = 0) standard deviation of the per-part scores.

    Two steps of the original protocol are the caller's job, because they happen before the
    predictions exist: it shuffled the images (which made its scores non-deterministic, issue #6)
    and scored only floor(N / 64) full batches of 64, dropping the last N mod 64 images. To
    reproduce it, shuffle with a seeded generator and pass `probs[: len(probs) // 64 * 64]`.

    One deliberate difference: a zero probability contributes 0 * log 0 = 0 to the KL, where the
    original's `np.log` gives NaN. Only an exact 0 (a float32 softmax underflow) is affected.

    Args:
      probs: (N, C) softmax predictions, e.g. from `softmax_known_classes`.
      splits: number of parts (10 in the paper's protocol); needs N >= splits.

    Returns:
      (mean, std) of the per-part Inception Scores, as Python floats.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must be 2-D (N, C), got shape {probs.shape}")
    n = probs.shape[0]
    if splits < 1 or n < splits:
        raise ValueError(f"need at least splits={splits} >= 1 predictions, got {n}")
    if not np.all(np.isfinite(probs)) or np.any(probs < 0):
        raise ValueError("probs must be finite and non-negative")
    if np.any(np.abs(probs.sum(axis=1) - 1.0) > _PROB_SUM_TOLERANCE):
        raise ValueError("every row of probs must sum to 1 (pass softmax outputs, not logits)")

    scores = []
    for i in range(splits):
        part = probs[i * n // splits:(i + 1) * n // splits]
        marginal = part.mean(axis=0)
        # Where p(y|x) = 0 the term is 0; replacing 0 by 1 inside the logs keeps it finite, and
        # p(y) > 0 wherever p(y|x) > 0.
        log_part = np.log(np.where(part > 0, part, 1.0))
        log_marginal = np.log(np.where(marginal > 0, marginal, 1.0))
        kl = np.sum(part * (log_part - log_marginal), axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of a set of feature vectors.

    Port of the last step of `calculate_activation_statistics` of the standard TF FID
    (bioinf-jku/TTUR `fid.py`): `np.mean(axis=0)` and the unbiased `np.cov(rowvar=False)`.

    Args:
      features: (N, D) features, one row per image (N >= 2), e.g. Inception pool_3 (D = 2048).

    Returns:
      (mu (D,), sigma (D, D)) in float64.
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be (N, D) with N >= 2, got shape {features.shape}")
    mu = features.mean(axis=0)
    sigma = np.atleast_2d(np.cov(features, rowvar=False))
    return mu, sigma


def _psd_eigvals_sqrt(eigvals: np.ndarray) -> np.ndarray:
    """Square roots of the eigenvalues of a symmetric PSD matrix, with round-off zeros set to 0.

    A PSD matrix has no negative eigenvalue, but `eigh` returns its zero eigenvalues as noise of
    size about eps * max|lambda| of either sign; the square root would blow that noise up to
    sqrt(eps) (1e-8), so everything under the rank tolerance of `np.linalg.matrix_rank`
    (max|lambda| * D * eps) counts as 0.
    """
    tolerance = np.max(np.abs(eigvals), initial=0.0) * eigvals.shape[0] * np.finfo(np.float64).eps
    return np.sqrt(np.where(eigvals > tolerance, eigvals, 0.0))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix via `eigh`."""
    eigvals, eigvecs = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (eigvecs * _psd_eigvals_sqrt(eigvals)) @ eigvecs.T


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Frechet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2).

    Port of `calculate_frechet_distance` of the standard TF FID (bioinf-jku/TTUR `fid.py`):
    d = ||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr((sigma1 sigma2)^(1/2)).

    The original takes `scipy.linalg.sqrtm(sigma1 @ sigma2)`, adds 1e-6 to the diagonals when that
    is not finite and keeps the real part. SciPy is not a dependency here, and only the trace of the
    root is needed: sigma1 sigma2 has the same eigenvalues as the symmetric PSD matrix
    M = sigma1^(1/2) sigma2 sigma1^(1/2), so Tr((sigma1 sigma2)^(1/2)) = sum_i sqrt(lambda_i(M)).
    Both square roots come from `np.linalg.eigh`; eigenvalues below the round-off tolerance
    (max|lambda| * D * eps, negative ones included) are set to 0, which also makes singular
    covariances (fewer images than feature dimensions) safe without the original's diagonal
    offset. A result that round-off makes negative (identical statistics) is returned as 0.

    Args:
      mu1: (D,) mean of the first feature set (e.g. generated images).
      sigma1: (D, D) covariance of the first feature set.
      mu2: (D,) mean of the second feature set (e.g. real images).
      sigma2: (D, D) covariance of the second feature set.

    Returns:
      The distance, a non-negative Python float.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    dim = mu1.shape[0]
    if mu1.shape != (dim,) or mu2.shape != (dim,):
        raise ValueError(f"means must both be (D,), got {mu1.shape} and {mu2.shape}")
    if sigma1.shape != (dim, dim) or sigma2.shape != (dim, dim):
        raise ValueError(
            f"covariances must both be ({dim}, {dim}), got {sigma1.shape} and {sigma2.shape}")

    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    trace_covmean = np.sum(_psd_eigvals_sqrt(np.linalg.eigvalsh((middle + middle.T) / 2.0)))
    diff = mu1 - mu2
    distance = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_covmean
    return float(max(distance, 0.0))


def r_precision(
    text_emb: np.ndarray,
    image_emb: np.ndarray,
    true_index: np.ndarray,
    candidates: int = R_PRECISION_CANDIDATES,
    rng: np.random.Generator | int | None = 0,
) -> float:
    """R-precision with R = 1: how often a text's own image beats random other images.

    The retrieval score of AttnGAN (Xu et al., CVPR 2018), which StackGAN predates and
    never reported. Protocol, exactly: for each text t, draw `candidates - 1` distinct image
    indices uniformly at random from all indices other than `true_index[t]` (a distractor may
    still show the same class, or be another rendering for the same caption); score the true
    image and the distractors by cosine similarity with the text; t counts as a hit when the true
    image's similarity is strictly the largest (a tie is a miss). The result is the fraction of
    hits. AttnGAN queries with the generated image and ranks 1 true + 99 random captions: call
    `r_precision(image_emb, text_emb, ...)` for that direction. Both sets of embeddings must live
    in one joint space (AttnGAN: its DAMSM text and image encoders). The mean and spread over
    several splits, as AttnGAN reports, come from calling this on each split.

    Args:
      text_emb: (T, D) query embeddings.
      image_emb: (I, D) embeddings to rank, I >= candidates.
      true_index: (T,) integer index into `image_emb` of each query's match.
      candidates: size of each ranked list, the true match included (100 in AttnGAN); >= 2.
      rng: `np.random.Generator` or seed for drawing the distractors; same seed, same result.

    Returns:
      The hit rate in [0, 1] as a Python float (about 1 / candidates for unrelated embeddings).
    """
    text_emb = np.asarray(text_emb, dtype=np.float64)
    image_emb = np.asarray(image_emb, dtype=np.float64)
    true_index = np.asarray(true_index)
    if text_emb.ndim != 2 or image_emb.ndim != 2 or text_emb.shape[1] != image_emb.shape[1]:
        raise ValueError(
            f"embeddings must be (T, D) and (I, D), got {text_emb.shape} and {image_emb.shape}")
    num_texts, num_images = text_emb.shape[0], image_emb.shape[0]
    if true_index.shape != (num_texts,) or not np.issubdtype(true_index.dtype, np.integer):
        raise ValueError(f"true_index must hold {num_texts} integers, got {true_index.shape}")
    if num_texts == 0:
        raise ValueError("no query embeddings given")
    if np.any(true_index < 0) or np.any(true_index >= num_images):
        raise ValueError(f"true_index must lie in [0, {num_images})")
    if not 2 <= candidates <= num_images:
        raise ValueError(f"candidates must lie in [2, {num_images}], got {candidates}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)

    # Distinct draws from the I - 1 other indices: sample in [0, I - 1), then skip over the truth.
    distractors = np.stack(
        [rng.choice(num_images - 1, size=candidates - 1, replace=False) for _ in range(num_texts)])
    distractors += distractors >= true_index[:, None]

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), _NORM_EPSILON)

    text_unit, image_unit = unit(text_emb), unit(image_emb)
    true_sim = np.einsum("td,td->t", text_unit, image_unit[true_index])
    hits = np.empty(num_texts, dtype=bool)
    for start in range(0, num_texts, _R_PRECISION_BLOCK):
        block = slice(start, start + _R_PRECISION_BLOCK)
        other_sim = np.einsum("td,tkd->tk", text_unit[block], image_unit[distractors[block]])
        hits[block] = true_sim[block] > other_sim.max(axis=1)
    return float(hits.mean())


def sample_diversity(images: np.ndarray, groups: np.ndarray) -> float:
    """How much the samples of one caption differ: the per-pixel standard deviation over a caption's
    samples, averaged over pixels, channels and captions (groups of fewer than 2 samples are skipped).

    Not in the original; it quantifies what the paper shows with sample grids, that conditioning
    augmentation gives varied images for one text (the CA ablation of docs/results.md).

    Args:
      images: (N, H, W, C) images, uint8 in [0, 255] or float; uint8 is read as [-1, 1] like the
        generator's output.
      groups: (N,) integer caption ids; images with the same id are samples of one caption.

    Returns:
      The mean standard deviation (population, ddof 0), or NaN when no caption has 2 samples.
    """
    images = np.asarray(images)
    values = images.astype(np.float64) / 127.5 - 1.0 if images.dtype == np.uint8 else images.astype(np.float64)
    groups = np.asarray(groups)
    stds = [values[groups == g].std(axis=0).mean() for g in np.unique(groups) if np.sum(groups == g) >= 2]
    return float(np.mean(stds)) if stds else float("nan")
