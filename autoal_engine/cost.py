"""Label-cost model and value-per-cost ordering (spec section 10).

Annotation times vary across items and are partly predictable from the items (Settles, Craven &
Friedland 2008, "Active Learning with Real Annotation Costs"); which AL method wins depends on how cost
is measured, and a cost model fitted to observed times can be used in the selection (Haertel et al.,
ACL 2008, "Assessing the Costs of Sampling Methods in Active Learning for Annotation"). This module:

- ``CostModel`` learns seconds per label from observed times (Label Studio ``lead_time``):
  clean (clip idle time, winsorize), ridge regression of log(seconds) on standardized features,
  predict the median exp(mu), shrink toward the observed median, and judge its own quality.
- ``combine_known`` lets explicit per-task costs override the predictions (and stand in for predictions
  that cannot be trusted).
- ``priority`` orders a queue by benefit per cost**gamma (return on investment, Haertel et al.);
  ``faded_gamma`` lets gamma fall as the labels grow (``cost.gamma_halving_labels``).
- ``relative_to_class`` divides each item's seconds by the median of its predicted class, so that cost
  chooses which item of a class is labeled, not which class (``cost.within_class``).

There is no knapsack over a per-round budget of annotator-seconds (spec 10.5): the backend re-ranks within
seconds of every label (the fast path), so the budget until the next re-rank is a label or two and the
greedy fill of such a budget is the value-per-cost order itself. The cost-agnostic exploration share of
spec 10.6 is the head of the queue's (``Engine._queue_head``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from autoal_engine.config import CostConfig

logger = logging.getLogger(__name__)

CV_SEED = 0  # the 2-fold split of the quality report is fixed so that reports are reproducible


class CostModel:
    """Predicts the seconds an annotator needs to label an item.

    Fit (spec 10.3), on the n items with a known time t_j > 0 (NaN = unknown, ignored):

    1. Cleaning: t_j <- min(t_j, max_seconds) (longer is idle time), then winsorize at the
       ``clip_quantile`` q of the clipped values: t_j <- min(t_j, Q_q(t)).
    2. Ridge regression of y_j = log t_j on standardized features z = (x - mean) / std:
       beta = (Z^T Z + alpha I)^-1 Z^T (y - ybar), intercept = ybar, alpha = ``ridge_alpha``.
    3. Prediction of the median time (robust to the log-normal tail): c_model = exp(ybar + z^T beta),
       kept inside the range of the cleaned observed times (no extrapolation beyond what was seen),
       then shrunk toward the observed median m: c = w c_model + (1 - w) m, w = n / (n + n0),
       n0 = ``shrinkage_n0``.

    Cold start: with fewer than ``min_observations`` known times the model is cold and predicts one
    constant for every item, the median of the known times (1.0 when none is known): uniform cost, so
    value-per-cost ordering equals value ordering.

    ``report()`` gives in-sample and 2-fold cross-validated MAE of log seconds and Spearman correlation;
    ``effective_gamma`` turns cost off (gamma 0) when the cross-validated Spearman is below 0.2, because
    poor cost predictions make cost-aware AL worse than cost-blind (spec 10.3, Settles et al. 2008).
    """

    def __init__(self, config: CostConfig):
        self.config = config
        self.n_observations = 0
        self.median_seconds = 1.0
        self._low = 1.0  # range of the cleaned observed times; predictions stay inside it
        self._high = 1.0
        self._n_features: int | None = None
        self._mean: np.ndarray | None = None
        self._scale: np.ndarray | None = None
        self._coef: np.ndarray | None = None
        self._intercept = 0.0
        self._report: dict[str, Any] = _empty_report()

    @property
    def is_cold(self) -> bool:
        return self._coef is None

    def fit(self, features: np.ndarray, seconds: np.ndarray) -> CostModel:
        """Fit on features (N, D) and observed seconds (N,), NaN where the time is unknown."""
        features = _check_features(features)
        seconds = check_seconds(seconds, len(features), name="costs", allow_nan=True)
        known = ~np.isnan(seconds)
        self._fit_known(features[known], seconds[known], features.shape[1])
        self._report = self._quality_report(features[known], seconds[known])
        logger.info(
            "cost model: %d timed labels, median %.1f s, cold=%s, cv spearman=%s",
            self.n_observations,
            self.median_seconds,
            self.is_cold,
            self._report["cv_spearman"],
        )
        return self

    def _fit_known(self, features: np.ndarray, seconds: np.ndarray, n_features: int) -> None:
        self.n_observations = n = len(seconds)
        self._n_features = n_features
        self._mean = self._scale = self._coef = None
        self._intercept = 0.0
        if n == 0:
            self.median_seconds = self._low = self._high = 1.0
            return
        cleaned = self.clean(seconds)
        self.median_seconds = float(np.median(cleaned))
        self._low, self._high = float(cleaned.min()), float(cleaned.max())
        if n < self.config.min_observations:
            return
        mean = features.mean(axis=0)
        scale = features.std(axis=0)
        scale[scale <= 1e-12] = 1.0
        z = (features - mean) / scale
        y = np.log(cleaned)
        alpha = float(self.config.ridge_alpha)
        gram = z.T @ z + alpha * np.eye(n_features)
        self._coef = np.linalg.solve(gram, z.T @ (y - y.mean())) if n_features else np.zeros(0)
        self._intercept = float(y.mean())
        self._mean, self._scale = mean, scale

    def clean(self, seconds: np.ndarray) -> np.ndarray:
        """Clip at ``max_seconds`` (idle time), then winsorize at the ``clip_quantile`` of the result."""
        clipped = np.minimum(np.asarray(seconds, dtype=np.float64), float(self.config.max_seconds))
        if len(clipped) == 0:
            return clipped
        return np.minimum(clipped, np.quantile(clipped, float(self.config.clip_quantile)))

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predicted seconds (N,), all > 0: w * exp(mu) + (1 - w) * median, or the median when cold."""
        features = _check_features(features)
        if self.is_cold:
            return np.full(len(features), self.median_seconds)
        if features.shape[1] != self._n_features:
            raise ValueError(f"features must have {self._n_features} columns; got {features.shape[1]}")
        mu = self._intercept + ((features - self._mean) / self._scale) @ self._coef
        model = np.clip(np.exp(np.clip(mu, -700.0, 700.0)), self._low, self._high)
        w = self.n_observations / (self.n_observations + float(self.config.shrinkage_n0))
        return w * model + (1.0 - w) * self.median_seconds

    def report(self) -> dict[str, Any]:
        """Quality of the predictions: MAE of log seconds and Spearman rho, in-sample and 2-fold CV.

        Targets are the cleaned observed times. A value is None where it cannot be computed (too few
        known times, a fold that would be cold, or a constant prediction for which rank correlation is
        undefined).
        """
        return dict(self._report)

    @property
    def is_trusted(self) -> bool:
        """A cross-validated Spearman of at least ``min_spearman`` (default 0.2, spec 10.3); a cold model or
        one too small to cross-validate is not trusted (its costs are uniform or unproven)."""
        rho = self._report["cv_spearman"]
        return rho is not None and rho >= self.config.min_spearman

    def effective_gamma(self, gamma: float, known: np.ndarray | None = None) -> float:
        """The gamma to use in ``priority``: ``gamma`` when the model is trusted or when ``known`` (explicit
        per-task costs, NaN = unknown) gives some item's seconds, else 0.0. With known seconds and an
        untrusted model the others are not predicted but set to the known seconds' median
        (``combine_known``)."""
        if known is not None and (~np.isnan(np.asarray(known, dtype=np.float64))).any():
            return float(gamma)
        return float(gamma) if self.is_trusted else 0.0

    def _quality_report(self, features: np.ndarray, seconds: np.ndarray) -> dict[str, Any]:
        report = _empty_report()
        n = len(seconds)
        report.update(n_observations=n, is_cold=self.is_cold, median_seconds=self.median_seconds)
        if n == 0:
            return report
        target = np.log(self.clean(seconds))
        fitted = np.log(self.predict(features))
        report["in_sample_mae_log"] = float(np.mean(np.abs(fitted - target)))
        report["in_sample_spearman"] = spearman(fitted, target)
        folds = np.array_split(np.random.default_rng(CV_SEED).permutation(n), 2)
        if min(len(fold) for fold in folds) < max(self.config.min_observations, 2):
            return report
        held_out = np.empty(n)
        for test, train in (folds, folds[::-1]):
            half = CostModel(self.config)
            half._fit_known(features[train], seconds[train], features.shape[1])
            held_out[test] = np.log(half.predict(features[test]))
        report["cv_mae_log"] = float(np.mean(np.abs(held_out - target)))
        report["cv_spearman"] = spearman(held_out, target)
        return report

    def state_dict(self) -> dict[str, Any]:
        """Plain python / numpy values: enough to rebuild identical predictions with ``from_state_dict``."""
        return {
            "n_observations": self.n_observations,
            "median_seconds": self.median_seconds,
            "low": self._low,
            "high": self._high,
            "n_features": self._n_features,
            "mean": None if self._mean is None else self._mean.copy(),
            "scale": None if self._scale is None else self._scale.copy(),
            "coef": None if self._coef is None else self._coef.copy(),
            "intercept": self._intercept,
            "report": dict(self._report),
        }

    @classmethod
    def from_state_dict(cls, config: CostConfig, state: dict[str, Any]) -> CostModel:
        required = ("n_observations", "median_seconds", "low", "high", "n_features", "mean", "scale", "coef",
                    "intercept", "report")
        missing = [key for key in required if key not in state]
        if missing:
            raise ValueError(f"cost model state is missing {missing[0]!r}")
        model = cls(config)
        model.n_observations = int(state["n_observations"])
        model.median_seconds = float(state["median_seconds"])
        model._low, model._high = float(state["low"]), float(state["high"])
        model._n_features = None if state["n_features"] is None else int(state["n_features"])
        for name in ("mean", "scale", "coef"):
            value = state[name]
            setattr(model, f"_{name}", None if value is None else np.asarray(value, dtype=np.float64))
        model._intercept = float(state["intercept"])
        model._report = {**_empty_report(), **dict(state["report"])}
        return model


