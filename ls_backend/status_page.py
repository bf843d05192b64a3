"""The status page at ``GET /``: what the backend is doing for each Label Studio project, in one HTML page.

Per project: the current job with its progress, recent errors, the learning curve, AutoAL's strategy
weights per round, the cost model (predicted against observed seconds), the next tasks in the queue with
the reasons for their place, and recent jobs. Everything comes from the SQLite store, so the page is the
same whichever process ran the jobs. Plots are inline SVG drawn on the server (`ls_backend.plots`); the
page loads nothing else (no script, no CDN) and refreshes itself every 30 seconds.
``GET /?project=<id>`` shows one project.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, render_template_string, request
from markupsafe import Markup

from autoal_engine.cost import spearman
from ls_backend import plots, tuning_view
from ls_backend.store import Store
from ls_backend.validation import InvalidRequest, parse_id, quote

QUEUE_LENGTH = 20
REFRESH_SECONDS = 30


def status_blueprint(backend: Any) -> Blueprint:
    """The page as a Blueprint; `backend` is the app's ``Backend`` (its store and settings are read)."""
    blueprint = Blueprint("status", __name__)

    @blueprint.get("/")
    def status_page() -> str:
        store: Store = backend.store
        projects = store.list_projects()
        chosen = request.args.get("project")
        if chosen is not None:
            try:
                project_id = parse_id(chosen, "project")
            except InvalidRequest:
                raise InvalidRequest(f"'project' must be a project id, got {quote(chosen)}") from None
            if project_id not in projects:
                raise InvalidRequest(f"project {project_id} is not known to this backend", 404)
            shown = [project_id]
        else:
            shown = projects
        min_spearman = _min_spearman(backend)
        return render_template_string(
            PAGE,
            projects=projects,
            views=[project_view(store, project_id, min_spearman) for project_id in shown],
            runner=getattr(backend.runner, "name", "?"),
            label_studio_url=backend.settings.label_studio_url,
            refresh=REFRESH_SECONDS,
            now=time.time(),
            ago=_ago,
            number=_number,
            percent=_percent,
            timestamp=_timestamp,
        )

    return blueprint


def project_view(store: Store, project_id: int, min_spearman: float | None = None) -> dict[str, Any]:
    """Everything the page shows for one project."""
    status = store.project_status(project_id)
    models = store.model_history(project_id, limit=100)
    jobs = store.recent_jobs(project_id, limit=50)
    costs = store.label_costs(project_id)
    latest = status["latest_model"] or {}
    return {
        **status,
        "n_labels": latest.get("n_labels"),
        "pool_size": store.pool_sizes().get(project_id, 0),
        "report": latest.get("report") or {},
        "cost_report": latest.get("cost_report") or {},
        "cost_pairs": len(costs),
        "cost_spearman": spearman(
            [row["predicted_seconds"] for row in costs], [row["observed_seconds"] for row in costs]
        ),
        "min_spearman": min_spearman,
        "queue": [_queue_row(row) for row in store.ranking(project_id, QUEUE_LENGTH)],
        "jobs": jobs[:10],
        "errors": [job for job in jobs if job["status"] == "failed"][:5],
        "learning_curve": Markup(plots.learning_curve_svg(models) or ""),
        "strategy_weights": Markup(plots.strategy_weights_svg(models) or ""),
        "pruning": pruning_summary((latest.get("report") or {}).get("pruning")),
        "cost_plot": Markup(plots.cost_svg(costs) or ""),
        "model_configs": tuning_view.config_rows(models),
        "tuning": tuning_view.last_tuning(models),
    }


def pruning_summary(pruning: dict[str, Any] | None) -> dict[str, Any] | None:
    """The latest ranking's candidate pruning: the active candidates and the pruned ones, each with this
    round's class-diversity reward, best first; None without pruning."""
    if not pruning or not pruning.get("names"):
        return None
    rewards = pruning.get("rewards") or {}
    active = set(pruning.get("active") or [])
    ranked = sorted(pruning["names"], key=lambda name: -float(rewards.get(name) or 0.0))
    return {
        "active": [(name, rewards.get(name)) for name in ranked if name in active],
        "pruned": [(name, rewards.get(name)) for name in ranked if name not in active],
        "rounds": len(pruning.get("history") or []),
    }


