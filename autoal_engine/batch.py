"""Diverse batch on top of a per-sample priority: the head of the queue covers the pool, not one region.

AutoAL's mixture gives every pool item its own value; the top-b of a per-sample value tends to pick b near
duplicates (the most confusing region of the embedding space), which is why the batch-aware candidates
(BADGE, TypiClust) do well on their own. The head of the queue is therefore built as in Zhdanov,
"Diverse mini-Batch Active Learning" (arXiv 1901.05954, 2019):

    M   = the top beta * b items by priority p                  (prefilter, beta = ``prefilter``)
    k-means with b clusters on the embeddings h of M, each item weighted by p_i
    pick, in every cluster, the member nearest to its centroid
    order the b picks by p (highest first); they head the queue, the rest follow in the order of p.

b is the number of labels expected before the next re-rank (``EngineConfig.batch_size``). The space h is
the task model's embedding (``diversity_space = "embedding"``) or BADGE's last-layer gradient embedding
g_i = (p_i - e_yhat_i) (x) h_i (``"gradient"``; Ash et al., ICLR 2020), in which items the model predicts
as different classes lie apart and an item's length grows with its uncertainty.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans


def gradient_embeddings(probs: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """g_i = (p_i - e_yhat_i) (x) h_i, yhat_i = argmax p_i: (N, C * D)."""
    u = np.array(probs, dtype=np.float64)
    u[np.arange(len(u)), u.argmax(axis=1)] -= 1.0
    return (u[:, :, None] * np.asarray(embeddings, dtype=np.float64)[:, None, :]).reshape(len(u), -1)


def diverse_batch(priority: np.ndarray, embeddings: np.ndarray, batch_size: int, prefilter: int,
                  seed: int, probs: np.ndarray | None = None) -> np.ndarray:
    """Indices of the diverse batch (at most ``batch_size``), highest priority first. With ``probs`` (N, C)
    the k-means runs on the shortlist's gradient embeddings instead of ``embeddings``."""
    priority = np.asarray(priority, dtype=np.float64)
    if len(priority) != len(embeddings):
        raise ValueError("embeddings: one row per priority is required")
    if batch_size < 1 or prefilter < 1:
        raise ValueError("batch_size and prefilter must be at least 1")
    by_priority = np.argsort(-priority, kind="stable")
    shortlist = by_priority[: batch_size * prefilter]
    points = np.asarray(embeddings, dtype=np.float64)[shortlist]
    if probs is not None:
        points = gradient_embeddings(np.asarray(probs)[shortlist], points)
    clusters = min(batch_size, len(np.unique(points.round(6), axis=0)))
    if clusters >= len(shortlist) or clusters <= 1:
        return shortlist[:batch_size]
    weights = priority[shortlist] + 1e-6
    kmeans = KMeans(clusters, n_init=1, random_state=seed).fit(points, sample_weight=weights)
    distance = np.linalg.norm(points - kmeans.cluster_centers_[kmeans.labels_], axis=1)
    picks = [np.flatnonzero(kmeans.labels_ == c)[np.argmin(distance[kmeans.labels_ == c])]
             for c in range(clusters) if (kmeans.labels_ == c).any()]
    picks = shortlist[np.array(picks)]
    return picks[np.argsort(-priority[picks], kind="stable")]


def with_batch_first(priority: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """Priorities in [0, 1] that put ``batch`` first, in its order, and keep the order of the rest.

    The batch gets (0.999, 1], in pick order; every other item keeps 0.999 x its priority."""
    result = np.asarray(priority, dtype=np.float64) * 0.999
    if len(batch):
        result[batch] = 1.0 - 0.001 * np.arange(len(batch)) / len(batch)
    return result
