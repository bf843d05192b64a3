"""The strategy mixture: how K candidate scores become one benefit per pool item (the default ranking path).

For pool item i and candidate strategy k with raw score s_ik (higher = label first):

    r_ik = percentile rank of s_ik among the pool's items, in [0, 1]     (candidate_scores = "rank")
           or the binary vote 1[i in k's top max(2, ceil(t N))]           (candidate_scores = "vote", paper)
    pi_i = (1/K, ..., 1/K)                                               (equal weights, the default)
           or softmax_k(SearchNet(meta_i)) / its raw logits               (the AutoAL search, ``search.py``)
    z_i  = sum_k pi_ik r_ik
    benefit_i = g(z_i), the pool's expected loss at mixture score z      (equal weights, ``expected_loss_benefit``)
              = g(z_i), the search's calibrated expected loss             (``search.calibrated_benefit``)

Rank normalization makes scores of different scales comparable (spec section 7.2); with equal weights z is
the rank average of the candidates, a Borda count (de Borda 1781; used for rank aggregation by Dwork,
Kumar, Naor & Sivakumar, "Rank Aggregation Methods for the Web", WWW 2001). The votes and the raw-logit
weights are the released AutoAL code's choices (Wang, Zhan & Huang, "AutoAL: Automated Active Learning
with Differentiable Query Strategy Search", ICML 2025; spec section 3.3). The configuration is
``EngineConfig.mixture``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from autoal_engine.strategies import percentile_rank


def normalize_candidates(raw: np.ndarray, mode: str, ratio: float) -> np.ndarray:
    """Per-strategy normalization of an (N, K) raw score matrix into r (N, K), float32.

    ``rank``: r_ik = percentile rank of s_ik in its column, in [0, 1] (spec 7.2). ``vote``: r_ik = 1 if
    item i is in strategy k's top max(2, ceil(ratio * N)), else 0: the released code's binary vote (spec 3.3).
    """
    if mode == "rank":
        return np.stack([percentile_rank(column) for column in raw.T], axis=1).astype(np.float32)
    picks = min(len(raw), max(2, math.ceil(ratio * len(raw))))
    votes = np.zeros(raw.shape, dtype=np.float32)
    for k, column in enumerate(raw.T):
        votes[np.argsort(-column, kind="stable")[:picks], k] = 1.0
    return votes


def equal_weights(n: int, k: int) -> np.ndarray:
    """pi_ik = 1 / K for every item: the default mixture, an (N, K) float32 array."""
    return np.full((n, k), 1.0 / k, dtype=np.float32)


def mixture_weights(logits: torch.Tensor, weighting: str) -> torch.Tensor:
    """pi from per-item strategy logits: softmax over strategies (``"softmax"``), or the raw logits
    (``"logits"``, the released code)."""
    return torch.softmax(logits, dim=1) if weighting == "softmax" else logits


def mixture_scores(candidates: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """z_i = sum_k pi_ik r_ik. Uniform weights give the rank average of the candidates."""
    return (weights * candidates).sum(dim=1)


def mixture(candidates: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """z = sum_k pi_ik r_ik for numpy (N, K) arrays, as float64 (computed in float32 like the search)."""
    return mixture_scores(torch.from_numpy(candidates), torch.from_numpy(weights)).numpy().astype(np.float64)


def expected_loss_benefit(z: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """The benefit without the search: a ratio-scale value of each item, so that dividing it by seconds is
    value per second (spec 10.2: never divide percentile ranks by cost).

        g = isotonic regression (non-decreasing) of the model's expected 0-1 loss 1 - max_c p_ic on z
        benefit_i = g(z_i) + 0.05 * mean(g) * (z_i - min z) / (max z - min z) + 1e-12

    g(z) is the mean expected loss of the pool's items with a mixture score near z, the equal-weight
    counterpart of the search's isotonic calibration (`search.calibrated_benefit`); the small strictly
    increasing term keeps z's order where g is flat, so with cost ignored the queue is z's order exactly."""
    from sklearn.isotonic import IsotonicRegression

    z = np.asarray(z, dtype=np.float64)
    loss = 1.0 - np.asarray(probs, dtype=np.float64).max(axis=1)
    if len(z) < 2 or np.ptp(z) <= 0:
        return np.full(len(z), float(loss.mean()) if len(z) else 0.0) + 1e-12
    g = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(z, loss).predict(z)
    spread = (z - z.min()) / np.ptp(z)
    return np.maximum(g, 0.0) + 0.05 * max(float(g.mean()), 1e-6) * spread + 1e-12
