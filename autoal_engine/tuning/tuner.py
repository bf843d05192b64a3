"""One tuning of the task model's configuration on the labeled set, and when one is due.

``tune`` scores configurations of the hierarchical space (space.py) by repeated stratified k-fold CV
(folds.py), each trained with the engine's own training loop for the rung's epochs, under successive
halving and a seconds budget (allocator.py); the winner replaces the incumbent only when it is clearly
better (adoption.py). The outcome is a *recipe*: the ModelConfig fields to train with, ``epochs``
included: the rung at which the chosen configuration scored best (a shorter training that is as good is
cheaper at every later fit).

``TuningState`` is what one fit hands to the next: the incumbent recipe and the labeled-set size at the
last tuning. With ``tuning.enabled`` off a fit trains ``model`` as configured and hands the state on
unchanged. A tuning is due when the labeled set has grown by ``tuning.growth_factor`` since then (or was
never tuned), or when asked (``START_TRAINING``); otherwise the fit trains the incumbent.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import torch

from autoal_engine.config import EngineConfig, ModelConfig, TuningConfig
from autoal_engine.data import ImageSource
from autoal_engine.models import TaskModel, embed, train_model, training_steps
from autoal_engine.tuning import space as model_space
from autoal_engine.tuning.adoption import Score, decide
from autoal_engine.tuning.allocator import OutOfBudget, TrialRecord, rungs_for, successive_halving
from autoal_engine.tuning.folds import cv_folds

log = logging.getLogger(__name__)

CV_NOTE = ("CV accuracy on a few labels overstates the accuracy on new items (about +0.07 at 50 labels on digits); "
           "compare it with the held-out or test accuracy")


@dataclass
class TuningState:
    recipe: dict[str, Any] = field(default_factory=dict)  # ModelConfig fields of the incumbent; {}: as configured
    tuned_at: int = 0  # labeled-set size at the last tuning; 0: never tuned

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": dict(self.recipe), "tuned_at": self.tuned_at}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TuningState:
        data = data or {}
        return cls(dict(data.get("recipe") or {}), int(data.get("tuned_at") or 0))


@dataclass
class TuningOutcome:
    recipe: dict[str, Any]  # what to train with now
    report: dict[str, Any]
    cv: Score | None  # CV score of the recipe, when this tuning measured it


def due(state: TuningState, labeled: int, config: TuningConfig, force: bool) -> tuple[bool, str]:
    """Whether a tuning runs at this fit, and why (or why not)."""
    if not config.enabled:
        return False, "tuning is off (tuning.enabled)"
    if force:
        return True, "asked for (START_TRAINING)"
    if state.tuned_at == 0:
        return True, "never tuned"
    if labeled >= config.growth_factor * state.tuned_at:
        return True, f"{labeled} labels >= {config.growth_factor} x {state.tuned_at} at the last tuning"
    return False, f"not due: {labeled} labels < {config.growth_factor} x {state.tuned_at} at the last tuning"


def apply_recipe(base: ModelConfig, recipe: dict[str, Any]) -> ModelConfig:
    return dataclasses.replace(base, **recipe)


def trained_model_config(config: EngineConfig, state: TuningState) -> ModelConfig:
    """What the task model trains with: ``model`` plus the incumbent recipe, or ``model`` as configured when
    the tuning is off (the state then waits for a re-enable)."""
    return apply_recipe(config.model, state.recipe) if config.tuning.enabled else config.model


def tune(source: ImageSource, labels: np.ndarray, n_classes: int, base: ModelConfig, state: TuningState,
         config: TuningConfig, channels: int, seed: int, device: torch.device) -> TuningOutcome:
    """Tune on the labeled ``source`` / ``labels`` (class indices); see the module docstring."""
    started = time.perf_counter()
    clock = budget_clock(device)
    incumbent_config = apply_recipe(base, state.recipe)
    folds = cv_folds(labels, config.folds, config.repeats, seed)
    report: dict[str, Any] = {"ran": False, "n_labels": int(len(labels)), "budget_seconds": config.budget_seconds}
    if not folds:
        report["reason"] = "too few labels per class for 2 CV folds: the incumbent is kept"
        return TuningOutcome(dict(state.recipe), report, None)
    context = model_space.SpaceContext.build(incumbent_config, config.families, source.native_side(), config.flips)
    rungs = rungs_for(config.min_epochs, config.max_epochs, config.reduction_factor)
    evaluate = _cv_evaluator(source, labels, n_classes, base, folds, channels, seed, device, clock)

    def space(trial: optuna.Trial, incumbent: bool) -> None:
        model_space.suggest(trial, context, incumbent)

    records = successive_halving(space, evaluate, model_space.params_of(incumbent_config, context), rungs,
                                 config.reduction_factor, config.budget_seconds, seed, config.max_trials,
                                 config.startup_trials, clock=clock)
    incumbent = records[0] if records and records[0].incumbent else None
    winner = max((r for r in records if r.score is not None), key=lambda r: r.score.mean, default=None)
    same = winner is None or incumbent is None or winner.params == incumbent.params
    decision = decide(incumbent.score if incumbent else None, winner.score if winner else None, same)
    chosen = winner if decision.adopted else incumbent
    score = chosen.score if chosen is not None else None
    if score is not None:
        recipe = {**model_space.recipe(chosen.params), "epochs": chosen.best_rung["resource"]}
    else:
        recipe = dict(state.recipe)
    report.update({
        "ran": True,
        "folds": len(folds) // config.repeats,
        "repeats": config.repeats,
        "rungs": rungs,
        "trials": [r.to_dict() for r in records],
        "completed": sum(r.state == "completed" for r in records),
        "pruned": sum(r.state == "pruned" for r in records),
        "incumbent": _summary(incumbent),
        "winner": _summary(winner),
        "adopted": decision.adopted,
        "reason": decision.reason,
        "recipe": recipe,
        "cv_accuracy": None if score is None else score.mean,
        "cv_se": None if score is None else score.se,
        "cv_note": CV_NOTE,
        "seconds": time.perf_counter() - started,  # wall seconds; the budget counts clock's
    })
    log.info("tuning on %d labels: %d trials (%d completed, %d pruned) in %.1fs; %s", len(labels), len(records),
             report["completed"], report["pruned"], report["seconds"], decision.reason)
    return TuningOutcome(recipe, report, score)


def _summary(record: TrialRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    score = record.score
    return {"number": record.number, "params": record.params, "state": record.state,
            "cv_accuracy": None if score is None else score.mean, "cv_se": None if score is None else score.se}


def budget_clock(device: torch.device) -> Callable[[], float]:
    """What the budget counts: on a CPU the process's CPU seconds (``time.process_time``), so a tuning does the
    same work whether the machine is idle or busy (on a loaded machine it takes longer, it does not do less);
    on CUDA wall seconds (GPU work is not CPU time)."""
    return time.perf_counter if device.type == "cuda" else time.process_time


def _cv_evaluator(source: ImageSource, labels: np.ndarray, n_classes: int, base: ModelConfig,
                  folds: list[tuple[np.ndarray, np.ndarray]], channels: int, seed: int, device: torch.device,
                  clock: Callable[[], float]) -> Callable[[dict[str, Any], int, float], np.ndarray]:
    """(params, epochs, deadline) -> accuracy on each fold's test items of a model trained on its rest."""
    images_by_size: dict[int, torch.Tensor] = {}
    targets = torch.from_numpy(labels)

    def evaluate(params: dict[str, Any], epochs: int, deadline: float) -> np.ndarray:
        config = apply_recipe(base, {**model_space.recipe(params), "epochs": epochs})
        if config.image_size not in images_by_size:
            images_by_size[config.image_size] = source.load_all(config.image_size, channels)
        images = images_by_size[config.image_size]
        scores = []
        for index, (train, test) in enumerate(folds):
            if clock() > deadline:
                raise OutOfBudget
            torch.manual_seed(seed + index)  # the initial weights: the same for every trial of a fold
            model = TaskModel(config, channels, n_classes)
            train_model(model, images[train], targets[train], config, training_steps(config, len(train)),
                        seed + index, device)
            logits = embed(model, ImageSource(images[test].numpy(), "inputs"), config, channels, device).logits
            scores.append(float((logits.argmax(1) == labels[test]).mean()))
        return np.array(scores)

    return evaluate
