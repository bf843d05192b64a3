"""The same job on the RQ runner: backend with REDIS_URL, an `autoal worker` process, a real redis-server."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from .conftest import (
    REPO,
    annotate,
    connect_backend,
    create_project,
    list_tasks,
    start_backend,
    stop_process,
    true_label,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_rq_worker_retrains_and_ranks(label_studio, digit_images, redis_url, tmp_path):
    ls = label_studio
    project_id = create_project(ls, "AutoAL digits on RQ", digit_images[:100])
    backend = start_backend(ls, tmp_path / "models", REDIS_URL=redis_url)
    worker = subprocess.Popen(
        [sys.executable, "-m", "ls_backend.cli", "worker"],
        env=backend.env,
        cwd=REPO,
        stdout=open(tmp_path / "worker.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        assert httpx.get(backend.url + "/health", auth=backend.auth).json()["runner"] == "rq"
        connect_backend(ls, project_id, backend)
        tasks = list_tasks(ls, project_id)
        labeled = []
        for task in tasks:
            if len(labeled) < 20 and true_label(task) in "0123":
                annotate(ls, task, lead_time=4.0)
                labeled.append(task["id"])
        job = backend.wait_for_job(project_id, timeout=240)
        wait_for(lambda: backend.settled(project_id), 240, "the RQ jobs to finish")
        assert worker.poll() is None  # the worker ran the job and is still serving

        store = backend.store
        version = store.current_version(project_id)
        assert store.model(project_id, version)["n_labels"] == 20
        assert job["trigger"] in ("ANNOTATION_CREATED", "TASKS_CREATED")
        tasks = list_tasks(ls, project_id)
        pool = [task for task in tasks if not task["annotations"]]
        assert len(pool) == 80
        assert all(
            any(p["model_version"] == version and p["score"] is not None for p in task["predictions"]) for task in pool
        )
        first = store.ranking(project_id, limit=1)[0]["task_id"]
        assert ls.api("GET", f"/api/projects/{project_id}/next/").json()["id"] == first
    finally:
        stop_process(worker)
        stop_process(backend.process)


def test_a_job_lost_from_redis_is_submitted_again(redis_url, tmp_path):
    """SQLite says queued but Redis lost the RQ job (e.g. a Redis restart): the next request resubmits it."""
    from rq.job import Job

    from ls_backend.runners import RQRunner, request_job
    from ls_backend.settings import Settings
    from ls_backend.store import Store

    settings = Settings(model_dir=tmp_path, redis_url=redis_url)
    store = Store(settings.database_path)
    runner = RQRunner(settings, store)
    first = request_job(store, runner, settings, 7, "ANNOTATION_CREATED")
    assert Job.exists(f"autoal-job-{first['job']}", connection=runner.connection)
    Job.fetch(f"autoal-job-{first['job']}", connection=runner.connection).delete()
    again = request_job(store, runner, settings, 7, "ANNOTATION_CREATED")
    assert again == {"job": first["job"], "coalesced": True}
    assert Job.fetch(f"autoal-job-{first['job']}", connection=runner.connection).get_status() == "queued"
    assert len(runner.queue) == 1
