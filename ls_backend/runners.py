"""Where jobs run: a child process fed by a worker thread of the web process (default), or RQ workers on Redis
(when REDIS_URL is set).

Both runners run the same `ls_backend.jobs.run_job`. `request_job` is how the web app asks for work:
the store coalesces requests (one queued job per project at most), so a burst of webhook events while
a job runs gives exactly one more job. A job that failed because LS was unavailable is requested again
after a delay that doubles, up to AUTOAL_JOB_RETRIES times (`Settings.job_retry_policy`, a
`ls_backend.retry.RetryPolicy` as for LS calls), with at most one pending retry per project;
its events stay unhandled until a later job succeeds, so no event is lost.

The thread runner does not train in the web process: training in a thread there held the GIL and both
cores, and /webhook answers (LS waits 1 s, never retries) slowed to a p99 of 0.5 s. Its thread hands each
job to one long-lived child process (`JobProcess`: started on the first job, with the 'spawn' method, at a
lower CPU priority: AUTOAL_JOB_NICENESS, and AUTOAL_JOB_THREADS threads when set), forwards the
child's log records to the web process's logging, and marks the job failed when the child dies (out of
memory, a crash) or runs past AUTOAL_JOB_TIMEOUT; the next job gets a new child.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

from ls_backend.jobs import JobOutcome, run_job
from ls_backend.logs import context_fields
from ls_backend.settings import Settings
from ls_backend.store import LANES, Store

logger = logging.getLogger(__name__)

JobFunction = Callable[[Settings, Store, int], JobOutcome]


class Runner(Protocol):
    name: str

    def submit(self, job_id: int) -> None: ...

    def ensure_submitted(self, job_id: int) -> None: ...

    def submit_later(self, project_id: int, delay: float) -> None: ...

    def start(self) -> None: ...

    def stop(self, timeout: float = 5.0) -> None: ...


def request_job(
    store: Store, runner: Runner, settings: Settings, project_id: int, trigger: str, lane: str = "fast"
) -> dict:
    """Queue a retrain-and-rank job for the project in ``lane``, or join the one already queued there.

    Inside a store transaction (a webhook's), the runner is told once it has committed: a worker that
    took the job earlier would not find its row.
    """
    job_id, created = store.request_job(project_id, trigger, stale_after=settings.job_timeout, lane=lane)
    store.after_commit(partial(runner.submit if created else runner.ensure_submitted, job_id))
    return {"job": job_id, "coalesced": not created}


def retry_delay(store: Store, settings: Settings, project_id: int, outcome: JobOutcome) -> float | None:
    """Seconds until a failed job is tried again, or None when it should not be retried automatically.

    The delay is the settings' `job_retry_policy`'s for the retry this would be (the failed jobs in a row).
    """
    if not outcome.retryable:
        return None
    policy = settings.job_retry_policy
    failures = store.consecutive_failures(project_id)
    if failures > policy.retries:
        logger.error(
            "project %s: %s failed jobs in a row; waiting for the next event",
            project_id,
            failures,
            extra={"project": project_id},
        )
        return None
    return policy.delay(failures)


def after_job(store: Store, runner: Runner, settings: Settings, project_id: int, outcome: JobOutcome) -> None:
    """What a runner does when a job ended: request its follow-up (a full retrain in the full lane, or the
    fast refit after one), or schedule the retry of a job that failed on LS."""
    if outcome.follow_up is not None:
        lane, trigger = outcome.follow_up
        logger.info("project %s: requesting a %s-lane job (%s)", project_id, lane, trigger,
                    extra={"project": project_id})
        request_job(store, runner, settings, project_id, trigger, lane=lane)
    delay = retry_delay(store, settings, project_id, outcome)
    if delay is not None:
        logger.info("project %s: retrying in %.0f s", project_id, delay, extra={"project": project_id})
        runner.submit_later(project_id, delay)


def retry_job(store: Store, runner: Runner, settings: Settings, project_id: int) -> dict:
    """The delayed retry: a job, unless a job of the project succeeded since the failure (nothing to redo)."""
    if store.consecutive_failures(project_id) == 0:
        logger.info(
            "project %s: a job succeeded since the failure; no retry needed", project_id, extra={"project": project_id}
        )
        return {"job": None, "coalesced": False, "skipped": "a later job succeeded"}
    return request_job(store, runner, settings, project_id, "retry")


FULL_LANE_EXTRA_NICENESS = 5  # the full lane's job process yields to the fast lane's


def lane_niceness(lane: str, niceness: int) -> int:
    """The nice increment of a lane's jobs: ``niceness`` (AUTOAL_JOB_NICENESS) for the fast lane, 5 more
    (at most 19) for the full lane, so a full retrain yields to the fast refits."""
    return niceness if lane == "fast" else min(19, niceness + FULL_LANE_EXTRA_NICENESS)


def lane_threads(lane: str) -> int:
    """Threads of a lane's job process when AUTOAL_JOB_THREADS is unset: 1 for the fast lane (its matrix
    products are small), the other cores for the full lane; with the web process beside them the machine
    is never oversubscribed (torch's default, a thread per core in each process, slowed a fit ten-fold
    while another CPU-bound process ran)."""
    return 1 if lane == "fast" else max(1, (os.cpu_count() or 2) - 1)


class Lane:
    """One lane of the thread runner: a queue of job ids, the thread that drains it, its `JobProcess`."""

    def __init__(self, name: str, jobs: JobProcess) -> None:
        self.name = name
        self.jobs = jobs
        self.queue: queue.Queue[int | None] = queue.Queue()
        self.thread: threading.Thread | None = None


class ThreadRunner:
    """Background threads of the web process hand the jobs to `JobProcess` children: one thread and one
    child per lane ("fast" and "full", ls_backend.jobs), so a full retrain never holds up the fast path.
    The full lane's child runs FULL_LANE_EXTRA_NICENESS lower in priority."""

    name = "thread"

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        niceness: int | None = None,
        threads: int | None = None,
        job_function: JobFunction = run_job,
    ) -> None:
        """`niceness` goes to the fast lane's `JobProcess` (the full lane's is niceness + 5, at most 19),
        `threads` to both (default: `lane_threads`); `job_function` (a module-level function) runs there."""
        self.settings = settings
        self.store = store
        niceness = settings.job_niceness if niceness is None else niceness
        threads = settings.job_threads if threads is None else threads
        self.lanes = {
            lane: Lane(lane, JobProcess(settings, store.path, threads=threads or lane_threads(lane),
                                        job_function=job_function, niceness=lane_niceness(lane, niceness)))
            for lane in LANES
        }
        self._timers: dict[int, tuple[float, threading.Timer]] = {}  # project -> (due, timer): one retry each
        self._lock = threading.Lock()
        self._stopping = False

    @property
    def jobs(self) -> JobProcess:
        """The fast lane's job process."""
        return self.lanes["fast"].jobs

    def start(self) -> None:
        """Start the workers; jobs cut short by a previous stop are queued again (events are not lost)."""
        if any(lane.thread is not None for lane in self.lanes.values()):
            return
        self._stopping = False
        interrupted = self.store.interrupt_active_jobs()
        for lane in self.lanes.values():
            lane.thread = threading.Thread(target=self._work, args=(lane,), name=f"autoal-jobs-{lane.name}",
                                           daemon=True)
            lane.thread.start()
        for project_id in sorted(set(interrupted) | set(self.store.projects_with_pending_events())):
            logger.info(
                "project %s: unfinished work from before the restart; queueing a job",
                project_id,
                extra={"project": project_id},
            )
            request_job(self.store, self, self.settings, project_id, "recovery")

    def submit(self, job_id: int) -> None:
        job = self.store.job(job_id)
        self.lanes[(job or {}).get("lane") or "fast"].queue.put(job_id)

    def ensure_submitted(self, job_id: int) -> None:
        """Queued rows of this process are always in the in-memory queue (stale ones were interrupted)."""

    def submit_later(self, project_id: int, delay: float) -> None:
        """Request a job for the project in `delay` seconds, unless an earlier retry of it is pending already."""
        due = time.monotonic() + delay
        with self._lock:
            pending = self._timers.get(project_id)
            if pending is not None and pending[0] <= due:
                logger.info(
                    "project %s: a retry is already pending; not scheduling another",
                    project_id,
                    extra={"project": project_id},
                )
                return
            if pending is not None:
                pending[1].cancel()
            timer = threading.Timer(delay, self._fire_retry, args=(project_id,))
            timer.daemon = True
            self._timers[project_id] = (due, timer)
            timer.start()

    def pending_retries(self) -> list[int]:
        """Projects with a retry timer that has not fired yet."""
        with self._lock:
            return sorted(self._timers)

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel pending retries, stop the threads and the job processes (running jobs are interrupted)."""
        with self._lock:
            for _, timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
        self._stopping = True
        for lane in self.lanes.values():
            lane.jobs.stop(timeout)
        for lane in self.lanes.values():
            if lane.thread is not None:
                lane.queue.put(None)
                lane.thread.join(timeout)
                lane.thread = None

    def idle(self) -> bool:
        return all(lane.queue.unfinished_tasks == 0 for lane in self.lanes.values())

    def _fire_retry(self, project_id: int) -> None:
        with self._lock:
            pending = self._timers.get(project_id)
            if pending is None or pending[1] is not threading.current_thread():
                return  # replaced by an earlier timer, or cancelled by stop()
            del self._timers[project_id]  # from here on a new retry may be scheduled
        if not self._stopping:
            retry_job(self.store, self, self.settings, project_id)

    def _work(self, lane: Lane) -> None:
        while True:
            job_id = lane.queue.get()
            try:
                if job_id is None:
                    return
                outcome = self._run(lane, job_id)
                job = self.store.job(job_id)
                if job is not None and not self._stopping:
                    after_job(self.store, self, self.settings, int(job["project_id"]), outcome)
            except Exception:  # the worker thread must survive anything a job does
                logger.exception("job %s: unexpected error in the worker thread", job_id, extra={"job": job_id})
            finally:
                lane.queue.task_done()

    def _run(self, lane: Lane, job_id: int) -> JobOutcome:
        """Run the job in the lane's job process; if that process died or was stopped, the job is marked failed."""
        try:
            return lane.jobs.run(job_id, timeout=self.settings.job_timeout)
        except JobProcessError as error:
            message = "interrupted: the server stopped" if self._stopping else str(error)
        job = self.store.job(job_id)
        if job is not None and job["status"] in ("queued", "running"):
            self.store.finish_job(job_id, "failed", message)
        logger.error("job %s failed: %s", job_id, message, extra={"job": job_id})
        return JobOutcome("failed", message)


