"""The benchmark end to end on digits with tiny engine settings (seconds, not minutes)."""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import pytest

from autoal_bench.cli import SCHEMA, main
from autoal_bench.costs import item_costs
from autoal_bench.datasets import load_digits_dataset
from autoal_bench.goals import Goals
from autoal_bench.report import summarize
from autoal_bench.selectors import engine_selector
from autoal_bench.simulate import ReplaySettings, RoundState, make_split, run_dataset
from autoal_engine.config import DEFAULT_STRATEGIES, EngineConfig

TINY = ["--image-size", "8", "--train-steps", "30", "--fitnet-steps", "20", "--search-iterations", "20",
        "--threads", "1"]


def tiny_config() -> EngineConfig:
    config = EngineConfig()
    config.model.image_size = 8
    config.model.train_steps = 30
    config.model.threads = 1
    config.holdout.fitnet_steps = 20
    config.search.iterations = 20
    config.tuning.enabled = False  # the fixed recipe (the bench's own default; tuned runs are tested apart)
    return config


class OneClassSelector:
    """Deliberately bad: labels only items of the lowest class still unlabeled (it reads the oracle)."""

    name = "one_class"
    uses_costs = False

    def engine_config(self, base: EngineConfig) -> EngineConfig:
        config = copy.deepcopy(base)
        config.strategies = ("random",)
        config.search.enabled = False
        return config

    def start(self, n_pool: int, initial: np.ndarray, budget: int, seed: int) -> None:
        pass

    def select(self, state: RoundState) -> tuple[np.ndarray, dict[str, Any]]:
        labels = state.oracle_labels[state.unlabeled]
        order = np.argsort(labels, kind="stable")  # class 0 first, then class 1 when 0 runs out
        return state.unlabeled[order[: state.batch_size]], {}


STRATEGIES = "random,margin,autoal,autoal_search"


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Any]:
    out = tmp_path_factory.mktemp("bench")
    code = main(["--dataset", "digits", "--strategies", STRATEGIES, "--init", "20", "--batch", "20",
                 "--budget", "60", "--seeds", "2", "--out", str(out), "--no-progress", *TINY])
    return code, out


