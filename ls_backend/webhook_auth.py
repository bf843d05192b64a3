"""Puts our basic-auth header on the webhook LS auto-creates for the backend.

LS 1.23.2 creates ``<backend url>/webhook`` without the ML connection's credentials, so with basic auth on
every annotation event would get 401 (label-studio-protocol.md 1.5). After each /setup (LS calls it on
connect and before predictions) a background thread patches the webhook's headers through the API,
trying a few times under one `RetryPolicy` (0.5, 1.5, 4.5, 13.5, 40.5 s after /setup) because LS may create
the webhook a moment later. Its LS client does not retry on its own, so the tries do not multiply.
"""

from __future__ import annotations

import logging
import threading
import time

from ls_backend.labelstudio import LabelStudioClient, LabelStudioError
from ls_backend.retry import RetryPolicy
from ls_backend.settings import Settings

logger = logging.getLogger(__name__)

TRIES = RetryPolicy(retries=4, first_delay=0.5, factor=3.0)  # the wait before each try, the first included
RECHECK_AFTER = 300.0  # seconds: a patched project is checked again after this long


class WebhookAuthPatcher:
    def __init__(self, settings: Settings, tries: RetryPolicy = TRIES) -> None:
        self.settings = settings
        self.tries = tries
        self._patched_at: dict[int, float] = {}
        self._running: set[int] = set()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.settings.basic_auth_enabled and self.settings.patch_webhook_auth

    def schedule(self, project_id: int) -> bool:
        """Start patching the project's webhook in the background; False when not needed now."""
        if not self.enabled:
            return False
        with self._lock:
            recent = time.monotonic() - self._patched_at.get(project_id, -RECHECK_AFTER) < RECHECK_AFTER
            if recent or project_id in self._running:
                return False
            self._running.add(project_id)
        threading.Thread(target=self._patch, args=(project_id,), name=f"webhook-auth-{project_id}", daemon=True).start()
        return True

    def _patch(self, project_id: int) -> None:
        try:
            for attempt in range(1, self.tries.tries + 1):
                time.sleep(self.tries.delay(attempt))
                try:
                    ls = LabelStudioClient.for_settings(self.settings, retries=0)
                    found = ls.ensure_webhook_auth(
                        project_id, self.settings.basic_auth_user or "", self.settings.basic_auth_pass or ""
                    )
                except LabelStudioError as error:
                    logger.warning("project %s: webhook auth not set yet: %s", project_id, error)
                    continue
                if found:
                    with self._lock:
                        self._patched_at[project_id] = time.monotonic()
                    return
            logger.warning(
                "project %s: no ML webhook with our basic-auth user found; annotation events may get 401",
                project_id,
            )
        finally:
            with self._lock:
                self._running.discard(project_id)
