"""Every setting of the backend, read from the environment in one place.

Names users of the Label Studio ML backend know keep their meaning (``LABEL_STUDIO_URL``,
``LABEL_STUDIO_API_KEY``, ``BASIC_AUTH_USER``, ``BASIC_AUTH_PASS``, ``MODEL_DIR``, ``REDIS_URL``,
``LOG_LEVEL``); this project's own settings start with ``AUTOAL_``. A malformed value raises a
``ValueError`` naming the variable, so a bad deployment fails at start, not in the middle of a job.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ls_backend.retry import RetryPolicy

PRIORITY_VIEW_TITLE = "AutoAL priority"
# the backbone is trained again when the labels have grown by this factor since it was (the two speeds); 1.2 was
# closer to a full fit every round than 1.5 on fresh seeds (docs/benchmark.md, "The fast path in the loop")
BACKBONE_GROWTH = 1.2
# a backbone retrain pushes every task when the labels have grown by this factor since the last such push, else
# only the head of the queue: each whole-pool push is deleted later, which locks an LS on SQLite ~12 ms a task
FULL_PUSH_GROWTH = 1.5


@dataclass(frozen=True)
class Settings:
    label_studio_url: str | None = None  # LABEL_STUDIO_URL (else LABEL_STUDIO_HOST): the only address the token goes to
    label_studio_api_key: str | None = None  # LABEL_STUDIO_API_KEY: legacy token or personal access token
    basic_auth_user: str | None = None  # BASIC_AUTH_USER
    basic_auth_pass: str | None = None  # BASIC_AUTH_PASS
    allow_anonymous: bool = False  # AUTOAL_ALLOW_ANONYMOUS: without basic auth, serve clients other than loopback
    model_dir: Path = Path("model_dir")  # MODEL_DIR: SQLite store, checkpoints, media cache
    redis_url: str | None = None  # REDIS_URL: when set, jobs run on RQ workers (`autoal worker`)
    rq_queue: str = "autoal"  # AUTOAL_RQ_QUEUE
    log_level: str = "INFO"  # LOG_LEVEL
    device: str = "auto"  # AUTOAL_DEVICE: auto | cpu | cuda | cuda:N
    engine_overrides: dict[str, Any] = field(default_factory=dict)  # AUTOAL_ENGINE_CONFIG (JSON object)
    set_uncertainty_sampling: bool = True  # AUTOAL_SET_UNCERTAINTY_SAMPLING
    keep_versions: int = 3  # AUTOAL_KEEP_VERSIONS: prediction versions kept in LS
    patch_webhook_auth: bool = True  # AUTOAL_PATCH_WEBHOOK_AUTH: add basic auth to LS's auto-created webhook
    media_allowed_hosts: tuple[str, ...] = ()  # AUTOAL_MEDIA_ALLOWED_HOSTS: extra hosts media may come from
    media_max_bytes: int = 50_000_000  # AUTOAL_MEDIA_MAX_BYTES
    media_workers: int = 8  # AUTOAL_MEDIA_WORKERS: parallel downloads
    ls_timeout: float = 30.0  # AUTOAL_LS_TIMEOUT: seconds per LS request
    ls_retries: int = 4  # AUTOAL_LS_RETRIES: retries of a failed LS request (backoff doubles)
    ls_backoff: float = 1.0  # AUTOAL_LS_BACKOFF: first retry delay in seconds
    job_retries: int = 3  # AUTOAL_JOB_RETRIES: automatic re-runs after a job fails on LS errors
    job_retry_delay: float = 30.0  # AUTOAL_JOB_RETRY_DELAY: first re-run delay in seconds (doubles)
    job_timeout: int = 3600  # AUTOAL_JOB_TIMEOUT: RQ job timeout, and age after which "running" is stale
    job_niceness: int = 10  # AUTOAL_JOB_NICENESS: nice increment of the job process and `autoal worker`
    job_threads: int | None = None  # AUTOAL_JOB_THREADS: threads of a job; unset: lane_threads
    request_timeout: int = 15  # AUTOAL_REQUEST_TIMEOUT: seconds to receive a whole request; also the idle timeout
    page_size: int = 500  # AUTOAL_PAGE_SIZE: tasks per page when listing a project
    import_batch: int = 1000  # AUTOAL_IMPORT_BATCH: predictions per bulk import request
    predict_max_unscored: int = 1000  # AUTOAL_PREDICT_MAX_UNSCORED: unranked tasks scored per /predict call
    predict_cached_models: int = 4  # AUTOAL_PREDICT_CACHED_MODELS: projects whose model /predict keeps loaded
    max_request_bytes: int = 8_000_000  # AUTOAL_MAX_REQUEST_BYTES: larger request bodies get 413
    max_ids_per_request: int = 100_000  # AUTOAL_MAX_IDS_PER_REQUEST: tasks / annotations one request may name
    fast_path: bool = True  # AUTOAL_FAST_PATH: between full retrains, refit the head on cached embeddings
    push_top: int = 300  # AUTOAL_PUSH_TOP: predictions the fast path pushes (the head of the queue)
    backbone_growth: float = BACKBONE_GROWTH  # AUTOAL_BACKBONE_GROWTH: train the backbone again at this x its labels
    full_push_growth: float = FULL_PUSH_GROWTH  # AUTOAL_FULL_PUSH_GROWTH: push every task again at this x the labels
    task_seconds_field: str | None = None  # AUTOAL_TASK_SECONDS_FIELD: task data key with a task's seconds, if known

    @property
    def basic_auth_enabled(self) -> bool:
        return bool(self.basic_auth_user) and bool(self.basic_auth_pass)

    @property
    def job_retry_policy(self) -> RetryPolicy:
        """Re-runs of a job that failed because LS was unavailable: AUTOAL_JOB_RETRIES of them, the first after
        AUTOAL_JOB_RETRY_DELAY seconds, each delay twice the one before (no cap)."""
        return RetryPolicy(retries=self.job_retries, first_delay=self.job_retry_delay, max_delay=math.inf)

    @property
    def database_path(self) -> Path:
        return self.model_dir / "autoal.sqlite3"

    @property
    def media_dir(self) -> Path:
        return self.model_dir / "media"

    def checkpoint_dir(self, project_id: int, model_version: str) -> Path:
        return self.model_dir / "projects" / str(project_id) / "models" / model_version

    def embedding_dir(self, project_id: int, backbone_version: str) -> Path:
        """The embedding cache of one backbone of a project (autoal_engine.embedding_cache)."""
        return self.model_dir / "projects" / str(project_id) / "embeddings" / backbone_version

    def engine_config(self) -> Any:
        """The engine's `EngineConfig`: device defaults, then the AUTOAL_ENGINE_CONFIG overrides."""
        from autoal_engine.config import EngineConfig

        device = self.device
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        base = EngineConfig.for_device(device).to_dict()
        try:
            return EngineConfig.from_dict(_deep_merge(base, self.engine_overrides))
        except (TypeError, ValueError) as error:
            raise ValueError(f"AUTOAL_ENGINE_CONFIG: {error}") from error

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        return cls(
            label_studio_url=reader.url("LABEL_STUDIO_URL") or reader.url("LABEL_STUDIO_HOST"),
            label_studio_api_key=reader.text("LABEL_STUDIO_API_KEY") or reader.text("LABEL_STUDIO_ACCESS_TOKEN"),
            basic_auth_user=reader.text("BASIC_AUTH_USER"),
            basic_auth_pass=reader.text("BASIC_AUTH_PASS"),
            allow_anonymous=reader.flag("AUTOAL_ALLOW_ANONYMOUS", False),
            model_dir=Path(reader.text("MODEL_DIR") or "model_dir"),
            redis_url=reader.text("REDIS_URL"),
            rq_queue=reader.text("AUTOAL_RQ_QUEUE") or "autoal",
            log_level=(reader.text("LOG_LEVEL") or "INFO").upper(),
            device=reader.text("AUTOAL_DEVICE") or "auto",
            engine_overrides=reader.json_object("AUTOAL_ENGINE_CONFIG"),
            set_uncertainty_sampling=reader.flag("AUTOAL_SET_UNCERTAINTY_SAMPLING", True),
            keep_versions=reader.integer("AUTOAL_KEEP_VERSIONS", 3, minimum=1),
            patch_webhook_auth=reader.flag("AUTOAL_PATCH_WEBHOOK_AUTH", True),
            media_allowed_hosts=reader.hosts("AUTOAL_MEDIA_ALLOWED_HOSTS"),
            media_max_bytes=reader.integer("AUTOAL_MEDIA_MAX_BYTES", 50_000_000, minimum=1),
            media_workers=reader.integer("AUTOAL_MEDIA_WORKERS", 8, minimum=1),
            ls_timeout=reader.number("AUTOAL_LS_TIMEOUT", 30.0, minimum=0.1),
            ls_retries=reader.integer("AUTOAL_LS_RETRIES", 4, minimum=0),
            ls_backoff=reader.number("AUTOAL_LS_BACKOFF", 1.0, minimum=0.0),
            job_retries=reader.integer("AUTOAL_JOB_RETRIES", 3, minimum=0),
            job_retry_delay=reader.number("AUTOAL_JOB_RETRY_DELAY", 30.0, minimum=0.0),
            job_timeout=reader.integer("AUTOAL_JOB_TIMEOUT", 3600, minimum=10),
            job_niceness=reader.integer("AUTOAL_JOB_NICENESS", 10, minimum=0),
            job_threads=reader.integer("AUTOAL_JOB_THREADS", 0, minimum=0) or None,
            request_timeout=reader.integer("AUTOAL_REQUEST_TIMEOUT", 15, minimum=1),
            page_size=reader.integer("AUTOAL_PAGE_SIZE", 500, minimum=1),
            import_batch=reader.integer("AUTOAL_IMPORT_BATCH", 1000, minimum=1),
            predict_max_unscored=reader.integer("AUTOAL_PREDICT_MAX_UNSCORED", 1000, minimum=0),
            predict_cached_models=reader.integer("AUTOAL_PREDICT_CACHED_MODELS", 4, minimum=1),
            max_request_bytes=reader.integer("AUTOAL_MAX_REQUEST_BYTES", 8_000_000, minimum=65_536),
            max_ids_per_request=reader.integer("AUTOAL_MAX_IDS_PER_REQUEST", 100_000, minimum=1),
            fast_path=reader.flag("AUTOAL_FAST_PATH", True),
            push_top=reader.integer("AUTOAL_PUSH_TOP", 300, minimum=1),
            backbone_growth=reader.number("AUTOAL_BACKBONE_GROWTH", BACKBONE_GROWTH, minimum=1.0),
            full_push_growth=reader.number("AUTOAL_FULL_PUSH_GROWTH", FULL_PUSH_GROWTH, minimum=1.0),
            task_seconds_field=reader.text("AUTOAL_TASK_SECONDS_FIELD"),
        )