def test_cli_writes_results_report_and_plots(cli_run: tuple[int, Any]) -> None:
    code, out = cli_run
    assert code == 0
    for name in ("results.json", "report.md", "digits_accuracy_vs_labels.png", "digits_accuracy_vs_cost.png",
                 "digits_autoal_weights.png"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    assert "| margin | 2 |" in report and "| autoal | 2 |" in report and "| autoal_search | 2 |" in report
    assert "AutoAL vs random" in report and "learned weights (AutoAL search on), `autoal_search`" in report
    assert "goal (>= best - 0.002)" in report and "goal (above, >= 90% wins)" in report  # the default goals


def test_results_schema_and_pairing(cli_run: tuple[int, Any]) -> None:
    _, out = cli_run
    results = json.loads((out / "results.json").read_text())
    assert results["schema"] == SCHEMA
    assert results["settings"]["seeds"] == [0, 1]
    assert results["settings"]["goals"] == Goals().to_dict()
    digits = results["datasets"]["digits"]
    assert digits["n_pool"] + digits["n_test"] == 1797
    runs = digits["runs"]
    assert sorted((r["seed"], r["strategy"]) for r in runs) == [
        (s, n) for s in (0, 1) for n in ("autoal", "autoal_search", "margin", "random")
    ]
    for run in runs:
        assert [r["labels"] for r in run["rounds"]] == [20, 40, 60]
        assert [r["cost"] for r in run["rounds"]] == [200.0, 400.0, 600.0]  # constant model: 10 s a label
        assert all(0.0 <= r["accuracy"] <= 1.0 for r in run["rounds"])
        assert {"train_seconds", "query_seconds"} <= set(run["rounds"][0])
    for seed in (0, 1):
        same_seed = [r for r in runs if r["seed"] == seed]
        assert len({tuple(r["initial"]) for r in same_seed}) == 1  # one initial set per seed
        assert len({r["split_digest"] for r in same_seed}) == 1  # one split per seed
        assert len({r["rounds"][0]["accuracy"] for r in same_seed}) == 1  # same first model
    assert {tuple(r["initial"]) for r in runs if r["seed"] == 0} != {tuple(r["initial"]) for r in runs
                                                                     if r["seed"] == 1}
    searched = next(r for r in runs if r["strategy"] == "autoal_search")
    weights = searched["rounds"][0]["mean_strategy_weights"]
    assert set(weights) == set(EngineConfig().strategies)
    assert abs(sum(weights.values()) - 1.0) < 1e-3
    default = next(r for r in runs if r["strategy"] == "autoal")  # equal weights by default: none recorded
    assert "mean_strategy_weights" not in default["rounds"][0]


def test_resume_skips_finished_runs_and_refuses_other_settings(cli_run: tuple[int, Any]) -> None:
    _, out = cli_run
    before = (out / "results.json").read_text()
    args = ["--dataset", "digits", "--strategies", STRATEGIES, "--init", "20", "--batch", "20",
            "--budget", "60", "--seeds", "2", "--out", str(out), "--no-progress", "--no-plots", *TINY]
    assert main(args + ["--resume"]) == 0
    assert json.loads((out / "results.json").read_text())["datasets"] == json.loads(before)["datasets"]
    assert main(args) == 2  # results.json exists and --resume is missing
    changed = [a if a != "60" else "80" for a in args]
    assert main(changed + ["--resume"]) == 2  # another budget
    other_model = [a if a != "30" else "31" for a in args]
    assert main(other_model + ["--resume"]) == 2  # another task-model recipe


def test_resume_accepts_other_search_settings_and_autoal_runs_record_theirs(cli_run: tuple[int, Any]) -> None:
    """The search settings change only AutoAL runs, so a resumed run may add strategies under other ones."""
    _, out = cli_run
    results = json.loads((out / "results.json").read_text())
    autoal = [r for r in results["datasets"]["digits"]["runs"] if r["strategy"].startswith("autoal")]
    assert len(autoal) == 4 and all(r["autoal_settings"]["search"]["iterations"] == 20 for r in autoal)
    assert all(r["autoal_settings"]["batch_diversity"] == "kmeans" for r in autoal)
    assert {r["strategy"]: r["autoal_settings"]["search"]["enabled"] for r in autoal} == {
        "autoal": False, "autoal_search": True}
    singles = [r for r in results["datasets"]["digits"]["runs"] if not r["strategy"].startswith("autoal")]
    assert singles and all("autoal_settings" not in r for r in singles)
    args = ["--dataset", "digits", "--strategies", "random,least_confidence", "--init", "20", "--batch", "20",
            "--budget", "60", "--seeds", "1", "--out", str(out), "--no-progress", "--no-plots", *TINY]
    other_search = [a if a != "20" or i == 0 or args[i - 1] != "--search-iterations" else "25"
                    for i, a in enumerate(args)]
    assert other_search != args
    assert main(other_search + ["--resume"]) == 0
    runs = json.loads((out / "results.json").read_text())["datasets"]["digits"]["runs"]
    assert sorted(r["strategy"] for r in runs if r["seed"] == 0) == ["autoal", "autoal_search",
                                                                    "least_confidence", "margin", "random"]


def old_layout(engine: dict[str, Any]) -> dict[str, Any]:
    """Engine settings as results files had them before mixture.* and holdout.* moved out of search.*."""
    old = copy.deepcopy(engine)
    old["search"].update(old.pop("mixture"), **old.pop("holdout"))
    return old


def test_resume_and_report_accept_results_written_before_the_config_rename(cli_run: tuple[int, Any],
                                                                           tmp_path) -> None:
    _, out = cli_run
    results = json.loads((out / "results.json").read_text())
    results["settings"]["engine"] = old_layout(results["settings"]["engine"])
    for run in results["datasets"]["digits"]["runs"]:
        if "autoal_settings" in run:
            run["autoal_settings"] = old_layout(run["autoal_settings"])
    assert "holdout" not in results["settings"]["engine"]
    assert results["settings"]["engine"]["search"]["fitnet_steps"] == 20
    old_report = tmp_path / "report_only"
    old_report.mkdir()
    (old_report / "results.json").write_text(json.dumps(results))
    assert main(["--report-only", "--out", str(old_report), "--no-plots"]) == 0
    assert "FitNet 20 steps" in (old_report / "report.md").read_text()
    (tmp_path / "results.json").write_text(json.dumps(results))
    args = ["--dataset", "digits", "--strategies", STRATEGIES, "--init", "20", "--batch", "20",
            "--budget", "60", "--seeds", "2", "--out", str(tmp_path), "--no-progress", "--no-plots", *TINY]
    assert main(args + ["--resume"]) == 0
    resumed = json.loads((tmp_path / "results.json").read_text())
    assert resumed["datasets"]["digits"]["runs"] == results["datasets"]["digits"]["runs"]  # nothing re-run
    assert resumed["settings"]["engine"]["holdout"]["fitnet_steps"] == 20  # now in the new layout
    assert "FitNet 20 steps" in (tmp_path / "report.md").read_text()


def test_report_only_rechecks_against_other_goals(cli_run: tuple[int, Any], tmp_path, capsys) -> None:
    _, out = cli_run
    results = json.loads((out / "results.json").read_text())
    del results["settings"]["goals"]  # a results file from before the goals were recorded: the defaults
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert main(["--report-only", "--out", str(tmp_path), "--no-plots"]) == 0
    assert "goal (>= best - 0.002)" in (tmp_path / "report.md").read_text()
    goals_file = tmp_path / "goals.json"
    goals_file.write_text(json.dumps({"best_tolerance": 0.25, "random_min_win_share": 0.5}))
    for given in (goals_file.read_text(), str(goals_file)):
        assert main(["--report-only", "--out", str(tmp_path), "--no-plots", "--goals", given]) == 0
        report = (tmp_path / "report.md").read_text()
        assert "goal (>= best - 0.25)" in report and "goal (above, >= 50% wins)" in report
        recorded = json.loads((tmp_path / "results.json").read_text())["settings"]["goals"]
        assert recorded == {**Goals().to_dict(), "best_tolerance": 0.25, "random_min_win_share": 0.5}
    assert main(["--report-only", "--out", str(tmp_path), "--goals", '{"beat_random": 1}']) == 2
    assert "unknown goal 'beat_random'" in capsys.readouterr().err
    assert main(["--report-only", "--out", str(tmp_path), "--goals", '{"random_min_win_share": 2}']) == 2
    assert "random_min_win_share: must be in [0, 1]" in capsys.readouterr().err


def test_bad_input_gives_a_message_not_a_traceback(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dataset", "nope", "--out", str(tmp_path / "a"), *TINY]) == 2
    assert "dataset 'nope'" in capsys.readouterr().err
    assert main(["--dataset", "digits", "--strategies", "margn", "--out", str(tmp_path / "b")]) == 2
    assert "unknown strategy 'margn'" in capsys.readouterr().err
    assert main(["--dataset", "digits", "--budget", "10", "--init", "20", "--out", str(tmp_path / "c")]) == 2
    assert "'budget'" in capsys.readouterr().err
    assert main(["--dataset", "digits", "--fast-path", "--backbone-growth", "0.5", "--out", str(tmp_path / "d")]) == 2
    assert "--backbone-growth must be >= 1, got 0.5" in capsys.readouterr().err
    assert main(["--dataset", "digits", "--tuning-trials", "0", "--out", str(tmp_path / "e")]) == 2
    assert "--tuning-trials must be >= 1, got 0" in capsys.readouterr().err


def test_one_class_strategy_scores_below_random() -> None:
    dataset = load_digits_dataset()
    replay = ReplaySettings(init=20, batch=20, budget=80)
    costs = item_costs(dataset, "constant")
    runs = run_dataset(dataset, costs, [engine_selector("random"), OneClassSelector()], replay, tiny_config(),
                       seeds=[0, 1])
    rows = {row["strategy"]: row for row in summarize(runs)}
    assert rows["one_class"]["aubc_mean"] < rows["random"]["aubc_mean"] - 0.05
    assert rows["one_class"]["vs_random"].wins == 0
    split = make_split(dataset.labels, replay, 0)
    initial = next(r for r in runs if r["strategy"] == "one_class" and r["seed"] == 0)["initial"]
    assert initial == split.pool[split.initial].tolist()  # the recorded initial set is the seed's


def test_batch_of_one_works() -> None:
    dataset = load_digits_dataset()
    replay = ReplaySettings(init=20, batch=1, budget=23)
    runs = run_dataset(dataset, item_costs(dataset, "constant"), [engine_selector("margin")], replay, tiny_config(),
                       seeds=[3])
    assert [r["labels"] for r in runs[0]["rounds"]] == [20, 21, 22, 23]


def test_autoal_follows_the_engine_config_and_its_variants_force_the_weights() -> None:
    """autoal is the configuration as given (default: equal weights); autoal_search and autoal_uniform
    differ from it only in the search switch."""
    base = tiny_config()
    autoal = engine_selector("autoal").engine_config(base)
    uniform = engine_selector("autoal_uniform").engine_config(base)
    searched = engine_selector("autoal_search").engine_config(base)
    assert uniform.strategies == autoal.strategies == searched.strategies == base.strategies
    assert not autoal.search.enabled and not uniform.search.enabled and searched.search.enabled
    base.search.enabled = True
    assert engine_selector("autoal").engine_config(base).search.enabled
    assert not engine_selector("autoal_uniform").engine_config(base).search.enabled
    assert uniform.cost.gamma == 0.0 == searched.cost.gamma
    dataset = load_digits_dataset()
    replay = ReplaySettings(init=20, batch=10, budget=30)
    runs = run_dataset(dataset, item_costs(dataset, "constant"), [engine_selector("autoal_uniform")], replay,
                       base, seeds=[0])
    assert [r["labels"] for r in runs[0]["rounds"]] == [20, 30]
    assert runs[0]["autoal_settings"]["search"]["enabled"] is False


def test_shallow_labels_what_random_labels_and_scores_with_pca_and_logistic_regression() -> None:
    from autoal_bench.shallow import ShallowSelector, shallow_accuracy

    dataset = load_digits_dataset()
    replay = ReplaySettings(init=20, batch=20, budget=60)
    runs = run_dataset(dataset, item_costs(dataset, "constant"), [engine_selector("random"), ShallowSelector()],
                       replay, tiny_config(), seeds=[0])
    random_run, shallow_run = runs
    assert shallow_run["strategy"] == "shallow"
    assert [r["labels"] for r in shallow_run["rounds"]] == [20, 40, 60]
    split = make_split(dataset.labels, replay, 0)
    # the same picks: the first round's accuracy of a PCA + logistic regression on random's initial set ...
    first = split.pool[split.initial]
    expected = shallow_accuracy(dataset.inputs[first], dataset.labels[first], dataset.inputs[split.test],
                                dataset.labels[split.test], 0)
    assert shallow_run["rounds"][0]["accuracy"] == pytest.approx(expected, abs=1e-6)
    # ... and in later rounds too (a model of its own, not the engine's CNN)
    assert [r["cost"] for r in shallow_run["rounds"]] == [r["cost"] for r in random_run["rounds"]]
    assert shallow_run["rounds"][-1]["accuracy"] != random_run["rounds"][-1]["accuracy"]


def test_tuning_on_names_the_runs_tuned_records_each_tuning_and_carries_the_incumbent() -> None:
    from autoal_bench.selectors import with_tuning

    base = tiny_config()
    base.tuning.budget_seconds, base.tuning.families = 5.0, ("frozen",)
    base.tuning.min_epochs, base.tuning.max_epochs, base.tuning.max_trials = 3, 9, 4
    tuned = with_tuning(engine_selector("random"), True, base)
    fixed = with_tuning(engine_selector("random"), False, base)
    assert tuned.name == "random+tuned" and fixed.name == "random"
    assert tuned.engine_config(base).tuning.enabled and not fixed.engine_config(base).tuning.enabled
    dataset = load_digits_dataset()
    replay = ReplaySettings(init=20, batch=10, budget=40)
    runs = run_dataset(dataset, item_costs(dataset, "constant"), [tuned], replay, base, seeds=[0])
    rounds = runs[0]["rounds"]
    assert runs[0]["tuning"]["enabled"] is True
    assert rounds[0]["tuning"]["trials"] >= 1 and rounds[0]["tuning_seconds"] > 0  # never tuned: tunes at 20
    assert "tuning" in rounds[1]  # 30 >= 1.5 x 20
    assert "tuning" not in rounds[2] and rounds[2]["tuning_seconds"] == 0  # 40 < 1.5 x 30: the incumbent


def test_tuning_trials_bound_the_tuning_by_trials_and_make_tuned_runs_repeat_exactly() -> None:
    """--tuning-trials swaps the CPU-second budget for a trial count, so the same labels and seed tune the
    same way however loaded the machine is: two runs agree in every round's adopted model and accuracy."""
    from autoal_bench.cli import UNBOUNDED_SECONDS, engine_config, parse_args
    from autoal_bench.selectors import with_tuning

    config = engine_config(parse_args(["--dataset", "digits", "--out", "x", "--tuning-trials", "3", "--batch", "10"]))
    assert config.tuning.max_trials == 3 and config.tuning.budget_seconds == UNBOUNDED_SECONDS
    base = tiny_config()
    base.tuning.families, base.tuning.min_epochs, base.tuning.max_epochs = ("frozen",), 3, 9
    base.tuning.max_trials, base.tuning.budget_seconds = 3, UNBOUNDED_SECONDS
    dataset = load_digits_dataset()
    replay = ReplaySettings(init=20, batch=10, budget=30)
    tuned = with_tuning(engine_selector("random"), True, base)
    first, second = (run_dataset(dataset, item_costs(dataset, "constant"), [tuned], replay, base, seeds=[0])[0]
                     for _ in range(2))
    assert [r["tuning"]["trials"] for r in first["rounds"] if "tuning" in r] == [3, 3]
    assert [r["accuracy"] for r in first["rounds"]] == [r["accuracy"] for r in second["rounds"]]
    assert [r.get("tuning") for r in first["rounds"]] == [r.get("tuning") for r in second["rounds"]]  # recipes too


def test_autoal_paper_runs_the_released_codes_choices_on_the_base_task_model() -> None:
    base = tiny_config()
    paper = engine_selector("autoal_paper").engine_config(base)
    released = EngineConfig.paper()
    assert paper.strategies == released.strategies and paper.mixture.candidate_scores == "vote"
    assert paper.search.enabled and paper.search.weighting == "logits" and paper.batch_diversity == "none"
    assert paper.model == base.model and paper.search.iterations == base.search.iterations
    dataset = load_digits_dataset()
    runs = run_dataset(dataset, item_costs(dataset, "constant"), [engine_selector("autoal_paper")],
                       ReplaySettings(init=20, batch=10, budget=30), base, seeds=[0])
    assert runs[0]["strategy"] == "autoal_paper" and runs[0]["autoal_settings"]["search"]["weighting"] == "logits"


def test_fast_path_refits_between_full_fits_at_the_growth_factor_and_names_the_runs_fast() -> None:
    from autoal_bench.selectors import with_tuning

    base = tiny_config()
    fast = with_tuning(engine_selector("autoal"), False, base, backbone_growth=1.5)
    assert fast.name == "autoal+fast" and fast.backbone_growth == 1.5
    dataset = load_digits_dataset()
    replay = ReplaySettings(init=20, batch=5, budget=40)
    runs = run_dataset(dataset, item_costs(dataset, "constant"), [fast, engine_selector("autoal")], replay, base,
                       seeds=[0])
    two_speed, slow = runs
    labels = [r["labels"] for r in two_speed["rounds"]]
    assert labels == [r["labels"] for r in slow["rounds"]] == [20, 25, 30, 35, 40]
    # full at 20, refits at 25 (< 1.5 x 20), full at 30, refits at 35 and 40 (< 45)
    assert [r["path"] for r in two_speed["rounds"]] == ["full", "fast", "full", "fast", "fast"]
    assert "path" not in slow["rounds"][0]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in two_speed["rounds"])
    assert two_speed["rounds"][0]["accuracy"] == slow["rounds"][0]["accuracy"]  # the same first full fit


def test_the_backbone_growth_sets_when_the_two_speeds_train_the_backbone_again() -> None:
    from autoal_bench.simulate import TwoSpeed

    def schedule(growth: float) -> str:
        two_speed, paths = TwoSpeed(growth), ""
        for labels in range(20, 61, 5):
            if two_speed.refittable(labels):
                paths += "."
            else:  # a full fit: the backbone of ``labels`` labels (no engine needed for the schedule)
                two_speed.full, two_speed.backbone_labels = object(), labels
                paths += "F"
        return paths

    assert schedule(1.5) == "F.F..F..."  # 20, 30 (>= 30), 45 (>= 45)
    assert schedule(1.2) == "FFF.F.F.F"  # 20, 25 (>= 24), 30 (>= 30), 40 (>= 36), 50 (>= 48), 60 (>= 60)
    assert schedule(1.0) == "FFFFFFFFF"  # a full fit every round


def test_a_pruned_run_records_each_rounds_active_candidates_and_rewards() -> None:
    dataset = load_digits_dataset()
    replay = ReplaySettings(init=20, batch=10, budget=50)
    (run,) = run_dataset(dataset, item_costs(dataset, "constant"), [engine_selector("autoal_pruned")], replay,
                         tiny_config(), seeds=[0])
    names = set(DEFAULT_STRATEGIES)
    for record in run["rounds"][:-1]:  # the last round (the budget reached) ranks nothing
        assert set(record["active_candidates"]) <= names and len(record["active_candidates"]) >= 3
        assert set(record["pruning_rewards"]) == names
        assert all(0.0 < reward <= 1.0 for reward in record["pruning_rewards"].values())


def test_the_known_cost_run_ranks_with_the_true_seconds_from_the_first_round() -> None:
    """autoal_cost_known hands the engine every pool item's seconds: no prediction and no gate, so its first
    picks are already cheap, while autoal_cost, whose cost model cannot be trusted from 20 labels, ranks as
    the cost-blind autoal does."""
    dataset = load_digits_dataset()
    replay = ReplaySettings(init=20, batch=20, budget=60)
    costs = item_costs(dataset, "lognormal", rho=0.0, sigma=1.0)
    selectors = [engine_selector(name) for name in ("autoal", "autoal_cost", "autoal_cost_known")]
    runs = {run["strategy"]: run for run in run_dataset(dataset, costs, selectors, replay, tiny_config(), seeds=[0])}
    first_round = {name: run["rounds"][1]["cost"] - run["rounds"][0]["cost"] for name, run in runs.items()}
    assert len({run["rounds"][0]["cost"] for run in runs.values()}) == 1  # the same initial set
    assert first_round["autoal_cost"] == pytest.approx(first_round["autoal"])  # the gate holds cost off
    assert first_round["autoal_cost_known"] < 0.8 * first_round["autoal"]
