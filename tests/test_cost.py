"""Tests of the label-cost model, value-per-cost priority and seconds relative to the class (spec section 10)."""

from __future__ import annotations

import numpy as np
import pytest

from autoal_engine.config import CostConfig
from autoal_engine.cost import CostModel, combine_known, faded_gamma, priority, relative_to_class, spearman


def learnable_costs(n: int, seed: int, slope: float = 0.8, noise: float = 0.2) -> tuple[np.ndarray, ...]:
    """Features (n, 6) and seconds = 10 * exp(slope * x0) * lognormal noise: cost depends on column 0."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, 6))
    seconds = 10.0 * np.exp(slope * features[:, 0] + noise * rng.normal(size=n))
    return features, seconds


# --- priority -------------------------------------------------------------------------------------------


def test_equal_benefit_cheaper_item_gets_higher_priority():
    p = priority(np.array([0.5, 0.5, 0.5]), np.array([20.0, 5.0, 10.0]), gamma=0.5)
    assert p[1] > p[2] > p[0]
    assert p.min() == 0.0 and p.max() == 1.0


def test_gamma_zero_ignores_cost():
    rng = np.random.default_rng(1)
    benefit = rng.uniform(0.0, 2.0, size=200)
    cost = rng.uniform(1.0, 100.0, size=200)
    p = priority(benefit, cost, gamma=0.0)
    np.testing.assert_array_equal(np.argsort(-p, kind="stable"), np.argsort(-benefit, kind="stable"))
    # and with gamma > 0 these costs do change the order
    assert not np.array_equal(np.argsort(-priority(benefit, cost, 1.0)), np.argsort(-benefit))


def test_gamma_above_one_weighs_seconds_more_than_the_benefit():
    benefit, cost = np.array([1.0, 0.4]), np.array([10.0, 5.0])
    # value per second: 0.1 against 0.08, the first item comes first
    assert np.argmax(priority(benefit, cost, gamma=1.0)) == 0
    # with gamma 2, half the seconds outweigh 2.5 times the benefit: 0.01 against 0.016
    assert np.argmax(priority(benefit, cost, gamma=2.0)) == 1


def test_priority_stays_finite_for_extreme_seconds_and_gamma():
    # 1e-100 s ** 4 underflows a float to 0 (and the benefit / 0 is inf); the order must still be right
    p = priority(np.array([0.5, 0.5, 0.2, 0.0]), np.array([1e-100, 1e-99, 1e-99, 1.0]), gamma=4.0)
    assert np.isfinite(p).all() and p.min() == 0.0 and p.max() == 1.0
    assert list(np.argsort(-p, kind="stable")) == [0, 1, 2, 3] and p[1] > p[2] > 0.0
    assert np.isfinite(priority(np.array([0.5, 0.1]), np.array([1e200, 1.0]), gamma=4.0)).all()  # overflow


def test_faded_gamma_halves_at_the_halving_labels_and_keeps_falling():
    assert faded_gamma(1.0, 0, 100) == 1.0
    assert faded_gamma(1.0, 100, 100) == pytest.approx(0.5)
    assert faded_gamma(0.8, 300, 100) == pytest.approx(0.2)
    assert faded_gamma(1.0, 40, 100) > faded_gamma(1.0, 60, 100) > faded_gamma(1.0, 400, 100) > 0.0
    assert faded_gamma(0.7, 10_000, 0) == 0.7  # 0: no fading
    with pytest.raises(ValueError, match="gamma_halving_labels"):
        faded_gamma(1.0, 10, -1)


def test_seconds_relative_to_the_class_leave_the_order_inside_a_class_and_remove_its_level():
    seconds = np.array([1.0, 2.0, 4.0, 20.0, 40.0, 80.0])
    classes = np.array(["one", "one", "one", "zero", "zero", "zero"])
    relative = relative_to_class(seconds, classes)
    np.testing.assert_allclose(relative, [0.5, 1.0, 2.0, 0.5, 1.0, 2.0])
    # by raw seconds every "one" comes before every "zero"; relative to the class they interleave
    benefit = np.ones(6)
    assert set(np.argsort(-priority(benefit, seconds, 1.0))[:3]) == {0, 1, 2}
    assert set(np.argsort(-priority(benefit, relative, 1.0))[:2]) == {0, 3}


def test_relative_to_class_rejects_a_class_list_of_the_wrong_length():
    with pytest.raises(ValueError, match="predicted_class"):
        relative_to_class(np.ones(3), np.zeros(2))


def test_priority_is_in_unit_interval_and_constant_maps_to_ones():
    p = priority(np.array([0.0, 1.0, 3.0]), np.array([1.0, 4.0, 9.0]), gamma=1.0)
    assert np.all((p >= 0.0) & (p <= 1.0)) and not np.isnan(p).any()
    np.testing.assert_allclose(p, [0.0, 0.75, 1.0])  # min-max of the ratios 0, 1/4 and 1/3
    np.testing.assert_array_equal(priority(np.full(4, 0.3), np.full(4, 7.0), 0.5), np.ones(4))
    np.testing.assert_array_equal(priority(np.zeros(3), np.array([1.0, 2.0, 3.0]), 0.5), np.ones(3))


# --- cost model -----------------------------------------------------------------------------------------


def test_spearman_uses_average_ranks_and_is_undefined_for_a_constant_or_too_few_pairs():
    assert spearman([1.0, 2.0, 3.0], [30.0, 20.0, 10.0]) == pytest.approx(-1.0)
    # ties share their average rank: ranks (1.5, 1.5, 3) against (1, 2, 3) give 1.5 / sqrt(1.5 * 2)
    assert spearman([1.0, 1.0, 2.0], [1.0, 2.0, 3.0]) == pytest.approx(1.5 / np.sqrt(3.0))
    assert spearman([4.0, 4.0, 4.0], [1.0, 2.0, 3.0]) is None
    assert spearman([1.0, 2.0], [1.0, 2.0]) is None


def test_learnable_cost_relation_is_recovered():
    features, seconds = learnable_costs(300, seed=0)
    model = CostModel(CostConfig()).fit(features, seconds)
    test_features, test_seconds = learnable_costs(300, seed=1)
    predicted = model.predict(test_features)
    assert np.all(predicted > 0)
    assert spearman(predicted, test_seconds) > 0.8
    report = model.report()
    assert report["cv_spearman"] > 0.8 and report["in_sample_spearman"] > 0.8
    assert 0.0 < report["in_sample_mae_log"] < 0.5 and 0.0 < report["cv_mae_log"] < 0.5
    assert model.effective_gamma(0.5) == 0.5


def test_unpredictable_costs_are_not_trusted():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(200, 6))
    seconds = rng.lognormal(np.log(10.0), 0.5, size=200)  # unrelated to the features
    model = CostModel(CostConfig()).fit(features, seconds)
    assert model.report()["cv_spearman"] < 0.2
    assert model.effective_gamma(0.5) == 0.0
    # explicit costs need no prediction, so gamma stands (the others get the known seconds' median)
    assert model.effective_gamma(0.5, known=np.full(10, 12.0)) == 0.5
    assert model.effective_gamma(0.5, known=np.array([np.nan, 12.0])) == 0.5
    assert model.effective_gamma(0.5, known=np.full(2, np.nan)) == 0.0 and not model.is_trusted


def test_absurd_lead_time_does_not_flip_order_of_typical_items():
    rng = np.random.default_rng(4)
    n = 40
    features = rng.normal(size=(n, 3))
    seconds = np.clip(12.0 * np.exp(0.35 * features[:, 0] + 0.05 * rng.normal(size=n)), 5.0, 20.0)
    cheap = int(np.argmin(features[:, 0]))
    with_outlier = seconds.copy()
    with_outlier[cheap] = 7200.0  # the annotator left the tab open
    typical = np.zeros((9, 3))  # typical tasks: the cost-driving feature on a grid, the others at the mean
    typical[:, 0] = np.linspace(-2.0, 2.0, 9)

    config = CostConfig(shrinkage_n0=10.0)
    clean_order = np.argsort(CostModel(config).fit(features, seconds).predict(typical))
    robust = CostModel(config).fit(features, with_outlier)
    np.testing.assert_array_equal(np.argsort(robust.predict(typical)), clean_order)
    assert robust.predict(typical).max() < 30.0
    # the scenario is a real threat: without the cleaning the same outlier does flip the order
    naive = CostModel(CostConfig(shrinkage_n0=10.0, clip_quantile=1.0, max_seconds=1e9))
    assert not np.array_equal(np.argsort(naive.fit(features, with_outlier).predict(typical)), clean_order)


def test_cleaning_clips_idle_time_then_winsorizes():
    model = CostModel(CostConfig(max_seconds=100.0, clip_quantile=0.5))
    np.testing.assert_allclose(model.clean(np.array([1.0, 2.0, 3.0, 4.0, 500.0])), [1.0, 2.0, 3.0, 3.0, 3.0])
    model = CostModel(CostConfig(max_seconds=100.0, clip_quantile=1.0))
    np.testing.assert_allclose(model.clean(np.array([1.0, 500.0])), [1.0, 100.0])


def test_cold_start_predicts_uniform_cost():
    features, seconds = learnable_costs(4, seed=5)
    model = CostModel(CostConfig(min_observations=5)).fit(features, seconds)
    assert model.is_cold and model.n_observations == 4
    predicted = model.predict(learnable_costs(30, seed=6)[0])
    np.testing.assert_array_equal(predicted, np.full(30, np.median(seconds)))
    assert model.effective_gamma(0.5) == 0.0

    nothing = CostModel(CostConfig()).fit(features, np.full(4, np.nan))
    assert nothing.is_cold and nothing.n_observations == 0
    np.testing.assert_array_equal(nothing.predict(features), np.ones(4))


def test_unknown_costs_are_ignored():
    features, seconds = learnable_costs(100, seed=7)
    partial = seconds.copy()
    partial[::2] = np.nan
    model = CostModel(CostConfig()).fit(features, partial)
    reference = CostModel(CostConfig()).fit(features[1::2], seconds[1::2])
    assert model.n_observations == 50 and not model.is_cold
    np.testing.assert_allclose(model.predict(features), reference.predict(features))


def test_shrinkage_pulls_few_observations_toward_the_median():
    def spread(n: int) -> float:
        features, seconds = learnable_costs(n, seed=8)
        model = CostModel(CostConfig(shrinkage_n0=100.0)).fit(features, seconds)
        predicted = model.predict(learnable_costs(200, seed=9)[0])
        return float(np.mean(np.abs(np.log(predicted / model.median_seconds))))

    few, many = spread(12), spread(600)
    assert few < 0.5 * many


def test_known_costs_override_predictions():
    combined = combine_known(np.array([10.0, 20.0, 30.0]), np.array([np.nan, 3.0, np.nan]))
    np.testing.assert_array_equal(combined, [10.0, 3.0, 30.0])
    untrusted = combine_known(np.array([10.0, 20.0, 30.0, 40.0]), np.array([np.nan, 3.0, 5.0, np.nan]), trusted=False)
    np.testing.assert_array_equal(untrusted, [4.0, 3.0, 5.0, 4.0])  # the known seconds' median, not noise
    unknown = combine_known(np.array([10.0, 20.0]), np.array([np.nan, np.nan]), trusted=False)
    np.testing.assert_array_equal(unknown, [10.0, 20.0])  # nothing known: the (unused, gamma 0) predictions
    with pytest.raises(ValueError, match="known"):
        combine_known(np.array([1.0, 2.0]), np.array([np.nan]))
    with pytest.raises(ValueError, match="known"):
        combine_known(np.array([1.0]), np.array([-5.0]))


def test_state_dict_round_trip_gives_identical_predictions():
    features, seconds = learnable_costs(80, seed=10)
    config = CostConfig()
    model = CostModel(config).fit(features, seconds)
    restored = CostModel.from_state_dict(config, model.state_dict())
    test_features = learnable_costs(40, seed=11)[0]
    np.testing.assert_array_equal(restored.predict(test_features), model.predict(test_features))
    assert restored.report() == model.report()
    assert restored.effective_gamma(0.5) == model.effective_gamma(0.5)

    cold = CostModel(config).fit(features[:2], seconds[:2])
    restored_cold = CostModel.from_state_dict(config, cold.state_dict())
    assert restored_cold.is_cold
    np.testing.assert_array_equal(restored_cold.predict(test_features), cold.predict(test_features))
    with pytest.raises(ValueError, match="coef"):
        CostModel.from_state_dict(config, {k: v for k, v in model.state_dict().items() if k != "coef"})


def test_bad_input_raises_value_error_naming_the_field():
    features, seconds = learnable_costs(10, seed=12)
    model = CostModel(CostConfig())
    bad = seconds.copy()
    bad[3] = -1.0
    with pytest.raises(ValueError, match="costs"):
        model.fit(features, bad)
    bad[3] = 0.0
    with pytest.raises(ValueError, match="costs"):
        model.fit(features, bad)
    with pytest.raises(ValueError, match="costs"):
        model.fit(features, seconds[:9])
    with pytest.raises(ValueError, match="features"):
        model.fit(features[:, 0], seconds)
    model.fit(features, seconds)
    with pytest.raises(ValueError, match="features"):
        model.predict(features[:, :3])
    with pytest.raises(ValueError, match="benefit"):
        priority(np.array([0.1, np.nan]), np.array([1.0, 2.0]), 0.5)
    with pytest.raises(ValueError, match="benefit"):
        priority(np.array([0.1, -0.2]), np.array([1.0, 2.0]), 0.5)
    with pytest.raises(ValueError, match="cost"):
        priority(np.array([0.1, 0.2]), np.array([1.0]), 0.5)
    with pytest.raises(ValueError, match="gamma"):
        priority(np.array([0.1, 0.2]), np.array([1.0, 2.0]), -0.5)
    with pytest.raises(ValueError, match="benefit"):
        priority(np.array([np.nan, 1.0]), np.array([1.0, 2.0]), 1.0)
