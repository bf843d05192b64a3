"""``autoal bench``: replay pool-based active learning offline and write results.json, report.md and plots.

    autoal bench --dataset digits --strategies random,margin,autoal --peers albl \\
        --init 20 --batch 10 --budget 300 --seeds 10 --cost-model constant --out bench_out/digits

``main(argv)`` returns a process exit code: 0 on success, 2 for bad input (with a one-line message).
Results are saved after every finished (seed, strategy) run; ``--resume`` continues an interrupted run
with the same settings, and ``--report-only`` rewrites report.md and the plots from results.json. The acceptance
goals the report checks are `Goals` (goals.py), changed with ``--goals`` and recorded in results.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from autoal_bench.costs import COST_MODELS, item_costs
from autoal_bench.datasets import DatasetUnavailable, load_dataset
from autoal_bench.goals import Goals, parse_goals
from autoal_bench.peers import PEERS, PeerUnavailable, peer_selector
from autoal_bench.report import write_report
from autoal_bench.selectors import AUTOAL, engine_selector, with_tuning
from autoal_bench.shallow import ShallowSelector
from autoal_bench.simulate import AUTOAL_SETTINGS, RUN_SETTINGS, ReplaySettings, rounds_per_run, run_dataset
from autoal_engine.config import DEFAULT_STRATEGIES, EngineConfig
from ls_backend.settings import BACKBONE_GROWTH

logger = logging.getLogger(__name__)

SCHEMA = "autoal-bench/1"
DEFAULT_STRATEGY_LIST = ",".join(("random", *DEFAULT_STRATEGIES, AUTOAL))
# settings that must match for --resume / --merge to add runs to an existing results.json. The engine
# settings that only AutoAL runs use are left out (AUTOAL_SETTINGS): each AutoAL run records its own.
RESUME_KEYS = ("init", "batch", "budget", "cost_aware_budget", "test_fraction", "max_test", "cost_model",
               "fashion_size", "engine")
# tuning.budget_seconds under --tuning-trials: far beyond any run, so only max_trials stops the search
UNBOUNDED_SECONDS = 1e9


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="autoal bench", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="",
                        help="comma-separated: digits, mnist5k, fashion, icons, an image folder, "
                             "or a Label Studio JSON export")
    parser.add_argument("--strategies", default=DEFAULT_STRATEGY_LIST,
                        help="comma-separated engine strategies and autoal, autoal_search, autoal_uniform, "
                             "autoal_paper, autoal_pruned, autoal_cost, autoal_cost_known (default: random, every "
                             "default candidate, autoal)")
    parser.add_argument("--peers", default="", help=f"comma-separated peers ({', '.join(PEERS)}) or 'all'")
    parser.add_argument("--init", type=int, default=20, help="initial random labels (default 20)")
    parser.add_argument("--batch", type=int, default=20,
                        help="labels per round; 1 mimics Label Studio's queue")
    parser.add_argument("--budget", type=int, default=500,
                        help="total labels, initial set included (default 500)")
    parser.add_argument("--cost-aware-budget", type=int, default=None,
                        help="total labels of the cost-aware runs (autoal_cost, autoal_cost_known), which buy "
                             "cheaper labels and need more of them to reach the cost-blind runs' final accuracy "
                             "(default: --budget)")
    parser.add_argument("--seeds", type=int, default=10, help="number of seeds (default 10)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds are first-seed .. first-seed+seeds-1")
    parser.add_argument("--cost-model", default="constant", choices=COST_MODELS)
    parser.add_argument("--cost-rho", type=float, default=0.0,
                        help="lognormal cost model: correlation of log-seconds with the item's difficulty (default 0)")
    parser.add_argument("--cost-sigma", type=float, default=1.0,
                        help="lognormal cost model: standard deviation of log-seconds (default 1.0)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--test-fraction", type=float, default=0.2,
                        help="stratified test share (default 0.2)")
    parser.add_argument("--max-test", type=int, default=2000, help="cap on the test set size (default 2000)")
    parser.add_argument("--label-config", type=Path, metavar="FILE",
                        help="the Label Studio project's label config (XML) that a JSON export's labels are read "
                             "through, as the backend reads them; without it the export's results must name "
                             "exactly one Choices control and one image")
    parser.add_argument("--fashion-size", type=int, default=12000,
                        help="stratified Fashion-MNIST subsample (of 70,000; default 12000)")
    parser.add_argument("--image-size", type=int,
                        help="the task model's input size (model.image_size; default the engine's, 32); "
                             "images of a folder or export are also loaded at this size")
    parser.add_argument("--engine-config", type=Path,
                        help="JSON file with EngineConfig fields (see config.py)")
    parser.add_argument("--train-steps", type=int, help="override model.train_steps")
    parser.add_argument("--fitnet-steps", type=int, help="override holdout.fitnet_steps")
    parser.add_argument("--search-iterations", type=int, help="override search.iterations")
    parser.add_argument("--threads", type=int, help="torch CPU threads (model.threads)")
    parser.add_argument("--tuning", choices=("on", "off"),
                        help="tune the task model from the labels (tuning.enabled) in every engine run; runs with "
                             "it on are named <strategy>+tuned (default: the --engine-config file's "
                             "tuning.enabled, else off)")
    parser.add_argument("--tuning-trials", type=int, metavar="N",
                        help="bound each tuning by N trials instead of its CPU-second budget (tuning.max_trials = N, "
                             "tuning.budget_seconds unbounded): the same labels and seed then adopt the same model, so "
                             "paired strategy comparisons on the tuned model are not confounded by how many trials "
                             "a loaded machine finished (default: the engine's budget)")
    parser.add_argument("--fast-path", action="store_true",
                        help="replay the backend's two speeds: a full fit when the labels grew by --backbone-growth, "
                             "else the head refitted on cached embeddings; runs are named <strategy>+fast")
    parser.add_argument("--backbone-growth", type=float, default=BACKBONE_GROWTH,
                        help="with --fast-path: the labels' growth factor since the backbone was trained at which it "
                             f"is trained again (AUTOAL_BACKBONE_GROWTH; default {BACKBONE_GROWTH})")
    parser.add_argument("--shallow", action="store_true",
                        help="add the model floor: random picks scored by PCA-50 + logistic regression")
    parser.add_argument("--resume", action="store_true",
                        help="keep finished runs in OUT/results.json, add the rest")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite report.md and plots from results.json")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="RESULTS",
                        help="with --report-only: merge these results.json files (same settings, other seeds "
                             "or strategies) into OUT/results.json first")
    parser.add_argument("--goals", metavar="JSON",
                        help="acceptance goals the report checks: a JSON object or file of Goals fields "
                             f"(default {json.dumps(Goals().to_dict())}); recorded in results.json, and with "
                             "--report-only they replace the recorded ones")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def engine_config(args: argparse.Namespace) -> EngineConfig:
    """The base engine configuration (task model, search, cost) shared by every strategy.

    The benchmark trains the fixed recipe unless ``--tuning on`` or the ``--engine-config`` file sets
    ``tuning.enabled`` (the engine's and the backend's default is on): a tuned run costs several times a
    fixed one on a CPU, and the scoreboard's tables compare strategies on the fixed recipe."""
    given: dict[str, Any] = {}
    if args.engine_config:
        try:
            given = json.loads(args.engine_config.read_text())
            config = EngineConfig.from_dict(given)
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"--engine-config {args.engine_config}: {error}") from error
    else:
        config = EngineConfig()
    if "enabled" not in (given.get("tuning") or {}):
        config.tuning.enabled = False
    if args.train_steps is not None:
        config.model.train_steps = args.train_steps
    if args.fitnet_steps is not None:
        config.holdout.fitnet_steps = args.fitnet_steps
    if args.search_iterations is not None:
        config.search.iterations = args.search_iterations
    if args.threads is not None:
        config.model.threads = args.threads
    if args.image_size is not None:
        config.model.image_size = args.image_size
    if args.tuning_trials is not None:
        if args.tuning_trials < 1:
            raise ValueError(f"--tuning-trials must be >= 1, got {args.tuning_trials}")
        config.tuning.max_trials = args.tuning_trials
        config.tuning.budget_seconds = UNBOUNDED_SECONDS
    config.batch_size = args.batch
    config.validate()
    return config