class JobProcessError(RuntimeError):
    """The job process died, or was stopped, before it reported the job's outcome."""


class JobProcess:
    """One long-lived child process that runs jobs one at a time, at a lower CPU priority.

    The child is started with 'spawn' (a fresh interpreter: forking a process that has torch threads is
    unsafe) on the first job and serves every later one. It applies `niceness` (os.nice) and, when given,
    `threads` (torch, OpenMP and BLAS threads), by default the settings' `job_niceness` and `job_threads`;
    opens its own Store on `database_path`, and sends back the job's outcome and every log record
    (re-emitted here, so the web process's logging shows them). It exits when its parent does. `run` is
    called from one thread at a time.
    """

    def __init__(
        self,
        settings: Settings,
        database_path: Path,
        *,
        niceness: int | None = None,
        threads: int | None = None,
        job_function: JobFunction = run_job,
    ) -> None:
        self.settings = settings
        self.database_path = Path(database_path)
        self.niceness = settings.job_niceness if niceness is None else niceness
        self.threads = settings.job_threads if threads is None else threads
        self.job_function = job_function
        self._context = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._connection: Connection | None = None
        self._busy = False  # a run() is using the connection
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        process = self._process
        return process.pid if process is not None and process.is_alive() else None

    def run(self, job_id: int, timeout: float) -> JobOutcome:
        """Run one job in the child (started if needed) and wait for its outcome, at most `timeout` seconds.

        Raises JobProcessError when the child dies or is stopped first, or runs past the timeout (then it
        is stopped); the next call starts a new child.
        """
        process, connection = self._ensure_started()
        deadline = time.monotonic() + timeout
        try:
            connection.send(job_id)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._terminate(process, 5.0)
                    raise JobProcessError(f"ran past AUTOAL_JOB_TIMEOUT ({timeout:.0f} s); its process was stopped")
                if not connection.poll(min(remaining, 1.0)):
                    continue
                kind, payload = connection.recv()
                if kind == "log":
                    logging.getLogger(payload.name).handle(payload)
                else:
                    return payload
        except (EOFError, OSError):
            raise JobProcessError(self._why_gone(process)) from None
        finally:
            with self._lock:
                self._busy = False
                if self._process is not process:  # stopped or dead: its connection goes with it
                    connection.close()
                    if self._connection is connection:
                        self._connection = None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the child (a job it runs is cut short, and its run() raises JobProcessError)."""
        with self._lock:
            process = self._process
            self._process = None
            if not self._busy and self._connection is not None:
                self._connection.close()
                self._connection = None
        if process is not None:
            self._terminate(process, timeout)

    def _ensure_started(self) -> tuple[Any, Connection]:
        with self._lock:
            self._busy = True
            if self._process is not None and self._process.is_alive() and self._connection is not None:
                return self._process, self._connection
            if self._connection is not None:
                self._connection.close()
            ours, theirs = self._context.Pipe()
            process = self._context.Process(
                target=_job_process_main,
                name="autoal-job-process",
                args=(theirs, os.getpid(), self.settings, str(self.database_path), self.niceness, self.threads),
                kwargs={"job_function": self.job_function, "log_levels": _log_levels()},
                daemon=True,  # terminated when the web process exits normally; see _exit_with_parent otherwise
            )
            process.start()
            theirs.close()  # our copy: the child's end must close when the child dies, so recv() sees EOF
            self._process, self._connection = process, ours
        threads = self.threads or "default"
        logger.info("job process %s started (nice +%s, threads %s)", process.pid, self.niceness, threads)
        return process, ours

    def _terminate(self, process: Any, timeout: float) -> None:
        with self._lock:
            if self._process is process:
                self._process = None
        if process.is_alive():
            process.terminate()
            process.join(timeout)
        if process.is_alive():
            process.kill()
        process.join(5)

    def _why_gone(self, process: Any) -> str:
        """Why the child stopped answering; it is reaped, so the next job gets a new one."""
        process.join(5)
        with self._lock:
            if self._process is process:
                self._process = None
        code = process.exitcode
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in {s.value for s in signal.Signals} else str(-code)
            hint = " (out of memory?)" if -code == signal.SIGKILL else ""
            return f"the job process was killed by {name}{hint}"
        return f"the job process exited with code {code}"


def _job_process_main(
    connection: Connection,
    parent_pid: int,
    settings: Settings,
    database_path: str,
    niceness: int,
    threads: int | None,
    *,
    job_function: JobFunction,
    log_levels: dict[str, int],
) -> None:
    """The child: lower its priority and threads, then run each job id it receives until None or EOF."""
    send_lock = threading.Lock()

    def send(message: tuple[str, Any]) -> None:
        with send_lock:
            connection.send(message)

    limit_resources(niceness, threads)
    _forward_logs(send, log_levels)
    _exit_with_parent(parent_pid)
    store = Store(database_path)
    while True:
        try:
            job_id = connection.recv()
        except (EOFError, OSError):
            return
        if job_id is None:
            return
        try:
            outcome = job_function(settings, store, job_id)
        except Exception as error:  # run_job never raises; another job function might
            logger.exception("job %s: unexpected error in the job process", job_id, extra={"job": job_id})
            outcome = JobOutcome("failed", f"internal error: {type(error).__name__}: {error}")
            job = store.job(job_id)
            if job is not None and job["status"] in ("queued", "running"):
                store.finish_job(job_id, "failed", outcome.message)
        send(("outcome", outcome))


def limit_resources(niceness: int, threads: int | None) -> None:
    """Lower this process's CPU priority and, when `threads` is set, its torch/OpenMP/BLAS thread pools:
    through the environment for libraries loaded later (torch reads OMP_NUM_THREADS when it loads), and
    directly for those loaded already (not importing torch here: the child starts in a moment)."""
    if niceness > 0:
        os.nice(niceness)
    if threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[name] = str(threads)
        if "numpy" in sys.modules:
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=threads)
        if "torch" in sys.modules:
            torch = sys.modules["torch"]
            torch.set_num_threads(threads)
            torch.set_num_interop_threads(threads)


class _PipeLogHandler(logging.Handler):
    """Sends each record, made picklable and carrying the log context (project=, job=), to the parent."""

    def __init__(self, send: Callable[[tuple[str, Any]], None]) -> None:
        super().__init__()
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = dict(record.__dict__)
            fields.update({k: v for k, v in context_fields().items() if k not in fields})
            fields.update(msg=record.getMessage(), args=None, exc_info=None, exc_text=None)
            if record.exc_info:
                fields["exc"] = logging.Formatter().formatException(record.exc_info)
            for key, value in fields.items():
                if not isinstance(value, (str, int, float, bool, type(None), list, tuple, dict)):
                    fields[key] = str(value)
            self.send(("log", logging.makeLogRecord(fields)))
        except Exception:
            self.handleError(record)


def _forward_logs(send: Callable[[tuple[str, Any]], None], log_levels: dict[str, int]) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_PipeLogHandler(send))
    for name, level in log_levels.items():
        logging.getLogger(name or None).setLevel(level)


def _log_levels() -> dict[str, int]:
    """The levels set in this process (root as ""), for the child to filter as the parent does."""
    levels = {"": logging.getLogger().level}
    for name, item in logging.Logger.manager.loggerDict.items():
        if isinstance(item, logging.Logger) and item.level != logging.NOTSET:
            levels[name] = item.level
    return levels


def _exit_with_parent(parent_pid: int) -> None:
    """A thread that ends this process once its parent is gone (killed without a chance to stop us)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="autoal-parent-watch", daemon=True).start()


