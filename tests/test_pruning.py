"""Adaptive pruning of the candidate pool (autoal_engine/pruning.py): the class-diversity reward, the
action-elimination rule, and, on digits, a candidate that only ever picks one class is pruned while a good
one stays."""

from __future__ import annotations

import numpy as np
import pytest

from autoal_engine.config import EngineConfig, PruningConfig
from autoal_engine.engine import Engine
from autoal_engine.pool_outputs import PoolOutputs
from autoal_engine.pruning import active_candidates, class_diversity_rewards, decide, pruned_weights
from autoal_engine.strategies import STRATEGIES, Strategy, register
from tests.conftest import fast_config

ONE_CLASS = "test_one_class"


class OneClassSampling(Strategy):
    """A bad candidate: serves the items the model is surest are of class 0 first."""

    name = ONE_CLASS

    def score(self, outputs: PoolOutputs) -> np.ndarray:
        return outputs.probs[:, 0]


@pytest.fixture(scope="module", autouse=True)
def one_class_registered():
    """The bad candidate is registered for this module only (the registry lists the built-in ones)."""
    register(OneClassSampling)
    yield
    del STRATEGIES[ONE_CLASS]


def test_the_reward_is_highest_for_picks_spread_over_the_classes_with_few_labels():
    predicted = np.array([0, 0, 0, 0, 1, 2, 3, 4])
    one_class = np.array([8, 7, 6, 5, 0, 0, 0, 0], dtype=float)  # its top-4 are all class 0
    spread = np.array([8, 0, 0, 0, 7, 6, 5, 0], dtype=float)  # its top-4 are classes 0, 1, 2, 3
    counts = np.array([3.0, 3, 3, 3, 3])
    rewards = class_diversity_rewards(np.stack([one_class, spread], 1), predicted, counts, batch_size=4)
    assert rewards[0] == pytest.approx(4 / 7 / 4)  # c_0 = 4, n_0 = 3
    assert rewards[1] == pytest.approx(4 * (1 / 4) / 4)  # c_y = 1, n_y = 3 for four classes
    # picks of the class with the fewest labels earn more than picks of one with many
    rare = class_diversity_rewards(one_class[:, None], predicted, np.array([0.0, 9, 9, 9, 9]), 4)
    common = class_diversity_rewards(one_class[:, None], predicted, np.array([9.0, 0, 0, 0, 0]), 4)
    assert rare[0] > common[0]


def test_the_reward_refuses_a_class_index_outside_the_counts():
    with pytest.raises(ValueError, match="predicted"):
        class_diversity_rewards(np.zeros((2, 1)), np.array([0, 5]), np.zeros(3), 1)


def test_elimination_keeps_every_candidate_during_warmup_and_at_least_min_active():
    config = PruningConfig(enabled=True, warmup=3, min_active=1, confidence=1.0)
    history = np.array([[0.5, 0.1], [0.5, 0.1]])
    assert active_candidates(history, config).all()  # 2 rounds < warmup 3
    history = np.array([[0.5, 0.1], [0.52, 0.12], [0.49, 0.1]])
    assert active_candidates(history, config).tolist() == [True, False]
    config.min_active = 2
    assert active_candidates(history, config).all()


def test_a_tolerance_keeps_a_candidate_slightly_below_the_leader_and_prunes_one_far_below():
    config = PruningConfig(enabled=True, warmup=2, window=3, min_active=1, confidence=1.0)
    history = np.array([[0.066, 0.058, 0.030], [0.067, 0.059, 0.031], [0.065, 0.057, 0.029]])
    assert active_candidates(history, config).tolist() == [True, False, False]  # the plain rule
    config.tolerance = 0.2  # bound: 0.8 x the leader's lower bound (about 0.065) = 0.052
    assert active_candidates(history, config).tolist() == [True, True, False]


