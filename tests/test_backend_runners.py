"""The runners: jobs run in a separate, lower-priority process that may die; one pending retry per project.

The job functions below run in the job process (a 'spawn' child imports this module to find them).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ls_backend.jobs import JobOutcome
from ls_backend.logs import log_context
from ls_backend.runners import RQRunner, ThreadRunner, request_job
from ls_backend.settings import Settings
from ls_backend.store import Store


def record_process(settings: Settings, store: Store, job_id: int) -> JobOutcome:
    """A job that writes down which process ran it, at what priority and torch threads, and logs a line."""
    import torch

    job = store.start_job(job_id)
    with log_context(project=job["project_id"], job=job_id):
        logging.getLogger("ls_backend.jobs").info("recorded in %s", os.getpid())
    Path(settings.model_dir, f"job-{job_id}.json").write_text(
        json.dumps({"pid": os.getpid(), "nice": os.nice(0), "threads": torch.get_num_threads()})
    )
    store.finish_job(job_id, "done")
    return JobOutcome("done", "recorded")


def crash_on_some_projects(settings: Settings, store: Store, job_id: int) -> JobOutcome:
    """Project 1: the process exits at once; 2: killed as the kernel's OOM killer does; 3: hangs."""
    job = store.start_job(job_id)
    if job["project_id"] == 1:
        os._exit(3)
    if job["project_id"] == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    if job["project_id"] == 3:
        time.sleep(600)
    return _finish(settings, store, job_id)


def _finish(settings: Settings, store: Store, job_id: int) -> JobOutcome:
    Path(settings.model_dir, f"job-{job_id}.json").write_text(json.dumps({"pid": os.getpid()}))
    store.finish_job(job_id, "done")
    return JobOutcome("done")


def fast_then_slow_full(settings: Settings, store: Store, job_id: int) -> JobOutcome:
    """Fast-lane jobs finish at once, the first asking for a full retrain; full-lane jobs take 3 s."""
    job = store.start_job(job_id)
    if job["lane"] == "full":
        time.sleep(3.0)
    Path(settings.model_dir, f"job-{job_id}.json").write_text(
        json.dumps({"pid": os.getpid(), "nice": os.nice(0), "finished": time.time()})
    )
    store.finish_job(job_id, "done")
    first = job["trigger"] == "ANNOTATION_CREATED" and job["lane"] == "fast"
    return JobOutcome("done", follow_up=("full", "growth") if first else None)


