"""Pool-based active learning replayed with oracle labels: the benchmark's loop.

For each seed: one stratified pool/test split and one random initial set, shared by every strategy (a
paired comparison). For each strategy, each round: train the task model on the labeled set (a fresh
`Engine`, the same model settings and the same per-round model seed for every strategy), measure test
accuracy, then ask the strategy's `Selector` for the next batch, label it with the oracle, and add its
cost. The test set is never queried. A run stops when ``budget`` labels (initial set included) are used.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from sklearn.model_selection import train_test_split

from autoal_bench.datasets import BenchDataset
from autoal_engine.config import EngineConfig
from autoal_engine.engine import Engine
from autoal_engine.tuning import TuningState

logger = logging.getLogger(__name__)

# engine settings that change only runs over several candidates (AutoAL); each such run records them. mixture and
# holdout were part of search before the engine moved them: results files of either layout compare equal
AUTOAL_SETTINGS = ("strategies", "mixture", "holdout", "search", "pruning", "batch_diversity", "diversity_prefilter",
                   "regime_confidence", "diversity_prefilter_unsure")
# engine settings a run may change for itself (``--tuning on|off``): each run records them, and results files
# that differ in them still resume and merge
RUN_SETTINGS = ("tuning",)


@dataclass
class RoundState:
    """What a selector sees after this round's task model is trained.

    ``oracle_labels`` and ``costs`` cover the whole pool: the simulation's oracle. Real strategies use only
    the entries of ``labeled``; sanity-check selectors may cheat on purpose.
    """

    engine: Engine  # trained on pool_inputs[labeled]
    pool_inputs: np.ndarray
    labeled: np.ndarray  # pool indices in the order they were labeled
    unlabeled: np.ndarray  # pool indices, ascending
    batch_size: int  # labels to pick this round
    round_index: int
    seed: int
    oracle_labels: np.ndarray
    costs: np.ndarray
    pool_vectors: np.ndarray | None = None  # the fast path: every pool item's cached vector under the backbone


class Selector(Protocol):
    """A query strategy in the loop: picks ``state.batch_size`` pool indices from ``state.unlabeled``."""

    name: str
    uses_costs: bool  # True: the engine is fitted with the labeled items' observed seconds

    def engine_config(self, base: EngineConfig) -> EngineConfig:
        """The engine configuration this strategy trains and ranks with (task model settings: ``base``'s)."""

    def start(self, n_pool: int, initial: np.ndarray, budget: int, seed: int) -> None:
        """Reset per-run state before the first round of a (seed, strategy) run."""

    def select(self, state: RoundState) -> tuple[np.ndarray, dict[str, Any]]:
        """Pool indices to label next, and extra per-round facts to record (e.g. mixture weights)."""


@dataclass
class ReplaySettings:
    """The replay protocol shared by every strategy."""

    init: int = 20
    batch: int = 20
    budget: int = 500
    test_fraction: float = 0.2
    max_test: int | None = 2000  # cap on the test set (stratified), to bound evaluation time
    # labels of a cost-aware run (it buys cheaper labels, so it needs more of them to reach the cost-blind
    # run's final accuracy); None: ``budget``
    cost_aware_budget: int | None = None

    def budget_for(self, selector: Selector) -> int:
        """The labels ``selector`` runs to: ``cost_aware_budget`` for a cost-aware one, else ``budget``."""
        return self.cost_aware_budget if selector.uses_costs and self.cost_aware_budget else self.budget

    def validate(self, n_items: int, n_classes: int) -> None:
        checks = [
            ("init", self.init >= 1),
            ("batch", self.batch >= 1),
            ("budget", self.budget > self.init),
            ("cost_aware_budget", self.cost_aware_budget is None or self.cost_aware_budget > self.init),
            ("test_fraction", 0.0 < self.test_fraction < 1.0),
            ("max_test", self.max_test is None or self.max_test >= n_classes),
        ]
        for name, ok in checks:
            if not ok:
                raise ValueError(f"benchmark setting {name!r} has an invalid value")
        n_pool = n_items - self.test_size(n_items)
        for name in ("budget", "cost_aware_budget"):
            value = getattr(self, name)
            if value is not None and value > n_pool:
                raise ValueError(f"benchmark setting {name!r} ({value}) exceeds the pool size ({n_pool})")

    def test_size(self, n_items: int) -> int:
        size = int(round(n_items * self.test_fraction))
        return min(size, self.max_test) if self.max_test is not None else size


@dataclass
class Split:
    """One seed's pool/test split (dataset indices) and initial labeled set (pool indices)."""

    pool: np.ndarray
    test: np.ndarray
    initial: np.ndarray

    def digest(self) -> str:
        """A short fingerprint of the test set, recorded to show every strategy of a seed used the same."""
        return hashlib.sha1(np.sort(self.test).astype(np.int64).tobytes()).hexdigest()[:12]


def make_split(labels: np.ndarray, protocol: ReplaySettings, seed: int) -> Split:
    """Stratified pool/test split and a uniformly random initial set, both drawn from ``seed``."""
    indices = np.arange(len(labels))
    pool, test = train_test_split(
        indices, test_size=protocol.test_size(len(labels)), stratify=labels, random_state=seed
    )
    pool, test = np.sort(pool), np.sort(test)
    rng = np.random.default_rng([seed, 1])
    initial = rng.choice(len(pool), size=protocol.init, replace=False)
    return Split(pool, test, initial)


@dataclass
class RoundRecord:
    round: int
    labels: int
    cost: float  # cumulative seconds of every label so far (initial set included)
    accuracy: float
    train_seconds: float  # the engine's fit minus the strategy search and the tuning (task model, FitNets)
    query_seconds: float  # choosing the batch: AutoAL's search during fit, ranking and selection
    tuning_seconds: float = 0.0  # the model tuning of this fit (0 when none ran)
    tuning: dict[str, Any] | None = None  # what the tuning did (tuning_summary), when one ran
    path: str | None = None  # with --fast-path: "full" (the backbone trained) or "fast" (the head refitted)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        record = {
            "round": self.round,
            "labels": self.labels,
            "cost": round(self.cost, 3),
            "accuracy": round(self.accuracy, 6),
            "train_seconds": round(self.train_seconds, 3),
            "query_seconds": round(self.query_seconds, 4),
            "tuning_seconds": round(self.tuning_seconds, 3),
        }
        if self.tuning is not None:
            record["tuning"] = self.tuning
        if self.path is not None:
            record["path"] = self.path
        record.update(self.extra)
        return record


