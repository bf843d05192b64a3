"""Structured logs: one line per event, ``key=value`` (logfmt), with the project and job it belongs to.

    ts=2025-11-25T16:59:01.123Z level=info logger=ls_backend.jobs project=3 job=17 msg="job progress"
    stage=training progress=0.3     (one line; wrapped here)

`setup_logging(level)` installs the format on the root logger (`autoal serve` and `autoal worker` call it).
`log_context(project=..., job=...)` adds fields to every line logged inside it, in this thread or task,
whichever library logs (the engine's lines during a job carry the job's ids too); `context_fields()` are
the fields in effect (what a handler that does not format, such as the job process's, must carry along).
Fields given with ``extra={...}`` on one call are added to that line. Tracebacks stay on the line, newlines escaped.
`log_requests(app)` writes one line per HTTP request; for /webhook it names the action, project and job.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import IO, Any

from flask import Flask, Response, g, request

_context: ContextVar[Mapping[str, Any]] = ContextVar("autoal_log_context", default=MappingProxyType({}))
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_QUIET_REQUESTS = ("/health", "/metrics")  # scraped often: logged at debug level
_HANDLER_MARK = "_autoal_handler"


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (None values left out) to every line logged inside the block."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def context_fields() -> Mapping[str, Any]:
    """The fields `log_context` adds here and now (read-only)."""
    return _context.get()


class LogfmtFormatter(logging.Formatter):
    """ts, level, logger, the context fields, msg, then the call's extra fields (and exc)."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            **_context.get(),
        }
        extra = {key: value for key, value in vars(record).items() if key not in _STANDARD}
        fields.update({key: extra.pop(key) for key in ("project", "job") if key in extra})
        fields["msg"] = record.getMessage()
        fields.update(extra)
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return " ".join(f"{key}={_value(value)}" for key, value in fields.items())


def _value(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, bool):
        text = str(value).lower()
    else:
        text = str(value)
    if not text or any(c in text for c in ' ="\\') or not text.isprintable():
        return json.dumps(text)
    return text


def setup_logging(level: str | int = "INFO", stream: IO[str] | None = None) -> logging.Handler:
    """Root logger -> one logfmt line per record on ``stream`` (stderr); replaces an earlier setup."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "urllib3", "matplotlib"):  # a line per HTTP call or font lookup otherwise
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return handler


def log_requests(app: Flask) -> None:
    """One line per request: method, path, status, milliseconds; a webhook's action, project and job."""
    logger = logging.getLogger("ls_backend.requests")

    @app.before_request
    def start_clock() -> None:
        g.autoal_started = time.perf_counter()

    @app.after_request
    def log_request(response: Response) -> Response:
        started = g.get("autoal_started", time.perf_counter())
        fields: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "ms": round((time.perf_counter() - started) * 1000, 1),
        }
        if request.path == "/webhook" and response.is_json:
            body = response.get_json(silent=True) or {}
            fields.update(
                {
                    "project": body.get("project"),
                    "job": body.get("job"),
                    "action": body.get("action"),
                    "outcome": body.get("status"),
                    "coalesced": body.get("coalesced"),
                    "error": body.get("error"),
                }
            )
        fields = {key: value for key, value in fields.items() if value is not None}
        if response.status_code >= 400:
            level = logging.WARNING
        elif request.path in _QUIET_REQUESTS:
            level = logging.DEBUG
        else:
            level = logging.INFO
        message = "webhook" if request.path == "/webhook" else "request"
        logger.log(level, message, extra=fields)
        return response
