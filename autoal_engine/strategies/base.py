"""Strategy interface and registry.

A candidate strategy is one small class with one public method, ``score(outputs)``, returning one float
per pool sample where a higher score means "label first". Every strategy reads the same `PoolOutputs`,
computed once per pool, so strategies are interchangeable and cheap to combine (the baal / scikit-activeml
pattern). Register a new one with the ``@register`` decorator; ``make_strategy(name)`` looks it up.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from scipy.stats import rankdata

from autoal_engine.pool_outputs import PoolOutputs

STRATEGIES: dict[str, type[Strategy]] = {}


class Strategy(ABC):
    """A per-sample acquisition score; higher = label first."""

    name: ClassVar[str]
    uses_mc_dropout: ClassVar[bool] = False  # True when the score reads the MC-dropout digest

    @abstractmethod
    def score(self, outputs: PoolOutputs) -> np.ndarray:
        """Return an (N,) float array of acquisition scores, higher = label first."""


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: add a strategy to the registry under ``cls.name``."""
    if cls.name in STRATEGIES:
        raise ValueError(f"strategy {cls.name!r} is registered twice")
    STRATEGIES[cls.name] = cls
    return cls


def make_strategy(name: str) -> Strategy:
    """Instantiate a registered strategy; unknown names raise ValueError listing the known ones."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; known strategies: {', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[name]()


def check_strategy_names(names: Sequence[str]) -> None:
    """Raise ValueError for an empty list, a duplicate or an unknown name."""
    if len(names) == 0:
        raise ValueError("strategies: at least one strategy is needed")
    if len(set(names)) != len(names):
        raise ValueError(f"strategies: duplicate names in {list(names)}")
    for name in names:
        make_strategy(name)


def needs_mc_dropout(names: Sequence[str]) -> bool:
    """Whether any of these strategies reads MC-dropout samples (otherwise the pool pass skips them)."""
    return any(STRATEGIES[name].uses_mc_dropout for name in names)


def percentile_rank(scores: np.ndarray) -> np.ndarray:
    """Map scores to [0, 1] by rank (ties share their average rank); 1 = the highest score.

    This is the scale-free normalization of spec section 7.2 that makes candidates comparable.
    A single sample gets 1.0.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) <= 1:
        return np.ones(len(scores))
    return (rankdata(scores, method="average") - 1.0) / (len(scores) - 1.0)


def score_matrix(names: Sequence[str], outputs: PoolOutputs) -> np.ndarray:
    """Raw scores of several strategies side by side: an (N, K) array, column k for names[k]."""
    columns = []
    for name in names:
        scores = np.asarray(make_strategy(name).score(outputs), dtype=np.float64)
        if scores.shape != (outputs.size,):
            raise ValueError(f"strategy {name!r} returned shape {scores.shape}, expected ({outputs.size},)")
        columns.append(np.nan_to_num(scores, nan=0.0, posinf=0.0, neginf=0.0))
    return np.stack(columns, axis=1)
