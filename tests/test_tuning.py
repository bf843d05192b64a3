"""Model tuning (autoal_engine/tuning/): allocator, adoption, folds, space hierarchy, engine round trip."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import torch
from sklearn.datasets import load_digits

from autoal_engine import Engine, EngineConfig
from autoal_engine.config import ModelConfig, TuningConfig
from autoal_engine.tuning import TuningState, due
from autoal_engine.tuning.adoption import Score, decide
from autoal_engine.tuning.allocator import OutOfBudget, OutsideSpace, rungs_for, successive_halving
from autoal_engine.tuning.folds import cv_folds
from autoal_engine.tuning.space import RANGES, SpaceContext, params_of, recipe, suggest

ARMS = {0: 0.60, 1: 0.62, 2: 0.70, 3: 0.91, 4: 0.66, 5: 0.58, 6: 0.64, 7: 0.69}  # arm 3 is the best


def arm_space(trial: optuna.Trial, incumbent: bool) -> None:
    trial.suggest_categorical("arm", list(ARMS))


def arm_scores(params, resource, deadline):
    """Learning curves that rise with the resource toward each arm's plateau; 3 'folds' with small noise."""
    plateau = ARMS[params["arm"]]
    mean = plateau * (1 - np.exp(-resource / 10))
    return mean + np.array([-0.01, 0.0, 0.01])


def test_successive_halving_finds_the_best_arm_within_the_budget():
    records = successive_halving(arm_space, arm_scores, {"arm": 0}, rungs_for(3, 27, 3), 3, budget_seconds=30,
                                 seed=0, max_trials=24, startup_trials=6)
    completed = [r for r in records if r.state == "completed"]
    best = max(completed, key=lambda r: r.score.mean)
    assert best.params["arm"] == 3
    assert records[0].incumbent and records[0].params == {"arm": 0} and records[0].state == "completed"
    assert any(r.state == "pruned" for r in records)  # the allocator spent less on the weak arms
    assert all(r.rungs[-1]["resource"] == 27 for r in completed)


def test_a_budget_of_zero_runs_no_trial_and_keeps_the_incumbent():
    assert successive_halving(arm_space, arm_scores, {"arm": 0}, [3, 9], 3, 0, 0, 10, 2) == []
    images, labels = _digits(60)
    state = TuningState({"backbone": "frozen", "epochs": 5}, tuned_at=0)
    config = EngineConfig.from_dict({"tuning": {"enabled": True, "budget_seconds": 0}})
    engine = Engine(config).fit(images, labels, tuning_state=state)
    assert engine.model_config.backbone == "frozen" and engine.model_config.epochs == 5
    assert engine.report["tuning"]["trials"] == [] and engine.report["tuning"]["adopted"] is False


def test_the_same_seed_gives_the_same_trials():
    def run(seed):
        records = successive_halving(arm_space, arm_scores, {"arm": 0}, [3, 9, 27], 3, 60, seed, 15, 4)
        return [(r.params, r.state, [g["resource"] for g in r.rungs]) for r in records]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_the_deadline_stops_a_trial_and_is_recorded():
    ticks = iter(np.arange(0, 100, 1.0))

    def evaluate(params, resource, deadline):
        if resource >= 9:
            raise OutOfBudget
        return arm_scores(params, resource, deadline)

    records = successive_halving(arm_space, evaluate, {"arm": 0}, [3, 9], 3, 50, 0, 5, 2, clock=lambda: next(ticks))
    assert [r.state for r in records] == ["stopped"]  # the incumbent could not finish: nothing else runs


def test_a_challenger_within_one_standard_error_is_not_adopted():
    incumbent = Score(0.80, 0.02)
    assert not decide(incumbent, Score(0.815, 0.01), winner_is_incumbent=False).adopted
    assert decide(incumbent, Score(0.83, 0.01), winner_is_incumbent=False).adopted
    assert not decide(None, Score(0.99, 0.0), winner_is_incumbent=False).adopted
    assert Score.of(np.array([0.7, 0.8, 0.9])).se == pytest.approx(0.1 / np.sqrt(3))


