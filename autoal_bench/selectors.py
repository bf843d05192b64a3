"""The engine's own query strategies as benchmark selectors: one candidate, AutoAL and its variants.

Each labels the top-b of the engine's ranking of the unlabeled pool (``Ranking.order``). A single
candidate S runs ``EngineConfig(strategies=(S,))`` with the search off (the mixture is then S's ranking).
``autoal`` is the engine's configuration as given (default: every candidate, equal weights, the diverse
head of the queue), cost-blind (``cost.gamma = 0``). Two variants differ from it in the strategy weights
only: ``autoal_search`` learns them (the AutoAL search on) and ``autoal_uniform`` keeps them equal (the
search off), whatever the base configuration says. ``autoal_cost`` is ``autoal`` fitted with the labeled
items' observed seconds and ranked by value per predicted cost (the configured ``cost.gamma``);
``autoal_cost_known`` ranks with every pool item's seconds given up front (the engine's ``known_costs``, as a
project whose task data carries each task's expected seconds), here the simulation's own seconds: no prediction
and no gate, so it is the ceiling of what a perfect cost model could give.
``autoal_pruned`` prunes the candidate pool each round (``pruning.enabled``, autoal_engine/pruning.py) and
mixes the survivors with equal weights; ``autoal_pruned_search`` runs the AutoAL search over the survivors.
``autoal_paper`` is the released AutoAL code's choices (``EngineConfig.paper()``: its 7 candidates, binary
votes, raw SearchNet logits, the top-b, the search on) on the base configuration's task model, so the
report shows what the corrections of docs/engine.md are worth.

``Tuning`` wraps any of them to switch the model tuning on or off (``--tuning on|off``); a run whose
model is tuned is named ``<strategy>+tuned``, so tuned and fixed runs of a strategy sit side by side.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from autoal_bench.simulate import RoundState
from autoal_engine.config import EngineConfig
from autoal_engine.strategies import STRATEGIES

AUTOAL = "autoal"
AUTOAL_COST = "autoal_cost"
AUTOAL_COST_KNOWN = "autoal_cost_known"
AUTOAL_UNIFORM = "autoal_uniform"
AUTOAL_SEARCH = "autoal_search"
AUTOAL_PAPER = "autoal_paper"
AUTOAL_PRUNED = "autoal_pruned"
AUTOAL_PRUNED_SEARCH = "autoal_pruned_search"
AUTOAL_NAMES = (AUTOAL, AUTOAL_COST, AUTOAL_COST_KNOWN, AUTOAL_UNIFORM, AUTOAL_SEARCH, AUTOAL_PAPER, AUTOAL_PRUNED,
                AUTOAL_PRUNED_SEARCH)


class EngineSelector:
    """Top-b of the engine's ranking under a given candidate set, search switch, pruning switch and cost weight;
    with ``known_costs`` the ranking is given every pool item's true seconds (a sanity check that reads the
    simulation's oracle on purpose)."""

    def __init__(self, name: str, strategies: tuple[str, ...] | None, search: bool | None,
                 cost_aware: bool, pruning: bool | None = None, known_costs: bool = False) -> None:
        self.name = name
        self.strategies = strategies  # None: the base configuration's candidate set
        self.search = search  # None: the base configuration's search.enabled
        self.pruning = pruning  # None: the base configuration's pruning.enabled
        self.uses_costs = cost_aware
        self.known_costs = known_costs

    def engine_config(self, base: EngineConfig) -> EngineConfig:
        config = copy.deepcopy(base)
        if self.strategies is not None:
            config.strategies = self.strategies
        if self.search is not None:
            config.search.enabled = self.search
        if self.pruning is not None:
            config.pruning.enabled = self.pruning
        if not self.uses_costs:
            config.cost.gamma = 0.0
        config.validate()
        return config

    def start(self, n_pool: int, initial: np.ndarray, budget: int, seed: int) -> None:
        """Stateless between rounds: every round retrains and re-ranks."""

    def select(self, state: RoundState) -> tuple[np.ndarray, dict[str, Any]]:
        known = state.costs[state.unlabeled] if self.known_costs else None
        if state.pool_vectors is not None:  # the fast path: rank the cached vectors
            ranking = state.engine.rank_vectors(state.pool_vectors[state.unlabeled], known)
        else:
            ranking = state.engine.rank(state.pool_inputs[state.unlabeled], known)
        picks = state.unlabeled[ranking.order[: state.batch_size]]
        extra: dict[str, Any] = {}
        config = state.engine.config
        if config.search.enabled or config.pruning.enabled:  # learned or pruned weights (equal ones say nothing)
            weights = ranking.mean_strategy_weights.items()
            extra["mean_strategy_weights"] = {name: round(float(w), 5) for name, w in weights}
        regime = state.engine.report.get("regime")
        if regime is not None and len(config.strategies) > 1:  # a mixture: the regime it ranked in
            extra["regime"] = {"pool_confidence": round(regime["pool_confidence"], 4), "unsure": regime["unsure"]}
        if ranking.active is not None:  # pruning ran (it is on and there are several candidates)
            extra["active_candidates"] = list(ranking.active_names)
            extra["pruning_rewards"] = dict((state.engine.report.get("pruning") or {}).get("rewards") or {})
        return picks, extra


