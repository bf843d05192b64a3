"""The `autoal` command: `serve` (the ML backend under gunicorn), `worker` (RQ jobs), `bench` (offline).

autoal serve [--host 0.0.0.0] [--port 9090] [--threads 8]
autoal worker [--burst]
autoal bench ...            (see `autoal bench --help`)
"""

from __future__ import annotations

import argparse
import sys

from gunicorn.app.base import BaseApplication

from ls_backend.logs import setup_logging
from ls_backend.settings import Settings


class _Gunicorn(BaseApplication):
    """gunicorn with embedded settings; the app is built in the worker process (after the fork)."""

    def __init__(self, options: dict) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings:  # e.g. control_socket_disable exists from gunicorn 24 on
                self.cfg.set(key, value)

    def load(self):  # noqa: ANN201 - gunicorn's interface
        from ls_backend.wsgi import app

        return app


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        from autoal_engine.bench.cli import main as bench_main

        return bench_main(argv[1:])
    parser = argparse.ArgumentParser(prog="autoal", description="AutoAL active-learning backend for Label Studio")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the ML backend (gunicorn, one process, in-process job worker)")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    serve.add_argument("--port", type=int, default=9090, help="port (default 9090)")
    serve.add_argument("--threads", type=int, default=8, help="request threads (default 8)")
    worker = commands.add_parser("worker", help="run an RQ worker for the jobs (needs REDIS_URL)")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
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
        return serve_forever(args.host, args.port, args.threads, settings)
    return run_worker(settings, burst=args.burst)


def serve_forever(host: str, port: int, threads: int, settings: Settings) -> int:
    options = {
        "bind": f"{host}:{port}",
        "workers": 1,  # the in-process job runner lives in this one worker
        "worker_class": "gthread",
        "threads": max(1, threads),
        "timeout": 300,  # LS waits up to 100 s for /predict
        "graceful_timeout": 30,
        "loglevel": settings.log_level.lower(),
        "errorlog": "-",
        "control_socket_disable": True,  # several backends on one machine must not share a socket
    }
    _Gunicorn(options).run()
    return 0


def run_worker(settings: Settings, burst: bool = False) -> int:
    if not settings.redis_url:
        print("autoal worker: REDIS_URL is not set", file=sys.stderr)
        return 2
    from redis import Redis
    from rq import Queue, Worker

    connection = Redis.from_url(settings.redis_url)
    worker = Worker([Queue(settings.rq_queue, connection=connection)], connection=connection)
    worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
