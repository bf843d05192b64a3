"""The retrain-and-rank job: pull the project from LS, train, rank the pool, push the ranking back.

`run_job(settings, store, job_id)` is the one job function; both runners (`ls_backend.runners`) call it.
A job takes one of two paths (`RetrainAndRank.plan`):

- the **fast path**, on every (coalesced) annotation: load the backbone of the newest full model, look up
  every item's embedding in that backbone's cache (`autoal_engine.embedding_cache`, keyed by the media
  bytes; only new or changed items are embedded), refit the head and the cost model on the labeled
  items' cached embeddings, rank the pool from the cache, and push the first ``AUTOAL_PUSH_TOP`` tasks as
  a new model version (LS's uncertainty sampling serves only tasks with a prediction of the current
  version, so the head of the queue is what must be fresh);
- the **full path**: train the backbone (tuning it when due), embed every item into a new cache, rank,
  and push every pool task (pre-annotations and the Data Manager's scores). When a full retrain falls due
  (START_TRAINING, labels grown by ``tuning.growth_factor``) and a backbone can be refitted, the job takes
  the fast path and asks for a job in the **full lane** (`JobOutcome.follow_up`), which the runners run
  beside the fast lane: the fast path keeps using the previous backbone until the new one is committed,
  then one more fast job refits the labels that came in meanwhile on the new backbone.

Steps and their progress fractions are recorded in the store as the job goes:

1. read the label config and pull the tasks with their annotations from LABEL_STUDIO_URL (paginated,
   through the SDK): what LS lists is the truth, whatever the webhooks said. A fast-lane job pulls only
   the tasks LS changed since the last listing into the store's mirror of the project (`list_tasks`);
   ranking rows of tasks no longer in the pool are dropped;
2. fetch media that is not cached yet; items that cannot be fetched, decoded or are too small are left
   out, counted (``n_media_failed``) and recorded with the reason for the status page;
3. the fast or the full path as above (the full path hands `engine.fit` the current model's tuning state:
   a model tuning runs when due, and always on ``START_TRAINING``);
4. save the model atomically under MODEL_DIR (a crash before this point leaves the previous model serving)
   and keep it, with its ranking, as the project's *pending push*;
5. import the predictions (`score = 1 - priority`, the predicted class as result), then set the project's
   `model_version` (and sampling), keep the "AutoAL priority" tab, drop old prediction versions (never
   the backbone's full push, nor a version a running job reserved);
6. commit the model row, the ranking and its provenance to SQLite in one transaction (this also clears
   the pending push).

When LS fails during step 5 the pending push survives; the retry pushes it without training again, unless
the labels changed meanwhile (then it trains on the new labels).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ls_backend.label_config import LabelConfigs
from ls_backend.labeling import LabelConfigError, LabelingInterface
from ls_backend.labelstudio import (
    UNCERTAINTY_SAMPLING,
    LabelStudioClient,
    LabelStudioError,
    LabelStudioUnavailable,
)
from ls_backend.logs import log_context
from ls_backend.media import MediaError, MediaFetcher, check_image
from ls_backend.settings import PRIORITY_VIEW_TITLE, Settings
from ls_backend.store import Store
from ls_backend.task_adapter import (
    fetch_images,
    known_seconds,
    prediction,
    ranking_rows,
    split_tasks,
    training_inputs,
)

logger = logging.getLogger(__name__)

VERSION_PREFIX = "autoal-v"
FULL_LISTING_EVERY = 3600.0  # seconds: how stale the full lane lets the mirror's view of deletions get
LARGE_DELETE_TIMEOUT = 600.0  # seconds to wait for LS to delete a full push (20,000 predictions on SQLite: minutes)


@dataclass(frozen=True)
class JobOutcome:
    status: str  # done | skipped | failed | not-run
    message: str | None = None
    retryable: bool = False  # failed because LS was unavailable: run again later
    follow_up: tuple[str, str] | None = None  # (lane, trigger) of a job the runner requests next


class SkipJob(Exception):
    """Nothing to train on yet (e.g. fewer than two labeled classes); not an error."""


def run_job(settings: Settings, store: Store, job_id: int) -> JobOutcome:
    """Run one queued job to its end; never raises (the outcome and the store say what happened).

    Every line logged meanwhile, the engine's included, carries project= and job= (ls_backend.logs).
    """
    queued = store.job(job_id)
    with log_context(project=queued["project_id"] if queued else None, job=job_id):
        return _run_job(settings, store, job_id)


def _run_job(settings: Settings, store: Store, job_id: int) -> JobOutcome:
    job = store.start_job(job_id)
    if job is None:
        logger.info("job %s is not queued any more; nothing to do", job_id)
        return JobOutcome("not-run")
    project_id = int(job["project_id"])
    logger.info("job %s: retrain and rank project %s (trigger %s)", job_id, project_id, job["trigger"])
    work = RetrainAndRank(settings, store, project_id, job_id, lane=job.get("lane") or "fast",
                          trigger=job["trigger"])
    try:
        message = work.run()
    except SkipJob as reason:
        logger.info("job %s skipped: %s", job_id, reason)
        store.finish_job(job_id, "skipped", str(reason))
        return JobOutcome("skipped", str(reason))
    except LabelStudioUnavailable as error:
        logger.warning("job %s failed, Label Studio unavailable: %s", job_id, error)
        store.finish_job(job_id, "failed", str(error))
        return JobOutcome("failed", str(error), retryable=True)
    except (LabelStudioError, LabelConfigError, ValueError) as error:
        logger.warning("job %s failed: %s", job_id, error)
        store.finish_job(job_id, "failed", str(error))
        return JobOutcome("failed", str(error))
    except Exception as error:  # a job must never kill its worker
        logger.exception("job %s crashed", job_id)
        message = f"internal error: {type(error).__name__}: {error}"
        store.finish_job(job_id, "failed", message)
        return JobOutcome("failed", message)
    store.finish_job(job_id, "done")
    logger.info("job %s done: %s", job_id, message)
    return JobOutcome("done", message, follow_up=work.follow_up)


class RetrainAndRank:
    """One job: the fast path (refit the head on cached embeddings, push the head of the queue) or the full
    path (train the backbone, embed the pool, push every task); see `plan`."""

    def __init__(self, settings: Settings, store: Store, project_id: int, job_id: int, *, lane: str = "fast",
                 trigger: str = "") -> None:
        self.settings = settings
        self.store = store
        self.project_id = project_id
        self.job_id = job_id
        self.lane = lane
        self.trigger = trigger
        self.follow_up: tuple[str, str] | None = None  # set by plan: the job to run after this one
        self.fallback_reason: str | None = None  # set when the fast path failed and the full path ran instead
        self.media_failures: list[dict[str, Any]] = []  # this job's unusable items, recorded as they are found

    def stage(self, name: str, progress: float, **fields: Any) -> None:
        self.store.update_job(self.job_id, stage=name, progress=round(progress, 3), **fields)
        logger.info(
            "job progress",
            extra={"project": self.project_id, "job": self.job_id, "stage": name, "progress": round(progress, 3)},
        )

    def run(self) -> str:
        self.stage("pulling tasks", 0.02)
        started = time.perf_counter()
        ls = LabelStudioClient.for_settings(self.settings)
        interface = LabelConfigs(self.store).refresh(ls, self.project_id)
        labeled, pool = split_tasks(self.list_tasks(ls), interface)
        list_seconds = time.perf_counter() - started
        # tasks LS no longer lists (deleted) leave the ranking; labeled ones stay until the commit, since
        # their rows hold the predicted seconds that record_label_costs pairs with the observed ones
        dropped = self.store.prune_ranking(self.project_id, [task["id"] for task in [*labeled, *pool]])
        if dropped:
            logger.info("project %s: %s tasks LS no longer lists left the ranking", self.project_id, dropped)
        digest = labels_digest(labeled, interface)
        pending = self.store.pending_push(self.project_id)
        if pending is not None and pending["labels_digest"] == digest:
            return self.push_pending(ls, interface, pending, {task["id"] for task in pool})
        if pending is not None:
            logger.info("project %s: new labels since %s; training again", self.project_id, pending["model_version"])
            self.store.drop_pending_push(self.project_id)
        path, base, why = self.plan(interface, len(labeled))
        logger.info("project %s: %s path (%s)", self.project_id, path, why)
        if path == "full" and self.lane == "full":
            self.follow_up = ("fast", "new backbone")  # the labels that came in meanwhile, on the new backbone
        self.stage("fetching media", 0.1, n_labels=len(labeled), n_pool=len(pool), path=path, path_reason=why,
                   list_seconds=list_seconds)
        check_trainable(labeled, pool)
        started = time.perf_counter()
        verify = base is None or self.store.consecutive_failures(self.project_id) > 0  # the fast path trusts the cache
        labeled, pool, failed = self.fetch_media(ls, interface, labeled, pool, verify_cached=verify)
        self.stage("training", 0.3, n_labels=len(labeled), n_pool=len(pool), n_media_failed=failed,
                   media_seconds=time.perf_counter() - started)
        check_trainable(labeled, pool)
        engine, ranking, labeled, pool, hits, misses, train_seconds, rank_seconds = self.train_and_rank(
            base, interface, labeled, pool
        )
        self.stage("ranking", 0.7, train_seconds=train_seconds, rank_seconds=rank_seconds, cache_hits=hits,
                   cache_misses=misses)

        version = self.store.reserve_version(self.project_id)
        checkpoint = self.settings.checkpoint_dir(self.project_id, version)
        engine.save(checkpoint)
        report = engine.report
        why = self.fallback_reason or why
        model = {
            "model_version": version,
            "checkpoint": str(checkpoint),
            "path": report["path"],
            "backbone_version": engine.backbone_version,
            "n_labels": len(labeled),
            "n_pool": len(pool),
            "holdout_accuracy": report.get("holdout_accuracy"),
            "classes": list(interface.classes),
            "strategy_weights": ranking.mean_strategy_weights or report.get("mean_strategy_weights"),
            "cost_report": report.get("cost"),
            "report": {**report, "path_reason": why},
            "job_id": self.job_id,
            "observed_seconds": {str(task["id"]): task["label"].lead_time for task in labeled},
        }
        rows = ranking_rows([task["id"] for task in pool], ranking)
        self.store.save_pending_push(self.project_id, digest, model, rows)  # kept if the push fails
        self.stage("pushing predictions", 0.8, model_version=version)
        pushed = self.push_and_commit(ls, interface, model, rows)
        return f"{version} ({report['path']} path): {len(labeled)} labels, {len(pool)} tasks ranked, {pushed} pushed"

    def list_tasks(self, ls: LabelStudioClient) -> list[dict[str, Any]]:
        """The project's tasks: those LS changed since the last listing, merged into the store's mirror
        (`ls_backend.store.task_mirror`); in full when the mirror is empty, when the job covers a deletion
        or START_TRAINING, after a failed job (a task deleted without a webhook would fail every push), and
        in the full lane when the last full listing is FULL_LISTING_EVERY seconds old (listing 20,000 tasks
        keeps LS busy for a minute, and the fast lane's requests wait behind it)."""
        since = self.store.tasks_listed_since(self.project_id)
        listed_at = self.store.fully_listed_at(self.project_id)
        full = (since is None or listed_at is None
                or self.asked_to_train() or "TASKS_DELETED" in self.store.covered_actions(self.job_id)
                or self.store.consecutive_failures(self.project_id) > 0
                or (self.lane == "full" and time.time() - listed_at > FULL_LISTING_EVERY))
        if full:
            tasks = ls.tasks(self.project_id, page_size=self.settings.page_size)
            self.store.replace_mirrored_tasks(self.project_id, tasks)
            self.stage("pulling tasks", 0.05, n_listed=len(tasks))
            return tasks
        changed = ls.tasks_updated_since(self.project_id, since, page_size=self.settings.page_size)
        self.store.update_mirrored_tasks(self.project_id, changed)
        self.stage("pulling tasks", 0.05, n_listed=len(changed))
        logger.info("project %s: %s tasks changed since %s", self.project_id, len(changed), since)
        return self.store.mirrored_tasks(self.project_id)

    def train_and_rank(self, base: dict[str, Any] | None, interface: LabelingInterface, labeled: list[dict],
                       pool: list[dict]) -> tuple:
        """The fast path on ``base``'s backbone, or the full path (no base, or the fast path failed: a
        backbone that no longer loads is retrained, not the job's failure)."""
        if base is not None:
            try:
                return self.fast_path(base, labeled, pool)
            except (OSError, RuntimeError, ValueError) as error:
                if isinstance(error, LabelStudioError):
                    raise
                why = f"the fast path failed: {str(error)[:200]}"
                logger.warning("project %s: %s; taking the full path", self.project_id, why)
                self.follow_up = None
                self.stage("training", 0.3, path="full", path_reason=why)
                self.fallback_reason = why
                return self.full_path(interface, labeled, pool)
        return self.full_path(interface, labeled, pool)

    def plan(self, interface: LabelingInterface, n_labels: int) -> tuple[str, dict[str, Any] | None, str]:
        """("fast", the full model whose backbone the head is refitted on, why) or ("full", None, why).

        A full retrain (train the backbone, embed the pool, push every task) is due for the first model, on
        START_TRAINING, when the labels grew by AUTOAL_BACKBONE_GROWTH since the backbone was trained, and
        always in the full lane. When a backbone can be refitted, a job of the fast lane takes the fast path
        even then and leaves the full retrain to a job of the full lane (`follow_up`), so the queue follows
        the label at once and the full retrain runs in the background. The full path runs inline when no
        backbone can be refitted: none yet, the label config's classes or the engine configuration changed,
        its cache or checkpoint is gone, or AUTOAL_FAST_PATH is off."""
        base = self.store.latest_full_model(self.project_id)
        blocked = self.cannot_refit(interface, base)
        if self.lane == "full":
            return "full", None, f"a full retrain in the background ({self.trigger})"
        if blocked is not None:
            return "full", None, blocked
        due = self.full_retrain_due(n_labels, base)
        if due is not None:
            self.follow_up = ("full", due)
            return "fast", base, f"{due}: refit now, the full retrain follows in the background"
        return "fast", base, f"refit on backbone {base['model_version']} ({base['n_labels']} labels)"

    def cannot_refit(self, interface: LabelingInterface, base: dict[str, Any] | None) -> str | None:
        """Why the fast path cannot refit ``base``'s backbone, or None when it can."""
        if not self.settings.fast_path:
            return "the fast path is off (AUTOAL_FAST_PATH)"
        if base is None:
            return "no backbone trained yet"
        if self.settings.engine_config().search.searchnet_input == "image":
            return "an image SearchNet reads the images (search.searchnet_input)"
        if list(base["classes"] or []) != list(interface.classes):
            return "the label config's classes changed"
        if (base["report"] or {}).get("engine_config") != config_fingerprint(self.settings):
            return "the engine configuration changed"
        backbone = base.get("backbone_version")
        if not backbone or not self.settings.embedding_dir(self.project_id, backbone).is_dir():
            return "the backbone's embedding cache is missing"
        if not (Path(base["checkpoint"]) / "engine.pt").is_file():
            return "the backbone's checkpoint is missing"
        return None

    def asked_to_train(self) -> bool:
        """Whether this job was asked for by START_TRAINING: it covers that event, or the fast job that
        covered it requested this one (its trigger)."""
        return self.trigger == "START_TRAINING" or "START_TRAINING" in self.store.covered_actions(self.job_id)

    def full_retrain_due(self, n_labels: int, base: dict[str, Any]) -> str | None:
        """Why the backbone should be trained again (START_TRAINING, the labels' growth since the backbone
        was trained, unless a full retrain is queued or running already), or None."""
        if self.asked_to_train():
            return "START_TRAINING"
        growth, trained_on = self.settings.backbone_growth, base["n_labels"] or 0
        grown = n_labels > trained_on and n_labels >= growth * max(1, trained_on)  # growth 1: any new label
        if grown and not self.store.active_jobs(self.project_id, "full"):
            return f"{n_labels} labels, {growth}x the backbone's {base['n_labels']}"
        return None  # not grown enough, or a full retrain is under way already (it trains on the newest labels)

    def full_path(self, interface: LabelingInterface, labeled: list[dict], pool: list[dict]) -> tuple:
        """Train the backbone (tuning it when due), embed every item into the new backbone's cache, rank."""
        from autoal_engine.engine import Engine

        started = time.perf_counter()
        engine = Engine(self.settings.engine_config())
        paths, labels, seconds = training_inputs(labeled)
        engine.fit(paths, labels, seconds, classes=list(interface.classes), pool_size=len(pool),
                   tuning_state=self.tuning_state(), tune=self.asked_to_train(),
                   pruning_history=self.pruning_history())
        engine.report["engine_config"] = config_fingerprint(self.settings)
        train_seconds = time.perf_counter() - started
        started = time.perf_counter()
        vectors, hits, misses, _ = self.cached_vectors(engine, [*labeled, *pool])
        known = known_seconds(pool, self.settings.task_seconds_field)
        if engine.config.search.searchnet_input == "image":
            ranking = engine.rank([task["path"] for task in pool], known)
        else:
            ranking = engine.rank_vectors(vectors[len(labeled):], known)
        return engine, ranking, labeled, pool, hits, misses, train_seconds, time.perf_counter() - started

    def fast_path(self, base: dict[str, Any], labeled: list[dict], pool: list[dict]) -> tuple:
        """Refit the head of ``base``'s backbone on the cached embeddings of the labeled items, rank the pool.
        Media were not decoded again; an item that misses the cache is, and is left out when it does not."""
        from autoal_engine.engine import Engine

        started = time.perf_counter()
        engine = Engine.load(base["checkpoint"])
        vectors, hits, misses, unusable = self.cached_vectors(engine, [*labeled, *pool], verify=True)
        if unusable:
            self.record_media_failures(labeled, pool, unusable)
            keep = [i for i, task in enumerate([*labeled, *pool]) if task["id"] not in unusable]
            vectors = vectors[keep]
            labeled = [task for task in labeled if task["id"] not in unusable]
            pool = [task for task in pool if task["id"] not in unusable]
            check_trainable(labeled, pool)
        _, labels, seconds = training_inputs(labeled)
        engine.refit(vectors[:len(labeled)], labels, seconds, pool_size=len(pool),
                     pruning_history=self.pruning_history())
        engine.report["engine_config"] = base["report"].get("engine_config")
        train_seconds = time.perf_counter() - started
        started = time.perf_counter()
        ranking = engine.rank_vectors(vectors[len(labeled):], known_seconds(pool, self.settings.task_seconds_field))
        return engine, ranking, labeled, pool, hits, misses, train_seconds, time.perf_counter() - started

    def cached_vectors(self, engine: Any, tasks: list[dict], verify: bool = False) -> tuple[Any, int, int, dict]:
        """(each task's cached vector under the engine's backbone, hits, misses, task id -> why its media is
        unusable): only misses are embedded, after a decode check when ``verify`` (their rows stay NaN)."""
        from autoal_engine.embedding_cache import EmbeddingCache

        keys = [media_key(task["path"]) for task in tasks]
        directory = self.settings.embedding_dir(self.project_id, engine.backbone_version)
        unusable: dict[int, str] = {}
        with EmbeddingCache(directory, engine.vector_width) as cache:
            vectors, found = cache.get(keys)
            missing = [i for i in range(len(tasks)) if not found[i]]
            if verify:
                for i in missing:
                    try:
                        check_image(Path(tasks[i]["path"]))
                    except MediaError as error:
                        unusable[tasks[i]["id"]] = str(error)
                missing = [i for i in missing if tasks[i]["id"] not in unusable]
            if missing:
                fresh = engine.vectors([tasks[i]["path"] for i in missing])
                cache.put([keys[i] for i in missing], fresh)
                vectors[missing] = fresh
        return vectors, len(tasks) - len(missing) - len(unusable), len(missing), unusable

    def tuning_state(self) -> Any:
        """The current model's tuning state (its incumbent configuration), handed to the next fit."""
        from autoal_engine.tuning import TuningState

        return TuningState.from_dict(self.current_report().get("tuning_state"))

    def pruning_history(self) -> list[list[float]]:
        """The candidates' rewards up to the current model's ranking (pruning), which this job's ranking extends."""
        return (self.current_report().get("pruning") or {}).get("history") or []

    def current_report(self) -> dict[str, Any]:
        """The engine report of the project's current model ({} before the first): what a job carries on."""
        return (self.store.current_model(self.project_id) or {}).get("report") or {}

    def fetch_media(
        self, ls: LabelStudioClient, interface: LabelingInterface, labeled: list[dict], pool: list[dict],
        verify_cached: bool = True,
    ) -> tuple[list[dict], list[dict], int]:
        """(labeled, pool) with each task's local image "path", leaving out and recording unusable items.
        ``verify_cached=False`` trusts cached files (the fast path verifies the ones it embeds)."""
        fetcher = MediaFetcher.for_settings(self.settings, ls)
        try:
            usable, reasons = fetch_images(fetcher, interface, [*labeled, *pool], verify_cached=verify_cached)
        finally:
            fetcher.close()
        self.record_media_failures(labeled, pool, reasons)
        labeled_ids = {task["id"] for task in labeled}
        return (
            [task for task in usable if task["id"] in labeled_ids],
            [task for task in usable if task["id"] not in labeled_ids],
            len(reasons),
        )

    def record_media_failures(self, labeled: list[dict], pool: list[dict], reasons: dict[int, str]) -> None:
        """Add the items whose media cannot be used (task id -> why) to this job's record of them."""
        failures = [
            {"task_id": task["id"], "kind": kind, "reason": reasons[task["id"]]}
            for kind, tasks in (("labeled", labeled), ("pool", pool))
            for task in tasks
            if task["id"] in reasons
        ]
        self.media_failures += failures
        self.store.record_media_failures(self.project_id, self.job_id, self.media_failures)
        if failures:
            logger.warning(
                "project %s: %s items left out (media unusable), e.g. task %s: %s",
                self.project_id,
                len(failures),
                failures[0]["task_id"],
                failures[0]["reason"],
            )

    def push_pending(
        self, ls: LabelStudioClient, interface: LabelingInterface, pending: dict[str, Any], pool_ids: set[int]
    ) -> str:
        """Push the model a failed job trained (the labels are unchanged): no training again."""
        model = pending["model"]
        rows = rerank([row for row in pending["ranking"] if row["task_id"] in pool_ids])
        if not rows:
            self.store.drop_pending_push(self.project_id)
            raise SkipJob("no unlabeled tasks to rank")
        logger.info("project %s: pushing %s, trained before LS failed", self.project_id, model["model_version"])
        self.stage("pushing predictions", 0.8, model_version=model["model_version"], n_labels=model["n_labels"])
        self.push_and_commit(ls, interface, model, rows)
        return f"{model['model_version']}: pushed after a failed push, {len(rows)} tasks ranked (no retraining)"

    def push_and_commit(
        self, ls: LabelStudioClient, interface: LabelingInterface, model: dict[str, Any], rows: list[dict[str, Any]]
    ) -> int:
        """Import the ranking as predictions (every task, or its first AUTOAL_PUSH_TOP: `pushes_whole_pool`),
        make its version current in LS, then commit it to the store; the number pushed."""
        version = model["model_version"]
        started = time.perf_counter()
        pushed = sorted(rows, key=lambda row: row["rank"])
        if not self.pushes_whole_pool(ls, model):
            pushed = pushed[: self.settings.push_top]
        predictions = [
            {"task": row["task_id"], **prediction(interface, row["predicted_label"], row["score"], version)}
            for row in pushed
        ]
        ls.import_predictions(self.project_id, predictions, batch=self.settings.import_batch)
        self.stage("updating project", 0.95)
        ls.update_project(
            self.project_id,
            model_version=version,
            sampling=UNCERTAINTY_SAMPLING if self.settings.set_uncertainty_sampling else None,
        )
        first_event = self.store.first_covered_event_at(self.job_id)
        self.stage(
            "saving", 0.98, push_seconds=time.perf_counter() - started, model_version=version, n_pushed=len(pushed),
            latency_seconds=None if first_event is None else max(0.0, time.time() - first_event),
        )
        ls.ensure_priority_view(self.project_id, PRIORITY_VIEW_TITLE)
        observed = {int(task_id): seconds for task_id, seconds in (model.get("observed_seconds") or {}).items()}
        # before the ranking is replaced: it holds the predicted seconds of the tasks labeled since
        self.store.record_label_costs(self.project_id, observed)
        self.store.commit_model(self.project_id, {**model, "n_pool": len(rows)}, rows)
        self.drop_old_versions(ls, version)
        return len(pushed)

    def pushes_whole_pool(self, ls: LabelStudioClient, model: dict[str, Any]) -> bool:
        """Whether ``model``'s push covers every task (pre-annotations, Data Manager scores) or the head of the
        queue only. The fast path pushes the head. A backbone retrain pushes every task on START_TRAINING, when
        LS holds no whole-pool push of ours with these classes, or when the labels have grown by
        AUTOAL_FULL_PUSH_GROWTH since the newest one; the retrains in between push the head: every whole-pool
        push is deleted later, which locks an LS on SQLite for about 12 ms a task."""
        if model.get("path") != "full":
            return False
        if self.asked_to_train():
            return True
        last = self.newest_whole_push(ls)
        if last is None or list(last["classes"] or []) != list(model["classes"]):
            return True
        return model["n_labels"] >= self.settings.full_push_growth * max(1, last["n_labels"] or 0)

    def newest_whole_push(self, ls: LabelStudioClient) -> dict[str, Any] | None:
        """The stored model of the newest version of ours in LS with more than AUTOAL_PUSH_TOP predictions."""
        for version in whole_pool_versions(ls.model_versions(self.project_id), self.settings.push_top):
            model = self.store.model(self.project_id, version)
            if model is not None:
                return model
        return None

    def drop_old_versions(self, ls: LabelStudioClient, current: str) -> None:
        """Delete our prediction versions in LS and our checkpoints beyond the newest `keep_versions`, except
        the backbone the fast path refits (its checkpoint, its full-pool predictions, its embedding cache),
        versions that running jobs have reserved, versions newer than ``current``, and the newest whole-pool
        push (the predictions of the tasks outside the head).

        A version of more than AUTOAL_PUSH_TOP predictions (a full push) is deleted by the full lane only:
        deleting 20,000 predictions keeps an LS on SQLite locked for seconds, and two lanes deleting it at
        once kept each other failing (and every other request to LS with them)."""
        keep = {
            model["model_version"] for model in self.store.model_history(self.project_id, self.settings.keep_versions)
        }
        keep.add(current)
        base = self.store.latest_full_model(self.project_id)
        if base is not None:
            keep.add(base["model_version"])

        keep |= self.store.versions_in_flight(self.project_id)  # the other lane's job may be pushing it

        def stale(version: str) -> bool:
            return version not in keep and version_number(version) < version_number(current)

        try:
            versions = ls.model_versions(self.project_id)
            keep |= set(whole_pool_versions(versions, self.settings.push_top)[:1])  # the newest
            for version, count in versions.items():
                full_push = count > self.settings.push_top
                if full_push and self.lane == "fast":
                    continue  # a whole pool's push is the full lane's to delete
                if version.startswith(VERSION_PREFIX) and stale(version):
                    timeout = LARGE_DELETE_TIMEOUT if full_push else None
                    deleted = ls.delete_model_version(self.project_id, version, timeout=timeout)
                    logger.info("project %s: deleted %s predictions of %s", self.project_id, deleted, version)
        except LabelStudioError as error:  # cleanup only; the next job tries again
            logger.warning("project %s: old prediction versions not deleted: %s", self.project_id, error)
        models_dir = self.settings.checkpoint_dir(self.project_id, current).parent
        for directory in models_dir.iterdir() if models_dir.exists() else []:
            if directory.is_dir() and stale(directory.name):
                shutil.rmtree(directory, ignore_errors=True)
        if base is not None and base.get("backbone_version"):
            backbones = self.settings.embedding_dir(self.project_id, base["backbone_version"]).parent
            for directory in backbones.iterdir() if backbones.exists() else []:
                if older_backbone(directory.name, base["backbone_version"]):
                    shutil.rmtree(directory, ignore_errors=True)


def whole_pool_versions(counts: dict[str, int], push_top: int) -> list[str]:
    """Our versions in LS (name -> predictions) with more predictions than the head of the queue, newest first."""
    versions = [version for version, count in counts.items() if version.startswith(VERSION_PREFIX) and count > push_top]
    return sorted(versions, key=version_number, reverse=True)


def version_number(version: str) -> int:
    """N of "autoal-vN" (versions are numbered in the order they were reserved); -1 for other names."""
    suffix = version[len(VERSION_PREFIX):] if version.startswith(VERSION_PREFIX) else ""
    return int(suffix) if suffix.isdigit() else -1


def older_backbone(name: str, base: str) -> bool:
    """Whether the embedding cache ``name`` belongs to a backbone trained before ``base`` (the one the fast path
    refits). A newer one is kept: a full retrain of the other lane may be embedding the pool into it, to commit
    it after its push (a crashed one's is dropped once a backbone after it is committed). Backbone versions are
    "autoal-YYYYMMDD-HHMMSS-xxxxxx" (`Engine`), so their order is the order they were trained in, to the
    second; two in the same second are told apart by nothing, and both are kept."""
    return name != base and name[:22] < base[:22]


def media_key(path: str) -> bytes:
    """The embedding cache's key of a media file: the SHA-256 of its bytes (a changed image is a new key)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").digest()


def config_fingerprint(settings: Settings) -> str:
    """What the operator configured for the engine (AUTOAL_ENGINE_CONFIG): a backbone trained under other
    overrides is not refitted. Not the resolved config: a GPU worker's defaults differ from a CPU one's,
    and a backbone a GPU worker trained is refitted on a CPU worker."""
    overrides = json.dumps(settings.engine_overrides, sort_keys=True, default=str)
    return hashlib.sha256(overrides.encode()).hexdigest()[:16]


def labels_digest(labeled: list[dict[str, Any]], interface: LabelingInterface) -> str:
    """A fingerprint of the labeled set (task, label, classes): equal digests train the same model."""
    content = [list(interface.classes), sorted((task["id"], task["label"].label) for task in labeled)]
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()


def rerank(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ranking rows with their ranks renumbered 1..n in the same order (after some tasks left the pool)."""
    ordered = sorted(rows, key=lambda row: row["rank"])
    return [{**row, "rank": position} for position, row in enumerate(ordered, start=1)]


def check_trainable(labeled: list[dict[str, Any]], pool: list[dict[str, Any]]) -> None:
    classes = {task["label"].label for task in labeled}
    if len(classes) < 2:
        raise SkipJob(f"waiting for labels: {len(labeled)} labeled tasks in {len(classes)} classes, 2 classes needed")
    if not pool:
        raise SkipJob("no unlabeled tasks to rank")