def run_one(
    dataset: BenchDataset,
    split: Split,
    costs: np.ndarray,
    selector: Selector,
    protocol: ReplaySettings,
    base_config: EngineConfig,
    seed: int,
    on_round: Callable[[], None] | None = None,
) -> list[RoundRecord]:
    """One (seed, strategy) run: rounds until ``protocol.budget_for(selector)`` labels, one record per round."""
    pool_inputs = dataset.inputs[split.pool]
    pool_labels = dataset.labels[split.pool]
    pool_costs = costs[split.pool]
    test_inputs = dataset.inputs[split.test]
    test_labels = dataset.labels[split.test]
    classes = list(range(dataset.n_classes))
    config = selector.engine_config(base_config)
    labeled = list(split.initial)
    is_labeled = np.zeros(len(split.pool), dtype=bool)
    is_labeled[split.initial] = True
    budget = protocol.budget_for(selector)
    selector.start(len(split.pool), split.initial.copy(), budget, seed)
    records: list[RoundRecord] = []
    round_index = 0
    tuning_state = TuningState()  # the incumbent model configuration, handed from round to round
    pruning_history: list[list[float]] = []  # the candidates' rewards so far, handed from ranking to fit
    growth = getattr(selector, "backbone_growth", None)
    two_speed = None if growth is None else TwoSpeed(growth)
    while True:
        config.seed = seed * 1000 + round_index
        chosen = np.asarray(labeled)
        start = time.perf_counter()
        costs_seen = pool_costs[chosen] if selector.uses_costs else None
        if two_speed is not None and two_speed.refittable(len(chosen)):
            engine = two_speed.refit(chosen, pool_labels[chosen], costs_seen, int((~is_labeled).sum()),
                                     pruning_history)
        else:
            engine = Engine(config).fit(
                pool_inputs[chosen],
                pool_labels[chosen],
                costs=costs_seen,
                classes=classes,
                pool_size=int((~is_labeled).sum()),
                tuning_state=tuning_state,
                pruning_history=pruning_history,
            )
            if two_speed is not None:
                two_speed.new_backbone(engine, pool_inputs, len(chosen))
        fit_seconds = time.perf_counter() - start
        timings = engine.report.get("timings", {})
        search_seconds = 0.0
        if engine.report.get("search_used"):  # without the search the FitNets only estimate held-out accuracy
            search_seconds = timings.get("simulated_round_seconds", 0.0) + timings.get("search_seconds", 0.0)
        tuning_state = engine.tuning_state
        tuning_seconds = timings.get("tuning_seconds", 0.0)
        if hasattr(selector, "test_accuracy"):  # a reference model of its own (the shallow floor)
            accuracy = selector.test_accuracy(pool_inputs[chosen], pool_labels[chosen], test_inputs, test_labels,
                                              seed)
        else:
            predicted, _ = engine.predict(test_inputs)
            accuracy = float(np.mean(np.asarray(predicted) == test_labels))
        cost = float(pool_costs[chosen].sum())
        record = RoundRecord(round_index, len(labeled), cost, accuracy,
                             fit_seconds - search_seconds - tuning_seconds, 0.0, tuning_seconds,
                             tuning_summary(engine.report))
        if two_speed is not None:
            record.path = engine.report.get("path")
        records.append(record)
        if on_round is not None:
            on_round()
        remaining = budget - len(labeled)
        if remaining <= 0:
            break
        state = RoundState(
            engine=engine,
            pool_inputs=pool_inputs,
            labeled=chosen,
            unlabeled=np.flatnonzero(~is_labeled),
            batch_size=min(protocol.batch, remaining),
            round_index=round_index,
            seed=seed,
            oracle_labels=pool_labels,
            costs=pool_costs,
            pool_vectors=None if two_speed is None else two_speed.vectors,
        )
        start = time.perf_counter()
        picks, extra = selector.select(state)
        record.query_seconds = search_seconds + time.perf_counter() - start
        record.extra = extra
        pruning_history = (state.engine.report.get("pruning") or {}).get("history") or pruning_history
        picks = check_picks(np.asarray(picks, dtype=np.int64), is_labeled, state.batch_size, selector.name)
        is_labeled[picks] = True
        labeled.extend(int(i) for i in picks)
        round_index += 1
    return records


