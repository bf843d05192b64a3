"""Against a real Label Studio 1.23.2: unusable images are skipped and reported, a failed push keeps the model.

Jobs run in this process (`run_job`), as an RQ worker would run them, so each test controls when they run.
"""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from ls_backend.jobs import run_job
from ls_backend.settings import Settings
from ls_backend.store import Store

from .conftest import SMALL_ENGINE, FaultyProxy, annotate, create_project, list_tasks

pytestmark = pytest.mark.integration


def job_settings(url: str, token: str, model_dir) -> Settings:
    return Settings(
        model_dir=model_dir,
        label_studio_url=url,
        label_studio_api_key=token,
        device="cpu",
        engine_overrides=SMALL_ENGINE,
        ls_retries=1,
        ls_backoff=0.1,
        set_uncertainty_sampling=True,
    )


def run(settings: Settings, store: Store, project_id: int, trigger: str = "test") -> tuple[dict, object]:
    job_id, _ = store.request_job(project_id, trigger, stale_after=3600)
    outcome = run_job(settings, store, job_id)
    return store.job(job_id), outcome


def png(size: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (size, size), 200).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_corrupt_and_a_tiny_image_are_left_out_and_reported(label_studio, digit_images, tmp_path):
    ls = label_studio
    project_id = create_project(ls, "broken media", digit_images[:40])
    good = png(32)
    broken = [
        ("file0", ("truncated_0.png", good[: len(good) // 2], "image/png")),  # "broken data stream"
        ("file1", ("tiny_1.png", png(4), "image/png")),  # 4x4 px
    ]
    assert ls.api("POST", f"/api/projects/{project_id}/import", files=broken).status_code == 201
    tasks = {t["data"]["image"].rsplit("/", 1)[-1].split("-", 1)[-1]: t for t in list_tasks(ls, project_id)}
    truncated, tiny = tasks["truncated_0.png"], tasks["tiny_1.png"]
    annotate(ls, tiny, label="1")  # a labeled item that cannot be used is reported the same way
    digits = sorted((t for name, t in tasks.items() if name.startswith("digit")), key=lambda t: t["id"])
    for task in digits[:12]:
        annotate(ls, task)

    settings = job_settings(ls.url, ls.token, tmp_path)
    store = Store(settings.database_path)
    job, outcome = run(settings, store, project_id)
    assert outcome.status == "done", outcome.message
    assert job["n_media_failed"] == 2
    assert job["n_labels"] == 12 and job["n_pool"] == 40 - 12  # both broken items left out
    failures = {f["task_id"]: f for f in store.media_failures(project_id)}
    assert failures[truncated["id"]]["kind"] == "pool" and "decode" in failures[truncated["id"]]["reason"]
    assert failures[tiny["id"]]["kind"] == "labeled" and "4x4" in failures[tiny["id"]]["reason"]
    assert store.explain(project_id, truncated["id"]) is None  # not ranked
    version = store.current_version(project_id)
    assert ls.sdk.projects.get(id=project_id).model_version == version

    from ls_backend.app import create_app

    app = create_app(settings, start_runner=False)
    page = app.test_client().get(f"/?project={project_id}").text
    assert f'id="media-failures-{project_id}"' in page
    assert f'data-task="{truncated["id"]}"' in page and "4x4" in page
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert f'autoal_media_failed{{project="{project_id}"}} 2.0' in metrics


def test_a_failed_push_keeps_the_model_and_the_retry_pushes_it_without_training(label_studio, digit_images, tmp_path):
    ls = label_studio
    project_id = create_project(ls, "push fails", digit_images[:60])
    digits = sorted(list_tasks(ls, project_id), key=lambda t: t["id"])
    for task in digits[:20]:
        annotate(ls, task)
    proxy = FaultyProxy(ls.url)
    try:
        settings = job_settings(proxy.url, ls.token, tmp_path)
        store = Store(settings.database_path)
        proxy.fail_paths = ("/import/predictions",)
        job, outcome = run(settings, store, project_id)
        assert outcome.status == "failed" and outcome.retryable, outcome.message
        assert job["train_seconds"] is not None and proxy.failed  # trained, then LS failed during the push
        pending = store.pending_push(project_id)
        assert pending is not None and pending["model_version"] == job["model_version"]
        assert store.current_version(project_id) is None
        assert (tmp_path / "projects" / str(project_id) / "models" / pending["model_version"]).is_dir()

        proxy.fail_paths = ()  # LS is back; no new labels
        retry, outcome = run(settings, store, project_id, "retry")
        assert outcome.status == "done", outcome.message
        assert "no retraining" in outcome.message
        assert retry["train_seconds"] is None  # nothing was trained again
        assert store.current_version(project_id) == pending["model_version"]
        assert ls.sdk.projects.get(id=project_id).model_version == pending["model_version"]
        counts = ls.api("GET", f"/api/projects/{project_id}/model-versions/").json()
        assert counts[pending["model_version"]] == 40
        assert store.pending_push(project_id) is None
        seconds = {"first_job_train": job["train_seconds"], "retry_job": retry["finished_at"] - retry["started_at"]}
        print(json.dumps(seconds))  # pytest -s shows it: what the retry saves

        proxy.fail_paths = ("/import/predictions",)  # fails again, then a new label arrives before LS is back
        failed, _ = run(settings, store, project_id)
        assert store.pending_push(project_id)["model_version"] == failed["model_version"]
        annotate(ls, digits[20])
        proxy.fail_paths = ()
        retrained, outcome = run(settings, store, project_id, "retry")
        assert outcome.status == "done", outcome.message
        assert retrained["train_seconds"] is not None and retrained["n_labels"] == 21  # new labels: trained again
        assert store.current_version(project_id) == retrained["model_version"] != failed["model_version"]
    finally:
        proxy.close()
