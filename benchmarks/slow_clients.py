"""Slow clients against the backend: does /health still answer while connections drip? Prints one JSON object.

    .venv/bin/python benchmarks/slow_clients.py [--clients 12,50] [--modes body,headers] [--duration 30]
                                                [--drip-interval 2] [--out FILE]

For each number of clients and each mode, that many connections open at once and drip one byte every
`--drip-interval` seconds: ``body`` sends complete headers of a POST /webhook announcing a 10,000-byte
body, then the body one byte at a time; ``headers`` sends the request line, then the headers one byte at
a time. Meanwhile a probe asks GET /health every 0.2 s and posts a small /webhook event (one that needs
no job) every second, each on a new connection with a 5 s timeout. Reported per phase:

- ``health`` and ``webhook``: p50, p99 and max latency in ms, and how many probes timed out (5 s);
- ``dripping``: how many connections the server cut within `--duration` seconds, and after how long
  (seconds from the connection's start), with what the server answered (e.g. 408) or "closed";
- the load average during the phase (other work on the machine inflates the latencies).

Then ``oversized_body``: a POST /webhook whose Content-Length is 1 GB; what the server answers, and how
long after the headers, without a byte of the body sent.

The backend runs as the integration tests start it (`autoal serve` on 127.0.0.1, Basic auth, a
temporary MODEL_DIR); Label Studio is not needed, its URL points at a closed port.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import select
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.conftest import BASIC_PASS, BASIC_USER, free_port, start_backend, stop_process  # noqa: E402

PROBE_TIMEOUT = 5.0
ANNOUNCED_BODY = 10_000
NO_JOB_EVENT = json.dumps({"action": "PROJECT_UPDATED", "project": {"id": 1, "title": "probe"}}).encode()
AUTH = "Basic " + base64.b64encode(f"{BASIC_USER}:{BASIC_PASS}".encode()).decode()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(latencies: list[float], timeouts: int) -> dict[str, Any]:
    milliseconds = [s * 1000 for s in latencies]
    result: dict[str, Any] = {"requests": len(milliseconds) + timeouts, "timed_out": timeouts}
    if milliseconds:
        result.update(
            p50_ms=round(percentile(milliseconds, 50), 1),
            p99_ms=round(percentile(milliseconds, 99), 1),
            max_ms=round(max(milliseconds), 1),
        )
    return result


class Dripper(threading.Thread):
    """One slow client: a request that never completes, one byte per interval, until the server cuts it."""

    def __init__(self, host: str, port: int, mode: str, interval: float, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.address = (host, port)
        self.mode = mode
        self.interval = interval
        self.stop_event = stop
        self.cut_after: float | None = None
        self.answer: str | None = None
        self.error: str | None = None

    def run(self) -> None:
        started = time.monotonic()
        try:
            sock = socket.create_connection(self.address, timeout=10)
        except OSError as error:
            self.error = f"connect: {error}"
            return
        try:
            head = f"POST /webhook HTTP/1.1\r\nHost: {self.address[0]}:{self.address[1]}\r\n"
            if self.mode == "body":
                head += f"Authorization: {AUTH}\r\nContent-Type: application/json\r\n"
                head += f"Content-Length: {ANNOUNCED_BODY}\r\n\r\n"
                sock.sendall(head.encode())
                drip = b"x"
            else:
                sock.sendall(head.encode())
                drip = b"X"
            while not self.stop_event.is_set():
                readable, _, _ = select.select([sock], [], [], self.interval)
                if readable:
                    data = sock.recv(4096)
                    self.answer = data.split(b"\r\n", 1)[0].decode(errors="replace") if data else "closed"
                    self.cut_after = time.monotonic() - started
                    return
                sock.sendall(drip)
        except OSError as error:  # reset or broken pipe: the server closed the connection
            self.answer = f"closed ({type(error).__name__})"
            self.cut_after = time.monotonic() - started
        finally:
            sock.close()


def probe(host: str, port: int, method: str, path: str, body: bytes | None) -> float | None:
    """Seconds for one request on a new connection, or None when it timed out or failed."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection(host, port, timeout=PROBE_TIMEOUT)
    headers = {"Authorization": AUTH}
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
    except OSError:
        return None
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"{method} {path} answered {response.status}")
    return time.perf_counter() - started


