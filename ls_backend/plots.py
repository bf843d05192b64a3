"""The status page's plots, drawn on the server with matplotlib (Agg, no pyplot) as inline SVG text.

Each function takes rows from the store and returns an ``<svg>`` element (text kept as text, so it scales
and can be searched), or None when there is nothing to draw yet; the page then says why.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import matplotlib
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

_LOCK = threading.Lock()
_STYLE = {
    "svg.fonttype": "none",  # <text> elements, not glyph paths
    "svg.hashsalt": "autoal",  # stable element ids
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
SIZE = (4.3, 3.0)  # inches; drawn about 400 px wide, so 9 pt text reads at about 12 px


def learning_curve_svg(models: Sequence[dict[str, Any]]) -> str | None:
    """Held-out accuracy of each model version against its number of labels (oldest version first)."""
    points = [
        (model["n_labels"], model["holdout_accuracy"])
        for model in _oldest_first(models)
        if model.get("n_labels") is not None and model.get("holdout_accuracy") is not None
    ]
    if not points:
        return None
    labels, accuracy = zip(*points, strict=True)
    with _style():
        figure, axes = _figure("Learning curve")
        axes.plot(labels, accuracy, marker="o", color="#1f77b4")
        axes.set_xlabel("labeled tasks")
        axes.set_ylabel("held-out accuracy")
        axes.set_ylim(0, 1.02)
        if len(points) == 1:
            axes.set_xlim(labels[0] * 0.5, labels[0] * 1.5 + 1)
        return _svg(figure)


def strategy_weights_svg(models: Sequence[dict[str, Any]]) -> str | None:
    """AutoAL's mean strategy weights per model version, as stacked bars (one bar per round)."""
    rounds = [model for model in _oldest_first(models) if model.get("strategy_weights")]
    if not rounds:
        return None
    names = list(dict.fromkeys(name for model in rounds for name in model["strategy_weights"]))
    positions = range(len(rounds))
    step = max(1, len(rounds) // 8)  # at most about eight tick labels
    ticks = list(positions)[::step]
    colors = matplotlib.colormaps["tab20"].colors
    with _style():
        figure, axes = _figure("Strategy weights per round")
        bottom = [0.0] * len(rounds)
        for index, name in enumerate(names):
            heights = [float(model["strategy_weights"].get(name) or 0.0) for model in rounds]
            axes.bar(positions, heights, bottom=bottom, width=0.7, label=name, color=colors[index % len(colors)])
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        axes.set_xticks(ticks, [str(rounds[i].get("n_labels", "?")) for i in ticks])
        axes.set_xlabel("labels of each model version (oldest left)")
        axes.set_ylabel("mean weight")
        axes.set_ylim(0, max(1.0, max(bottom)))
        axes.grid(axis="x", visible=False)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7.5, frameon=False, reverse=True)
        return _svg(figure)


def cost_svg(observations: Sequence[dict[str, Any]]) -> str | None:
    """Predicted against observed labeling seconds (log axes); the diagonal is a perfect prediction."""
    pairs = [
        (row["observed_seconds"], row["predicted_seconds"])
        for row in observations
        if row.get("observed_seconds") and row.get("predicted_seconds")
    ]
    if not pairs:
        return None
    observed, predicted = zip(*pairs, strict=True)
    low, high = min(*observed, *predicted) / 1.3, max(*observed, *predicted) * 1.3
    with _style():
        figure, axes = _figure("Cost model: predicted vs observed")
        axes.plot([low, high], [low, high], color="#888888", linewidth=1, linestyle="--")
        axes.scatter(observed, predicted, s=14, alpha=0.6, color="#d62728", edgecolors="none")
        axes.set_xscale("log")
        axes.set_yscale("log")
        for axis in (axes.xaxis, axes.yaxis):
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            axis.set_minor_formatter(NullFormatter())
        axes.set_xlim(low, high)
        axes.set_ylim(low, high)
        axes.set_xlabel("observed seconds (annotation lead time)")
        axes.set_ylabel("predicted seconds")
        return _svg(figure)


def _oldest_first(models: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(models, key=lambda model: model.get("created_at") or 0.0)


def _figure(title: str) -> tuple[Figure, Any]:
    figure = Figure(figsize=SIZE, layout="constrained")
    axes = figure.add_subplot()
    axes.set_title(title, fontsize=10, loc="left")
    return figure, axes


@contextmanager
def _style() -> Iterator[None]:
    """The page's style for figures made and saved inside (rcParams are global: one figure at a time)."""
    with _LOCK, matplotlib.rc_context(_STYLE):
        yield


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    FigureCanvasSVG(figure).print_svg(buffer, metadata={"Date": None})
    text = buffer.getvalue()
    svg = text[text.index("<svg") :]
    # Size by CSS (class "plot") instead of the fixed width/height in points; the viewBox keeps the shape.
    return re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 class="plot" role="img"', svg, count=1)
