"""Two-speed retraining against a real Label Studio 1.23.2: the full path trains the backbone and pushes the
whole pool; a label after it takes the fast path (the head refitted on cached embeddings, nothing embedded
again) and pushes only the head of the queue, which LS's /next/ then serves.

One project of 200 digits and one backend with AUTOAL_PUSH_TOP=30 and AUTOAL_BACKBONE_GROWTH=1.5; after
the first 20 labels a START_TRAINING makes the backbone of those 20 (in the full lane, after a fast refit),
so the next labels (21, 22 < 1.5 x 20) are not due for a full retrain. The tests run in file order.
"""

from __future__ import annotations

import time

import pytest

from .conftest import (
    CLASSES,
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

PUSH_TOP = 30
TASKS = 200
FIRST_LABELS = 20
GROWTH = 1.5  # the backbone is trained again at 30 labels


@pytest.fixture(scope="module")
def setup(label_studio, digit_images, tmp_path_factory):
    ls = label_studio
    project_id = create_project(ls, "AutoAL two speeds", digit_images[:TASKS])
    backend = start_backend(ls, tmp_path_factory.mktemp("two-speed"), AUTOAL_PUSH_TOP=str(PUSH_TOP),
                            AUTOAL_BACKBONE_GROWTH=str(GROWTH))
    try:
        ml_id = connect_backend(ls, project_id, backend)
        tasks = list_tasks(ls, project_id)
        by_class: dict[str, list] = {c: [] for c in CLASSES}
        for task in tasks:
            by_class[true_label(task)].append(task)
        for task in [by_class[c][i] for i in range(FIRST_LABELS // len(CLASSES)) for c in CLASSES]:
            annotate(ls, task)
        wait_quiet(backend, project_id, "the jobs of the first annotations")
        before = done_jobs(backend.store, project_id)[-1]["id"]
        assert ls.api("POST", f"/api/ml/{ml_id}/train").status_code == 200

        def full_retrain() -> list[dict]:  # the full-lane job START_TRAINING asked for, once it is done
            return [job for job in done_jobs(backend.store, project_id)
                    if job["id"] > before and job["lane"] == "full" and job["trigger"] == "START_TRAINING"]

        (trained,) = wait_for(full_retrain, 300, "START_TRAINING's full retrain")
        wait_quiet(backend, project_id, "the refit on the new backbone")
        yield {"ls": ls, "project": project_id, "backend": backend, "ml_id": ml_id, "trained": trained}
    finally:
        stop_process(backend.process)


def wait_quiet(backend, project_id: int, what: str) -> None:
    """No job queued or running, and still none a moment later (a finished job's follow-up is requested by
    the runner just after it ends)."""
    for _ in range(2):
        wait_for(lambda: backend.settled(project_id) and backend.store.pending_events(project_id) == 0, 300, what)
        time.sleep(1.5)
    wait_for(lambda: backend.settled(project_id), 300, what)


def done_jobs(store, project_id):
    return [job for job in reversed(store.recent_jobs(project_id, limit=100)) if job["status"] == "done"]


def test_the_first_model_and_start_training_take_the_full_path_and_push_every_pool_task(setup):
    store, project_id = setup["backend"].store, setup["project"]
    assert done_jobs(store, project_id)[0]["path"] == "full"  # no backbone yet
    first = setup["trained"]
    assert first["lane"] == "full" and first["n_labels"] == FIRST_LABELS
    assert first["n_pushed"] == first["n_pool"] > PUSH_TOP  # the whole pool, for the Data Manager
    assert first["n_listed"] == TASKS  # the full lane lists in full
    assert first["cache_misses"] == first["n_labels"] + first["n_pool"]  # a new backbone embeds everything
    model = store.model(project_id, first["model_version"])
    assert model["path"] == "full" and model["backbone_version"]


def test_a_label_in_queue_order_takes_the_fast_path_and_embeds_nothing_again(setup):
    ls, project_id, backend = setup["ls"], setup["project"], setup["backend"]
    store = backend.store
    for label in (1, 2):
        before = done_jobs(store, project_id)[-1]["id"]
        served = ls.api("GET", f"/api/projects/{project_id}/next/").json()
        annotate(ls, served)
        job = backend.wait_for_job(project_id, after_job=before)
        assert job["status"] == "done", job
        assert job["path"] == "fast"
        assert job["cache_misses"] == 0 and job["cache_hits"] == job["n_labels"] + job["n_pool"]
        assert job["n_labels"] == FIRST_LABELS + label and job["n_pushed"] == PUSH_TOP
    # only what changed lately: not the 200 tasks (the first incremental listing relisted them all: they were
    # imported within the listing's 10 s overlap before the newest change the full listing had seen)
    assert job["n_listed"] < 40
    assert job["latency_seconds"] is not None and job["latency_seconds"] > 0
    model = store.current_model(project_id)
    full = store.latest_full_model(project_id)
    assert model["path"] == "fast" and model["backbone_version"] == full["backbone_version"]
    assert model["report"]["holdout_source"] == "head_cv"


def test_label_studio_serves_the_head_of_the_fast_ranking(setup):
    ls, project_id, store = setup["ls"], setup["project"], setup["backend"].store
    version = store.current_version(project_id)
    versions = ls.api("GET", f"/api/projects/{project_id}/model-versions/").json()
    assert versions[version] == PUSH_TOP
    full = store.latest_full_model(project_id)
    assert versions[full["model_version"]] == full["n_pool"]  # the backbone's full push is kept
    assert ls.sdk.projects.get(id=project_id).model_version == version
    first = store.ranking(project_id, limit=1)[0]
    assert ls.api("GET", f"/api/projects/{project_id}/next/").json()["id"] == first["task_id"]


def test_labels_grown_by_the_factor_refit_at_once_and_retrain_the_backbone_in_the_background(setup):
    """From 22 to 32 labels (>= 1.5 x 20): the fast lane refits and asks the full lane for a new backbone; a
    fast job then refits the labels on it."""
    ls, project_id, backend = setup["ls"], setup["project"], setup["backend"]
    store = backend.store
    old = store.latest_full_model(project_id)
    for _ in range(10):
        annotate(ls, ls.api("GET", f"/api/projects/{project_id}/next/").json())
    wait_for(lambda: store.latest_full_model(project_id)["model_version"] != old["model_version"], 300,
             "the background full retrain")
    wait_quiet(backend, project_id, "the refit on the new backbone")
    jobs = [job for job in done_jobs(store, project_id) if job["id"] > setup["trained"]["id"]]
    full = [job for job in jobs if job["lane"] == "full"]
    assert len(full) >= 1 and all(job["path"] == "full" and job["n_pushed"] == job["n_pool"] for job in full)
    assert all(job["path"] == "fast" for job in jobs if job["lane"] == "fast")
    assert jobs[-1]["lane"] == "fast" and jobs[-1]["trigger"] == "new backbone"
    current = store.current_model(project_id)
    assert current["path"] == "fast" and current["n_labels"] == FIRST_LABELS + 12
    assert current["backbone_version"] == store.latest_full_model(project_id)["backbone_version"]


def test_start_training_again_trains_a_new_backbone_and_drops_the_old_cache(setup):
    ls, project_id, backend = setup["ls"], setup["project"], setup["backend"]
    store = backend.store
    before = done_jobs(store, project_id)[-1]["id"]
    old = store.latest_full_model(project_id)
    response = ls.api("POST", f"/api/ml/{setup['ml_id']}/train")
    assert response.status_code == 200, response.text
    (job,) = wait_for(lambda: [j for j in done_jobs(store, project_id) if j["id"] > before and j["lane"] == "full"],
                      300, "the full retrain START_TRAINING asked for")
    wait_quiet(backend, project_id, "the refit on the new backbone")
    jobs = [j for j in done_jobs(store, project_id) if j["id"] > before]
    assert job["path"] == "full" and job["n_pushed"] == job["n_pool"]  # in the background: a fast refit ran first
    assert jobs[0]["path"] == "fast" and jobs[0]["lane"] == "fast"
    new = store.latest_full_model(project_id)
    assert new["backbone_version"] != old["backbone_version"]
    cache_root = backend.model_dir / "projects" / str(project_id) / "embeddings"
    assert [path.name for path in cache_root.iterdir()] == [new["backbone_version"]]  # the old cache is gone
    versions = ls.api("GET", f"/api/projects/{project_id}/model-versions/").json()
    assert old["model_version"] not in versions  # the old backbone's full push: deleted by the full lane's job
    assert versions[new["model_version"]] == new["n_pool"]


def job_processes(backend) -> dict[int, int]:
    """niceness -> pid of the backend's job processes (the full lane's runs 5 nicer than the fast lane's)."""
    import subprocess as sp

    lines = sp.run(["ps", "-o", "pid=,ni=", "--ppid", str(backend.process.pid)], capture_output=True, text=True,
                   check=True).stdout.split("\n")
    return {int(ni): int(pid) for pid, ni in (line.split() for line in lines if line.strip())}


def test_a_crash_of_the_full_retrain_leaves_the_fast_path_on_the_previous_backbone(setup):
    import os
    import signal

    ls, project_id, backend = setup["ls"], setup["project"], setup["backend"]
    store = backend.store
    wait_quiet(backend, project_id, "earlier jobs")
    old = store.latest_full_model(project_id)
    before = done_jobs(store, project_id)[-1]["id"]
    assert ls.api("POST", f"/api/ml/{setup['ml_id']}/train").status_code == 200
    full = wait_for(lambda: next((j for j in store.recent_jobs(project_id) if j["id"] > before and j["lane"] == "full"
                                  and j["status"] == "running" and j["stage"] == "training"), None),
                    300, "the full retrain to train")
    processes = job_processes(backend)
    os.kill(processes[max(processes)], signal.SIGKILL)  # the nicer one: the full lane's
    failed = wait_for(lambda: (lambda j: j if j["status"] == "failed" else None)(store.job(full["id"])), 60,
                      "the killed retrain to be marked failed")
    assert "killed by SIGKILL" in failed["error"]
    assert store.latest_full_model(project_id)["model_version"] == old["model_version"]

    wait_quiet(backend, project_id, "the fast refit of the START_TRAINING")
    last = done_jobs(store, project_id)[-1]["id"]
    annotate(ls, ls.api("GET", f"/api/projects/{project_id}/next/").json())
    job = backend.wait_for_job(project_id, after_job=last)
    assert job["path"] == "fast" and job["cache_misses"] == 0  # served on the previous backbone
    assert store.current_model(project_id)["backbone_version"] == old["backbone_version"]
    assert ls.api("GET", f"/api/projects/{project_id}/next/").json()["id"] == store.ranking(project_id, 1)[0]["task_id"]

    wait_quiet(backend, project_id, "the label's jobs")
    last = done_jobs(store, project_id)[-1]["id"]
    assert ls.api("POST", f"/api/ml/{setup['ml_id']}/train").status_code == 200  # the next full retrain completes
    wait_for(lambda: [j for j in done_jobs(store, project_id) if j["id"] > last and j["lane"] == "full"], 300,
             "the next full retrain")
    assert store.latest_full_model(project_id)["backbone_version"] != old["backbone_version"]
