"""Learning-curve metrics: normalized AUBC, labels or cost to reach a target, paired differences."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def normalized_aubc(labels: np.ndarray, accuracy: np.ndarray) -> float:
    """Area under the budget curve: trapz(accuracy, labels) / (labels[-1] - labels[0]).

    A curve that stays at accuracy a scores a; the initial set's labels are not counted as budget. A single
    point (no queries) scores its accuracy.
    """
    labels = np.asarray(labels, dtype=np.float64)
    accuracy = np.asarray(accuracy, dtype=np.float64)
    if len(labels) != len(accuracy) or len(labels) == 0:
        raise ValueError("labels and accuracy must be non-empty and of equal length")
    span = labels[-1] - labels[0]
    if span <= 0:
        return float(accuracy[-1])
    widths = np.diff(labels)
    return float(np.sum(widths * (accuracy[1:] + accuracy[:-1]) / 2.0) / span)


def first_reaching(x: np.ndarray, accuracy: np.ndarray, target: float) -> float | None:
    """The smallest x (labels or cost) at which accuracy first reaches ``target``; None if it never does."""
    reached = np.flatnonzero(np.asarray(accuracy) >= target - 1e-12)
    return float(np.asarray(x)[reached[0]]) if len(reached) else None


@dataclass
class Paired:
    """A paired comparison over seeds: mean and std of (a - b), and how often a > b."""

    mean: float
    std: float
    wins: int
    n: int


def paired_difference(a: np.ndarray, b: np.ndarray) -> Paired:
    """Compare two per-seed metric arrays of equal length (same seeds, same order)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError("paired_difference needs two non-empty 1-d arrays of the same length")
    diff = a - b
    std = float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
    return Paired(float(diff.mean()), std, int((diff > 0).sum()), len(diff))


def paired(a: Any, b: Any) -> Paired | None:
    """Paired AUBC difference a - b of two strategies' curves (``seeds``, ``aubc``) over the seeds both have."""
    common = sorted(set(a.seeds) & set(b.seeds))
    if not common:
        return None
    pick = lambda c: c.aubc[[c.seeds.index(s) for s in common]]  # noqa: E731
    return paired_difference(pick(a), pick(b))


def cost_saved(strategy_cost: float | None, reference_cost: float | None) -> float | None:
    """Fraction of the reference's cost saved when both reached the target: 1 - strategy / reference."""
    if strategy_cost is None or reference_cost is None or reference_cost <= 0:
        return None
    return 1.0 - strategy_cost / reference_cost
