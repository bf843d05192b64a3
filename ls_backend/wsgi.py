"""The gunicorn entry point: ``gunicorn ls_backend.wsgi:app`` (one worker process, several threads).

Configuration comes from the environment (`ls_backend.settings`). Keep one worker process: the default
job runner is a thread inside it. `autoal serve` starts gunicorn with these defaults.
"""

from __future__ import annotations

from ls_backend.app import create_app
from ls_backend.logs import setup_logging
from ls_backend.settings import Settings

settings = Settings.from_env()
setup_logging(settings.log_level)  # logfmt lines, as under `autoal serve` (idempotent)
app = create_app(settings)
