"""Validation and handling of the events LS posts to /webhook.

LS waits at most 1 s for an answer and never retries, so a handler only validates, records the event in
SQLite and requests a job (coalesced), then answers; what it writes is one transaction (`_record`).
Payload shapes are those of LS 1.23.2 (label-studio-protocol.md section 2): the project id is
``project.id``; ANNOTATIONS_DELETED carries annotation ids only, mapped back to tasks through the
annotation ids seen earlier (per project).

An event is a hint, never the truth: nothing destructive happens on a webhook's word. A deletion or a
label-config change only asks for a job, and the job acts on what Label Studio itself lists
(LABEL_STUDIO_URL). Every check runs before anything is stored, so a rejected event changes nothing.
An action this backend does not know (a newer Label Studio's) is answered 200 "ignored" and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from ls_backend.label_config import LabelConfigs
from ls_backend.store import Store
from ls_backend.validation import InvalidRequest, id_list, parse_id, quote

logger = logging.getLogger(__name__)

LS_ACTIONS = frozenset(
    {
        "PROJECT_CREATED",
        "PROJECT_UPDATED",
        "PROJECT_DELETED",
        "TASKS_CREATED",
        "TASKS_DELETED",
        "ANNOTATION_CREATED",
        "ANNOTATIONS_CREATED",
        "ANNOTATION_UPDATED",
        "ANNOTATIONS_DELETED",
        "LABEL_LINK_CREATED",
        "LABEL_LINK_UPDATED",
        "LABEL_LINK_DELETED",
        "START_TRAINING",
    }
)
IGNORED_ACTIONS = frozenset(
    {"PROJECT_CREATED", "PROJECT_DELETED", "LABEL_LINK_CREATED", "LABEL_LINK_UPDATED", "LABEL_LINK_DELETED"}
)


JobRequester = Callable[[int, str], dict]


class WebhookHandler:
    def __init__(
        self, store: Store, request_job: JobRequester, label_configs: LabelConfigs, max_ids: int = 100_000
    ) -> None:
        self.store = store
        self.request_job = request_job
        self.label_configs = label_configs
        self.max_ids = max_ids

    def handle(self, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise InvalidRequest("the webhook body must be a JSON object")
        action = payload.get("action")
        if not isinstance(action, str) or not action:
            raise InvalidRequest("missing 'action'")
        if action not in LS_ACTIONS:
            logger.info("webhook action %s is not one this backend handles; ignored", quote(action))
            return {"status": "ignored", "detail": f"unknown action {quote(action)}"}
        if action in IGNORED_ACTIONS:
            return {"status": "ignored", "action": action}
        project_id = project_id_of(payload)
        handler = getattr(self, "on_" + action.lower())
        return {"action": action, "project": project_id, **handler(project_id, payload)}

    # -- annotations ------------------------------------------------------------------------------------

    def on_annotation_created(self, project_id: int, payload: dict[str, Any]) -> dict[str, Any]:
        annotation = _object(payload, "annotation")
        annotation_id = parse_id(annotation.get("id"), "annotation.id")
        task_id = _task_id(payload, annotation)
        skipped = bool(annotation.get("was_cancelled"))
        is_update = payload["action"] == "ANNOTATION_UPDATED"
        needs_job = is_update or not skipped  # an update may have turned a label into a skip
        job = self._record(project_id, payload["action"], [(annotation_id, task_id)], needs_job=needs_job)
        if not needs_job:
            return {"status": "recorded", "detail": "a skipped annotation is not a label"}
        return {"status": "queued", **job}

    on_annotation_updated = on_annotation_created

    def on_annotations_created(self, project_id: int, payload: dict[str, Any]) -> dict[str, Any]:
        annotations = id_list(payload.get("annotation"), "annotation", self.max_ids)
        pairs, labels = [], 0
        for index, annotation in enumerate(annotations):
            if not isinstance(annotation, dict):
                raise InvalidRequest(f"annotation[{index}] must be an object")
            annotation_id = parse_id(annotation.get("id"), f"annotation[{index}].id")
            task_id = parse_id(annotation.get("task"), f"annotation[{index}].task")
            pairs.append((annotation_id, task_id))
            labels += not annotation.get("was_cancelled")
        job = self._record(project_id, payload["action"], pairs, needs_job=labels > 0)
        if not labels:
            return {"status": "recorded", "detail": "skipped annotations are not labels"}
        return {"status": "queued", **job}

    def on_annotations_deleted(self, project_id: int, payload: dict[str, Any]) -> dict[str, Any]:
        annotations = id_list(payload.get("annotations"), "annotations", self.max_ids)
        ids = [
            parse_id(a.get("id") if isinstance(a, dict) else None, f"annotations[{i}].id")
            for i, a in enumerate(annotations)
        ]
        task_ids = self.store.tasks_of_annotations(project_id, ids)
        job = self._record(project_id, payload["action"], task_ids=task_ids, annotation_ids=ids)
        return {"status": "queued", "tasks": task_ids, **job}

    # -- training, tasks, project -----------------------------------------------------------------------

    def on_start_training(self, project_id: int, payload: dict[str, Any]) -> dict[str, Any]:
        return {"status": "queued", **self._record(project_id, payload["action"])}

    def on_tasks_created(self, project_id: int, payload: dict[str, Any]) -> dict[str, Any]:
        return {"status": "queued", **self._record(project_id, payload["action"], task_ids=self._task_ids(payload))}

    def on_tasks_deleted(self, project_id: int, payload: dict[str, Any]) -> dict[str, Any]:
        """The ranking keeps its rows until a job has listed the pool from LS: a deletion LS did not make
        removes nothing."""
        task_ids = self._task_ids(payload)
        return {
            "status": "queued",
            "detail": "the next job drops the tasks Label Studio no longer lists",
            **self._record(project_id, payload["action"], task_ids=task_ids),
        }

    def on_project_updated(self, project_id: int, payload: dict[str, Any]) -> dict[str, Any]:
        """A label config that differs from the stored one asks for a job; the job reads the config from LS."""
        label_config = payload["project"].get("label_config")
        if not isinstance(label_config, str):
            self._record(project_id, payload["action"], needs_job=False)
            return {"status": "recorded", "detail": "no label config in the payload"}
        if not self.label_configs.changed(project_id, label_config):
            self._record(project_id, payload["action"], needs_job=False)
            return {"status": "recorded", "detail": "label config unchanged"}
        return {
            "status": "queued",
            "detail": "label config changed",
            **self._record(project_id, payload["action"], trigger="label config changed"),
        }

    def _record(
        self,
        project_id: int,
        action: str,
        annotations: Sequence[tuple[int, int]] = (),
        *,
        task_ids: Sequence[int] = (),
        annotation_ids: Sequence[int] = (),
        needs_job: bool = True,
        trigger: str | None = None,
    ) -> dict[str, Any]:
        """Everything an event writes, in one transaction, after every check passed: the (annotation id,
        task id) pairs it names, the event, and the job request when it needs one (the job's answer, else {}).

        `annotations` also give the event's ids. The runner hears of a new job once this has committed.
        """
        if annotations:
            annotation_ids, task_ids = [a for a, _ in annotations], [t for _, t in annotations]
        with self.store.transaction():
            if annotations:
                self.store.remember_annotations(project_id, annotations)
            self.store.record_event(project_id, action, task_ids, annotation_ids, needs_job=needs_job)
            return self.request_job(project_id, trigger or action) if needs_job else {}

    def _task_ids(self, payload: dict[str, Any]) -> list[int]:
        tasks = id_list(payload.get("tasks"), "tasks", self.max_ids, empty_ok=True)
        return [parse_id(t.get("id") if isinstance(t, dict) else t, f"tasks[{i}].id") for i, t in enumerate(tasks)]


def project_id_of(payload: dict[str, Any]) -> int:
    project = payload.get("project")
    if not isinstance(project, dict):
        raise InvalidRequest("missing 'project' object (LS sends the project with every event)")
    return parse_id(project.get("id"), "project.id")


def _object(payload: dict[str, Any], key: str) -> dict[str, Any]:
    value = payload.get(key)
    if not isinstance(value, dict):
        raise InvalidRequest(f"missing '{key}' object")
    return value


def _task_id(payload: dict[str, Any], annotation: dict[str, Any]) -> int:
    task = payload.get("task")
    if isinstance(task, dict) and task.get("id") is not None:
        return parse_id(task.get("id"), "task.id")
    return parse_id(annotation.get("task"), "annotation.task")
