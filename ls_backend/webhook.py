"""Validation and handling of the events LS posts to /webhook.

LS waits at most 1 s for an answer and never retries, so a handler only validates, records the event in
SQLite and requests a job (coalesced), then answers. Payload shapes are those of LS 1.23.2
(label-studio-protocol.md section 2): the project id is ``project.id``; ANNOTATIONS_DELETED carries
annotation ids only, mapped back to tasks through the annotation ids seen earlier.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ls_backend.labeling import LabelConfigError, parse_label_config
from ls_backend.store import Store

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


class InvalidRequest(ValueError):
    """The request is malformed; answered with HTTP 400 (or `status`) and the message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


JobRequester = Callable[[int, str], dict]


class WebhookHandler:
    def __init__(self, store: Store, request_job: JobRequester) -> None:
        self.store = store
        self.request_job = request_job

    def handle(self, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise InvalidRequest("the webhook body must be a JSON object")
        action = payload.get("action")
        if not isinstance(action, str) or not action:
            raise InvalidRequest("missing 'action'")
        if action not in LS_ACTIONS:
            raise InvalidRequest(f"unknown action {action!r}")
        if action in IGNORED_ACTIONS:
            return {"status": "ignored", "action": action}
        project_id = project_id_of(payload)
        handler = getattr(self, "on_" + action.lower())
        return {"action": action, "project": project_id, **handler(project_id, payload)}

    # -- annotations ------------------------------------------------------------------------------------

    def on_annotation_created(self, project_id: int, payload: dict[str, Any]) -> dict[str, Any]:
        annotation = _object(payload, "annotation")
        annotation_id = _int(annotation.get("id"), "annotation.id")
        task_id = _task_id(payload, annotation)
        self.store.remember_annotations(project_id, [(annotation_id, task_id)])
        self._remember_label_config(project_id, payload)
        skipped = bool(annotation.get("was_cancelled"))
        is_update = payload["action"] == "ANNOTATION_UPDATED"
        needs_job = is_update or not skipped  # an update may have turned a label into a skip
        self.store.record_event(project_id, payload["action"], [task_id], [annotation_id], needs_job=needs_job)
        if not needs_job:
            return {"status": "recorded", "detail": "a skipped annotation is not a label"}
        return {"status": "queued", **self.request_job(project_id, payload["action"])}

    on_annotation_updated = on_annotation_created

    def on_annotations_created(self, project_id: int, payload: dict[str, Any]) -> dict[str, Any]:
        annotations = payload.get("annotation")
        if not isinstance(annotations, list) or not annotations:
            raise InvalidRequest("'annotation' must be a non-empty list for ANNOTATIONS_CREATED")
        pairs, labels = [], 0
        for index, annotation in enumerate(annotations):
            if not isinstance(annotation, dict):
                raise InvalidRequest(f"annotation[{index}] must be an object")
            annotation_id = _int(annotation.get("id"), f"annotation[{index}].id")
            task_id = _int(annotation.get("task"), f"annotation[{index}].task")
            pairs.append((annotation_id, task_id))
            labels += not annotation.get("was_cancelled")
        self.store.remember_annotations(project_id, pairs)
        self._remember_label_config(project_id, payload)
        self.store.record_event(
            project_id, payload["action"], [t for _, t in pairs], [a for a, _ in pairs], needs_job=labels > 0
        )
        if not labels:
            return {"status": "recorded", "detail": "skipped annotations are not labels"}
        return {"status": "queued", **self.request_job(project_id, payload["action"])}

    def on_annotations_deleted(self, project_id: int, payload: dict[str, Any]) -> dict[str, Any]:
        annotations = payload.get("annotations")
        if not isinstance(annotations, list) or not annotations:
            raise InvalidRequest("'annotations' must be a non-empty list of {\"id\": ...}")
        ids = [
            _int(a.get("id") if isinstance(a, dict) else None, f"annotations[{i}].id")
            for i, a in enumerate(annotations)
        ]
        task_ids = self.store.tasks_of_annotations(ids)
        self.store.record_event(project_id, payload["action"], task_ids, ids)
        return {"status": "queued", "tasks": task_ids, **self.request_job(project_id, payload["action"])}

    # -- training, tasks, project -----------------------------------------------------------------------

    def on_start_training(self, project_id: int, payload: dict[str, Any]) -> dict[str, Any]:
        self._remember_label_config(project_id, payload)
        self.store.record_event(project_id, payload["action"])
        return {"status": "queued", **self.request_job(project_id, payload["action"])}

    def on_tasks_created(self, project_id: int, payload: dict[str, Any]) -> dict[str, Any]:
        task_ids = _task_ids(payload)
        self._remember_label_config(project_id, payload)
        self.store.record_event(project_id, payload["action"], task_ids)
        return {"status": "queued", **self.request_job(project_id, payload["action"])}

    def on_tasks_deleted(self, project_id: int, payload: dict[str, Any]) -> dict[str, Any]:
        task_ids = _task_ids(payload)
        self.store.forget_tasks(project_id, task_ids)
        self.store.record_event(project_id, payload["action"], task_ids, needs_job=False)
        return {"status": "recorded", "detail": "deleted tasks dropped from the ranking"}

    def on_project_updated(self, project_id: int, payload: dict[str, Any]) -> dict[str, Any]:
        label_config = payload["project"].get("label_config")
        if not isinstance(label_config, str):
            self.store.record_event(project_id, payload["action"], needs_job=False)
            return {"status": "recorded", "detail": "no label config in the payload"}
        previous = (self.store.project(project_id) or {}).get("interface")
        try:
            interface = parse_label_config(label_config)
        except LabelConfigError as error:
            self.store.save_label_config(project_id, label_config, None, str(error))
            self.store.record_event(project_id, payload["action"], needs_job=False)
            raise InvalidRequest(str(error), status=422) from None
        self.store.save_label_config(project_id, label_config, interface.to_dict(), None)
        changed = previous is not None and previous != interface.to_dict()
        self.store.record_event(project_id, payload["action"], needs_job=changed)
        if not changed:
            return {"status": "recorded", "detail": "label config unchanged"}
        return {
            "status": "queued",
            "detail": "label config changed",
            **self.request_job(project_id, "label config changed"),
        }

    def _remember_label_config(self, project_id: int, payload: dict[str, Any]) -> None:
        """Keep the project's label config when the backend has none yet (e.g. a fresh MODEL_DIR)."""
        label_config = payload["project"].get("label_config")
        if not isinstance(label_config, str):
            return
        project = self.store.project(project_id) or {}
        if project.get("label_config"):
            return
        try:
            interface = parse_label_config(label_config)
        except LabelConfigError as error:
            self.store.save_label_config(project_id, label_config, None, str(error))
            return
        self.store.save_label_config(project_id, label_config, interface.to_dict(), None)


def project_id_of(payload: dict[str, Any]) -> int:
    project = payload.get("project")
    if not isinstance(project, dict):
        raise InvalidRequest("missing 'project' object (LS sends the project with every event)")
    return _int(project.get("id"), "project.id")


def _object(payload: dict[str, Any], key: str) -> dict[str, Any]:
    value = payload.get(key)
    if not isinstance(value, dict):
        raise InvalidRequest(f"missing '{key}' object")
    return value


def _task_id(payload: dict[str, Any], annotation: dict[str, Any]) -> int:
    task = payload.get("task")
    if isinstance(task, dict) and task.get("id") is not None:
        return _int(task.get("id"), "task.id")
    return _int(annotation.get("task"), "annotation.task")


def _task_ids(payload: dict[str, Any]) -> list[int]:
    tasks = payload.get("tasks")
    if not isinstance(tasks, list):
        raise InvalidRequest("'tasks' must be a list")
    return [_int(t.get("id") if isinstance(t, dict) else t, f"tasks[{i}].id") for i, t in enumerate(tasks)]


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidRequest(f"'{name}' must be an integer id")
    try:
        number = int(value)
    except ValueError:
        raise InvalidRequest(f"'{name}' must be an integer id") from None
    if number < 0:
        raise InvalidRequest(f"'{name}' must be a non-negative id")
    return number
