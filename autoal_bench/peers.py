"""Other libraries' query strategies, run through the same loop and the same task model.

- scikit-activeml 1.0.1 (Kottke et al.): ``Badge``, ``TypiClust``, ``CoreSet``, ``ProbCover``. Each round
  they get the task model's penultimate embeddings of the whole pool as features (the deep active-learning
  setting these methods were designed for) and, for Badge, the task model's class probabilities through a
  classifier that returns them (no refit: the task model is the query model).
- libact 0.1.6 ALBL (Hsu & Lin, "Active Learning by Learning", AAAI 2015): the Exp4.P bandit over libact's
  uncertainty sampling (least confidence, smallest margin, entropy) plus its uniform random arm. ALBL is
  sequential: within a round it queries one item at a time, receives the oracle label at once (its
  importance-weighted-accuracy reward needs it) and re-plays the bandit, while the task model it scores
  with stays the one trained at the start of the round (retrained every round like everyone else's).
  Libact's HintSVM and QUIRE arms are left out (HintSVM needs a C extension; QUIRE is O(N^3)).

Install both with ``scripts/install_peers.sh``; `peer_selector` raises `PeerUnavailable` when absent.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from autoal_bench.simulate import RoundState
from autoal_engine.config import EngineConfig
from autoal_engine.engine import Engine

SKACTIVEML_PEERS = ("badge", "typiclust", "coreset", "probcover")
LIBACT_PEERS = ("albl",)
PEERS = SKACTIVEML_PEERS + LIBACT_PEERS
INSTALL_HINT = "install the peers with scripts/install_peers.sh"


class PeerUnavailable(RuntimeError):
    """The peer library is not installed."""


def task_model_outputs(engine: Engine, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fitted task model's class probabilities (N, C) and penultimate embeddings (N, D)."""
    probs, embeddings = engine.embed(inputs)
    return probs.astype(np.float64), embeddings.astype(np.float64)


def task_model_config(base: EngineConfig) -> EngineConfig:
    """The engine settings for a peer: the same task model, no search, cost-blind (only the model is used)."""
    config = copy.deepcopy(base)
    config.strategies = ("random",)
    config.search.enabled = False
    config.cost.gamma = 0.0
    return config


class SkactivemlSelector:
    """A scikit-activeml pool strategy on the task model's embeddings."""

    uses_costs = False

    def __init__(self, peer: str) -> None:
        try:
            from skactiveml import pool
        except ImportError as error:
            raise PeerUnavailable(f"peer {peer!r} needs scikit-activeml==1.0.1; {INSTALL_HINT}") from error
        factories: dict[str, Callable[[int], Any]] = {
            "badge": lambda seed: pool.Badge(random_state=seed),
            "typiclust": lambda seed: pool.TypiClust(random_state=seed),
            "coreset": lambda seed: pool.CoreSet(random_state=seed),
            "probcover": lambda seed: pool.ProbCover(random_state=seed),
        }
        self.name = f"skactiveml.{peer}"
        self.peer = peer
        self.make = factories[peer]
        self.seed = 0

    def engine_config(self, base: EngineConfig) -> EngineConfig:
        return task_model_config(base)

    def start(self, n_pool: int, initial: np.ndarray, budget: int, seed: int) -> None:
        self.seed = seed

    def select(self, state: RoundState) -> tuple[np.ndarray, dict[str, Any]]:
        probs, embeddings = task_model_outputs(state.engine, state.pool_inputs)
        y = np.full(len(state.pool_inputs), np.nan)
        y[state.labeled] = state.oracle_labels[state.labeled]
        strategy = self.make(self.seed * 1000 + state.round_index)
        if self.peer == "badge":
            clf = precomputed_classifier(embeddings, probs)
            picks = strategy.query(embeddings, y, clf=clf, fit_clf=False, batch_size=state.batch_size)
        elif self.peer == "probcover":
            strategy.n_classes = probs.shape[1]
            picks = strategy.query(embeddings, y, batch_size=state.batch_size)
        else:
            picks = strategy.query(embeddings, y, batch_size=state.batch_size)
        return np.asarray(picks, dtype=np.int64), {}


