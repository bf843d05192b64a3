"""Real services for the integration tests: Label Studio 1.23.2, the backend under waitress (`autoal serve`), Redis.

Label Studio is found through LABEL_STUDIO_BIN, else <repo>/.venv-ls/bin/label-studio, else
/tmp/lsvenv/bin/label-studio; when none exists, <repo>/.venv-ls is created and label-studio-requirements.txt
(label-studio==1.23.2 and the pins it needs) pip-installed into it (a few minutes, once). It starts once per
test session on 127.0.0.1 with a throwaway HOME and data dir and the settings of label-studio-protocol.md
section 8 (legacy token on, local ML backends and webhooks allowed), and stops at the end.

Images are real: scikit-learn's bundled digits, upscaled to 32x32 PNG files and uploaded through LS's
import API (so tasks reference ``/data/upload/...``, fetched by the backend with its token).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import venv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from label_studio_sdk import LabelStudio
from PIL import Image

from ls_backend.store import Store

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
LS_REQUIREMENTS = Path(__file__).with_name("label-studio-requirements.txt")  # label-studio==1.23.2 and its pins
GET_RETRIES = 2  # LabelStudioServer.api: a GET answered with a 5xx is tried again this many times
CLASSES = [str(digit) for digit in range(10)]
LABEL_CONFIG = (
    '<View><Image name="image" value="$image"/><Choices name="digit" toName="image" choice="single">'
    + "".join(f'<Choice value="{c}"/>' for c in CLASSES)
    + "</Choices></View>"
)
SMALL_ENGINE = {
    "model": {"image_size": 16, "train_steps": 100, "mc_samples": 8},
    "holdout": {"fitnet_steps": 40},
    "search": {"iterations": 40},
    "tuning": {"enabled": False},  # the fixed recipe; test_tuning_backend.py covers the tuning in the backend
}
BASIC_USER, BASIC_PASS = "autoal", "integration-secret"
# LS 1.23.2's prediction import recounts every task of the project after each import unless this feature flag
# is on (then only the tasks it imported into): 60 ms per prediction at 20,000 tasks. docker-compose.yml sets it.
EFFICIENT_IMPORT_FLAG = "fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short"
UPLOAD_BATCH = 50  # LS (Django) refuses more than 100 files per request


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop_process(process: subprocess.Popen, timeout: float = 20.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


# -- Label Studio ---------------------------------------------------------------------------------------


def label_studio_binary() -> Path:
    candidates = [
        os.environ.get("LABEL_STUDIO_BIN"),
        REPO / ".venv-ls/bin/label-studio",
        "/tmp/lsvenv/bin/label-studio",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return Path(candidate)
    target = REPO / ".venv-ls"
    venv.EnvBuilder(with_pip=True, clear=True).create(target)
    subprocess.run([target / "bin/python", "-m", "pip", "install", "-q", "-r", LS_REQUIREMENTS], check=True)
    return target / "bin/label-studio"


@dataclass
class LabelStudioServer:
    url: str
    token: str
    log: Path
    sdk: LabelStudio = field(init=False)

    def __post_init__(self) -> None:
        self.sdk = LabelStudio(base_url=self.url, api_key=self.token, timeout=120)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call to LS's API. A GET that LS answers with a 5xx is tried again, up to 3 tries, 1 s apart:
        LS on SQLite, written to by the backend's push at the same moment, once answered /next/ with its
        HTML error page (cause not captured; SQLite's write lock is the likely one). Each retry is logged
        with the tail of LS's log; the last answer is returned as it is, so a persistent error still fails."""
        for _ in range(GET_RETRIES):
            response = httpx.request(method, self.url + path, headers=self.headers, timeout=120, **kwargs)
            if method.upper() != "GET" or response.status_code < 500:
                return response
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            logger.warning("LS answered GET %s with %d; retrying. LS log tail:\n%s", path, response.status_code, tail)
            time.sleep(1.0)
        return httpx.request(method, self.url + path, headers=self.headers, timeout=120, **kwargs)


