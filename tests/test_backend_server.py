"""`autoal serve`'s HTTP server: slow clients cost no request thread and are cut after a deadline.

benchmarks/slow_clients.py measures the same against the real `autoal serve` with the default timeout.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from waitress import wasyncore

from ls_backend.app import create_app
from ls_backend.cli import make_server
from ls_backend.settings import Settings

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 2  # the request deadline of the server under test, seconds
EVENT = json.dumps({"action": "PROJECT_UPDATED", "project": {"id": 1}}).encode()


@pytest.fixture
def server(tmp_path) -> Iterator[tuple[str, int]]:
    app = create_app(Settings(model_dir=tmp_path), start_runner=False)
    served = make_server(app, "127.0.0.1", 0, 4, request_timeout=TIMEOUT, max_body=app.config["MAX_CONTENT_LENGTH"])
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", served.effective_port
    finally:
        served.trigger.pull_trigger(lambda: wasyncore.close_all(served._map))  # ends the loop, in its own thread
        thread.join(10)
        served.task_dispatcher.shutdown()


def request(address: tuple[str, int], method: str, path: str, body: bytes | None = None) -> tuple[int, float]:
    started = time.perf_counter()
    connection = http.client.HTTPConnection(*address, timeout=5)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    return response.status, time.perf_counter() - started


def drip(address: tuple[str, int], mode: str) -> socket.socket:
    """A connection whose request never completes: headers announce a body that is not sent, or stop."""
    sock = socket.create_connection(address, timeout=5)
    head = "POST /webhook HTTP/1.1\r\nHost: x\r\n"
    if mode == "body":
        head += "Content-Type: application/json\r\nContent-Length: 10000\r\n\r\n{"
    sock.sendall(head.encode())
    return sock


def closed_after(sock: socket.socket, limit: float, keep_dripping: bool = True) -> float | None:
    """Seconds until the server closes `sock` (None if it stays open for `limit`), dripping a byte a second."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        readable, _, _ = select.select([sock], [], [], 1.0)
        try:
            if readable and not sock.recv(4096):
                return time.monotonic() - started
            if keep_dripping:
                sock.sendall(b"x")
        except OSError:
            return time.monotonic() - started
    return None


@pytest.mark.parametrize("clients", [12, 50])
def test_health_and_webhook_answer_while_clients_drip_and_the_drippers_are_cut(server, clients):
    drippers = [drip(server, "body" if i % 2 else "headers") for i in range(clients)]
    try:
        for _ in range(5):
            status, seconds = request(server, "GET", "/health")
            assert status == 200 and seconds < 1.0
            status, seconds = request(server, "POST", "/webhook", EVENT)
            assert status == 200 and seconds < 1.0
        cut = [closed_after(sock, TIMEOUT + 5) for sock in drippers]
        assert all(seconds is not None for seconds in cut), cut  # within the deadline plus the 1 s check
    finally:
        for sock in drippers:
            sock.close()


def test_a_request_dripping_past_the_deadline_is_cut_though_never_idle(server):
    sock = drip(server, "body")
    try:
        started = time.monotonic()
        assert closed_after(sock, TIMEOUT + 5) is not None
        assert time.monotonic() - started >= TIMEOUT - 0.5  # not before the deadline
    finally:
        sock.close()


def test_an_idle_connection_is_closed(server):
    sock = socket.create_connection(server, timeout=5)
    try:
        assert closed_after(sock, TIMEOUT + 5, keep_dripping=False) is not None
    finally:
        sock.close()


def test_a_body_above_the_limit_is_refused_before_it_is_sent(server):
    sock = socket.create_connection(server, timeout=5)
    try:
        sock.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
        sock.sendall(b"Content-Length: 1000000000\r\n\r\n")
        answer = sock.recv(4096)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 413")


def test_autoal_serve_answers_and_stops_on_sigterm(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AUTOAL_", "REDIS_URL", "BASIC"))}
    env.update(MODEL_DIR=str(tmp_path), AUTOAL_DEVICE="cpu")
    command = [sys.executable, "-m", "ls_backend.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--threads", "2", "--request-timeout", "5"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, _ = request(("127.0.0.1", port), "GET", "/health")
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "autoal serve did not start"
                time.sleep(0.2)
        assert status == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    output = process.stdout.read().decode()
    assert "request timeout 5 s" in output and "msg=stopped" in output


def test_the_event_loop_does_not_spin_on_a_connection_whose_request_is_being_answered(tmp_path):
    """While a request thread owns the output, the loop leaves the connection alone (waitress alone spun)."""
    app = create_app(Settings(model_dir=tmp_path), start_runner=False)
    served = make_server(app, "127.0.0.1", 0, 1)
    ours, theirs = socket.socketpair()
    try:
        channel = served.channel_class(served, ours, ("127.0.0.1", 1), served.adj, map={})
        channel.total_outbufs_len = 124  # response headers written, the thread not done yet
        channel.requests = [object()]
        assert not channel.writable()
        channel.total_outbufs_len = served.adj.outbuf_high_watermark  # the thread waits for the loop to send
        assert channel.writable()
        channel.total_outbufs_len, channel.requests = 124, []  # the thread is done: the loop sends the rest
        assert channel.writable()
        channel.requests, channel.will_close = [object()], True
        assert channel.writable()
    finally:
        theirs.close()
        ours.close()
        served.close()
        served.task_dispatcher.shutdown()
