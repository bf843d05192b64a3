"""AutoAL strategy search: SearchNet / FitNet bilevel optimization on the labeled set.

Wang, Zhan & Huang, "AutoAL: Automated Active Learning with Differentiable Query Strategy Search",
ICML 2025 (arXiv 2410.13853). The labeled set is split into halves; a FitNet trained on one half scores
the other ("a simulated AL round", cross-fitted both ways). For each simulated-unlabeled sample i the
K candidate strategies give normalized scores r_ik, and SearchNet gives per-sample weights:

    pi_i = softmax_k(SearchNet(meta_i))                  (paper: raw logits w_ik)
    z_i  = sum_k pi_ik r_ik                               (paper: binary votes a_ik instead of r_ik)
    tau  = (1 - t)-quantile of z over the batch           (stable GMM quantile, or exact quantile)
    S_i  = sigmoid((z_i - tau) / T),  T = rho * std(z),   rho annealed rho_start -> rho_end
    L_S  = -(sum_i S_i sg[l_i] / sum_i S_i) / mean(l) - lambda * L_re(sum_i S_i) + beta * L_LP   (SearchNet)
    L_F  =  mean_i(sg[S_i] * l_i)                                                                   (FitNet head)
    L_re(alpha) = 1 / (1 + exp(0.5 |alpha - tB|)) - 0.5   (Eq. 9, on the soft count alpha = sum S_i)

where l_i is FitNet's cross-entropy on sample i and L_LP the LL4AL pairwise ranking loss of SearchNet's
loss-prediction output against l_i, so the loss module shapes SearchNet's features (spec A8).

This module only learns pi (opt-in, ``search.enabled``): the candidate normalization r, the mixture z and
the default equal-weight ranking are in ``autoal_engine.mixture``.

Two departures from the paper's Eq. 8, both measured on digits (see docs/engine.md): the selection term is
the mean loss of the selected samples relative to the batch mean, not sum_i S_i l_i / B (with tB << B the
1/B term is tiny next to L_re, and the search then reshapes the mixture to fit the count instead of finding
lossy samples); and tau gets a learned offset (in units of std z) so that L_re can meet the count without
reshaping the mixture. With fewer than MIN_SELECTED = 8 samples per batch t is raised to 8 / B.

The released code's choices stay reachable through `SearchConfig` (spec section 6): a fixed temperature
(1e-11 gives sigmoid(1e11 (p - tau)) on p = softmax over samples of z, whose gradient vanishes), a GMM
fitted to p with sklearn's defaults and sampled, a count regularizer without gradient, an inert loss
module, binary votes and an image-input SearchNet.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import norm
from sklearn.isotonic import IsotonicRegression
from sklearn.mixture import GaussianMixture
from torch import nn

from autoal_engine.config import SearchConfig
from autoal_engine.mixture import mixture_scores, mixture_weights
from autoal_engine.models import SmallCNN, loss_ranking_loss
from autoal_engine.pool_outputs import PoolOutputs, entropy
from autoal_engine.strategies import percentile_rank

log = logging.getLogger(__name__)

META_EXTRA = 4  # meta-features besides the K candidate scores: entropy, margin, |h| rank, loss rank
SEARCH_BATCH = 512
GMM_REFIT_EVERY = 25
MIN_SELECTED = 8


# --------------------------------------------------------------------------- SearchNet's input


def meta_features(outputs: PoolOutputs, candidates: np.ndarray) -> np.ndarray:
    """SearchNet's per-sample input (spec A2): the K normalized candidate scores, the normalized
    entropy H[p] / log C, the top-2 margin, and percentile ranks of |h| and of the predicted loss."""
    probs = outputs.probs
    top2 = np.sort(probs, axis=1)[:, -2:] if probs.shape[1] > 1 else np.concatenate([probs * 0, probs], 1)
    extra = np.stack([
        entropy(probs) / max(math.log(probs.shape[1]), 1e-6),
        top2[:, 1] - top2[:, 0],
        percentile_rank(np.linalg.norm(outputs.embeddings, axis=1)),
        percentile_rank(outputs.predicted_loss),
    ], axis=1)
    return np.concatenate([candidates, extra], axis=1).astype(np.float32)


# --------------------------------------------------------------------------- networks


class SearchNet(nn.Module):
    """MLP on meta-features -> K strategy logits and a predicted loss (spec A2, A8)."""

    def __init__(self, n_features: int, n_strategies: int, hidden: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.weights = nn.Linear(hidden, n_strategies)
        self.loss_head = nn.Linear(hidden, 1)
        nn.init.zeros_(self.weights.weight)  # start from the uniform mixture (the rank average)
        nn.init.zeros_(self.weights.bias)

    def forward(self, meta: torch.Tensor, images: torch.Tensor | None = None,
                detach_loss: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(meta)
        loss_in = features.detach() if detach_loss else features
        return self.weights(features), self.loss_head(loss_in).squeeze(1)


class ImageSearchNet(nn.Module):
    """The released code's SearchNet: a CNN on the raw image -> K strategy logits (+ predicted loss)."""

    def __init__(self, in_channels: int, n_strategies: int, hidden: int) -> None:
        super().__init__()
        self.trunk = SmallCNN(in_channels, hidden)
        self.weights = nn.Linear(hidden, n_strategies)
        self.loss_head = nn.Linear(hidden, 1)

    def forward(self, meta: torch.Tensor, images: torch.Tensor | None = None,
                detach_loss: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        if images is None:
            raise ValueError("search.searchnet_input='image' needs images")
        features, _ = self.trunk((images - 0.5) / 0.25)
        loss_in = features.detach() if detach_loss else features
        return self.weights(features), self.loss_head(loss_in).squeeze(1)


def build_searchnet(config: SearchConfig, n_strategies: int, in_channels: int) -> nn.Module:
    if config.searchnet_input == "image":
        return ImageSearchNet(in_channels, n_strategies, config.hidden)
    return SearchNet(n_strategies + META_EXTRA, n_strategies, config.hidden)


# --------------------------------------------------------------------------- threshold and relaxation


def relax(z: torch.Tensor, tau: torch.Tensor | float, temperature: torch.Tensor | float) -> torch.Tensor:
    """Soft selection S = sigmoid((z - tau) / T); dS/dz = S (1 - S) / T."""
    return torch.sigmoid((z - tau) / temperature)


def annealed_rho(iteration: int, iterations: int, start: float, end: float) -> float:
    """Geometric schedule from start (iteration 0) to end (last iteration)."""
    if iterations <= 1:
        return end
    return start * (end / start) ** (iteration / (iterations - 1))


def count_regularizer(count: torch.Tensor | float, target: float) -> torch.Tensor:
    """Eq. 9: L_re = 1 / (1 + exp(0.5 |alpha - tB|)) - 0.5, in (-0.5, 0], 0 at the target count."""
    count = torch.as_tensor(count, dtype=torch.float32)
    return torch.sigmoid(-0.5 * (count - target).abs()) - 0.5


class StableGMMQuantile:
    """The paper's GMM threshold made stable: a 1-D mixture fitted to standardized scores with
    reg_covar 1e-3 (relative to unit variance) and a fixed seed; the quantile is the mixture's exact
    (1 - t) quantile found by bisection on its CDF, not a percentile of random draws (spec A5)."""

    def __init__(self, components: int, seed: int) -> None:
        self.components = components
        self.seed = seed
        self.standard_quantile = 0.0

    def refit(self, z: np.ndarray, q: float) -> None:
        standard = (z - z.mean()) / max(z.std(), 1e-8)
        components = max(1, min(self.components, len(np.unique(standard.round(6))) - 1))
        gmm = GaussianMixture(components, reg_covar=1e-3, random_state=self.seed, max_iter=50).fit(
            standard.reshape(-1, 1))
        means, stds = gmm.means_.ravel(), np.sqrt(gmm.covariances_.ravel())
        low, high = standard.min() - 5, standard.max() + 5
        for _ in range(60):
            middle = (low + high) / 2
            if float(gmm.weights_ @ norm.cdf((middle - means) / stds)) < q:
                low = middle
            else:
                high = middle
        self.standard_quantile = (low + high) / 2

    def threshold(self, z: torch.Tensor) -> torch.Tensor:
        return z.mean() + self.standard_quantile * z.std()


def released_gmm_threshold(p: np.ndarray, q: float, seed: int, components: int = 5) -> float:
    """The released code's threshold: GMM (sklearn defaults) on p, 10,000 draws, their q-percentile."""
    components = max(1, min(components, len(np.unique(p)) - 1))
    gmm = GaussianMixture(components, random_state=seed).fit(p.reshape(-1, 1))
    draws, _ = gmm.sample(10_000)
    return float(np.percentile(draws, 100 * q))


# --------------------------------------------------------------------------- the search


@dataclass
class SearchRecords:
    """One cached simulated AL round (both cross-fitted halves), all the search needs (spec 9 step 3)."""

    candidates: np.ndarray  # (M, K) normalized candidate scores
    meta: np.ndarray  # (M, K + META_EXTRA)
    fit_embeddings: np.ndarray  # (M, D) FitNet embeddings of each sample
    labels: np.ndarray  # (M,)
    group: np.ndarray  # (M,) which FitNet (0 or 1) scored the sample
    head_weight: np.ndarray  # (G, C, D) FitNet heads
    head_bias: np.ndarray  # (G, C)
    losses: np.ndarray  # (M,) FitNet cross-entropy before the search
    ratio: float  # t, the selection ratio
    images: torch.Tensor | None = None  # (M, C, S, S) for an image SearchNet


@dataclass
class SearchResult:
    state: dict  # SearchNet state_dict
    calibration_x: np.ndarray  # isotonic map from z to expected loss
    calibration_y: np.ndarray
    mean_loss: float
    mean_weights: np.ndarray  # (K,) mean pi over the records
    soft_count: float
    target_count: float
    history: dict = field(default_factory=dict)


def run_search(records: SearchRecords, config: SearchConfig, seed: int, in_channels: int = 1) -> SearchResult:
    """Bilevel search over minibatches of the cached records; returns SearchNet and the calibration."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    k = records.candidates.shape[1]
    net = build_searchnet(config, k, in_channels)
    candidates = torch.from_numpy(records.candidates)
    meta = torch.from_numpy(records.meta)
    embeddings = torch.from_numpy(records.fit_embeddings).float()
    labels = torch.from_numpy(records.labels).long()
    group = torch.from_numpy(records.group).long()
    head_weight = nn.Parameter(torch.from_numpy(records.head_weight).float().clone())
    head_bias = nn.Parameter(torch.from_numpy(records.head_bias).float().clone())
    # A learned shift of the threshold, in units of std(z): the count regularizer moves it to reach the
    # target count, so matching the count does not have to reshape the strategy mixture.
    offset = nn.Parameter(torch.zeros(()))
    search_opt = torch.optim.Adam([*net.parameters(), offset], lr=config.lr)
    fit_opt = torch.optim.Adam([head_weight, head_bias], lr=config.fitnet_lr)
    gmm = StableGMMQuantile(config.gmm_components, seed)
    m = len(labels)
    batch = min(m, SEARCH_BATCH)
    # t as in the query, but at least MIN_SELECTED samples per batch: a soft selection of one or two
    # samples carries no usable signal (the released code had tB = 20 with B = 1000).
    ratio = max(records.ratio, min(0.5, MIN_SELECTED / batch))
    q = 1.0 - ratio
    history: dict[str, list[float]] = {"search_loss": [], "soft_count": [], "rho": []}

    def fitnet_losses(index: torch.Tensor) -> torch.Tensor:
        logits = torch.einsum("bd,bcd->bc", embeddings[index], head_weight[group[index]]) + head_bias[group[index]]
        return F.cross_entropy(logits, labels[index], reduction="none")

    for iteration in range(config.iterations):
        index = torch.randperm(m, generator=generator)[:batch]
        images = records.images[index] if records.images is not None else None
        logits, predicted_loss = net(meta[index], images, detach_loss=config.loss_module == "inert")
        z = mixture_scores(candidates[index], mixture_weights(logits, config.weighting))
        rho = annealed_rho(iteration, config.iterations, config.rho_start, config.rho_end)
        selection, count_selection = _select(z, q, rho, config, gmm, iteration, seed, offset)
        losses = fitnet_losses(index).detach()
        target = ratio * batch
        count = count_selection.sum() if config.count_regularizer == "soft" else float((selection > 0.5).sum())
        selected_loss = (selection * losses).sum() / selection.sum().clamp_min(1e-8)
        search_loss = -selected_loss / losses.mean().clamp_min(1e-8)
        search_loss = search_loss - config.regularizer_weight * count_regularizer(count, target)
        search_loss = search_loss + config.loss_module_weight * loss_ranking_loss(predicted_loss, losses)
        search_opt.zero_grad()
        search_loss.backward()
        search_opt.step()
        if (iteration + 1) % config.fitnet_every == 0:
            fit_loss = (selection.detach() * fitnet_losses(index)).mean()
            fit_opt.zero_grad()
            fit_loss.backward()
            fit_opt.step()
        history["search_loss"].append(float(search_loss.detach()))
        history["soft_count"].append(float(selection.detach().sum()) / max(target, 1e-8))
        history["rho"].append(rho)

    net.eval()
    with torch.no_grad():
        logits, _ = net(meta, records.images)
        weights = mixture_weights(logits, config.weighting)
        z = mixture_scores(candidates, weights)
        final, _ = _select(z, q, config.rho_end, config, gmm, 0, seed, offset)
    calibration = IsotonicRegression(y_min=0.0, increasing=True, out_of_bounds="clip").fit(
        z.numpy(), records.losses)
    return SearchResult(
        state={key: value.clone() for key, value in net.state_dict().items()},
        calibration_x=np.asarray(calibration.X_thresholds_, dtype=np.float64),
        calibration_y=np.asarray(calibration.y_thresholds_, dtype=np.float64),
        mean_loss=float(records.losses.mean()),
        mean_weights=weights.mean(dim=0).numpy().astype(np.float64),
        soft_count=float(final.sum()),
        target_count=ratio * m,
        history=history,
    )


def _select(z: torch.Tensor, q: float, rho: float, config: SearchConfig, gmm: StableGMMQuantile,
            iteration: int, seed: int, offset: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft selection of a batch: the corrected relaxation, or the released one for a fixed temperature.

    Returns (S for the selection term, S for the count term). The first moves z only (the threshold
    offset is held fixed), the second moves the offset only (z is held fixed): the count regularizer
    sets the threshold and the selection term sets the mixture, so neither bends the other.
    """
    if config.temperature is not None:  # released code: softmax over samples, then threshold p
        p = torch.softmax(z, dim=0)
        if config.threshold == "gmm":
            tau = released_gmm_threshold(p.detach().numpy().astype(np.float64), q, seed + iteration,
                                         config.gmm_components)
        else:
            tau = float(torch.quantile(p.detach(), q))
        selection = relax(p, tau, config.temperature)
        return selection, selection
    if config.threshold == "gmm":
        if iteration % GMM_REFIT_EVERY == 0:
            gmm.refit(z.detach().numpy().astype(np.float64), q)
        tau = gmm.threshold(z.detach())
    else:
        tau = torch.quantile(z.detach(), q)
    spread = z.detach().std().clamp_min(1e-6)
    return (relax(z, tau + offset.detach() * spread, rho * spread),
            relax(z.detach(), tau + offset * spread, rho * spread))


def calibrated_benefit(z: np.ndarray, result: SearchResult) -> np.ndarray:
    """Expected loss g(z) from the isotonic calibration (spec 10.2, option 1), plus a small strictly
    increasing term 0.05 * mean_loss * z so that equal calibrated values keep the mixture's order."""
    g = np.interp(z, result.calibration_x, result.calibration_y)
    return np.maximum(g, 0.0) + 0.05 * result.mean_loss * np.clip(z, 0.0, None) + 1e-12


def searchnet_from_state(config: SearchConfig, state: dict, n_strategies: int, in_channels: int) -> nn.Module:
    net = build_searchnet(config, n_strategies, in_channels)
    net.load_state_dict(state)
    return net.eval()
