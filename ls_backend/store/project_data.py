"""What the backend knows of each project: label config, model versions, the ranking with its provenance,
annotation ids, observed labeling seconds, a push that failed, and the media that could not be used.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any

from ls_backend.store.database import Database, chunks, dump_json, finite, load_json


class ProjectData(Database):
    # -- projects ---------------------------------------------------------------------------------------

    def save_label_config(
        self, project_id: int, label_config: str, interface: dict[str, Any] | None, error: str | None
    ) -> bool:
        """Store a project's label config; True when it differs from the stored one."""
        with self.transaction() as db:
            row = db.execute("SELECT label_config FROM projects WHERE project_id=?", (project_id,)).fetchone()
            changed = row is None or row["label_config"] != label_config
            db.execute(
                "INSERT INTO projects (project_id, label_config, interface, config_error, updated_at) "
                "VALUES (?,?,?,?,?) ON CONFLICT(project_id) DO UPDATE SET "
                "label_config=excluded.label_config, interface=excluded.interface, "
                "config_error=excluded.config_error, updated_at=excluded.updated_at",
                (project_id, label_config, dump_json(interface), error, time.time()),
            )
        return changed

    def project(self, project_id: int) -> dict[str, Any] | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM projects WHERE project_id=?", (project_id,)).fetchone()
        if row is None:
            return None
        project = dict(row)
        project["interface"] = load_json(project["interface"])
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
        with self.transaction() as db:
            db.execute(
                "INSERT INTO projects (project_id, version_counter, updated_at) VALUES (?,1,?) "
                "ON CONFLICT(project_id) DO UPDATE SET version_counter=version_counter+1",
                (project_id, time.time()),
            )
            counter = db.execute("SELECT version_counter FROM projects WHERE project_id=?", (project_id,)).fetchone()[0]
        return f"autoal-v{counter}"

    def remember_annotations(self, project_id: int, pairs: Iterable[tuple[int, int]]) -> None:
        """Record annotation id -> task id of this project, so a later deletion event (ids only) can name
        its tasks."""
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO annotations (project_id, annotation_id, task_id) VALUES (?,?,?)",
                [(project_id, annotation_id, task_id) for annotation_id, task_id in pairs],
            )

    def tasks_of_annotations(self, project_id: int, annotation_ids: Sequence[int]) -> list[int]:
        """The project's tasks that the given annotation ids belong to (unknown ids are left out)."""
        tasks: set[int] = set()
        with self._read() as db:
            for chunk in chunks(annotation_ids):
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT DISTINCT task_id FROM annotations WHERE project_id=? AND annotation_id IN ({marks})",
                    [project_id, *chunk],
                ).fetchall()
                tasks.update(row[0] for row in rows)
        return sorted(tasks)

    # -- models and rankings ----------------------------------------------------------------------------

    def commit_model(self, project_id: int, model: dict[str, Any], ranking_rows: Sequence[dict[str, Any]]) -> None:
        """Atomically: add the model version, replace the project's ranking, make the version current."""
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO models (project_id, model_version, created_at, checkpoint, n_labels, "
                "n_pool, holdout_accuracy, classes, strategy_weights, cost_report, report, job_id, path, "
                "backbone_version) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    project_id,
                    model["model_version"],
                    now,
                    model["checkpoint"],
                    model.get("n_labels"),
                    model.get("n_pool"),
                    finite(model.get("holdout_accuracy")),
                    dump_json(model.get("classes")),
                    dump_json(model.get("strategy_weights")),
                    dump_json(model.get("cost_report")),
                    dump_json(model.get("report")),
                    model.get("job_id"),
                    model.get("path", "full"),
                    model.get("backbone_version"),
                ),
            )
            db.execute("DELETE FROM rankings WHERE project_id=?", (project_id,))
            db.executemany(
                "INSERT INTO rankings (project_id, task_id, model_version, rank, priority, score, "
                "predicted_label, confidence, predicted_cost, informativeness, strategy_weights, top_candidates, "
                "ranked_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        project_id,
                        row["task_id"],
                        model["model_version"],
                        row["rank"],
                        row["priority"],
                        row["score"],
                        row["predicted_label"],
                        finite(row.get("confidence")),
                        finite(row.get("predicted_cost")),
                        finite(row.get("informativeness")),
                        dump_json(row.get("strategy_weights")),
                        dump_json(row.get("top_candidates")),
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

    def current_model(self, project_id: int) -> dict[str, Any] | None:
        """The row of the project's current model version, or None before the first one."""
        version = self.current_version(project_id)
        return self.model(project_id, version) if version else None

    def latest_full_model(self, project_id: int) -> dict[str, Any] | None:
        """The newest model whose backbone was trained (path "full"): the one the fast path refits."""
        with self._read() as db:
            row = db.execute(
                "SELECT * FROM models WHERE project_id=? AND COALESCE(path, 'full')='full' "
                "ORDER BY created_at DESC LIMIT 1",
                (project_id,),
            ).fetchone()
        return _model_row(row) if row else None

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

    def recent_models(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The newest ``limit`` models of every project (for /metrics), newest first."""
        with self._read() as db:
            rows = db.execute("SELECT * FROM models ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
        return [_model_row(row) for row in rows]

    def all_versions(self) -> list[str]:
        with self._read() as db:
            rows = db.execute("SELECT model_version FROM models ORDER BY created_at DESC").fetchall()
        return list(dict.fromkeys(row[0] for row in rows))

    def ranking_lookup(self, project_id: int, task_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Stored ranking rows of the given tasks (missing tasks are absent from the result)."""
        found: dict[int, dict[str, Any]] = {}
        with self._read() as db:
            for chunk in chunks(task_ids):
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
        with self.transaction() as db:
            ranked = [row[0] for row in db.execute("SELECT task_id FROM rankings WHERE project_id=?", (project_id,))]
            gone = [task_id for task_id in ranked if task_id not in keep]
            db.executemany("DELETE FROM rankings WHERE project_id=? AND task_id=?", [(project_id, t) for t in gone])
        return len(gone)

    # -- pushes that failed -----------------------------------------------------------------------------

    def save_pending_push(
        self, project_id: int, labels_digest: str, model: dict[str, Any], ranking_rows: Sequence[dict[str, Any]]
    ) -> None:
        """Keep a trained model and its ranking until they are in LS (replaces an older pending one)."""
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO pending_pushes (project_id, model_version, labels_digest, model, ranking, "
                "created_at) VALUES (?,?,?,?,?,?)",
                (
                    project_id,
                    model["model_version"],
                    labels_digest,
                    dump_json(model),
                    dump_json(list(ranking_rows)),
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
        pending["model"], pending["ranking"] = load_json(pending["model"]), load_json(pending["ranking"])
        return pending

    def _pending_push_version(self, project_id: int) -> str | None:
        with self._read() as db:
            row = db.execute("SELECT model_version FROM pending_pushes WHERE project_id=?", (project_id,)).fetchone()
        return row[0] if row else None

    def drop_pending_push(self, project_id: int) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM pending_pushes WHERE project_id=?", (project_id,))

    # -- media that could not be used -------------------------------------------------------------------

    def record_media_failures(self, project_id: int, job_id: int | None, failures: Sequence[dict[str, Any]]) -> None:
        """Replace the project's list of unusable items with this job's: [{task_id, kind, reason}]."""
        now = time.time()
        with self.transaction() as db:
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
        pairs = [(task, float(s)) for task, s in observed.items() if finite(s) is not None and float(s) > 0]
        with self.transaction() as db:
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


def _model_row(row: sqlite3.Row) -> dict[str, Any]:
    model = dict(row)
    for key in ("classes", "strategy_weights", "cost_report", "report"):
        model[key] = load_json(model[key])
    return model


def _ranking_row(row: sqlite3.Row) -> dict[str, Any]:
    ranked = dict(row)
    ranked["strategy_weights"] = load_json(ranked["strategy_weights"])
    ranked["top_candidates"] = load_json(ranked.get("top_candidates")) or []
    return ranked