def start_label_studio(
    root: Path, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, LabelStudioServer]:
    """Start LS on a free loopback port with its HOME and data under `root` (and `extra_env`, e.g. a
    feature flag); wait until it answers."""
    binary = label_studio_binary()
    (root / "home").mkdir(parents=True, exist_ok=True)
    port = free_port()
    token = secrets.token_hex(20)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME") and not key.startswith("LABEL_STUDIO")
    }
    env.update(
        HOME=str(root / "home"),
        LABEL_STUDIO_BASE_DATA_DIR=str(root / "data"),
        LABEL_STUDIO_COLLECT_ANALYTICS="false",
        LABEL_STUDIO_LATEST_VERSION_CHECK="false",
        LABEL_STUDIO_USERNAME="admin@example.com",
        LABEL_STUDIO_PASSWORD="pass12345",
        LABEL_STUDIO_USER_TOKEN=token,
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        LABEL_STUDIO_ML_BLOCK_LOCAL_IP="false",
        LABEL_STUDIO_SSRF_PROTECTION_ENABLED="false",
    )
    env.update(extra_env or {})
    log = root / "label-studio.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [binary, "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=root,
        )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"Label Studio exited with {process.returncode}; see {log}")
        try:
            return httpx.get(url + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, 300, "Label Studio to start (first start runs migrations)", interval=1.0)
    except BaseException:
        stop_process(process)
        raise
    return process, LabelStudioServer(url=url, token=token, log=log)


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory) -> Iterator[LabelStudioServer]:
    process, server = start_label_studio(tmp_path_factory.mktemp("label-studio"))
    try:
        yield server
    finally:
        stop_process(process)


# -- data -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def digit_images(tmp_path_factory) -> list[Path]:
    """300 real handwritten digits (scikit-learn's bundled set) as 32x32 grayscale PNG files."""
    return write_digit_images(tmp_path_factory.mktemp("digits"), 300)


