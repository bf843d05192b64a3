"""Candidate active-learning strategies: one small class each, looked up by name.

Importing this package registers every built-in strategy.
"""

from autoal_engine.strategies import baseline, diversity, learned, uncertainty  # noqa: F401  (registers them)
from autoal_engine.strategies.base import (
    STRATEGIES,
    Strategy,
    check_strategy_names,
    make_strategy,
    needs_mc_dropout,
    percentile_rank,
    register,
    score_matrix,
)

__all__ = [
    "STRATEGIES",
    "Strategy",
    "check_strategy_names",
    "make_strategy",
    "needs_mc_dropout",
    "percentile_rank",
    "register",
    "score_matrix",
]
