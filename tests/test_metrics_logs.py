"""/metrics parsed with prometheus_client's own parser after real webhook posts and jobs; structured logs.

Jobs run for real against a Label Studio address where nothing listens (so they fail the way they do
when LS is down); a successful job's numbers are recorded through the store's own job functions.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import time
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ls_backend.app import create_app
from ls_backend.jobs import run_job
from ls_backend.logs import log_context, setup_logging
from ls_backend.runners import ThreadRunner, request_job
from ls_backend.settings import Settings
from ls_backend.store import Store


def parse_logfmt(line: str) -> dict[str, str]:
    """The fields of one ``key=value`` line; quoted values are JSON strings."""
    fields: dict[str, str] = {}
    decoder = json.JSONDecoder()
    position = 0
    while position < len(line):
        if line[position] == " ":
            position += 1
            continue
        equals = line.index("=", position)
        key = line[position:equals]
        if line.startswith('"', equals + 1):
            value, position = decoder.raw_decode(line, equals + 1)
        else:
            end = line.find(" ", equals + 1)
            position = len(line) if end < 0 else end
            value = line[equals + 1 : position]
        fields[key] = value
    return fields


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(
        model_dir=tmp_path,
        label_studio_url=f"http://127.0.0.1:{closed_port()}",
        label_studio_api_key="legacytoken123",
        ls_retries=0,
        ls_backoff=0.01,
        job_retries=0,
        patch_webhook_auth=False,
    )


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Everything logged during the test, through the real setup (restored afterwards)."""
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    handler = setup_logging("INFO", stream)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, str]]:
    return [parse_logfmt(line) for line in stream.getvalue().splitlines()]


def annotation_event(annotation_id: int, task_id: int, project_id: int = 1) -> dict:
    return {
        "action": "ANNOTATION_CREATED",
        "annotation": {"id": annotation_id, "task": task_id, "lead_time": 4.0, "result": []},
        "task": {"id": task_id, "data": {"image": f"/data/upload/1/{task_id}.png"}},
        "project": {"id": project_id},
    }


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value; histogram bounds as numbers ("10" and "10.0" are one bound)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = {key: float(value) if key == "le" else value for key, value in sample.labels.items()}
            found[(sample.name, tuple(sorted(labels.items())))] = sample.value
    return found


def wait_until_finished(store: Store, job_id: int, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.job(job_id)
        if job and job["status"] in ("done", "failed", "skipped"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def test_metrics_after_webhook_posts_and_jobs(settings):
    app = create_app(settings, start_runner=False)
    client = app.test_client()
    store = app.extensions["autoal"].store

    queued = [client.post("/webhook", json=annotation_event(100 + i, 10 + i)).json for i in range(3)]
    assert [answer["coalesced"] for answer in queued] == [False, True, True]
    done = queued[0]["job"]  # record a successful job the way the job function does
    store.start_job(done)
    store.update_job(done, stage="training", progress=0.3, n_labels=3, train_seconds=12.5)
    store.update_job(done, stage="ranking", progress=0.7, rank_seconds=3.0, path="fast", cache_hits=40,
                     cache_misses=2)
    store.update_job(done, stage="saving", progress=0.98, latency_seconds=4.0, n_pushed=4)
    rows = [
        {"task_id": 20 + i, "rank": i + 1, "priority": 1 - i / 4, "score": i / 4, "predicted_label": "a"}
        for i in range(4)
    ]
    store.commit_model(1, {"model_version": "autoal-v1", "checkpoint": "/unused", "n_labels": 3}, rows)
    store.finish_job(done, "done")

    failed = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}}).json["job"]
    assert run_job(settings, store, failed).status == "failed"  # LS is not there
    client.post("/webhook", json={"action": "TASKS_DELETED", "tasks": [{"id": 23}], "project": {"id": 1}})
    client.post("/webhook", json=annotation_event(200, 30))  # queued, not run: the queue has an age
    assert client.post("/webhook", json={"action": "NOPE", "project": {"id": 1}}).json["status"] == "ignored"

    text = client.get("/metrics").get_data(as_text=True)
    metrics = samples(text)
    assert metrics[("autoal_jobs_total", (("status", "done"),))] == 1
    assert metrics[("autoal_jobs_total", (("status", "failed"),))] == 1
    assert metrics[("autoal_jobs_total", (("status", "queued"),))] == 1
    assert metrics[("autoal_webhook_events_total", (("action", "ANNOTATION_CREATED"),))] == 4
    assert metrics[("autoal_webhook_events_total", (("action", "START_TRAINING"),))] == 1
    assert metrics[("autoal_webhook_events_total", (("action", "TASKS_DELETED"),))] == 1
    assert ("autoal_webhook_events_total", (("action", "NOPE"),)) not in metrics  # ignored, not counted
    assert metrics[("autoal_retrain_seconds_count", ())] == 1
    assert metrics[("autoal_retrain_seconds_sum", ())] == 12.5
    assert metrics[("autoal_retrain_seconds_bucket", (("le", 10.0),))] == 0
    assert metrics[("autoal_retrain_seconds_bucket", (("le", 20.0),))] == 1
    assert metrics[("autoal_retrain_seconds_bucket", (("le", float("inf")),))] == 1
    assert metrics[("autoal_rank_seconds_count", ())] == 1 and metrics[("autoal_rank_seconds_sum", ())] == 3.0
    assert metrics[("autoal_pool_size", (("project", "1"),))] == 4  # a deletion counts once a job confirms it
    assert 0 <= metrics[("autoal_queue_age_seconds", (("project", "1"),))] < 60
    assert metrics[("autoal_fast_path_latency_seconds_count", ())] == 1
    assert metrics[("autoal_fast_path_latency_seconds_bucket", (("le", 5.0),))] == 1
    assert metrics[("autoal_fast_path_latency_seconds_bucket", (("le", 2.0),))] == 0
    assert metrics[("autoal_full_path_latency_seconds_count", ())] == 0
    assert metrics[("autoal_jobs_by_path_total", (("path", "fast"),))] == 1
    assert metrics[("autoal_embedding_cache_lookups_total", (("outcome", "hit"),))] == 40
    assert metrics[("autoal_embedding_cache_lookups_total", (("outcome", "miss"),))] == 2
    types = {family.name: family.type for family in text_string_to_metric_families(text)}
    assert types["autoal_retrain_seconds"] == types["autoal_rank_seconds"] == "histogram"
    assert types["autoal_pool_size"] == types["autoal_queue_age_seconds"] == "gauge"


