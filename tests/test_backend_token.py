"""The Label Studio token goes only to LABEL_STUDIO_URL, never to an address that arrives in a request.

The probe's attack: POST /setup with ``"hostname": "http://<attacker>"``, then START_TRAINING; the job used
to connect to that hostname with ``Authorization: Token <key>``. Here a real loopback listener stands in
for the attacker and records every request it gets.
"""

import base64
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ls_backend.app import create_app
from ls_backend.jobs import run_job
from ls_backend.settings import Settings
from tests.test_backend_jobs import closed_port

AUTH = {"Authorization": "Basic " + base64.b64encode(b"ml:s3cret").decode()}
CONFIG = (
    '<View><Image name="image" value="$image"/><Choices name="c" toName="image">'
    '<Choice value="a"/><Choice value="b"/></Choices></View>'
)


@pytest.fixture
def listener():
    """A loopback HTTP server that answers 200 {} to everything and records (path, Authorization)."""
    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's interface
            seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_POST = do_PATCH = do_GET  # noqa: N815

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def attack(client, hostname: str, project_id: int = 1) -> int:
    """/setup with the attacker's hostname, then START_TRAINING; the id of the queued job."""
    setup = {"project": f"{project_id}.1", "schema": CONFIG, "hostname": hostname, "access_token": "x"}
    assert client.post("/setup", json=setup, headers=AUTH).status_code == 200
    answer = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": project_id}}, headers=AUTH)
    return answer.json["job"]


@pytest.mark.parametrize("configured", [False, True])
def test_a_hostname_from_setup_never_receives_the_token(tmp_path, listener, configured):
    url, seen = listener
    settings = Settings(
        model_dir=tmp_path,
        label_studio_url=f"http://127.0.0.1:{closed_port()}" if configured else None,
        label_studio_api_key="legacytoken123",
        basic_auth_user="ml",
        basic_auth_pass="s3cret",
        patch_webhook_auth=False,
        ls_retries=0,
    )
    app = create_app(settings, start_runner=False)
    store = app.extensions["autoal"].store
    job_id = attack(app.test_client(), url)
    outcome = run_job(settings, store, job_id)
    assert outcome.status == "failed"
    assert seen == []  # the attacker's server got no request at all, so no token
    if configured:
        assert outcome.retryable and "Label Studio did not" in outcome.message  # it tried the configured LS only
    else:
        assert not outcome.retryable and "LABEL_STUDIO_URL is not set" in outcome.message
        assert "LABEL_STUDIO_URL is not set" in store.job(job_id)["error"]
        page = app.test_client().get("/", headers=AUTH).text
        assert 'id="no-label-studio-url"' in page and "LABEL_STUDIO_URL is not set" in page


def test_a_second_setup_cannot_redirect_a_connected_project(tmp_path, listener):
    """A project connected to the operator's LS stays there whatever a later /setup says."""
    url, seen = listener
    settings = Settings(
        model_dir=tmp_path,
        label_studio_url=f"http://127.0.0.1:{closed_port()}",
        label_studio_api_key="legacytoken123",
        patch_webhook_auth=False,
        ls_retries=0,
    )
    app = create_app(settings, start_runner=False)
    client = app.test_client()  # loopback: served without credentials
    attack(client, "http://127.0.0.1:9")
    job_id = attack(client, url)
    run_job(settings, app.extensions["autoal"].store, job_id)
    assert seen == []
