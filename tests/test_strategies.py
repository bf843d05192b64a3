"""Known answers and invariants of the candidate strategies (autoal_engine.strategies)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autoal_engine.pool_outputs import PoolOutputs
from autoal_engine.strategies import STRATEGIES, make_strategy
from autoal_engine.strategies.diversity import gradient_embedding_factors, gradient_sq_distances_to

ALL_NAMES = {
    "random", "least_confidence", "margin", "entropy", "bald", "mean_std", "var_ratio",
    "coreset", "kmeans", "badge", "typiclust", "loss",
}


def score(name: str, outputs: PoolOutputs) -> np.ndarray:
    return make_strategy(name).score(outputs)


def blobs(sizes: list[int], dim: int = 8, separation: float = 50.0, seed: int = 0):
    """Well-separated Gaussian blobs: (points, blob index of each point)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(sizes), dim)) * separation
    blob = np.repeat(np.arange(len(sizes)), sizes)
    return (centers[blob] + rng.normal(size=(len(blob), dim))).astype(np.float32), blob


def random_outputs(n: int, labeled: int = 5, seed: int = 0) -> PoolOutputs:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(4, n, 3)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    return PoolOutputs.from_arrays(
        probs[0], mc_probs=probs[1:], embeddings=rng.normal(size=(n, 6)),
        predicted_loss=rng.random(n), labeled_embeddings=rng.normal(size=(labeled, 6)).astype(np.float32),
        batch_size=4, seed=seed,
    )


def test_registry_holds_exactly_the_twelve_strategies():
    assert set(STRATEGIES) == ALL_NAMES


def test_unknown_strategy_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="nope"):
        make_strategy("nope")


def test_from_arrays_still_accepts_the_deprecated_labeled_labels(caplog):
    probs = np.full((4, 2), 0.5)
    with caplog.at_level("WARNING", logger="autoal_engine.pool_outputs"):
        outputs = PoolOutputs.from_arrays(probs, labeled_labels=np.array([0, 1]))
    assert "labeled_labels is deprecated and ignored" in caplog.text
    assert not hasattr(outputs, "labeled_labels")


# --- per-sample uncertainty -------------------------------------------------------------------------

def test_entropy_of_uniform_row_is_log_c_and_of_one_hot_is_zero():
    outputs = PoolOutputs.from_arrays(np.array([[0.25] * 4, [1.0, 0, 0, 0]]))
    np.testing.assert_allclose(score("entropy", outputs), [math.log(4), 0.0], atol=1e-6)


def test_margin_ranks_a_tie_above_a_confident_prediction():
    outputs = PoolOutputs.from_arrays(np.array([[0.9, 0.1, 0.0], [0.5, 0.5, 0.0], [0.2, 0.7, 0.1]]))
    scores = score("margin", outputs)
    np.testing.assert_allclose(scores, [-0.8, 0.0, -0.5], atol=1e-6)
    assert scores[1] > scores[2] > scores[0]


def test_least_confidence_orders_by_the_top_probability():
    outputs = PoolOutputs.from_arrays(np.array([[0.9, 0.1], [0.6, 0.4], [0.7, 0.3]]))
    scores = score("least_confidence", outputs)
    np.testing.assert_allclose(scores, [0.1, 0.4, 0.3], atol=1e-6)
    assert list(np.argsort(-scores)) == [1, 2, 0]


def test_bald_is_zero_when_mc_samples_agree_and_positive_when_they_disagree():
    agree = np.array([[0.6, 0.4], [0.6, 0.4]])
    disagree = np.array([[0.99, 0.01], [0.01, 0.99]])
    mc_probs = np.stack([agree, disagree], axis=1)  # (T=2, N=2, C=2)
    outputs = PoolOutputs.from_arrays(mc_probs.mean(axis=0), mc_probs=mc_probs)
    scores = score("bald", outputs)
    assert scores[0] == pytest.approx(0.0, abs=1e-6)
    expected = math.log(2) - (-(0.99 * math.log(0.99) + 0.01 * math.log(0.01)))
    assert scores[1] == pytest.approx(expected, rel=1e-4)


def test_var_ratio_is_one_minus_the_mode_frequency_not_one_minus_max_p():
    # Sample 0: every MC sample votes class 0, yet p is far from confident -> var ratio 0, LC 0.6.
    # Sample 1: votes 3 x class 0, 1 x class 1 -> var ratio 1 - 3/4.
    steady = np.array([0.4, 0.3, 0.3])
    mc_probs = np.array([
        [steady, [0.9, 0.1, 0.0]],
        [steady, [0.8, 0.2, 0.0]],
        [steady, [0.7, 0.3, 0.0]],
        [steady, [0.1, 0.9, 0.0]],
    ])
    outputs = PoolOutputs.from_arrays(mc_probs.mean(axis=0), mc_probs=mc_probs)
    np.testing.assert_allclose(score("var_ratio", outputs), [0.0, 0.25], atol=1e-6)
    assert score("least_confidence", outputs)[0] == pytest.approx(0.6, abs=1e-6)


def test_mean_std_known_value():
    mc_probs = np.array([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]]])  # (T=2, N=2, C=2)
    outputs = PoolOutputs.from_arrays(mc_probs.mean(axis=0), mc_probs=mc_probs)
    np.testing.assert_allclose(score("mean_std", outputs), [0.5, 0.0], atol=1e-6)


def test_loss_scores_are_the_predicted_losses():
    outputs = PoolOutputs.from_arrays(np.full((3, 2), 0.5), predicted_loss=np.array([0.2, 3.0, 1.0]))
    np.testing.assert_allclose(score("loss", outputs), [0.2, 3.0, 1.0])


