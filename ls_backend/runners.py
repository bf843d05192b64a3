"""Where jobs run: an in-process worker thread (default) or RQ workers on Redis (when REDIS_URL is set).

Both runners run the same `ls_backend.jobs.run_job`. `request_job` is how the web app asks for work:
the store coalesces requests (one queued job per project at most), so a burst of webhook events while
a job runs gives exactly one more job. A job that failed because LS was unavailable is requested again
after a delay that doubles, up to AUTOAL_JOB_RETRIES times; its events stay unhandled until a later job
succeeds, so no event is lost.
"""

from __future__ import annotations

import logging
import queue
import threading
from datetime import timedelta
from typing import Protocol

from ls_backend.jobs import JobOutcome, run_job
from ls_backend.settings import Settings
from ls_backend.store import Store

logger = logging.getLogger(__name__)


class Runner(Protocol):
    name: str

    def submit(self, job_id: int) -> None: ...

    def ensure_submitted(self, job_id: int) -> None: ...

    def submit_later(self, project_id: int, delay: float) -> None: ...

    def start(self) -> None: ...

    def stop(self, timeout: float = 5.0) -> None: ...


def request_job(store: Store, runner: Runner, settings: Settings, project_id: int, trigger: str) -> dict:
    """Queue a retrain-and-rank job for the project, or join the one already queued."""
    job_id, created = store.request_job(project_id, trigger, stale_after=settings.job_timeout)
    if created:
        runner.submit(job_id)
    else:
        runner.ensure_submitted(job_id)
    return {"job": job_id, "coalesced": not created}


def retry_delay(store: Store, settings: Settings, project_id: int, outcome: JobOutcome) -> float | None:
    """Seconds until a failed job is tried again, or None when it should not be retried automatically."""
    if not outcome.retryable:
        return None
    failures = store.consecutive_failures(project_id)
    if failures > settings.job_retries:
        logger.error(
            "project %s: %s failed jobs in a row; waiting for the next event",
            project_id,
            failures,
            extra={"project": project_id},
        )
        return None
    return settings.job_retry_delay * 2 ** max(failures - 1, 0)


class ThreadRunner:
    """One background thread in the web process runs the jobs one after another."""

    name = "thread"

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._timers: list[threading.Timer] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the worker; jobs cut short by a previous stop are queued again (events are not lost)."""
        if self._thread is not None:
            return
        interrupted = self.store.interrupt_active_jobs()
        self._thread = threading.Thread(target=self._work, name="autoal-jobs", daemon=True)
        self._thread.start()
        for project_id in sorted(set(interrupted) | set(self.store.projects_with_pending_events())):
            logger.info(
                "project %s: unfinished work from before the restart; queueing a job",
                project_id,
                extra={"project": project_id},
            )
            request_job(self.store, self, self.settings, project_id, "recovery")

    def submit(self, job_id: int) -> None:
        self._queue.put(job_id)

    def ensure_submitted(self, job_id: int) -> None:
        """Queued rows of this process are always in the in-memory queue (stale ones were interrupted)."""

    def submit_later(self, project_id: int, delay: float) -> None:
        def fire() -> None:
            request_job(self.store, self, self.settings, project_id, "retry")

        timer = threading.Timer(delay, fire)
        timer.daemon = True
        with self._lock:
            self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            for timer in self._timers:
                timer.cancel()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def idle(self) -> bool:
        return self._queue.unfinished_tasks == 0

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            try:
                if job_id is None:
                    return
                outcome = run_job(self.settings, self.store, job_id)
                job = self.store.job(job_id)
                if job is not None:
                    delay = retry_delay(self.store, self.settings, int(job["project_id"]), outcome)
                    if delay is not None:
                        logger.info(
                            "project %s: retrying in %.0f s",
                            job["project_id"],
                            delay,
                            extra={"project": job["project_id"], "job": job_id},
                        )
                        self.submit_later(int(job["project_id"]), delay)
            except Exception:  # the worker thread must survive anything a job does
                logger.exception("job %s: unexpected error in the worker thread", job_id, extra={"job": job_id})
            finally:
                self._queue.task_done()


class RQRunner:
    """Jobs go to an RQ queue on REDIS_URL; `autoal worker` processes run them (MODEL_DIR must be shared)."""

    name = "rq"

    def __init__(self, settings: Settings, store: Store) -> None:
        from redis import Redis
        from rq import Queue

        self.settings = settings
        self.store = store
        self.connection = Redis.from_url(settings.redis_url)
        self.queue = Queue(settings.rq_queue, connection=self.connection)

    def start(self) -> None:
        for project_id in self.store.projects_with_pending_events():
            request_job(self.store, self, self.settings, project_id, "recovery")

    def submit(self, job_id: int) -> None:
        self.queue.enqueue(
            "ls_backend.runners.rq_run_job",
            job_id,
            job_id=_rq_id(job_id),
            job_timeout=self.settings.job_timeout,
            result_ttl=3600,
            failure_ttl=7 * 86400,
        )

    def ensure_submitted(self, job_id: int) -> None:
        """Resubmit a job queued in SQLite whose RQ job is gone or ended without running it."""
        from rq.exceptions import NoSuchJobError
        from rq.job import Job, JobStatus

        try:
            rq_job = Job.fetch(_rq_id(job_id), connection=self.connection)
            status = rq_job.get_status()
        except NoSuchJobError:
            rq_job, status = None, None
        if status in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED):
            return
        logger.warning("job %s is queued in SQLite but its RQ job is %s; submitting it again", job_id, status)
        if rq_job is not None:
            rq_job.delete()
        self.submit(job_id)

    def submit_later(self, project_id: int, delay: float) -> None:
        """Needs a worker started with the scheduler (`autoal worker` does)."""
        self.queue.enqueue_in(timedelta(seconds=delay), "ls_backend.runners.rq_request_job", project_id)

    def stop(self, timeout: float = 5.0) -> None:
        self.connection.close()


def make_runner(settings: Settings, store: Store) -> ThreadRunner | RQRunner:
    return RQRunner(settings, store) if settings.redis_url else ThreadRunner(settings, store)


def rq_run_job(job_id: int) -> str:
    """RQ entry point: run one job with settings from the worker's environment."""
    from redis.exceptions import LockError

    settings = Settings.from_env()
    store = Store(settings.database_path)
    runner = RQRunner(settings, store)
    job = store.job(job_id)
    if job is None:
        return "unknown job"
    lock = runner.connection.lock(
        f"autoal:project:{job['project_id']}",
        timeout=settings.job_timeout,
        blocking_timeout=settings.job_timeout,
    )
    try:
        with lock:  # one job per project at a time, whatever the number of workers
            outcome = run_job(settings, store, job_id)
    except LockError:
        store.finish_job(job_id, "failed", "another job of this project held its lock past AUTOAL_JOB_TIMEOUT")
        return "failed"
    delay = retry_delay(store, settings, int(job["project_id"]), outcome)
    if delay is not None:
        runner.submit_later(int(job["project_id"]), delay)
    return outcome.status


def rq_request_job(project_id: int) -> dict:
    """RQ entry point for a delayed retry."""
    settings = Settings.from_env()
    store = Store(settings.database_path)
    return request_job(store, RQRunner(settings, store), settings, project_id, "retry")


def _rq_id(job_id: int) -> str:
    return f"autoal-job-{job_id}"