class TwoSpeed:
    """The backend's two speeds in the replay (ls_backend/jobs.py): a full fit when the labels have grown by
    ``growth`` (AUTOAL_BACKBONE_GROWTH) since the backbone was trained (and the first round), else
    `Engine.refit` of the head of that full fit on the pool's cached vectors; selectors rank from the cached
    vectors too."""

    def __init__(self, growth: float) -> None:
        self.growth = growth
        self.backbone_labels = 0
        self.full: Engine | None = None
        self.head_state: dict[str, Any] | None = None
        self.report: dict[str, Any] = {}
        self.vectors: np.ndarray | None = None

    def refittable(self, n_labels: int) -> bool:
        return self.full is not None and n_labels < self.growth * self.backbone_labels

    def new_backbone(self, engine: Engine, pool_inputs: np.ndarray, n_labels: int) -> None:
        self.full, self.backbone_labels = engine, n_labels
        self.head_state = copy.deepcopy(engine.model.head.state_dict())
        self.report = copy.deepcopy(engine.report)
        self.vectors = engine.vectors(pool_inputs)

    def refit(self, chosen: np.ndarray, labels: np.ndarray, costs: np.ndarray | None, pool_size: int,
              pruning_history: list[list[float]] | None = None) -> Engine:
        """The full fit's engine with its head refitted from the full fit's head, as every backend job does."""
        engine = self.full
        engine.model.head.load_state_dict(self.head_state)
        engine.report = copy.deepcopy(self.report)
        return engine.refit(self.vectors[chosen], labels, costs, pool_size=pool_size, pruning_history=pruning_history)


def tuning_summary(report: dict[str, Any]) -> dict[str, Any] | None:
    """The facts of a fit's tuning worth keeping per round: trials, adoption, CV accuracy, the recipe."""
    tuning = report.get("tuning") or {}
    if not tuning.get("ran"):
        return None
    return {
        "trials": len(tuning["trials"]),
        "completed": tuning["completed"],
        "adopted": tuning["adopted"],
        "cv_accuracy": tuning["cv_accuracy"],
        "recipe": tuning["recipe"],
    }


def check_picks(picks: np.ndarray, is_labeled: np.ndarray, batch_size: int, name: str) -> np.ndarray:
    """A selector must return ``batch_size`` distinct, unlabeled, in-range pool indices."""
    if picks.ndim != 1 or len(picks) != batch_size or len(np.unique(picks)) != batch_size:
        raise ValueError(f"strategy {name!r} returned {picks.shape} picks; expected {batch_size} distinct")
    if picks.min() < 0 or picks.max() >= len(is_labeled) or is_labeled[picks].any():
        raise ValueError(f"strategy {name!r} picked an out-of-range or already labeled item")
    return picks


def rounds_per_run(protocol: ReplaySettings) -> int:
    """Evaluations in one run: the initial set plus one per batch."""
    return 1 + -(-(protocol.budget - protocol.init) // protocol.batch)


def run_dataset(
    dataset: BenchDataset,
    costs: np.ndarray,
    selectors: Sequence[Selector],
    protocol: ReplaySettings,
    base_config: EngineConfig,
    seeds: Sequence[int],
    done: set[tuple[int, str]] | None = None,
    on_run: Callable[[dict[str, Any]], None] | None = None,
    on_round: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """Every (seed, strategy) run of one data set, seeds outermost so partial results stay paired.

    ``done`` holds (seed, strategy) pairs to skip (a resumed benchmark); ``on_run`` receives each finished
    run's record as soon as it exists (the CLI saves results.json there).
    """
    protocol.validate(len(dataset), dataset.n_classes)
    runs = []
    for seed in seeds:
        split = make_split(dataset.labels, protocol, seed)
        for selector in selectors:
            if done and (seed, selector.name) in done:
                continue
            logger.info("%s: seed %d, strategy %s", dataset.name, seed, selector.name)
            records = run_one(dataset, split, costs, selector, protocol, base_config, seed, on_round)
            run = {
                "strategy": selector.name,
                "seed": int(seed),
                "split_digest": split.digest(),
                "initial": [int(i) for i in split.pool[split.initial]],
                "rounds": [r.to_dict() for r in records],
            }
            config = selector.engine_config(base_config).to_dict()
            run["tuning"] = config["tuning"]
            if len(config["strategies"]) > 1:  # a mixture (AutoAL): record the settings only it uses
                run["autoal_settings"] = {key: config[key] for key in AUTOAL_SETTINGS}
            runs.append(run)
            if on_run is not None:
                on_run(run)
    return runs
