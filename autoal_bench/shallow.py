"""The model floor: random sampling scored with a shallow model, logistic regression on 50 PCA components.

``shallow`` labels exactly the items ``random`` labels (the same seeded random scores, ranked by a cheap
engine whose model is never used for accuracy) and measures test accuracy with scikit-learn's
``make_pipeline(PCA(k), LogisticRegression())`` on the raw pixels, k = min(50, labels - 1). Every report
then shows whether the engine's task model beats a linear model on the same labels.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from autoal_bench.simulate import RoundState
from autoal_engine.config import EngineConfig

SHALLOW = "shallow"
COMPONENTS = 50


class ShallowSelector:
    """Random picks; accuracy of PCA-50 + logistic regression (``test_accuracy``)."""

    name = SHALLOW
    uses_costs = False

    def engine_config(self, base: EngineConfig) -> EngineConfig:
        """A cheap engine that ranks with the random strategy only (its order does not depend on the model)."""
        config = copy.deepcopy(base)
        config.strategies = ("random",)
        config.search.enabled = False
        config.tuning.enabled = False
        config.cost.gamma = 0.0
        config.model.backbone, config.model.features, config.model.head = "frozen", "pca", "linear"
        config.model.epochs, config.model.loss_head = 1, False
        config.holdout.min_labels = 10**9  # no held-out FitNets
        config.validate()
        return config

    def start(self, n_pool: int, initial: np.ndarray, budget: int, seed: int) -> None:
        """Stateless."""

    def select(self, state: RoundState) -> tuple[np.ndarray, dict[str, Any]]:
        ranking = state.engine.rank(state.pool_inputs[state.unlabeled])
        return state.unlabeled[ranking.order[: state.batch_size]], {}

    def test_accuracy(self, train_inputs: np.ndarray, train_labels: np.ndarray, test_inputs: np.ndarray,
                      test_labels: np.ndarray, seed: int) -> float:
        return shallow_accuracy(train_inputs, train_labels, test_inputs, test_labels, seed)


def shallow_accuracy(train_inputs: np.ndarray, train_labels: np.ndarray, test_inputs: np.ndarray,
                     test_labels: np.ndarray, seed: int) -> float:
    """Test accuracy of PCA(min(50, n - 1)) + logistic regression trained on the labeled pixels."""
    train = _flat(train_inputs)
    components = max(1, min(COMPONENTS, len(train) - 1, train.shape[1]))
    model = make_pipeline(PCA(n_components=components, random_state=seed), LogisticRegression(max_iter=2000))
    model.fit(train, train_labels)
    return float(np.mean(model.predict(_flat(test_inputs)) == test_labels))


def _flat(inputs: np.ndarray) -> np.ndarray:
    values = inputs.reshape(len(inputs), -1).astype(np.float64)
    return values / 255.0 if inputs.dtype == np.uint8 else values
