"""The project's tasks as Label Studio last listed them, so a fast job pulls only what changed.

A full listing replaces a project's mirror and sets its watermark: the newest ``updated_at`` LS reported
(LS's own clock, so the backend's does not matter). An incremental listing asks LS for the tasks updated
after the watermark minus `OVERLAP_SECONDS` (a task saved while the previous listing ran may carry an
earlier time than the watermark) and upserts them. LS moves a task's ``updated_at`` when an annotation is
created, updated or deleted and when its data changes, and new tasks carry their creation time; predictions
do not move it (checked against LS 1.23.2). Deleted tasks do not show in an incremental listing: a job that
covers TASKS_DELETED lists in full.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from ls_backend.store.database import Database

OVERLAP_SECONDS = 10.0  # LS stamps updated_at when it saves a task, and commits within a moment
LS_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # how LS's task filters take a datetime


class TaskMirror(Database):
    def replace_mirrored_tasks(self, project_id: int, tasks: Sequence[dict[str, Any]]) -> None:
        """After a full listing: the project's mirror becomes exactly these tasks."""
        with self.transaction() as db:
            db.execute("DELETE FROM task_mirror WHERE project_id=?", (project_id,))
            self._upsert(db, project_id, tasks)
            db.execute("UPDATE projects SET tasks_listed_until=?, fully_listed_at=? WHERE project_id=?",
                       (_newest(tasks), time.time(), project_id))

    def update_mirrored_tasks(self, project_id: int, tasks: Sequence[dict[str, Any]]) -> None:
        """After an incremental listing: upsert the changed tasks, move the watermark forward."""
        with self.transaction() as db:
            self._upsert(db, project_id, tasks)
            newest = _newest(tasks)
            if newest is not None:
                db.execute(
                    "UPDATE projects SET tasks_listed_until=? WHERE project_id=? AND "
                    "(tasks_listed_until IS NULL OR tasks_listed_until < ?)",
                    (newest, project_id, newest),
                )

    def mirrored_tasks(self, project_id: int) -> list[dict[str, Any]]:
        with self._read() as db:
            rows = db.execute("SELECT task FROM task_mirror WHERE project_id=? ORDER BY task_id", (project_id,))
            return [json.loads(row[0]) for row in rows]

    def fully_listed_at(self, project_id: int) -> float | None:
        """When the project's tasks were last listed in full (this machine's clock), or None."""
        with self._read() as db:
            row = db.execute("SELECT fully_listed_at FROM projects WHERE project_id=?", (project_id,)).fetchone()
        return None if row is None else row[0]

    def tasks_listed_since(self, project_id: int) -> str | None:
        """The time to list changes from (LS's format), or None when the project was never listed in full."""
        with self._read() as db:
            row = db.execute("SELECT tasks_listed_until FROM projects WHERE project_id=?", (project_id,)).fetchone()
        if row is None or row[0] is None:
            return None
        return (_parse(row[0]) - timedelta(seconds=OVERLAP_SECONDS)).strftime(LS_TIME_FORMAT)

    def _upsert(self, db: Any, project_id: int, tasks: Sequence[dict[str, Any]]) -> None:
        db.execute("INSERT OR IGNORE INTO projects (project_id, updated_at) VALUES (?, ?)", (project_id, time.time()))
        db.executemany(
            "INSERT OR REPLACE INTO task_mirror (project_id, task_id, task, updated_at) VALUES (?,?,?,?)",
            [(project_id, int(task["id"]), json.dumps(_kept(task)), task.get("updated_at")) for task in tasks],
        )


def _kept(task: dict[str, Any]) -> dict[str, Any]:
    """What a job reads of a task (its predictions are most of the payload and are not needed)."""
    return {key: value for key, value in task.items() if key != "predictions"}


def _newest(tasks: Sequence[dict[str, Any]]) -> str | None:
    times = [_parse(task["updated_at"]) for task in tasks if task.get("updated_at")]
    return max(times).strftime(LS_TIME_FORMAT) if times else None


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).replace(tzinfo=None)
