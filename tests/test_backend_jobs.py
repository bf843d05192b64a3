"""The job function and the thread runner without Label Studio: LS down, retries, recovery, ranking rows.

(The full job against a real Label Studio is in tests/integration/.)
"""

import dataclasses
import socket
import time

import numpy as np
import pytest

from autoal_engine.ranking import Ranking
from ls_backend.jobs import ranking_rows, run_job, split_tasks
from ls_backend.labeling import parse_label_config
from ls_backend.runners import ThreadRunner, request_job, retry_delay
from ls_backend.settings import Settings
from ls_backend.store import Store

CONFIG = (
    '<View><Image name="image" value="$image"/><Choices name="c" toName="image">'
    '<Choice value="a"/><Choice value="b"/></Choices></View>'
)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def settings(tmp_path):
    return Settings(
        model_dir=tmp_path,
        label_studio_url=f"http://127.0.0.1:{closed_port()}",
        label_studio_api_key="legacytoken123",
        ls_retries=1,
        ls_backoff=0.01,
        job_retries=1,
        job_retry_delay=0.05,
    )


@pytest.fixture
def store(settings):
    return Store(settings.database_path)


def test_ls_down_fails_the_job_keeps_the_events_and_asks_for_a_retry(settings, store):
    store.record_event(1, "ANNOTATION_CREATED", [5], [50])
    job_id, _ = store.request_job(1, "ANNOTATION_CREATED", stale_after=60)
    outcome = run_job(settings, store, job_id)
    assert outcome.status == "failed" and outcome.retryable
    assert "Label Studio did not" in outcome.message and "after 2 tries" in outcome.message
    job = store.job(job_id)
    assert job["status"] == "failed" and job["error"] == outcome.message
    assert store.pending_events(1) == 1
    assert retry_delay(store, settings, 1, outcome) == pytest.approx(0.05)
    second, _ = store.request_job(1, "retry", stale_after=60)
    run_job(settings, store, second)
    assert retry_delay(store, settings, 1, outcome) is None  # job_retries=1 used up; the next event retries


def test_missing_configuration_is_a_plain_failure(tmp_path):
    settings = Settings(model_dir=tmp_path)
    store = Store(settings.database_path)
    job_id, _ = store.request_job(1, "START_TRAINING", stale_after=60)
    outcome = run_job(settings, store, job_id)
    assert outcome.status == "failed" and not outcome.retryable
    assert "LABEL_STUDIO_URL is not set" in outcome.message
    assert run_job(settings, store, job_id).status == "not-run"  # a finished job is not run again


def test_thread_runner_requeues_interrupted_work_and_retries_until_the_limit(settings, store):
    settings = dataclasses.replace(settings, job_retries=2)  # the interrupted job counts as one failure
    store.record_event(1, "ANNOTATION_CREATED", [5], [50])
    stale, _ = store.request_job(1, "ANNOTATION_CREATED", stale_after=60)
    store.start_job(stale)  # as if the server died in the middle of this job
    runner = ThreadRunner(settings, store)
    runner.start()
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            jobs = store.recent_jobs(1)
            if len(jobs) >= 3 and all(job["status"] == "failed" for job in jobs):
                break
            time.sleep(0.05)
        time.sleep(0.5)  # no further retry may appear
        jobs = store.recent_jobs(1)
        assert [job["trigger"] for job in reversed(jobs)] == ["ANNOTATION_CREATED", "recovery", "retry"]
        assert "interrupted" in jobs[-1]["error"]
        assert all(job["status"] == "failed" for job in jobs)
        assert store.pending_events(1) == 1  # not lost: the next successful job handles it
        assert runner.lanes["fast"].thread.is_alive()
        answer = request_job(store, runner, settings, 1, "ANNOTATION_CREATED")
        assert answer["coalesced"] is False
    finally:
        runner.stop()


