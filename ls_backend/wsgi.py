"""The WSGI entry point, ``ls_backend.wsgi:app``, for running the backend under another WSGI server.

`autoal serve` is the supported way: it serves this app under waitress with a deadline for receiving a
request, the app's body limit and a fix of waitress's busy loop under load (`ls_backend.cli.make_server`).
Another server works too, e.g. ``waitress-serve --threads 4 --channel-timeout 15 ls_backend.wsgi:app``
(without those), with one process only: the default job runner (a thread that feeds a job process) lives
in it. A server that reads request bodies in its request threads (gunicorn's sync and gthread workers)
lets slow clients tie those threads up.

Configuration comes from the environment (`ls_backend.settings`).
"""

from __future__ import annotations

from ls_backend.app import create_app
from ls_backend.logs import setup_logging
from ls_backend.settings import Settings

settings = Settings.from_env()
setup_logging(settings.log_level)  # logfmt lines, as under `autoal serve` (idempotent)
app = create_app(settings)