def test_every_fold_tests_every_class_with_two_labels_and_trains_on_singletons():
    labels = np.array([0] * 5 + [1] * 3 + [2] * 7 + [3])
    folds = cv_folds(labels, folds=5, repeats=2, seed=0)
    assert len(folds) == 3 * 2  # k bounded by the smallest class with >= 2 labels (3)
    for train, test in folds:
        assert set(labels[test]) == {0, 1, 2}
        assert 15 in train and not set(train) & set(test)
    assert cv_folds(np.array([0, 1, 2, 2]), 3, 1, 0) == []  # one class with two labels: no CV


def test_a_trial_of_one_family_never_holds_another_familys_parameters():
    context = SpaceContext(("small_cnn", "frozen", "resnet18"), (8, 16, 32), True, None)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    families = set()
    for _ in range(200):
        trial = study.ask()
        suggest(trial, context)
        family = trial.params["family"]
        families.add(family)
        prefixed = {name.split(".")[0] for name in trial.params if "." in name}
        assert prefixed <= {family, "label_smoothing", "focal"}, trial.params
        assert f"{family}.lr" in trial.params
        if trial.params.get("frozen.features") == "pca":
            assert 8 <= trial.params["frozen.pca_components"] <= 200  # a cap; PixelPCA keeps <= n - 1
        ModelConfig(**recipe(trial.params))  # every trial is a valid model configuration
        study.tell(trial, 0.5)
    assert families == {"small_cnn", "frozen", "resnet18"}


def test_a_family_left_out_of_tuning_families_is_tried_only_as_the_incumbent():
    context = SpaceContext(("frozen",), (16,), False, None, incumbent_family="small_cnn")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = {"frozen": 0, "outside": 0}
    for _ in range(40):
        trial = study.ask()
        try:
            suggest(trial, context)
            drawn["frozen"] += 1
            study.tell(trial, 0.5)
        except OutsideSpace:
            drawn["outside"] += 1
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    assert drawn["frozen"] > 0 and drawn["outside"] > 0
    study.enqueue_trial({"family": "small_cnn"})
    trial = study.ask()
    suggest(trial, context, incumbent=True)
    assert trial.params["family"] == "small_cnn"


def test_the_incumbent_is_a_point_of_the_space():
    base = ModelConfig(image_size=32, lr=0.5)  # an lr outside the space is clipped into it
    context = SpaceContext.build(base, ("frozen",), native_side=8, flips=False)
    assert context.families == ("frozen",) and context.incumbent_family == "small_cnn"
    assert 32 in context.image_sizes and 8 in context.image_sizes
    params = params_of(base, context)
    assert params["small_cnn.lr"] == RANGES["small_cnn"]["lr"][1]
    assert recipe(params)["backbone"] == "small_cnn"


def test_a_tuning_is_due_when_the_labels_grew_by_the_factor_or_when_asked():
    config = TuningConfig(enabled=True, growth_factor=1.5)
    assert due(TuningState(), 20, config, False)[0]
    assert not due(TuningState({}, 40), 59, config, False)[0]
    assert due(TuningState({}, 40), 60, config, False)[0]
    assert due(TuningState({}, 40), 41, config, True)[0]
    assert not due(TuningState(), 20, TuningConfig(enabled=False), True)[0]


