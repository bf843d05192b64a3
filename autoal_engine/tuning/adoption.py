"""Guarded adoption: the tuning's winner replaces the incumbent configuration only when it is clearly better.

Adopted iff mean_CV(winner) - mean_CV(incumbent) > se(incumbent), with se = sd of the incumbent's fold
scores / sqrt(number of folds): a challenger within one standard error of the incumbent is noise on a few
hundred labels (a probe on digits found the tuned pipeline losing to the default in 8 of 40 runs without
this rule; ../shared/docs/tuning-notes.md section 2). Both are scored on the same folds at the same epochs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Score:
    mean: float
    se: float

    @classmethod
    def of(cls, fold_scores: np.ndarray) -> Score:
        scores = np.asarray(fold_scores, dtype=float)
        se = float(scores.std(ddof=1) / np.sqrt(len(scores))) if len(scores) > 1 else 0.0
        return cls(float(scores.mean()), se)


@dataclass(frozen=True)
class Decision:
    adopted: bool
    reason: str


def decide(incumbent: Score | None, winner: Score | None, winner_is_incumbent: bool) -> Decision:
    if incumbent is None:
        return Decision(False, "the incumbent's evaluation did not finish within the budget: kept")
    if winner is None or winner_is_incumbent:
        return Decision(False, "no challenger completed with a better score: the incumbent is kept")
    margin = winner.mean - incumbent.mean
    if margin > incumbent.se:
        return Decision(True, f"beats the incumbent by {margin:+.4f} > its CV standard error {incumbent.se:.4f}")
    return Decision(False, f"{margin:+.4f} over the incumbent is within its CV standard error {incumbent.se:.4f}")