def combine_known(predicted: np.ndarray, known: np.ndarray, trusted: bool = True) -> np.ndarray:
    """Explicit per-task costs override predictions: c_i = known_i where known, else predicted_i; when the
    predictions are not ``trusted`` and some costs are known, c_i = median(known) for the others instead, so that
    noise does not order them (they sit between the cheap and the dear known tasks).

    ``known`` holds NaN for tasks without an explicit cost; the known values must be > 0 seconds.
    """
    predicted = check_seconds(predicted, None, name="predicted", allow_nan=False)
    known = check_seconds(known, len(predicted), name="known", allow_nan=True)
    given = ~np.isnan(known)
    fill = predicted if trusted or not given.any() else np.full(len(known), np.median(known[given]))
    return np.where(given, known, fill)


def priority(benefit: np.ndarray, cost: np.ndarray, gamma: float) -> np.ndarray:
    """Value per cost scaled to [0, 1]: p_i = (r_i - min r) / (max r - min r), r_i = b_i / c_i**gamma.

    Return on investment (Haertel, Ringger, Felt & Seppi, "An Analytic and Empirical Evaluation of
    Return-on-Investment-Based Active Learning"); gamma = 1 is pure ROI, gamma = 0 ignores cost (the
    order is exactly the benefit order), in between tempers cost while the cost model is immature and
    keeps slow, hard items from starving (spec 10.2, 10.6). Above 1 the seconds weigh more than the
    benefit's spread, for a benefit estimate that overstates how much more one item is worth than its
    neighbour (ROI is right when the estimate is linear in the true benefit, Haertel et al.); gamma 4 was
    measured and not adopted (docs/benchmark.md, "Seconds weighed more than the benefit"). ``benefit``
    must be a ratio-scale quantity >= 0 such as an expected loss, never a percentile rank. The scaling is
    min-max over the pool; a constant vector maps to all ones.
    """
    benefit = _check_benefit(benefit)
    cost = check_seconds(cost, len(benefit), name="cost", allow_nan=False)
    gamma = float(gamma)
    if not (np.isfinite(gamma) and gamma >= 0.0):
        raise ValueError(f"gamma must be a finite number >= 0; got {gamma}")
    if len(benefit) == 0:
        return benefit
    if gamma == 0.0:
        ratio = benefit
    else:  # r_i / max r, in log space: the same scaling, and no overflow for extreme seconds or a large gamma
        with np.errstate(divide="ignore"):
            log_ratio = np.log(benefit) - gamma * np.log(cost)
        top = log_ratio.max()
        ratio = np.exp(log_ratio - top) if np.isfinite(top) else np.zeros_like(log_ratio)
    low, high = ratio.min(), ratio.max()
    if high - low <= 0.0:
        return np.ones_like(ratio)
    return (ratio - low) / (high - low)