def wait_finished(store: Store, job_id: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.job(job_id)
        if job["status"] in ("done", "failed", "skipped"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {store.job(job_id)}")


def recorded(settings: Settings, job_id: int) -> dict:
    return json.loads(Path(settings.model_dir, f"job-{job_id}.json").read_text())


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(model_dir=tmp_path, job_retries=1, job_retry_delay=30.0)


@pytest.fixture
def store(settings: Settings) -> Store:
    return Store(settings.database_path)


def test_jobs_run_in_one_long_lived_child_process_at_a_lower_priority(settings, store, caplog):
    runner = ThreadRunner(settings, store, niceness=5, job_function=record_process)
    runner.start()
    try:
        with caplog.at_level(logging.INFO):
            first = request_job(store, runner, settings, 1, "ANNOTATION_CREATED")["job"]
            assert wait_finished(store, first)["status"] == "done"
            second = request_job(store, runner, settings, 2, "ANNOTATION_CREATED")["job"]
            assert wait_finished(store, second)["status"] == "done"
            time.sleep(0.2)  # the outcome message follows the row's update
        child = runner.jobs.pid
    finally:
        runner.stop()
    assert recorded(settings, first)["pid"] != os.getpid()
    assert recorded(settings, first)["pid"] == recorded(settings, second)["pid"] == child  # one process for both
    assert recorded(settings, first)["nice"] == min(19, os.nice(0) + 5)
    assert recorded(settings, first)["threads"] == 1  # the fast lane's default: one torch thread
    # the child's log lines reach this process's logging, with the job's context
    lines = [r for r in caplog.records if r.getMessage() == f"recorded in {child}"]
    assert len(lines) == 2 and {(r.project, r.job) for r in lines} == {(1, first), (2, second)}
    assert runner.jobs.pid is None  # stop() ended the child


def test_a_full_retrain_runs_in_its_own_lane_and_never_holds_up_the_fast_path(settings, store):
    runner = ThreadRunner(settings, store, niceness=2, job_function=fast_then_slow_full)
    runner.start()
    try:
        first = request_job(store, runner, settings, 1, "ANNOTATION_CREATED")["job"]
        assert wait_finished(store, first)["status"] == "done"
        deadline = time.monotonic() + 30
        while not [job for job in store.recent_jobs(1) if job["lane"] == "full"] and time.monotonic() < deadline:
            time.sleep(0.02)
        (full,) = [job["id"] for job in store.recent_jobs(1) if job["lane"] == "full"]  # the follow-up
        while store.job(full)["status"] != "running" and time.monotonic() < deadline:
            time.sleep(0.02)
        later = request_job(store, runner, settings, 1, "label during the full retrain")["job"]
        assert store.job(later)["lane"] == "fast"
        assert wait_finished(store, later)["status"] == "done"
        assert store.job(full)["status"] == "running"  # the fast job did not wait for it
        assert wait_finished(store, full)["status"] == "done"
    finally:
        runner.stop()
    assert recorded(settings, later)["finished"] < recorded(settings, full)["finished"]
    assert recorded(settings, later)["pid"] != recorded(settings, full)["pid"]  # one job process per lane
    assert recorded(settings, full)["nice"] == min(19, os.nice(0) + 2 + 5)  # the full lane yields


def test_the_job_process_takes_its_priority_and_threads_from_the_settings(tmp_path):
    settings = Settings(model_dir=tmp_path, job_niceness=7, job_threads=2)
    store = Store(settings.database_path)
    jobs = ThreadRunner(settings, store).jobs
    assert (jobs.niceness, jobs.threads) == (7, 2)
    jobs = ThreadRunner(settings, store, niceness=0, threads=1).jobs
    assert (jobs.niceness, jobs.threads) == (0, 1)
    assert jobs.pid is None  # nothing started before the first job
    lanes = ThreadRunner(Settings(model_dir=tmp_path), store).lanes  # unset: a thread for the fast lane, the
    assert lanes["fast"].jobs.threads == 1  # other cores for the full lane (never oversubscribed)
    assert lanes["full"].jobs.threads == max(1, os.cpu_count() - 1) and lanes["full"].jobs.niceness == 15


@pytest.mark.parametrize(
    ("project_id", "message"),
    [(1, "the job process exited with code 3"), (2, "the job process was killed by SIGKILL (out of memory?)")],
)
def test_a_dead_job_process_fails_its_job_and_a_new_one_runs_the_next(settings, store, project_id, message):
    runner = ThreadRunner(settings, store, job_function=crash_on_some_projects)
    runner.start()
    try:
        crashed = request_job(store, runner, settings, project_id, "ANNOTATION_CREATED")["job"]
        job = wait_finished(store, crashed)
        assert job["status"] == "failed" and job["error"] == message
        assert runner.lanes["fast"].thread.is_alive()
        after = request_job(store, runner, settings, 4, "ANNOTATION_CREATED")["job"]
        finished = wait_finished(store, after)
        assert finished["status"] == "done", finished["error"]
        assert recorded(settings, after)["pid"] != os.getpid()
    finally:
        runner.stop()
    assert runner.pending_retries() == []  # a crash is not retried by itself; the next event runs a job


def test_a_job_past_the_timeout_is_stopped_and_failed(tmp_path):
    # long enough for a job process to start and finish on a loaded machine (the one after the hung job
    # failed "past the timeout" at 2 s while two benchmarks ran), short enough for the hung one to hit it
    settings = Settings(model_dir=tmp_path, job_timeout=8)
    store = Store(settings.database_path)
    runner = ThreadRunner(settings, store, job_function=crash_on_some_projects)
    runner.start()
    try:
        hung = request_job(store, runner, settings, 3, "ANNOTATION_CREATED")["job"]
        job = wait_finished(store, hung, timeout=30)
        assert job["status"] == "failed" and "ran past AUTOAL_JOB_TIMEOUT (8 s)" in job["error"]
        after = request_job(store, runner, settings, 4, "ANNOTATION_CREATED")["job"]
        finished = wait_finished(store, after)
        assert finished["status"] == "done", finished["error"]
    finally:
        runner.stop()


def test_stop_interrupts_a_running_job(settings, store):
    runner = ThreadRunner(settings, store, job_function=crash_on_some_projects)
    runner.start()
    hung = request_job(store, runner, settings, 3, "ANNOTATION_CREATED")["job"]
    deadline = time.monotonic() + 60
    while store.job(hung)["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    runner.stop()
    job = store.job(hung)
    assert job["status"] == "failed" and job["error"] == "interrupted: the server stopped"
    assert runner.pending_retries() == []


def finished_job(store: Store, project_id: int, status: str) -> int:
    job_id, _ = store.request_job(project_id, "ANNOTATION_CREATED", stale_after=60)
    store.start_job(job_id)
    store.finish_job(job_id, status, "Label Studio did not answer" if status == "failed" else None)
    return job_id


def test_thread_runner_keeps_one_pending_retry_per_project(settings, store):
    finished_job(store, 1, "failed")
    finished_job(store, 2, "failed")
    runner = ThreadRunner(settings, store)  # not started: the queue only collects what the timers request
    try:
        runner.submit_later(1, 30)
        runner.submit_later(1, 60)  # a second failure's retry while the first is pending: dropped
        runner.submit_later(2, 30)
        assert runner.pending_retries() == [1, 2]
        assert len(runner._timers) == 2
        first_timer = runner._timers[1][1]
        runner.submit_later(1, 0.05)  # earlier than the pending one: replaces it
        first_timer.join(5)  # a cancelled timer's thread ends a moment after cancel()
        assert runner._timers[1][1] is not first_timer and not first_timer.is_alive()
        deadline = time.monotonic() + 10
        while runner.pending_retries() != [2] and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        assert runner.pending_retries() == [2]  # fired
        assert runner.lanes["fast"].queue.qsize() == 1  # exactly one job requested
        assert store.recent_jobs(1)[0]["trigger"] == "retry"
        runner.submit_later(1, 30)  # after it fired, the next failure may schedule one again
        assert runner.pending_retries() == [1, 2]
    finally:
        runner.stop()
    assert runner.pending_retries() == []


def test_a_retry_after_a_later_success_runs_no_job(settings, store):
    failed = finished_job(store, 1, "failed")
    runner = ThreadRunner(settings, store)
    try:
        runner.submit_later(1, 0.05)
        finished_job(store, 1, "done")  # e.g. the next annotation's job, before the retry fires
        deadline = time.monotonic() + 10
        while runner.pending_retries() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        assert runner.pending_retries() == [] and runner.lanes["fast"].queue.qsize() == 0
        assert all(job["trigger"] != "retry" for job in store.recent_jobs(1)) and store.job(failed)
    finally:
        runner.stop()


# -- RQ ----------------------------------------------------------------------------------------------------


@pytest.fixture
def redis_url(tmp_path):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def test_rq_runner_keeps_one_pending_retry_per_project(tmp_path, redis_url):
    from rq.job import Job
    from rq.registry import ScheduledJobRegistry

    settings = Settings(model_dir=tmp_path, redis_url=redis_url)
    store = Store(settings.database_path)
    runner = RQRunner(settings, store)
    try:
        registry = ScheduledJobRegistry(queue=runner.queue)
        runner.submit_later(5, 60)
        runner.submit_later(5, 120)  # a second failure while the first retry is pending
        runner.submit_later(6, 60)
        assert sorted(registry.get_job_ids()) == ["autoal-retry-5", "autoal-retry-6"]
        assert Job.fetch("autoal-retry-5", connection=runner.connection).args == (5,)
        Job.fetch("autoal-retry-5", connection=runner.connection).delete()  # as after it ran (result_ttl=0)
        runner.submit_later(5, 60)
        assert sorted(registry.get_job_ids()) == ["autoal-retry-5", "autoal-retry-6"]
    finally:
        runner.stop()