class PaperSelector(EngineSelector):
    """The released AutoAL (``EngineConfig.paper()``) with the base configuration's task model and training."""

    def __init__(self) -> None:
        super().__init__(AUTOAL_PAPER, None, search=True, cost_aware=False)

    def engine_config(self, base: EngineConfig) -> EngineConfig:
        config = EngineConfig.paper()
        for section in ("model", "holdout", "cost", "tuning"):
            setattr(config, section, copy.deepcopy(getattr(base, section)))
        config.search.iterations = base.search.iterations
        config.batch_size, config.seed = base.batch_size, base.seed
        config.search.enabled = True
        config.cost.gamma = 0.0
        config.validate()
        return config


def engine_selector(name: str) -> EngineSelector:
    """One of ``AUTOAL_NAMES`` or the name of a registered candidate strategy (e.g. ``margin``)."""
    if name == AUTOAL:
        return EngineSelector(AUTOAL, None, search=None, cost_aware=False)
    if name == AUTOAL_COST:
        return EngineSelector(AUTOAL_COST, None, search=None, cost_aware=True)
    if name == AUTOAL_COST_KNOWN:
        return EngineSelector(AUTOAL_COST_KNOWN, None, search=None, cost_aware=True, known_costs=True)
    if name == AUTOAL_UNIFORM:
        return EngineSelector(AUTOAL_UNIFORM, None, search=False, cost_aware=False)
    if name == AUTOAL_SEARCH:
        return EngineSelector(AUTOAL_SEARCH, None, search=True, cost_aware=False)
    if name == AUTOAL_PAPER:
        return PaperSelector()
    if name == AUTOAL_PRUNED:
        return EngineSelector(AUTOAL_PRUNED, None, search=False, cost_aware=False, pruning=True)
    if name == AUTOAL_PRUNED_SEARCH:
        return EngineSelector(AUTOAL_PRUNED_SEARCH, None, search=True, cost_aware=False, pruning=True)
    if name in STRATEGIES:
        return EngineSelector(name, (name,), search=False, cost_aware=False)
    known = ", ".join([*AUTOAL_NAMES, *sorted(STRATEGIES)])
    raise ValueError(f"unknown strategy {name!r}; known: {known}")


TUNED_SUFFIX = "+tuned"
FAST_SUFFIX = "+fast"


def task_model(name: str) -> str:
    """The task model a run's strategy ran on, read off the suffix `Tuning` gives its name: '' (the fixed
    model), TUNED_SUFFIX, FAST_SUFFIX or both."""
    return name[name.index("+"):] if "+" in name else ""


class Tuning:
    """A selector with ``tuning.enabled`` set; named ``<name>+tuned`` when the tuning is on. With a
    ``backbone_growth`` the replay runs the backend's two speeds (simulate.TwoSpeed), the backbone trained
    again when the labels have grown by that factor; named ``...+fast``. None: a full fit every round."""

    def __init__(self, inner: Any, enabled: bool, backbone_growth: float | None = None) -> None:
        self.inner = inner
        self.enabled = enabled
        self.backbone_growth = backbone_growth
        fast = backbone_growth is not None
        self.name = inner.name + (TUNED_SUFFIX if enabled else "") + (FAST_SUFFIX if fast else "")
        self.uses_costs = inner.uses_costs

    def engine_config(self, base: EngineConfig) -> EngineConfig:
        config = self.inner.engine_config(base)
        config.tuning.enabled = self.enabled
        return config

    def start(self, n_pool: int, initial: np.ndarray, budget: int, seed: int) -> None:
        self.inner.start(n_pool, initial, budget, seed)

    def select(self, state: RoundState) -> tuple[np.ndarray, dict[str, Any]]:
        return self.inner.select(state)


def with_tuning(selector: Any, tuning: bool | None, base: EngineConfig,
                backbone_growth: float | None = None) -> Any:
    """``selector`` under ``--tuning`` (None: the base configuration's ``tuning.enabled``) and, with
    ``--fast-path``, the two speeds at ``backbone_growth`` (``--backbone-growth``)."""
    enabled = base.tuning.enabled if tuning is None else tuning
    if getattr(selector, "name", "") == "shallow" or not hasattr(selector, "engine_config"):
        return selector  # the shallow floor has no task model to tune; peers use their own models
    return Tuning(selector, enabled, backbone_growth)