def test_overlapping_intervals_keep_both_and_a_pruned_candidate_comes_back():
    config = PruningConfig(enabled=True, warmup=2, window=3, min_active=1, confidence=1.0)
    noisy = np.array([[0.5, 0.3], [0.3, 0.5], [0.45, 0.35]])
    assert active_candidates(noisy, config).all()
    decision = None
    history: list[list[float]] = []
    for rewards in ([0.5, 0.1], [0.5, 0.1], [0.5, 0.1]):
        decision = decide(history, np.array(rewards), config)
        history = decision.history
    assert decision.active.tolist() == [True, False]
    for rewards in ([0.1, 0.6], [0.1, 0.6], [0.1, 0.6]):  # the second candidate becomes the better one
        decision = decide(history, np.array(rewards), config)
        history = decision.history
    assert decision.active.tolist() == [False, True] and len(history) == 3  # the window


def test_pruned_weights_renormalize_over_the_active_candidates():
    weights = np.array([[0.2, 0.3, 0.5], [0.0, 0.0, 1.0]], dtype=np.float32)
    result = pruned_weights(weights, np.array([True, True, False]))
    assert np.allclose(result, [[0.4, 0.6, 0.0], [0.5, 0.5, 0.0]])
    equal = np.full((2, 11), 1.0 / 11, dtype=np.float32)  # renormalized, these would move by float rounding
    assert np.array_equal(pruned_weights(equal, np.ones(11, dtype=bool)), equal)


def test_a_one_class_candidate_is_pruned_within_a_few_rounds_on_digits(digits):
    """Active learning on digits with a good candidate and one that only picks class 0: from the third
    round (after the warmup) the bad one is out of the mixture, and the labels it would have piled into
    class 0 are not taken."""
    images, labels = digits
    pool = np.arange(1200)
    config = fast_config()
    config.strategies = (ONE_CLASS, "margin")
    config.pruning = PruningConfig(enabled=True, warmup=2, min_active=1)
    rng = np.random.default_rng(0)
    labeled = list(rng.choice(pool, 20, replace=False))
    history: list[list[float]] = []
    active = []
    for round_index in range(5):
        config.seed = round_index
        unlabeled = np.setdiff1d(pool, labeled)
        engine = Engine(config).fit(images[labeled], labels[labeled], classes=list(range(10)),
                                    pool_size=len(unlabeled), pruning_history=history)
        ranking = engine.rank(images[unlabeled])
        history = engine.report["pruning"]["history"]
        active.append(ranking.active_names)
        labeled += list(unlabeled[ranking.top(20)])
    assert active[0] == (ONE_CLASS, "margin")  # the warmup
    assert all(names == ("margin",) for names in active[2:]), active
    rewards = np.asarray(history)
    assert (rewards[:, 1] > rewards[:, 0]).all()
    assert np.mean(labels[labeled[20:]][-60:] == 0) < 0.3  # not piled into class 0 once pruned
    assert ranking.mean_strategy_weights[ONE_CLASS] == 0.0
    assert all(name != ONE_CLASS for name, _ in ranking.top_candidates(int(ranking.top(1)[0])))


def test_pruning_off_leaves_the_ranking_and_report_unchanged(digits):
    images, labels = digits
    config = fast_config()
    config.strategies = (ONE_CLASS, "margin")
    engine = Engine(config).fit(images[:40], labels[:40], pool_size=200)
    ranking = engine.rank(images[300:500])
    assert ranking.active is None and "pruning" not in engine.report
    assert ranking.active_names == (ONE_CLASS, "margin")


def test_pruning_config_is_validated():
    with pytest.raises(ValueError, match="pruning.min_active"):
        EngineConfig.from_dict({"pruning": {"min_active": 0}})
    with pytest.raises(ValueError, match="pruning.tolerance"):
        EngineConfig.from_dict({"pruning": {"tolerance": 1.0}})
    assert EngineConfig.from_dict(EngineConfig().to_dict()).pruning == PruningConfig()


