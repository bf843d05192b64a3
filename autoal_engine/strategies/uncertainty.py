"""Uncertainty strategies: scores read from the softmax of one deterministic pass (``probs``) or from
the digest of T MC-dropout samples (Gal, Islam & Ghahramani, "Deep Bayesian Active Learning with Image
Data", ICML 2017). Higher = more uncertain = label first.
"""

from __future__ import annotations

import numpy as np

from autoal_engine.pool_outputs import PoolOutputs, entropy
from autoal_engine.strategies.base import Strategy, register


@register
class LeastConfidence(Strategy):
    """Least confidence: s_i = 1 - max_c p_c(x_i) (Lewis & Gale, SIGIR 1994; Settles 2009)."""

    name = "least_confidence"

    def score(self, outputs: PoolOutputs) -> np.ndarray:
        return 1.0 - outputs.probs.astype(np.float64).max(axis=1)


@register
class Margin(Strategy):
    """Margin (breaking ties): s_i = -(p_(1) - p_(2)), the gap between the two most probable classes
    (Scheffer, Decomain & Wrobel, IDA 2001). With a single class the runner-up probability is 0."""

    name = "margin"

    def score(self, outputs: PoolOutputs) -> np.ndarray:
        probs = outputs.probs.astype(np.float64)
        if probs.shape[1] < 2:
            return -probs[:, 0]
        top_two = np.partition(probs, -2, axis=1)[:, -2:]
        return -(top_two[:, 1] - top_two[:, 0])


@register
class Entropy(Strategy):
    """Predictive entropy: s_i = H[p(y|x_i)] = -sum_c p_c log p_c in nats (Shannon 1948; Settles 2009)."""

    name = "entropy"

    def score(self, outputs: PoolOutputs) -> np.ndarray:
        return entropy(outputs.probs.astype(np.float64))


@register
class Bald(Strategy):
    """BALD, the mutual information between the label and the model parameters, estimated from T
    MC-dropout samples: s_i = H[p_bar] - 1/T sum_t H[p^(t)], p_bar = 1/T sum_t p^(t)
    (Houlsby et al., arXiv 1112.5745, 2011; Gal, Islam & Ghahramani, ICML 2017).

    Zero when all samples agree; clipped at 0 against float rounding (the exact value is >= 0 by Jensen).
    """

    name = "bald"
    uses_mc_dropout = True

    def score(self, outputs: PoolOutputs) -> np.ndarray:
        mutual_information = entropy(outputs.mc_mean_probs.astype(np.float64)) - outputs.mc_mean_entropy
        return np.clip(mutual_information, 0.0, None)


@register
class MeanStd(Strategy):
    """Mean standard deviation over classes of the MC-dropout probabilities:
    s_i = 1/C sum_c sqrt(E_t[(p_c^(t))^2] - (E_t p_c^(t))^2)
    (Kampffmeyer, Salberg & Jenssen, CVPR Workshops 2016)."""

    name = "mean_std"
    uses_mc_dropout = True

    def score(self, outputs: PoolOutputs) -> np.ndarray:
        return outputs.mc_std.astype(np.float64)


@register
class VarRatio(Strategy):
    """Variation ratio over T MC-dropout samples: s_i = 1 - max_c #{t : argmax_c' p_c'^(t) = c} / T,
    one minus the frequency of the modal predicted class (Freeman, "Elementary Applied Statistics", 1965;
    Gal, Islam & Ghahramani, ICML 2017).

    This is the true mode-frequency definition, not 1 - max p, which would duplicate least confidence
    (the released AutoAL and DeepAL+ code do that; spec section 6.6).
    """

    name = "var_ratio"
    uses_mc_dropout = True

    def score(self, outputs: PoolOutputs) -> np.ndarray:
        return 1.0 - outputs.mc_mode_fraction.astype(np.float64)
