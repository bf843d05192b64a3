"""Diversity (batch-aware) strategies on the penultimate embeddings: k-center greedy, k-means, BADGE and
TypiClust.

Each defines the value of a *set*, so a per-sample priority comes from spec section 7.1: the greedy
construction's pick order for the first m picks, then everything else below them ordered by a per-sample
key (the final marginal gain, or a cluster-based key). Scores are tiered: picks get (1, 2] in pick order,
the rest get (0, 1) by the rank of their key, so only the order carries meaning.

Sizes, derived from ``outputs.batch_size`` (b):
- greedy picks (coreset, badge): m = min(N, clip(b, 64, 1000)); the greedy steps cost O(m N D) and the
  top of the queue is where order matters, so 64 picks cover several annotation rounds, and the cap
  bounds the time for very large batches (the rest is still ordered by its final marginal gain).
- k-means clusters: k = min(N, clip(b, 10, 500)).
- TypiClust clusters: min(L + b, 500), as in the paper's code (MAX_NUM_CLUSTERS = 500).

Memory and time stay linear in N: no N x N or N x (D*C) matrix is ever built; distances are computed in
blocks of at most 4096 x 2048 (32 MiB); k-means is fit on a seeded subsample of at most 10k points with a few
Lloyd iterations, then every point is assigned in blocks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import rankdata

from autoal_engine.pool_outputs import PoolOutputs
from autoal_engine.strategies.base import Strategy, register

ROW_BLOCK = 4096
COLUMN_BLOCK = 2048
KMEANS_FIT_SAMPLE = 10_000
LLOYD_ITERATIONS = 10
MIN_GREEDY_PICKS = 64
MAX_GREEDY_PICKS = 1000
MIN_KMEANS_CLUSTERS = 10
MAX_KMEANS_CLUSTERS = 500
TYPICLUST_MAX_CLUSTERS = 500
TYPICLUST_NEIGHBOURS = 20
TYPICLUST_MIN_CLUSTER_SIZE = 5
TYPICLUST_REFERENCE_CAP = 1024


def greedy_pick_count(outputs: PoolOutputs) -> int:
    """m = min(N, clip(b, 64, 1000)): how many greedy picks coreset and badge order explicitly."""
    return min(outputs.size, int(np.clip(outputs.batch_size, MIN_GREEDY_PICKS, MAX_GREEDY_PICKS)))


def _as_float32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def _shifted_sq_distances(x: np.ndarray, y_times_minus_2: np.ndarray, y_sq: np.ndarray) -> np.ndarray:
    """One block of ||x_i - y_j||^2 - ||x_i||^2 = ||y_j||^2 - 2 <x_i, y_j>.

    Leaving out the per-row constant ||x_i||^2 does not change any row's order (argmin, k nearest), so
    callers add it only to the few values they keep: one matmul and one pass per block.
    """
    d = x @ y_times_minus_2.T
    d += y_sq[None, :]
    return d


def min_sq_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """For each row of x, the squared distance to its nearest row of y (inf when y is empty), blockwise."""
    x, y = _as_float32(x), _as_float32(y)
    if len(y) == 0:
        return np.full(len(x), np.inf, dtype=np.float64)
    y_times_minus_2, y_sq = -2.0 * y, _sq_norms(y)
    shifted = np.full(len(x), np.inf, dtype=np.float32)
    for r in range(0, len(x), ROW_BLOCK):
        rows = slice(r, r + ROW_BLOCK)
        for c in range(0, len(y), COLUMN_BLOCK):
            cols = slice(c, c + COLUMN_BLOCK)
            block_min = _shifted_sq_distances(x[rows], y_times_minus_2[cols], y_sq[cols]).min(axis=1)
            np.minimum(shifted[rows], block_min, out=shifted[rows])
    return np.maximum(shifted.astype(np.float64) + _sq_norms(x), 0.0)


def nearest_center(x: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest center and the squared distance to it, for every row of x (blockwise)."""
    x, centers = _as_float32(x), _as_float32(centers)
    centers_times_minus_2, c_sq = -2.0 * centers, _sq_norms(centers)
    labels = np.empty(len(x), dtype=np.int64)
    shifted = np.empty(len(x), dtype=np.float64)
    for r in range(0, len(x), ROW_BLOCK):
        rows = slice(r, r + ROW_BLOCK)
        d = _shifted_sq_distances(x[rows], centers_times_minus_2, c_sq)
        labels[rows] = d.argmin(axis=1)
        shifted[rows] = d[np.arange(len(d)), labels[rows]]
    return labels, np.maximum(shifted + _sq_norms(x), 0.0)


