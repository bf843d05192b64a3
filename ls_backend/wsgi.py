"""The gunicorn entry point: ``gunicorn ls_backend.wsgi:app`` (one worker process, several threads).

Configuration comes from the environment (`ls_backend.settings`). Keep one worker process: the default
job runner is a thread inside it. `autoal serve` starts gunicorn with these defaults.
"""

from __future__ import annotations

import logging

from ls_backend.app import create_app
from ls_backend.settings import Settings

settings = Settings.from_env()
logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
app = create_app(settings)
