"""ls_backend.store: job coalescing, event bookkeeping, atomic model commits and the status read API."""

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ls_backend.store import Store


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "autoal.sqlite3")


def test_many_requests_while_running_give_exactly_one_more_job(store):
    first, created = store.request_job(1, "ANNOTATION_CREATED", stale_after=3600)
    assert created
    assert store.request_job(1, "ANNOTATION_CREATED", stale_after=3600) == (first, False)
    assert store.start_job(first)["status"] == "running"
    requests = [store.request_job(1, "ANNOTATION_CREATED", stale_after=3600) for _ in range(20)]
    second_id = requests[0][0]
    assert second_id != first
    assert requests == [(second_id, True)] + [(second_id, False)] * 19
    assert store.request_job(2, "START_TRAINING", stale_after=3600)[1]  # other projects are independent
    assert [job["status"] for job in store.recent_jobs(1)] == ["queued", "running"]


def test_start_job_only_once(store):
    job_id, _ = store.request_job(1, "x", stale_after=3600)
    assert store.start_job(job_id) is not None
    assert store.start_job(job_id) is None
    assert store.start_job(12345) is None


def test_success_marks_covered_events_failure_keeps_them(store):
    store.record_event(1, "ANNOTATION_CREATED", [10], [100])
    job_id, _ = store.request_job(1, "x", stale_after=3600)
    store.start_job(job_id)
    store.record_event(1, "ANNOTATION_CREATED", [11], [101])  # arrives while the job runs
    store.finish_job(job_id, "failed", "LS down")
    assert store.pending_events(1) == 2
    assert store.consecutive_failures(1) == 1
    assert store.project_status(1)["last_error"] == "LS down"

    job_id, _ = store.request_job(1, "retry", stale_after=3600)
    store.start_job(job_id)
    store.record_event(1, "ANNOTATION_CREATED", [12], [102])
    store.finish_job(job_id, "done")
    assert store.pending_events(1) == 1  # the event after the job's start needs the next job
    assert store.consecutive_failures(1) == 0
    assert store.projects_with_pending_events() == [1]


def test_events_that_need_no_job_are_handled_at_once(store):
    store.record_event(1, "PROJECT_UPDATED", needs_job=False)
    store.record_event(1, "ANNOTATIONS_DELETED", [7], [70])
    assert store.pending_events(1) == 1
    assert store.event_counts() == {"PROJECT_UPDATED": 1, "ANNOTATIONS_DELETED": 1}
    newest, oldest = store.recent_events(1)
    assert (newest["action"], newest["task_ids"], newest["annotation_ids"]) == ("ANNOTATIONS_DELETED", [7], [70])
    assert (newest["handled_by"], oldest["handled_by"]) == (None, 0)


def test_stale_running_job_is_failed_and_replaced(store):
    job_id, _ = store.request_job(1, "x", stale_after=3600)
    store.start_job(job_id)
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE jobs SET heartbeat_at=? WHERE id=?", (time.time() - 100, job_id))
    new_id, created = store.request_job(1, "y", stale_after=10)
    assert created and new_id != job_id
    assert store.job(job_id)["status"] == "failed"
    assert "stopped responding" in store.job(job_id)["error"]


def test_interrupt_active_jobs_returns_their_projects(store):
    store.request_job(1, "x", stale_after=3600)
    running, _ = store.request_job(2, "x", stale_after=3600)
    store.start_job(running)
    assert store.interrupt_active_jobs() == [1, 2]
    assert store.job_counts() == {"failed": 2}


def test_reserved_versions_never_repeat(store):
    assert [store.reserve_version(1) for _ in range(3)] == ["autoal-v1", "autoal-v2", "autoal-v3"]
    assert store.reserve_version(2) == "autoal-v1"


def ranking(n, version):
    return [
        {
            "task_id": 100 + i,
            "rank": i + 1,
            "priority": 1 - i / n,
            "score": i / n,
            "predicted_label": "a",
            "confidence": 0.5,
            "predicted_cost": 3.0,
            "informativeness": float("nan"),
            "strategy_weights": {"entropy": 0.5, "margin": 0.5},
        }
        for i in range(n)
    ]


