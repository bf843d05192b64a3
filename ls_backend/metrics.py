"""Prometheus metrics, computed from the SQLite store at scrape time.

Reading the store (instead of in-process counters) makes the numbers right whichever process ran the
job (web process or RQ worker) and keeps them across restarts.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ls_backend.store import Store
from ls_backend.tuning_view import tuning_totals

SECONDS_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)


class StoreCollector(Collector):
    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        jobs = CounterMetricFamily("autoal_jobs", "Retrain-and-rank jobs by final or current status", labels=["status"])
        for status, count in sorted(self.store.job_counts().items()):
            jobs.add_metric([status], count)
        yield jobs

        events = CounterMetricFamily("autoal_webhook_events", "Webhook events received, by action", labels=["action"])
        for action, count in sorted(self.store.event_counts().items()):
            events.add_metric([action], count)
        yield events

        for column, name, documentation in (
            ("train_seconds", "autoal_retrain_seconds", "Seconds spent training (engine.fit) per job"),
            ("rank_seconds", "autoal_rank_seconds", "Seconds spent ranking the pool (engine.rank) per job"),
            (
                "push_seconds",
                "autoal_push_seconds",
                "Seconds spent writing predictions and project settings to LS",
            ),
        ):
            yield _histogram(name, documentation, self.store.job_durations(column))

        for path in ("fast", "full"):
            yield _histogram(f"autoal_{path}_path_latency_seconds",
                             f"Seconds from the first annotation a {path}-path job covers to its predictions in LS",
                             self.store.job_durations("latency_seconds", path=path))
        paths = CounterMetricFamily("autoal_jobs_by_path", "Finished jobs by path (fast: head refit on cached "
                                    "embeddings; full: backbone trained)", labels=["path"])
        for path, count in sorted(self.store.path_counts().items()):
            paths.add_metric([path], count)
        yield paths
        cache = CounterMetricFamily("autoal_embedding_cache_lookups", "Embedding-cache lookups of jobs, by outcome",
                                    labels=["outcome"])
        for outcome, count in sorted(self.store.cache_totals().items()):
            cache.add_metric([outcome], count)
        yield cache

        pool = GaugeMetricFamily("autoal_pool_size", "Unlabeled tasks in the current ranking", labels=["project"])
        for project_id, size in sorted(self.store.pool_sizes().items()):
            pool.add_metric([str(project_id)], size)
        yield pool

        age = GaugeMetricFamily(
            "autoal_queue_age_seconds", "Age of the oldest queued job of each project", labels=["project"]
        )
        for project_id, seconds in sorted(self.store.oldest_queued_age().items()):
            age.add_metric([str(project_id)], seconds)
        yield age

        seconds, states = tuning_totals(self.store.recent_models())
        yield _histogram("autoal_tuning_seconds", "Seconds spent tuning the task model, per tuning (last 1000 models)",
                         seconds)
        trials = CounterMetricFamily("autoal_tuning_trials", "Trials of the model tunings by final state (last 1000 "
                                     "models)", labels=["state"])
        for state, count in sorted(states.items()):
            trials.add_metric([state], count)
        yield trials

        failed = GaugeMetricFamily(
            "autoal_media_failed", "Items the last job left out because their media cannot be used", labels=["project"]
        )
        for project_id, count in sorted(self.store.media_failure_counts().items()):
            failed.add_metric([str(project_id)], count)
        yield failed


def _histogram(name: str, documentation: str, values: list[float]) -> HistogramMetricFamily:
    buckets = [(str(bound), sum(1 for v in values if v <= bound)) for bound in SECONDS_BUCKETS]
    buckets.append(("+Inf", len(values)))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=float(sum(values)))


def metrics_text(store: Store) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    return generate_latest(registry)