def cost_model_name(args: argparse.Namespace) -> str:
    """The cost model as recorded: ``lognormal`` carries its parameters (``lognormal(rho=0.3, sigma=1)``)."""
    if args.cost_model == "lognormal":
        return f"lognormal(rho={args.cost_rho:g}, sigma={args.cost_sigma:g})"
    return args.cost_model


def read_label_config(path: Path | None) -> str | None:
    """The text of ``--label-config`` (None when not given); ValueError when it cannot be read."""
    if path is None:
        return None
    try:
        return path.read_text()
    except OSError as error:
        raise ValueError(f"--label-config {path}: {error}") from error


def build_selectors(args: argparse.Namespace, config: EngineConfig) -> list[Any]:
    names = split_list(args.strategies)
    peers = list(PEERS) if args.peers.strip() == "all" else split_list(args.peers)
    if not names and not peers and not args.shallow:
        raise ValueError("--strategies and --peers are both empty")
    if len(set(names)) != len(names) or len(set(peers)) != len(peers):
        raise ValueError("--strategies / --peers list a name twice")
    tuning = None if args.tuning is None else args.tuning == "on"
    growth = args.backbone_growth if args.fast_path else None
    if growth is not None and not growth >= 1.0:
        raise ValueError(f"--backbone-growth must be >= 1, got {growth}")
    selectors = [with_tuning(engine_selector(n), tuning, config, growth) for n in names]
    if args.shallow:
        selectors.append(ShallowSelector())
    return selectors + [peer_selector(p) for p in peers]