def test_a_backend_job_continues_the_current_models_reward_history(digits, tmp_path):
    from ls_backend.jobs import RetrainAndRank, ranking_rows
    from ls_backend.settings import Settings
    from ls_backend.store import Store

    images, labels = digits
    settings = Settings(model_dir=tmp_path)
    store = Store(settings.database_path)
    job = RetrainAndRank(settings, store, 1, job_id=0)
    assert job.pruning_history() == []  # no model yet
    config = fast_config()
    config.strategies = (ONE_CLASS, "margin")
    config.pruning = PruningConfig(enabled=True)
    engine = Engine(config).fit(images[:40], labels[:40], pool_size=200)
    ranking = engine.rank(images[300:500])
    store.commit_model(1, {"model_version": store.reserve_version(1), "checkpoint": "/unused", "n_labels": 40,
                           "n_pool": 200, "report": engine.report}, ranking_rows(list(range(200)), ranking))
    assert job.pruning_history() == engine.report["pruning"]["history"] and len(job.pruning_history()) == 1
    following = Engine(config).fit(images[:60], labels[:60], pool_size=180, pruning_history=job.pruning_history())
    following.rank(images[300:480])
    assert len(following.report["pruning"]["history"]) == 2


def test_the_status_page_names_the_active_and_the_pruned_candidates(digits, tmp_path):
    import base64
    import re

    from ls_backend.app import create_app
    from ls_backend.jobs import ranking_rows
    from ls_backend.settings import Settings

    images, labels = digits
    config = fast_config()
    config.strategies = (ONE_CLASS, "margin")
    config.pruning = PruningConfig(enabled=True, warmup=1, min_active=1)
    history = [[0.01, 0.4], [0.02, 0.5]]
    engine = Engine(config).fit(images[:60], labels[:60], pool_size=200, pruning_history=history)
    ranking = engine.rank(images[300:500])
    assert ranking.active_names == ("margin",)
    app = create_app(Settings(model_dir=tmp_path, basic_auth_user="ml", basic_auth_pass="pw",
                              patch_webhook_auth=False), start_runner=False)
    store = app.extensions["autoal"].store
    store.commit_model(1, {"model_version": store.reserve_version(1), "checkpoint": "/unused", "n_labels": 60,
                           "n_pool": 200, "report": engine.report, "strategy_weights": ranking.mean_strategy_weights},
                       ranking_rows(list(range(1000, 1200)), ranking))
    auth = {"Authorization": "Basic " + base64.b64encode(b"ml:pw").decode()}
    html = app.test_client().get("/?project=1", headers=auth).get_data(as_text=True)
    line = " ".join(re.search(r'id="pruning-1">(.*?)</p>', html, re.S).group(1).split())
    reward = engine.report["pruning"]["rewards"]
    assert f"over 3 rounds): margin {reward['margin']:.2f}." in line
    assert f"Pruned: {ONE_CLASS} {reward[ONE_CLASS]:.2f}." in line
    first = re.search(r'<tr data-task="\d+">(.*?)</tr>', html, re.S).group(1)
    assert "margin: top" in first and ONE_CLASS not in first  # the why names only active candidates


def test_pruning_only_while_unsure_keeps_every_candidate_once_the_model_is_sure_of_the_pool(digits):
    """``pruning.only_while_unsure``: the same history prunes the one-class candidate while the model is unsure
    of the pool (confidence below ``regime_confidence``) and keeps it once it is sure; the rewards are recorded
    either way, so the history goes on."""
    images, labels = digits
    config = fast_config()
    config.strategies = (ONE_CLASS, "margin")
    config.pruning = PruningConfig(enabled=True, warmup=1, min_active=1, only_while_unsure=True)
    history = [[0.01, 0.4], [0.02, 0.5]]
    engine = Engine(config).fit(images[:60], labels[:60], pool_size=200, pruning_history=history)
    engine.config.regime_confidence = 1.0  # unsure of any pool
    assert engine.rank(images[300:500]).active_names == ("margin",)
    engine.config.regime_confidence = 0.0  # sure of any pool
    ranking = engine.rank(images[300:500])
    assert ranking.active_names == (ONE_CLASS, "margin")
    assert np.allclose(ranking.strategy_weights, 0.5)
    assert len(engine.report["pruning"]["history"]) == 3 and engine.report["regime"]["unsure"] is False