def test_every_line_of_a_job_names_its_project_and_job(settings, logs):
    store = Store(settings.database_path)
    runner = ThreadRunner(settings, store)
    runner.start()
    try:
        job_id = request_job(store, runner, settings, 7, "ANNOTATION_CREATED")["job"]
        job = wait_until_finished(store, job_id)
    finally:
        runner.stop()
    assert job["status"] == "failed"
    job_lines = [line for line in lines(logs) if line["logger"] == "ls_backend.jobs"]
    assert len(job_lines) >= 3
    assert all(line["project"] == "7" and line["job"] == str(job_id) for line in job_lines), job_lines
    progress = [line for line in job_lines if line["msg"] == "job progress"]
    assert progress[0]["stage"] == "pulling tasks" and progress[0]["progress"] == "0.02"
    failure = [line for line in job_lines if line["level"] == "warning"]
    assert failure and "Label Studio" in failure[0]["msg"]


def test_context_fields_reach_every_library_and_exceptions_stay_on_one_line(logs):
    with log_context(project=3, job=9):
        logging.getLogger("autoal_engine.engine").info("fitted %s on %d labels", "v", 12)
        try:
            raise ValueError("bad input\nsecond line")
        except ValueError:
            logging.getLogger("ls_backend.jobs").exception("job crashed")
    logging.getLogger("ls_backend.jobs").info("outside", extra={"stage": "two words", "progress": 0.5})
    raw = logs.getvalue().splitlines()
    assert len(raw) == 3  # the traceback did not add lines
    engine, crash, outside = (parse_logfmt(line) for line in raw)
    assert engine["project"] == "3" and engine["job"] == "9" and engine["msg"] == "fitted v on 12 labels"
    assert crash["level"] == "error" and "ValueError: bad input\nsecond line" in crash["exc"]
    assert "project" not in outside and outside["stage"] == "two words" and outside["progress"] == "0.5"


def test_webhook_requests_are_logged_with_action_project_and_job(settings, logs):
    client = create_app(settings, start_runner=False).test_client()
    job_id = client.post("/webhook", json=annotation_event(1, 2, project_id=4)).json["job"]
    client.post("/webhook", data="not json", content_type="application/json")
    client.get("/health")
    requests = [line for line in lines(logs) if line["logger"] == "ls_backend.requests"]
    accepted, rejected = requests  # /health is logged at debug level only
    assert accepted["msg"] == "webhook" and accepted["action"] == "ANNOTATION_CREATED"
    assert accepted["project"] == "4" and accepted["job"] == str(job_id) and accepted["status"] == "200"
    assert rejected["level"] == "warning" and rejected["status"] == "400" and "JSON" in rejected["error"]
