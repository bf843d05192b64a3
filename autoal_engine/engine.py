"""The engine facade: ``Engine(config).fit(inputs, labels, costs) -> rank(pool) -> Ranking``.

fit:
 0. with ``tuning.enabled``, when a tuning is due, choose the task model's configuration from the labels
    (tuning/); otherwise train the incumbent configuration (``tuning_state``) or ``model`` as configured;
 1. train the task model f on the labeled set;
 2. fit the cost model on observed seconds (features: top principal components of f's embedding);
 3. the held-out accuracy: with the search on (``search.enabled``, off by default), two FitNets, each
    trained on one stratified half of the labeled set, score the other half with every candidate (the
    simulated AL round, cross-fitted; settings ``holdout.*``) and the SearchNet / FitNet bilevel search runs
    on those records (AutoAL-R, spec section 9); otherwise no extra networks: the tuning's CV accuracy when a
    tuning ran, else the head's k-fold CV on the fit's own embeddings (``head.py``; it reads high, since the
    backbone saw those labels), and the candidates get equal weights.
refit (the fast path, on cached vectors): keep the backbone, retrain the head and the cost model;
rank_vectors: rank from cached vectors, the same ranking as `rank` on the images.
rank:
 4. one pass of f over the pool (probabilities, embeddings, MC-dropout digest, predicted loss);
 5. every candidate's score, normalized; per-sample weights pi (equal, or SearchNet's); z = sum_k pi_k r_k
    (``mixture.py``);
 6. benefit = z (equal weights) or the search's calibrated expected loss g(z); priority = benefit / cost^gamma,
    scaled to [0, 1] (gamma may fade with the labels: ``cost.faded_gamma``);
 7. the first batch_size items of the queue are a diverse batch among the top priorities (batch.py).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg
import torch
from threadpoolctl import threadpool_limits

from autoal_engine import cost as cost_module
from autoal_engine.batch import diverse_batch, with_batch_first
from autoal_engine.config import EngineConfig
from autoal_engine.cost import CostModel
from autoal_engine.data import ImageSource, check_costs, check_labels
from autoal_engine.errors import NotFittedError
from autoal_engine.head import head_cv_accuracy, head_outputs, join_vectors, split_vectors, train_head
from autoal_engine.mixture import (
    equal_weights,
    expected_loss_benefit,
    mixture,
    mixture_weights,
    normalize_candidates,
)
from autoal_engine.models import (
    THUMBNAIL_SIZE,
    TaskModel,
    embed,
    pool_outputs,
    resolve_device,
    thumbnails,
    train_model,
    training_steps,
)
from autoal_engine.pruning import class_diversity_rewards, decide, pruned_weights
from autoal_engine.ranking import Ranking
from autoal_engine.search import (
    SearchRecords,
    SearchResult,
    calibrated_benefit,
    meta_features,
    run_search,
    searchnet_from_state,
)
from autoal_engine.strategies import check_strategy_names, needs_mc_dropout, score_matrix
from autoal_engine.tuning import TuningOutcome, TuningState, due, trained_model_config
from autoal_engine.tuning import tune as tune_model

log = logging.getLogger(__name__)

CHECKPOINT = "engine.pt"
FORMAT_VERSION = 1


class Engine:
    """Task model + candidate strategies + AutoAL search + cost model, behind four methods."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config if config is not None else EngineConfig()
        self.config.validate()
        check_strategy_names(self.config.strategies)
        self.device = resolve_device(self.config.model.device)
        if self.config.model.threads:
            torch.set_num_threads(self.config.model.threads)
        self.version: str | None = None
        self.backbone_version: str | None = None  # the full fit that trained the backbone (refit keeps it)
        self.classes: tuple = ()
        self.channels = 1
        self.model: TaskModel | None = None
        self.labeled_embeddings = np.zeros((0, 0), np.float32)
        self.labeled_labels = np.zeros(0, np.int64)  # class indices of the fit, kept in the checkpoint
        self.search: SearchResult | None = None
        self.cost_model = CostModel(self.config.cost)
        self.cost_basis = _empty_basis()  # the embeddings' PCA (mean, components): the cost model's features
        self.image_basis = _empty_basis()  # the thumbnails' PCA (cost.image_features); empty: not read
        self.report: dict[str, Any] = {}
        self.tuning_state = TuningState()  # the incumbent model configuration, handed from fit to fit
        self.pruning_history: list[list[float]] = []  # the candidates' rewards of earlier rounds (pruning.py)
        self.model_config = self.config.model  # what the task model is trained with: config.model + the recipe

    @property
    def is_fitted(self) -> bool:
        return self.model is not None

    # ------------------------------------------------------------------ fit

    def fit(self, inputs, labels, costs=None, *, classes=None, pool_size: int | None = None,
            tuning_state: TuningState | None = None, tune: bool = False,
            pruning_history: list[list[float]] | None = None) -> Engine:
        """Train on labeled inputs. ``costs``: observed seconds per input (NaN unknown);
        ``classes``: the full ordered class list (default: the sorted labels seen);
        ``pool_size``: size of the unlabeled pool, which sets the selection ratio t;
        ``tuning_state``: the previous fit's ``engine.tuning_state`` (the incumbent model configuration and
        when it was tuned; default: this engine's own); ``tune``: tune now even if no tuning is due
        (with ``tuning.enabled``); ``pruning_history``: the previous ranking's ``report["pruning"]["history"]``
        (the candidates' rewards so far, with ``pruning.enabled``; default: this engine's own)."""
        started = time.perf_counter()
        source = ImageSource(inputs, "inputs")
        classes, y = check_labels(labels, len(source), classes)
        seconds = check_costs(costs, len(source))
        if pool_size is not None and pool_size < 0:
            raise ValueError("pool_size: must be >= 0")
        config, seed = self.config, self.config.seed
        self.classes = classes
        self.channels = config.model.channels or source.channels()
        self._continue_pruning(pruning_history)
        tuning = self._tune(source, y, tuning_state if tuning_state is not None else self.tuning_state, tune)
        tuned = time.perf_counter()
        images, model, logits, embeddings = self._train_task_model(source, y)
        if not _finite(logits, embeddings) and self.model_config != config.model:
            log.warning("the tuned recipe diverged on %d labels (non-finite outputs): training the configured model "
                        "instead, and the next tuning starts from it", len(y))
            tuning.report["diverged_recipe"] = dict(self.tuning_state.recipe)
            self.tuning_state = TuningState({}, self.tuning_state.tuned_at)
            self.model_config = trained_model_config(config, self.tuning_state)
            images, model, logits, embeddings = self._train_task_model(source, y)
        if not _finite(logits, embeddings):
            raise ValueError(f"model: training diverged on {len(y)} labels (non-finite outputs); lower model.lr "
                             f"({self.model_config.lr})")
        model_config = self.model_config
        trained = time.perf_counter()

        self._fit_cost(embeddings, thumbnails(images).numpy() if self._reads_images() else None, seconds)

        ratio = self._ratio(pool_size)
        search = config.search.enabled and len(config.strategies) > 1
        records, holdout = None, None
        holdout_source = None
        if search and self._can_cross_fit(y):  # the search learns from the FitNets' simulated round
            records, holdout = self._cross_fit(images, y, ratio)
            holdout_source = "fitnets" if holdout is not None else None
        elif tuning.cv is not None:  # the tuning's CV measured this configuration already
            holdout, holdout_source = tuning.cv.mean, "tuning_cv"
        else:  # no extra networks: the head's k-fold CV on the fit's own embeddings
            holdout = head_cv_accuracy(model.head, embeddings, y, model_config, training_steps(model_config, len(y)),
                                       seed + 1)
            holdout_source = "head_cv" if holdout is not None else None
        simulated = time.perf_counter()
        self.search = run_search(records, config.search, seed, self.channels) if records else None
        searched = time.perf_counter()

        self.model = model
        self.labeled_embeddings, self.labeled_labels = embeddings, y
        self.version = self.backbone_version = _new_version()
        weights = (self.search.mean_weights if self.search is not None
                   else np.full(len(config.strategies), 1.0 / len(config.strategies)))
        self.report = {
            "version": self.version,
            "path": "full",
            "backbone_version": self.backbone_version,
            "n_labeled": int(len(y)),
            "classes": [str(c) for c in classes],
            "train_accuracy": float((logits.argmax(1) == y).mean()),
            "holdout_accuracy": holdout,
            "holdout_source": holdout_source,  # "fitnets" (two halves) | "tuning_cv" (k-fold CV of the tuning)
            "model_config": dataclasses.asdict(model_config),
            "tuning": tuning.report,
            "tuning_state": self.tuning_state.to_dict(),  # what the next fit starts from (the incumbent)
            "selection_ratio": ratio,
            "search_used": self.search is not None,
            "mean_strategy_weights": {n: float(w) for n, w in zip(config.strategies, weights, strict=True)},
            "search": None if self.search is None else {
                "soft_count": self.search.soft_count,
                "target_count": self.search.target_count,
                "iterations": config.search.iterations,
            },
            "cost": self.cost_model.report(),
            "timings": {
                "tuning_seconds": tuned - started,
                "train_seconds": trained - tuned,
                "simulated_round_seconds": simulated - trained,
                "search_seconds": searched - simulated,
                "fit_seconds": searched - started,
            },
            "device": str(self.device),
        }
        log.info("fitted %s on %d labels in %.1fs (search %s)", self.version, len(y), searched - started,
                 "used" if self.search else "skipped")
        return self

    def _train_task_model(self, source: ImageSource, y: np.ndarray) -> tuple:
        """(images at the training size, the task model trained on them with ``model_config``, its logits and
        embeddings of them)."""
        model_config, seed = self.model_config, self.config.seed
        images = source.load_all(model_config.image_size, self.channels)
        torch.manual_seed(seed)
        np.random.seed(seed)
        model = TaskModel(model_config, self.channels, len(self.classes))
        train_model(model, images, torch.from_numpy(y), model_config, training_steps(model_config, len(y)), seed,
                    self.device)
        logits, embeddings, _, _ = embed(model, _tensor_source(images), model_config, self.channels, self.device)
        return images, model, logits, embeddings

    def _tune(self, source: ImageSource, y: np.ndarray, state: TuningState, force: bool) -> TuningOutcome:
        """Tune the model configuration when due (tuning/), else keep the incumbent; sets model_config and
        tuning_state."""
        run, why = due(state, len(y), self.config.tuning, force)
        if run:
            outcome = tune_model(source, y, len(self.classes), self.config.model, state, self.config.tuning,
                                 self.channels, self.config.seed, self.device)
            tuned_at = len(y) if outcome.report["ran"] else state.tuned_at
            self.tuning_state = TuningState(outcome.recipe, tuned_at)
        else:
            outcome = TuningOutcome(dict(state.recipe), {"ran": False, "reason": why}, None)
            self.tuning_state = TuningState(dict(state.recipe), state.tuned_at)
        self.model_config = trained_model_config(self.config, self.tuning_state)
        return outcome

    def _ratio(self, pool_size: int | None) -> float:
        if self.config.mixture.selection_ratio is not None:
            return float(self.config.mixture.selection_ratio)
        if not pool_size:
            return 0.1
        return float(np.clip(self.config.batch_size / pool_size, 0.02, 0.5))

    def _can_cross_fit(self, y: np.ndarray) -> bool:
        counts = np.bincount(y)
        enough = len(y) >= self.config.holdout.min_labels and (counts >= 2).sum() >= 2
        if not enough:
            log.info("too few labels to cross-fit (%d): no held-out accuracy, equal strategy weights", len(y))
        return bool(enough)

    def _halves(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A stratified random split into two halves (classes with one sample go to either side)."""
        rng = np.random.default_rng(self.config.seed + 1)
        first, second = [], []
        for label in np.unique(y):
            members = rng.permutation(np.flatnonzero(y == label))
            cut = len(members) // 2 + (rng.integers(2) if len(members) % 2 else 0)
            first.extend(members[:cut])
            second.extend(members[cut:])
        return np.sort(first), np.sort(second)

    def _cross_fit(self, images: torch.Tensor, y: np.ndarray, ratio: float
                   ) -> tuple[SearchRecords | None, float | None]:
        """Cross-fitted FitNets, each trained on one half, score the other half with every candidate: the
        simulated AL round the search learns from (spec A1, A9), and the held-out accuracy."""
        config = self.config
        halves = self._halves(y)
        parts: list[dict[str, Any]] = []
        correct = 0
        for group, (train_idx, eval_idx) in enumerate([halves, halves[::-1]]):
            if len(np.unique(y[train_idx])) < 2 or len(eval_idx) < 2:
                return None, None
            fitnet = TaskModel(self.model_config, self.channels, len(self.classes))
            train_model(fitnet, images[train_idx], torch.from_numpy(y[train_idx]), self.model_config,
                        training_steps(self.model_config, len(train_idx), config.holdout.fitnet_steps),
                        config.seed + 1 + group, self.device)
            labels = y[eval_idx]
            train_embeddings = embed(fitnet, _tensor_source(images[train_idx]), self.model_config,
                                     self.channels, self.device).embeddings
            batch = max(2, math.ceil(ratio * len(eval_idx)))
            outputs = pool_outputs(fitnet, _tensor_source(images[eval_idx]), self.model_config, self.channels,
                                   self.device, train_embeddings, batch, config.seed + group, self._mc_samples())
            candidates = normalize_candidates(self._scores(outputs), config.mixture.candidate_scores, ratio)
            correct += int((outputs.probs.argmax(1) == labels).sum())
            parts.append({
                "candidates": candidates,
                "meta": meta_features(outputs, candidates),
                "fit_embeddings": outputs.embeddings,
                "labels": labels,
                "group": np.full(len(labels), group),
                "losses": -np.log(np.clip(outputs.probs[np.arange(len(labels)), labels], 1e-12, 1.0)),
                "head": (fitnet.head.weight.detach().cpu().numpy(), fitnet.head.bias.detach().cpu().numpy()),
                "images": images[eval_idx],
            })
        joined = {key: np.concatenate([p[key] for p in parts]) for key in
                  ("candidates", "meta", "fit_embeddings", "labels", "group", "losses")}
        records = SearchRecords(
            head_weight=np.stack([p["head"][0] for p in parts]),
            head_bias=np.stack([p["head"][1] for p in parts]),
            ratio=ratio,
            images=torch.cat([p["images"] for p in parts]) if config.search.searchnet_input == "image" else None,
            **joined,
        )
        return records, correct / len(y)

    # ------------------------------------------------------------------ rank and predict

    def rank(self, pool, known_costs=None) -> Ranking:
        """Score every pool item: priority in [0, 1] (1 = label first) and its explanation."""
        self._require_fitted()
        source = ImageSource(pool, "pool")
        known = check_costs(known_costs, len(source), "known_costs")
        outputs = pool_outputs(self.model, source, self.model_config, self.channels, self.device,
                               self.labeled_embeddings, self.config.batch_size, self.config.seed,
                               self._mc_samples(), with_thumbnails=self._reads_images())
        return self._rank_outputs(outputs, known, source)

    def _rank_outputs(self, outputs, known: np.ndarray, source: ImageSource | None) -> Ranking:
        """Steps 5-7 on the pool's outputs (``source``: the pool's images, read only by an image SearchNet)."""
        config = self.config
        ratio = self._ratio(outputs.size)
        candidates = normalize_candidates(self._scores(outputs), config.mixture.candidate_scores, ratio)
        weights = self._strategy_weights(outputs, candidates, source)
        unsure = self._regime(outputs.probs)
        active = self._prune(outputs, candidates, unsure)
        if active is not None:
            weights = pruned_weights(weights, active)
        z = mixture(candidates, weights)
        benefit = (calibrated_benefit(z, self.search) if self.search is not None
                   else expected_loss_benefit(z, outputs.probs))
        predicted = self.cost_model.predict(self._cost_features(outputs.embeddings, outputs.thumbnails))
        seconds = cost_module.combine_known(predicted, known, self.cost_model.is_trusted)
        gamma = cost_module.faded_gamma(self.cost_model.effective_gamma(config.cost.gamma, known),
                                        len(self.labeled_labels), config.cost.gamma_halving_labels)
        # the weight of cost in this ranking, and (below, with a diverse head) the shortlist cost picked from
        self.report["cost"] = {**self.report.get("cost", {}), "gamma": gamma, "shortlist": None}
        predicted_class = outputs.probs.argmax(1)
        divisor = (cost_module.relative_to_class(seconds, predicted_class)
                   if config.cost.within_class and gamma > 0 else seconds)  # gamma 0: the cost is not read
        priority = cost_module.priority(benefit, divisor, gamma)
        if config.batch_diversity == "kmeans" and len(config.strategies) > 1:  # one candidate: its own order
            prefilter = (config.diversity_prefilter_unsure if unsure and config.diversity_prefilter_unsure
                         else config.diversity_prefilter)
            # while cost counts and picks within the benefit's regions, its part of the head has its own shortlist
            cost_prefilter = ((config.cost.prefilter or prefilter) if gamma > 0 and config.cost.pick_within_regions
                              else None)
            self.report["regime"]["shortlist"] = prefilter * config.batch_size
            self.report["cost"]["shortlist"] = cost_prefilter * config.batch_size if cost_prefilter else None
            priority = with_batch_first(priority, self._queue_head(priority, benefit, outputs.embeddings, gamma,
                                                                   prefilter, cost_prefilter))
        return Ranking(
            priority=priority,
            informativeness=benefit,
            predicted_cost=seconds,
            predicted_label=np.array(self.classes, dtype=object)[predicted_class],
            probabilities=outputs.probs,
            strategy_weights=weights,
            strategy_names=tuple(config.strategies),
            classes=self.classes,
            mean_strategy_weights={n: float(w) for n, w in
                                   zip(config.strategies, weights.mean(axis=0), strict=True)},
            candidate_scores=candidates.astype(np.float32),
            active=active,
        )

    def _reads_images(self) -> bool:
        """Whether the cost model reads the images themselves (``cost.image_features`` > 0)."""
        return self.config.cost.image_features > 0

    def _fit_cost(self, embeddings: np.ndarray, thumbs: np.ndarray | None, seconds: np.ndarray) -> None:
        """The cost model on the labeled items: its features are the top ``cost.features`` principal
        components of the embeddings and, with ``cost.image_features`` and thumbnails, as many of the
        thumbnails' (models.thumbnails)."""
        self.cost_basis = _principal_basis(embeddings, self.config.cost.features)
        self.image_basis = (_principal_basis(thumbs, self.config.cost.image_features)
                            if self._reads_images() and thumbs is not None else _empty_basis())
        self.cost_model = CostModel(self.config.cost).fit(self._cost_features(embeddings, thumbs), seconds)

    def _cost_features(self, embeddings: np.ndarray, thumbs: np.ndarray | None) -> np.ndarray:
        """The cost model's features of items (see ``_fit_cost``). Items without thumbnails (vectors cached
        before the cost model read images) get the labeled items' mean thumbnail: the embedding's part alone
        orders them."""
        features = _project(embeddings, self.cost_basis)
        mean, components = self.image_basis
        if len(components) == 0:
            return features
        if thumbs is None:
            log.warning("cost: no thumbnails for these %d items (cached before cost.image_features); their "
                        "predicted seconds read the embedding only", len(embeddings))
            return np.hstack([features, np.zeros((len(embeddings), len(components)), np.float32)])
        return np.hstack([features, _project(thumbs, self.image_basis)])

    def _regime(self, probs: np.ndarray) -> bool:
        """Whether the model is unsure of this pool: its confidence there, the mean max-probability (1 - its
        expected 0-1 loss), is below ``regime_confidence``; recorded in ``report["regime"]`` (with the diverse
        head's shortlist, its number of items, once the head is drawn)."""
        confidence = float(probs.max(axis=1).mean()) if len(probs) else 1.0
        unsure = confidence < self.config.regime_confidence
        self.report["regime"] = {"pool_confidence": confidence, "threshold": self.config.regime_confidence,
                                 "unsure": unsure}
        return unsure

    def _queue_head(self, priority: np.ndarray, benefit: np.ndarray, embeddings: np.ndarray,
                    gamma: float, prefilter: int, cost_prefilter: int | None) -> np.ndarray:
        """The diverse head of the queue (batch.py) by priority, among the top ``prefilter`` x b. While cost
        counts (gamma > 0), its first ceil(exploration * b) items are a diverse batch by benefit alone, cost
        ignored: the cost model keeps seeing slow items, which a value-per-second queue would otherwise never
        serve (spec 10.6). With ``cost_prefilter`` (set while ``cost.pick_within_regions``) the rest's regions
        come from the benefit too, among its top ``cost_prefilter`` x b items (``cost.prefilter``), and cost only
        chooses each region's item (the one of most value per second)."""
        config = self.config
        b, seed = config.batch_size, config.seed
        explore = math.ceil(config.cost.exploration * b) if gamma > 0 else 0

        def head(indices: np.ndarray, size: int) -> np.ndarray:
            if cost_prefilter:
                return indices[diverse_batch(benefit[indices], embeddings[indices], size, cost_prefilter, seed,
                                             pick_by=priority[indices])]
            return indices[diverse_batch(priority[indices], embeddings[indices], size, prefilter, seed)]

        everything = np.arange(len(priority))
        if explore == 0:
            return head(everything, b)
        blind = diverse_batch(benefit, embeddings, explore, prefilter, seed)
        rest = np.setdiff1d(everything, blind)
        if len(rest) == 0:
            return blind
        return np.concatenate([blind, head(rest, b - len(blind))])

    def _continue_pruning(self, history: list[list[float]] | None) -> None:
        """Start this fit's pruning from ``history``, or from the last ranking's when None."""
        if history is None:
            history = (self.report.get("pruning") or {}).get("history") or self.pruning_history
        self.pruning_history = [list(map(float, row)) for row in history]

    def _prune(self, outputs, candidates: np.ndarray, unsure: bool) -> np.ndarray | None:
        """The candidates active this round (pruning.py), recorded in ``report["pruning"]`` with the reward
        history the next fit continues; None when pruning is off or there is one candidate. With
        ``pruning.only_while_unsure`` every candidate is active while the model is sure of the pool (the
        rewards are still recorded). Ranking twice gives the same decision: this round's rewards extend the
        history handed to the fit, not the last ranking's."""
        config = self.config
        if not config.pruning.enabled or candidates.shape[1] < 2:
            return None
        counts = np.bincount(self.labeled_labels, minlength=len(self.classes))
        rewards = class_diversity_rewards(candidates, outputs.probs.argmax(1), counts, config.batch_size)
        decision = decide(self.pruning_history, rewards, config.pruning)
        if config.pruning.only_while_unsure and not unsure:
            decision.active = np.ones_like(decision.active)
        self.report["pruning"] = decision.to_dict(tuple(config.strategies))
        return decision.active

    def _mc_samples(self) -> int:
        return self.model_config.mc_samples if needs_mc_dropout(self.config.strategies) else 0

    def _scores(self, outputs) -> np.ndarray:
        """Raw candidate scores (N, K). BLAS is held to one thread: the strategies' matrix products are
        small, and a multi-threaded BLAS that spin-waits on a busy 2-core machine runs ten times slower."""
        with threadpool_limits(limits=1, user_api="blas"):
            return score_matrix(self.config.strategies, outputs)

    def _strategy_weights(self, outputs, candidates: np.ndarray, source: ImageSource | None) -> np.ndarray:
        n, k = candidates.shape
        if self.search is None:
            return equal_weights(n, k)
        if self.config.search.searchnet_input == "image" and source is None:
            raise ValueError("search.searchnet_input: 'image' needs the pool's images; rank from cached vectors "
                             "needs 'meta'")
        net = searchnet_from_state(self.config.search, self.search.state, k, self.channels)
        meta = torch.from_numpy(meta_features(outputs, candidates))
        chunks = []
        with torch.no_grad():
            for start in range(0, len(meta), self.model_config.inference_batch_size):
                stop = start + self.model_config.inference_batch_size
                images = None
                if self.config.search.searchnet_input == "image":
                    images = source.load(start, min(stop, len(meta)), self.model_config.image_size, self.channels)
                logits, _ = net(meta[start:stop], images)
                chunks.append(mixture_weights(logits, self.config.search.weighting))
        return torch.cat(chunks).numpy().astype(np.float32)

    # ------------------------------------------------------------------ the fast path: cached vectors

    def vectors(self, inputs) -> np.ndarray:
        """What the embedding cache keeps for each input under this engine's backbone
        (``backbone_version``): its embedding, its thumbnail when the cost model reads images
        (``cost.image_features``) and the loss head's prediction, (N, D [+ P] + 1) float32."""
        self._require_fitted()
        source = ImageSource(inputs, "inputs")
        embedded = embed(self.model, source, self.model_config, self.channels, self.device, self._reads_images())
        return join_vectors(embedded.embeddings, embedded.predicted_loss, embedded.thumbnails)

    @property
    def vector_width(self) -> int:
        """Columns of this engine's cached vectors (``vectors``): D + 1, or D + THUMBNAIL_SIZE**2 + 1 when the
        cost model reads images."""
        self._require_fitted()
        return self.model.head.in_features + (THUMBNAIL_SIZE**2 if self._reads_images() else 0) + 1

    def refit(self, vectors, labels, costs=None, *, pool_size: int | None = None,
              pruning_history: list[list[float]] | None = None) -> Engine:
        """The fast path's fit: keep the backbone (and its loss head and search), retrain the head and the
        cost model on the labeled items' cached ``vectors`` (from `vectors`, under this backbone).
        The held-out accuracy is the head's k-fold CV on those vectors (``holdout_source`` "head_cv").
        A label outside the backbone's classes needs a full `fit`: ValueError."""
        self._require_fitted()
        started = time.perf_counter()
        embeddings, _, thumbs = self._split_vectors(vectors)
        unknown = sorted({str(label) for label in labels} - {str(c) for c in self.classes})
        if unknown:
            raise ValueError(f"labels: {unknown[:5]} are not classes of this backbone ({list(self.classes)}); a "
                             "full fit is needed")
        _, y = check_labels(labels, len(embeddings), self.classes)
        seconds = check_costs(costs, len(embeddings))
        if pool_size is not None and pool_size < 0:
            raise ValueError("pool_size: must be >= 0")
        self._continue_pruning(pruning_history)
        config, model_config = self.config, self.model_config
        steps = training_steps(model_config, len(y))
        self.model.head = train_head(self.model.head, embeddings, y, model_config, steps, config.seed).to(self.device)
        trained = time.perf_counter()
        self._fit_cost(embeddings, thumbs, seconds)
        holdout = head_cv_accuracy(self.model.head, embeddings, y, model_config, steps, config.seed + 1)
        finished = time.perf_counter()
        with torch.no_grad():
            logits = self.model.head.cpu()(torch.from_numpy(embeddings)).numpy()
        self.model.head.to(self.device)
        self.labeled_embeddings, self.labeled_labels = embeddings, y
        self.version = _new_version()
        self.report = {
            **self.report,
            "version": self.version,
            "path": "fast",
            "backbone_version": self.backbone_version,
            "n_labeled": int(len(y)),
            "train_accuracy": float((logits.argmax(1) == y).mean()),
            "holdout_accuracy": holdout,
            "holdout_source": "head_cv" if holdout is not None else None,
            "selection_ratio": self._ratio(pool_size),
            "tuning": {"ran": False, "reason": "fast path: the backbone's configuration is kept"},
            "cost": self.cost_model.report(),
            "timings": {"train_seconds": trained - started, "holdout_seconds": finished - trained,
                        "fit_seconds": finished - started},
        }
        log.info("refitted %s on %d cached labels in %.2fs (backbone %s)", self.version, len(y),
                 finished - started, self.backbone_version)
        return self

    def rank_vectors(self, vectors, known_costs=None) -> Ranking:
        """`rank` from the pool's cached vectors (under this backbone): the same ranking as from the images,
        with no pass over them."""
        self._require_fitted()
        embeddings, losses, thumbs = self._split_vectors(vectors)
        if not np.isfinite(embeddings).all():
            raise ValueError("vectors: must be finite (an item missing from the cache?)")
        known = check_costs(known_costs, len(embeddings), "known_costs")
        outputs = head_outputs(self.model.head, self.model.dropout.p, embeddings, losses, self.labeled_embeddings,
                               chunk=self.model_config.inference_batch_size, batch_size=self.config.batch_size,
                               seed=self.config.seed, mc_samples=self._mc_samples(), device=self.device,
                               thumbnails=thumbs)
        return self._rank_outputs(outputs, known, None)

    def _split_vectors(self, vectors) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(embeddings, predicted loss, thumbnails or None) of cached vectors, which must be of this backbone's
        width: D + 1 columns, or D + THUMBNAIL_SIZE**2 + 1 with thumbnails."""
        width = self.model.head.in_features
        shape = np.shape(vectors)
        if len(shape) != 2 or shape[1] not in (width + 1, width + THUMBNAIL_SIZE**2 + 1):
            raise ValueError(f"vectors: shape {shape}; this backbone's cached vectors have {width + 1} columns "
                             f"({width}-d embeddings and the predicted loss), or {width + THUMBNAIL_SIZE**2 + 1} "
                             "with thumbnails")
        return split_vectors(vectors, width)

    def predict(self, inputs) -> tuple[np.ndarray, np.ndarray]:
        """Predicted class labels and probabilities (N, C) for new inputs."""
        probs, _ = self.embed(inputs)
        return np.array(self.classes, dtype=object)[probs.argmax(1)], probs

    def embed(self, inputs) -> tuple[np.ndarray, np.ndarray]:
        """The task model's probabilities (N, C) and penultimate embeddings (N, D) for inputs."""
        self._require_fitted()
        source = ImageSource(inputs, "inputs")
        logits, embeddings, _, _ = embed(self.model, source, self.model_config, self.channels, self.device)
        return torch.softmax(torch.from_numpy(logits), dim=1).numpy(), embeddings

    def _require_fitted(self) -> None:
        if self.model is None:
            raise NotFittedError("engine: not fitted yet; call fit() first")

    # ------------------------------------------------------------------ persistence

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``directory/engine.pt`` atomically: a crash mid-save leaves the previous file intact."""
        self._require_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {
            "format": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "version": self.version,
            "backbone_version": self.backbone_version,
            "classes": list(self.classes),
            "channels": self.channels,
            "model": self.model.state_dict(),
            "labeled_embeddings": torch.from_numpy(self.labeled_embeddings),
            "labeled_labels": torch.from_numpy(self.labeled_labels),
            "cost_model": _to_tensors(self.cost_model.state_dict()),
            "cost_basis": [torch.from_numpy(a) for a in self.cost_basis],
            "image_basis": [torch.from_numpy(a) for a in self.image_basis],
            "search": None if self.search is None else _to_tensors(vars(self.search)),
            "report": self.report,
            "tuning_state": self.tuning_state.to_dict(),
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        target = directory / CHECKPOINT
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".engine-", suffix=".tmp", delete=False) as tmp:
            tmp.write(buffer.getvalue())
            tmp.flush()
            os.fsync(tmp.fileno())
        try:
            os.replace(tmp.name, target)
        except BaseException:
            os.unlink(tmp.name)
            raise
        return target

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Engine:
        path = Path(directory) / CHECKPOINT
        if not path.exists():
            raise ValueError(f"directory: no saved engine at {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("format") != FORMAT_VERSION:
            raise ValueError(f"directory: unsupported checkpoint format {state.get('format')!r}")
        saved = dict(state["config"])
        saved.setdefault("tuning", {"enabled": False})  # saved before the tuning existed: the fixed recipe
        config = EngineConfig.from_dict(saved)
        if config.model.device.startswith("cuda") and not torch.cuda.is_available():
            config.model.device = "auto"
        engine = cls(config)
        engine.version = state["version"]
        engine.backbone_version = state.get("backbone_version") or state["version"]
        engine.classes = tuple(state["classes"])
        engine.channels = state["channels"]
        engine.tuning_state = TuningState.from_dict(state.get("tuning_state"))
        engine.model_config = trained_model_config(config, engine.tuning_state)
        engine.model = TaskModel(engine.model_config, engine.channels, len(engine.classes))
        _load_model_state(engine.model, state["model"])
        engine.model.to(engine.device).eval()
        engine.labeled_embeddings = state["labeled_embeddings"].numpy()
        engine.labeled_labels = state["labeled_labels"].numpy()
        engine.cost_model = CostModel.from_state_dict(config.cost, _to_numpy(state["cost_model"]))
        engine.cost_basis = tuple(t.numpy() for t in state["cost_basis"])
        engine.image_basis = (tuple(t.numpy() for t in state["image_basis"]) if "image_basis" in state
                              else _empty_basis())  # checkpoints before cost.image_features
        engine.search = None if state["search"] is None else SearchResult(**_to_numpy(state["search"]))
        engine.report = state["report"]
        return engine


def _load_model_state(model: TaskModel, state: dict[str, torch.Tensor]) -> None:
    """Load a task model's weights; checkpoints written before the input normalization became buffers lack
    them and keep the defaults ((x - 0.5) / 0.25, which they were trained with)."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [key for key in missing if key not in ("input_mean", "input_std")]
    if missing or unexpected:
        raise ValueError(f"directory: the saved task model does not match its configuration (missing {missing}, "
                         f"unexpected {unexpected})")


