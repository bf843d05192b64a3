"""Summaries, the markdown report and the PNG plots, all computed from a results.json dictionary.

Per data set and strategy (over seeds): normalized AUBC mean +- std; the paired AUBC difference vs random on
the same seeds with wins/n; final accuracy; labels needed to reach random's final accuracy and the labeling
cost saved vs random at that target (both read off the seed-averaged curves); mean train and query seconds
per round. Then the goal check against the results' `Goals` (``settings.goals``, see goals.py): AutoAL vs the
best single candidate in hindsight (within a tolerance, and whether it is ahead by a margin), vs random (paired
wins, and the labels it needs to reach random's final accuracy as a share of random's), vs ALBL; for
information also vs the best other library's strategy and vs the equal-weight, learned and pruned variants.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autoal_bench.goals import Goals
from autoal_bench.metrics import cost_saved, first_reaching, normalized_aubc, paired, paired_difference
from autoal_bench.selectors import (
    AUTOAL,
    AUTOAL_COST,
    AUTOAL_COST_KNOWN,
    AUTOAL_NAMES,
    AUTOAL_PRUNED,
    AUTOAL_PRUNED_SEARCH,
    AUTOAL_SEARCH,
    AUTOAL_UNIFORM,
    FAST_SUFFIX,
    TUNED_SUFFIX,
    task_model,
)
from autoal_bench.tuning_report import SHALLOW, tuning_lines

logger = logging.getLogger(__name__)

RANDOM = "random"
NON_CANDIDATES = (RANDOM, *AUTOAL_NAMES)
ALBL = "libact.albl"
MODEL_NAMES = {TUNED_SUFFIX: "tuned task model", FAST_SUFFIX: "fast path",
               TUNED_SUFFIX + FAST_SUFFIX: "tuned task model's fast path"}


@dataclass
class Curve:
    """One strategy's runs on one data set, aligned by round: arrays shaped (seeds, rounds)."""

    seeds: list[int]
    labels: np.ndarray
    cost: np.ndarray
    accuracy: np.ndarray
    train_seconds: np.ndarray
    query_seconds: np.ndarray
    weights: list[list[dict[str, float]]]  # per seed, per round: AutoAL's mean strategy weights
    tuning_seconds: np.ndarray | None = None  # the model tuning's seconds per round (0: none ran)
    cv_accuracy: np.ndarray | None = None  # the tuning's CV accuracy of the chosen model (NaN: no tuning)

    @property
    def aubc(self) -> np.ndarray:
        pairs = zip(self.labels, self.accuracy, strict=True)
        return np.array([normalized_aubc(labels, accuracy) for labels, accuracy in pairs])


def curves(runs: list[dict[str, Any]]) -> dict[str, Curve]:
    """Group runs by strategy; only runs with the most common number of rounds are kept (complete runs)."""
    by_strategy: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_strategy.setdefault(run["strategy"], []).append(run)
    result = {}
    for name, group in by_strategy.items():
        lengths = [len(r["rounds"]) for r in group]
        full = max(set(lengths), key=lengths.count)
        group = sorted((r for r in group if len(r["rounds"]) == full), key=lambda r: r["seed"])

        def column(key: str, group: list[dict[str, Any]] = group) -> np.ndarray:
            return np.array([[rnd.get(key, 0.0) for rnd in r["rounds"]] for r in group], dtype=np.float64)

        result[name] = Curve(
            seeds=[r["seed"] for r in group],
            labels=column("labels"),
            cost=column("cost"),
            accuracy=column("accuracy"),
            train_seconds=column("train_seconds"),
            query_seconds=column("query_seconds"),
            weights=[[rnd.get("mean_strategy_weights") or {} for rnd in r["rounds"]] for r in group],
            tuning_seconds=column("tuning_seconds"),
            cv_accuracy=np.array([[_cv(rnd) for rnd in r["rounds"]] for r in group], dtype=np.float64),
        )
    return result


def _cv(record: dict[str, Any]) -> float:
    value = (record.get("tuning") or {}).get("cv_accuracy")
    return np.nan if value is None else float(value)


def complete_seeds(runs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[int]]:
    """Only the runs of seeds on which every strategy finished (an interrupted benchmark stays paired)."""
    strategies = {r["strategy"] for r in runs}
    by_seed: dict[int, set[str]] = {}
    for run in runs:
        by_seed.setdefault(run["seed"], set()).add(run["strategy"])
    seeds = sorted(s for s, names in by_seed.items() if names == strategies)
    return [r for r in runs if r["seed"] in seeds], seeds


