"""Learning-curve metrics and the report's summary numbers."""

from __future__ import annotations

import numpy as np
import pytest

from autoal_bench.goals import Goals
from autoal_bench.metrics import cost_saved, first_reaching, normalized_aubc, paired_difference
from autoal_bench.report import (
    complete_seeds,
    cost_aware_check,
    cost_aware_lines,
    curves,
    goal_check,
    goal_lines,
    summarize,
)


def test_aubc_is_the_mean_height_of_the_curve() -> None:
    assert normalized_aubc([20, 40, 60], [0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert normalized_aubc([20, 40, 60], [0.0, 0.5, 1.0]) == pytest.approx(0.5)
    assert normalized_aubc([20, 30, 60], [0.2, 0.8, 0.8]) == pytest.approx((10 * 0.5 + 30 * 0.8) / 40)
    assert normalized_aubc([20], [0.7]) == pytest.approx(0.7)
    with pytest.raises(ValueError):
        normalized_aubc([1, 2], [0.5])


def test_first_reaching_and_cost_saved() -> None:
    assert first_reaching([20, 40, 60], [0.5, 0.8, 0.9], 0.8) == 40
    assert first_reaching([20, 40, 60], [0.5, 0.8, 0.9], 0.95) is None
    assert cost_saved(300.0, 600.0) == pytest.approx(0.5)
    assert cost_saved(None, 600.0) is None


def test_paired_difference_counts_wins() -> None:
    paired = paired_difference(np.array([0.9, 0.8, 0.7]), np.array([0.8, 0.85, 0.6]))
    assert paired.mean == pytest.approx(0.05)
    assert (paired.wins, paired.n) == (2, 3)
    with pytest.raises(ValueError):
        paired_difference(np.array([1.0]), np.array([1.0, 2.0]))


def run(strategy: str, seed: int, accuracy: list[float], weights: dict | None = None) -> dict:
    rounds = [{"round": i, "labels": 20 + 20 * i, "cost": 10.0 * (20 + 20 * i), "accuracy": a,
               "train_seconds": 1.0, "query_seconds": 0.5, "mean_strategy_weights": weights}
              for i, a in enumerate(accuracy)]
    return {"strategy": strategy, "seed": seed, "split_digest": "x", "initial": [], "rounds": rounds}


def test_summary_and_goal_check() -> None:
    runs = []
    for seed in range(3):
        runs.append(run("random", seed, [0.3, 0.5, 0.7]))
        runs.append(run("margin", seed, [0.3, 0.7, 0.8]))
        runs.append(run("entropy", seed, [0.3, 0.4, 0.6 + 0.01 * seed]))
        runs.append(run("autoal", seed, [0.3, 0.7 + 0.01 * seed, 0.8], {"margin": 0.5, "entropy": 0.5}))
        runs.append(run("libact.albl", seed, [0.3, 0.55, 0.75]))
        runs.append(run("skactiveml.badge", seed, [0.3, 0.72, 0.8]))
        runs.append(run("autoal_uniform", seed, [0.3, 0.9, 0.9]))  # the ablation is not a candidate
    rows = {r["strategy"]: r for r in summarize(runs)}
    assert rows["random"]["aubc_mean"] == pytest.approx(0.5)
    assert rows["margin"]["labels_to_random_final"] == 40  # reaches random's final 0.7 at 40 labels
    assert rows["margin"]["cost_saved_vs_random"] == pytest.approx(1 - 400 / 600)
    assert rows["margin"]["vs_random"].wins == 3
    assert rows["entropy"]["labels_to_random_final"] is None
    check = goal_check(runs)
    assert check["best_candidate"] == "margin"  # autoal, random and peers are not candidates
    assert check["meets_best"] and check["meets_random"] and check["meets_albl"]
    assert check["best_peer"] == "skactiveml.badge" and check["vs_best_peer"].mean < 0
    assert check["vs_uniform"].mean < 0 and check["vs_uniform"].wins == 0
    assert goal_check(runs, Goals()) == check
    assert check["labels_share"] == pytest.approx(40 / 60)  # 0.7 at 40 labels; random reaches it at 60
    assert not check["meets_labels"]
    lines = "\n".join(goal_lines(check))
    assert "goal (>= best - 0.002) met" in lines and "goal (above, >= 90% wins) met" in lines
    assert "share of random's: 67%; goal (<= 50%) NOT met" in lines
    # AutoAL's AUBC is margin's + 0.005
    assert "(wanted on two data sets): no" in "\n".join(goal_lines(goal_check(runs, Goals(best_margin=0.01))))
    lenient = Goals(best_margin=0.001, labels_share_max=0.7)
    assert goal_check(runs, lenient)["meets_labels"] and goal_check(runs, lenient)["ahead_of_best"]
    strict = Goals(best_tolerance=-0.05, random_min_difference=0.5, albl_min_difference=0.5)
    strict_check = goal_check(runs, strict)
    assert not (strict_check["meets_best"] or strict_check["meets_random"] or strict_check["meets_albl"])
    lines = "\n".join(goal_lines(strict_check, strict))
    assert "goal (>= best + 0.05) NOT met" in lines
    assert "goal (above by more than 0.5, >= 90% wins) NOT met" in lines
    assert "libact ALBL" in lines and "goal (above by more than 0.5) NOT met" in lines


def test_runs_on_the_tuned_model_are_checked_against_random_on_the_tuned_model(tmp_path) -> None:
    from autoal_bench.report import split_by_task_model, write_report

    runs = []
    for seed in range(2):
        runs.append(run("random", seed, [0.3, 0.5, 0.6]))
        runs.append(run("autoal", seed, [0.3, 0.6, 0.7]))
        runs.append(run("random+tuned", seed, [0.5, 0.7, 0.8]))  # the tuned model's random is the baseline
        runs.append(run("margin+tuned", seed, [0.5, 0.75, 0.85]))
        runs.append(run("autoal+tuned", seed, [0.5, 0.8, 0.9]))
    rows = {r["strategy"]: r for r in summarize(runs)}
    assert rows["autoal+tuned"]["vs_random"].mean == pytest.approx(0.075)  # against random+tuned, not random
    assert rows["autoal+tuned"]["labels_to_random_final"] == 40  # random+tuned's final 0.8
    assert rows["random+tuned"]["vs_random"] is None and rows["autoal"]["labels_to_random_final"] == 40
    split = split_by_task_model(runs)
    assert set(split) == {"", "+tuned"}
    assert {r["strategy"] for r in split["+tuned"]} == {"random", "margin", "autoal"}
    tuned = goal_check(split["+tuned"])
    assert tuned["best_candidate"] == "margin" and tuned["vs_random"].wins == 2
    assert tuned["labels_share"] == pytest.approx(40 / 60)
    assert goal_check(runs)["best_candidate"] is None  # a tuned run is no candidate for the fixed model's AutoAL
    results = {"settings": {"init": 20, "batch": 20, "budget": 60, "test_fraction": 0.2, "max_test": 2000,
                            "cost_model": "constant", "seeds": 2,
                            "engine": {"model": {"backbone": "small_cnn", "image_size": 16, "train_steps": 10},
                                       "strategies": ["margin"], "search": {"iterations": 1, "fitnet_steps": 1}}},
               "datasets": {"toy": {"runs": runs, "n_pool": 100, "n_test": 20, "n_classes": 2,
                                    "cost_summary": {"mean": 10.0, "min": 10.0, "max": 10.0}}}}
    report = write_report(results, tmp_path, plots=False).read_text()
    tuned_section = report.split("On the tuned task model")[1]
    assert "AutoAL vs random: paired +0.075 (2/2 wins)" in tuned_section
    assert "AutoAL was not run" not in report


def test_complete_seeds_drops_seeds_some_strategy_has_not_finished() -> None:
    runs = [run("random", 0, [0.3, 0.5]), run("margin", 0, [0.3, 0.6]), run("random", 1, [0.3, 0.4])]
    kept, seeds = complete_seeds(runs)
    assert seeds == [0]
    assert sorted(r["strategy"] for r in kept) == ["margin", "random"]


def test_the_tuning_section_pairs_tuned_with_fixed_runs_and_measures_drops_and_the_tuning_share() -> None:
    from autoal_bench.report import curves
    from autoal_bench.tuning_report import largest_drops, tuning_lines, tuning_rows

    def run(strategy, seed, accuracies, tuning=0.0):
        rounds = [{"round": i, "labels": 20 + 20 * i, "cost": 0.0, "accuracy": a, "train_seconds": 1.0,
                   "query_seconds": 0.0, "tuning_seconds": tuning if i == 0 else 0.0}
                  for i, a in enumerate(accuracies)]
        return {"strategy": strategy, "seed": seed, "rounds": rounds}

    runs = [run("random", 0, [0.5, 0.7, 0.6]), run("random", 1, [0.5, 0.6, 0.7]),
            run("random+tuned", 0, [0.6, 0.8, 0.8], tuning=3.0), run("random+tuned", 1, [0.55, 0.7, 0.69], 3.0),
            run("shallow", 0, [0.4, 0.5, 0.6]), run("shallow", 1, [0.4, 0.5, 0.6]),
            run("autoal+tuned", 0, [0.6, 0.9, 0.9], tuning=3.0), run("autoal+tuned", 1, [0.55, 0.6, 0.69], 3.0)]
    np.testing.assert_allclose(largest_drops(np.array([[0.5, 0.7, 0.6], [0.5, 0.6, 0.7]])), [0.1, 0.0])
    rows = {r["strategy"]: r for r in tuning_rows(curves(runs))}
    assert set(rows) == {"random", "random+tuned", "autoal+tuned"}
    autoal = rows["autoal+tuned"]  # compared with random's picks under the same (tuned) model
    assert autoal["vs_random"].n == 2 and autoal["vs_random"].wins == 1 and autoal["vs_fixed"] is None
    tuned = rows["random+tuned"]
    assert tuned["vs_fixed"].wins == 2 and tuned["vs_fixed"].mean > 0 and rows["random"]["vs_fixed"] is None
    assert tuned["tuning_share"] == pytest.approx(3.0 / 6.0)  # 3 s of tuning, 3 rounds x 1 s of training
    assert tuned["largest_drop"] == pytest.approx(0.01) and rows["random"]["largest_drop"] == pytest.approx(0.1)
    assert any("Model floor" in line for line in tuning_lines(curves(runs)))


def test_the_cost_aware_check_reads_the_seconds_to_the_cost_blind_final_accuracy() -> None:
    runs = []
    for seed in range(2):
        runs.append(run("autoal", seed, [0.3, 0.7, 0.8]))  # 10 s a label: 0.8 at 60 labels, 600 s
        cheap = run("autoal_cost", seed, [0.3, 0.6, 0.75, 0.8])  # 4 s a label, one round more
        for rnd in cheap["rounds"]:
            rnd["cost"] = 4.0 * rnd["labels"]
        runs.append(cheap)
    check = cost_aware_check(curves(runs))
    assert check["target_accuracy"] == pytest.approx(0.8)
    assert check["blind_seconds"] == pytest.approx(600.0) and check["aware_seconds"] == pytest.approx(320.0)
    assert check["aware_labels"] == 80 and check["saved"] == pytest.approx(1 - 320 / 600)
    assert check["common_labels"] == 60 and check["aubc_difference"].mean < 0  # behind at equal labels
    assert "47% of the annotator-seconds saved" in "\n".join(cost_aware_lines(check))
    assert cost_aware_check(curves([r for r in runs if r["strategy"] == "autoal"])) is None
    for r in runs:  # the same runs as the ranking given every task's seconds
        r["strategy"] = "autoal_cost_known" if r["strategy"] == "autoal_cost" else r["strategy"]
    assert cost_aware_check(curves(runs)) is None
    known = cost_aware_check(curves(runs), "autoal_cost_known")
    assert known["saved"] == pytest.approx(1 - 320 / 600)
    assert "given every task's seconds (`autoal_cost_known`)" in "\n".join(cost_aware_lines(known))


def test_the_goal_check_compares_autoal_with_its_pruned_variant(tmp_path) -> None:
    from autoal_bench.report import plot_dataset

    runs = []
    for seed in range(2):
        runs.append(run("autoal", seed, [0.3, 0.6, 0.7]))
        runs.append(run("autoal_pruned", seed, [0.3, 0.7, 0.8], {"margin": 0.5, "badge": 0.5, "entropy": 0.0}))
    check = goal_check(runs)
    assert check["vs_pruned"].mean < 0 and check["vs_pruned"].wins == 0  # autoal - pruned
    assert "candidate pool pruned each round, `autoal_pruned`: paired -0.075" in "\n".join(goal_lines(check))
    names = [path.name for path in plot_dataset("toy", runs, tmp_path)]
    assert "toy_autoal_pruned_weights.png" in names


def test_active_shares_counts_the_seeds_in_which_each_candidate_survived() -> None:
    from autoal_bench.report import active_shares

    def pruned(seed, active):
        rounds = [{"labels": 20 + 20 * i, "active_candidates": a,
                   "pruning_rewards": {"margin": 0.1, "kmeans": 0.2, "loss": 0.0}} for i, a in enumerate(active)]
        return {"strategy": "autoal_pruned", "seed": seed, "rounds": [*rounds, {"labels": 80}]}

    runs = [pruned(0, [["margin", "kmeans", "loss"], ["kmeans"], ["kmeans", "margin"]]),
            pruned(1, [["margin", "kmeans", "loss"], ["kmeans", "margin"], ["kmeans"]]),
            run("autoal", 0, [0.3, 0.5])]
    names, labels, shares = active_shares(runs, "autoal_pruned")
    assert names == ["kmeans", "loss", "margin"]  # diversity, learned, uncertainty
    np.testing.assert_allclose(labels, [20, 40, 60])  # the last round chose nothing
    np.testing.assert_allclose(shares, [[1, 1, 1], [1, 0, 0], [1, 0.5, 0.5]])
    assert active_shares(runs, "autoal_pruned_search")[0] == []
