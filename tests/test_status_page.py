"""The status page (GET /) in real headless Chromium against the real app served on 127.0.0.1.

The project is trained for real: an autoal_engine Engine fitted on digits in three rounds, each round
written through the store's own write functions in the order a job writes them (labeled tasks' times,
then model + ranking), plus a failed job and a job in progress.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from werkzeug.serving import make_server

from autoal_engine.engine import Engine
from ls_backend.app import create_app
from ls_backend.jobs import ranking_rows
from ls_backend.settings import Settings
from ls_backend.store import Store
from tests.conftest import fast_config

USER, PASSWORD = "ml", "s3cret"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
LABEL_CONFIG = (
    '<View><Image name="image" value="$image"/><Choices name="digit" toName="image">'
    + "".join(f'<Choice value="{d}"/>' for d in range(10))
    + "</Choices></View>"
)
ERROR = "Label Studio did not answer GET /api/projects/1/tasks after 4 tries: connection refused"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium chromium-driver)"
)


def populate_trained_project(store: Store, digits, project_id: int = 1, rounds: int = 3) -> dict:
    """Three retrain-and-rank rounds on digits; annotators label the top 30 of each ranking.

    Returns the expected queue (task ids in ranking order) and the running job's id.
    """
    images, labels = digits
    rng = np.random.default_rng(0)
    chosen = rng.permutation(len(labels))[:400]
    task_ids = {int(i): 5000 + int(i) for i in chosen}
    ink = images.reshape(len(images), -1).mean(axis=1)
    seconds = {i: float(3.0 + 40.0 * ink[i] + rng.exponential(2.0)) for i in chosen}  # more ink, longer
    labeled = [int(i) for i in chosen[:40]]
    pool = [int(i) for i in chosen[40:]]
    store.save_label_config(project_id, LABEL_CONFIG, {"classes": [str(d) for d in range(10)]}, None)
    for round_number in range(rounds):
        path = "full" if round_number == 0 else "fast"  # as the job records it; the engine fits fully here
        job_id, _ = store.request_job(project_id, "ANNOTATION_CREATED", stale_after=600)
        store.start_job(job_id)
        store.update_job(job_id, stage="training", progress=0.3, n_labels=len(labeled), n_pool=len(pool))
        engine = Engine(fast_config()).fit(
            images[labeled],
            [str(labels[i]) for i in labeled],
            np.array([seconds[i] for i in labeled]),
            classes=[str(d) for d in range(10)],
            pool_size=len(pool),
        )
        ranking = engine.rank(images[pool])
        version = store.reserve_version(project_id)
        store.update_job(
            job_id, stage="saving", progress=0.98, train_seconds=1.5, rank_seconds=0.5, model_version=version,
            path=path, cache_hits=len(labeled) + len(pool) - 2 * round_number, cache_misses=2 * round_number,
            n_pushed=len(pool) if path == "full" else 30, latency_seconds=2.5 + round_number,
        )
        store.record_label_costs(project_id, {task_ids[i]: seconds[i] for i in labeled})
        report = engine.report
        rows = ranking_rows([task_ids[i] for i in pool], ranking)
        store.commit_model(
            project_id,
            {
                "model_version": version,
                "path": path,
                "backbone_version": "backbone-1",
                "checkpoint": "/unused",
                "n_labels": len(labeled),
                "n_pool": len(pool),
                "holdout_accuracy": report["holdout_accuracy"],
                "classes": report["classes"],
                "strategy_weights": ranking.mean_strategy_weights,
                "cost_report": report["cost"],
                "report": report,
                "job_id": job_id,
            },
            rows,
        )
        store.finish_job(job_id, "done")
        queue = [pool[i] for i in ranking.order]
        labeled, pool = labeled + queue[:30], [i for i in pool if i not in set(queue[:30])]
    expected_queue = [task_ids[i] for i in queue[:20]]

    failed, _ = store.request_job(project_id, "ANNOTATION_CREATED", stale_after=600)
    store.start_job(failed)
    store.finish_job(failed, "failed", ERROR)
    running, _ = store.request_job(project_id, "ANNOTATION_CREATED", stale_after=600)
    store.start_job(running)
    store.update_job(running, stage="training", progress=0.3, n_labels=len(labeled), n_pool=len(pool))
    return {"queue": expected_queue, "running_job": running, "failed_job": failed}


@pytest.fixture(scope="module")
def served(tmp_path_factory, digits) -> Iterator[dict]:
    """The real app on a real server at 127.0.0.1:<free port>, a trained project 1, an untrained project 2."""
    model_dir = tmp_path_factory.mktemp("model_dir")
    settings = Settings(model_dir=model_dir, basic_auth_user=USER, basic_auth_pass=PASSWORD, patch_webhook_auth=False)
    app = create_app(settings, start_runner=False)
    store = app.extensions["autoal"].store
    expected = populate_trained_project(store, digits)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    client = app.test_client()
    answer = client.post("/setup", json={"project": "2.1700000000", "schema": LABEL_CONFIG}, headers=AUTH)
    assert answer.status_code == 200
    store.save_label_config(2, LABEL_CONFIG, None, None)  # project 2 is connected (a job read LS), never trained
    try:
        yield {"base": base, "store": store, "client": client, **expected}
    finally:
        server.shutdown()
        thread.join(10)


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Elements(HTMLParser):
    """The rendered DOM's elements: tag, attributes and the text inside, by id (and the queue rows)."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.open: list[tuple[str, str | None, list[str]]] = []
        self.queue_rows: dict[str, list[int]] = {}
        self.svg_in: dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if tag == "svg":
            for _, element_id, _ in self.open:
                if element_id:
                    self.svg_in[element_id] = self.svg_in.get(element_id, 0) + 1
        if tag == "tr" and "data-task" in attributes:
            table = next((i for t, i, _ in reversed(self.open) if t == "table"), None)
            self.queue_rows.setdefault(table or "", []).append(int(attributes["data-task"]))
        if tag not in VOID:
            self.open.append((tag, attributes.get("id"), []))

    def handle_endtag(self, tag: str) -> None:
        if tag not in (open_tag for open_tag, _, _ in self.open):
            return
        while self.open:
            open_tag, element_id, texts = self.open.pop()
            if element_id:
                self.by_id[element_id] = " ".join(" ".join(texts).split())
            if self.open:
                self.open[-1][2].extend(texts)
            if open_tag == tag:
                return

    def handle_data(self, data: str) -> None:
        if self.open:
            self.open[-1][2].append(data)


