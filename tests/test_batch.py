"""The diverse head of the queue (autoal_engine/batch.py) on constructed embeddings with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from autoal_engine.batch import diverse_batch, with_batch_first


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


def test_pick_by_keeps_the_regions_of_the_priority_and_takes_each_regions_best_item():
    """``pick_by`` does not move the regions (they come from the priority's shortlist) but chooses which member
    of each is taken: the one of highest pick_by, not the one nearest to the centre; picks ordered by pick_by."""
    priority, embeddings = blobs()
    nearest = diverse_batch(priority, embeddings, batch_size=5, prefilter=40, seed=0)
    pick_by = np.random.default_rng(5).random(len(priority))
    picked = diverse_batch(priority, embeddings, batch_size=5, prefilter=40, seed=0, pick_by=pick_by)
    assert sorted(picked // 40) == [0, 1, 2, 3, 4]  # still one item per blob
    best = [40 * blob + int(np.argmax(pick_by[40 * blob:40 * blob + 40])) for blob in range(5)]
    assert sorted(picked) == sorted(best)
    assert set(picked) != set(nearest)
    assert np.all(np.diff(pick_by[picked]) <= 0)
    with pytest.raises(ValueError, match="pick_by"):
        diverse_batch(priority, embeddings, batch_size=5, prefilter=40, seed=0, pick_by=pick_by[:3])


def test_same_seed_same_batch():
    priority, embeddings = blobs(1)
    first = diverse_batch(priority, embeddings, batch_size=7, prefilter=10, seed=3)
    assert np.array_equal(first, diverse_batch(priority, embeddings, batch_size=7, prefilter=10, seed=3))


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