def _queue_row(row: dict[str, Any]) -> dict[str, Any]:
    """A queue row with its "why": the candidates that rank the task highest ("margin: top 1%") and, when
    the weights are learned (the active candidates' weights not all equal), the three largest weights."""
    weights = sorted((row.get("strategy_weights") or {}).items(), key=lambda item: -item[1])
    values = [weight for _, weight in weights if weight > 0]  # a pruned candidate has weight 0
    learned = bool(values) and max(values) - min(values) > 1e-6
    return {
        **row,
        "top_candidates": [(name, _top_share(score)) for name, score in row.get("top_candidates") or []],
        "top_strategies": [(name, weight) for name, weight in weights[:3] if weight > 0] if learned else [],
    }


def _top_share(percentile: float) -> str:
    """A percentile rank in [0, 1] as the share of the pool ranked at least as high: 0.995 -> "top 1%"."""
    share = max(0.0, 1.0 - float(percentile))
    return f"top {max(share * 100, 1):.0f}%" if share < 0.995 else "bottom"


def _min_spearman(backend: Any) -> float | None:
    try:
        return float(backend.settings.engine_config().cost.min_spearman)
    except (ValueError, AttributeError):
        return None


def _ago(seconds_since_epoch: float | None, now: float) -> str:
    if not seconds_since_epoch:
        return "–"
    seconds = max(0.0, now - seconds_since_epoch)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def _number(value: Any, digits: int = 2, unit: str = "") -> str:
    if value is None:
        return "–"
    return f"{float(value):.{digits}f}{unit}"


def _percent(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):.0f}%"


