"""Diverse batch on top of a per-sample priority: the head of the queue covers the pool, not one region.

AutoAL's mixture gives every pool item its own value; the top-b of a per-sample value tends to pick b near
duplicates (the most confusing region of the embedding space), which is why the batch-aware candidates
(BADGE, TypiClust) do well on their own. The head of the queue is therefore built as in Zhdanov,
"Diverse mini-Batch Active Learning" (arXiv 1901.05954, 2019):

    M   = the top beta * b items by priority p                  (prefilter, beta = ``prefilter``)
    k-means with b clusters on the embeddings h of M, each item weighted by p_i
    pick, in every cluster, the member nearest to its centroid
    order the b picks by p (highest first); they head the queue, the rest follow in the order of p.

With ``pick_by`` (a second value v, e.g. value per predicted second) the clusters still come from p, and each
cluster gives its member of highest v instead of the one nearest to its centroid; the picks are ordered by v.
So p decides where the batch looks and v which item of each region it takes (cost.pick_within_regions).

b is the number of labels expected before the next re-rank (``EngineConfig.batch_size``).
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans


def diverse_batch(priority: np.ndarray, embeddings: np.ndarray, batch_size: int, prefilter: int,
                  seed: int, pick_by: np.ndarray | None = None) -> np.ndarray:
    """Indices of the diverse batch (at most ``batch_size``), highest priority (or ``pick_by``) first."""
    priority = np.asarray(priority, dtype=np.float64)
    if len(priority) != len(embeddings):
        raise ValueError("embeddings: one row per priority is required")
    order = priority if pick_by is None else np.asarray(pick_by, dtype=np.float64)
    if len(order) != len(priority):
        raise ValueError("pick_by: one value per priority is required")
    if batch_size < 1 or prefilter < 1:
        raise ValueError("batch_size and prefilter must be at least 1")
    by_priority = np.argsort(-priority, kind="stable")
    shortlist = by_priority[: batch_size * prefilter]
    points = np.asarray(embeddings, dtype=np.float64)[shortlist]
    clusters = min(batch_size, len(np.unique(points.round(6), axis=0)))
    if clusters >= len(shortlist) or clusters <= 1:
        return shortlist[np.argsort(-order[shortlist], kind="stable")][:batch_size]
    weights = priority[shortlist] + 1e-6
    kmeans = KMeans(clusters, n_init=1, random_state=seed).fit(points, sample_weight=weights)
    # the member to take: nearest to the centroid, or of highest pick_by
    badness = (np.linalg.norm(points - kmeans.cluster_centers_[kmeans.labels_], axis=1) if pick_by is None
               else -order[shortlist])
    picks = [np.flatnonzero(kmeans.labels_ == c)[np.argmin(badness[kmeans.labels_ == c])]
             for c in range(clusters) if (kmeans.labels_ == c).any()]
    picks = shortlist[np.array(picks)]
    return picks[np.argsort(-order[picks], kind="stable")]


def with_batch_first(priority: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """Priorities in [0, 1] that put ``batch`` first, in its order, and keep the order of the rest.

    The batch gets (0.999, 1], in pick order; every other item keeps 0.999 x its priority."""
    result = np.asarray(priority, dtype=np.float64) * 0.999
    if len(batch):
        result[batch] = 1.0 - 0.001 * np.arange(len(batch)) / len(batch)
    return result
