"""The diverse head of the queue (autoal_engine/batch.py) on constructed embeddings with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from autoal_engine.batch import diverse_batch, gradient_embeddings, with_batch_first
from autoal_engine.strategies.diversity import gradient_embedding_factors, gradient_sq_distances_to


def blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Five tight blobs of 40 points; blob 0 holds the 40 highest priorities."""
    rng = np.random.default_rng(seed)
    centers = np.eye(5) * 10
    embeddings = np.concatenate([c + 0.1 * rng.standard_normal((40, 5)) for c in centers])
    priority = np.concatenate([0.9 + 0.1 * rng.random(40), 0.5 + 0.3 * rng.random(160)])
    return priority, embeddings


def test_the_batch_covers_every_cluster_of_the_shortlist():
    priority, embeddings = blobs()
    batch = diverse_batch(priority, embeddings, batch_size=5, prefilter=40, seed=0)
    assert len(batch) == 5
    assert sorted(batch // 40) == [0, 1, 2, 3, 4]  # one item per blob
    assert np.all(np.diff(priority[batch]) <= 0)  # highest priority first
    top5 = np.argsort(-priority)[:5]
    assert set(top5 // 40) == {0}  # the plain top-b would all come from blob 0


def test_the_shortlist_limits_the_batch_to_high_priorities():
    priority, embeddings = blobs()
    batch = diverse_batch(priority, embeddings, batch_size=5, prefilter=8, seed=0)
    assert set(batch) <= set(np.argsort(-priority)[:40])


def test_small_pools_and_duplicates_fall_back_to_the_top():
    priority = np.array([0.1, 0.9, 0.5])
    assert list(diverse_batch(priority, np.zeros((3, 2)), batch_size=2, prefilter=10, seed=0)) == [1, 2]
    assert list(diverse_batch(priority, np.eye(3), batch_size=5, prefilter=10, seed=0)) == [1, 2, 0]


def test_same_seed_same_batch():
    priority, embeddings = blobs(1)
    first = diverse_batch(priority, embeddings, batch_size=7, prefilter=10, seed=3)
    assert np.array_equal(first, diverse_batch(priority, embeddings, batch_size=7, prefilter=10, seed=3))


def test_the_gradient_embeddings_are_badges():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=6)
    embeddings = rng.standard_normal((6, 3))
    g = gradient_embeddings(probs, embeddings)
    assert g.shape == (6, 12)
    u, h = gradient_embedding_factors(probs, embeddings)
    assert np.allclose(((g - g[2]) ** 2).sum(axis=1), gradient_sq_distances_to(u, h, 2))


def test_in_the_gradient_space_items_of_different_predicted_classes_are_apart():
    """Forty items with one embedding: twenty predicted as class 0 (the higher priorities) and twenty as class
    1. In the embedding space they are one point, so the batch is the top of the priority (class 0 only);
    in the gradient space it takes both classes."""
    rng = np.random.default_rng(0)
    embeddings = np.ones((40, 2))
    probs = np.where(np.arange(40)[:, None] < 20, [0.7, 0.3], [0.3, 0.7])
    priority = np.concatenate([0.9 + 0.1 * rng.random(20), 0.5 + 0.1 * rng.random(20)])
    plain = diverse_batch(priority, embeddings, batch_size=2, prefilter=20, seed=0)
    assert set(probs[plain].argmax(1)) == {0}
    gradient = diverse_batch(priority, embeddings, batch_size=2, prefilter=20, seed=0, probs=probs)
    assert set(probs[gradient].argmax(1)) == {0, 1}
    assert priority[gradient[0]] >= priority[gradient[1]]


def test_with_batch_first_puts_the_batch_ahead_and_keeps_the_rest_in_order():
    priority = np.array([0.2, 1.0, 0.7, 0.4, 0.0])
    result = with_batch_first(priority, np.array([3, 0]))
    assert list(np.argsort(-result, kind="stable")) == [3, 0, 1, 2, 4]
    assert result.min() >= 0.0 and result.max() <= 1.0


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"prefilter": 0}])
def test_bad_arguments_are_value_errors(kwargs):
    args = {"batch_size": 2, "prefilter": 2, "seed": 0, **kwargs}
    with pytest.raises(ValueError):
        diverse_batch(np.ones(4), np.zeros((4, 2)), **args)
    with pytest.raises(ValueError, match="embeddings"):
        diverse_batch(np.ones(4), np.zeros((3, 2)), batch_size=2, prefilter=2, seed=0)
