"""The result of ranking a pool: per-sample priority and everything needed to explain it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Ranking:
    """Arrays aligned with the ranked pool's order (row i = pool item i).

    ``priority`` is value per predicted cost scaled to [0, 1] (1 = label first). Label Studio serves the
    lowest prediction score first, so the backend stores ``score = 1 - priority``. ``order`` is every pool
    index from the highest priority to the lowest; ``top(k)`` the first k of them, the next items to serve.
    """

    priority: np.ndarray  # (N,) in [0, 1]
    informativeness: np.ndarray  # (N,) calibrated benefit: expected loss of the sample, >= 0
    predicted_cost: np.ndarray  # (N,) seconds
    predicted_label: np.ndarray  # (N,) class labels (as given to fit)
    probabilities: np.ndarray  # (N, C), columns in the order of ``classes``
    strategy_weights: np.ndarray  # (N, K) per-sample mixture weights, columns as ``strategy_names``
    strategy_names: tuple[str, ...]
    classes: tuple
    mean_strategy_weights: dict[str, float] = field(default_factory=dict)
    # (N, K) each candidate's normalized score of the item, columns as ``strategy_names``: its percentile
    # rank in [0, 1] (1 = the candidate alone would serve it first), or its 0/1 vote with candidate_scores "vote"
    candidate_scores: np.ndarray | None = None
    # (K,) bool: the candidates in this round's mixture (pruning); None: all of them
    active: np.ndarray | None = None

    @property
    def active_names(self) -> tuple[str, ...]:
        """The candidates in this round's mixture (all of them without pruning)."""
        if self.active is None:
            return tuple(self.strategy_names)
        return tuple(n for n, keep in zip(self.strategy_names, self.active, strict=True) if keep)

    @property
    def order(self) -> np.ndarray:
        """Pool indices from the highest priority to the lowest (stable for ties)."""
        return np.argsort(-self.priority, kind="stable")

    def top(self, k: int) -> np.ndarray:
        """The first ``k`` pool indices to serve, highest priority first: ``order[:k]``.

        ``k`` larger than the pool gives the whole order; ``k = 0`` an empty array; a negative or
        non-integer ``k`` raises ValueError."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise ValueError(f"k: expected an integer >= 0, got {k!r} ({type(k).__name__})")
        if k < 0:
            raise ValueError(f"k: must be >= 0, got {k}")
        return self.order[:k]

    def top_candidates(self, index: int, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` active candidates that score pool item ``index`` highest, with their scores: why it ranks
        high (a pruned candidate had no say in this round's order)."""
        if self.candidate_scores is None:
            return []
        scores = self.candidate_scores[index]
        best = np.argsort(-scores, kind="stable")
        if self.active is not None:
            best = best[np.asarray(self.active)[best]]
        best = best[:k]
        return [(self.strategy_names[j], float(scores[j])) for j in best]

    def __len__(self) -> int:
        return len(self.priority)