def test_a_tuned_engine_round_trips_through_save_and_load_and_ranks_identically(tmp_path):
    images, labels = _digits(90)
    config = EngineConfig.from_dict({
        "tuning": {"enabled": True, "budget_seconds": 20, "families": ["frozen"], "min_epochs": 5,
                   "max_epochs": 45, "max_trials": 12},
        "model": {"backbone": "frozen", "epochs": 45},
        "strategies": ["margin", "coreset", "loss"],
    })
    engine = Engine(config).fit(images, labels, pool_size=200)
    report = engine.report["tuning"]
    assert report["ran"] and report["trials"][0]["incumbent"] and report["trials"][0]["state"] == "completed"
    assert engine.report["holdout_source"] == "tuning_cv"
    assert engine.report["holdout_accuracy"] == pytest.approx(report["cv_accuracy"])
    assert engine.tuning_state.tuned_at == 90 and engine.model_config.epochs == report["recipe"]["epochs"]
    engine.save(tmp_path)
    loaded = Engine.load(tmp_path)
    pool, _ = _digits(200, offset=500)
    first, second = engine.rank(pool), loaded.rank(pool)
    assert np.array_equal(first.order, second.order)
    np.testing.assert_allclose(first.priority, second.priority)
    assert loaded.model_config == engine.model_config and loaded.tuning_state == engine.tuning_state
    # the next fit reuses the incumbent without tuning (90 -> 100 labels is below the growth factor)
    more_images, more_labels = _digits(100)
    again = Engine(config).fit(more_images, more_labels, tuning_state=loaded.tuning_state)
    assert not again.report["tuning"]["ran"] and again.model_config == engine.model_config
    # with the tuning off the configured model trains (the fixed recipe), and the state waits
    config.tuning.enabled = False
    off = Engine(config).fit(more_images, more_labels, tuning_state=loaded.tuning_state)
    assert off.model_config == config.model and off.tuning_state == loaded.tuning_state
    off.save(tmp_path / "off")  # and it loads as it was trained, not with the waiting recipe
    reloaded = Engine.load(tmp_path / "off")
    assert reloaded.model_config == config.model
    assert np.array_equal(reloaded.rank(pool).order, off.rank(pool).order)


@pytest.mark.parametrize("bad, field", [
    ({"tuning": {"families": ["xgboost"]}}, "tuning.families"),
    ({"tuning": {"budget_seconds": -1}}, "tuning.budget_seconds"),
    ({"tuning": {"folds": 1}}, "tuning.folds"),
    ({"tuning": {"growth_factor": 1.0}}, "tuning.growth_factor"),
    ({"tuning": {"min_epochs": 50, "max_epochs": 10}}, "tuning.min_epochs"),
    ({"model": {"loss": "hinge"}}, "model.loss"),
    ({"model": {"augment": "rotate"}}, "model.augment"),
])
def test_bad_tuning_config_names_the_field_and_the_value(bad, field):
    with pytest.raises(ValueError, match=field) as error:
        EngineConfig.from_dict(bad)
    value = next(iter(next(iter(bad.values())).values()))
    assert repr(value) in str(error.value) or str(value) in str(error.value)


def _digits(n: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    torch.set_num_threads(1)
    digits = load_digits()
    images = (digits.images[offset:offset + n] / 16.0).astype(np.float32)
    return images, digits.target[offset:offset + n]


def test_a_recipe_that_diverges_on_the_labels_is_replaced_by_the_configured_model(digits):
    """An incumbent recipe whose training gives non-finite outputs (here lr 1e30) is not used: the fit trains
    the configured model and the next tuning starts from it; a configured model that diverges is an error."""
    from tests.conftest import fast_config

    images, labels = digits[0][:60], digits[1][:60]
    config = fast_config()
    config.tuning.enabled = True
    state = TuningState({"lr": 1e30}, tuned_at=50)  # 60 < 1.5 x 50: not due, the incumbent trains
    engine = Engine(config).fit(images, labels, tuning_state=state)
    assert engine.report["tuning"]["diverged_recipe"] == {"lr": 1e30}
    assert engine.tuning_state.recipe == {} and engine.model_config == config.model
    assert np.isfinite(engine.labeled_embeddings).all() and engine.report["train_accuracy"] > 0.5
    config.model.lr = 1e30
    with pytest.raises(ValueError, match=r"model: training diverged on 60 labels .*model\.lr"):
        Engine(config).fit(images, labels, tuning_state=state)
