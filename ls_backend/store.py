"""Durable backend state in one SQLite file under MODEL_DIR.

Tables: ``projects`` (label config, current model version), ``events`` (every webhook event, marked
with the job that handled it), ``jobs`` (queued / running / done / failed / skipped, with stage and
progress), ``models`` (one row per pushed model version with its report), ``rankings`` (the current
ranking of each project with per-task provenance), ``annotations`` (annotation id -> task id per project,
since LS's deletion webhook carries ids only), ``label_costs`` (predicted vs observed seconds),
``pending_pushes`` (a trained model whose push to LS failed, pushed by the next job without retraining)
and ``media_failures`` (the items the last job could not use, and why).

The schema is versioned (``PRAGMA user_version``): opening a store runs the ordered ``MIGRATIONS`` it has
not had yet, each in one transaction, so a ``MODEL_DIR`` written by an older release is upgraded in place
without losing rows, and one written by a newer release is refused with a clear message.

Every call opens its own short connection, so the store is safe to use from threads and from separate
processes (web server and RQ workers). Writes that must be atomic run inside ``BEGIN IMMEDIATE``.
The ``*_status``/``recent_*``/``model_history``/``explain`` functions are the read API for status pages.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ACTIVE_STATES = ("queued", "running")

SQL_CHUNK = 900  # host parameters per statement, below SQLite's limit

# Schema 1: the tables as first released (before the store had a version).
SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS projects (
    project_id INTEGER PRIMARY KEY,
    label_config TEXT,
    interface TEXT,
    config_error TEXT,
    hostname TEXT,
    current_version TEXT,
    version_counter INTEGER NOT NULL DEFAULT 0,
    updated_at REAL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL,
    action TEXT NOT NULL,
    task_ids TEXT NOT NULL DEFAULT '[]',
    annotation_ids TEXT NOT NULL DEFAULT '[]',
    received_at REAL NOT NULL,
    handled_by INTEGER
);
CREATE INDEX IF NOT EXISTS events_pending ON events (project_id, handled_by);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL,
    trigger TEXT NOT NULL,
    status TEXT NOT NULL,
    stage TEXT,
    progress REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    heartbeat_at REAL,
    error TEXT,
    model_version TEXT,
    n_labels INTEGER,
    n_pool INTEGER,
    n_media_failed INTEGER,
    train_seconds REAL,
    rank_seconds REAL,
    push_seconds REAL,
    last_event_id INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_project ON jobs (project_id, status);
CREATE TABLE IF NOT EXISTS models (
    project_id INTEGER NOT NULL,
    model_version TEXT NOT NULL,
    created_at REAL NOT NULL,
    checkpoint TEXT NOT NULL,
    n_labels INTEGER,
    n_pool INTEGER,
    holdout_accuracy REAL,
    classes TEXT,
    strategy_weights TEXT,
    cost_report TEXT,
    report TEXT,
    job_id INTEGER,
    PRIMARY KEY (project_id, model_version)
);
CREATE TABLE IF NOT EXISTS rankings (
    project_id INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    model_version TEXT NOT NULL,
    rank INTEGER NOT NULL,
    priority REAL NOT NULL,
    score REAL NOT NULL,
    predicted_label TEXT,
    confidence REAL,
    predicted_cost REAL,
    informativeness REAL,
    strategy_weights TEXT,
    ranked_at REAL NOT NULL,
    PRIMARY KEY (project_id, task_id)
);
CREATE TABLE IF NOT EXISTS annotations (
    annotation_id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL,
    task_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS label_costs (
    project_id INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    model_version TEXT NOT NULL,
    predicted_seconds REAL NOT NULL,
    observed_seconds REAL NOT NULL,
    recorded_at REAL NOT NULL,
    PRIMARY KEY (project_id, task_id)
);
"""

# Schema 2: annotation ids are keyed per project (a post for one project cannot re-key another's), the
# /setup hostname is gone (the token goes only to LABEL_STUDIO_URL), failed pushes and media failures kept.
SCHEMA_2 = (
    """
    CREATE TABLE annotations_2 (
        project_id INTEGER NOT NULL,
        annotation_id INTEGER NOT NULL,
        task_id INTEGER NOT NULL,
        PRIMARY KEY (project_id, annotation_id)
    )
    """,
    "INSERT INTO annotations_2 (project_id, annotation_id, task_id) SELECT project_id, annotation_id, task_id "
    "FROM annotations",
    "DROP TABLE annotations",
    "ALTER TABLE annotations_2 RENAME TO annotations",
    "ALTER TABLE projects DROP COLUMN hostname",
    """
    CREATE TABLE pending_pushes (
        project_id INTEGER PRIMARY KEY,
        model_version TEXT NOT NULL,
        labels_digest TEXT NOT NULL,
        model TEXT NOT NULL,
        ranking TEXT NOT NULL,
        created_at REAL NOT NULL
    )
    """,
    """
    CREATE TABLE media_failures (
        project_id INTEGER NOT NULL,
        task_id INTEGER NOT NULL,
        kind TEXT NOT NULL,
        reason TEXT NOT NULL,
        job_id INTEGER,
        recorded_at REAL NOT NULL,
        PRIMARY KEY (project_id, task_id)
    )
    """,
)

