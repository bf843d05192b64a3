"""The `autoal` command: `serve` (the ML backend under waitress), `worker` (RQ jobs), `bench` (offline).

autoal serve [--host 0.0.0.0] [--port 9090] [--threads 4] [--request-timeout 15] [--connection-limit 100]
autoal worker [--burst] [--lane fast|full|both]
autoal bench ...            (see `autoal bench --help`)

`autoal serve` runs the app in one process under waitress: its event loop reads every request whole
(headers and body, up to the app's MAX_CONTENT_LENGTH) before a request thread sees it, so slow clients
cost a socket, not a thread; a request not received completely within --request-timeout seconds
(AUTOAL_REQUEST_TIMEOUT, default 15) is cut.
Jobs run in a child process of lower CPU priority (`ls_backend.runners.ThreadRunner`), or on RQ workers.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from typing import Any

from autoal_engine import __version__ as autoal_version
from ls_backend.logs import setup_logging
from ls_backend.settings import Settings

logger = logging.getLogger(__name__)

# Request threads only run the app (waitress's event loop reads and writes the sockets): more of them
# than this only compete for the GIL and SQLite's write lock, which made bursts of webhooks slower
DEFAULT_THREADS = 4
DEFAULT_REQUEST_TIMEOUT = Settings.request_timeout  # AUTOAL_REQUEST_TIMEOUT's default
DEFAULT_CONNECTION_LIMIT = 100  # open connections; beyond it new ones wait in the listen backlog


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        from autoal_bench.cli import main as bench_main

        return bench_main(argv[1:])
    parser = argparse.ArgumentParser(prog="autoal", description="AutoAL active-learning backend for Label Studio")
    parser.add_argument("--version", action="version", version=f"autoal {autoal_version}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the ML backend (waitress, one process, jobs in a child process)")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    serve.add_argument("--port", type=int, default=9090, help="port (default 9090)")
    serve.add_argument(
        "--threads", type=int, default=DEFAULT_THREADS, help=f"request threads (default {DEFAULT_THREADS})"
    )
    serve.add_argument(
        "--request-timeout",
        type=int,
        default=None,
        help="seconds a client has to send a whole request, and an idle connection stays open "
        f"(default: AUTOAL_REQUEST_TIMEOUT, else {DEFAULT_REQUEST_TIMEOUT})",
    )
    serve.add_argument(
        "--connection-limit",
        type=int,
        default=DEFAULT_CONNECTION_LIMIT,
        help=f"open connections at most (default {DEFAULT_CONNECTION_LIMIT})",
    )
    worker = commands.add_parser("worker", help="run an RQ worker for the jobs (needs REDIS_URL)")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.add_argument("--lane", choices=("fast", "full", "both"), default="both",
                        help="which jobs: fast refits, full retrains, or both with fast ones first (default)")
    commands.add_parser("bench", help="offline benchmark (arguments go to the benchmark)")
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
        settings.engine_config()
    except ValueError as error:
        print(f"autoal: configuration error: {error}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)  # one key=value line per event, with project= and job=
    if args.command == "serve":
        return serve_forever(
            args.host,
            args.port,
            args.threads,
            settings,
            request_timeout=args.request_timeout or settings.request_timeout,
            connection_limit=args.connection_limit,
        )
    return run_worker(settings, burst=args.burst, lane=args.lane)


def make_server(
    app: Any,
    host: str,
    port: int,
    threads: int,
    *,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    connection_limit: int = DEFAULT_CONNECTION_LIMIT,
    max_body: int | None = None,
) -> Any:
    """A waitress server for `app` that also cuts requests not received completely within `request_timeout`.

    waitress buffers each request in its event loop before a thread runs the app, refuses bodies above
    `max_body` (413) as soon as the headers announce them, and closes connections idle for `channel_timeout`.
    Its timeout is one of inactivity only: a client that sends a byte every few seconds would keep a
    connection forever, so the server below also closes a connection whose request has been arriving
    for longer than `request_timeout` (checked every second).
    """
    from waitress.adjustments import Adjustments
    from waitress.channel import HTTPChannel
    from waitress.parser import HTTPRequestParser
    from waitress.server import TcpWSGIServer

    class TimedParser(HTTPRequestParser):
        """A request being received, with the time its first byte arrived."""

        def __init__(self, adj: Any) -> None:
            super().__init__(adj)
            self.started = time.monotonic()

    class TimedChannel(HTTPChannel):
        parser_class = TimedParser

        def writable(self) -> bool:
            """Not while a request thread owns the output, unless it passed the mark that thread waits on.

            The thread sends what it writes itself and wakes the loop when it is done. waitress 3.0.2 reports
            the connection writable meanwhile (the headers are in the buffer while the thread holds its lock),
            so under a burst the event loop spun through every connection at 100 % CPU and took the GIL
            from the request threads: 3-5 times the CPU per request, webhook answers of over a second.
            """
            if self.requests and not (self.will_close or self.close_when_flushed):
                return self.total_outbufs_len >= self.adj.outbuf_high_watermark
            return super().writable()

    class DeadlineServer(TcpWSGIServer):
        channel_class = TimedChannel

        def maintenance(self, now: float) -> None:
            super().maintenance(now)  # idle connections (channel_timeout)
            cutoff = time.monotonic() - request_timeout
            for channel in list(self.active_channels.values()):
                request = channel.request  # the request still being received, if any
                if request is not None and not channel.requests and request.started < cutoff:
                    logger.warning(
                        "closing a connection from %s: its request was not received within %s s",
                        channel.addr[0] if channel.addr else "?",
                        request_timeout,
                    )
                    channel.will_close = True

    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "threads": max(1, threads),
        "channel_timeout": max(1, int(request_timeout)),
        "cleanup_interval": 1,
        "connection_limit": connection_limit,
        "asyncore_use_poll": True,  # select() stops at file descriptor 1024
        "ident": "autoal",
    }
    if max_body:
        options["max_request_body_size"] = max_body
    # "Task queue depth is N": one warning per request that waits for a thread, formatted and written by
    # the event loop, i.e. a line per request under load, which itself slowed the answers
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    return DeadlineServer(app, adj=Adjustments(**options))


def serve_forever(
    host: str,
    port: int,
    threads: int,
    settings: Settings,
    *,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    connection_limit: int = DEFAULT_CONNECTION_LIMIT,
) -> int:
    """Serve the app until SIGTERM or SIGINT, then stop the request threads and the job runner.

    The web process scores /predict requests with one torch thread (OMP_NUM_THREADS=1 unless set, before
    torch loads): its few items do not need more, and more would compete with the job processes, which set
    their own (ls_backend.runners.lane_threads)."""
    from ls_backend.app import create_app

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    app = create_app(settings)
    server = make_server(
        app,
        host,
        port,
        threads,
        request_timeout=request_timeout,
        connection_limit=connection_limit,
        max_body=app.config.get("MAX_CONTENT_LENGTH"),
    )

    def stop(signum: int, _frame: Any) -> None:
        raise SystemExit(0)  # in the event loop: waitress's run() stops its threads

    signal.signal(signal.SIGTERM, stop)
    logger.info(
        "serving on http://%s:%s (%s threads, request timeout %s s)",
        server.effective_host,
        server.effective_port,
        threads,
        request_timeout,
    )
    try:
        server.run()
    finally:
        server.close()
        app.extensions["autoal"].runner.stop()
    logger.info("stopped")
    return 0


def run_worker(settings: Settings, burst: bool = False, lane: str = "both") -> int:
    """An RQ worker at a lower CPU priority (its job processes inherit it), so a web process beside it comes first.

    ``lane``: the jobs it takes ("fast", "full", or "both", fast ones first). One worker of each keeps a full
    retrain from holding up the fast path (docker/docker-compose.yml runs two)."""
    if not settings.redis_url:
        print("autoal worker: REDIS_URL is not set", file=sys.stderr)
        return 2
    from redis import Redis
    from rq import Queue, Worker

    from ls_backend.runners import lane_niceness, lane_threads, limit_resources, rq_queue_name
    from ls_backend.store import LANES

    # a worker of both lanes runs at the fast lane's priority with the full lane's threads
    limit_resources(lane_niceness("full" if lane == "full" else "fast", settings.job_niceness),
                    settings.job_threads or lane_threads("fast" if lane == "fast" else "full"))
    connection = Redis.from_url(settings.redis_url)
    lanes = LANES if lane == "both" else (lane,)
    queues = [Queue(rq_queue_name(settings, name), connection=connection) for name in lanes]
    worker = Worker(queues, connection=connection)
    worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