def test_commit_model_replaces_ranking_and_sets_current_version(store):
    assert store.current_version(1) is None
    store.save_label_config(1, "<View/>", {"classes": ["a", "b"]}, None)
    store.commit_model(
        1,
        {
            "model_version": "autoal-v1",
            "checkpoint": "/x/1",
            "n_labels": 10,
            "n_pool": 5,
            "holdout_accuracy": 0.7,
            "strategy_weights": {"entropy": 1.0},
            "cost_report": {"median": float("nan")},
            "report": {"a": [1, 2]},
        },
        ranking(5, "v1"),
    )
    store.commit_model(
        1,
        {"model_version": "autoal-v2", "checkpoint": "/x/2", "n_labels": 12, "n_pool": 3, "holdout_accuracy": 0.8},
        ranking(3, "v2"),
    )
    assert store.current_version(1) == "autoal-v2"
    assert store.pool_sizes() == {1: 3}
    found = store.ranking_lookup(1, [100, 101, 104, 999])
    assert set(found) == {100, 101}
    assert found[101]["model_version"] == "autoal-v2"
    assert found[101]["score"] == pytest.approx(1 / 3)
    explained = store.explain(1, 100)
    assert explained["rank"] == 1 and explained["pool_size"] == 3
    assert explained["strategy_weights"] == {"entropy": 0.5, "margin": 0.5}
    assert explained["informativeness"] is None  # NaN is stored as NULL
    assert store.explain(1, 999) is None
    history = store.model_history(1)
    assert [m["model_version"] for m in history] == ["autoal-v2", "autoal-v1"]
    assert history[1]["cost_report"] == {"median": None}
    assert store.all_versions() == ["autoal-v2", "autoal-v1"]
    status = store.project_status(1)
    assert status["current_version"] == "autoal-v2"
    assert status["classes"] == ["a", "b"]
    assert status["latest_model"]["holdout_accuracy"] == 0.8


def test_large_lookups_are_chunked(store):
    store.commit_model(1, {"model_version": "v", "checkpoint": "/x"}, ranking(2500, "v"))
    assert len(store.ranking_lookup(1, list(range(100, 2600)))) == 2500
    assert store.prune_ranking(1, range(102, 2600)) == 2
    assert store.explain(1, 100) is None
    assert store.pool_sizes() == {1: 2498}


def test_annotation_to_task_mapping_is_per_project(store):
    store.remember_annotations(1, [(5, 50), (6, 60)])
    store.remember_annotations(2, [(5, 99)])
    assert store.tasks_of_annotations(1, [5, 6, 7]) == [50, 60]
    assert store.tasks_of_annotations(2, [5, 6]) == [99]
    assert store.tasks_of_annotations(1, []) == []
    store.remember_annotations(1, [(i, i) for i in range(10_000)])
    assert len(store.tasks_of_annotations(1, list(range(300_000)))) == 10_000  # chunked below SQLite's limit


def test_a_pending_push_is_kept_until_a_commit(store):
    rows = ranking(3, "autoal-v1")
    store.save_pending_push(1, "digest", {"model_version": "autoal-v1", "checkpoint": "/x", "n_labels": 5}, rows)
    pending = store.pending_push(1)
    assert (pending["model_version"], pending["labels_digest"], len(pending["ranking"])) == ("autoal-v1", "digest", 3)
    assert store.project_status(1)["pending_push"] == "autoal-v1"
    assert store.pending_push(2) is None
    store.commit_model(1, pending["model"], pending["ranking"])
    assert store.pending_push(1) is None and store.current_version(1) == "autoal-v1"


def test_media_failures_are_replaced_by_each_job(store):
    store.record_media_failures(1, 7, [{"task_id": 3, "kind": "pool", "reason": "cannot decode image"}])
    store.record_media_failures(
        1, 8, [{"task_id": 4, "kind": "pool", "reason": "4x4 px"}, {"task_id": 2, "kind": "labeled", "reason": "x"}]
    )
    failures = store.media_failures(1)
    assert [(f["task_id"], f["kind"], f["job_id"]) for f in failures] == [(2, "labeled", 8), (4, "pool", 8)]
    assert store.project_status(1)["n_media_failed"] == 2


