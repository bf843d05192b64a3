"""The engine's own query strategies as benchmark selectors: one candidate, AutoAL, cost-aware AutoAL.

Each labels the top-b of the engine's ranking of the unlabeled pool (``Ranking.order``). A single
candidate S runs ``EngineConfig(strategies=(S,))`` with the search off (the mixture is then S's ranking);
``autoal`` runs the default candidate set with the search on; both are cost-blind (``cost.gamma = 0``).
``autoal_uniform`` is the ablation without the search: the same candidates with equal weights (their
percentile-rank average), cost-blind; it shows what the learned weights add. ``autoal_cost`` is AutoAL
fitted with the labeled items' observed seconds and ranked by value per predicted cost (the configured
``cost.gamma``).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from autoal_engine.bench.simulate import RoundState
from autoal_engine.config import EngineConfig
from autoal_engine.strategies import STRATEGIES

AUTOAL = "autoal"
AUTOAL_COST = "autoal_cost"
AUTOAL_UNIFORM = "autoal_uniform"


class EngineSelector:
    """Top-b of the engine's ranking under a given candidate set, search switch and cost weight."""

    def __init__(self, name: str, strategies: tuple[str, ...] | None, search: bool, cost_aware: bool) -> None:
        self.name = name
        self.strategies = strategies  # None: the base configuration's candidate set
        self.search = search
        self.uses_costs = cost_aware

    def engine_config(self, base: EngineConfig) -> EngineConfig:
        config = copy.deepcopy(base)
        if self.strategies is not None:
            config.strategies = self.strategies
        config.search.enabled = self.search
        if not self.uses_costs:
            config.cost.gamma = 0.0
        config.validate()
        return config

    def start(self, n_pool: int, initial: np.ndarray, budget: int, seed: int) -> None:
        """Stateless between rounds: every round retrains and re-ranks."""

    def select(self, state: RoundState) -> tuple[np.ndarray, dict[str, Any]]:
        ranking = state.engine.rank(state.pool_inputs[state.unlabeled])
        picks = state.unlabeled[ranking.order[: state.batch_size]]
        extra: dict[str, Any] = {}
        if self.search:
            weights = ranking.mean_strategy_weights.items()
            extra["mean_strategy_weights"] = {name: round(float(w), 5) for name, w in weights}
        return picks, extra


def engine_selector(name: str) -> EngineSelector:
    """``autoal``, ``autoal_cost`` or the name of a registered candidate strategy (e.g. ``margin``)."""
    if name == AUTOAL:
        return EngineSelector(AUTOAL, None, search=True, cost_aware=False)
    if name == AUTOAL_COST:
        return EngineSelector(AUTOAL_COST, None, search=True, cost_aware=True)
    if name == AUTOAL_UNIFORM:
        return EngineSelector(AUTOAL_UNIFORM, None, search=False, cost_aware=False)
    if name in STRATEGIES:
        return EngineSelector(name, (name,), search=False, cost_aware=False)
    known = ", ".join([AUTOAL, AUTOAL_COST, AUTOAL_UNIFORM, *sorted(STRATEGIES)])
    raise ValueError(f"unknown strategy {name!r}; known: {known}")
