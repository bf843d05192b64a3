"""The one adapter between Label Studio tasks and the engine; the job and /predict both go through it.

- `split_tasks(tasks, interface)`: labeled tasks (each with its `TaskLabel`) and the unlabeled pool;
- `fetch_images(fetcher, interface, tasks)`: each task's local image ("path"), leaving out the tasks whose
  media cannot be used, with the reason;
- `training_inputs(labeled)`: what `Engine.fit` takes: image paths, labels, observed seconds;
- `known_seconds(pool, field)`: the seconds each pool task's data gives up front (AUTOAL_TASK_SECONDS_FIELD),
  which `Engine.rank` uses instead of the cost model's predictions;
- `ranking_rows(task_ids, ranking)`: an engine `Ranking` as one row per pool task (rank, score, provenance);
- `prediction(interface, label, score, version)`: the one constructor of a Label Studio prediction.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from ls_backend.labeling import LabelingInterface, parse_seconds, task_label
from ls_backend.media import MediaFetcher

logger = logging.getLogger(__name__)


def split_tasks(
    tasks: list[dict[str, Any]], interface: LabelingInterface
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(labeled tasks, each with a "label" TaskLabel; unlabeled pool: tasks without any annotation).

    Skipped annotations (was_cancelled) are not labels, and a skipped task is not in the pool either.
    """
    labeled, pool = [], []
    for task in tasks:
        label = task_label(task, interface)
        if label is not None:
            labeled.append({**task, "label": label})
        elif (
            not task.get("annotations") and not task.get("total_annotations") and not task.get("cancelled_annotations")
        ):
            pool.append(task)
    return labeled, pool


def fetch_images(
    fetcher: MediaFetcher, interface: LabelingInterface, tasks: list[dict[str, Any]], verify_cached: bool = True
) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """(the tasks whose image could be used, each with its local "path"; task id -> why the others failed).
    ``verify_cached``: decode files cached before again (`MediaFetcher.fetch_all`)."""
    fetched = fetcher.fetch_all({task["id"]: interface.image_url(task) or "" for task in tasks}, verify_cached)
    usable = [{**task, "path": str(fetched.paths[task["id"]])} for task in tasks if task["id"] in fetched.paths]
    return usable, fetched.failures


def training_inputs(labeled: list[dict[str, Any]]) -> tuple[list[str], list[str], np.ndarray]:
    """(image paths, labels, seconds per label with NaN where unknown) of fetched labeled tasks."""
    paths = [task["path"] for task in labeled]
    labels = [task["label"].label for task in labeled]
    return paths, labels, np.array([task["label"].lead_time for task in labeled], dtype=float)


def known_seconds(pool: list[dict[str, Any]], field: str | None) -> np.ndarray | None:
    """Each pool task's labeling seconds as its data gives them under ``field`` (AUTOAL_TASK_SECONDS_FIELD), known
    before the task is labeled (a clip's length, an image's object count times a rate): a number > 0, or a string
    of one. NaN where the task has none or the value is anything else (the cost model predicts those seconds); None
    when no field is configured. Task data is input: a bad value is logged, never raised."""
    if not field:
        return None
    given = [data.get(field) if isinstance(data := task.get("data"), dict) else None for task in pool]
    values = np.array([parse_seconds(value) for value in given], dtype=float)
    unusable = sum(1 for value, seconds in zip(given, values, strict=True) if value is not None and math.isnan(seconds))
    if unusable:
        logger.warning("%d of %d pool tasks give data[%r] that is not seconds > 0; their seconds are predicted",
                       unusable, len(pool), field)
    return values


def prediction(interface: LabelingInterface, label: str, score: float, model_version: str) -> dict[str, Any]:
    """A Label Studio prediction selecting `label`: lower `score` is served first by uncertainty sampling."""
    return {"result": interface.result_for(label), "score": float(score), "model_version": model_version}


def ranking_rows(task_ids: list[int], ranking: Any) -> list[dict[str, Any]]:
    """One row per pool task: rank (1 = serve first), priority, score = 1 - priority, and provenance (the
    mixture weights and the candidates that score the task highest)."""
    priority = np.clip(np.asarray(ranking.priority, dtype=float), 0.0, 1.0)
    positions = np.empty(len(priority), dtype=int)
    positions[np.asarray(ranking.order)] = np.arange(1, len(priority) + 1)
    probabilities = np.asarray(ranking.probabilities, dtype=float)
    weights = np.asarray(ranking.strategy_weights, dtype=float)
    names = list(ranking.strategy_names)
    rows = []
    for i, task_id in enumerate(task_ids):
        rows.append(
            {
                "task_id": int(task_id),
                "rank": int(positions[i]),
                "priority": float(priority[i]),
                "score": float(1.0 - priority[i]),
                "predicted_label": str(ranking.predicted_label[i]),
                "confidence": float(probabilities[i].max()) if probabilities.size else None,
                "predicted_cost": _number(ranking.predicted_cost[i]),
                "informativeness": _number(ranking.informativeness[i]),
                "strategy_weights": {
                    name: round(float(weight), 5) for name, weight in zip(names, weights[i], strict=True)
                },
                # why it ranks high: the three candidates that score it highest, with their percentile rank
                "top_candidates": [[name, round(score, 4)] for name, score in ranking.top_candidates(i)],
            }
        )
    return rows


def _number(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None
