"""Successive halving over a training resource under a seconds budget, with Optuna's ask-and-tell.

Each trial draws a configuration from a define-by-run space (TPE, `optuna.samplers.TPESampler` with
explicit arguments: multivariate and grouped, so each branch of the hierarchy is modelled on its own) and
is scored at the rungs r_0 = ``rungs[0]``, r_0 eta, r_0 eta^2, ... (the training epochs). After each rung
`optuna.pruners.SuccessiveHalvingPruner` (asynchronous successive halving, Li et al. 2020) stops the
trial unless its score is in the top 1/eta of the scores reached at that rung so far; the survivors train
eta times longer. One bracket only: with TPE every Hyperband bracket would need its own startup trials.

The incumbent is enqueued first and is never pruned, so it is always scored at every rung (unless the
budget runs out first). The loop stops at the deadline (``budget_seconds`` after the start on ``clock``:
a trial caught by it is recorded as "stopped"), after ``max_trials``, or when the space is exhausted. Storage is
in memory, the study name fixed and the sampler seeded: the same seed and scores give the same trials.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

from autoal_engine.tuning.adoption import Score

log = logging.getLogger(__name__)

STUDY_NAME = "autoal-model-tuning"

Space = Callable[[optuna.Trial, bool], None]  # suggests the trial's parameters (define-by-run); True: incumbent
Evaluate = Callable[[dict[str, Any], int, float], np.ndarray]  # (params, resource, deadline) -> fold scores


class OutOfBudget(Exception):
    """Raised by an evaluation that reaches the deadline."""


class OutsideSpace(Exception):
    """Raised by a space for a draw it does not allow (a family kept in the space only for the incumbent)."""


@dataclass
class TrialRecord:
    number: int
    params: dict[str, Any]
    incumbent: bool
    state: str = "running"  # "completed" | "pruned" | "stopped" (budget) | "failed"
    rungs: list[dict[str, Any]] = field(default_factory=list)  # {resource, mean, se} per rung reached
    seconds: float = 0.0
    error: str | None = None

    @property
    def best_rung(self) -> dict[str, Any]:
        """The rung with the highest mean score (the shortest training among ties)."""
        return max(self.rungs, key=lambda rung: (rung["mean"], -rung["resource"]))

    @property
    def score(self) -> Score | None:
        """The score at the best rung, for a completed trial (every rung reached)."""
        if self.state != "completed" or not self.rungs:
            return None
        return Score(self.best_rung["mean"], self.best_rung["se"])

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "params": self.params, "incumbent": self.incumbent, "state": self.state,
                "rungs": self.rungs, "seconds": round(self.seconds, 3), "error": self.error}


def rungs_for(min_resource: int, max_resource: int, eta: int) -> list[int]:
    """min, min eta, min eta^2, ... below max, then max."""
    rungs, resource = [], min_resource
    while resource < max_resource:
        rungs.append(resource)
        resource *= eta
    return [*rungs, max_resource]


def successive_halving(space: Space, evaluate: Evaluate, incumbent: dict[str, Any], rungs: list[int], eta: int,
                       budget_seconds: float, seed: int, max_trials: int, startup_trials: int,
                       clock: Callable[[], float] = time.perf_counter) -> list[TrialRecord]:
    """Run the trials; return their records, the incumbent's first. A budget of 0 runs nothing."""
    deadline = clock() + budget_seconds
    if budget_seconds <= 0:
        return []
    study = _study(seed, rungs[0], eta, startup_trials)
    study.enqueue_trial(incumbent)
    records: list[TrialRecord] = []
    draws = 0
    while len(records) < max_trials and draws < 4 * max_trials and clock() < deadline:
        trial = study.ask()
        draws += 1
        try:
            space(trial, not records)
        except OutsideSpace:  # not a trial: drawn again
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        except ValueError as error:  # a range the data cannot support: this trial fails, not the tuning
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            records.append(TrialRecord(trial.number, dict(trial.params), not records, "failed", error=str(error)))
            continue
        record = TrialRecord(trial.number, dict(trial.params), incumbent=not records)
        records.append(record)
        started = clock()
        _run_trial(study, trial, record, evaluate, rungs, deadline)
        record.seconds = clock() - started
        if record.incumbent and record.state != "completed":
            break  # without the incumbent's score nothing can be adopted
    return records


def _run_trial(study: optuna.Study, trial: optuna.Trial, record: TrialRecord, evaluate: Evaluate,
               rungs: list[int], deadline: float) -> None:
    for resource in rungs:
        try:
            scores = evaluate(record.params, resource, deadline)
        except OutOfBudget:
            record.state = "stopped"
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        except (ValueError, RuntimeError) as error:  # e.g. a configuration that cannot train on this data
            record.state, record.error = "failed", str(error)[:200]
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        score = Score.of(scores)
        record.rungs.append({"resource": resource, "mean": score.mean, "se": score.se})
        trial.report(score.mean, resource)
        if trial.should_prune() and not record.incumbent and resource != rungs[-1]:
            record.state = "pruned"
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return
    record.state = "completed"
    study.tell(trial, record.rungs[-1]["mean"])


def _study(seed: int, min_resource: int, eta: int, startup_trials: int) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(n_startup_trials=startup_trials, seed=seed, multivariate=True,
                                             group=True, constant_liar=False)
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=min_resource, reduction_factor=eta,
                                                    min_early_stopping_rate=0, bootstrap_count=0)
    return optuna.create_study(study_name=STUDY_NAME, direction="maximize", sampler=sampler, pruner=pruner,
                               storage=None)
