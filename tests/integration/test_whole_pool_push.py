"""The whole pool is pushed at AUTOAL_FULL_PUSH_GROWTH, the backbone retrains in between push the head only,
against a real Label Studio 1.23.2.

A project of 60 digits, a backend that trains the backbone again after every label (AUTOAL_BACKBONE_GROWTH=1,
one retrain at a time) with AUTOAL_PUSH_TOP=10 and AUTOAL_FULL_PUSH_GROWTH=1.5. START_TRAINING at 10 labels
pushes every task; the retrains at 11-14 labels push the head; the first one at >= 15 labels every task
again. LS keeps the newest whole-pool push (the tasks outside the head keep a prediction) and loses the older.
"""

from __future__ import annotations

import pytest

from . import conftest as lab
from .test_two_speed import done_jobs, wait_quiet

pytestmark = pytest.mark.integration

TASKS = 60
PUSH_TOP = 10
FULL_PUSH_GROWTH = 1.5
FIRST_LABELS = 10  # one per class
LAST_LABELS = 17


def test_retrains_between_whole_pool_pushes_push_the_head_and_ls_keeps_the_newest_whole_push(
        label_studio, digit_images, tmp_path):
    ls = label_studio
    project_id = lab.create_project(ls, "AutoAL whole-pool pushes", digit_images[:TASKS])
    backend = lab.start_backend(ls, tmp_path / "models", AUTOAL_PUSH_TOP=str(PUSH_TOP), AUTOAL_BACKBONE_GROWTH="1",
                                AUTOAL_FULL_PUSH_GROWTH=str(FULL_PUSH_GROWTH))
    try:
        ml_id = lab.connect_backend(ls, project_id, backend)
        tasks = lab.list_tasks(ls, project_id)
        for digit in lab.CLASSES:
            lab.annotate(ls, next(task for task in tasks if lab.true_label(task) == digit))
        wait_quiet(backend, project_id, "the jobs of the first labels")
        assert ls.api("POST", f"/api/ml/{ml_id}/train").status_code == 200
        wait_quiet(backend, project_id, "START_TRAINING's retrain")
        for _ in range(LAST_LABELS - FIRST_LABELS):
            lab.annotate(ls, ls.api("GET", f"/api/projects/{project_id}/next/").json())
            wait_quiet(backend, project_id, "the retrain of one more label")

        store = backend.store
        retrains = [job for job in done_jobs(store, project_id) if job["path"] == "full"]
        started = next(job for job in retrains if job["trigger"] == "START_TRAINING")
        assert started["n_pushed"] == started["n_pool"] > PUSH_TOP  # START_TRAINING pushes every task
        last_whole = started["n_labels"]
        head_only = 0
        for job in retrains[retrains.index(started) + 1:]:
            whole = job["n_labels"] >= FULL_PUSH_GROWTH * last_whole
            assert job["n_pushed"] == (job["n_pool"] if whole else PUSH_TOP), job
            if whole:
                last_whole = job["n_labels"]
            else:
                head_only += 1
        assert head_only >= 2 and last_whole >= FULL_PUSH_GROWTH * FIRST_LABELS  # both kinds happened

        versions = ls.api("GET", f"/api/projects/{project_id}/model-versions/").json()
        whole_pushes = [version for version, count in versions.items() if count > PUSH_TOP]
        newest_whole = max((job for job in retrains if job["n_pushed"] > PUSH_TOP), key=lambda job: job["id"])
        assert whole_pushes == [newest_whole["model_version"]]  # the newest whole push is kept, the older gone
    finally:
        lab.stop_process(backend.process)
