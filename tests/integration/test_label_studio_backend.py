"""The backend against a real Label Studio 1.23.2: connect, annotate, retrain, rank, queue order, events.

One project of 300 digit images and one backend (`autoal serve`, in-process job runner) are shared by the
tests of this module; the tests run in file order and each states what it adds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from autoal_engine.engine import Engine
from ls_backend.jobs import run_job
from ls_backend.settings import Settings
from ls_backend.store import Store

from .conftest import (
    CLASSES,
    LABEL_CONFIG,
    annotate,
    connect_backend,
    create_project,
    free_port,
    list_tasks,
    start_backend,
    stop_process,
    true_label,
    wait_for,
)

pytestmark = pytest.mark.integration

FIRST_LABELS = 40


@pytest.fixture(scope="module")
def setup(label_studio, digit_images, tmp_path_factory):
    """A project with 300 uploaded digits, the backend connected, 40 annotations, the first retrain done."""
    ls = label_studio
    project_id = create_project(ls, "AutoAL digits", digit_images)
    backend = start_backend(ls, tmp_path_factory.mktemp("backend"))
    try:  # a setup that fails half-way stops the backend too
        ml_id = connect_backend(ls, project_id, backend)
        wait_for(lambda: webhook_authorization(ls, project_id), 60, "the webhook to carry basic auth")

        tasks = list_tasks(ls, project_id)
        by_class: dict[str, list] = {c: [] for c in CLASSES}
        for task in tasks:
            by_class[true_label(task)].append(task)
        chosen = [by_class[c][i] for i in range(FIRST_LABELS // len(CLASSES)) for c in CLASSES]
        annotation_ids = {}
        for task in chosen:
            label = true_label(task)
            annotation_ids[task["id"]] = annotate(ls, task, lead_time=3.0 + int(label))  # some digits "cost" more
        wait_for(
            lambda: backend.settled(project_id) and backend.store.pending_events(project_id) == 0,
            300,
            "the retrains triggered by the first annotations",
        )
        yield {"ls": ls, "project": project_id, "backend": backend, "ml_id": ml_id, "annotations": annotation_ids}
    finally:
        stop_process(backend.process)


def webhook_authorization(ls, project_id: int) -> str | None:
    for webhook in ls.sdk.webhooks.list(project=str(project_id)):
        if webhook.url.endswith("/webhook") and (webhook.headers or {}).get("Authorization"):
            return webhook.headers["Authorization"]
    return None


def unlabeled(tasks):
    return [task for task in tasks if not task["annotations"]]


def current_predictions(task, version):
    return [p for p in task["predictions"] if p["model_version"] == version]


def test_connect_patches_basic_auth_into_the_auto_created_webhook(setup):
    import base64

    expected = "Basic " + base64.b64encode(b"autoal:integration-secret").decode()
    assert webhook_authorization(setup["ls"], setup["project"]) == expected
    events = setup["backend"].store.event_counts()
    assert events["ANNOTATION_CREATED"] == FIRST_LABELS  # every annotation event got through (no 401)


def test_retrain_ran_and_every_unlabeled_task_has_a_scored_prediction_of_the_new_version(setup):
    ls, project_id, store = setup["ls"], setup["project"], setup["backend"].store
    version = store.current_version(project_id)
    assert version and version.startswith("autoal-v")
    model = store.model(project_id, version)
    assert model["n_labels"] == FIRST_LABELS
    assert model["n_pool"] == 300 - FIRST_LABELS
    assert 0.0 <= model["holdout_accuracy"] <= 1.0
    assert set(model["strategy_weights"]) >= {"entropy", "margin", "badge"}
    assert model["cost_report"] is not None

    project = ls.sdk.projects.get(id=project_id)
    assert project.model_version == version  # set after the import, so LS shows the scores
    assert project.sampling == "Uncertainty sampling"
    tasks = list_tasks(ls, project_id)
    pool = unlabeled(tasks)
    assert len(pool) == 300 - FIRST_LABELS
    for task in pool:
        predictions = current_predictions(task, version)
        assert len(predictions) == 1, task["id"]
        assert predictions[0]["score"] is not None and 0.0 <= predictions[0]["score"] <= 1.0
        label = predictions[0]["result"][0]["value"]["choices"][0]
        assert label in CLASSES
        assert task["predictions_score"] == pytest.approx(predictions[0]["score"])
    versions = ls.api("GET", f"/api/projects/{project_id}/model-versions/").json()
    assert versions[version] == len(pool)
    assert len([v for v in versions if v.startswith("autoal-v")]) <= 3  # old versions are deleted


def test_next_task_is_the_one_the_backend_ranked_first(setup):
    ls, project_id, store = setup["ls"], setup["project"], setup["backend"].store
    first = store.ranking(project_id, limit=1)[0]
    assert first["rank"] == 1 and first["score"] == pytest.approx(0.0)
    response = ls.api("GET", f"/api/projects/{project_id}/next/").json()
    assert response["id"] == first["task_id"]
    assert response["queue"] == "Active learning or random queue"  # uncertainty sampling served it

    views = [v for v in ls.sdk.views.list(project=project_id) if (v.data or {}).get("title") == "AutoAL priority"]
    assert len(views) == 1
    ordered = ls.api("GET", f"/api/tasks/?view={views[0].id}&project={project_id}&page_size=5").json()["tasks"]
    assert ordered[0]["id"] == first["task_id"]  # "Label Tasks As Displayed" starts at the same task
    assert [t["predictions_score"] for t in ordered] == sorted(t["predictions_score"] for t in ordered)

    explained = httpx.get(
        f"{setup['backend'].url}/explain/{project_id}/{first['task_id']}", auth=setup["backend"].auth
    ).json()
    assert explained["model_version"] == store.current_version(project_id)
    assert explained["predicted_cost"] > 0
    assert abs(sum(explained["strategy_weights"].values()) - 1.0) < 1e-3


def test_label_studio_asks_predict_for_tasks_the_backend_has_not_ranked(setup):
    """Retrieve Predictions on labeled tasks: LS calls /predict, the current model scores them."""
    ls, project_id, store = setup["ls"], setup["project"], setup["backend"].store
    version = store.current_version(project_id)
    labeled_ids = list(setup["annotations"])[:5]
    response = ls.api(
        "POST",
        f"/api/dm/actions?id=retrieve_tasks_predictions&project={project_id}",
        json={"selectedItems": {"all": False, "included": labeled_ids}},
    )
    assert response.status_code == 200, response.text
    tasks = {task["id"]: task for task in list_tasks(ls, project_id)}
    for task_id in labeled_ids:
        predictions = current_predictions(tasks[task_id], version)
        assert len(predictions) == 1 and predictions[0]["score"] is not None


def test_webhook_answers_in_under_a_second_while_a_retrain_runs(setup):
    ls, project_id, backend = setup["ls"], setup["project"], setup["backend"]
    store = backend.store
    last_job = store.recent_jobs(project_id, limit=1)[0]["id"]
    started = time.perf_counter()
    response = ls.api("POST", f"/api/ml/{setup['ml_id']}/train")  # LS posts START_TRAINING and waits for us
    assert response.status_code == 200
    assert time.perf_counter() - started < 1.0
    running = wait_for(
        lambda: next(
            (j for j in store.recent_jobs(project_id) if j["status"] == "running" and j["id"] > last_job), None
        ),
        30,
        "the START_TRAINING job to run",
    )

    task_id, annotation_id = next(iter(setup["annotations"].items()))  # task id -> its annotation's id
    tasks = {task["id"]: task for task in list_tasks(ls, project_id)}
    event = {
        "action": "ANNOTATION_UPDATED",
        "annotation": {"id": annotation_id, "task": task_id, "result": [], "was_cancelled": False, "lead_time": 4.0},
        "task": {"id": task_id, "data": tasks[task_id]["data"]},
        "project": {"id": project_id, "label_config": LABEL_CONFIG},
    }
    latencies = []
    for _ in range(20):
        sent = time.perf_counter()
        answer = backend.post("/webhook", event)
        latencies.append(time.perf_counter() - sent)
        assert answer.status_code == 200
    assert store.job(running["id"])["status"] == "running", "the retrain ended before the burst; make it longer"
    assert max(latencies) < 1.0, latencies
    queued = [j for j in store.recent_jobs(project_id) if j["status"] == "queued"]
    assert len(queued) == 1  # 20 events during the run coalesced into one more job
    backend.wait_for_job(project_id, after_job=queued[0]["id"] - 1)


def test_annotation_deletion_is_handled(setup):
    ls, project_id, backend = setup["ls"], setup["project"], setup["backend"]
    store = backend.store
    wait_for(lambda: backend.settled(project_id), 120, "earlier jobs")
    before = store.model(project_id, store.current_version(project_id))
    task_id, annotation_id = next(iter(setup["annotations"].items()))
    last_job = store.recent_jobs(project_id, limit=1)[0]["id"]
    assert ls.api("DELETE", f"/api/annotations/{annotation_id}/").status_code == 204
    job = backend.wait_for_job(project_id, after_job=last_job)
    assert job["trigger"] == "ANNOTATIONS_DELETED"
    deleted = [e for e in store.recent_events(project_id) if e["action"] == "ANNOTATIONS_DELETED"]
    assert deleted[0]["task_ids"] == [task_id]  # mapped from the id-only payload
    assert deleted[0]["handled_by"] == job["id"]
    after = store.model(project_id, store.current_version(project_id))
    assert after["n_labels"] == before["n_labels"] - 1
    assert after["n_pool"] == before["n_pool"] + 1
    assert store.explain(project_id, task_id)["model_version"] == after["model_version"]  # back in the pool
    setup["annotations"].pop(task_id)


def test_label_config_change_is_handled(setup):
    ls, project_id, backend = setup["ls"], setup["project"], setup["backend"]
    store = backend.store
    wait_for(lambda: backend.settled(project_id), 120, "earlier jobs")
    last_job = store.recent_jobs(project_id, limit=1)[0]["id"]
    new_config = LABEL_CONFIG.replace("</Choices>", '<Choice value="not a digit"/></Choices>')
    ls.sdk.projects.update(id=project_id, label_config=new_config)
    job = backend.wait_for_job(project_id, after_job=last_job)
    assert job["trigger"] == "label config changed"
    assert store.project(project_id)["interface"]["classes"] == [*CLASSES, "not a digit"]
    assert store.model(project_id, store.current_version(project_id))["classes"][-1] == "not a digit"


def test_new_tasks_trigger_a_rerank_that_includes_them(setup, digit_images):
    ls, project_id, backend = setup["ls"], setup["project"], setup["backend"]
    store = backend.store
    wait_for(lambda: backend.settled(project_id), 120, "earlier jobs")
    last_job = store.recent_jobs(project_id, limit=1)[0]["id"]
    known = {task["id"] for task in list_tasks(ls, project_id)}
    files = [(f"file{i}", (f"new{i}_{p.name}", p.read_bytes(), "image/png")) for i, p in enumerate(digit_images[:3])]
    assert ls.api("POST", f"/api/projects/{project_id}/import", files=files).status_code == 201
    job = backend.wait_for_job(project_id, after_job=last_job)
    assert job["trigger"] == "TASKS_CREATED"
    version = store.current_version(project_id)
    new_tasks = [task for task in list_tasks(ls, project_id) if task["id"] not in known]
    assert len(new_tasks) == 3
    for task in new_tasks:
        assert store.explain(project_id, task["id"])["model_version"] == version
        assert len(current_predictions(task, version)) == 1


def test_an_unsupported_label_config_is_a_clear_error_in_label_studio(setup):
    ls, backend = setup["ls"], setup["backend"]
    text_config = (
        '<View><Text name="text" value="$text"/><Choices name="c" toName="text">'
        '<Choice value="a"/><Choice value="b"/></Choices></View>'
    )
    project = ls.sdk.projects.create(title="Text project", label_config=text_config)
    response = ls.api(
        "POST",
        "/api/ml/",
        json={
            "url": backend.url,
            "project": project.id,
            "title": "AutoAL",
            "auth_method": "BASIC_AUTH",
            "basic_auth_user": "autoal",
            "basic_auth_pass": "integration-secret",
        },
    )
    shown = response.text if response.status_code >= 400 else response.json()["error_message"]
    assert "Image" in (shown or ""), response.text
    assert "Internal Server Error" not in shown


def test_bad_payloads_get_4xx_unknown_actions_are_ignored_and_no_credentials_get_401(setup):
    backend = setup["backend"]
    assert backend.post("/webhook", b"{oops").status_code == 400
    unknown = backend.post("/webhook", {"action": "NOT_AN_ACTION", "project": {"id": 1}})
    assert unknown.status_code == 200 and unknown.json()["status"] == "ignored"  # a newer LS's action
    assert backend.post("/webhook", {"action": "ANNOTATION_CREATED", "project": {"id": 1}}).status_code == 400
    assert backend.post("/predict", {"tasks": "all"}).status_code == 400
    assert backend.post("/setup", {"project": "1.2", "schema": "<View/>"}).status_code == 422
    assert httpx.post(backend.url + "/webhook", json={"action": "START_TRAINING"}).status_code == 401


def test_a_crash_during_training_leaves_the_previous_model_serving(setup):
    ls, project_id, backend = setup["ls"], setup["project"], setup["backend"]
    store = backend.store
    wait_for(lambda: backend.settled(project_id), 120, "earlier jobs")
    version = store.current_version(project_id)
    job_id, created = store.request_job(project_id, "crash test", stale_after=3600)
    assert created
    slow = dict(backend.env, AUTOAL_ENGINE_CONFIG='{"model": {"image_size": 16, "train_steps": 5000}}')
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from ls_backend.settings import Settings; from ls_backend.store import "
            "Store; from ls_backend.jobs import run_job; s = Settings.from_env(); "
            "run_job(s, Store(s.database_path), int(sys.argv[1]))",
            str(job_id),
        ],
        env=slow,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: (store.job(job_id) or {}).get("stage") == "training", 120, "the job to start training")
        time.sleep(1.0)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        stop_process(worker)
    assert store.job(job_id)["status"] == "running"  # killed mid-training
    assert store.current_version(project_id) == version
    assert ls.sdk.projects.get(id=project_id).model_version == version
    Engine.load(store.model(project_id, version)["checkpoint"])  # the previous model still loads
    task_id = store.ranking(project_id, limit=1)[0]["task_id"]
    answer = backend.post("/predict", {"tasks": [{"id": task_id, "data": {}}], "project": f"{project_id}.1"}).json()
    assert answer["results"][0]["model_version"] == version
    # after AUTOAL_JOB_TIMEOUT without a heartbeat a running job counts as dead (0 s here, not to wait an hour)
    next_job, _ = store.request_job(project_id, "after the crash", stale_after=0)
    assert store.job(job_id)["status"] == "failed"
    outcome = run_job(Settings.from_env(backend.env), store, next_job)
    assert outcome.status == "done", outcome.message
    assert store.current_version(project_id) != version


def test_label_studio_down_keeps_the_event_and_the_next_job_completes_it(setup):
    project_id, backend = setup["project"], setup["backend"]
    store: Store = backend.store
    wait_for(lambda: backend.settled(project_id), 120, "earlier jobs")
    down = Settings.from_env(
        dict(backend.env, LABEL_STUDIO_URL=f"http://127.0.0.1:{free_port()}", AUTOAL_LS_RETRIES="2")
    )
    store.record_event(project_id, "ANNOTATION_CREATED", [1], [1])
    job_id, _ = store.request_job(project_id, "ANNOTATION_CREATED", stale_after=3600)
    started = time.perf_counter()
    outcome = run_job(down, store, job_id)
    assert outcome.status == "failed" and outcome.retryable
    assert time.perf_counter() - started >= 0.2 + 0.4  # two retries with backoff before giving up
    assert store.pending_events(project_id) == 1
    assert store.project_status(project_id)["last_error"].startswith("Label Studio did not")
    next_job, _ = store.request_job(project_id, "retry", stale_after=3600)
    outcome = run_job(Settings.from_env(backend.env), store, next_job)
    assert outcome.status == "done", outcome.message
    assert store.pending_events(project_id) == 0