def precomputed_classifier(features: np.ndarray, probs: np.ndarray) -> Any:
    """A scikit-activeml classifier that answers predict_proba(rows of ``features``) with ``probs``.

    Badge asks the classifier for the unlabeled rows' probabilities; this hands back the task model's own
    (looked up by row content), so Badge's gradient embedding is built from the task model.
    """
    from skactiveml.base import SkactivemlClassifier

    class PrecomputedClassifier(SkactivemlClassifier):
        def __init__(self, classes: np.ndarray | None = None, missing_label: float = np.nan) -> None:
            super().__init__(classes=classes, missing_label=missing_label)

        def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> Any:
            return self

        def predict_proba(self, X: np.ndarray) -> np.ndarray:
            rows = [lookup[np.ascontiguousarray(x, dtype=np.float64).tobytes()] for x in np.asarray(X)]
            return probs[rows]

    lookup = {row.tobytes(): i for i, row in enumerate(np.ascontiguousarray(features, dtype=np.float64))}
    classifier = PrecomputedClassifier(classes=np.arange(probs.shape[1]))
    classifier.classes_ = np.arange(probs.shape[1])
    return classifier


class AlblSelector:
    """libact's ALBL over uncertainty sampling (lc, sm, entropy) and uniform random, sequential per item."""

    uses_costs = False

    def __init__(self) -> None:
        try:
            from libact.base.dataset import Dataset  # noqa: F401
            from libact.query_strategies import ActiveLearningByLearning  # noqa: F401
        except ImportError as error:
            raise PeerUnavailable(f"peer 'albl' needs libact==0.1.6; {INSTALL_HINT}") from error
        self.name = "libact.albl"
        self.run: tuple[int, list[int], int, int] = (0, [], 0, 0)
        self.dataset: Any = None
        self.albl: Any = None
        self.model: Any = None

    def engine_config(self, base: EngineConfig) -> EngineConfig:
        return task_model_config(base)

    def start(self, n_pool: int, initial: np.ndarray, budget: int, seed: int) -> None:
        self.run = (n_pool, [int(i) for i in initial], budget, seed)
        self.albl = None

    def begin(self, oracle_labels: np.ndarray) -> None:
        """A libact Dataset over pool row numbers with the initial set labeled, and a fresh ALBL on it."""
        from libact.base.dataset import Dataset
        from libact.query_strategies import ActiveLearningByLearning, UncertaintySampling

        n_pool, initial, budget, seed = self.run
        labels: list[int | None] = [None] * n_pool
        for i in initial:
            labels[i] = int(oracle_labels[i])
        self.model = round_model()
        self.dataset = Dataset(np.arange(n_pool, dtype=np.float64).reshape(-1, 1), labels)
        arms = [UncertaintySampling(self.dataset, model=self.model, method=method)
                for method in ("lc", "sm", "entropy")]
        self.albl = ActiveLearningByLearning(
            self.dataset, query_strategies=arms, T=budget - len(initial), uniform_sampler=True,
            model=self.model, random_state=seed,
        )

    def select(self, state: RoundState) -> tuple[np.ndarray, dict[str, Any]]:
        if self.albl is None:
            self.begin(state.oracle_labels)
        probs, _ = task_model_outputs(state.engine, state.pool_inputs)
        self.model.probs = probs
        picks = []
        for _ in range(state.batch_size):
            ask = int(self.albl.make_query())
            self.dataset.update(ask, int(state.oracle_labels[ask]))
            picks.append(ask)
        return np.asarray(picks, dtype=np.int64), {}


def round_model() -> Any:
    """A libact ProbabilisticModel whose features are pool row numbers and whose answers are the round's
    task-model probabilities (``.probs``, set each round). Training is a no-op: the loop trains the model."""
    from libact.base.interfaces import ProbabilisticModel

    class RoundModel(ProbabilisticModel):
        probs: np.ndarray

        def train(self, dataset: Any, *args: Any, **kwargs: Any) -> RoundModel:
            return self

        def predict(self, feature: Any, *args: Any, **kwargs: Any) -> np.ndarray:
            return self.predict_proba(feature).argmax(axis=1)

        def score(self, testing_dataset: Any, *args: Any, **kwargs: Any) -> float:
            X, y = testing_dataset.format_sklearn()
            return float(np.mean(self.predict(X) == y))

        def predict_real(self, feature: Any, *args: Any, **kwargs: Any) -> np.ndarray:
            return self.predict_proba(feature)

        def predict_proba(self, feature: Any, *args: Any, **kwargs: Any) -> np.ndarray:
            rows = np.asarray(feature, dtype=np.float64).reshape(-1).astype(np.int64)
            return self.probs[rows]

    return RoundModel()


def peer_selector(name: str) -> SkactivemlSelector | AlblSelector:
    """``badge``, ``typiclust``, ``coreset``, ``probcover`` (scikit-activeml) or ``albl`` (libact)."""
    if name in SKACTIVEML_PEERS:
        return SkactivemlSelector(name)
    if name in LIBACT_PEERS:
        return AlblSelector()
    raise ValueError(f"unknown peer {name!r}; known peers: {', '.join(PEERS)}")
