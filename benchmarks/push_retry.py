"""What a failed push costs: seconds from "Label Studio is back" to "the new ranking is in Label Studio".

    .venv/bin/python benchmarks/push_retry.py [--tasks 300] [--labels 40] [--engine-config JSON]

A real Label Studio 1.23.2 on 127.0.0.1 behind a proxy that answers 503 to prediction imports while "LS is
down". One job trains and fails during its push; LS comes back; then the retry job runs. Printed (JSON):
- ``retry_seconds``: the retry as built now (the kept model is pushed, no training);
- ``retrain_seconds``: a job that trains from scratch on the same labels and pushes, i.e. what the retry
  cost before the pending push was kept (measured on a fresh MODEL_DIR, so it cannot reuse anything);
- the first job's train seconds and the machine's load average.
Jobs run in this process, with the CPU engine defaults unless --engine-config overrides them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ls_backend.jobs import run_job  # noqa: E402
from ls_backend.settings import Settings  # noqa: E402
from ls_backend.store import Store  # noqa: E402
from tests.integration.conftest import (  # noqa: E402 - the same service helpers as the integration tests
    FaultyProxy,
    annotate,
    create_project,
    list_tasks,
    start_label_studio,
    stop_process,
    write_digit_images,
)


def timed_job(settings: Settings, store: Store, project_id: int, trigger: str) -> tuple[float, dict, str]:
    job_id, _ = store.request_job(project_id, trigger, stale_after=3600)
    started = time.perf_counter()
    outcome = run_job(settings, store, job_id)
    return time.perf_counter() - started, store.job(job_id), f"{outcome.status}: {outcome.message}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--labels", type=int, default=40)
    parser.add_argument("--engine-config", default="{}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        process, ls = start_label_studio(root / "ls")
        proxy = FaultyProxy(ls.url)
        try:
            project_id = create_project(ls, "push retry", write_digit_images(root / "images", args.tasks))
            for task in sorted(list_tasks(ls, project_id), key=lambda t: t["id"])[: args.labels]:
                annotate(ls, task)

            def settings(model_dir: Path) -> Settings:
                return Settings(
                    model_dir=model_dir,
                    label_studio_url=proxy.url,
                    label_studio_api_key=ls.token,
                    device="cpu",
                    engine_overrides=json.loads(args.engine_config),
                    ls_retries=1,
                    ls_backoff=0.1,
                )

            kept = settings(root / "kept")
            store = Store(kept.database_path)
            proxy.fail_paths = ("/import/predictions",)
            _, failed, failed_outcome = timed_job(kept, store, project_id, "ANNOTATION_CREATED")
            proxy.fail_paths = ()
            retry_seconds, retry, retry_outcome = timed_job(kept, store, project_id, "retry")
            fresh = settings(root / "fresh")
            fresh_store = Store(fresh.database_path)
            retrain_seconds, retrain, retrain_outcome = timed_job(fresh, fresh_store, project_id, "retry")
        finally:
            proxy.close()
            stop_process(process)
    print(
        json.dumps(
            {
                "tasks": args.tasks,
                "labels": args.labels,
                "failed_job": failed_outcome[:120],
                "failed_job_train_seconds": round(failed["train_seconds"] or 0, 2),
                "retry_seconds": round(retry_seconds, 2),
                "retry_train_seconds": retry["train_seconds"],
                "retry": retry_outcome[:120],
                "retrain_seconds": round(retrain_seconds, 2),
                "retrain_train_seconds": round(retrain["train_seconds"] or 0, 2),
                "retrain": retrain_outcome[:120],
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
