"""Latency of the ML backend against a real Label Studio 1.23.2 on this machine; prints one JSON object.

    .venv/bin/python benchmarks/backend_latency.py [--tasks 2000] [--labels 30] [--repeats 2] [--clients 50]
                                                   [--posts 1000] [--rate 100] [--engine-config JSON] [--out FILE]

Measures:
- ``webhook``: /webhook latency (p50, p99, max) of `--posts` posts from `--clients` concurrent clients,
  each on a new connection as LS does (LS gives up after 1 s and never retries), as a burst (each client
  posts again once answered: the latency is mostly the wait behind the others) and paced at `--rate`
  posts a second. Two kinds: an event that needs no job (PROJECT_UPDATED with the same label config)
  while nothing runs, and annotation events that queue (coalesced) retrains, posted once a retrain is in
  its training stage (``retrain_running_throughout``, the job's stage at the start and end, and the jobs
  started meanwhile say what ran). Each comes with the load average: other work on the machine
  inflates the latencies.
- ``predict``: /predict for 1, 100 and 10,000 LS-shaped tasks answered from a stored ranking (a
  10,000-row ranking committed to the store), and for 100 tasks the ranking lacks (labeled tasks of
  the real project), which the current model scores after reading their cached images.
- ``annotation_to_queue``: a project of `--tasks` digit images uploaded to LS, `--labels` annotations,
  then one more annotation at a time: seconds until LS serves the new order (the project's
  model_version is the new one, set after the predictions are imported; watched through the job's stage
  in the store, then checked in LS), with the job's breakdown.

Label Studio, the backend (`autoal serve`: waitress, jobs in a child process) and all data live on
127.0.0.1 and in a temporary folder. The engine runs with the CPU defaults unless --engine-config overrides them.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.conftest import (  # noqa: E402 - the same service helpers as the integration tests
    CLASSES,
    annotate,
    connect_backend,
    create_project,
    list_tasks,
    start_backend,
    start_label_studio,
    stop_process,
    true_label,
    wait_for,
    write_digit_images,
)

SYNTHETIC_PROJECT = 999_999


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def latency_summary(seconds: list[float]) -> dict[str, float]:
    milliseconds = [s * 1000 for s in seconds]
    return {
        "requests": len(milliseconds),
        "p50_ms": round(percentile(milliseconds, 50), 1),
        "p99_ms": round(percentile(milliseconds, 99), 1),
        "max_ms": round(max(milliseconds), 1),
    }


def concurrent_posts(backend, payload: dict[str, Any], clients: int, total: int, rate: float = 0.0) -> list[float]:
    """`total` posts from `clients` threads, each on a new connection (as LS does); the seconds of each.

    With `rate`, post i is sent at i / rate seconds from the start (an open loop, as independent LS
    users are), or as soon as a client is free after that; without, every client posts again as soon as it
    has its answer (a closed loop: the latency is then mostly the wait behind the other clients' posts).

    http.client keeps the client's own cost small: on 2 cores a heavier client (httpx builds an SSL
    context per call) would eat the CPU the server needs and inflate what is measured.
    """
    body = json.dumps(payload).encode()
    host, port = backend.url.removeprefix("http://").split(":")
    token = base64.b64encode(":".join(backend.auth).encode()).decode()
    headers = {"Content-Type": "application/json", "Authorization": f"Basic {token}"}

    begin = time.perf_counter()

    def post(number: int) -> float:
        if rate:
            time.sleep(max(0.0, begin + number / rate - time.perf_counter()))
        started = time.perf_counter()
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            connection.request("POST", "/webhook", body=body, headers=headers)
            response = connection.getresponse()
            text = response.read()
        finally:
            connection.close()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"/webhook answered {response.status}: {text[:200]!r}")
        return elapsed

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return list(pool.map(post, range(total)))


def ls_task(task_id: int, project_id: int) -> dict[str, Any]:
    """A task as LS's TaskSimpleSerializer sends it to /predict."""
    return {
        "id": task_id,
        "data": {"image": f"/data/upload/{project_id}/{task_id:08x}-digit.png"},
        "meta": {},
        "created_at": "2026-11-25T10:00:00.000000Z",
        "updated_at": "2026-11-25T10:00:00.000000Z",
        "is_labeled": False,
        "overlap": 1,
        "inner_id": task_id,
        "total_annotations": 0,
        "cancelled_annotations": 0,
        "total_predictions": 0,
        "comment_count": 0,
        "unresolved_comment_count": 0,
        "last_comment_updated_at": None,
        "project": project_id,
        "updated_by": None,
        "file_upload": None,
        "comment_authors": [],
        "annotations": [],
        "predictions": [],
    }


