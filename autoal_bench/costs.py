"""Simulated labeling cost (seconds per item) for the offline benchmark.

The offline data sets carry no annotation times, so the cost model is stated, not measured:

- ``constant``: every label costs ``CONSTANT_SECONDS``.
- ``difficulty``: seconds grow with how ambiguous an item is for a model trained on the whole data set,
  so hard items cost more. A multinomial logistic regression on 50 PCA components of the pixels is
  cross-fitted (5 folds, so no item is scored by a model that saw it); with p(1) >= p(2) its two largest
  out-of-fold class probabilities, the ambiguity is a = 1 - (p(1) - p(2)) in [0, 1] and

      seconds = DIFFICULTY_MIN_SECONDS + (DIFFICULTY_MAX_SECONDS - DIFFICULTY_MIN_SECONDS) * a

  (2 s for an obvious item, 20 s for a coin flip between two classes). The costs are a fixed property of
  each item, the same for every strategy and seed.
- ``lead-time``: the real ``lead_time`` of each annotation from a Label Studio export.
"""

from __future__ import annotations

import numpy as np

from autoal_bench.datasets import BenchDataset

COST_MODELS = ("constant", "difficulty", "lead-time")
CONSTANT_SECONDS = 10.0
DIFFICULTY_MIN_SECONDS = 2.0
DIFFICULTY_MAX_SECONDS = 20.0


def ambiguity(inputs: np.ndarray, labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """1 - (top-1 minus top-2 out-of-fold probability) of a cross-fitted PCA + logistic regression."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = inputs.reshape(len(inputs), -1)
    components = min(50, features.shape[1], len(features) // 5)
    model = make_pipeline(
        StandardScaler(), PCA(n_components=components, random_state=seed), LogisticRegression(max_iter=2000)
    )
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    probs = cross_val_predict(model, features, labels, cv=folds, method="predict_proba")
    top2 = np.sort(probs, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def item_costs(dataset: BenchDataset, model: str, seed: int = 0) -> np.ndarray:
    """Seconds to label each item of ``dataset`` under the named cost model."""
    if model == "constant":
        return np.full(len(dataset), CONSTANT_SECONDS)
    if model == "difficulty":
        spread = DIFFICULTY_MAX_SECONDS - DIFFICULTY_MIN_SECONDS
        return DIFFICULTY_MIN_SECONDS + spread * ambiguity(dataset.inputs, dataset.labels, seed)
    if model == "lead-time":
        if dataset.lead_times is None:
            raise ValueError(
                f"cost model 'lead-time' needs annotation lead times (a Label Studio export); "
                f"dataset {dataset.name!r} has none"
            )
        return np.asarray(dataset.lead_times, dtype=np.float64)
    raise ValueError(f"cost model {model!r}: expected one of {', '.join(COST_MODELS)}")
