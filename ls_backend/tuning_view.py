"""What the status page and /metrics show of the model tuning, read from the stored model reports.

``config_rows``: the task-model configuration of each model version (family, input, loss, training
length) and whether a tuning chose it. ``last_tuning``: the trials of the newest model whose fit ran a
tuning, best first (completed trials by CV score, then pruned ones by their last rung), with its time.
"""

from __future__ import annotations

from typing import Any

CONFIG_FIELDS = ("backbone", "image_size", "standardize", "augment", "loss", "epochs", "lr")


def config_rows(models: list[dict[str, Any]], limit: int = 10) -> list[dict[str, Any]]:
    """Newest first: one row per model version with its model configuration."""
    rows = []
    for model in models[:limit]:
        report = model.get("report") or {}
        config = report.get("model_config") or {}
        tuning = report.get("tuning") or {}
        rows.append({
            "model_version": model.get("model_version"),
            "n_labels": model.get("n_labels"),
            "path": model.get("path") or "full",
            "backbone_version": model.get("backbone_version") or report.get("backbone_version"),
            "config": {name: config.get(name) for name in CONFIG_FIELDS if name in config},
            "summary": describe(config),
            "tuned": bool(tuning.get("ran")),
            "adopted": tuning.get("adopted"),
        })
    return rows


def describe(config: dict[str, Any]) -> str:
    """A one-line description of a model configuration, e.g. "frozen pca + mlp, 16 px, focal, 60 epochs"."""
    if not config:
        return "–"
    family = config.get("backbone", "?")
    if family == "small_cnn":
        family = f"small_cnn w{config.get('width', 16)}"
    elif family == "frozen":
        family = f"frozen {config.get('features', 'pca')} + {config.get('head', 'linear')}"
    training = f"{config['epochs']} epochs" if config.get("epochs") else f"{config.get('train_steps')} steps"
    parts = [family, f"{config.get('image_size')} px", "standardized" if config.get("standardize") else None,
             f"augment {config.get('augment')}", config.get("loss"), training]
    return ", ".join(str(part) for part in parts if part)


def last_tuning(models: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest tuning: model version, labels, seconds, decision and its trials (best first)."""
    for model in models:
        tuning = (model.get("report") or {}).get("tuning") or {}
        if tuning.get("ran"):
            trials = sorted(tuning.get("trials", []), key=_trial_order)
            return {
                "model_version": model.get("model_version"),
                "n_labels": tuning.get("n_labels"),
                "seconds": tuning.get("seconds"),
                "budget_seconds": tuning.get("budget_seconds"),
                "folds": tuning.get("folds"),
                "adopted": tuning.get("adopted"),
                "reason": tuning.get("reason"),
                "cv_accuracy": tuning.get("cv_accuracy"),
                "trials": [_trial_row(trial) for trial in trials],
            }
    return None


def _trial_order(trial: dict[str, Any]) -> tuple:
    rungs = trial.get("rungs") or [{"mean": -1.0, "resource": 0}]
    best = max(rungs, key=lambda rung: rung["mean"])
    return (trial.get("state") != "completed", -best["mean"], trial.get("number", 0))


def _trial_row(trial: dict[str, Any]) -> dict[str, Any]:
    rungs = trial.get("rungs") or []
    best = max(rungs, key=lambda rung: rung["mean"]) if rungs else None
    params = trial.get("params") or {}
    return {
        "number": trial.get("number"),
        "incumbent": trial.get("incumbent"),
        "state": trial.get("state"),
        "family": params.get("family"),
        "params": ", ".join(f"{k}={_short(v)}" for k, v in params.items() if k != "family"),
        "cv_accuracy": None if best is None else best["mean"],
        "cv_se": None if best is None else best["se"],
        "epochs": None if best is None else best["resource"],
        "seconds": trial.get("seconds"),
    }


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def tuning_totals(models: list[dict[str, Any]]) -> tuple[list[float], dict[str, int]]:
    """Seconds of every stored tuning, and its trials counted by final state, for /metrics."""
    seconds, states = [], {}
    for model in models:
        tuning = (model.get("report") or {}).get("tuning") or {}
        if not tuning.get("ran"):
            continue
        seconds.append(float(tuning.get("seconds") or 0.0))
        for trial in tuning.get("trials", []):
            states[trial.get("state", "unknown")] = states.get(trial.get("state", "unknown"), 0) + 1
    return seconds, states
