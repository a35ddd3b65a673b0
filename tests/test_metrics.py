"""Tests for misc/evaluation/metrics.py: IS, Frechet distance and R-precision against independent code."""
import math

import numpy as np
import pytest

from misc.evaluation.metrics import (
    feature_statistics,
    frechet_distance,
    inception_score,
    r_precision,
    softmax_known_classes,
)


def _loop_inception_score(probs, splits):
    """Straightforward reference: Python loops and `math`, boundaries i * N // splits as in
    StackGAN-inception-model."""
    n, c = len(probs), len(probs[0])
    scores = []
    for i in range(splits):
        rows = [probs[j] for j in range(i * n // splits, (i + 1) * n // splits)]
        marginal = [sum(row[k] for row in rows) / len(rows) for k in range(c)]
        kl_sum = 0.0
        for row in rows:
            kl_sum += sum(p * (math.log(p) - math.log(m)) for p, m in zip(row, marginal) if p > 0)
        scores.append(math.exp(kl_sum / len(rows)))
    mean = sum(scores) / splits
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / splits)
    return mean, std


def _random_spd(rng, dim, jitter=0.5):
    a = rng.normal(size=(dim, dim))
    return a @ a.T + jitter * np.eye(dim)


def _denman_beavers_sqrt(a, iterations=60):
    """Principal square root of a (non-symmetric) matrix with positive eigenvalues."""
    y, z = a.copy(), np.eye(len(a))
    for _ in range(iterations):
        y, z = (y + np.linalg.inv(z)) / 2.0, (z + np.linalg.inv(y)) / 2.0
    return y


# --- Inception Score -------------------------------------------------------------------------

def test_is_of_perfect_uniform_predictions_is_number_of_classes():
    num_classes = 5
    # Each consecutive part of 5 rows holds every class once: p(y|x) one-hot, p(y) uniform.
    probs = np.eye(num_classes)[np.arange(50) % num_classes]
    mean, std = inception_score(probs, splits=10)
    assert mean == pytest.approx(num_classes, rel=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_is_of_identical_rows_is_one():
    row = np.random.default_rng(0).dirichlet(np.ones(8))
    mean, std = inception_score(np.tile(row, (40, 1)), splits=10)
    assert mean == pytest.approx(1.0, abs=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("n, splits", [(100, 10), (103, 10), (37, 3)])
def test_is_matches_loop_reference_on_random_predictions(n, splits):
    probs = np.random.default_rng(n).dirichlet(np.full(7, 0.3), size=n)
    expected = _loop_inception_score(probs.tolist(), splits)
    np.testing.assert_allclose(inception_score(probs, splits=splits), expected, rtol=1e-10)


def test_is_splits_at_floor_boundaries_like_the_original():
    # N = 11, 10 splits: boundaries i * 11 // 10 give nine 1-row parts (IS 1 each) and a last part
    # of rows 9 and 10; making those two different one-hots gives that part IS 2.
    probs = np.full((11, 2), 0.5)
    probs[9], probs[10] = [1.0, 0.0], [0.0, 1.0]
    mean, std = inception_score(probs, splits=10)
    assert mean == pytest.approx(1.1)
    assert std == pytest.approx(0.3)


def test_is_accepts_float32_softmax_rows():
    logits = np.random.default_rng(1).normal(size=(20, 51)).astype(np.float32)
    probs = softmax_known_classes(logits).astype(np.float32)
    mean, std = inception_score(probs, splits=2)
    assert 1.0 <= mean <= 50.0 and std >= 0.0


def test_is_rejects_bad_input():
    probs = np.full((5, 3), 1.0 / 3)
    with pytest.raises(ValueError, match="at least splits"):
        inception_score(probs, splits=10)
    with pytest.raises(ValueError, match="sum to 1"):
        inception_score(np.random.default_rng(2).normal(size=(20, 3)) ** 2, splits=2)
    with pytest.raises(ValueError, match="2-D"):
        inception_score(np.ones(10) / 10, splits=1)


def test_softmax_known_classes_drops_the_background_logit():
    logits = np.random.default_rng(3).normal(size=(6, 51)) * 5.0
    probs = softmax_known_classes(logits)
    expected = np.exp(logits[:, 1:]) / np.exp(logits[:, 1:]).sum(axis=1, keepdims=True)
    assert probs.shape == (6, 50)
    np.testing.assert_allclose(probs, expected, rtol=1e-12)
    changed = logits.copy()
    changed[:, 0] = 100.0  # the background logit has no influence at all
    np.testing.assert_allclose(softmax_known_classes(changed), probs, rtol=1e-12)


def test_softmax_known_classes_without_background_and_large_logits():
    logits = np.array([[1000.0, 0.0, -1000.0], [3.0, 3.0, 3.0]])
    probs = softmax_known_classes(logits, background_index=None)
    assert probs.shape == (2, 3) and np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs[0], [1.0, 0.0, 0.0], atol=1e-300)
    np.testing.assert_allclose(probs[1], [1 / 3] * 3)


# --- Frechet distance ------------------------------------------------------------------------

def test_frechet_distance_of_identical_statistics_is_zero():
    rng = np.random.default_rng(4)
    mu, sigma = rng.normal(size=6), _random_spd(rng, 6)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_of_1d_gaussians_has_closed_form():
    mu1, s1, mu2, s2 = 1.5, 2.0, -0.5, 0.5  # s = standard deviations
    expected = (mu1 - mu2) ** 2 + (s1 - s2) ** 2
    got = frechet_distance(
        np.array([mu1]), np.array([[s1 ** 2]]), np.array([mu2]), np.array([[s2 ** 2]]))
    assert got == pytest.approx(expected, rel=1e-12)
    assert got == pytest.approx(6.25)


def test_frechet_distance_of_commuting_covariances_has_closed_form():
    rng = np.random.default_rng(5)
    a, b = rng.uniform(0.1, 3.0, size=8), rng.uniform(0.1, 3.0, size=8)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("dim", [2, 7, 20])
def test_frechet_distance_matches_denman_beavers_square_root(dim):
    rng = np.random.default_rng(dim)
    mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
    sigma1, sigma2 = _random_spd(rng, dim), _random_spd(rng, dim)
    product = sigma1 @ sigma2  # not symmetric: the reference never uses the eigen trick
    root = _denman_beavers_sqrt(product)
    np.testing.assert_allclose(root @ root, product, rtol=1e-8, atol=1e-8)
    expected = (np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2)
                - 2.0 * np.trace(root))
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_with_singular_covariances_is_finite_and_symmetric():
    # Fewer samples than dimensions, as FID on < 2048 images: both covariances are singular.
    rng = np.random.default_rng(6)
    mu1, sigma1 = feature_statistics(rng.normal(size=(5, 16)))
    mu2, sigma2 = feature_statistics(rng.normal(size=(5, 16)) + 1.0)
    d12 = frechet_distance(mu1, sigma1, mu2, sigma2)
    d21 = frechet_distance(mu2, sigma2, mu1, sigma1)
    assert np.isfinite(d12) and d12 > 0.0
    assert d12 == pytest.approx(d21, rel=1e-9)
    assert frechet_distance(mu1, sigma1, mu1, sigma1) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="means"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="covariances"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))