class _Reader:
    """Typed access to environment variables; errors name the variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def url(self, name: str) -> str | None:
        value = self.text(name)
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{name} must be an http(s) URL such as http://localhost:8080, got {value[:200]!r}")
        return value.rstrip("/")

    def flag(self, name: str, default: bool) -> bool:
        value = self.text(name)
        if value is None:
            return default
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{name} must be true or false, got {value!r}")

    def integer(self, name: str, default: int, minimum: int) -> int:
        value = self.text(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"{name} must be an integer, got {value!r}") from None
        if number < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {number}")
        return number

    def number(self, name: str, default: float, minimum: float) -> float:
        value = self.text(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{name} must be a number, got {value!r}") from None
        if not number >= minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {number}")
        return number

    def json_object(self, name: str) -> dict[str, Any]:
        value = self.text(name)
        if value is None:
            return {}
        try:
            data = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"{name} is not valid JSON: {error}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{name} must be a JSON object")
        return data

    def hosts(self, name: str) -> tuple[str, ...]:
        """Allow-list entries (host, host:port or scheme://host[:port]); a malformed one fails at start."""
        from ls_backend.media import parse_allowed_host

        value = self.text(name) or ""
        hosts = tuple(host.strip().lower() for host in value.split(",") if host.strip())
        for host in hosts:
            parse_allowed_host(host)
        return hosts


def _deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
