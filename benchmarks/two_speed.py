"""Two-speed retraining against a real Label Studio 1.23.2 on this machine; prints one JSON object.

    .venv/bin/python benchmarks/two_speed.py [--tasks 2000] [--labels 30] [--rounds 30] [--no-efficient-import]
        [--out FILE]

A project of `--tasks` digit images (scikit-learn's bundled digits, 32x32 PNG, each shifted and lightly
noised so that every file is distinct) served to LS by a static file server on 127.0.0.1 (imported as
JSON tasks: a 20,000-file upload through LS's import API would take longer than the measurement), the
backend (`autoal serve`, CPU defaults, jobs in child processes) connected, `--labels` first labels, then
`--rounds` labels made in queue order: label the task LS's /next/ serves, wait until LS serves the head of
the new ranking. Measures:

- ``annotation_to_new_head``: seconds from the annotation's POST to the project's new model version in LS
  (watched through the job's stage in the store; LS's /next/ then checked against the ranking's first
  task), median and p95, with each job's path and breakdown (listing, media, refit, rank, push);
- ``annotation_submit``: LS's own answer time to those annotation POSTs (p50, p99, max) while the backend
  refits, pushes and retrains the backbone in the background;
- ``full_path``: the wall time of every full retrain that finished (the first one, on the first
  `--labels` labels, includes the media download), with its pool size; one still running at the end is
  listed as such, not waited for.

Label Studio, the backend, the file server and all data live on 127.0.0.1 and in a temporary folder.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.backend_latency import percentile  # noqa: E402
from ls_backend.settings import Settings  # noqa: E402
from tests.integration.conftest import (  # noqa: E402 - the same service helpers as the integration tests
    CLASSES,
    EFFICIENT_IMPORT_FLAG,
    LABEL_CONFIG,
    annotate,
    connect_backend,
    start_backend,
    start_label_studio,
    stop_process,
    true_label,
    wait_for,
)

IMPORT_CHUNK = 5000


def write_images(folder: Path, count: int) -> list[str]:
    """File names of `count` distinct 32x32 digit images: a digit, shifted by up to 2 px, plus noise."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(digits.images))
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for number in range(count):
        index = order[number % len(order)]
        pixels = np.kron(digits.images[index] / 16.0, np.ones((4, 4)))
        shift = divmod(number // len(order) % 25, 5)
        pixels = np.roll(pixels, (shift[0] - 2, shift[1] - 2), axis=(0, 1))
        pixels = np.clip(pixels + rng.normal(0, 0.03, pixels.shape), 0, 1)
        name = f"digit{number:06d}_{digits.target[index]}.png"
        Image.fromarray((pixels * 255).astype(np.uint8)).save(folder / name)
        names.append(name)
    return names


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


def serve_folder(folder: Path) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def create_project(ls, title: str, base_url: str, names: list[str]) -> int:
    project = ls.sdk.projects.create(title=title, label_config=LABEL_CONFIG)
    for start in range(0, len(names), IMPORT_CHUNK):
        tasks = [{"image": f"{base_url}/{name}"} for name in names[start:start + IMPORT_CHUNK]]
        response = ls.api("POST", f"/api/projects/{project.id}/import", json=tasks)
        if response.status_code != 201:
            raise RuntimeError(f"import failed: {response.status_code} {response.text[:300]}")
    return int(project.id)


def first_tasks(ls, project_id: int, count: int) -> list[dict[str, Any]]:
    """`count` tasks, as many of each class as possible, from the first pages of the project."""
    per_class = count // len(CLASSES) + 1
    by_class: dict[str, list] = {c: [] for c in CLASSES}
    for task in ls.sdk.tasks.list(project=project_id, page_size=500, fields="task_only"):
        task = task.model_dump(mode="json")
        by_class[true_label(task)].append(task)
        if all(len(tasks) >= per_class for tasks in by_class.values()):
            break
    return [by_class[c][i] for i in range(per_class) for c in CLASSES][:count]


# the backend's own retry delays, not the integration tests' short ones: LS on SQLite answers 500 ("database is
# locked") while it deletes a 20,000-prediction version, and a backend rides that out by waiting
PRODUCTION_RETRIES = {"AUTOAL_LS_BACKOFF": str(Settings.ls_backoff),
                      "AUTOAL_JOB_RETRY_DELAY": str(Settings.job_retry_delay)}
LS_ERRORS: list[dict[str, Any]] = []  # answers of LS that were not a success, with when and what


def ls_json(ls, method: str, path: str, **kwargs: Any) -> Any:
    """LS's JSON answer, trying again (for up to a minute, 1 s apart) when it answers with an error, as an
    annotator would; each error is recorded in the results."""
    for _ in range(60):
        response = ls.api(method, path, **kwargs)
        if response.is_success:
            return response.json()
        LS_ERRORS.append({"path": path, "status": response.status_code, "at": round(time.time(), 1),
                          "text": response.text[:200]})
        time.sleep(1.0)
    raise RuntimeError(f"{method} {path}: LS kept failing: {LS_ERRORS[-1]}")


def annotate_retrying(ls, task: dict[str, Any]) -> None:
    """`annotate`, tried again (for up to a minute) when LS fails it; each failure is recorded."""
    for _ in range(60):
        try:
            annotate(ls, task, lead_time=5.0)
            return
        except Exception as error:  # noqa: BLE001 - the SDK's ApiError or a timeout: record it and try again
            LS_ERRORS.append({"path": "annotate", "error": str(error)[:200], "at": round(time.time(), 1)})
            time.sleep(1.0)
    raise RuntimeError(f"annotating kept failing: {LS_ERRORS[-1]}")


def job_row(job: dict[str, Any]) -> dict[str, Any]:
    fields = ("id", "lane", "path", "path_reason", "trigger", "n_labels", "n_pool", "n_pushed", "cache_hits",
              "cache_misses", "n_listed", "list_seconds", "media_seconds", "train_seconds", "rank_seconds",
              "push_seconds", "latency_seconds")
    row = {key: (round(job[key], 2) if isinstance(job[key], float) else job[key]) for key in fields}
    row["job_seconds"] = round((job["finished_at"] or time.time()) - job["started_at"], 2)
    return row


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "median": round(statistics.median(values), 2), "p95": round(percentile(values, 95), 2),
            "p99": round(percentile(values, 99), 2), "max": round(max(values), 2)}


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                           "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}}
    flags = {EFFICIENT_IMPORT_FLAG: "true"} if args.efficient_import else {}
    results["backbone_growth"] = args.backbone_growth
    results["ls_feature_flags"] = flags
    ls_process, ls = start_label_studio(workdir / "label-studio", extra_env=flags)
    files, backend = None, None
    try:
        started = time.perf_counter()
        names = write_images(workdir / "images", args.tasks)
        files, base_url = serve_folder(workdir / "images")
        project_id = create_project(ls, f"Two speeds, {args.tasks} digits", base_url, names)
        imported = time.perf_counter()
        results["setup_seconds"] = round(time.perf_counter() - started, 1)
        backend = start_backend(ls, workdir / "models", AUTOAL_ENGINE_CONFIG=args.engine_config,
                                AUTOAL_BACKBONE_GROWTH=str(args.backbone_growth),
                                AUTOAL_MEDIA_ALLOWED_HOSTS=base_url.split("//")[1], **PRODUCTION_RETRIES)
        store = backend.store
        # tasks LS saved within the task mirror's overlap (10 s) of the newest change a listing saw are listed
        # again by the next incremental listing: a project labeled the moment it was imported would relist
        # every task once; people start labeling later than that
        time.sleep(max(0.0, 12.0 - (time.perf_counter() - imported)))
        first = first_tasks(ls, project_id, args.labels)
        for task in first[:-1]:  # labeled before the backend is connected: the first model trains on all of them
            annotate(ls, task, lead_time=5.0)
        connect_backend(ls, project_id, backend)
        wait_for(lambda: any(hook.url.endswith("/webhook") and (hook.headers or {}).get("Authorization")
                             for hook in ls.sdk.webhooks.list(project=str(project_id))), 60,
                 "the webhook to carry the backend's basic auth")
        annotate(ls, first[-1], lead_time=5.0)
        wait_for(lambda: backend.settled(project_id) and store.current_version(project_id), 3600, "the first model")

        rounds, submits = [], []
        for _ in range(args.rounds):
            served = ls_json(ls, "GET", f"/api/projects/{project_id}/next/")
            last = max(job["id"] for job in store.recent_jobs(project_id, limit=50))
            started = time.perf_counter()
            annotate_retrying(ls, served)
            submits.append(time.perf_counter() - started)

            def updated(last: int = last) -> dict[str, Any] | None:
                return next((job for job in store.recent_jobs(project_id, limit=50) if job["id"] > last
                             and job["lane"] == "fast" and job["stage"] in ("saving", "done")), None)

            job = wait_for(updated, 1800, "the new head of the queue in LS", interval=0.05)
            elapsed = time.perf_counter() - started
            job = wait_for(lambda job=job: (lambda j: j if j["status"] != "running" else None)(store.job(job["id"])),
                           600, "the job to finish")
            top = store.ranking(project_id, limit=1)[0]["task_id"]
            following = ls_json(ls, "GET", f"/api/projects/{project_id}/next/")
            rounds.append({"seconds": round(elapsed, 2), "served_is_ranked_first": following["id"] == top,
                           "load_average_1min": round(os.getloadavg()[0], 2), **job_row(job)})
        wait_for(lambda: not store.active_jobs(project_id, "fast"), 600, "the last fast refit")
        jobs = [job for job in reversed(store.recent_jobs(project_id, limit=1000)) if job["status"] == "done"]
        results["full_retrains_still_running"] = [job_row(store.job(i)) for i in store.active_jobs(project_id, "full")]
        fast = [r["seconds"] for r in rounds if r["path"] == "fast"]
        results.update({
            "tasks": args.tasks,
            "annotation_to_new_head": {"all": summary([r["seconds"] for r in rounds]),
                                       "fast_path": summary(fast) if fast else None,
                                       "served_is_ranked_first": sum(r["served_is_ranked_first"] for r in rounds),
                                       "rounds": rounds},
            "annotation_submit_seconds": summary(submits),
            "full_path": [job_row(job) for job in jobs if job["path"] == "full"],
            "ls_errors": LS_ERRORS,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        })
        return results
    finally:
        if backend is not None:
            stop_process(backend.process)
        if files is not None:
            files.shutdown()
        stop_process(ls_process)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--labels", type=int, default=30, help="labels before the measured rounds")
    parser.add_argument("--rounds", type=int, default=30, help="labels made in queue order, each timed")
    parser.add_argument("--engine-config", default="{}", help="AUTOAL_ENGINE_CONFIG (default: the CPU defaults)")
    parser.add_argument("--backbone-growth", type=float, default=Settings.backbone_growth,
                        help=f"AUTOAL_BACKBONE_GROWTH (default {Settings.backbone_growth})")
    parser.add_argument("--efficient-import", action=argparse.BooleanOptionalAction, default=True,
                        help=f"start LS with {EFFICIENT_IMPORT_FLAG}=true, as docker-compose.yml does (default: on)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="autoal-two-speed-") as workdir:
        results = run(args, Path(workdir))
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
