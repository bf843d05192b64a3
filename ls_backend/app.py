"""The Flask app LS talks to: /health, /setup, /predict, /webhook, /versions, /metrics, /explain.

`create_app(settings)` builds the app with its store, job runner, predictor and webhook-auth patcher.

Who may call it: with BASIC_AUTH_USER/BASIC_AUTH_PASS set, every route needs those credentials (compared
in constant time). Without them only loopback clients are served (``/health`` excepted), unless the
operator opts in with AUTOAL_ALLOW_ANONYMOUS=true: an anonymous client elsewhere on the network cannot
change what annotators are served.

Bad requests get a 4xx JSON body ``{"error": "..."}`` that names the field (``ls_backend.validation``);
bodies above AUTOAL_MAX_REQUEST_BYTES get 413; nothing a client sends produces a 500.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from ls_backend.label_config import LabelConfigs
from ls_backend.labeling import LabelConfigError, parse_label_config
from ls_backend.logs import log_requests
from ls_backend.metrics import metrics_text
from ls_backend.predictor import Predictor
from ls_backend.runners import make_runner, request_job
from ls_backend.settings import Settings
from ls_backend.status_page import status_blueprint
from ls_backend.store import Store
from ls_backend.validation import InvalidRequest, id_list, json_object, parse_id
from ls_backend.validation import project_id as parse_project_id
from ls_backend.webhook import WebhookHandler
from ls_backend.webhook_auth import WebhookAuthPatcher

logger = logging.getLogger(__name__)

UNTRAINED_VERSION = "autoal-untrained"
OPEN_PATHS = ("/health",)  # served to anyone: LS probes it, and it says nothing about projects


@dataclass
class Backend:
    """Everything the routes need, kept on ``app.extensions["autoal"]``."""

    settings: Settings
    store: Store
    runner: Any
    predictor: Predictor
    webhook_auth: WebhookAuthPatcher
    webhooks: WebhookHandler
    label_configs: LabelConfigs

    def request_job(self, project_id: int, trigger: str) -> dict:
        return request_job(self.store, self.runner, self.settings, project_id, trigger)


def create_app(settings: Settings | None = None, *, start_runner: bool = True) -> Flask:
    settings = settings or Settings.from_env()
    store = Store(settings.database_path)
    runner = make_runner(settings, store)
    label_configs = LabelConfigs(store)
    backend = Backend(
        settings=settings,
        store=store,
        runner=runner,
        predictor=Predictor(settings, store),
        webhook_auth=WebhookAuthPatcher(settings),
        webhooks=WebhookHandler(
            store,
            lambda project_id, trigger: backend.request_job(project_id, trigger),
            label_configs,
            max_ids=settings.max_ids_per_request,
        ),
        label_configs=label_configs,
    )
    if not settings.label_studio_url:
        logger.warning("LABEL_STUDIO_URL is not set: requests are answered, but no job will run until it is")
    app = Flask("ls_backend")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.extensions["autoal"] = backend
    _add_auth(app, settings)
    _add_error_handlers(app)
    _add_routes(app, backend)
    app.register_blueprint(status_blueprint(backend))  # GET /: the status page
    log_requests(app)
    if start_runner:
        runner.start()
    return app


def _add_auth(app: Flask, settings: Settings) -> None:
    if not settings.basic_auth_enabled:
        if not settings.allow_anonymous:
            _serve_only_loopback(app)
        return
    expected = f"{settings.basic_auth_user}:{settings.basic_auth_pass}".encode()

    @app.before_request
    def check_basic_auth() -> Response | None:
        auth = request.authorization
        given = f"{auth.username}:{auth.password}".encode() if auth and auth.type == "basic" else b""
        if hmac.compare_digest(given, expected):
            return None
        response = jsonify(error="authentication required")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Basic realm="autoal"'
        return response


def _serve_only_loopback(app: Flask) -> None:
    @app.before_request
    def refuse_remote_anonymous() -> Response | None:
        if request.path in OPEN_PATHS or _is_loopback(request.remote_addr):
            return None
        message = (
            "this backend has no credentials configured, so it serves only clients on its own machine: set "
            "BASIC_AUTH_USER and BASIC_AUTH_PASS (and the same in Label Studio's model connection), or "
            "AUTOAL_ALLOW_ANONYMOUS=true"
        )
        response = jsonify(error=message)
        response.status = f"403 {_reason_phrase(message)}"
        return response


def _is_loopback(address: str | None) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _add_error_handlers(app: Flask) -> None:
    @app.errorhandler(InvalidRequest)
    def invalid(error: InvalidRequest) -> Response:
        response = jsonify(error=str(error))
        # LS shows only "<code> <reason> for url ..." of a failed call (requests' HTTPError), not the body:
        # the message goes into the reason phrase too, so it appears in LS's UI.
        response.status = f"{error.status} {_reason_phrase(str(error))}"
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        return jsonify(error=error.description or error.name), error.code or 500

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> tuple[Response, int]:
        logger.exception("unexpected error on %s %s", request.method, request.path)
        return jsonify(error=f"internal error: {type(error).__name__}"), 500


def _add_routes(app: Flask, backend: Backend) -> None:
    store = backend.store

    @app.get("/health")
    def health() -> Response:
        return jsonify(status="UP", model_class="AutoAL", runner=backend.runner.name, v2=True)

    @app.post("/setup")
    def setup() -> Response:
        """LS checks the connection and the label config. The schema and hostname it sends are not trusted:
        a schema that differs from the stored one only asks for a job, which reads the project's label
        config from LABEL_STUDIO_URL itself; the hostname is never used."""
        body = _json_object()
        project_id = parse_project_id(body.get("project"))
        schema = body.get("schema")
        if not isinstance(schema, str) or not schema.strip():
            raise InvalidRequest("missing 'schema' (the label config)")
        try:
            interface = parse_label_config(schema)
        except LabelConfigError as error:
            raise InvalidRequest(str(error), status=422) from None
        if not backend.settings.label_studio_url and isinstance(body.get("hostname"), str):
            logger.warning(
                "LS at %s called /setup, but LABEL_STUDIO_URL is not set: no job will run until it is",
                ascii(body["hostname"][:200]),
                extra={"project": project_id},
            )
        if backend.label_configs.changed(project_id, interface):
            backend.request_job(project_id, "label config changed")
        backend.webhook_auth.schedule(project_id)
        return jsonify(model_version=store.current_version(project_id) or UNTRAINED_VERSION)

    @app.post("/predict")
    def predict() -> Response:
        body = _json_object()
        tasks = id_list(body.get("tasks"), "tasks", backend.settings.max_ids_per_request)
        for index, task in enumerate(tasks):
            task_id = task.get("id") if isinstance(task, dict) else None
            if isinstance(task_id, bool) or not isinstance(task_id, int):
                raise InvalidRequest(f"tasks[{index}] must be an object with an integer 'id'")
            parse_id(task_id, f"tasks[{index}].id")
        project_value = body.get("project")
        if project_value is None:
            project_value = tasks[0].get("project")
        project_id = parse_project_id(project_value)
        try:
            interface = backend.label_configs.for_request(project_id, body.get("label_config"))
        except LabelConfigError as error:
            raise InvalidRequest(str(error), status=422) from None
        results = backend.predictor.predict(project_id, tasks, interface)
        return jsonify(results=results)

    @app.post("/webhook")
    def webhook() -> Response:
        return jsonify(backend.webhooks.handle(_json_object()))

    @app.get("/versions")
    def versions() -> Response:
        project = request.args.get("project")
        if project is not None:
            project_id = parse_project_id(project)
            listed = [model["model_version"] for model in store.model_history(project_id)]
        else:
            listed = store.all_versions()
        return jsonify(versions=listed)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(metrics_text(store), mimetype="text/plain; version=0.0.4")

    @app.get("/explain/<project>/<task>")
    def explain(project: str, task: str) -> Response:
        project_id, task_id = parse_id(project, "project"), parse_id(task, "task")
        explained = store.explain(project_id, task_id)
        if explained is None:
            raise InvalidRequest(f"task {task_id} of project {project_id} is not in the current ranking", 404)
        model = store.model(project_id, explained["model_version"]) or {}
        explained["model"] = {
            key: model.get(key) for key in ("created_at", "n_labels", "n_pool", "holdout_accuracy", "strategy_weights")
        }
        explained["model"]["regime"] = (model.get("report") or {}).get("regime")  # the regime it ranked in
        return jsonify(explained)


def _reason_phrase(message: str) -> str:
    """A message that is safe in an HTTP status line: printable ASCII, one line, at most 300 characters."""
    text = "".join(c if " " <= c <= "~" else " " for c in message)
    return " ".join(text.split())[:300] or "Bad Request"


def _json_object() -> dict[str, Any]:
    return json_object(request.get_data(cache=False))