def rendered(url: str, tmp_path: Path) -> tuple[str, Elements]:
    dom = chromium("--dump-dom", url.replace("http://", f"http://{USER}:{PASSWORD}@"), profile=tmp_path).stdout
    elements = Elements()
    elements.feed(dom)
    return dom, elements


@needs_chromium
def test_status_page_in_chromium_shows_the_trained_project(served, tmp_path):
    dom, page = rendered(served["base"] + "/", tmp_path)
    assert "AutoAL backend" in dom
    project = page.by_id["project-1"]
    assert project.startswith("Project 1") and "autoal-v3" in project and "100 labels" in project
    regime = served["store"].current_model(1)["report"]["regime"]  # the model's confidence on the pool it ranked
    state = "unsure: below" if regime["unsure"] else "sure: at least"
    assert page.by_id["regime-1"] == (f"· confidence on the unlabeled tasks {round(100 * regime['pool_confidence'])}% "
                                      f"({state} 80%; the next batch is spread over the top 200 tasks)")

    # the plots are inline SVG, with their axis labels as text
    assert page.svg_in.get("learning-curve-1") == 1 and "held-out accuracy" in page.by_id["learning-curve-1"]
    weights = page.by_id["strategy-weights-1"]
    assert page.svg_in.get("strategy-weights-1") == 1 and "labels of each model version" in weights
    assert all(name in weights for name in ("entropy", "badge", "typiclust"))  # the legend names the strategies
    assert page.svg_in.get("cost-model-1") == 1 and "60 tasks labeled after being ranked" in page.by_id["cost-model-1"]
    gamma = served["store"].current_model(1)["report"]["cost"]["gamma"]  # the weight of cost in the last ranking
    assert page.by_id["cost-weight-1"] == f"The last ranking's priority: benefit / seconds γ , γ = {gamma:.2f}."
    shortlist = served["store"].current_model(1)["report"]["cost"]["shortlist"]  # None while cost does not count
    assert page.by_id.get("cost-shortlist-1") == (shortlist and f"Cost picks the next batch's tasks among the top "
                                                  f"{shortlist} by benefit, one per region: the one of most value per "
                                                  "second.")

    # the next 20 tasks, in the ranking's order, with their reasons
    assert page.queue_rows["queue-1"] == served["queue"]
    queue = page.by_id["queue-1"]
    assert re.search(r"\d+(\.\d)? s", queue) and "%" in queue

    # which path made each version, its backbone, and what the fast path cost
    assert "fast" in page.by_id["model-configs-1"] and "backbone-1" in page.by_id["model-configs-1"]
    jobs = page.by_id["jobs-1"]
    assert "fast" in jobs and "full" in jobs and "396 / 4" in jobs and "4.5 s" in jobs

    job = page.by_id["job-1"]
    assert f"Current job #{served['running_job']}" in job and "running" in job
    assert "training" in job and "30%" in job
    assert ERROR in page.by_id["errors-1"] and f"job #{served['failed_job']}" in page.by_id["errors-1"]

    # the connected project without a model says so instead of failing
    untrained = page.by_id["project-2"]
    assert "none yet" in untrained and "no model with a held-out accuracy yet" in untrained
    assert "The queue is empty" in untrained and "No job yet" in untrained
    assert "learning-curve-2" not in page.svg_in
    assert "<script" not in dom and not re.search(r'\b(src|href)="(https?:)?//', dom)  # loads nothing else