def time_predict(backend, project_id: int, tasks: list[dict[str, Any]], repeats: int) -> dict[str, Any]:
    body = json.dumps(
        {
            "tasks": tasks,
            "project": f"{project_id}.1795620780",
            "label_config": None,
            "params": {"login": None, "password": None, "context": None},
        }
    )
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        response = httpx.post(
            backend.url + "/predict",
            content=body,
            auth=backend.auth,
            timeout=120,
            headers={"Content-Type": "application/json"},
        )
        times.append(time.perf_counter() - started)
        results = response.json()["results"]
        if response.status_code != 200 or len(results) != len(tasks):
            raise RuntimeError(f"/predict answered {response.status_code}")
    scored = sum(1 for result in results if result)
    return {
        "tasks": len(tasks),
        "median_ms": round(statistics.median(times) * 1000, 1),
        "max_ms": round(max(times) * 1000, 1),
        "with_prediction": scored,
        "request_bytes": len(body),
    }


def wait_for_training(store, project_id: int, after_job: int) -> dict[str, Any]:
    """The first job after `after_job` once it is in its training stage (CPU-heavy, no LS calls)."""
    return wait_for(
        lambda: next(
            (
                j
                for j in store.recent_jobs(project_id)
                if j["id"] > after_job and j["status"] == "running" and j["stage"] == "training"
            ),
            None,
        ),
        600,
        "a retrain in its training stage",
        interval=0.05,
    )


def cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) so far of the process `pid` and, summed, of all its descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)  # ppid, cpu
    children: dict[int, list[int]] = {}
    for child, (parent, _) in stats.items():
        children.setdefault(parent, []).append(child)
    descendants, todo = 0.0, list(children.get(pid, []))
    while todo:
        child = todo.pop()
        descendants += stats[child][1]
        todo.extend(children.get(child, []))
    return {"process": stats.get(pid, (0, 0.0))[1], "descendants": descendants}


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {key: round(after[key] - before[key], 2) for key in before}


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def job_breakdown(store, job: dict[str, Any]) -> dict[str, Any]:
    model = store.model(job["project_id"], job["model_version"]) or {}
    timings = (model.get("report") or {}).get("timings") or {}
    return {
        "job_seconds": round(job["finished_at"] - job["started_at"], 2),
        "train_and_search_seconds": round(job["train_seconds"] or 0, 2),
        "rank_seconds": round(job["rank_seconds"] or 0, 2),
        "push_seconds": round(job["push_seconds"] or 0, 2),
        "engine_timings": {key: round(value, 2) for key, value in timings.items()},
        "n_labels": job["n_labels"],
        "n_pool": job["n_pool"],
        "holdout_accuracy": model.get("holdout_accuracy"),
    }


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
    }
    ls_process, ls = start_label_studio(workdir / "label-studio")
    backend = None
    try:
        images = write_digit_images(workdir / "images", args.tasks)
        started = time.perf_counter()
        project_id = create_project(ls, f"Benchmark {args.tasks} digits", images)
        results["upload_seconds"] = round(time.perf_counter() - started, 1)
        backend = start_backend(ls, workdir / "models", AUTOAL_ENGINE_CONFIG=args.engine_config or "{}")
        results["engine_config"] = json.loads(args.engine_config) if args.engine_config else "CPU defaults"
        store = backend.store
        connect_backend(ls, project_id, backend)

        tasks = list_tasks(ls, project_id)
        by_class: dict[str, list] = {c: [] for c in CLASSES}
        for task in tasks:
            by_class[true_label(task)].append(task)
        first = [by_class[c][i] for i in range(args.labels // len(CLASSES) + 1) for c in CLASSES][: args.labels]
        for task in first:
            annotate(ls, task, lead_time=3.0 + int(true_label(task)))
        wait_for(lambda: backend.settled(project_id) and store.current_version(project_id), 1800, "the first model")
        first_job = min((j for j in store.recent_jobs(project_id) if j["status"] == "done"), key=lambda j: j["id"])
        results["first_job_including_media_download"] = job_breakdown(store, first_job)

        # annotation -> reordered queue, as an annotator works: label the task LS serves, wait for the new order
        rounds = []
        served = ls.api("GET", f"/api/projects/{project_id}/next/").json()
        for _ in range(args.repeats):
            wait_for(lambda: backend.settled(project_id), 1800, "a settled project")
            before = ls.sdk.projects.get(id=project_id).model_version
            last_job = store.recent_jobs(project_id, limit=1)[0]["id"]
            started = time.perf_counter()
            annotate(ls, served, lead_time=5.0)
            annotated = time.perf_counter() - started
            # LS's model_version is switched just before the job's "saving" stage; watching the store, not
            # polling LS (whose project endpoint is costly), keeps the CPU for the retrain being timed
            wait_for(
                lambda last_job=last_job: any(
                    j["id"] > last_job and j["stage"] in ("saving", "done") for j in store.recent_jobs(project_id)
                ),
                1800,
                "the new ranking in LS",
                interval=0.05,
            )
            elapsed = time.perf_counter() - started
            if ls.sdk.projects.get(id=project_id).model_version == before:
                raise RuntimeError("the job ended without switching the project's model version")
            job = wait_for(  # the job commits to the store just after LS switched to its version
                lambda last_job=last_job: next(
                    (j for j in store.recent_jobs(project_id) if j["id"] > last_job and j["status"] == "done"), None
                ),
                600,
                "the job to finish",
            )
            served = ls.api("GET", f"/api/projects/{project_id}/next/").json()
            top = store.ranking(project_id, limit=1)[0]["task_id"]
            rounds.append(
                {
                    "seconds": round(elapsed, 2),
                    "annotation_post_seconds": round(annotated, 2),
                    "next_task_is_ranked_first": served["id"] == top,
                    "load_average_1min": round(os.getloadavg()[0], 2),
                    **job_breakdown(store, job),
                }
            )
        results["annotation_to_queue"] = {
            "project_tasks": args.tasks,
            "median_seconds": round(statistics.median(r["seconds"] for r in rounds), 2),
            "rounds": rounds,
        }

        # /webhook: bursts (each client posts again as soon as answered) and paced posts (`--rate` a second),
        # with nothing to do and while retrains run (the posts themselves queue the next retrain)
        wait_for(lambda: backend.settled(project_id), 1800, "a settled project")
        project = ls.api("GET", f"/api/projects/{project_id}/").json()
        no_job = {"action": "PROJECT_UPDATED", "project": project}
        for name, rate in (("webhook_no_job", 0.0), ("webhook_no_job_paced", args.rate)):
            if name.endswith("_paced") and not rate:
                continue
            cpu = cpu_seconds(backend.process.pid)
            times = concurrent_posts(backend, no_job, args.clients, args.posts, rate)
            results[name] = {
                "clients": args.clients,
                "rate": rate or "burst",
                **latency_summary(times),
                "backend_cpu_seconds": cpu_used(cpu, cpu_seconds(backend.process.pid)),
                "load_average": load(),
            }
        task = served
        last_job = store.recent_jobs(project_id, limit=1)[0]["id"]
        annotation_id = annotate(ls, task, lead_time=4.0)
        result = [
            {"from_name": "digit", "to_name": "image", "type": "choices", "value": {"choices": [true_label(task)]}}
        ]
        event = {
            "action": "ANNOTATION_UPDATED",
            "project": project,
            "task": task,
            "annotation": {
                "id": annotation_id,
                "task": task["id"],
                "was_cancelled": False,
                "lead_time": 4.0,
                "result": result,
            },
        }
        for name, rate in (
            ("webhook_annotation_during_retrain", 0.0),
            ("webhook_annotation_during_retrain_paced", args.rate),
        ):
            if name.endswith("_paced") and not rate:
                continue
            training = wait_for_training(store, project_id, after_job=last_job)
            started = time.time()
            cpu = cpu_seconds(backend.process.pid)
            times = concurrent_posts(backend, event, args.clients, args.posts, rate)
            cpu = cpu_used(cpu, cpu_seconds(backend.process.pid))
            after = store.job(training["id"])
            jobs = store.recent_jobs(project_id)
            results[name] = {
                "clients": args.clients,
                "rate": rate or "burst",
                **latency_summary(times),
                "burst_seconds": round(time.time() - started, 1),
                "backend_cpu_seconds": cpu,  # the web process, and its job process (descendants)
                "retrain_running_throughout": after["status"] == "running",
                "job_stage_at_start_and_end": [training["stage"], after["stage"]],
                "a_job_running_at_the_end": any(j["status"] == "running" for j in jobs),
                "jobs_started_during_the_burst": sum(1 for j in jobs if (j["started_at"] or 0) > started),
                "jobs_queued_at_the_end": sum(1 for j in jobs if j["status"] == "queued"),
                "load_average": load(),
            }
            last_job = training["id"]

        # /predict
        wait_for(lambda: backend.settled(project_id), 1800, "a settled project")
        store.save_label_config(
            SYNTHETIC_PROJECT,
            ls.sdk.projects.get(id=project_id).label_config,
            store.project(project_id)["interface"],
            None,
        )
        rows = [
            {
                "task_id": i,
                "rank": i,
                "priority": 1 - i / 10_000,
                "score": i / 10_000,
                "predicted_label": "3",
                "strategy_weights": {"entropy": 0.5, "margin": 0.5},
            }
            for i in range(1, 10_001)
        ]
        store.commit_model(SYNTHETIC_PROJECT, {"model_version": "autoal-v1", "checkpoint": "-"}, rows)
        results["predict_from_stored_ranking"] = [
            time_predict(backend, SYNTHETIC_PROJECT, [ls_task(i, SYNTHETIC_PROJECT) for i in range(1, n + 1)], 5)
            for n in (1, 100, 10_000)
        ]
        labeled_tasks = [t for t in list_tasks(ls, project_id) if t["annotations"]][:100]
        for task in labeled_tasks:
            task["annotations"], task["predictions"] = [], []
        results["predict_unranked_with_model"] = time_predict(backend, project_id, labeled_tasks, 3)
        results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        return results
    finally:
        if backend is not None:
            stop_process(backend.process)
        stop_process(ls_process)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000, help="images in the LS project (default 2000)")
    parser.add_argument("--labels", type=int, default=30, help="annotations before measuring (default 30)")
    parser.add_argument("--repeats", type=int, default=2, help="annotation-to-queue rounds (default 2)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent /webhook clients (default 50)")
    parser.add_argument("--posts", type=int, default=1000, help="/webhook posts per measurement (default 1000)")
    parser.add_argument(
        "--rate", type=float, default=100.0, help="posts a second of the paced measurements; 0: none (default 100)"
    )
    parser.add_argument("--engine-config", default=None, help="AUTOAL_ENGINE_CONFIG JSON (default: CPU defaults)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--workdir", type=Path, default=None, help="keep LS, models and logs here (default: temporary)")
    args = parser.parse_args(argv)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        results = run(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="autoal-backend-bench-") as workdir:
            results = run(args, Path(workdir))
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