def settings_dict(args: argparse.Namespace, config: EngineConfig, seeds: list[int]) -> dict[str, Any]:
    return {
        "init": args.init,
        "batch": args.batch,
        "budget": args.budget,
        "cost_aware_budget": args.cost_aware_budget,
        "seeds": seeds,
        "test_fraction": args.test_fraction,
        "max_test": args.max_test,
        "cost_model": cost_model_name(args),
        "fashion_size": args.fashion_size,
        "engine": config.to_dict(),
    }


def save_json(data: dict[str, Any], path: Path) -> None:
    """Write atomically: a crash never leaves half a results.json."""
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(data, indent=1, default=_json_default))
    os.replace(temporary, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


def load_previous(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """results.json of an interrupted benchmark whose settings match; ValueError naming a mismatch."""
    previous = json.loads(path.read_text())
    if previous.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not an {SCHEMA} results file")
    for key in RESUME_KEYS:
        old, new = previous["settings"].get(key), json.loads(json.dumps(settings[key], default=_json_default))
        if _comparable(key, old) != _comparable(key, new):
            raise ValueError(f"--resume: setting {key!r} differs from {path} ({old!r} there)")
    previous["settings"]["engine"] = json.loads(json.dumps(settings["engine"], default=_json_default))
    seeds = sorted(set(previous["settings"]["seeds"]) | set(settings["seeds"]))
    previous["settings"]["seeds"] = seeds
    return previous


def _comparable(key: str, value: Any) -> Any:
    """A setting as compared between results files: the engine settings without AutoAL's own."""
    if key == "engine" and isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in AUTOAL_SETTINGS + RUN_SETTINGS}
    return value


def merge_results(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Join results of the same settings run in separate processes (e.g. seeds 0-4 and 5-9)."""
    merged = json.loads(json.dumps(parts[0]))
    for part in parts[1:]:
        for key in RESUME_KEYS:
            if _comparable(key, part["settings"].get(key)) != _comparable(key, merged["settings"].get(key)):
                raise ValueError(f"--merge: setting {key!r} differs between the results files")
        seeds = set(merged["settings"]["seeds"]) | set(part["settings"]["seeds"])
        merged["settings"]["seeds"] = sorted(seeds)
        for name, data in part["datasets"].items():
            entry = merged["datasets"].setdefault(name, {**data, "runs": []})
            have = {(r["seed"], r["strategy"]) for r in entry["runs"]}
            entry["runs"].extend(r for r in data["runs"] if (r["seed"], r["strategy"]) not in have)
    return merged


def make_progress(total: int, disabled: bool) -> Any:
    """A tqdm progress bar over rounds (None when disabled or tqdm is not installed)."""
    if disabled or total <= 0:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="round", dynamic_ncols=True, file=sys.stderr)


def run(args: argparse.Namespace) -> Path:
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    goals = parse_goals(args.goals) if args.goals is not None else None
    if args.report_only:
        if args.merge:
            save_json(merge_results([json.loads(Path(p).read_text()) for p in args.merge]), results_path)
        if not results_path.exists():
            raise ValueError(f"--report-only: {results_path} does not exist")
        results = json.loads(results_path.read_text())
        if goals is not None:
            results["settings"]["goals"] = goals.to_dict()
            save_json(results, results_path)
        return write_report(results, args.out, plots=not args.no_plots)
    if not split_list(args.dataset):
        raise ValueError("--dataset is required (digits, mnist5k, fashion, a folder or a JSON export)")
    config = engine_config(args)
    selectors = build_selectors(args, config)
    if args.seeds < 1:
        raise ValueError("--seeds must be at least 1")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    replay = ReplaySettings(args.init, args.batch, args.budget, args.test_fraction, args.max_test,
                            args.cost_aware_budget)
    settings = settings_dict(args, config, seeds)
    if args.resume and results_path.exists():
        results = load_previous(results_path, settings)
    elif results_path.exists():
        raise ValueError(f"{results_path} exists: pass --resume to continue it or choose another --out")
    else:
        results = {"schema": SCHEMA, "settings": settings, "datasets": {}}
    if goals is not None or "goals" not in results["settings"]:  # a resumed run keeps its goals unless given
        results["settings"]["goals"] = (goals or Goals()).to_dict()
    results["updated"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    label_config = read_label_config(args.label_config)
    datasets = [load_dataset(n, fashion_size=args.fashion_size, image_size=config.model.image_size,
                             label_config=label_config)
                for n in split_list(args.dataset)]
    for dataset in datasets:
        replay.validate(len(dataset), dataset.n_classes)
    done = {d.name: {(r["seed"], r["strategy"]) for r in results["datasets"].get(d.name, {}).get("runs", [])}
            for d in datasets}
    todo = sum(1 for d in datasets for s in seeds for sel in selectors if (s, sel.name) not in done[d.name])
    progress = make_progress(todo * rounds_per_run(replay), args.no_progress)
    try:
        for dataset in datasets:
            costs = item_costs(dataset, args.cost_model, rho=args.cost_rho, sigma=args.cost_sigma)
            entry = results["datasets"].setdefault(dataset.name, {"runs": []})
            entry.update({
                "n_items": len(dataset),
                "n_pool": len(dataset) - replay.test_size(len(dataset)),
                "n_test": replay.test_size(len(dataset)),
                "n_classes": dataset.n_classes,
                "class_names": list(dataset.class_names),
                "cost_model": cost_model_name(args),
                "cost_summary": {
                    "mean": float(costs.mean()), "min": float(costs.min()), "max": float(costs.max()),
                },
            })

            def keep(run: dict[str, Any], entry: dict[str, Any] = entry) -> None:
                entry["runs"].append(run)
                save_json(results, results_path)

            if progress is not None:
                progress.set_description(dataset.name)
            run_dataset(dataset, costs, selectors, replay, config, seeds, done=done[dataset.name],
                        on_run=keep, on_round=progress.update if progress is not None else None)
            save_json(results, results_path)
    finally:
        if progress is not None:
            progress.close()
    return write_report(results, args.out, plots=not args.no_plots)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``autoal bench``; returns the exit code."""
    try:
        args = parse_args(argv)
    except SystemExit as exit_:  # argparse already printed the usage error
        return int(exit_.code or 0)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = run(args)
    except (ValueError, DatasetUnavailable, PeerUnavailable) as error:
        print(f"autoal bench: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {report} and {report.parent / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