def greedy_picks(
    count: int,
    initial_sq: np.ndarray,
    sq_distances_to: Callable[[int], np.ndarray],
    choose: Callable[[np.ndarray], int],
    first: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Farthest-first style greedy selection shared by k-center, k-means++ and BADGE.

    ``initial_sq`` holds each point's squared distance to the already-chosen set (inf if none). Each step
    picks ``choose(gains)`` (``first`` for the first step when given), where picked points carry -1 and
    the others their squared distance to the nearest chosen point; then the gains shrink to the
    distances to the new pick. Returns the pick order and the final gains (-1 for picked points).
    """
    gains = np.array(initial_sq, dtype=np.float64)
    order = np.empty(count, dtype=np.int64)
    for step in range(count):
        i = first if (step == 0 and first is not None) else choose(gains)
        order[step] = i
        np.minimum(gains, sq_distances_to(i), out=gains)
        gains[i] = -1.0
    return order, gains


def d2_sampler(rng: np.random.Generator) -> Callable[[np.ndarray], int]:
    """k-means++ D^2 sampling: pick i with probability gains_i / sum(gains) among unpicked points;
    uniformly among the unpicked when every gain is 0 (duplicates)."""

    def choose(gains: np.ndarray) -> int:
        weights = np.clip(gains, 0.0, None)
        cumulative = np.cumsum(weights)
        total = cumulative[-1]
        if not np.isfinite(total) or total <= 0.0:
            return int(rng.choice(np.flatnonzero(gains >= 0.0)))
        i = int(np.searchsorted(cumulative, rng.random() * total, side="right"))
        if i >= len(gains) or weights[i] <= 0.0:  # float rounding at the top end
            i = int(np.flatnonzero(weights > 0.0)[-1])
        return i

    return choose


def tiered_priority(picks: np.ndarray, rest_key: np.ndarray) -> np.ndarray:
    """Spec 7.1 priority: ``picks`` in order get (1, 2] (first pick = 2); every other sample gets (0, 1),
    by the rank of ``rest_key`` among them (higher key = higher priority, ties share a value)."""
    n = len(rest_key)
    scores = np.empty(n, dtype=np.float64)
    rest = np.ones(n, dtype=bool)
    rest[picks] = False
    if rest.any():
        scores[rest] = rankdata(rest_key[rest], method="average") / (rest.sum() + 1.0)
    if len(picks):
        scores[picks] = 1.0 + (len(picks) - np.arange(len(picks))) / len(picks)
    return scores


def kmeans_centers(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means (Lloyd 1982) with k-means++ seeding (Arthur & Vassilvitskii 2007), fit on a seeded
    subsample of at most 10k rows for a few iterations. Returns min(k, sample size) centers."""
    x = _as_float32(x)
    sample = x if len(x) <= KMEANS_FIT_SAMPLE else x[np.sort(rng.choice(len(x), KMEANS_FIT_SAMPLE, False))]
    k = max(1, min(k, len(sample)))
    sample_sq = _sq_norms(sample)

    def sq_distances_to(i: int) -> np.ndarray:
        return np.maximum(sample_sq - 2.0 * (sample @ sample[i]) + sample_sq[i], 0.0)

    seeds, _ = greedy_picks(k, np.full(len(sample), np.inf), sq_distances_to, d2_sampler(rng),
                            first=int(rng.integers(len(sample))))
    centers = sample[seeds].copy()
    labels = None
    for _ in range(LLOYD_ITERATIONS):
        new_labels, _ = nearest_center(sample, centers)
        if labels is not None and np.array_equal(labels, new_labels):
            break
        labels = new_labels
        counts = np.bincount(labels, minlength=k)
        sums = np.zeros_like(centers)
        np.add.at(sums, labels, sample)
        filled = counts > 0  # an empty cluster keeps its previous center
        centers[filled] = sums[filled] / counts[filled, None]
    return centers


@register
class CoreSet(Strategy):
    """Core-set by k-center greedy (Sener & Savarese, "Active Learning for Convolutional Neural Networks:
    A Core-Set Approach", ICLR 2018): repeatedly pick
    i* = argmax_{i in U} min_{j in L u S} ||h_i - h_j||.

    Priority: the first m = min(N, clip(b, 64, 1000)) picks in pick order, then the rest by their final
    min-distance delta_i to L u S. With no labeled set, the first pick is the point farthest from the
    pool's mean embedding (deterministic). Cost O((L + m) N D) time, O(N) extra memory.
    """

    name = "coreset"

    def score(self, outputs: PoolOutputs) -> np.ndarray:
        h = _as_float32(outputs.embeddings)
        h_sq = _sq_norms(h)
        initial = min_sq_distances(h, outputs.labeled_embeddings)
        first = None
        if len(outputs.labeled_embeddings) == 0:
            centered = h - h.mean(axis=0, dtype=np.float64).astype(np.float32)
            first = int(np.argmax(_sq_norms(centered)))

        def sq_distances_to(i: int) -> np.ndarray:
            return np.maximum(h_sq - 2.0 * (h @ h[i]) + h_sq[i], 0.0)

        picks, gains = greedy_picks(greedy_pick_count(outputs), initial, sq_distances_to,
                                    lambda g: int(np.argmax(g)), first=first)
        return tiered_priority(picks, gains)


@register
class KMeansSampling(Strategy):
    """k-means sampling, the representativeness baseline of the DeepAL toolkit (Huang, arXiv 2111.15258,
    2021) and of Zhan et al., "A Comparative Survey of Deep Active Learning" (arXiv 2203.13450, 2022):
    cluster the pool embeddings into k = min(N, clip(b, 10, 500)) clusters and label the sample nearest each
    centroid.

    Priority by cluster-mass tiering (spec 7.1, option 3): each cluster's centroid-nearest representative,
    ordered by cluster size (ties: nearer to its centroid first); then every other sample ordered by
    -||h_i - mu_c(i)||, the most central first.
    """

    name = "kmeans"

    def score(self, outputs: PoolOutputs) -> np.ndarray:
        rng = np.random.default_rng(outputs.seed)
        k = min(outputs.size, int(np.clip(outputs.batch_size, MIN_KMEANS_CLUSTERS, MAX_KMEANS_CLUSTERS)))
        centers = kmeans_centers(outputs.embeddings, k, rng)
        labels, sq_dist = nearest_center(outputs.embeddings, centers)
        by_cluster_then_distance = np.lexsort((sq_dist, labels))
        is_first = np.ones(len(labels), dtype=bool)
        is_first[1:] = labels[by_cluster_then_distance][1:] != labels[by_cluster_then_distance][:-1]
        representatives = by_cluster_then_distance[is_first]
        sizes = np.bincount(labels, minlength=len(centers))[labels[representatives]]
        representatives = representatives[np.lexsort((sq_dist[representatives], -sizes))]
        return tiered_priority(representatives, -sq_dist)


@register
class Badge(Strategy):
    """BADGE (Ash, Zhang, Krishnamurthy, Langford & Agarwal, "Deep Batch Active Learning by Diverse,
    Uncertain Gradient Lower Bounds", ICLR 2020): k-means++ seeding (D^2 sampling) on the gradient
    embeddings g_i = (p_i - e_yhat_i) (x) h_i of the last layer, yhat_i = argmax p_i.

    Distances use the factorization, never the N x (D*C) matrix of gradient embeddings:
    ||g_a - g_b||^2 = ||u_a||^2 ||h_a||^2 + ||u_b||^2 ||h_b||^2 - 2 <u_a, u_b> <h_a, h_b>, u = p - e_yhat,
    so each step costs O(N (C + D)). The first pick is the largest ||g||, as in the authors' code; the
    sampling is seeded by ``outputs.seed``. Priority: the first m = min(N, clip(b, 64, 1000)) picks in order,
    then the rest by their final D^2 (distance to the nearest pick, squared).
    """

    name = "badge"

    def score(self, outputs: PoolOutputs) -> np.ndarray:
        u, h = gradient_embedding_factors(outputs.probs, outputs.embeddings)
        g_sq = _sq_norms(u) * _sq_norms(h)
        rng = np.random.default_rng(outputs.seed)
        picks, gains = greedy_picks(greedy_pick_count(outputs), np.full(outputs.size, np.inf),
                                    lambda i: gradient_sq_distances_to(u, h, i, g_sq), d2_sampler(rng),
                                    first=int(np.argmax(g_sq)))
        return tiered_priority(picks, gains)


def gradient_embedding_factors(probs: np.ndarray, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two factors of BADGE's gradient embedding g_i = u_i (x) h_i: u = p - e_argmax(p), and h."""
    u = np.array(probs, dtype=np.float64)
    u[np.arange(len(u)), u.argmax(axis=1)] -= 1.0
    return u, np.asarray(embeddings, dtype=np.float64)


def gradient_sq_distances_to(
    u: np.ndarray, h: np.ndarray, i: int, g_sq: np.ndarray | None = None
) -> np.ndarray:
    """||g_a - g_i||^2 for every a, without forming g: ||u_a||^2 ||h_a||^2 + ||u_i||^2 ||h_i||^2
    - 2 <u_a, u_i> <h_a, h_i>, in O(N (C + D)). ``g_sq`` (= ||u||^2 ||h||^2) may be passed precomputed."""
    if g_sq is None:
        g_sq = _sq_norms(u) * _sq_norms(h)
    return np.maximum(g_sq + g_sq[i] - 2.0 * (u @ u[i]) * (h @ h[i]), 0.0)


def typicality(x: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """TypiClust typicality within each cluster: 1 / mean ||x_i - x_j|| over the K = 20 nearest other
    members j of i's cluster (fewer in small clusters; 0 for a singleton).

    To stay linear in N, a cluster larger than 1024 points measures its neighbours among a seeded sample
    of 1024 of its members; this keeps the density order within a cluster, at a coarser scale.
    """
    x = _as_float32(x)
    x_sq, x_times_minus_2 = _sq_norms(x), -2.0 * x
    result = np.zeros(len(x), dtype=np.float64)
    reference_position = np.full(len(x), -1, dtype=np.int64)
    members_by_cluster = np.split(np.argsort(labels, kind="stable"), np.cumsum(np.bincount(labels))[:-1])
    for members in members_by_cluster:
        if len(members) < 2:
            continue
        if len(members) <= TYPICLUST_REFERENCE_CAP:
            reference = members
        else:
            reference = np.sort(rng.choice(members, TYPICLUST_REFERENCE_CAP, replace=False))
        reference_position[reference] = np.arange(len(reference))
        neighbours = min(TYPICLUST_NEIGHBOURS, len(reference) - 1)
        for r in range(0, len(members), ROW_BLOCK):
            rows = members[r : r + ROW_BLOCK]
            d = _shifted_sq_distances(x[rows], x_times_minus_2[reference], x_sq[reference])
            in_reference = np.flatnonzero(reference_position[rows] >= 0)
            d[in_reference, reference_position[rows[in_reference]]] = np.inf  # not its own neighbour
            nearest = np.partition(d, neighbours - 1, axis=1)[:, :neighbours] + x_sq[rows, None]
            result[rows] = 1.0 / (np.sqrt(np.maximum(nearest, 0.0)).mean(axis=1) + 1e-12)
        reference_position[reference] = -1
    return result


@register
class TypiClust(Strategy):
    """TypiClust (Hacohen, Dekel & Weinshall, "Active Learning on a Budget: Opposite Strategies Suit High
    and Low Budgets", ICML 2022): cluster labeled + pool embeddings into min(L + b, 500) k-means clusters;
    from each cluster that holds no labeled point ("uncovered"), label its most typical point, where
    typicality(x) = 1 / mean distance to its K = 20 nearest neighbours in the cluster.

    Priority: the representatives of uncovered clusters of at least 5 points (the paper's
    MIN_CLUSTER_SIZE), largest cluster first; then every other pool sample by typicality. With no labeled
    set every cluster is uncovered.
    """

    name = "typiclust"

    def score(self, outputs: PoolOutputs) -> np.ndarray:
        rng = np.random.default_rng(outputs.seed)
        n, n_labeled = outputs.size, len(outputs.labeled_embeddings)
        points = np.concatenate([_as_float32(outputs.embeddings), _as_float32(outputs.labeled_embeddings)])
        k = min(n_labeled + outputs.batch_size, TYPICLUST_MAX_CLUSTERS)
        labels, _ = nearest_center(points, kmeans_centers(points, k, rng))
        sizes = np.bincount(labels)
        covered = np.zeros(len(sizes), dtype=bool)
        covered[labels[n:]] = True
        pool_labels = labels[:n]
        pool_typicality = typicality(points, labels, rng)[:n]
        eligible = np.flatnonzero(~covered[pool_labels] & (sizes[pool_labels] >= TYPICLUST_MIN_CLUSTER_SIZE))
        by_cluster_then_typicality = eligible[np.lexsort((-pool_typicality[eligible], pool_labels[eligible]))]
        is_first = np.ones(len(by_cluster_then_typicality), dtype=bool)
        cluster_of = pool_labels[by_cluster_then_typicality]
        is_first[1:] = cluster_of[1:] != cluster_of[:-1]
        representatives = by_cluster_then_typicality[is_first]
        representatives = representatives[
            np.lexsort((-pool_typicality[representatives], -sizes[pool_labels[representatives]]))
        ]
        return tiered_priority(representatives, pool_typicality)
