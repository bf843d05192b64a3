"""Baseline strategy: uniform random scores."""

from __future__ import annotations

import numpy as np

from autoal_engine.pool_outputs import PoolOutputs
from autoal_engine.strategies.base import Strategy, register


@register
class RandomSampling(Strategy):
    """Random: s_i ~ U(0, 1), drawn from ``np.random.default_rng(outputs.seed)``.

    The passive-learning baseline every active-learning paper compares against (e.g. Settles, "Active
    Learning Literature Survey", 2009). A fixed seed gives the same scores.
    """

    name = "random"

    def score(self, outputs: PoolOutputs) -> np.ndarray:
        return np.random.default_rng(outputs.seed).random(outputs.size)