def write_digit_images(folder: Path, count: int) -> list[Path]:
    """`count` digit images; past the 1,797 in the set, copies shifted by one pixel (still real digits)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.images))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        index = order[number % len(order)]
        pixels = (digits.images[index] / 16.0 * 255).astype(np.uint8)
        if number >= len(order):
            pixels = np.roll(pixels, shift=1 + number // len(order) % 2, axis=1)
        path = folder / f"digit{number:05d}_{digits.target[index]}.png"
        Image.fromarray(pixels).resize((32, 32), Image.NEAREST).save(path)
        paths.append(path)
    return paths


def true_label(task: dict[str, Any]) -> str:
    """The digit, from the uploaded file name (LS keeps it after an 8-character prefix)."""
    return re.search(r"_(\d)\.png$", task["data"]["image"]).group(1)


def create_project(ls: LabelStudioServer, title: str, images: list[Path]) -> int:
    project = ls.sdk.projects.create(title=title, label_config=LABEL_CONFIG)
    for start in range(0, len(images), UPLOAD_BATCH):
        files = []
        for number, path in enumerate(images[start : start + UPLOAD_BATCH]):
            files.append((f"file{number}", (path.name, path.read_bytes(), "image/png")))
        response = ls.api("POST", f"/api/projects/{project.id}/import", files=files)
        assert response.status_code == 201, response.text
    return int(project.id)


def list_tasks(ls: LabelStudioServer, project_id: int) -> list[dict[str, Any]]:
    return [task.model_dump(mode="json") for task in ls.sdk.tasks.list(project=project_id, page_size=500, fields="all")]


def annotate(ls: LabelStudioServer, task: dict[str, Any], label: str | None = None, lead_time: float = 5.0) -> int:
    result = [
        {"from_name": "digit", "to_name": "image", "type": "choices", "value": {"choices": [label or true_label(task)]}}
    ]
    return int(ls.sdk.annotations.create(id=task["id"], result=result, lead_time=lead_time).id)


def connect_backend(ls: LabelStudioServer, project_id: int, backend: BackendServer) -> int:
    response = ls.api(
        "POST",
        "/api/ml/",
        json={
            "url": backend.url,
            "project": project_id,
            "title": "AutoAL",
            "auth_method": "BASIC_AUTH",
            "basic_auth_user": BASIC_USER,
            "basic_auth_pass": BASIC_PASS,
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["state"] == "CO", response.text
    return int(response.json()["id"])


# -- the backend ----------------------------------------------------------------------------------------


@dataclass
class BackendServer:
    url: str
    model_dir: Path
    log: Path
    env: dict[str, str]
    process: subprocess.Popen

    @property
    def store(self) -> Store:
        return Store(self.model_dir / "autoal.sqlite3")

    @property
    def auth(self) -> tuple[str, str]:
        return (BASIC_USER, BASIC_PASS)

    def post(self, path: str, body: Any, **kwargs: Any) -> httpx.Response:
        content = body if isinstance(body, (bytes, str)) else json.dumps(body)
        headers = {"Content-Type": "application/json"}
        return httpx.post(self.url + path, content=content, headers=headers, auth=self.auth, timeout=120, **kwargs)

    def wait_for_job(self, project_id: int, after_job: int = 0, timeout: float = 180) -> dict[str, Any]:
        """The first finished job of the project newer than `after_job` that produced a model."""

        def finished() -> dict[str, Any] | None:
            if self.process.poll() is not None:
                raise AssertionError(f"the backend exited; see {self.log}")
            for job in reversed(self.store.recent_jobs(project_id, limit=100)):
                if job["id"] > after_job and job["status"] == "done":
                    return job
            return None

        return wait_for(finished, timeout, f"a retrain of project {project_id}")

    def settled(self, project_id: int) -> bool:
        """No job queued or running for the project."""
        return not any(job["status"] in ("queued", "running") for job in self.store.recent_jobs(project_id))


def backend_environment(ls: LabelStudioServer, model_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AUTOAL_", "LABEL_STUDIO", "BASIC_AUTH", "REDIS_URL", "MODEL_DIR"))
    }
    env.update(
        LABEL_STUDIO_URL=ls.url,
        LABEL_STUDIO_API_KEY=ls.token,
        BASIC_AUTH_USER=BASIC_USER,
        BASIC_AUTH_PASS=BASIC_PASS,
        MODEL_DIR=str(model_dir),
        AUTOAL_DEVICE="cpu",
        AUTOAL_ENGINE_CONFIG=json.dumps(SMALL_ENGINE),
        AUTOAL_LS_BACKOFF="0.2",
        AUTOAL_JOB_RETRY_DELAY="2",
    )
    env.update(extra)
    return env


def start_backend(ls: LabelStudioServer, model_dir: Path, **extra: str) -> BackendServer:
    port = free_port()
    env = backend_environment(ls, model_dir, **extra)
    model_dir.mkdir(parents=True, exist_ok=True)
    log = model_dir / "backend.log"
    with open(log, "ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "ls_backend.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    backend = BackendServer(url=f"http://127.0.0.1:{port}", model_dir=model_dir, log=log, env=env, process=process)

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the backend exited with {process.returncode}; see {log}")
        try:
            return httpx.get(backend.url + "/health", auth=backend.auth, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, 60, "the backend to start")
    return backend


# -- Redis ----------------------------------------------------------------------------------------------


@pytest.fixture
def redis_url(tmp_path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (Debian package redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )

    def ready() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    try:
        wait_for(ready, 20, "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(process)


# -- a proxy in front of Label Studio that can fail on purpose -------------------------------------------


class FaultyProxy:
    """A loopback reverse proxy to Label Studio; requests whose path contains one of `fail_paths` get 503.

    The backend is pointed at it (LABEL_STUDIO_URL) to see what a job does when LS fails part-way.
    """

    HOP_BY_HOP = {"connection", "content-length", "transfer-encoding", "content-encoding", "keep-alive", "host"}

    def __init__(self, target: str) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.target = target
        self.fail_paths: tuple[str, ...] = ()
        self.failed: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if any(part in self.path for part in proxy.fail_paths):
                    proxy.failed.append(self.path)
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in FaultyProxy.HOP_BY_HOP}
                url = proxy.target + self.path
                answer = httpx.request(self.command, url, headers=headers, content=body, timeout=120)
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in FaultyProxy.HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = forward  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