MIGRATIONS: tuple[tuple[int, str | tuple[str, ...]], ...] = ((1, SCHEMA_1), (2, SCHEMA_2))
SCHEMA_VERSION = MIGRATIONS[-1][0]


class StoreVersionError(RuntimeError):
    """The store was written by a newer release than this one."""


class Store:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        db = self._connection()
        db.execute("PRAGMA journal_mode=WAL")
        self._migrate(db)

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Bring the file to SCHEMA_VERSION, one migration per transaction (safe with concurrent openers)."""
        for target, statements in MIGRATIONS:
            db.execute("BEGIN IMMEDIATE")
            try:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise StoreVersionError(
                        f"{self.path} has schema {version}, newer than this release reads ({SCHEMA_VERSION}); "
                        "upgrade autoal-labelstudio or use another MODEL_DIR"
                    )
                if version < target:
                    for statement in _statements(statements):
                        db.execute(statement)
                    db.execute(f"PRAGMA user_version={target}")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def schema_version(self) -> int:
        with self._read() as db:
            return int(db.execute("PRAGMA user_version").fetchone()[0])

    # -- connection -------------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, kept open: closing the last connection of a WAL database checkpoints
        and removes the WAL file, which made every short-lived connection cost milliseconds."""
        db = getattr(self._local, "db", None)
        if db is None or self._local.pid != os.getpid():  # never reuse a connection across a fork
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db, self._local.pid = db, os.getpid()
        return db

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        yield self._connection()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # -- projects ---------------------------------------------------------------------------------------

    def save_label_config(
        self, project_id: int, label_config: str, interface: dict[str, Any] | None, error: str | None
    ) -> bool:
        """Store a project's label config; True when it differs from the stored one."""
        with self._write() as db:
            row = db.execute("SELECT label_config FROM projects WHERE project_id=?", (project_id,)).fetchone()
            changed = row is None or row["label_config"] != label_config
            db.execute(
                "INSERT INTO projects (project_id, label_config, interface, config_error, updated_at) "
                "VALUES (?,?,?,?,?) ON CONFLICT(project_id) DO UPDATE SET "
                "label_config=excluded.label_config, interface=excluded.interface, "
                "config_error=excluded.config_error, updated_at=excluded.updated_at",
                (project_id, label_config, _dump(interface), error, time.time()),
            )
        return changed

    def project(self, project_id: int) -> dict[str, Any] | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM projects WHERE project_id=?", (project_id,)).fetchone()
        if row is None:
            return None
        project = dict(row)
        project["interface"] = _load(project["interface"])
        return project

    def list_projects(self) -> list[int]:
        with self._read() as db:
            rows = db.execute("SELECT project_id FROM projects UNION SELECT project_id FROM jobs").fetchall()
        return sorted(row[0] for row in rows)

    def current_version(self, project_id: int) -> str | None:
        with self._read() as db:
            row = db.execute("SELECT current_version FROM projects WHERE project_id=?", (project_id,)).fetchone()
        return row["current_version"] if row else None

    def reserve_version(self, project_id: int) -> str:
        """A model version name never used before for this project (even by failed jobs)."""
        with self._write() as db:
            db.execute(
                "INSERT INTO projects (project_id, version_counter, updated_at) VALUES (?,1,?) "
                "ON CONFLICT(project_id) DO UPDATE SET version_counter=version_counter+1",
                (project_id, time.time()),
            )
            counter = db.execute("SELECT version_counter FROM projects WHERE project_id=?", (project_id,)).fetchone()[0]
        return f"autoal-v{counter}"

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
        with self._write() as db:
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

    def remember_annotations(self, project_id: int, pairs: Iterable[tuple[int, int]]) -> None:
        """Record annotation id -> task id of this project, so a later deletion event (ids only) can name
        its tasks."""
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO annotations (project_id, annotation_id, task_id) VALUES (?,?,?)",
                [(project_id, annotation_id, task_id) for annotation_id, task_id in pairs],
            )

    def tasks_of_annotations(self, project_id: int, annotation_ids: Sequence[int]) -> list[int]:
        """The project's tasks that the given annotation ids belong to (unknown ids are left out)."""
        tasks: set[int] = set()
        with self._read() as db:
            for chunk in _chunks(annotation_ids):
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT DISTINCT task_id FROM annotations WHERE project_id=? AND annotation_id IN ({marks})",
                    [project_id, *chunk],
                ).fetchall()
                tasks.update(row[0] for row in rows)
        return sorted(tasks)

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

    def request_job(self, project_id: int, trigger: str, stale_after: float) -> tuple[int, bool]:
        """Queue a job for the project unless one is already queued: (job id, created).

        Many events while a job runs therefore give exactly one more job. A "running" job whose heartbeat
        is older than `stale_after` seconds belonged to a dead worker and is marked failed.
        """
        now = time.time()
        with self._write() as db:
            db.execute(
                "UPDATE jobs SET status='failed', error='worker stopped responding', finished_at=? "
                "WHERE project_id=? AND status='running' AND heartbeat_at < ?",
                (now, project_id, now - stale_after),
            )
            row = db.execute(
                "SELECT id FROM jobs WHERE project_id=? AND status='queued' ORDER BY id LIMIT 1",
                (project_id,),
            ).fetchone()
            if row is not None:
                return int(row[0]), False
            cursor = db.execute(
                "INSERT INTO jobs (project_id, trigger, status, stage, progress, created_at) "
                "VALUES (?,?,'queued','queued',0,?)",
                (project_id, trigger, now),
            )
            return int(cursor.lastrowid), True

    def start_job(self, job_id: int) -> dict[str, Any] | None:
        """Mark a queued job running and snapshot the events it covers; None if it is not queued."""
        now = time.time()
        with self._write() as db:
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
        }
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown job field {sorted(unknown)[0]!r}")
        fields["heartbeat_at"] = time.time()
        assignments = ", ".join(f"{name}=?" for name in fields)
        with self._write() as db:
            db.execute(f"UPDATE jobs SET {assignments} WHERE id=?", [*fields.values(), job_id])

    def finish_job(self, job_id: int, status: str, error: str | None = None) -> None:
        """Close a job. Success ("done"/"skipped") marks the events it covered as handled."""
        if status not in ("done", "failed", "skipped"):
            raise ValueError(f"unknown final job status {status!r}")
        now = time.time()
        with self._write() as db:
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
        with self._write() as db:
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

    def job_durations(self, column: str) -> list[float]:
        if column not in ("train_seconds", "rank_seconds", "push_seconds"):
            raise ValueError(f"unknown duration column {column!r}")
        with self._read() as db:
            rows = db.execute(f"SELECT {column} FROM jobs WHERE {column} IS NOT NULL").fetchall()
        return [row[0] for row in rows]

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

    # -- models and rankings ----------------------------------------------------------------------------

    def commit_model(self, project_id: int, model: dict[str, Any], ranking_rows: Sequence[dict[str, Any]]) -> None:
        """Atomically: add the model version, replace the project's ranking, make the version current."""
        now = time.time()
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO models (project_id, model_version, created_at, checkpoint, n_labels, "
                "n_pool, holdout_accuracy, classes, strategy_weights, cost_report, report, job_id) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    project_id,
                    model["model_version"],
                    now,
                    model["checkpoint"],
                    model.get("n_labels"),
                    model.get("n_pool"),
                    _finite(model.get("holdout_accuracy")),
                    _dump(model.get("classes")),
                    _dump(model.get("strategy_weights")),
                    _dump(model.get("cost_report")),
                    _dump(model.get("report")),
                    model.get("job_id"),
                ),
            )
            db.execute("DELETE FROM rankings WHERE project_id=?", (project_id,))
            db.executemany(
                "INSERT INTO rankings (project_id, task_id, model_version, rank, priority, score, "
                "predicted_label, confidence, predicted_cost, informativeness, strategy_weights, ranked_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        project_id,
                        row["task_id"],
                        model["model_version"],
                        row["rank"],
                        row["priority"],
                        row["score"],
                        row["predicted_label"],
                        _finite(row.get("confidence")),
                        _finite(row.get("predicted_cost")),
                        _finite(row.get("informativeness")),
                        _dump(row.get("strategy_weights")),
                        now,
                    )
                    for row in ranking_rows
                ],
            )
            db.execute(
                "INSERT INTO projects (project_id, current_version, updated_at) VALUES (?,?,?) "
                "ON CONFLICT(project_id) DO UPDATE SET current_version=excluded.current_version, "
                "updated_at=excluded.updated_at",
                (project_id, model["model_version"], now),
            )
            db.execute("DELETE FROM pending_pushes WHERE project_id=?", (project_id,))

    def model(self, project_id: int, model_version: str) -> dict[str, Any] | None:
        with self._read() as db:
            row = db.execute(
                "SELECT * FROM models WHERE project_id=? AND model_version=?", (project_id, model_version)
            ).fetchone()
        return _model_row(row) if row else None

    def model_history(self, project_id: int, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first: version, time, number of labels, holdout accuracy, strategy weights, cost report."""
        with self._read() as db:
            rows = db.execute(
                "SELECT * FROM models WHERE project_id=? ORDER BY created_at DESC LIMIT ?",
                (project_id, limit),
            ).fetchall()
        return [_model_row(row) for row in rows]

    def all_versions(self) -> list[str]:
        with self._read() as db:
            rows = db.execute("SELECT model_version FROM models ORDER BY created_at DESC").fetchall()
        return list(dict.fromkeys(row[0] for row in rows))

    def ranking_lookup(self, project_id: int, task_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Stored ranking rows of the given tasks (missing tasks are absent from the result)."""
        found: dict[int, dict[str, Any]] = {}
        with self._read() as db:
            for chunk in _chunks(task_ids):
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    "SELECT task_id, model_version, score, predicted_label FROM rankings "
                    f"WHERE project_id=? AND task_id IN ({marks})",
                    [project_id, *chunk],
                ).fetchall()
                for row in rows:
                    found[row[0]] = {"model_version": row[1], "score": row[2], "predicted_label": row[3]}
        return found

    def ranking(self, project_id: int, limit: int | None = None) -> list[dict[str, Any]]:
        """The project's ranking from the first task to serve (rank 1) on."""
        with self._read() as db:
            rows = db.execute(
                "SELECT * FROM rankings WHERE project_id=? ORDER BY rank LIMIT ?", (project_id, limit or -1)
            ).fetchall()
        return [_ranking_row(row) for row in rows]

    def explain(self, project_id: int, task_id: int) -> dict[str, Any] | None:
        """Provenance of one ranked task: model version, rank, priority, strategy weights, predicted cost."""
        with self._read() as db:
            row = db.execute(
                "SELECT * FROM rankings WHERE project_id=? AND task_id=?", (project_id, task_id)
            ).fetchone()
            size = db.execute("SELECT COUNT(*) FROM rankings WHERE project_id=?", (project_id,)).fetchone()[0]
        if row is None:
            return None
        explained = _ranking_row(row)
        explained["pool_size"] = size
        return explained

    def pool_sizes(self) -> dict[int, int]:
        with self._read() as db:
            rows = db.execute("SELECT project_id, COUNT(*) FROM rankings GROUP BY project_id").fetchall()
        return {row[0]: row[1] for row in rows}

    def prune_ranking(self, project_id: int, listed_task_ids: Iterable[int]) -> int:
        """Drop ranking rows of tasks Label Studio no longer lists; how many were dropped.

        A job calls it with the tasks it just listed, so a deletion is acted on only once LS confirms it.
        """
        keep = set(listed_task_ids)
        with self._write() as db:
            ranked = [row[0] for row in db.execute("SELECT task_id FROM rankings WHERE project_id=?", (project_id,))]
            gone = [task_id for task_id in ranked if task_id not in keep]
            db.executemany("DELETE FROM rankings WHERE project_id=? AND task_id=?", [(project_id, t) for t in gone])
        return len(gone)

    # -- pushes that failed -----------------------------------------------------------------------------

    def save_pending_push(
        self, project_id: int, labels_digest: str, model: dict[str, Any], ranking_rows: Sequence[dict[str, Any]]
    ) -> None:
        """Keep a trained model and its ranking until they are in LS (replaces an older pending one)."""
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO pending_pushes (project_id, model_version, labels_digest, model, ranking, "
                "created_at) VALUES (?,?,?,?,?,?)",
                (
                    project_id,
                    model["model_version"],
                    labels_digest,
                    _dump(model),
                    _dump(list(ranking_rows)),
                    time.time(),
                ),
            )

    def pending_push(self, project_id: int) -> dict[str, Any] | None:
        """{model_version, labels_digest, model, ranking, created_at} of the project's unpushed model, or None."""
        with self._read() as db:
            row = db.execute("SELECT * FROM pending_pushes WHERE project_id=?", (project_id,)).fetchone()
        if row is None:
            return None
        pending = dict(row)
        pending["model"], pending["ranking"] = _load(pending["model"]), _load(pending["ranking"])
        return pending

    def _pending_push_version(self, project_id: int) -> str | None:
        with self._read() as db:
            row = db.execute("SELECT model_version FROM pending_pushes WHERE project_id=?", (project_id,)).fetchone()
        return row[0] if row else None

    def drop_pending_push(self, project_id: int) -> None:
        with self._write() as db:
            db.execute("DELETE FROM pending_pushes WHERE project_id=?", (project_id,))

    # -- media that could not be used -------------------------------------------------------------------

    def record_media_failures(self, project_id: int, job_id: int | None, failures: Sequence[dict[str, Any]]) -> None:
        """Replace the project's list of unusable items with this job's: [{task_id, kind, reason}]."""
        now = time.time()
        with self._write() as db:
            db.execute("DELETE FROM media_failures WHERE project_id=?", (project_id,))
            db.executemany(
                "INSERT OR REPLACE INTO media_failures (project_id, task_id, kind, reason, job_id, recorded_at) "
                "VALUES (?,?,?,?,?,?)",
                [(project_id, f["task_id"], f["kind"], f["reason"][:500], job_id, now) for f in failures],
            )

    def media_failures(self, project_id: int, limit: int = 100) -> list[dict[str, Any]]:
        """The items the last job of the project could not use (labeled ones first), with the reasons."""
        with self._read() as db:
            rows = db.execute(
                "SELECT * FROM media_failures WHERE project_id=? ORDER BY kind, task_id LIMIT ?", (project_id, limit)
            ).fetchall()
        return [dict(row) for row in rows]

    def media_failure_count(self, project_id: int) -> int:
        return self.media_failure_counts().get(project_id, 0)

    def media_failure_counts(self) -> dict[int, int]:
        with self._read() as db:
            rows = db.execute("SELECT project_id, COUNT(*) FROM media_failures GROUP BY project_id").fetchall()
        return {row[0]: row[1] for row in rows}

    def record_label_costs(self, project_id: int, observed: dict[int, float]) -> int:
        """Keep (predicted, observed) seconds of newly labeled tasks; call before the ranking is replaced.

        The prediction is the one the ranking held when the task was labeled, so the pairs measure the
        cost model out of sample. A task keeps its first pair; unknown or non-positive times are ignored.
        """
        now = time.time()
        pairs = [(task, float(s)) for task, s in observed.items() if _finite(s) is not None and float(s) > 0]
        with self._write() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO label_costs (project_id, task_id, model_version, predicted_seconds, "
                "observed_seconds, recorded_at) SELECT project_id, task_id, model_version, predicted_cost, ?, ? "
                "FROM rankings WHERE project_id=? AND task_id=? AND predicted_cost IS NOT NULL",
                [(seconds, now, project_id, task_id) for task_id, seconds in pairs],
            )
            return db.total_changes - before

    def label_costs(self, project_id: int, limit: int = 5000) -> list[dict[str, Any]]:
        """Newest first: task id, model version, predicted and observed seconds (see record_label_costs)."""
        with self._read() as db:
            rows = db.execute(
                "SELECT * FROM label_costs WHERE project_id=? ORDER BY recorded_at DESC, task_id LIMIT ?",
                (project_id, limit),
            ).fetchall()
        return [dict(row) for row in rows]

    # -- status -----------------------------------------------------------------------------------------

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


def _statements(statements: str | tuple[str, ...]) -> list[str]:
    if isinstance(statements, tuple):
        return list(statements)
    return [statement for statement in statements.split(";") if statement.strip()]


def _chunks(values: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(values), SQL_CHUNK):
        yield list(values[start : start + SQL_CHUNK])


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(_json_safe(value), allow_nan=False)


def _json_safe(value: Any) -> Any:
    """Plain JSON types: numpy values become Python numbers, NaN and infinities become null."""
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if hasattr(value, "tolist"):
        return _json_safe(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _model_row(row: sqlite3.Row) -> dict[str, Any]:
    model = dict(row)
    for key in ("classes", "strategy_weights", "cost_report", "report"):
        model[key] = _load(model[key])
    return model


def _ranking_row(row: sqlite3.Row) -> dict[str, Any]:
    ranked = dict(row)
    ranked["strategy_weights"] = _load(ranked["strategy_weights"])
    return ranked
