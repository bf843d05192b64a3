"""The job queue: webhook events and the jobs that handle them, as a state machine in SQLite.

queued -> running -> done | skipped | failed. At most one queued job per project and lane (requests
coalesce; full retrains have a lane of their own, see ls_backend.jobs), a
running job whose heartbeat stopped counts as dead, and a job that succeeds marks the events it covered
as handled, so an event is never lost to a failed job.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from ls_backend.store.database import Database

ACTIVE_STATES = ("queued", "running")
LANES = ("fast", "full")  # full retrains run in their own lane, so they never hold up the fast path


class JobQueue(Database):
    # -- events -----------------------------------------------------------------------------------------

    def record_event(
        self,
        project_id: int,
        action: str,
        task_ids: Sequence[int] = (),
        annotation_ids: Sequence[int] = (),
        needs_job: bool = True,
    ) -> int:
        """Store a webhook event; one that needs no job is marked handled at once (handled_by = 0)."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO events (project_id, action, task_ids, annotation_ids, received_at, handled_by) "
                "VALUES (?,?,?,?,?,?)",
                (
                    project_id,
                    action,
                    json.dumps(list(task_ids)),
                    json.dumps(list(annotation_ids)),
                    time.time(),
                    None if needs_job else 0,
                ),
            )
            return int(cursor.lastrowid)

    def pending_events(self, project_id: int) -> int:
        with self._read() as db:
            return db.execute(
                "SELECT COUNT(*) FROM events WHERE project_id=? AND handled_by IS NULL", (project_id,)
            ).fetchone()[0]

    def projects_with_pending_events(self) -> list[int]:
        with self._read() as db:
            rows = db.execute("SELECT DISTINCT project_id FROM events WHERE handled_by IS NULL").fetchall()
        return sorted(row[0] for row in rows)

    def recent_events(self, project_id: int, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first: action, task and annotation ids, time, and the job that handled it (0: no job needed)."""
        with self._read() as db:
            rows = db.execute(
                "SELECT * FROM events WHERE project_id=? ORDER BY id DESC LIMIT ?", (project_id, limit)
            ).fetchall()
        events = []
        for row in rows:
            event = dict(row)
            event["task_ids"] = json.loads(event["task_ids"])
            event["annotation_ids"] = json.loads(event["annotation_ids"])
            events.append(event)
        return events

    def event_counts(self) -> dict[str, int]:
        with self._read() as db:
            rows = db.execute("SELECT action, COUNT(*) FROM events GROUP BY action").fetchall()
        return {row[0]: row[1] for row in rows}

    # -- jobs -------------------------------------------------------------------------------------------

    def request_job(self, project_id: int, trigger: str, stale_after: float, lane: str = "fast") -> tuple[int, bool]:
        """Queue a job for the project in ``lane`` ("fast" | "full") unless one is queued there: (job id, created).

        Many events while a job runs therefore give exactly one more job per lane. A "running" job whose
        heartbeat is older than `stale_after` seconds belonged to a dead worker and is marked failed.
        """
        if lane not in LANES:
            raise ValueError(f"lane: must be one of {LANES}, got {lane!r}")
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "UPDATE jobs SET status='failed', error='worker stopped responding', finished_at=? "
                "WHERE project_id=? AND status='running' AND heartbeat_at < ?",
                (now, project_id, now - stale_after),
            )
            row = db.execute(
                "SELECT id FROM jobs WHERE project_id=? AND lane=? AND status='queued' ORDER BY id LIMIT 1",
                (project_id, lane),
            ).fetchone()
            if row is not None:
                return int(row[0]), False
            cursor = db.execute(
                "INSERT INTO jobs (project_id, trigger, status, stage, progress, created_at, lane) "
                "VALUES (?,?,'queued','queued',0,?,?)",
                (project_id, trigger, now, lane),
            )
            return int(cursor.lastrowid), True

    def active_jobs(self, project_id: int, lane: str) -> list[int]:
        """Ids of the project's queued or running jobs in ``lane``."""
        with self._read() as db:
            rows = db.execute(
                "SELECT id FROM jobs WHERE project_id=? AND lane=? AND status IN ('queued','running') ORDER BY id",
                (project_id, lane),
            ).fetchall()
        return [row[0] for row in rows]

    def versions_in_flight(self, project_id: int) -> set[str]:
        """Model versions reserved by running jobs (their predictions may be on their way into LS)."""
        with self._read() as db:
            rows = db.execute(
                "SELECT model_version FROM jobs WHERE project_id=? AND status='running' AND model_version IS NOT NULL",
                (project_id,),
            ).fetchall()
        return {row[0] for row in rows}

    def start_job(self, job_id: int) -> dict[str, Any] | None:
        """Mark a queued job running and snapshot the events it covers; None if it is not queued."""
        now = time.time()
        with self.transaction() as db:
            row = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None or row["status"] != "queued":
                return None
            last_event = db.execute("SELECT MAX(id) FROM events WHERE project_id=?", (row["project_id"],)).fetchone()[0]
            db.execute(
                "UPDATE jobs SET status='running', stage='starting', progress=0, started_at=?, "
                "heartbeat_at=?, last_event_id=? WHERE id=?",
                (now, now, last_event or 0, job_id),
            )
            return dict(db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone())

    def covered_actions(self, job_id: int) -> set[str]:
        """The actions of the events a started job covers (not handled yet, received before it started)."""
        with self._read() as db:
            job = db.execute("SELECT project_id, last_event_id FROM jobs WHERE id=?", (job_id,)).fetchone()
            if job is None:
                return set()
            rows = db.execute(
                "SELECT DISTINCT action FROM events WHERE project_id=? AND handled_by IS NULL AND id<=?",
                (job["project_id"], job["last_event_id"] or 0),
            ).fetchall()
        return {row[0] for row in rows}

    def first_covered_event_at(self, job_id: int) -> float | None:
        """When the oldest event a started job covers arrived (its labels' wait starts there), or None."""
        with self._read() as db:
            job = db.execute("SELECT project_id, last_event_id FROM jobs WHERE id=?", (job_id,)).fetchone()
            if job is None:
                return None
            row = db.execute(
                "SELECT MIN(received_at) FROM events WHERE project_id=? AND handled_by IS NULL AND id<=?",
                (job["project_id"], job["last_event_id"] or 0),
            ).fetchone()
        return row[0]

    def update_job(self, job_id: int, **fields: Any) -> None:
        allowed = {
            "stage",
            "progress",
            "n_labels",
            "n_pool",
            "n_media_failed",
            "train_seconds",
            "rank_seconds",
            "push_seconds",
            "model_version",
            "path",
            "path_reason",
            "latency_seconds",
            "cache_hits",
            "cache_misses",
            "n_pushed",
            "list_seconds",
            "n_listed",
            "media_seconds",
        }
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown job field {sorted(unknown)[0]!r}")
        fields["heartbeat_at"] = time.time()
        assignments = ", ".join(f"{name}=?" for name in fields)
        with self.transaction() as db:
            db.execute(f"UPDATE jobs SET {assignments} WHERE id=?", [*fields.values(), job_id])

    def finish_job(self, job_id: int, status: str, error: str | None = None) -> None:
        """Close a job. Success ("done"/"skipped") marks the events it covered as handled."""
        if status not in ("done", "failed", "skipped"):
            raise ValueError(f"unknown final job status {status!r}")
        now = time.time()
        with self.transaction() as db:
            row = db.execute("SELECT project_id, last_event_id FROM jobs WHERE id=?", (job_id,)).fetchone()
            db.execute(
                "UPDATE jobs SET status=?, error=?, finished_at=?, heartbeat_at=?, "
                "progress=CASE WHEN ?='failed' THEN progress ELSE 1 END, stage=? WHERE id=?",
                (status, error, now, now, status, status, job_id),
            )
            if status != "failed" and row is not None:
                db.execute(
                    "UPDATE events SET handled_by=? WHERE project_id=? AND handled_by IS NULL AND id<=?",
                    (job_id, row["project_id"], row["last_event_id"] or 0),
                )

    def interrupt_active_jobs(self) -> list[int]:
        """Mark every queued/running job failed (their in-process worker is gone); return their projects."""
        with self.transaction() as db:
            rows = db.execute("SELECT DISTINCT project_id FROM jobs WHERE status IN ('queued','running')").fetchall()
            db.execute(
                "UPDATE jobs SET status='failed', error='interrupted: the server stopped', finished_at=? "
                "WHERE status IN ('queued','running')",
                (time.time(),),
            )
        return sorted(row[0] for row in rows)

    def consecutive_failures(self, project_id: int) -> int:
        with self._read() as db:
            rows = db.execute(
                "SELECT status FROM jobs WHERE project_id=? AND status IN ('done','failed','skipped') "
                "ORDER BY id DESC LIMIT 50",
                (project_id,),
            ).fetchall()
        count = 0
        for row in rows:
            if row[0] != "failed":
                break
            count += 1
        return count

    def job(self, job_id: int) -> dict[str, Any] | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return dict(row) if row else None

    def recent_jobs(self, project_id: int | None = None, limit: int = 20) -> list[dict[str, Any]]:
        with self._read() as db:
            if project_id is None:
                rows = db.execute("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
            else:
                rows = db.execute(
                    "SELECT * FROM jobs WHERE project_id=? ORDER BY id DESC LIMIT ?", (project_id, limit)
                ).fetchall()
        return [dict(row) for row in rows]

    def job_durations(self, column: str, path: str | None = None) -> list[float]:
        """The column's value of every job that recorded it (of jobs on ``path`` "fast" or "full" only)."""
        if column not in ("train_seconds", "rank_seconds", "push_seconds", "latency_seconds"):
            raise ValueError(f"unknown duration column {column!r}")
        query, parameters = f"SELECT {column} FROM jobs WHERE {column} IS NOT NULL", ()
        if path is not None:
            query, parameters = query + " AND path=?", (path,)
        with self._read() as db:
            rows = db.execute(query, parameters).fetchall()
        return [row[0] for row in rows]

    def path_counts(self) -> dict[str, int]:
        """Finished jobs by the path they took ("fast" | "full")."""
        with self._read() as db:
            rows = db.execute(
                "SELECT path, COUNT(*) FROM jobs WHERE status='done' AND path IS NOT NULL GROUP BY path"
            ).fetchall()
        return {row[0]: row[1] for row in rows}

    def cache_totals(self) -> dict[str, int]:
        """Embedding-cache hits and misses summed over all jobs."""
        with self._read() as db:
            row = db.execute("SELECT COALESCE(SUM(cache_hits), 0), COALESCE(SUM(cache_misses), 0) FROM jobs").fetchone()
        return {"hit": int(row[0]), "miss": int(row[1])}

    def job_counts(self) -> dict[str, int]:
        with self._read() as db:
            rows = db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return {row[0]: row[1] for row in rows}

    def oldest_queued_age(self) -> dict[int, float]:
        now = time.time()
        with self._read() as db:
            rows = db.execute(
                "SELECT project_id, MIN(created_at) FROM jobs WHERE status='queued' GROUP BY project_id"
            ).fetchall()
        return {row[0]: now - row[1] for row in rows}
