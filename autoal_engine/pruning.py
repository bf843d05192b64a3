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

**Reward: simulated gain** (``reward = "simulated_gain"``; the held-out loss reduction the issue names, in
the spirit of ALBL's reward for the strategy that learns most: Hsu & Lin, "Active Learning by Learning",
AAAI 2015, and of the paper's own simulated AL round). The class-diversity reward says whose picks spread
over the classes, not whose picks the model learns from. This one asks the labeled set: the two cross-fitted
FitNets of the held-out accuracy, each trained on one stratified half S of the labels, see the other half
split again (stratified) into a simulated pool P and an evaluation set E. Candidate k picks its top-m of P
(m = min(b, |P| / 2), scored by the FitNet with S as the labeled set); a proxy learner, a logistic
regression on the FitNet's embeddings, is trained on S and on S + picks_k, and

    r_k = Brier(S) - Brier(S + picks_k)    on E,    Brier = mean_i sum_c (p_ic - 1[y_i = c])^2

averaged over four simulated rounds (each FitNet's half is split in two, and each part is the pool once
and the evaluation set once). The Brier score is a proper score of the probabilities, like the log loss,
but bounded (in [0, 2]), so one confident mistake of the proxy does not decide a round. A logistic
regression, not the FitNet retrained 2K times a round, keeps it at a fraction of a second; the FitNets are
the ones the search trains (with the search on they are shared). It needs images, so the fast path keeps
the last full fit's decision.

**Reward: expected error reduction** (``reward = "expected_error_reduction"``; Roy & McCallum, "Toward
Optimal Active Learning through Sampling Estimation of Error Reduction", ICML 2001). The simulated gain
needs a simulated pool, and one cut from 20-300 labels is so small that every candidate's top half of it is
nearly the same set. This reward judges each candidate's real top-b of the real pool instead, by how much
labeling them would lower the proxy's expected error on the pool:

    E(L)  = mean_{x in U} (1 - max_c p_L(c | x))           U: up to 1,000 pool items (seeded)
    r_k   = E(L) - (1/S) sum_s E(L + (top_b(k), y^s))      y^s_i ~ p(. | x_i), the task model's belief

with p_L the standardized logistic regression on the task model's embeddings trained on L, and S = 3 label
draws per candidate. Picks the model is already sure of change nothing (r near 0), picks in one outlier
corner move few items of U, and picks on a boundary that many items share move many.

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
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

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


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """mean_i sum_c (p_ic - 1[y_i = c])^2, in [0, 2]."""
    onehot = np.eye(probs.shape[1])[np.asarray(labels, dtype=np.int64)]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def proxy_probabilities(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, n_classes: int) -> np.ndarray:
    """(N, n_classes) class probabilities of a standardized logistic regression trained on (train_x, train_y);
    a class it never saw gets 0, and one class alone is predicted with certainty."""
    train_y = np.asarray(train_y, dtype=np.int64)
    probs = np.zeros((len(test_x), n_classes))
    seen = np.unique(train_y)
    if len(seen) == 1:
        probs[:, seen[0]] = 1.0
        return probs
    proxy = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=300)).fit(train_x, train_y)
    probs[:, proxy.classes_] = proxy.predict_proba(test_x)
    return probs


def simulated_gain_rewards(pool_scores: np.ndarray, pool_x: np.ndarray, pool_y: np.ndarray, seed_x: np.ndarray,
                           seed_y: np.ndarray, eval_x: np.ndarray, eval_y: np.ndarray, picks: int,
                           n_classes: int) -> np.ndarray:
    """r_k = Brier(S) - Brier(S + top_m(k)) on E (the module docstring), for each column k of the (P, K) raw
    candidate scores of the simulated pool (higher = label first; ties broken by index)."""
    pool_scores = np.asarray(pool_scores)
    if pool_scores.ndim != 2 or len(pool_scores) != len(pool_x) or len(pool_x) != len(pool_y):
        raise ValueError(f"pool_scores: expected (P, K) with P = {len(pool_x)} = len(pool_y); got shape "
                         f"{pool_scores.shape} and {len(pool_y)} labels")
    m = min(int(picks), len(pool_x))
    if m < 1 or len(eval_y) == 0:
        raise ValueError(f"picks and eval_y: need at least one pick and one evaluation item; got {m} and "
                         f"{len(eval_y)}")
    before = brier_score(proxy_probabilities(seed_x, seed_y, eval_x, n_classes), eval_y)
    rewards = []
    for column in pool_scores.T:
        chosen = np.argsort(-column, kind="stable")[:m]
        x = np.concatenate([seed_x, pool_x[chosen]])
        y = np.concatenate([seed_y, pool_y[chosen]])
        rewards.append(before - brier_score(proxy_probabilities(x, y, eval_x, n_classes), eval_y))
    return np.asarray(rewards)