def _timestamp(seconds_since_epoch: float | None) -> str:
    if not seconds_since_epoch:
        return "–"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds_since_epoch))


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{{ refresh }}">
<title>AutoAL backend status</title>
<link rel="icon" href="data:,">
<style>
  body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
         margin: 0; color: #1d2330; background: #f4f6f9; }
  header { background: #1d2330; color: #fff; padding: 12px 24px; display: flex; gap: 24px; align-items: baseline;
           flex-wrap: wrap; }
  header h1 { font-size: 18px; margin: 0; }
  header a { color: #b9d3ff; margin-right: 12px; }
  main { max-width: 1280px; margin: 0 auto; padding: 16px 24px 48px; }
  section.project { background: #fff; border: 1px solid #dde2ea; border-radius: 8px; padding: 16px 20px;
                    margin-bottom: 24px; }
  h2 { margin: 0 0 4px; font-size: 20px; }
  h3 { margin: 20px 0 8px; font-size: 15px; }
  .facts { color: #4a5468; margin: 0 0 12px; }
  .facts b { color: #1d2330; }
  .grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(360px, 1fr)); gap: 16px; }
  .card { border: 1px solid #e3e7ee; border-radius: 6px; padding: 10px 12px; background: #fcfdfe; }
  .card p { margin: 4px 0; }
  svg.plot { width: 100%; max-width: 640px; height: auto; display: block; margin: 0 auto; }
  .empty { color: #6b7385; font-style: italic; padding: 24px 8px; text-align: center; }
  table { border-collapse: collapse; width: 100%; font-size: 13px; }
  th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #edf0f4; vertical-align: top; }
  th { background: #f0f3f7; font-weight: 600; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  progress { width: 240px; height: 14px; vertical-align: middle; }
  .state { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
           background: #e8ecf2; }
  .state-running { background: #dbeafe; color: #1e40af; }
  .state-queued { background: #fef3c7; color: #92400e; }
  .state-done { background: #dcfce7; color: #166534; }
  .state-failed { background: #fee2e2; color: #991b1b; }
  .state-skipped { background: #f1f5f9; color: #475569; }
  .errors li { color: #991b1b; margin-bottom: 4px; }
  .muted { color: #6b7385; }
  .warning { border-left: 4px solid #b91c1c; }
  .strategy { white-space: nowrap; }
</style>
</head>
<body>
<header>
  <h1>AutoAL backend</h1>
  <span>{{ projects|length }} project{{ "" if projects|length == 1 else "s" }} · job runner: {{ runner }}
    · {{ timestamp(now) }}</span>
  <nav>{% for p in projects %}<a href="?project={{ p }}">project {{ p }}</a>{% endfor %}
    {% if views|length < projects|length %}<a href="?">all</a>{% endif %}</nav>
</header>
<main>
{% if not label_studio_url %}
  <section class="project warning" id="no-label-studio-url">
    <h2>LABEL_STUDIO_URL is not set: no job runs</h2>
    <p>The backend sends its Label Studio API token only to the Label Studio its operator configures, never to
      an address that arrives in a request. Set <code>LABEL_STUDIO_URL</code> (for example
      <code>http://localhost:8080</code>) and <code>LABEL_STUDIO_API_KEY</code>, then restart the backend.</p>
  </section>
{% endif %}
{% if not views %}
  <section class="project" id="no-projects">
    <h2>No projects yet</h2>
    <p>Connect this backend to a Label Studio project (Settings → Model → Connect model, URL of this server).
      Label Studio then calls <code>/setup</code> and the project appears here; it is trained after the
      first annotations of two different classes arrive.</p>
  </section>
{% endif %}
{% for v in views %}
<section class="project" id="project-{{ v.project_id }}" data-project="{{ v.project_id }}">
  <h2>Project {{ v.project_id }}</h2>
  <p class="facts">
    model <b class="model-version">{{ v.current_version or "none yet" }}</b>
    · <b>{{ v.n_labels if v.n_labels is not none else 0 }}</b> labels
    · <b>{{ v.pool_size }}</b> tasks ranked
    · held-out accuracy <b>{{ percent(v.latest_model.holdout_accuracy) if v.latest_model else "–" }}</b>
    {% set r = v.report.regime %}{% if r %}<span id="regime-{{ v.project_id }}">· confidence on the unlabeled
      tasks <b>{{ percent(r.pool_confidence) }}</b> ({{ "unsure" if r.unsure else "sure" }}: {{ "below" if r.unsure
      else "at least" }} {{ percent(r.threshold) }}{% if r.shortlist %}; the next batch is spread over the top
      {{ r.shortlist }} tasks{% endif %})</span>{% endif %}
    · classes {{ v.classes|join(", ") if v.classes else "–" }}
    · events waiting for a job: <b>{{ v.pending_events }}</b>
    {% if v.report.device %}· device {{ v.report.device }}{% endif %}
  </p>

  <div class="card job" id="job-{{ v.project_id }}">
  {% set j = v.active_job %}
  {% if j %}
    <p><b>Current job #{{ j.id }}</b> <span class="state state-{{ j.status }}">{{ j.status }}</span>
      stage <b class="stage">{{ j.stage }}</b>
      <progress value="{{ j.progress }}" max="1"></progress> <b class="progress">{{ percent(j.progress) }}</b></p>
    <p class="muted">trigger {{ j.trigger }} · queued {{ ago(j.created_at, now) }}
      {% if j.started_at %}· started {{ ago(j.started_at, now) }}
      · last heartbeat {{ ago(j.heartbeat_at, now) }}{% endif %}
      {% if j.n_labels is not none %}· {{ j.n_labels }} labels, {{ j.n_pool }} pool tasks{% endif %}</p>
  {% elif v.last_job %}
    {% set j = v.last_job %}
    <p><b>No job running.</b> Last job #{{ j.id }} <span class="state state-{{ j.status }}">{{ j.status }}</span>
      {{ ago(j.finished_at, now) }}{% if j.status == "skipped" and j.error %}: {{ j.error }}{% endif %}</p>
  {% else %}
    <p><b>No job yet.</b> A job starts when annotations arrive (or with "Start training" in Label Studio).</p>
  {% endif %}
  </div>

  {% if v.pending_push %}
  <p class="card" id="pending-push-{{ v.project_id }}">Model <b>{{ v.pending_push }}</b> is trained but not yet in
    Label Studio (its push failed); the next job pushes it without training again, unless labels changed.</p>
  {% endif %}

  {% if v.errors or v.config_error %}
  <h3>Recent errors</h3>
  <ul class="errors" id="errors-{{ v.project_id }}">
    {% if v.config_error %}<li>label config: {{ v.config_error }}</li>{% endif %}
    {% for j in v.errors %}
    <li>job #{{ j.id }} ({{ timestamp(j.finished_at) }}, stage {{ j.stage }}): {{ j.error }}</li>
    {% endfor %}
  </ul>
  {% endif %}

  {% if v.media_failures %}
  <h3>Items left out: media that cannot be used ({{ v.n_media_failed }})</h3>
  <table class="media-failures" id="media-failures-{{ v.project_id }}">
    <thead><tr><th class="num">task</th><th>labeled or pool</th><th>why</th></tr></thead>
    <tbody>
    {% for f in v.media_failures %}
      <tr data-task="{{ f.task_id }}"><td class="num">{{ f.task_id }}</td><td>{{ f.kind }}</td>
        <td>{{ f.reason }}</td></tr>
    {% endfor %}
    </tbody>
  </table>
  {% if v.n_media_failed > v.media_failures|length %}<p class="muted">{{ v.media_failures|length }} of
    {{ v.n_media_failed }} shown.</p>{% endif %}
  {% endif %}

  <h3>Model</h3>
  <div class="grid">
    <div class="card" id="learning-curve-{{ v.project_id }}">
      {% if v.learning_curve %}{{ v.learning_curve }}
      {% else %}<p class="empty">Learning curve: no model with a held-out accuracy yet (it needs a few labels
        of at least two classes).</p>{% endif %}
    </div>
    <div class="card" id="strategy-weights-{{ v.project_id }}">
      {% if v.strategy_weights %}{{ v.strategy_weights }}
      {% else %}<p class="empty">Strategy weights: no model yet.</p>{% endif %}
      {% if v.pruning %}<p class="muted" id="pruning-{{ v.project_id }}">Candidates in this round's mixture
        (pruning, class-diversity reward over {{ v.pruning.rounds }} rounds):
        {% for name, reward in v.pruning.active %}{{ name }} {{ number(reward) }}{{ ", " if not loop.last }}
        {%- endfor %}.
        {% if v.pruning.pruned %}Pruned: {% for name, reward in v.pruning.pruned %}{{ name }}
        {{ number(reward) }}{{ ", " if not loop.last }}{% endfor %}.{% endif %}</p>{% endif %}
    </div>
    <div class="card" id="cost-model-{{ v.project_id }}">
      {% if v.cost_plot %}{{ v.cost_plot }}
      {% else %}<p class="empty">Cost model: no labeled task with a prediction and a lead time yet.</p>{% endif %}
      {% set c = v.cost_report %}
      <p class="muted">{% if v.cost_pairs %}{{ v.cost_pairs }} tasks labeled after being ranked, rank
        correlation of predicted and observed seconds {{ number(v.cost_spearman) }}.{% endif %}
        {% if c %}Latest fit: {{ c.n_observations }} timed labels, median {{ number(c.median_seconds, 1, " s") }},
        {% if c.is_cold %}cold (predicts the median){% else %}in-sample ρ {{ number(c.in_sample_spearman) }},
        2-fold CV ρ {{ number(c.cv_spearman) }}{% endif %}.
        {% if v.min_spearman is not none %}Predicted costs order the queue only when CV ρ ≥
        {{ v.min_spearman }}: {{ "yes" if c.cv_spearman is not none and c.cv_spearman >= v.min_spearman else "no" }}.
        {% endif %}{% if c.gamma is defined and c.gamma is not none %}<span id="cost-weight-{{ v.project_id }}">The
        last ranking's priority: benefit / seconds<sup>γ</sup>, γ = {{ number(c.gamma) }}.</span>{% endif %}
        {% if c.shortlist %}<span id="cost-shortlist-{{ v.project_id }}">Cost picks the next batch's tasks among
        the top {{ c.shortlist }} by benefit, one per region: the one of most value per second.</span>{% endif %}
        {% endif %}</p>
    </div>
  </div>

  <h3>Model configuration by version</h3>
  {% if v.model_configs %}
  <table class="model-configs" id="model-configs-{{ v.project_id }}">
    <thead><tr><th>model</th><th class="num">labels</th>
      <th title="full: the backbone trained; fast: the head refitted on cached embeddings">path</th>
      <th>backbone</th><th>configuration</th><th>chosen by</th></tr></thead>
    <tbody>
    {% for m in v.model_configs %}
      <tr data-version="{{ m.model_version }}"><td>{{ m.model_version }}</td>
        <td class="num">{{ m.n_labels if m.n_labels is not none else "–" }}</td>
        <td class="path">{{ m.path }}</td><td class="muted">{{ m.backbone_version or "–" }}</td>
        <td>{{ m.summary }}</td>
        <td>{% if m.tuned %}a tuning ({{ "adopted a challenger" if m.adopted else "kept the incumbent" }}){% else
          %}the incumbent (no tuning due){% endif %}</td></tr>
    {% endfor %}
    </tbody>
  </table>
  {% else %}
  <p class="empty">No model yet.</p>
  {% endif %}

  {% set t = v.tuning %}
  {% if t %}
  <h3>Last tuning: {{ t.trials|length }} trials in {{ number(t.seconds, 1, " s") }} (budget
    {{ number(t.budget_seconds, 0, " s") }}), {{ t.n_labels }} labels, {{ t.folds }}-fold CV,
    for {{ t.model_version }}</h3>
  <p class="muted" id="tuning-decision-{{ v.project_id }}">{{ "Adopted" if t.adopted else "Not adopted" }}:
    {{ t.reason }}. CV accuracy {{ percent(t.cv_accuracy) }} (on few labels CV overstates the accuracy on new
    items).</p>
  <table class="tuning" id="tuning-{{ v.project_id }}">
    <thead><tr><th class="num">trial</th><th>state</th><th>family</th><th class="num">CV accuracy ± s.e.</th>
      <th class="num">epochs</th><th class="num">seconds</th><th>parameters</th></tr></thead>
    <tbody>
    {% for r in t.trials %}
      <tr data-trial="{{ r.number }}"><td class="num">{{ r.number }}{{ " (incumbent)" if r.incumbent }}</td>
        <td>{{ r.state }}</td><td>{{ r.family }}</td>
        <td class="num">{{ number(r.cv_accuracy, 3) }} ± {{ number(r.cv_se, 3) }}</td>
        <td class="num">{{ r.epochs if r.epochs is not none else "–" }}</td>
        <td class="num">{{ number(r.seconds, 1) }}</td><td class="muted">{{ r.params }}</td></tr>
    {% endfor %}
    </tbody>
  </table>
  {% endif %}

  <h3>Next {{ v.queue|length or "" }} tasks in the queue</h3>
  {% if v.queue %}
  <table class="queue" id="queue-{{ v.project_id }}">
    <thead><tr><th class="num">rank</th><th>task</th>
      <th class="num" title="value per cost, scaled to [0, 1]">priority</th>
      <th class="num" title="expected loss of the task under the learned strategy mixture">value</th>
      <th class="num">predicted cost</th><th>predicted label</th>
      <th title="the candidate strategies that rank this task highest, and where each puts it in the pool">why:
        candidates that rank it high</th></tr></thead>
    <tbody>
    {% for r in v.queue %}
      <tr data-task="{{ r.task_id }}"><td class="num">{{ r.rank }}</td>
        <td><a href="/explain/{{ v.project_id }}/{{ r.task_id }}">{{ r.task_id }}</a></td>
        <td class="num">{{ number(r.priority, 3) }}</td><td class="num">{{ number(r.informativeness, 3) }}</td>
        <td class="num">{{ number(r.predicted_cost, 1, " s") }}</td>
        <td>{{ r.predicted_label }} <span class="muted">({{ percent(r.confidence) }})</span></td>
        <td>{% for name, share in r.top_candidates -%}
          <span class="strategy">{{ name }}: {{ share }}</span>{{ ", " if not loop.last }}
        {%- endfor %}{% if r.top_strategies %} <span class="muted">(weights {% for name, weight in r.top_strategies
          -%}{{ name }} {{ percent(weight) }}{{ ", " if not loop.last }}{%- endfor %})</span>{% endif %}</td></tr>
    {% endfor %}
    </tbody>
  </table>
  {% else %}
  <p class="empty">The queue is empty: no ranking yet.</p>
  {% endif %}

  <h3>Recent jobs</h3>
  {% if v.jobs %}
  <table class="jobs" id="jobs-{{ v.project_id }}">
    <thead><tr><th class="num">job</th><th>state</th><th>trigger</th><th>created</th><th class="num">labels</th>
      <th class="num">pool</th><th class="num">media failed</th><th>path</th><th class="num">train</th>
      <th class="num">rank</th><th class="num">push</th><th class="num" title="embedding cache hits / misses">cache
      </th><th class="num">pushed</th><th class="num" title="first annotation received → predictions in LS">latency
      </th><th>model</th></tr></thead>
    <tbody>
    {% for j in v.jobs %}
      <tr><td class="num">{{ j.id }}</td><td><span class="state state-{{ j.status }}">{{ j.status }}</span></td>
        <td>{{ j.trigger }}</td><td>{{ ago(j.created_at, now) }}</td>
        <td class="num">{{ j.n_labels if j.n_labels is not none else "–" }}</td>
        <td class="num">{{ j.n_pool if j.n_pool is not none else "–" }}</td>
        <td class="num">{{ j.n_media_failed if j.n_media_failed is not none else "–" }}</td>
        <td>{{ j.path or "–" }}</td>
        <td class="num">{{ number(j.train_seconds, 1, " s") }}</td>
        <td class="num">{{ number(j.rank_seconds, 1, " s") }}</td>
        <td class="num">{{ number(j.push_seconds, 1, " s") }}</td>
        <td class="num">{% if j.cache_hits is not none %}{{ j.cache_hits }} / {{ j.cache_misses }}{% else %}–{% endif
          %}</td>
        <td class="num">{{ j.n_pushed if j.n_pushed is not none else "–" }}</td>
        <td class="num">{{ number(j.latency_seconds, 1, " s") }}</td><td>{{ j.model_version or "–" }}</td></tr>
    {% endfor %}
    </tbody>
  </table>
  {% else %}
  <p class="empty">No jobs yet.</p>
  {% endif %}
</section>
{% endfor %}
</main>
</body>
</html>
"""