def test_split_tasks_skips_are_neither_labels_nor_pool():
    interface = parse_label_config(CONFIG)

    def labeled(task_id, label, cancelled=False):
        result = [{"from_name": "c", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]
        return {
            "id": task_id,
            "annotations": [{"id": task_id * 10, "result": result, "was_cancelled": cancelled, "lead_time": 2.0}],
            "total_annotations": 0 if cancelled else 1,
            "cancelled_annotations": 1 if cancelled else 0,
        }

    tasks = [
        labeled(1, "a"),
        labeled(2, "b"),
        labeled(3, "a", cancelled=True),
        {"id": 4, "annotations": [], "total_annotations": 0, "cancelled_annotations": 0},
    ]
    train, pool = split_tasks(tasks, interface)
    assert [t["id"] for t in train] == [1, 2]
    assert [t["label"].label for t in train] == ["a", "b"]
    assert [t["id"] for t in pool] == [4]


def test_ranking_rows_score_is_one_minus_priority_and_rank_follows_priority():
    ranking = Ranking(
        priority=np.array([0.2, 1.0, 0.0, 0.6]),
        informativeness=np.array([0.1, 0.9, 0.0, np.nan]),
        predicted_cost=np.array([3.0, 4.0, 5.0, 6.0]),
        predicted_label=np.array(["a", "b", "a", "b"], dtype=object),
        probabilities=np.array([[0.9, 0.1], [0.5, 0.5], [0.99, 0.01], [0.3, 0.7]]),
        strategy_weights=np.array([[0.5, 0.5], [0.25, 0.75], [1.0, 0.0], [0.5, 0.5]]),
        strategy_names=("entropy", "margin"),
        classes=("a", "b"),
    )
    rows = ranking_rows([40, 41, 42, 43], ranking)
    by_task = {row["task_id"]: row for row in rows}
    assert [by_task[t]["rank"] for t in (41, 43, 40, 42)] == [1, 2, 3, 4]
    assert by_task[41]["score"] == 0.0 and by_task[42]["score"] == 1.0
    assert by_task[40]["score"] == pytest.approx(0.8)
    assert by_task[43]["informativeness"] is None
    assert by_task[41]["strategy_weights"] == {"entropy": 0.25, "margin": 0.75}
    assert by_task[43]["confidence"] == pytest.approx(0.7)


def test_a_backbone_that_no_longer_loads_sends_the_job_down_the_full_path(settings, store, tmp_path, monkeypatch):
    """The fast path's failure to load its backbone (a checkpoint of an older layout) is not the job's: it
    trains a new one."""
    from ls_backend import jobs

    calls = []

    def broken_fast_path(self, base, labeled, pool):
        calls.append("fast")
        raise ValueError("directory: the saved task model does not match its configuration")

    def full_path(self, interface, labeled, pool):
        calls.append("full")
        raise jobs.SkipJob("stop here: the full path was taken")

    job_id, _ = store.request_job(1, "ANNOTATION_CREATED", stale_after=60)
    store.start_job(job_id)
    work = jobs.RetrainAndRank(settings, store, 1, job_id)
    monkeypatch.setattr(jobs.RetrainAndRank, "fast_path", broken_fast_path)
    monkeypatch.setattr(jobs.RetrainAndRank, "full_path", full_path)
    base = {"model_version": "autoal-v1", "checkpoint": str(tmp_path), "n_labels": 10}
    with pytest.raises(jobs.SkipJob, match="full path was taken"):
        work.train_and_rank(base, None, [], [])
    assert calls == ["fast", "full"]
    job = store.job(job_id)
    assert job["path"] == "full" and "the fast path failed: directory: the saved task model" in job["path_reason"]


def test_a_commit_drops_older_embedding_caches_but_not_the_one_a_running_full_retrain_fills(settings, store):
    """A fast job that commits on backbone B1 while the full lane embeds the pool under a newer B2 (not yet
    committed) keeps B2's cache: the full job commits B2 next, and the fast path then refits B2 from it."""
    from ls_backend import jobs

    older, base, newer = (f"autoal-20261201-{time}-{tag}" for time, tag in
                          (("101500", "aaaaaa"), ("120000", "bbbbbb"), ("123000", "cccccc")))
    for version in (older, base, newer):
        settings.embedding_dir(1, version).mkdir(parents=True)
    full = {"model_version": "autoal-v1", "checkpoint": str(settings.checkpoint_dir(1, "autoal-v1")), "path": "full",
            "backbone_version": base, "n_labels": 20}
    store.commit_model(1, full, [])
    job_id, _ = store.request_job(1, "ANNOTATION_CREATED", stale_after=60)
    work = jobs.RetrainAndRank(settings, store, 1, job_id)
    work.drop_old_versions(jobs.LabelStudioClient.for_settings(settings, retries=0), "autoal-v1")  # LS down: no harm
    remaining = sorted(path.name for path in settings.embedding_dir(1, base).parent.iterdir())
    assert remaining == [base, newer]


def test_the_embedding_cache_keeps_the_thumbnails_when_the_cost_model_reads_images(settings, store, digits, tmp_path):
    """With ``cost.image_features`` the cached vectors are wider (the thumbnails travel with the embeddings): the
    job's cache is opened at the engine's vector width, and a second pass reads every vector back."""
    from PIL import Image

    from autoal_engine.engine import Engine
    from ls_backend.jobs import RetrainAndRank
    from tests.conftest import fast_config

    images, labels = digits
    config = fast_config(enabled=False)
    config.cost.image_features = 8
    engine = Engine(config).fit(images[:40], labels[:40])
    tasks = []
    for i, image in enumerate(images[40:46]):
        path = tmp_path / f"{i}.png"
        Image.fromarray((image * 255).astype(np.uint8)).save(path)
        tasks.append({"id": i + 1, "path": str(path)})
    job = RetrainAndRank(settings, store, 1, 1)
    vectors, hits, misses, unusable = job.cached_vectors(engine, tasks)
    assert vectors.shape == (6, engine.vector_width) and (hits, misses, unusable) == (0, 6, {})
    again, hits, misses, _ = job.cached_vectors(engine, tasks)
    assert (hits, misses) == (6, 0) and np.array_equal(again, vectors)
    assert np.array_equal(engine.rank_vectors(again).order, engine.rank([t["path"] for t in tasks]).order)


def test_known_seconds_reads_numbers_above_zero_and_nothing_else():
    from ls_backend.task_adapter import known_seconds

    given = [12, 2.5, "7.5", 0, -3, "abc", True, None, [4], {"s": 4}, "inf", "nan", "1e999", 10**400]
    pool = [{"id": i, "data": {"seconds": value}} for i, value in enumerate(given)]
    pool += [{"id": 98, "data": {}}, {"id": 99, "data": "not an object"}]
    values = known_seconds(pool, "seconds")
    assert values[:3].tolist() == [12.0, 2.5, 7.5] and np.isnan(values[3:]).all() and len(values) == len(pool)
    assert known_seconds(pool, None) is None


def test_the_job_ranks_with_the_seconds_the_task_data_gives(settings, store, digits, tmp_path):
    """AUTOAL_TASK_SECONDS_FIELD: the tasks whose data give their seconds are ranked with them (the ranking's
    seconds are theirs, on the full path and the fast path), a task with a bad value gets the cost model's
    prediction, and the head of the queue takes the cheap ones."""
    from PIL import Image

    from ls_backend.jobs import RetrainAndRank
    from ls_backend.labeling import TaskLabel
    from tests.conftest import fast_config

    images, labels = digits
    config = fast_config(enabled=False).to_dict()
    config["strategies"], config["cost"]["within_class"] = ["margin"], False  # value per raw second, one candidate
    settings = dataclasses.replace(settings, task_seconds_field="seconds", engine_overrides=config)
    interface = parse_label_config(CONFIG.replace('"a"', '"0"').replace('"b"', '"1"'))
    keep = np.flatnonzero(labels < 2)[:90]
    tasks = []
    for i, index in enumerate(keep):
        path = tmp_path / f"{i}.png"
        Image.fromarray((images[index] * 255).astype(np.uint8)).save(path)
        tasks.append({"id": i + 1, "path": str(path), "data": {"image": str(path)}})
    labeled = [{**task, "label": TaskLabel(task["id"], str(labels[index]), 10.0 + i % 7, i + 1)}
               for i, (task, index) in enumerate(zip(tasks[:30], keep[:30], strict=True))]
    pool = tasks[30:]
    for i, task in enumerate(pool):
        task["data"]["seconds"] = 1.0 if i % 2 else 1000.0  # half the pool is cheap
    pool[0]["data"]["seconds"] = "abc"
    job_id, _ = store.request_job(1, "ANNOTATION_CREATED", stale_after=60)
    store.start_job(job_id)
    work = RetrainAndRank(settings, store, 1, job_id)
    engine, ranking, *_ = work.full_path(interface, labeled, pool)
    given = np.array([task["data"]["seconds"] for task in pool[1:]], dtype=float)
    assert np.array_equal(ranking.predicted_cost[1:], given)
    assert np.isfinite(ranking.predicted_cost[0]) and ranking.predicted_cost[0] > 0  # predicted, not NaN
    head = [i for i in ranking.order[:10] if i > 0]
    assert np.mean(given[np.array(head) - 1] == 1.0) >= 0.8  # the cheap half fills the head of the queue
    engine.save(tmp_path / "checkpoint")
    base = {"checkpoint": str(tmp_path / "checkpoint"), "report": {}}
    _, fast, *_ = work.fast_path(base, labeled, pool)
    assert np.array_equal(fast.predicted_cost[1:], given)