def test_random_depends_on_the_seed_only():
    a, b = (PoolOutputs.from_arrays(np.full((50, 2), 0.5), seed=s) for s in (1, 2))
    np.testing.assert_array_equal(score("random", a), score("random", a))
    assert not np.array_equal(score("random", a), score("random", b))


# --- batch-aware diversity --------------------------------------------------------------------------

def test_coreset_picks_the_point_farthest_from_the_labeled_set_then_from_its_picks():
    embeddings = np.array([[10.0, 0], [10.1, 0], [0, 6.0], [1.0, 0]])
    outputs = PoolOutputs.from_arrays(
        np.full((4, 2), 0.5), embeddings=embeddings, labeled_embeddings=np.zeros((1, 2)), batch_size=1,
    )
    # 1 is farthest from the origin (10.1); then 2 (6 from the origin) beats 0 (0.1 from pick 1).
    assert list(np.argsort(-score("coreset", outputs))) == [1, 2, 3, 0]


def test_coreset_without_labeled_set_starts_from_the_point_farthest_from_the_mean():
    embeddings = np.array([[0.0, 0], [1.0, 0], [0, 1.0], [-8.0, -8.0]])
    outputs = PoolOutputs.from_arrays(np.full((4, 2), 0.5), embeddings=embeddings)
    assert np.argmax(score("coreset", outputs)) == 3


def test_kmeans_gives_its_top_priorities_to_one_point_per_blob_largest_first():
    sizes = [20 + 3 * i for i in range(10)]
    points, blob = blobs(sizes)
    outputs = PoolOutputs.from_arrays(np.full((len(points), 2), 0.5), embeddings=points, batch_size=10)
    top = np.argsort(-score("kmeans", outputs))[:10]
    assert sorted(blob[top]) == list(range(10))
    assert list(blob[top]) == list(np.argsort(sizes)[::-1])  # cluster-mass tiers: biggest cluster first
    for i in top:  # each representative is the point nearest its blob's mean
        members = np.flatnonzero(blob == blob[i])
        nearest = members[np.argmin(((points[members] - points[members].mean(axis=0)) ** 2).sum(axis=1))]
        assert i == nearest


def test_badge_factorized_distance_equals_the_explicit_gradient_embedding_distance():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(4), size=7)
    h = rng.normal(size=(7, 5))
    u, h64 = gradient_embedding_factors(probs, h)
    explicit = np.einsum("nc,nd->ncd", u, h64).reshape(7, -1)
    expected_u = probs.copy()
    expected_u[np.arange(7), probs.argmax(axis=1)] -= 1.0
    np.testing.assert_allclose(u, expected_u)
    for i in range(7):
        np.testing.assert_allclose(
            gradient_sq_distances_to(u, h64, i), ((explicit - explicit[i]) ** 2).sum(axis=1), atol=1e-9,
        )


def test_badge_first_picks_cover_different_blobs():
    points, blob = blobs([30] * 5, separation=100.0)
    probs = np.tile([0.6, 0.3, 0.1], (len(points), 1))
    outputs = PoolOutputs.from_arrays(probs, embeddings=points, batch_size=5, seed=7)
    top = np.argsort(-score("badge", outputs))[:5]
    assert sorted(blob[top]) == list(range(5))


def test_typiclust_ranks_uncovered_blobs_above_a_blob_that_holds_labeled_points():
    points, blob = blobs([60, 40, 30], separation=100.0)
    covered_blob = blob == 0
    labeled = points[covered_blob][:1] + 0.1
    outputs = PoolOutputs.from_arrays(
        np.full((len(points), 2), 0.5), embeddings=points, labeled_embeddings=labeled, batch_size=2,
    )
    scores = score("typiclust", outputs)
    top = np.argsort(-scores)[:2]
    assert list(blob[top]) == [1, 2]  # uncovered blobs, the larger first, although blob 0 is the largest
    assert scores[covered_blob].max() < scores[top].min()
    # the representative is the most typical point of its blob: closest to its neighbours
    for i in top:
        members = points[blob == blob[i]]
        d = np.sqrt(((members[:, None] - members[None]) ** 2).sum(axis=2))
        mean_nn = np.sort(d, axis=1)[:, 1:21].mean(axis=1)
        assert np.allclose(points[i], members[np.argmin(mean_nn)])


def test_typiclust_without_labeled_set_treats_every_blob_as_uncovered():
    points, blob = blobs([50, 30, 40], separation=100.0)
    outputs = PoolOutputs.from_arrays(np.full((len(points), 2), 0.5), embeddings=points, batch_size=3)
    top = np.argsort(-score("typiclust", outputs))[:3]
    assert list(blob[top]) == [0, 2, 1]


# --- every strategy ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(ALL_NAMES))
@pytest.mark.parametrize("n", [1, 2, 300])
@pytest.mark.parametrize("labeled", [0, 5])
def test_every_strategy_returns_finite_deterministic_scores(name, n, labeled):
    outputs = random_outputs(n, labeled=labeled)
    first, second = score(name, outputs), score(name, random_outputs(n, labeled=labeled))
    assert first.shape == (n,)
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("name", sorted(ALL_NAMES))
def test_every_strategy_copes_with_identical_samples(name):
    n = 80
    outputs = PoolOutputs.from_arrays(
        np.tile([1.0, 0.0], (n, 1)), embeddings=np.ones((n, 4)), labeled_embeddings=np.ones((3, 4)),
    )
    scores = score(name, outputs)
    assert scores.shape == (n,) and np.isfinite(scores).all()