def faded_gamma(gamma: float, labels: int, halving_labels: float) -> float:
    """gamma_n = gamma n0 / (n0 + n) at n labels, n0 = ``halving_labels`` (0: gamma as given).

    Cost-aware ranking buys cheaper labels that are a little less informative; while labels are few the
    cheaper ones win at equal seconds, later the cheap items are over-represented. With n0 the weight of cost
    halves at n0 labels and keeps falling, so the order turns towards the benefit's. Off by default: on ten
    seeds n0 = 300 saved fewer seconds than a constant gamma and lost more accuracy at equal labels
    (docs/benchmark.md, "Cost-awareness that fades with the labels").
    """
    if halving_labels < 0:
        raise ValueError(f"cost.gamma_halving_labels must be >= 0; got {halving_labels}")
    if halving_labels == 0:
        return float(gamma)
    return float(gamma) * halving_labels / (halving_labels + max(int(labels), 0))


def relative_to_class(seconds: np.ndarray, predicted_class: np.ndarray) -> np.ndarray:
    """Seconds relative to the item's predicted class: s_i / median{s_j : class_j = class_i}.

    Where labeling time depends on the class (on digits the class explains 53% of the variance of the
    log-seconds of the lognormal bench cost, a "1" takes 1.5 s and a "0" 26 s), value per raw second fills
    the labeled set with the cheap classes, and the model it trains fails on the rest (benchmark.md, cost
    section). Relative to its class, an item is cheap when it is cheaper than the other items the model
    thinks are of its kind, so the cost changes the order inside a class and leaves the classes' shares
    to the benefit.
    """
    seconds = check_seconds(seconds, None, name="seconds", allow_nan=False)
    predicted_class = np.asarray(predicted_class)
    if predicted_class.shape != seconds.shape:
        raise ValueError(f"predicted_class must have one entry per item; got {predicted_class.shape}")
    relative = np.empty_like(seconds)
    for label in np.unique(predicted_class):
        members = predicted_class == label
        relative[members] = seconds[members] / np.median(seconds[members])
    return relative


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rho (``scipy.stats.spearmanr``, average ranks for ties); None for fewer than 3 pairs or a constant."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 3 or np.ptp(a) == 0.0 or np.ptp(b) == 0.0:
        return None
    return float(spearmanr(a, b).statistic)


