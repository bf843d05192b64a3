"""Durable backend state in one SQLite file under MODEL_DIR.

Tables: ``projects`` (label config, current model version), ``events`` (every webhook event, marked
with the job that handled it), ``jobs`` (queued / running / done / failed / skipped, with stage and
progress), ``models`` (one row per pushed model version with its report), ``rankings`` (the current
ranking of each project with per-task provenance), ``annotations`` (annotation id -> task id per project,
since LS's deletion webhook carries ids only), ``label_costs`` (predicted vs observed seconds),
``pending_pushes`` (a trained model whose push to LS failed, pushed by the next job without retraining)
``media_failures`` (the items the last job could not use, and why) and ``task_mirror`` (the tasks as LS
last listed them, so a fast job lists only what changed).

The schema is versioned (``PRAGMA user_version``): opening a store runs the ordered ``MIGRATIONS`` it has
not had yet, each in one transaction, so a ``MODEL_DIR`` written by an older release is upgraded in place
without losing rows, and one written by a newer release is refused with a clear message.

One ``Store`` object, built from one module per idea: ``database`` (connections, transactions, migrations),
``schema`` (the versions), ``job_queue`` (events and jobs), ``project_data`` (everything about a project's
model and ranking), ``task_mirror`` (the listed tasks); ``project_status`` here is the one read that spans
them, for the status page.
"""

from __future__ import annotations

from typing import Any

from ls_backend.store.job_queue import ACTIVE_STATES, LANES, JobQueue
from ls_backend.store.project_data import ProjectData
from ls_backend.store.schema import MIGRATIONS, SCHEMA_1, SCHEMA_2, SCHEMA_3, SCHEMA_VERSION, StoreVersionError
from ls_backend.store.task_mirror import TaskMirror

__all__ = [
    "ACTIVE_STATES", "LANES", "MIGRATIONS", "SCHEMA_1", "SCHEMA_2", "SCHEMA_3", "SCHEMA_VERSION", "Store",
    "StoreVersionError",
]


class Store(JobQueue, ProjectData, TaskMirror):
    def project_status(self, project_id: int) -> dict[str, Any]:
        """Everything a status page shows for one project, in one dict."""
        project = self.project(project_id) or {}
        jobs = self.recent_jobs(project_id, limit=50)
        active = next((job for job in jobs if job["status"] in ACTIVE_STATES), None)
        failed = next((job for job in jobs if job["status"] == "failed"), None)
        history = self.model_history(project_id, limit=1)
        return {
            "project_id": project_id,
            "current_version": project.get("current_version"),
            "classes": list((project.get("interface") or {}).get("classes") or []),
            "config_error": project.get("config_error"),
            "active_job": active,
            "last_job": jobs[0] if jobs else None,
            "last_error": failed["error"] if failed else None,
            "pending_events": self.pending_events(project_id),
            "latest_model": history[0] if history else None,
            "pending_push": self._pending_push_version(project_id),
            "media_failures": self.media_failures(project_id),
            "n_media_failed": self.media_failure_count(project_id),
        }
