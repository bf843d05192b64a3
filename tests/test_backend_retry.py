"""ls_backend.retry: one policy, and layers that retry without multiplying their attempts."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ls_backend.jobs import JobOutcome
from ls_backend.labelstudio import LabelStudioClient, LabelStudioError, LabelStudioUnavailable
from ls_backend.retry import RetryPolicy
from ls_backend.runners import retry_delay
from ls_backend.settings import Settings
from ls_backend.store import Store
from ls_backend.webhook_auth import WebhookAuthPatcher


def test_delays_grow_by_the_factor_up_to_the_cap():
    policy = RetryPolicy(retries=5, first_delay=1.0, factor=2.0, max_delay=5.0)
    assert [policy.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert policy.tries == 6


def test_job_re_runs_wait_as_the_settings_policy_says(tmp_path):
    settings = Settings(model_dir=tmp_path, job_retries=2, job_retry_delay=1000.0)  # above RetryPolicy's cap
    store = Store(settings.database_path)
    ls_down = JobOutcome("failed", "Label Studio did not answer", retryable=True)
    delays = []
    for _ in range(3):
        job_id, _ = store.request_job(1, "retry", stale_after=60)
        store.start_job(job_id)
        store.finish_job(job_id, "failed", ls_down.message)
        delays.append(retry_delay(store, settings, 1, ls_down))
    policy = settings.job_retry_policy
    assert delays == [policy.delay(1), policy.delay(2), None] == [1000.0, 2000.0, None]  # then the next event
    assert retry_delay(store, settings, 1, JobOutcome("failed", "bad label config")) is None  # not retryable


def test_call_retries_transient_errors_only():
    calls = []

    def flaky():
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionError("down")
        return "up"

    policy = RetryPolicy(retries=3, first_delay=0.01)
    assert policy.call(flaky, lambda error: isinstance(error, ConnectionError)) == "up"
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(ConnectionError):
        RetryPolicy(retries=1, first_delay=0.0).call(flaky, lambda error: True)
    assert len(calls) == 2  # the first try and one retry, then the last error
    calls.clear()
    with pytest.raises(ConnectionError):
        policy.call(flaky, lambda error: False)  # not transient: raised at once
    assert len(calls) == 1


def counting_server(status: int):
    """A loopback server that answers `status` to everything and counts the requests."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's interface
            seen.append(self.path)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}", seen


@pytest.fixture
def unavailable_ls():
    server, url, seen = counting_server(503)
    yield url, seen
    server.shutdown()
    server.server_close()


def test_the_ls_client_tries_as_often_as_its_policy_says(unavailable_ls):
    url, seen = unavailable_ls
    client = LabelStudioClient(url, "legacytoken123", retries=2, backoff=0.01)
    with pytest.raises(LabelStudioUnavailable, match="after 3 tries"):
        client.project(1)
    assert len(seen) == 3


def test_the_webhook_patcher_tries_do_not_multiply_with_the_clients(unavailable_ls):
    url, seen = unavailable_ls
    settings = Settings(
        label_studio_url=url,
        label_studio_api_key="legacytoken123",
        basic_auth_user="u",
        basic_auth_pass="p",
        ls_retries=4,
        ls_backoff=0.01,
    )
    patcher = WebhookAuthPatcher(settings, tries=RetryPolicy(retries=2, first_delay=0.01))
    patcher._patch(7)  # what schedule() runs in its thread
    assert len(seen) == 3  # three tries of the patcher, no client retries inside them (not 3 x 5)


def test_a_refusal_is_not_retried():
    server, url, seen = counting_server(401)
    try:
        client = LabelStudioClient(url, "legacytoken123", retries=3, backoff=0.01)
        with pytest.raises(LabelStudioError, match="refused") as raised:
            client.project(1)
        assert not isinstance(raised.value, LabelStudioUnavailable)
        assert len(seen) == 1
    finally:
        server.shutdown()
        server.server_close()


def test_a_large_delete_waits_for_label_studio_longer_than_the_client_timeout():
    """LS answers the delete of a version after 1.5 s: a client with a 0.5 s timeout gives up, the same
    delete with its own 5 s timeout gets the count (and is sent once)."""
    deletes = []

    class Handler(BaseHTTPRequestHandler):
        def do_DELETE(self):  # noqa: N802 - http.server's interface
            deletes.append(self.rfile.read(int(self.headers["Content-Length"])))
            time.sleep(1.5)
            body = b'{"deleted_predictions": 20000}'
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except BrokenPipeError:  # the client that timed out has gone
                pass

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = LabelStudioClient(f"http://127.0.0.1:{server.server_address[1]}", "legacytoken123", timeout=0.5,
                                   retries=0)
        with pytest.raises(LabelStudioUnavailable, match="timed out|Timeout"):
            client.delete_model_version(1, "autoal-v1")
        assert client.delete_model_version(1, "autoal-v2", timeout=5.0) == 20000
        assert json.loads(deletes[-1]) == {"model_version": "autoal-v2"} and len(deletes) == 2
    finally:
        server.shutdown()
        server.server_close()