def phase(host: str, port: int, clients: int, mode: str, duration: float, interval: float) -> dict[str, Any]:
    stop = threading.Event()
    drippers = [Dripper(host, port, mode, interval, stop) for _ in range(clients)]
    for dripper in drippers:
        dripper.start()
    time.sleep(min(2.0, duration / 4))  # let them connect and take whatever they take
    health: list[float] = []
    webhook: list[float] = []
    timeouts = {"health": 0, "webhook": 0}
    deadline = time.monotonic() + duration
    next_webhook = time.monotonic()
    while time.monotonic() < deadline:
        seconds = probe(host, port, "GET", "/health", None)
        if seconds is None:
            timeouts["health"] += 1
        else:
            health.append(seconds)
        if time.monotonic() >= next_webhook:
            next_webhook = time.monotonic() + 1.0
            seconds = probe(host, port, "POST", "/webhook", NO_JOB_EVENT)
            if seconds is None:
                timeouts["webhook"] += 1
            else:
                webhook.append(seconds)
        time.sleep(0.2)
    load = os.getloadavg()
    stop.set()
    for dripper in drippers:
        dripper.join(interval + 5)
    cut = sorted(d.cut_after for d in drippers if d.cut_after is not None)
    return {
        "clients": clients,
        "mode": mode,
        "duration_seconds": duration,
        "health": summary(health, timeouts["health"]),
        "webhook": summary(webhook, timeouts["webhook"]),
        "dripping": {
            "cut": len(cut),
            "not_cut": clients - len(cut),
            "cut_after_seconds": {"min": round(cut[0], 1), "max": round(cut[-1], 1)} if cut else None,
            "answers": sorted({d.answer for d in drippers if d.answer}),
            "connect_errors": sorted({d.error for d in drippers if d.error}),
        },
        "load_average": [round(x, 2) for x in load],
    }


def oversized_body(host: str, port: int) -> dict[str, Any]:
    """Headers announcing a 1 GB body, and no body: is it refused before the body is read?"""
    sock = socket.create_connection((host, port), timeout=10)
    try:
        head = (
            f"POST /webhook HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: {AUTH}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {1_000_000_000}\r\n\r\n"
        )
        started = time.perf_counter()
        sock.sendall(head.encode())
        try:
            data = sock.recv(4096)
        except TimeoutError:
            return {"answer": "no answer within 10 s"}
        return {
            "answer": data.split(b"\r\n", 1)[0].decode(errors="replace") if data else "closed",
            "seconds": round(time.perf_counter() - started, 3),
        }
    finally:
        sock.close()


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    closed = f"http://127.0.0.1:{free_port()}"  # no Label Studio: /health and this event need none
    fake_ls = SimpleNamespace(url=closed, token="unused-token")
    backend = start_backend(fake_ls, workdir / "models", **args.env)
    host, port = backend.url.removeprefix("http://").split(":")
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "drip_interval_seconds": args.drip_interval,
        "phases": [],
    }
    try:
        for clients in args.clients:
            for mode in args.modes:
                results["phases"].append(phase(host, int(port), clients, mode, args.duration, args.drip_interval))
                time.sleep(1.0)
        results["oversized_body"] = oversized_body(host, int(port))
    finally:
        stop_process(backend.process)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="12,50", help="comma-separated numbers of slow clients (default 12,50)")
    parser.add_argument("--modes", default="body,headers", help="body, headers or both (default body,headers)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of probing per phase (default 30)")
    parser.add_argument("--drip-interval", type=float, default=2.0, help="seconds between dripped bytes (default 2)")
    parser.add_argument("--env", action="append", default=[], help="extra backend environment NAME=VALUE")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    args.clients = [int(n) for n in args.clients.split(",") if n.strip()]
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not set(args.modes) <= {"body", "headers"}:
        parser.error("--modes takes body and/or headers")
    args.env = dict(item.split("=", 1) for item in args.env)
    with tempfile.TemporaryDirectory(prefix="autoal-slow-clients-") as workdir:
        results = run(args, Path(workdir))
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