class RQRunner:
    """Jobs go to an RQ queue on REDIS_URL; `autoal worker` processes run them (MODEL_DIR must be shared)."""

    name = "rq"

    def __init__(self, settings: Settings, store: Store) -> None:
        from redis import Redis
        from rq import Queue

        self.settings = settings
        self.store = store
        self.connection = Redis.from_url(settings.redis_url)
        self.queues = {lane: Queue(rq_queue_name(settings, lane), connection=self.connection) for lane in LANES}
        self.queue = self.queues["fast"]

    def start(self) -> None:
        for project_id in self.store.projects_with_pending_events():
            request_job(self.store, self, self.settings, project_id, "recovery")

    def submit(self, job_id: int) -> None:
        job = self.store.job(job_id)
        self.queues[(job or {}).get("lane") or "fast"].enqueue(
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
        """Request a job in `delay` seconds unless a retry of the project is pending already.

        The delayed RQ job has one id per project, so at most one is scheduled at a time; it is deleted
        when it has run (result_ttl=0), and the next failure may schedule a new one. Needs a worker started
        with the scheduler (`autoal worker` does).
        """
        from rq.exceptions import NoSuchJobError
        from rq.job import Job, JobStatus

        retry_id = _rq_retry_id(project_id)
        try:
            pending = Job.fetch(retry_id, connection=self.connection)
            status = pending.get_status()
        except NoSuchJobError:
            pending, status = None, None
        if status in (JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.STARTED):
            logger.info(
                "project %s: a retry is already %s; not scheduling another",
                project_id,
                status,
                extra={"project": project_id},
            )
            return
        if pending is not None:
            pending.delete()
        self.queue.enqueue_in(
            timedelta(seconds=delay),
            "ls_backend.runners.rq_request_job",
            project_id,
            job_id=retry_id,
            result_ttl=0,
            failure_ttl=86400,
        )

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
    lane = job.get("lane") or "fast"
    lock = runner.connection.lock(
        f"autoal:project:{job['project_id']}" + ("" if lane == "fast" else f":{lane}"),
        timeout=settings.job_timeout,
        blocking_timeout=settings.job_timeout,
    )
    try:
        with lock:  # one job per project and lane at a time, whatever the number of workers
            outcome = run_job(settings, store, job_id)
    except LockError:
        store.finish_job(job_id, "failed", "another job of this project held its lock past AUTOAL_JOB_TIMEOUT")
        return "failed"
    after_job(store, runner, settings, int(job["project_id"]), outcome)
    return outcome.status


def rq_request_job(project_id: int) -> dict:
    """RQ entry point for a delayed retry."""
    settings = Settings.from_env()
    store = Store(settings.database_path)
    return retry_job(store, RQRunner(settings, store), settings, project_id)


def rq_queue_name(settings: Settings, lane: str) -> str:
    """The RQ queue of a lane: AUTOAL_RQ_QUEUE for the fast lane, AUTOAL_RQ_QUEUE + "-full" for full retrains."""
    return settings.rq_queue if lane == "fast" else f"{settings.rq_queue}-{lane}"


def _rq_id(job_id: int) -> str:
    return f"autoal-job-{job_id}"


def _rq_retry_id(project_id: int) -> str:
    """The one id of a project's delayed retry."""
    return f"autoal-retry-{project_id}"