def expected_error(probs: np.ndarray) -> float:
    """mean_x (1 - max_c p(c | x)): the expected 0-1 error of the arg-max prediction under p itself."""
    return float(np.mean(1.0 - probs.max(axis=1)))


def expected_error_reduction_rewards(scores: np.ndarray, embeddings: np.ndarray, probs: np.ndarray,
                                     labeled_x: np.ndarray, labeled_y: np.ndarray, picks: int, seed: int,
                                     draws: int = 3, evaluation: int = 1000) -> np.ndarray:
    """r_k = E(L) - (1/S) sum_s E(L + (top_b(k), y^s)) (the module docstring), for each column k of the (N, K)
    raw candidate scores of the pool (higher = label first; ties broken by index); ``probs`` (N, C): the
    task model's probabilities, from which the picks' labels are drawn."""
    scores, probs = np.asarray(scores), np.asarray(probs, dtype=np.float64)
    if scores.ndim != 2 or not len(scores) == len(embeddings) == len(probs):
        raise ValueError(f"scores: expected (N, K) with N = {len(embeddings)} = len(probs); got shape {scores.shape} "
                         f"and {len(probs)} rows of probabilities")
    n_classes = probs.shape[1]
    rng = np.random.default_rng(seed)
    b = min(int(picks), len(scores))
    if b < 1:
        return np.zeros(scores.shape[1])
    evaluated = embeddings[np.sort(rng.permutation(len(embeddings))[:evaluation])]
    before = expected_error(proxy_probabilities(labeled_x, labeled_y, evaluated, n_classes))
    cumulative = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    rewards = []
    for column in scores.T:
        chosen = np.argsort(-column, kind="stable")[:b]
        after = []
        for _ in range(draws):
            drawn = (rng.random(b)[:, None] > cumulative[chosen]).sum(axis=1).clip(0, n_classes - 1)
            x = np.concatenate([labeled_x, embeddings[chosen]])
            y = np.concatenate([np.asarray(labeled_y, dtype=np.int64), drawn])
            after.append(expected_error(proxy_probabilities(x, y, evaluated, n_classes)))
        rewards.append(before - float(np.mean(after)))
    return np.asarray(rewards)


@dataclass
class PruningDecision:
    """This round's rewards, the reward history the next fit continues, and the active candidates."""

    rewards: np.ndarray | None  # (K,) this round's reward of each candidate; None: no new rewards this round
    history: list[list[float]]  # the last ``window`` rounds' rewards, oldest first, this round's last
    active: np.ndarray  # (K,) bool: in this round's mixture

    def to_dict(self, names: tuple[str, ...]) -> dict:
        return {
            "rewards": None if self.rewards is None else
            {n: round(float(r), 5) for n, r in zip(names, self.rewards, strict=True)},
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


def decide(previous: list[list[float]] | None, rewards: np.ndarray | None, config: PruningConfig,
           n_candidates: int) -> PruningDecision:
    """Append this round's ``rewards`` to the ``previous`` history (ignored when its width differs from
    ``n_candidates``: the candidate list changed) and apply the rule; ``rewards`` None: the rule on the
    history as it is (a round with nothing to measure)."""
    rows = [list(map(float, row)) for row in previous or [] if len(row) == n_candidates]
    if rewards is not None:
        rewards = np.asarray(rewards, dtype=np.float64)
        if len(rewards) != n_candidates:
            raise ValueError(f"rewards: expected {n_candidates} (one per candidate); got {len(rewards)}")
        rows.append(rewards.tolist())
    history = rows[-config.window:]
    active = (active_candidates(np.asarray(history), config) if history
              else np.ones(n_candidates, dtype=bool))
    return PruningDecision(rewards, history, active)


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
