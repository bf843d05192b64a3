"""Adaptive pruning of the candidate pool: which candidates the mixture keeps this round.

Which candidates belong in the mixture is the AutoAL paper's open problem ("automated determination of the
optimal candidate set remains unaddressed"); with equal weights, a candidate far below random still gets
its 1/K of every vote. Pruning treats the candidates as competing arms and narrows the mixture to those
that earn their place, from a signal that needs no test labels.

**Reward: class diversity** (TAILOR: Zhang, Katz-Samuels, Nowak et al., "Algorithm Selection for Deep
Active Learning with Imbalanced Datasets", NeurIPS 2023). Each round, candidate k is judged by the b
items it alone would serve first, its top-b, and the classes y_hat the task model now predicts for them
(the labels those picks would receive, as far as the model can tell):

    c_ky = #{i in top_b(k) : y_hat_i = y}          its picks per class
    n_y  = labels of class y so far
    r_k  = (1 / b) sum_y c_ky / (n_y + c_ky)        in (0, 1]

r_k is concave in c_k: it is highest when the picks spread over the classes and go to the classes with
the fewest labels, and low for a candidate whose picks pile into one class (a model's confusion between
two classes, an outlier cluster) or into the classes that have most labels already. That is the failure
of the candidates far below random on Fashion-MNIST (uncertainty sampling concentrating on the shirt /
pullover / coat confusion). It does not measure informativeness within a class; the candidates that
survive are mixed by equal weights or the search, which do.

**Rule: action elimination** (Even-Dar, Mannor & Mansour, "Action Elimination and Stopping Conditions for
the Multi-Armed Bandit and Reinforcement Learning Problems", JMLR 2006). Over the last ``window`` rounds'
rewards, with mean m_k and standard error s_k = sd_k / sqrt(n):

    k stays active  <=>  m_k + z s_k >= (1 - tau) max_j (m_j - z s_j)

with tau = ``tolerance`` (0 by default: the plain rule; tau > 0 keeps a candidate whose rewards are
consistently but only slightly below the leader's, such as margin's on a balanced data set late in a run),
and at least ``min_active`` candidates stay (the best by m_k). Before ``warmup`` rounds of rewards every
candidate is active. Every candidate is scored and rewarded in every round, active or not (full
information, unlike a bandit that only sees the arm it pulls), so a pruned candidate comes back as soon as
its interval reaches the leader's again, and no labels are spent on exploration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autoal_engine.config import PruningConfig


def class_diversity_rewards(candidates: np.ndarray, predicted: np.ndarray, label_counts: np.ndarray,
                            batch_size: int) -> np.ndarray:
    """r_k = (1/b) sum_y c_ky / (n_y + c_ky) for each column k of the (N, K) normalized scores.

    ``predicted``: the model's class index of each pool item (N,); ``label_counts``: labels per class (C,);
    b = min(batch_size, N). Ties in a candidate's scores are broken by index (stable)."""
    candidates = np.asarray(candidates)
    predicted = np.asarray(predicted, dtype=np.int64)
    counts = np.asarray(label_counts, dtype=np.float64)
    if candidates.ndim != 2 or len(candidates) != len(predicted):
        raise ValueError(f"candidates: expected (N, K) with N = {len(predicted)}; got shape {candidates.shape}")
    if len(predicted) and (predicted.min() < 0 or predicted.max() >= len(counts)):
        raise ValueError("predicted: class indices must be in [0, len(label_counts))")
    b = min(int(batch_size), len(predicted))
    if b < 1:
        return np.zeros(candidates.shape[1])
    rewards = []
    for column in candidates.T:
        picks = np.argsort(-column, kind="stable")[:b]
        c = np.bincount(predicted[picks], minlength=len(counts)).astype(np.float64)
        rewards.append(float(np.sum(c / np.maximum(counts + c, 1.0))) / b)
    return np.asarray(rewards)


@dataclass
class PruningDecision:
    """This round's rewards, the reward history the next fit continues, and the active candidates."""

    rewards: np.ndarray  # (K,) this round's reward of each candidate
    history: list[list[float]]  # the last ``window`` rounds' rewards, oldest first, this round's last
    active: np.ndarray  # (K,) bool: in this round's mixture

    def to_dict(self, names: tuple[str, ...]) -> dict:
        return {
            "rewards": {n: round(float(r), 5) for n, r in zip(names, self.rewards, strict=True)},
            "active": [n for n, keep in zip(names, self.active, strict=True) if keep],
            "names": list(names),
            "history": [[round(float(r), 5) for r in row] for row in self.history],
        }


def active_candidates(history: np.ndarray, config: PruningConfig) -> np.ndarray:
    """The action-elimination rule of the module docstring on a (T, K) reward history (oldest first)."""
    history = np.asarray(history, dtype=np.float64)
    k = history.shape[1]
    if len(history) < max(1, config.warmup):
        return np.ones(k, dtype=bool)
    recent = history[-config.window:]
    mean = recent.mean(axis=0)
    spread = recent.std(axis=0, ddof=1) if len(recent) > 1 else np.zeros(k)
    error = config.confidence * spread / np.sqrt(len(recent))
    active = mean + error >= (1.0 - config.tolerance) * np.max(mean - error)
    keep = min(max(1, config.min_active), k)
    active[np.argsort(-mean, kind="stable")[:keep]] = True
    return active


def decide(previous: list[list[float]] | None, rewards: np.ndarray, config: PruningConfig) -> PruningDecision:
    """Append this round's ``rewards`` to the ``previous`` history (ignored when its width differs: the
    candidate list changed) and apply the rule."""
    rewards = np.asarray(rewards, dtype=np.float64)
    rows = [list(map(float, row)) for row in previous or [] if len(row) == len(rewards)]
    history = [*rows, rewards.tolist()][-config.window:]
    return PruningDecision(rewards, history, active_candidates(np.asarray(history), config))


def pruned_weights(weights: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Per-item weights with the pruned candidates' set to 0 and each row renormalized over the active ones
    (a row whose active weights are all 0 gets equal weights over them). Raw-logit weights (the released
    code's, which can be negative) are only zeroed: they were never normalized."""
    raw = np.asarray(weights, dtype=np.float32)
    if np.all(active):  # nothing pruned: the weights as they are (renormalizing would move them by rounding)
        return raw
    kept = np.where(np.asarray(active)[None, :], raw, 0.0).astype(np.float32)
    if raw.min(initial=0.0) < 0:
        return kept
    total = kept.sum(axis=1, keepdims=True)
    uniform = np.asarray(active, dtype=np.float32) / max(1, int(np.sum(active)))
    return np.where(total > 0, kept / np.where(total > 0, total, 1.0), uniform[None, :]).astype(np.float32)