# Schema 1, as the first release wrote it (no user_version), with a row in each table that has data.
SCHEMA_1_ROWS = [
    "INSERT INTO projects (project_id, label_config, hostname, current_version, version_counter) "
    "VALUES (1, '<View/>', 'http://ls:8080', 'autoal-v2', 2)",
    "INSERT INTO events (project_id, action, received_at, handled_by) VALUES (1, 'ANNOTATION_CREATED', 1.0, 3)",
    "INSERT INTO jobs (project_id, trigger, status, created_at) VALUES (1, 'x', 'done', 1.0)",
    "INSERT INTO models (project_id, model_version, created_at, checkpoint) VALUES (1, 'autoal-v2', 1.0, '/c')",
    "INSERT INTO rankings (project_id, task_id, model_version, rank, priority, score, ranked_at) "
    "VALUES (1, 10, 'autoal-v2', 1, 0.9, 0.1, 1.0)",
    "INSERT INTO annotations (annotation_id, project_id, task_id) VALUES (100, 1, 10)",
    "INSERT INTO annotations (annotation_id, project_id, task_id) VALUES (101, 2, 20)",
    "INSERT INTO label_costs VALUES (1, 10, 'autoal-v2', 3.0, 4.0, 1.0)",
]


def test_a_store_of_the_first_schema_is_upgraded_without_losing_rows(tmp_path):
    from ls_backend.store import SCHEMA_1, SCHEMA_VERSION

    path = tmp_path / "autoal.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_1)
        for statement in SCHEMA_1_ROWS:
            db.execute(statement)
    store = Store(path)
    assert store.schema_version() == SCHEMA_VERSION == 4
    assert store.current_version(1) == "autoal-v2"
    assert store.reserve_version(1) == "autoal-v3"  # the counter survived
    assert store.tasks_of_annotations(1, [100, 101]) == [10]
    assert store.tasks_of_annotations(2, [101]) == [20]
    assert store.ranking(1)[0]["task_id"] == 10
    assert store.ranking(1)[0]["top_candidates"] == []  # schema 3's column, empty for rows ranked before
    assert store.label_costs(1)[0]["observed_seconds"] == 4.0
    assert store.model(1, "autoal-v2")["checkpoint"] == "/c"
    assert store.latest_full_model(1)["model_version"] == "autoal-v2"  # schema 4: models before it were full
    assert store.event_counts() == {"ANNOTATION_CREATED": 1} and store.job_counts() == {"done": 1}
    assert "hostname" not in store.project(1)
    assert Store(path).schema_version() == SCHEMA_VERSION  # opening again changes nothing


def test_a_store_from_a_newer_release_is_refused(tmp_path):
    from ls_backend.store import StoreVersionError

    path = tmp_path / "autoal.sqlite3"
    Store(path)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(StoreVersionError, match="schema 99"):
        Store(path)


def test_update_job_rejects_unknown_fields(store):
    job_id, _ = store.request_job(1, "x", stale_after=3600)
    store.update_job(job_id, stage="training", progress=0.4)
    assert store.job(job_id)["stage"] == "training"
    with pytest.raises(ValueError, match="unknown job field 'status'"):
        store.update_job(job_id, status="done")


# -- transactions ---------------------------------------------------------------------------------------


def test_writes_in_one_transaction_commit_together_or_not_at_all(store):
    with pytest.raises(RuntimeError), store.transaction():
        store.remember_annotations(1, [(100, 10)])
        store.record_event(1, "ANNOTATION_CREATED", [10], [100])
        store.request_job(1, "ANNOTATION_CREATED", stale_after=3600)
        raise RuntimeError("the request failed half-way")
    assert (store.recent_events(1), store.recent_jobs(1), store.tasks_of_annotations(1, [100])) == ([], [], [])

    other = Store(store.path)  # another connection: sees committed rows only
    with store.transaction():
        store.record_event(1, "ANNOTATION_CREATED", [10], [100])
        assert other.pending_events(1) == 0
        with pytest.raises(ValueError), store.transaction():  # a nested one undoes only its own writes
            store.record_event(1, "ANNOTATION_CREATED", [11], [101])
            raise ValueError("inner")
        store.request_job(1, "ANNOTATION_CREATED", stale_after=3600)
    assert other.pending_events(1) == 1 and [job["status"] for job in other.recent_jobs(1)] == ["queued"]


