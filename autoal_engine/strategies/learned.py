"""Learned strategies: scores produced by a module trained alongside the task model."""

from __future__ import annotations

import numpy as np

from autoal_engine.pool_outputs import PoolOutputs
from autoal_engine.strategies.base import Strategy, register


@register
class LearnedLoss(Strategy):
    """Learning loss: s_i = l_hat(x_i), the loss the loss-prediction head predicts for the sample
    (Yoo & Kweon, "Learning Loss for Active Learning", CVPR 2019). The head is trained with the pairwise
    margin ranking loss, so only the order of its outputs is meaningful. When the model has no loss head,
    ``predicted_loss`` is all zeros and every sample ties.
    """

    name = "loss"

    def score(self, outputs: PoolOutputs) -> np.ndarray:
        return outputs.predicted_loss.astype(np.float64)
