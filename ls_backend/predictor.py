"""Answers for LS's /predict: the stored ranking first, the current model for tasks it has not ranked.

A ranked task gets its stored prediction (predicted class, ``score = 1 - priority``, the ranking's model
version). A task the last job did not rank (created since, or labeled) is scored by the current model:
its predicted class with ``score`` = the model's confidence, so a less certain task sorts earlier, until
the next job ranks it. Before the first model exists every task gets an empty list (no prediction),
which LS accepts. At most AUTOAL_PREDICT_MAX_UNSCORED unranked tasks are scored per request, so even a
10,000-task request returns well inside LS's 100 s. Loaded models are kept for the AUTOAL_PREDICT_CACHED_MODELS
projects asked most recently (least recently used first out), so memory stays bounded however many
projects a backend serves.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ls_backend.labeling import LabelingInterface
from ls_backend.labelstudio import LabelStudioClient, LabelStudioError
from ls_backend.media import MediaFetcher
from ls_backend.settings import Settings
from ls_backend.store import Store
from ls_backend.task_adapter import fetch_images, prediction

logger = logging.getLogger(__name__)


class Predictor:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._engines: OrderedDict[int, tuple[str, Any]] = OrderedDict()  # project -> (version, engine), LRU last
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
            results.append(prediction(interface, row["predicted_label"], row["score"], row["model_version"]))
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
            usable, _ = fetch_images(fetcher, interface, tasks)
        except LabelStudioError as error:
            logger.warning("project %s: media of new tasks not fetched: %s", project_id, error)
            return {}
        finally:
            fetcher.close()
        if not usable:
            return {}
        with self._lock:  # one inference at a time per process keeps memory flat
            labels, probabilities = engine.predict([task["path"] for task in usable])
        return {
            int(task["id"]): prediction(interface, str(labels[row]), max(probabilities[row]), version)
            for row, task in enumerate(usable)
            if str(labels[row]) in interface.classes
        }

    def _engine(self, project_id: int) -> tuple[str, Any] | None:
        """The project's current model, loaded once per version; falls back to older good versions."""
        current = self.store.current_model(project_id)
        if current is None:
            return None
        version, directory = current["model_version"], Path(current["checkpoint"])
        with self._lock:
            cached = self._engines.get(project_id)
            if cached is not None and cached[0] == version:
                self._engines.move_to_end(project_id)
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
                self._engines.move_to_end(project_id)
                while len(self._engines) > self.settings.predict_cached_models:
                    self._engines.popitem(last=False)
            return candidate_version, engine
        return None
