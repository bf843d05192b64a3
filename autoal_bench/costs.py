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
- ``lognormal``: costs as a real project produces them: they vary a lot from item to item, mostly with
  something visible in the item, and only partly with its difficulty. With v the item's edge density (mean
  absolute difference of neighbouring pixels, a proxy for how much there is to look at) and a the ambiguity
  above, each turned into normal scores (a~ = Phi^-1((rank(a) - 1/2) / n), so a~ ~ N(0, 1) whatever a's
  shape), and v~ the normal scores of v made orthogonal to a~ and standardized,

      z = rho * a~ + sqrt(1 - rho^2) * v~        (so corr(z, a~) = rho, sd(z) = 1)
      seconds = LOGNORMAL_BASE_SECONDS * exp(sigma * z)

  rho (``--cost-rho``, default 0) sets how much cost is difficulty, sigma (``--cost-sigma``, default 1.0)
  how much it varies (the log-seconds' standard deviation). Fixed per item, the same for every strategy and
  seed, and predictable from the pixels: a cost model has something to learn. The normal scores keep a
  heavy-tailed feature from making one item cost hours: on Fashion-MNIST the moment-standardized edge
  density (used until session 18) reached 8.8 standard deviations, 10 exp(8.8) = 64,812 s for one item.
- ``lead-time``: the real ``lead_time`` of each annotation from a Label Studio export.
"""

from __future__ import annotations

import numpy as np

from autoal_bench.datasets import BenchDataset

COST_MODELS = ("constant", "difficulty", "lognormal", "lead-time")
CONSTANT_SECONDS = 10.0
LOGNORMAL_BASE_SECONDS = 10.0
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


def edge_density(inputs: np.ndarray) -> np.ndarray:
    """Mean absolute difference between horizontally and vertically neighbouring pixels, per item."""
    images = inputs.astype(np.float64)
    images = images.reshape(len(images), -1, *images.shape[-2:])
    across = np.abs(np.diff(images, axis=-1)).mean(axis=(1, 2, 3))
    down = np.abs(np.diff(images, axis=-2)).mean(axis=(1, 2, 3))
    return across + down


def lognormal_seconds(visual: np.ndarray, difficulty: np.ndarray, rho: float, sigma: float) -> np.ndarray:
    """base * exp(sigma * (rho a~ + sqrt(1 - rho^2) v~)); a~, v~ normal scores, v~ made orthogonal to a~."""
    if not -1.0 <= rho <= 1.0:
        raise ValueError(f"--cost-rho: must be in [-1, 1], got {rho!r}")
    if not sigma >= 0.0:
        raise ValueError(f"--cost-sigma: must be >= 0, got {sigma!r}")
    a = _standardized(normal_scores(difficulty))
    v = _standardized(normal_scores(visual))
    v = _standardized(v - (v @ a) / (a @ a) * a if a.any() else v)
    z = rho * a + np.sqrt(1.0 - rho**2) * v
    return LOGNORMAL_BASE_SECONDS * np.exp(sigma * z)


def normal_scores(values: np.ndarray) -> np.ndarray:
    """Phi^-1((rank - 1/2) / n) of each value (ties share their mean rank): N(0, 1) scores of any shape."""
    from scipy.stats import norm, rankdata

    values = np.asarray(values, dtype=np.float64)
    return norm.ppf((rankdata(values) - 0.5) / len(values))


def _standardized(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    spread = values.std()
    return (values - values.mean()) / spread if spread > 0 else np.zeros_like(values)


def item_costs(dataset: BenchDataset, model: str, seed: int = 0, rho: float = 0.0, sigma: float = 1.0) -> np.ndarray:
    """Seconds to label each item of ``dataset`` under the named cost model (``rho``, ``sigma``: lognormal's)."""
    if model == "constant":
        return np.full(len(dataset), CONSTANT_SECONDS)
    if model == "difficulty":
        spread = DIFFICULTY_MAX_SECONDS - DIFFICULTY_MIN_SECONDS
        return DIFFICULTY_MIN_SECONDS + spread * ambiguity(dataset.inputs, dataset.labels, seed)
    if model == "lognormal":
        return lognormal_seconds(edge_density(dataset.inputs), ambiguity(dataset.inputs, dataset.labels, seed),
                                 rho, sigma)
    if model == "lead-time":
        if dataset.lead_times is None:
            raise ValueError(
                f"cost model 'lead-time' needs annotation lead times (a Label Studio export); "
                f"dataset {dataset.name!r} has none"
            )
        return np.asarray(dataset.lead_times, dtype=np.float64)
    raise ValueError(f"cost model {model!r}: expected one of {', '.join(COST_MODELS)}")
