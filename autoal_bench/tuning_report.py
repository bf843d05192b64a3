"""The report's model-tuning section: tuned vs fixed runs of each strategy, the shallow floor, stability
and the tuning's share of the compute.

For each strategy S run both ways (``S`` and ``S+tuned``): the paired AUBC difference tuned - fixed
(wins/n), each one's margin over the shallow floor (``shallow``: PCA-50 + logistic regression on random's
picks), the largest drop of test accuracy between two consecutive rounds (over all runs, and the median of
the per-run largest drop), and the tuning's share of the run's compute, sum(tuning seconds) /
sum(tuning + train + query seconds), and how much the tuning's CV accuracy overstated the test accuracy
in the rounds that tuned.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from autoal_bench.metrics import paired
from autoal_bench.selectors import TUNED_SUFFIX as TUNED

SHALLOW = "shallow"


def largest_drops(accuracy: np.ndarray) -> np.ndarray:
    """Per run: max over rounds of accuracy[r - 1] - accuracy[r] (0 when it never drops)."""
    if accuracy.shape[1] < 2:
        return np.zeros(len(accuracy))
    return np.maximum(0.0, (accuracy[:, :-1] - accuracy[:, 1:]).max(axis=1))


def tuning_share(curve: Any) -> float:
    tuning = float(curve.tuning_seconds.sum()) if curve.tuning_seconds is not None else 0.0
    total = tuning + float(curve.train_seconds.sum()) + float(curve.query_seconds.sum())
    return tuning / total if total > 0 else 0.0


def cv_optimism(curve: Any) -> float | None:
    """Mean of (the tuning's CV accuracy - the test accuracy) over the rounds that tuned."""
    if curve.cv_accuracy is None or not np.isfinite(curve.cv_accuracy).any():
        return None
    tuned = np.isfinite(curve.cv_accuracy)
    return float((curve.cv_accuracy[tuned] - curve.accuracy[tuned]).mean())


def tuning_rows(grouped: dict[str, Any]) -> list[dict[str, Any]]:
    shallow = grouped.get(SHALLOW)
    rows = []
    for name in sorted(grouped):
        curve = grouped[name]
        base = name[: -len(TUNED)] if name.endswith(TUNED) else name
        if name == SHALLOW or (not name.endswith(TUNED) and base + TUNED not in grouped):
            continue
        drops = largest_drops(curve.accuracy)
        rows.append({
            "strategy": name,
            "seeds": len(curve.seeds),
            "aubc": float(curve.aubc.mean()),
            "vs_fixed": paired(curve, grouped[base]) if name.endswith(TUNED) and base in grouped else None,
            "vs_shallow": paired(curve, shallow) if shallow is not None else None,
            # the same model, random picks: X+tuned vs random+tuned, X vs random
            "vs_random": (paired(curve, grouped[random]) if (random := "random" + name[len(base):]) in grouped
                          and random != name else None),
            "largest_drop": float(drops.max()),
            "median_largest_drop": float(np.median(drops)),
            "tuning_share": tuning_share(curve),
            "cv_optimism": cv_optimism(curve),
            "tuning_seconds_per_run": float(curve.tuning_seconds.sum(axis=1).mean())
            if curve.tuning_seconds is not None else 0.0,
        })
    return rows


def tuning_lines(grouped: dict[str, Any]) -> list[str]:
    rows = tuning_rows(grouped)
    if not rows and SHALLOW not in grouped:
        return []
    lines = ["### Model tuning", ""]
    if SHALLOW in grouped:
        lines.append(f"Model floor (`shallow`, PCA-50 + logistic regression on random's picks): AUBC "
                     f"{grouped[SHALLOW].aubc.mean():.3f} over {len(grouped[SHALLOW].seeds)} seeds.")
        lines.append("")
    if rows:
        lines += [
            "| strategy | seeds | AUBC | tuned - fixed (wins/n) | - random, same model (wins/n) | - shallow (wins/n) "
            "| largest drop between rounds "
            "(max / median of runs) | tuning share of compute | tuning s per run | CV - test accuracy |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['strategy']} | {r['seeds']} | {r['aubc']:.3f} | {_vs(r['vs_fixed'])} | {_vs(r['vs_random'])} "
                f"| {_vs(r['vs_shallow'])} "
                f"| {r['largest_drop']:.3f} / {r['median_largest_drop']:.3f} | {100 * r['tuning_share']:.0f}% "
                f"| {r['tuning_seconds_per_run']:.0f} | "
                f"{'-' if r['cv_optimism'] is None else format(r['cv_optimism'], '+.3f')} |")
        lines.append("")
    return lines


def _vs(paired: Any) -> str:
    return "-" if paired is None else f"{paired.mean:+.3f} ({paired.wins}/{paired.n})"
