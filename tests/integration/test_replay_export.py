"""A real Label Studio export replayed by the benchmark with its ``lead_time`` as the cost: tasks annotated
through LS's API with chosen lead times (seconds that grow with the digit's ink, so a cost model has something
to learn), exported as JSON, loaded by `autoal bench --dataset export.json --cost-model lead-time`, and
replayed by cost-blind and cost-aware AutoAL."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from autoal_bench.cli import main as bench_main
from autoal_bench.datasets import load_label_studio_export

from .conftest import LABEL_CONFIG, annotate, create_project, list_tasks, true_label

pytestmark = pytest.mark.integration

TASKS = 120


def ink_seconds(path) -> float:
    """The chosen lead time of an image: 3 s plus 0.1 s per inked pixel of the 32x32 PNG."""
    return round(3.0 + 0.1 * float((np.asarray(Image.open(path)) > 128).sum()), 2)


@pytest.fixture(scope="module")
def export(label_studio, digit_images, tmp_path_factory):
    ls = label_studio
    images = digit_images[:TASKS]
    project_id = create_project(ls, "AutoAL export replay", images)
    seconds_by_name = {path.name: ink_seconds(path) for path in images}
    chosen = {}
    for task in list_tasks(ls, project_id):
        name = task["data"]["image"].rsplit("/", 1)[-1].split("-", 1)[-1]  # LS prefixes uploads with 8 characters
        chosen[task["id"]] = seconds_by_name[name]
        annotate(ls, task, true_label(task), lead_time=chosen[task["id"]])
    response = ls.api("GET", f"/api/projects/{project_id}/export", params={"exportType": "JSON"})
    assert response.status_code == 200, response.text
    folder = tmp_path_factory.mktemp("export")
    path = folder / "export.json"
    path.write_text(response.text)
    (folder / "label_config.xml").write_text(LABEL_CONFIG)
    media = ls.log.parent / "data" / "media" / "upload"  # where LS keeps uploads (/data/upload/...)
    return {"path": path, "chosen": chosen, "media": media, "config": folder / "label_config.xml"}


def test_the_export_gives_each_task_its_annotations_lead_time(export, monkeypatch):
    monkeypatch.setenv("LOCAL_FILES_DOCUMENT_ROOT", str(export["media"]))
    tasks = json.loads(export["path"].read_text())
    assert len(tasks) == TASKS and all(task["annotations"][0]["lead_time"] for task in tasks)
    data = load_label_studio_export(export["path"], label_config=export["config"].read_text())
    assert len(data) == TASKS and data.n_classes == 10
    assert data.lead_times.tolist() == [export["chosen"][task["id"]] for task in tasks]
    ink = (data.inputs.reshape(TASKS, -1) > 0.5).mean(axis=1)  # the loaded images carry the cost's signal
    assert np.corrcoef(ink, data.lead_times)[0, 1] > 0.8


def test_the_bench_replays_the_export_with_lead_time_as_the_cost(export, tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_FILES_DOCUMENT_ROOT", str(export["media"]))
    out = tmp_path / "bench"
    code = bench_main(["--dataset", str(export["path"]), "--label-config", str(export["config"]),
                       "--cost-model", "lead-time", "--strategies", "autoal,autoal_cost", "--init", "20",
                       "--batch", "20", "--budget", "60", "--cost-aware-budget", "80", "--seeds", "1",
                       "--test-fraction", "0.25", "--train-steps", "60", "--threads", "1", "--no-plots",
                       "--no-progress", "--out", str(out)])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    (dataset,) = results["datasets"].values()
    seconds = sorted(export["chosen"].values())
    assert dataset["cost_model"] == "lead-time"
    assert dataset["cost_summary"]["min"] == pytest.approx(seconds[0])
    assert dataset["cost_summary"]["max"] == pytest.approx(seconds[-1])
    runs = {run["strategy"]: run for run in dataset["runs"]}
    assert [r["labels"] for r in runs["autoal"]["rounds"]] == [20, 40, 60]
    assert [r["labels"] for r in runs["autoal_cost"]["rounds"]] == [20, 40, 60, 80]  # --cost-aware-budget
    for run in runs.values():  # each round's cost is the lead time of the labels so far: within their range
        for rnd in run["rounds"]:
            assert seconds[0] * rnd["labels"] - 1e-6 <= rnd["cost"] <= seconds[-1] * rnd["labels"] + 1e-6
    assert runs["autoal"]["rounds"][0]["cost"] == pytest.approx(runs["autoal_cost"]["rounds"][0]["cost"])
    report = (out / "report.md").read_text()
    assert "Cost-aware vs cost-blind AutoAL" in report
