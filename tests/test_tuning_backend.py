"""The model tuning in the backend: the status page's configuration and trials tables, /metrics, and which
jobs tune (a job covering START_TRAINING, and the incumbent handed from the current model)."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from autoal_engine.engine import Engine
from ls_backend.app import create_app
from ls_backend.jobs import RetrainAndRank, ranking_rows
from ls_backend.settings import Settings
from tests.conftest import fast_config

USER, PASSWORD = "ml", "s3cret"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}


def tuned_config():
    config = fast_config()
    config.tuning.enabled = True
    config.tuning.budget_seconds = 8.0
    config.tuning.families = ("frozen",)
    config.tuning.min_epochs, config.tuning.max_epochs, config.tuning.max_trials = 3, 27, 8
    return config


@pytest.fixture(scope="module")
def tuned_backend(tmp_path_factory, digits):
    """A store with two models of project 1: a tuned one, then one that reused its configuration."""
    images, labels = digits
    settings = Settings(model_dir=tmp_path_factory.mktemp("model_dir"), basic_auth_user=USER,
                        basic_auth_pass=PASSWORD, patch_webhook_auth=False)
    app = create_app(settings, start_runner=False)
    store = app.extensions["autoal"].store
    state, engines = None, []
    for n in (60, 70):
        job_id, _ = store.request_job(1, "ANNOTATION_CREATED", stale_after=600)
        store.start_job(job_id)
        engine = Engine(tuned_config()).fit(images[:n], [str(y) for y in labels[:n]],
                                            classes=[str(d) for d in range(10)], pool_size=200, tuning_state=state)
        state = engine.tuning_state
        ranking = engine.rank(images[1000:1200])
        version = store.reserve_version(1)
        store.commit_model(1, {"model_version": version, "checkpoint": "/unused", "n_labels": n, "n_pool": 200,
                               "holdout_accuracy": engine.report["holdout_accuracy"],
                               "classes": engine.report["classes"], "strategy_weights": ranking.mean_strategy_weights,
                               "cost_report": engine.report["cost"], "report": engine.report, "job_id": job_id},
                           ranking_rows(list(range(1000, 1200)), ranking))
        store.finish_job(job_id, "done")
        engines.append(engine)
    return {"app": app, "store": store, "engines": engines, "settings": settings}


class Cells(HTMLParser):
    """Rows of the table with the given id, as lists of cell texts."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id, self.inside, self.rows = table_id, False, []

    def handle_starttag(self, tag, attrs):
        if tag == "table" and dict(attrs).get("id") == self.table_id:
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag == "td":
            self.rows[-1].append("")

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False

    def handle_data(self, data):
        if self.inside and self.rows and self.rows[-1]:
            self.rows[-1][-1] += data.strip()


def table(html: str, table_id: str) -> list[list[str]]:
    parser = Cells(table_id)
    parser.feed(html)
    return [row for row in parser.rows if row]


def test_the_status_page_shows_each_versions_configuration_and_the_last_tunings_trials(tuned_backend):
    html = tuned_backend["app"].test_client().get("/?project=1", headers=AUTH).get_data(as_text=True)
    tuned, reused = tuned_backend["engines"]
    configs = table(html, "model-configs-1")
    assert len(configs) == 2
    # columns: model, labels, path, backbone, configuration, chosen by
    assert configs[0][2] == "full"  # these versions were committed without a path: from before the two speeds
    assert configs[0][4].startswith("frozen pca") or configs[0][4].startswith("small_cnn")
    assert "incumbent (no tuning due)" in configs[0][5] and "a tuning" in configs[1][5]  # newest first
    assert f"{reused.model_config.epochs} epochs" in configs[0][4]
    trials = table(html, "tuning-1")
    report = tuned.report["tuning"]
    assert len(trials) == len(report["trials"]) >= 2
    completed = [row for row in trials if row[1] == "completed"]
    scores = [float(row[3].split("±")[0]) for row in completed]
    assert scores == sorted(scores, reverse=True) and trials[: len(completed)] == completed  # best first
    assert any("(incumbent)" in row[0] for row in trials)
    assert all(row[2] == "frozen" or "(incumbent)" in row[0] for row in trials)
    decision = re.search(r'id="tuning-decision-1">(.*?)</p>', html, re.S).group(1)
    assert ("Adopted" if report["adopted"] else "Not adopted") in decision


def test_metrics_count_the_tunings_seconds_and_trials_by_state(tuned_backend):
    text = tuned_backend["app"].test_client().get("/metrics", headers=AUTH).get_data(as_text=True)
    report = tuned_backend["engines"][0].report["tuning"]
    assert re.search(r"^autoal_tuning_seconds_count 1\.0$", text, re.M)
    total = float(re.search(r"^autoal_tuning_seconds_sum (\S+)$", text, re.M).group(1))
    assert total == pytest.approx(report["seconds"])
    for state in ("completed", "pruned"):
        count = sum(trial["state"] == state for trial in report["trials"])
        if count:
            assert re.search(rf'^autoal_tuning_trials_total{{state="{state}"}} {count}\.0$', text, re.M)


def test_a_job_covering_start_training_tunes_and_any_job_starts_from_the_current_models_incumbent(tuned_backend):
    store, settings = tuned_backend["store"], tuned_backend["settings"]
    job = RetrainAndRank(settings, store, 1, job_id=0)
    assert job.tuning_state() == tuned_backend["engines"][1].tuning_state
    store.record_event(1, "ANNOTATION_CREATED", task_ids=[5])
    first, _ = store.request_job(1, "ANNOTATION_CREATED", stale_after=600)
    store.record_event(1, "START_TRAINING")  # coalesced into the queued job: its trigger stays the first event's
    assert store.request_job(1, "START_TRAINING", stale_after=600) == (first, False)
    store.start_job(first)
    assert store.covered_actions(first) == {"ANNOTATION_CREATED", "START_TRAINING"}
    store.finish_job(first, "done")
    second, _ = store.request_job(1, "ANNOTATION_CREATED", stale_after=600)
    store.record_event(1, "ANNOTATION_CREATED", task_ids=[6])
    store.start_job(second)
    assert store.covered_actions(second) == {"ANNOTATION_CREATED"}
    assert np.isfinite(tuned_backend["engines"][0].report["tuning"]["seconds"])