def split_by_task_model(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The runs of each task model, their strategies named without the model's suffix, so that runs on one
    model are compared with each other (``autoal+tuned`` with ``random+tuned``), never across models."""
    split: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        model = task_model(run["strategy"])
        split.setdefault(model, []).append({**run, "strategy": run["strategy"].removesuffix(model)})
    return split


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per strategy (random first, then by mean AUBC), with every number the report shows. "vs random"
    and the labels and cost to random's final accuracy are against random on the same task model
    (``random+tuned`` for ``autoal+tuned``)."""
    grouped = curves(runs)
    rows = []
    for name, curve in grouped.items():
        reference = grouped.get(RANDOM + task_model(name))
        target = float(reference.accuracy[:, -1].mean()) if reference else None
        reference_cost = reaching_cost(reference, target) if reference else None
        mean_acc = curve.accuracy.mean(axis=0)
        vs_random = paired(curve, reference) if reference and curve is not reference else None
        labels_needed = reaching_labels(curve, target) if target else None
        rows.append({
            "strategy": name,
            "seeds": len(curve.seeds),
            "aubc_mean": float(curve.aubc.mean()),
            "aubc_std": float(curve.aubc.std(ddof=1)) if len(curve.seeds) > 1 else 0.0,
            "vs_random": vs_random,
            "final_accuracy": float(mean_acc[-1]),
            "final_labels": int(curve.labels[0, -1]),
            "labels_to_random_final": labels_needed,
            "cost_saved_vs_random": (cost_saved(reaching_cost(curve, target), reference_cost)
                                     if target else None),
            "train_seconds": float(curve.train_seconds.mean()),
            # the last round picks nothing
            "query_seconds": (float(curve.query_seconds[:, :-1].mean())
                              if curve.query_seconds.shape[1] > 1 else 0.0),
        })
    rows.sort(key=lambda r: (task_model(r["strategy"]), r["strategy"] != RANDOM + task_model(r["strategy"]),
                             -r["aubc_mean"]))
    return rows


def reaching_labels(curve: Curve, target: float) -> float | None:
    """Mean labels at the first round where the seed-averaged accuracy reaches ``target``."""
    return first_reaching(curve.labels.mean(axis=0), curve.accuracy.mean(axis=0), target)


def reaching_cost(curve: Curve | None, target: float | None) -> float | None:
    """Mean cumulative cost at the first round where the seed-averaged accuracy reaches ``target``."""
    if curve is None or target is None:
        return None
    return first_reaching(curve.cost.mean(axis=0), curve.accuracy.mean(axis=0), target)


def goal_check(runs: list[dict[str, Any]], goals: Goals | None = None) -> dict[str, Any] | None:
    """AutoAL vs the best single candidate in hindsight (by mean AUBC), vs random and vs ALBL, judged by
    ``goals`` (default `Goals()`)."""
    goals = goals or Goals()
    grouped = curves(runs)
    autoal = grouped.get(AUTOAL)
    if autoal is None:
        return None
    candidates = {n: c for n, c in grouped.items()
                  if n not in NON_CANDIDATES and "." not in n and not task_model(n) and n != SHALLOW}
    best = max(candidates, key=lambda n: candidates[n].aubc.mean()) if candidates else None
    check: dict[str, Any] = {"autoal_aubc": float(autoal.aubc.mean()), "best_candidate": best}
    if best is not None:
        check["best_candidate_aubc"] = float(candidates[best].aubc.mean())
        check["vs_best"] = paired(autoal, candidates[best])
        check["meets_best"] = check["autoal_aubc"] >= check["best_candidate_aubc"] - goals.best_tolerance
        check["ahead_of_best"] = check["autoal_aubc"] >= check["best_candidate_aubc"] + goals.best_margin
    if RANDOM in grouped:
        reference = grouped[RANDOM]
        check["vs_random"] = paired(autoal, reference)
        wins, n = check["vs_random"].wins, check["vs_random"].n
        check["meets_random"] = check["vs_random"].mean > goals.random_min_difference and wins >= goals.wins_needed(n)
        check["labels_share"] = labels_share(autoal, reference)
        check["meets_labels"] = check["labels_share"] is not None and check["labels_share"] <= goals.labels_share_max
    if ALBL in grouped:
        check["vs_albl"] = paired(autoal, grouped[ALBL])
        check["meets_albl"] = check["vs_albl"].mean > goals.albl_min_difference
    peers = {n: c for n, c in grouped.items() if "." in n}
    if peers:  # other libraries' strategies, for information (ALBL has its own goal above)
        check["best_peer"] = max(peers, key=lambda n: peers[n].aubc.mean())
        check["best_peer_aubc"] = float(peers[check["best_peer"]].aubc.mean())
        check["vs_best_peer"] = paired(autoal, peers[check["best_peer"]])
    if AUTOAL_UNIFORM in grouped:  # the same candidates with equal weights
        check["vs_uniform"] = paired(autoal, grouped[AUTOAL_UNIFORM])
    if AUTOAL_SEARCH in grouped:  # the same candidates with learned weights
        check["vs_search"] = paired(autoal, grouped[AUTOAL_SEARCH])
    if AUTOAL_PRUNED in grouped:  # equal weights over the candidates the pruning keeps
        check["vs_pruned"] = paired(autoal, grouped[AUTOAL_PRUNED])
    return check


def labels_share(curve: Curve, reference: Curve) -> float | None:
    """Labels ``curve`` needs to reach ``reference``'s final accuracy over the labels ``reference`` needs (both
    read off the seed-averaged curves); None when ``curve`` never reaches it."""
    target = float(reference.accuracy[:, -1].mean())
    needed, own = reaching_labels(curve, target), reaching_labels(reference, target)
    return None if needed is None or not own else needed / own


def cost_aware_check(grouped: dict[str, Curve], aware_name: str = AUTOAL_COST) -> dict[str, Any] | None:
    """Cost-aware (``aware_name``: ``autoal_cost``, or ``autoal_cost_known`` given the true seconds) vs
    cost-blind (``autoal``) AutoAL: the annotator-seconds each needs to reach the cost-blind runs' final accuracy
    (read off the seed-averaged curves; the cost-aware runs may run to more labels, ``--cost-aware-budget``),
    the seconds saved, and the paired AUBC difference over the labels both runs cover (at equal labels a
    cost-aware run is expected to be a little behind)."""
    blind, aware = grouped.get(AUTOAL), grouped.get(aware_name)
    if blind is None or aware is None:
        return None
    target = float(blind.accuracy.mean(axis=0)[-1])
    blind_seconds, aware_seconds = reaching_cost(blind, target), reaching_cost(aware, target)
    common = sorted(set(blind.seeds) & set(aware.seeds))
    rounds = min(blind.labels.shape[1], aware.labels.shape[1])

    def aubc(curve: Curve) -> np.ndarray:
        rows = [curve.seeds.index(seed) for seed in common]
        return np.array([normalized_aubc(curve.labels[i, :rounds], curve.accuracy[i, :rounds]) for i in rows])

    return {
        "target_accuracy": target,
        "blind_seconds": blind_seconds,
        "aware_seconds": aware_seconds,
        "aware_labels": reaching_labels(aware, target),
        "saved": cost_saved(aware_seconds, blind_seconds),
        "aubc_difference": paired_difference(aubc(aware), aubc(blind)) if common else None,
        "common_labels": int(blind.labels[0, rounds - 1]),
        "aware_name": aware_name,
    }


def cost_aware_lines(check: dict[str, Any] | None) -> list[str]:
    if check is None:
        return []
    saved = "-" if check["saved"] is None else f"{100 * check['saved']:.0f}%"
    aware = "not reached" if check["aware_seconds"] is None else (
        f"{check['aware_seconds']:,.0f} s ({check['aware_labels']:.0f} labels)")
    blind = "-" if check["blind_seconds"] is None else f"{check['blind_seconds']:,.0f} s"
    who = ("Cost-aware given every task's seconds (`autoal_cost_known`)" if check["aware_name"] == AUTOAL_COST_KNOWN
           else "Cost-aware")
    lines = [f"- {who} vs cost-blind AutoAL: to reach the cost-blind final accuracy "
             f"{check['target_accuracy']:.3f}, cost-blind {blind}, cost-aware {aware}: {saved} of the "
             "annotator-seconds saved"]
    diff = check["aubc_difference"]
    if diff is not None:
        lines.append(f"- {who} - cost-blind AUBC over the first {check['common_labels']} labels: "
                     f"{diff.mean:+.3f} ({diff.wins}/{diff.n} wins)")
    return lines + [""]


def fmt(value: float | None, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def markdown_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| strategy | seeds | AUBC mean +- std | vs random (wins/n) | final acc | labels to random's final "
        "| cost saved vs random | train s/round | query s/round |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        vs = r["vs_random"]
        vs_text = f"{fmt(vs.mean, signed=True)} ({vs.wins}/{vs.n})" if vs else "-"
        needed = r["labels_to_random_final"]
        labels = f"{needed:.0f}" if needed is not None else "not reached"
        saved = f"{100 * r['cost_saved_vs_random']:.0f}%" if r["cost_saved_vs_random"] is not None else "-"
        lines.append(
            f"| {r['strategy']} | {r['seeds']} | {r['aubc_mean']:.3f} +- {r['aubc_std']:.3f} | {vs_text} "
            f"| {r['final_accuracy']:.3f} | {labels} | {saved} | {r['train_seconds']:.1f} "
            f"| {r['query_seconds']:.2f} |"
        )
    return lines


def above(difference: float) -> str:
    """A goal's "above" in words: above, or above by more than a margin."""
    return "above" if difference == 0 else f"above by more than {difference:g}"


def goal_lines(check: dict[str, Any] | None, goals: Goals | None = None) -> list[str]:
    """The report's goal bullets; the thresholds printed are those of ``goals`` (default `Goals()`)."""
    if check is None:
        return ["AutoAL was not run on this data set."]
    goals = goals or Goals()
    tolerance = goals.best_tolerance
    best = f"best - {tolerance:g}" if tolerance >= 0 else f"best + {-tolerance:g}"
    lines = []
    if check.get("best_candidate"):
        vs = check["vs_best"]
        lines.append(
            f"- AutoAL {check['autoal_aubc']:.3f} vs best single candidate `{check['best_candidate']}` "
            f"{check['best_candidate_aubc']:.3f}: paired {fmt(vs.mean, signed=True)} "
            f"({vs.wins}/{vs.n} wins); "
            f"goal (>= {best}) {'met' if check['meets_best'] else 'NOT met'}; "
            f"ahead by >= {goals.best_margin:g} (wanted on two data sets): {'yes' if check['ahead_of_best'] else 'no'}"
        )
    if "vs_random" in check:
        vs = check["vs_random"]
        lines.append(
            f"- AutoAL vs random: paired {fmt(vs.mean, signed=True)} ({vs.wins}/{vs.n} wins); "
            f"goal ({above(goals.random_min_difference)}, >= {100 * goals.random_min_win_share:g}% wins) "
            f"{'met' if check['meets_random'] else 'NOT met'}"
        )
        share = "not reached" if check["labels_share"] is None else f"{100 * check['labels_share']:.0f}%"
        lines.append(
            f"- AutoAL's labels to reach random's final accuracy, as a share of random's: {share}; "
            f"goal (<= {100 * goals.labels_share_max:g}%) {'met' if check['meets_labels'] else 'NOT met'}"
        )
    if "vs_albl" in check:
        vs = check["vs_albl"]
        lines.append(
            f"- AutoAL vs libact ALBL: paired {fmt(vs.mean, signed=True)} ({vs.wins}/{vs.n} wins); "
            f"goal ({above(goals.albl_min_difference)}) {'met' if check['meets_albl'] else 'NOT met'}"
        )
    if "vs_best_peer" in check:
        vs = check["vs_best_peer"]
        lines.append(
            f"- AutoAL vs the best other library's strategy `{check['best_peer']}` {check['best_peer_aubc']:.3f}: "
            f"paired {fmt(vs.mean, signed=True)} ({vs.wins}/{vs.n} wins)"
        )
    for key, name, what in (("vs_uniform", AUTOAL_UNIFORM, "equal weights (search off)"),
                            ("vs_search", AUTOAL_SEARCH, "learned weights (AutoAL search on)"),
                            ("vs_pruned", AUTOAL_PRUNED, "candidate pool pruned each round")):
        if key in check:
            vs = check[key]
            lines.append(f"- AutoAL vs the same candidates with {what}, `{name}`: paired "
                         f"{fmt(vs.mean, signed=True)} ({vs.wins}/{vs.n} wins)")
    return lines


def write_report(results: dict[str, Any], out_dir: Path, plots: bool = True) -> Path:
    """Write report.md (and the PNG plots) for every data set in ``results``; return the report's path.

    The goals are the results' ``settings.goals`` (the defaults for a results file that has none)."""
    out_dir = Path(out_dir)
    settings = results["settings"]
    engine = settings["engine"]
    goals = Goals.from_dict(settings.get("goals") or {})
    lines = [
        "# Active-learning benchmark",
        "",
        f"Protocol: init {settings['init']}, batch {settings['batch']}, budget {settings['budget']} labels, "
        f"test fraction {settings['test_fraction']} (at most {settings['max_test']}), "
        f"cost model `{settings['cost_model']}`, seeds {settings['seeds']}. Task model: "
        f"{engine['model']['backbone']} at {engine['model']['image_size']} px, "
        f"{engine['model']['train_steps']} steps; AutoAL: candidates {', '.join(engine['strategies'])}; "
        f"its search (`autoal_search`, or `autoal` when the configuration turns it on; each AutoAL run "
        f"records its own settings): {engine['search']['iterations']} iterations, FitNet "
        f"{engine.get('holdout', engine['search'])['fitnet_steps']} steps.",
        "AUBC = trapz(accuracy, labels) / (budget - init). Paired differences use the same seeds "
        "(same split, same initial set). Labels / cost to reach random's final accuracy are read off the "
        "seed-averaged curves ('not reached': never within the budget).",
        "",
    ]
    for name, data in results["datasets"].items():
        runs = data["runs"]
        lines += [
            f"## {name}",
            "",
            f"{data['n_pool']} pool / {data['n_test']} test items, {data['n_classes']} classes; "
            f"cost per label {data['cost_summary']['mean']:.1f} s on average "
            f"({data['cost_summary']['min']:.1f}-{data['cost_summary']['max']:.1f}).",
            "",
        ]
        if not runs:
            lines += ["No finished runs yet.", ""]
            continue
        runs, seeds = complete_seeds(runs)
        left_out = len(data["runs"]) - len(runs)
        if left_out:
            lines += [f"Seeds on which every strategy finished: {seeds}; {left_out} runs of unfinished seeds are "
                      "left out of the table and plots.", ""]
        lines += markdown_table(summarize(runs)) + [""]
        for model, model_runs in sorted(split_by_task_model(runs).items()):
            if model:
                lines += [f"On the {MODEL_NAMES.get(model, model)} (the `{model}` runs, against each other):", ""]
            lines += goal_lines(goal_check(model_runs, goals), goals) + [""]
            model_curves = curves(model_runs)
            for aware_name in (AUTOAL_COST, AUTOAL_COST_KNOWN):
                lines += cost_aware_lines(cost_aware_check(model_curves, aware_name))
        grouped = curves(runs)
        lines += tuning_lines(grouped)
        if plots:
            for path in plot_dataset(name, runs, out_dir):
                lines.append(f"![{path.stem}]({path.name})")
            lines.append("")
    report = out_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def candidate_family(name: str) -> str:
    """A candidate's family, the module that defines it: uncertainty, diversity (BADGE included), learned."""
    from autoal_engine.strategies import STRATEGIES

    strategy = STRATEGIES.get(name)
    return strategy.__module__.rsplit(".", 1)[-1] if strategy else "other"


def active_shares(runs: list[dict[str, Any]], strategy: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Which candidates a pruned strategy kept, per round: the candidate names (by family, then name), the
    mean labels of each round that chose a batch, and the (candidates, rounds) share of seeds in which the
    candidate was active. Runs of other strategies and rounds without a pruning record are left out."""
    chosen = [r for r in runs if r["strategy"] == strategy]
    records = [[rnd.get("active_candidates") for rnd in r["rounds"]] for r in chosen]
    rounds = min((next((i for i, a in enumerate(seed) if a is None), len(seed)) for seed in records), default=0)
    names = sorted({n for r in chosen for rnd in r["rounds"][:rounds]
                    for n in [*(rnd.get("pruning_rewards") or {}), *rnd["active_candidates"]]},
                   key=lambda n: (candidate_family(n), n))
    shares = np.array([[np.mean([n in seed[i] for seed in records]) for i in range(rounds)] for n in names])
    labels = np.array([np.mean([r["rounds"][i]["labels"] for r in chosen]) for i in range(rounds)])
    return names, labels, shares.reshape(len(names), rounds)


def plot_dataset(name: str, runs: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Accuracy vs labels and vs cumulative cost (mean +- std bands); the mean learned strategy weights per
    round of ``autoal`` (when its search is on) or else ``autoal_search`` (``<name>_autoal_weights.png``);
    those of the pruned runs, where a pruned candidate's weight is 0 (``<name>_<strategy>_weights.png``); and
    for the pruned runs the share of seeds in which each candidate survived, per round
    (``<name>_<strategy>_active.png``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grouped = curves(runs)
    colors = plt.get_cmap("tab20")
    paths = []
    for x_key, x_label in (("labels", "labels"), ("cost", "cumulative labeling cost (s)")):
        figure, axis = plt.subplots(figsize=(9, 6))
        for number, (strategy, curve) in enumerate(sorted(grouped.items())):
            x = getattr(curve, x_key).mean(axis=0)
            mean, std = curve.accuracy.mean(axis=0), curve.accuracy.std(axis=0)
            color = {AUTOAL: "black", RANDOM: "gray"}.get(strategy, colors(number % 20))
            style = {"lw": 2.5, "ls": "--" if strategy == RANDOM else "-"} if strategy in (AUTOAL, RANDOM) else {
                "lw": 1.2}
            axis.plot(x, mean, label=f"{strategy} ({len(curve.seeds)})", color=color, **style)
            axis.fill_between(x, mean - std, mean + std, color=color, alpha=0.12)
        axis.set_xlabel(x_label)
        axis.set_ylabel("test accuracy")
        axis.set_title(f"{name}: accuracy vs {x_key} (mean +- std over seeds)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, ncol=2)
        path = out_dir / f"{name}_accuracy_vs_{x_key}.png"
        figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(figure)
        paths.append(path)
    learned = [n for n in (AUTOAL, AUTOAL_SEARCH) if n in grouped and any(any(w) for w in grouped[n].weights)]
    pruned = [n for n in (AUTOAL_PRUNED, AUTOAL_PRUNED_SEARCH)
              if n in grouped and any(any(w) for w in grouped[n].weights)]
    for plotted, file_name in [*[(n, "autoal") for n in learned[:1]], *[(n, n) for n in pruned]]:
        learner = grouped[plotted]
        names = sorted({k for seed in learner.weights for rnd in seed for k in rnd})
        rounds = len(learner.weights[0]) - 1  # the last round has no query
        weights = np.array([[[seed[r].get(k, np.nan) for k in names] for r in range(rounds)]
                            for seed in learner.weights])
        mean = np.nanmean(weights, axis=0)
        x = learner.labels.mean(axis=0)[:rounds]
        figure, axis = plt.subplots(figsize=(9, 6))
        for number, strategy in enumerate(names):
            axis.plot(x, mean[:, number], label=strategy, color=colors(number % 20), lw=1.5)
        axis.set_xlabel("labels when the batch was chosen")
        axis.set_ylabel("mean strategy weight")
        axis.set_title(f"{name}: {plotted}'s mean strategy weight per round (mean over seeds)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, ncol=2)
        path = out_dir / f"{name}_{file_name}_weights.png"
        figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(figure)
        paths.append(path)
    for strategy in (AUTOAL_PRUNED, AUTOAL_PRUNED_SEARCH):
        names, labels, shares = active_shares(runs, strategy)
        if not names:  # no run of this strategy recorded a pruning decision
            continue
        figure, axis = plt.subplots(figsize=(9, 5))
        image = axis.imshow(shares, aspect="auto", cmap="Greens", vmin=0, vmax=1)
        axis.set_yticks(range(len(names)), [f"{n} ({candidate_family(n)})" for n in names], fontsize=8)
        axis.set_xticks(range(len(labels)), [f"{x:.0f}" for x in labels], fontsize=7)
        axis.set_xlabel("labels when the batch was chosen")
        axis.set_title(f"{name}: {strategy}, share of seeds in which each candidate was active")
        figure.colorbar(image, ax=axis, label="share of seeds active")
        path = out_dir / f"{name}_{strategy}_active.png"
        figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(figure)
        paths.append(path)
    return paths