def test_feature_statistics_is_mean_and_unbiased_covariance():
    features = np.random.default_rng(7).normal(size=(50, 4)).astype(np.float32)
    mu, sigma = feature_statistics(features)
    centred = features.astype(np.float64) - features.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(mu, features.astype(np.float64).mean(axis=0))
    np.testing.assert_allclose(sigma, centred.T @ centred / 49.0, rtol=1e-12)
    assert mu.dtype == np.float64 and sigma.shape == (4, 4)
    mu1, sigma1 = feature_statistics(features[:, :1])
    assert mu1.shape == (1,) and sigma1.shape == (1, 1)
    with pytest.raises(ValueError, match="N >= 2"):
        feature_statistics(features[:1])


# --- R-precision -----------------------------------------------------------------------------

def test_r_precision_is_one_for_perfect_embeddings():
    emb = np.random.default_rng(8).normal(size=(300, 32))
    assert r_precision(emb, emb * 3.0, np.arange(300), candidates=100, rng=0) == 1.0


def test_r_precision_is_about_one_over_candidates_for_unrelated_embeddings():
    rng = np.random.default_rng(9)
    text, image = rng.normal(size=(3000, 16)), rng.normal(size=(3000, 16))
    # Binomial standard deviations: 0.0018 (100 candidates) and 0.0055 (10 candidates).
    truth = np.arange(3000)
    assert r_precision(text, image, truth, candidates=100, rng=1) == pytest.approx(0.01, abs=0.008)
    assert r_precision(text, image, truth, candidates=10, rng=1) == pytest.approx(0.1, abs=0.025)


def test_r_precision_never_draws_the_true_image_as_a_distractor():
    # candidates == number of images: the distractors must be exactly all other images. Each text
    # matches its own image and is orthogonal to the rest, so a drawn duplicate of the true image
    # would tie (a miss) and lower the score.
    emb = np.eye(6)
    order = np.array([3, 0, 5, 1, 4, 2])
    assert r_precision(emb[order], emb, order, candidates=6, rng=2) == 1.0


def test_r_precision_counts_ties_as_misses_and_is_seeded():
    text = np.ones((10, 4))
    assert r_precision(text, np.ones((20, 4)), np.arange(10), candidates=5) == 0.0
    rng = np.random.default_rng(10)
    text, image = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    image[:100] += 2.0 * text[:100]  # half of the pairs are related
    first = r_precision(text, image, np.arange(200), candidates=20, rng=11)
    assert first == r_precision(text, image, np.arange(200), candidates=20, rng=11)
    assert 0.4 < first < 0.65


def test_r_precision_rejects_bad_input():
    emb = np.zeros((5, 3))
    with pytest.raises(ValueError, match="candidates"):
        r_precision(emb, emb, np.arange(5), candidates=6)
    with pytest.raises(ValueError, match="true_index"):
        r_precision(emb, emb, np.arange(4), candidates=2)
    with pytest.raises(ValueError, match="lie in"):
        r_precision(emb, emb, np.array([0, 1, 2, 3, 5]), candidates=2)
    with pytest.raises(ValueError, match="embeddings"):
        r_precision(emb, np.zeros((5, 4)), np.arange(5), candidates=2)


def test_sample_diversity_by_hand():
    from misc.evaluation.metrics import sample_diversity

    # Caption 0: two samples, pixels 0 and 255 -> values -1 and 1, std 1 everywhere.
    # Caption 1: two identical samples -> std 0. Caption 2: one sample, skipped. Mean: 0.5.
    images = np.zeros((5, 2, 2, 3), np.uint8)
    images[1] = 255
    images[2] = images[3] = 77
    assert sample_diversity(images, np.array([0, 0, 1, 1, 2])) == pytest.approx(0.5)
    # Floats are taken as they are: samples 0.2 and 0.6 have std 0.2.
    floats = np.stack([np.full((2, 2, 3), 0.2), np.full((2, 2, 3), 0.6)])
    assert sample_diversity(floats, np.array([3, 3])) == pytest.approx(0.2)
    assert math.isnan(sample_diversity(images[:1], np.array([0])))