def _empty_report() -> dict[str, Any]:
    return {
        "n_observations": 0,
        "is_cold": True,
        "median_seconds": 1.0,
        "in_sample_mae_log": None,
        "in_sample_spearman": None,
        "cv_mae_log": None,
        "cv_spearman": None,
    }


def _check_features(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be shaped (N, D); got {features.shape}")
    if not np.isfinite(features).all():
        raise ValueError("features must be finite (no NaN or inf)")
    return features


def check_seconds(values: np.ndarray, length: int | None, name: str, allow_nan: bool) -> np.ndarray:
    """Seconds shaped (length,), > 0 and finite; NaN (= unknown) only where ``allow_nan``."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or (length is not None and len(values) != length):
        expected = "N" if length is None else length
        raise ValueError(f"{name} must be shaped ({expected},); got {values.shape}")
    known = values[~np.isnan(values)] if allow_nan else values
    if not allow_nan and np.isnan(values).any():
        raise ValueError(f"{name} must not contain NaN")
    if not np.isfinite(known).all() or (known <= 0.0).any():
        raise ValueError(f"{name} must be finite seconds > 0" + (" (NaN for unknown)" if allow_nan else ""))
    return values


def _check_benefit(benefit: np.ndarray) -> np.ndarray:
    benefit = np.asarray(benefit, dtype=np.float64)
    if benefit.ndim != 1:
        raise ValueError(f"benefit must be shaped (N,); got {benefit.shape}")
    if not np.isfinite(benefit).all():
        raise ValueError("benefit must be finite (no NaN or inf)")
    if (benefit < 0.0).any():
        raise ValueError("benefit must be >= 0 (a ratio-scale quantity such as an expected loss)")
    return benefit