@needs_chromium
def test_status_page_screenshot_is_a_rendered_page(served, tmp_path):
    shot = tmp_path / "status.png"
    url = served["base"].replace("http://", f"http://{USER}:{PASSWORD}@") + "/?project=1"
    chromium(f"--screenshot={shot}", "--window-size=1280,2000", "--hide-scrollbars", url, profile=tmp_path / "p")
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (2000, 1280)
    assert pixels.std() > 20  # text and plots, not a blank or error page


def test_status_page_needs_auth_and_rejects_bad_input(served):
    client = served["client"]
    assert client.get("/").status_code == 401
    assert client.get("/health", headers=AUTH).json["status"] == "UP"
    one = client.get("/?project=2", headers=AUTH)
    assert one.status_code == 200 and 'id="project-2"' in one.text and 'id="project-1"' not in one.text
    bad = client.get("/?project=abc", headers=AUTH)
    assert bad.status_code == 400 and "project id" in bad.json["error"]
    unknown = client.get("/?project=99", headers=AUTH)
    assert unknown.status_code == 404 and "99" in unknown.json["error"]


def test_status_page_without_projects(tmp_path):
    app = create_app(Settings(model_dir=tmp_path), start_runner=False)
    page = app.test_client().get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "No projects yet" in page.text and "<svg" not in page.text


def test_status_page_escapes_what_it_shows(tmp_path):
    app = create_app(Settings(model_dir=tmp_path), start_runner=False)
    store = app.extensions["autoal"].store
    store.save_label_config(5, "<View/>", None, "unsupported tag <script>alert(1)</script>")
    page = app.test_client().get("/").text
    assert 'id="project-5"' in page and "<script>" not in page and "&lt;script&gt;alert(1)" in page