def _new_version() -> str:
    return f"autoal-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"


def _tensor_source(images: torch.Tensor) -> ImageSource:
    return ImageSource(images.numpy(), "inputs")


def _finite(*arrays: np.ndarray) -> bool:
    return all(bool(np.isfinite(array).all()) for array in arrays)


def _principal_basis(embeddings: np.ndarray, components: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and top principal directions of the labeled embeddings (the cost model's features)."""
    mean = embeddings.mean(axis=0)
    try:
        _, _, vt = np.linalg.svd(embeddings - mean, full_matrices=False)
    except np.linalg.LinAlgError:  # LAPACK's gesdd can fail to converge on finite data; gesvd is sturdier
        _, _, vt = scipy.linalg.svd(embeddings - mean, full_matrices=False, lapack_driver="gesvd")
    return mean.astype(np.float32), vt[:components].astype(np.float32)


def _empty_basis() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(0, np.float32), np.zeros((0, 0), np.float32)


def _project(rows: np.ndarray, basis: tuple[np.ndarray, np.ndarray], chunk: int = 65_536) -> np.ndarray:
    """(rows - mean) @ components.T, ``chunk`` rows at a time: the centred copy of 10^6 thumbnails would be 1 GB."""
    mean, components = basis
    out = np.empty((len(rows), len(components)), dtype=np.result_type(rows.dtype, mean.dtype, components.dtype))
    for start in range(0, len(rows), chunk):
        out[start:start + chunk] = (rows[start:start + chunk] - mean) @ components.T
    return out


def _to_tensors(value: Any) -> Any:
    """numpy arrays -> tensors, recursively, so checkpoints load with weights_only=True."""
    if isinstance(value, np.ndarray):
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(value))}
    if isinstance(value, dict):
        return {k: _to_tensors(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_tensors(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _to_numpy(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__ndarray__"}:
            return value["__ndarray__"].numpy()
        return {k: _to_numpy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_numpy(v) for v in value]
    return value
