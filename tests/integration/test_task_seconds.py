"""Seconds given in task data (AUTOAL_TASK_SECONDS_FIELD) order the queue, against a real Label Studio 1.23.2.

A project of 60 digits whose tasks carry their labeling seconds in `data["seconds"]`: 2 s for half of them,
200 s for the other half, and one hostile value. After one label per class the backend's ranking gives each
task the seconds its data give (the hostile one a predicted value, and the job does not fail), and the head
of the queue is the cheap half.
"""

from __future__ import annotations

import pytest

from . import conftest as lab
from .test_two_speed import wait_quiet

pytestmark = pytest.mark.integration

TASKS = 60
CHEAP, DEAR = 2.0, 200.0


def test_the_queue_follows_the_seconds_the_task_data_give(label_studio, digit_images, tmp_path):
    ls = label_studio
    project_id = lab.create_project(ls, "AutoAL task seconds", digit_images[:TASKS])
    given = {}
    for i, task in enumerate(lab.list_tasks(ls, project_id)):
        seconds = "a hostile value" if i == 0 else (CHEAP if i % 2 else DEAR)
        response = ls.api("PATCH", f"/api/tasks/{task['id']}/", json={"data": {**task["data"], "seconds": seconds}})
        assert response.status_code == 200, response.text
        given[task["id"]] = seconds
    backend = lab.start_backend(ls, tmp_path / "models", AUTOAL_TASK_SECONDS_FIELD="seconds")
    try:
        lab.connect_backend(ls, project_id, backend)
        tasks = lab.list_tasks(ls, project_id)
        assert all(task["data"]["seconds"] == given[task["id"]] for task in tasks)  # LS kept the field
        for digit in lab.CLASSES:
            lab.annotate(ls, next(task for task in tasks if lab.true_label(task) == digit and task["id"] in given))
        wait_quiet(backend, project_id, "the jobs of the first labels")

        ranking = backend.store.ranking(project_id)
        assert len(ranking) == TASKS - len(lab.CLASSES)
        for row in ranking:
            seconds = given[row["task_id"]]
            if isinstance(seconds, float):
                assert row["predicted_cost"] == pytest.approx(seconds), row
            else:  # the hostile value: predicted instead, a number of seconds
                assert row["predicted_cost"] > 0
        head = [given[row["task_id"]] for row in ranking[:10]]
        assert head.count(CHEAP) >= 7, head  # value per given second: the cheap half first (exploration aside)
        assert ls.api("GET", f"/api/projects/{project_id}/next/").json()["id"] == ranking[0]["task_id"]
    finally:
        lab.stop_process(backend.process)