def test_after_commit_waits_for_the_commit_and_is_dropped_by_a_rollback(store):
    other = Store(store.path)
    seen = []
    store.after_commit(lambda: seen.append("now"))  # no transaction open: at once
    with store.transaction():
        job_id, _ = store.request_job(1, "x", stale_after=3600)
        store.after_commit(lambda: seen.append(other.job(job_id)["status"]))
        assert seen == ["now"]
    with pytest.raises(RuntimeError), store.transaction():
        store.after_commit(lambda: seen.append("rolled back"))
        raise RuntimeError
    with store.transaction():
        with pytest.raises(RuntimeError), store.transaction():
            store.after_commit(lambda: seen.append("undone savepoint"))
            raise RuntimeError
        store.after_commit(lambda: seen.append("outer"))
    assert seen == ["now", "queued", "outer"]


def test_threads_writing_at_once_lose_nothing(store):
    def webhook(number: int) -> tuple[int, bool]:
        with store.transaction():
            store.remember_annotations(1, [(number, number)])
            store.record_event(1, "ANNOTATION_CREATED", [number], [number])
            return store.request_job(1, "ANNOTATION_CREATED", stale_after=3600)

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(webhook, range(200)))
    assert store.pending_events(1) == 200
    assert store.tasks_of_annotations(1, list(range(200))) == list(range(200))
    assert sum(created for _, created in answers) == 1 and len({job for job, _ in answers}) == 1


def test_requests_coalesce_per_lane_and_a_bad_lane_is_refused(store):
    fast, created = store.request_job(1, "ANNOTATION_CREATED", stale_after=3600)
    full, full_created = store.request_job(1, "growth", stale_after=3600, lane="full")
    assert created and full_created and fast != full
    assert store.request_job(1, "ANNOTATION_CREATED", stale_after=3600) == (fast, False)
    assert store.request_job(1, "START_TRAINING", stale_after=3600, lane="full") == (full, False)
    assert store.job(full)["lane"] == "full" and store.job(fast)["lane"] == "fast"
    with pytest.raises(ValueError, match="lane: must be one of"):
        store.request_job(1, "x", stale_after=3600, lane="medium")


def test_versions_in_flight_are_those_running_jobs_reserved(store):
    job_id, _ = store.request_job(1, "x", stale_after=3600)
    store.start_job(job_id)
    store.update_job(job_id, model_version="autoal-v7")
    assert store.versions_in_flight(1) == {"autoal-v7"}
    store.finish_job(job_id, "done")
    assert store.versions_in_flight(1) == set()


def test_the_task_mirror_is_replaced_by_a_full_listing_and_updated_by_an_incremental_one(store):
    assert store.tasks_listed_since(1) is None and store.fully_listed_at(1) is None  # the first job lists in full
    listed = [
        {"id": 1, "data": {"image": "a"}, "updated_at": "2026-12-01T10:00:00.000001Z", "predictions": [{"x": 1}]},
        {"id": 2, "data": {"image": "b"}, "updated_at": "2026-12-01T10:00:05.500000Z"},
    ]
    store.replace_mirrored_tasks(1, listed)
    assert abs(store.fully_listed_at(1) - time.time()) < 60
    assert [task["id"] for task in store.mirrored_tasks(1)] == [1, 2]
    assert "predictions" not in store.mirrored_tasks(1)[0]  # not needed, and most of the payload
    assert store.tasks_listed_since(1) == "2026-12-01T09:59:55.500000Z"  # the newest, less the overlap
    store.update_mirrored_tasks(1, [{"id": 2, "data": {"image": "b"}, "annotations": [{"id": 9}],
                                     "updated_at": "2026-12-01T10:01:00.000000Z"},
                                    {"id": 3, "data": {"image": "c"}, "updated_at": "2026-12-01T10:00:30.000000Z"}])
    mirrored = {task["id"]: task for task in store.mirrored_tasks(1)}
    assert sorted(mirrored) == [1, 2, 3] and mirrored[2]["annotations"] == [{"id": 9}]
    assert store.tasks_listed_since(1) == "2026-12-01T10:00:50.000000Z"
    store.update_mirrored_tasks(1, [])  # nothing changed: the watermark stays
    assert store.tasks_listed_since(1) == "2026-12-01T10:00:50.000000Z"
    store.replace_mirrored_tasks(1, listed[:1])  # a full listing drops what LS no longer lists
    assert [task["id"] for task in store.mirrored_tasks(1)] == [1]
    assert store.mirrored_tasks(2) == []
