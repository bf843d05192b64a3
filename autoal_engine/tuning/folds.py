"""Repeated stratified k-fold splits of a small labeled set, for scoring model configurations.

k = min(``folds``, the smallest count among classes with >= 2 labels), so that every test fold holds every
class that has at least two labels. Items of classes with a single label are never tested: they join the
training side of every fold. k < 2 (no class has two labels): no folds, no tuning.
Splits come from scikit-learn's ``RepeatedStratifiedKFold``.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import RepeatedStratifiedKFold


def fold_count(labels: np.ndarray, folds: int) -> int:
    counts = np.bincount(labels)
    counts = counts[counts >= 2]
    if len(counts) < 2:
        return 0
    return int(min(folds, counts.min()))


def cv_folds(labels: np.ndarray, folds: int, repeats: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train indices, test indices) pairs, k * repeats of them; [] when fewer than 2 folds are possible."""
    k = fold_count(labels, folds)
    if k < 2:
        return []
    counts = np.bincount(labels)
    single = np.flatnonzero(counts[labels] == 1)
    split = np.flatnonzero(counts[labels] >= 2)
    splitter = RepeatedStratifiedKFold(n_splits=k, n_repeats=repeats, random_state=seed)
    pairs = []
    for train, test in splitter.split(np.zeros(len(split)), labels[split]):
        pairs.append((np.sort(np.concatenate([split[train], single])), np.sort(split[test])))
    return pairs
