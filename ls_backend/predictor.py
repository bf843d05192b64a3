"""Answers for LS's /predict: the stored ranking first, the current model for tasks it has not ranked.

A ranked task gets its stored prediction (predicted class, ``score = 1 - priority``, the ranking's model
version). A task the last job did not rank (created since, or labeled) is scored by the current model:
its predicted class with ``score`` = the model's confidence, so a less certain task sorts earlier, until
the next job ranks it. Before the first model exists every task gets an empty list (no prediction),
which LS accepts. At most AUTOAL_PREDICT_MAX_UNSCORED unranked tasks are scored per request, so even a
10,000-task request returns well inside LS's 100 s.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ls_backend.jobs import latest_checkpoint
from ls_backend.labeling import LabelingInterface
from ls_backend.labelstudio import LabelStudioClient, LabelStudioError
from ls_backend.media import MediaFetcher
from ls_backend.settings import Settings
from ls_backend.store import Store

logger = logging.getLogger(__name__)


class Predictor:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._engines: dict[int, tuple[str, Any]] = {}  # project -> (version, loaded engine)
        self._lock = threading.Lock()

    def predict(self, project_id: int, tasks: list[dict[str, Any]], interface: LabelingInterface | None) -> list[Any]:
        """One entry per task, in order: a prediction dict, or [] when there is none to give."""
        task_ids = [int(task["id"]) for task in tasks]
        stored = self.store.ranking_lookup(project_id, task_ids)
        results: list[Any] = []
        for task_id in task_ids:
            row = stored.get(task_id)
            if row is None or interface is None or row["predicted_label"] not in interface.classes:
                results.append([])
                continue
            results.append(
                {
                    "result": interface.result_for(row["predicted_label"]),
                    "score": row["score"],
                    "model_version": row["model_version"],
                }
            )
        unscored = [i for i, result in enumerate(results) if result == []]
        if unscored and interface is not None:
            limit = self.settings.predict_max_unscored
            scored = self._score_with_model(project_id, [tasks[i] for i in unscored[:limit]], interface)
            for i in unscored[:limit]:
                if task_ids[i] in scored:
                    results[i] = scored[task_ids[i]]
        return results

    def _score_with_model(
        self, project_id: int, tasks: list[dict[str, Any]], interface: LabelingInterface
    ) -> dict[int, dict[str, Any]]:
        loaded = self._engine(project_id)
        if loaded is None:
            return {}
        version, engine = loaded
        try:
            ls = LabelStudioClient.for_settings(self.settings)
        except LabelStudioError as error:
            logger.warning("project %s: cannot fetch media to score new tasks: %s", project_id, error)
            return {}
        fetcher = MediaFetcher.for_settings(self.settings, ls)
        try:
            references = {int(task["id"]): interface.image_url(task) or "" for task in tasks}
            paths = fetcher.fetch_all(references).paths
        except LabelStudioError as error:
            logger.warning("project %s: media of new tasks not fetched: %s", project_id, error)
            return {}
        finally:
            fetcher.close()
        if not paths:
            return {}
        ids = list(paths)
        with self._lock:  # one inference at a time per process keeps memory flat
            labels, probabilities = engine.predict([str(paths[task_id]) for task_id in ids])
        scored = {}
        for row, task_id in enumerate(ids):
            label = str(labels[row])
            if label not in interface.classes:
                continue
            scored[task_id] = {
                "result": interface.result_for(label),
                "score": float(max(probabilities[row])),
                "model_version": version,
            }
        return scored

    def _engine(self, project_id: int) -> tuple[str, Any] | None:
        """The project's current model, loaded once per version; falls back to older good versions."""
        checkpoint = latest_checkpoint(self.store, project_id)
        if checkpoint is None:
            return None
        version, directory = checkpoint
        with self._lock:
            cached = self._engines.get(project_id)
            if cached is not None and cached[0] == version:
                return cached
        from autoal_engine.engine import Engine

        candidates = [(version, directory)] + [
            (model["model_version"], model["checkpoint"])
            for model in self.store.model_history(project_id)
            if model["model_version"] != version
        ]
        for candidate_version, candidate_dir in candidates:
            try:
                engine = Engine.load(candidate_dir)
            except Exception as error:  # a damaged checkpoint must not take /predict down
                logger.error("project %s: model %s does not load: %s", project_id, candidate_version, error)
                continue
            with self._lock:
                self._engines[project_id] = (candidate_version, engine)
            return candidate_version, engine
        return None
