"""The "why" of a ranked task: the candidates that rank it highest, in the Ranking, the store, /explain and
the status page's queue (with equal weights the weights say nothing, so they are not shown)."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

from autoal_engine.engine import Engine
from ls_backend.app import create_app
from ls_backend.settings import Settings
from ls_backend.status_page import _top_share
from ls_backend.task_adapter import ranking_rows
from tests.conftest import fast_config

AUTH = {"Authorization": "Basic " + base64.b64encode(b"ml:pw").decode()}
CANDIDATES = ("margin", "coreset", "typiclust")


@pytest.fixture(scope="module")
def ranked(digits):
    images, labels = digits
    config = fast_config()
    config.strategies = CANDIDATES
    engine = Engine(config).fit(images[:60], labels[:60], pool_size=300)
    return engine, engine.rank(images[500:800])


def test_a_rankings_top_candidates_are_the_ones_that_score_the_item_highest(ranked):
    _, ranking = ranked
    assert ranking.candidate_scores.shape == (300, 3)
    for index in ranking.top(20):
        top = ranking.top_candidates(int(index))
        scores = dict(zip(CANDIDATES, ranking.candidate_scores[index], strict=True))
        assert [name for name, _ in top] == sorted(CANDIDATES, key=lambda n: -scores[n])
        assert top[0][1] == pytest.approx(max(scores.values()))
    first = ranking.top(1)[0]
    assert ranking.top_candidates(int(first))[0][1] > 0.9  # the head of the queue is near the top of one candidate


def test_the_why_travels_through_the_store_to_explain_and_the_status_page(ranked, tmp_path):
    engine, ranking = ranked
    app = create_app(Settings(model_dir=tmp_path, basic_auth_user="ml", basic_auth_pass="pw",
                              patch_webhook_auth=False), start_runner=False)
    store = app.extensions["autoal"].store
    task_ids = list(range(1000, 1300))
    rows = ranking_rows(task_ids, ranking)
    store.commit_model(1, {"model_version": "autoal-v1", "checkpoint": "/unused", "n_labels": 60, "n_pool": 300,
                           "report": engine.report, "strategy_weights": ranking.mean_strategy_weights}, rows)
    first = int(ranking.top(1)[0])
    expected = [[name, round(score, 4)] for name, score in ranking.top_candidates(first)]
    client = app.test_client()
    explained = client.get(f"/explain/1/{task_ids[first]}", headers=AUTH).json
    assert explained["top_candidates"] == expected and explained["rank"] == 1
    regime = engine.report["regime"]  # the model's confidence on the pool it ranked, and the head's shortlist
    assert explained["model"]["regime"] == regime and regime["shortlist"] == 10 * engine.config.batch_size
    html = client.get("/?project=1", headers=AUTH).get_data(as_text=True)
    row = re.search(rf'<tr data-task="{task_ids[first]}">(.*?)</tr>', html, re.S).group(1)
    assert f"{expected[0][0]}: {_top_share(expected[0][1])}" in row
    assert "weights" not in row  # equal weights: not shown


def test_the_share_of_the_pool_reads_as_people_say_it():
    assert _top_share(0.999) == "top 1%" and _top_share(0.9) == "top 10%" and _top_share(0.5) == "top 50%"
    assert _top_share(0.0) == "bottom"
    assert np.isfinite(float(_top_share(0.25).split()[1].rstrip("%")))
