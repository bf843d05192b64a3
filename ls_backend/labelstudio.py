"""Label Studio REST access through label-studio-sdk, with retries and backoff.

Every call that fails on the network, times out, or gets a 5xx / 429 from LS is retried under the one
`ls_backend.retry.RetryPolicy`, with a delay that doubles (``AUTOAL_LS_RETRIES``, ``AUTOAL_LS_BACKOFF``);
after the last try it raises
``LabelStudioUnavailable``, which the job runner treats as "try the job again later". Other LS errors
(4xx) raise ``LabelStudioError`` at once.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from label_studio_sdk import LabelStudio, PredictionRequest
from label_studio_sdk.core.api_error import ApiError

from ls_backend.retry import RetryPolicy

if TYPE_CHECKING:
    from ls_backend.settings import Settings

logger = logging.getLogger(__name__)

NO_URL_MESSAGE = (
    "LABEL_STUDIO_URL is not set: the backend sends its API token only to the Label Studio the operator "
    "configures, never to an address from a request. Set LABEL_STUDIO_URL (e.g. http://localhost:8080) and restart."
)

T = TypeVar("T")

UNCERTAINTY_SAMPLING = "Uncertainty sampling"
ANNOTATED_FILTER = {
    "conjunction": "and",
    "items": [{"filter": "filter:tasks:total_annotations", "operator": "greater", "type": "Number", "value": 0}],
}
UNLABELED_FILTER = {
    "conjunction": "and",
    "items": [
        {"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0},
        {"filter": "filter:tasks:cancelled_annotations", "operator": "equal", "type": "Number", "value": 0},
    ],
}


class LabelStudioError(RuntimeError):
    """LS answered, but not with what the backend needs (bad token, unknown project, rejected data)."""


class LabelStudioUnavailable(LabelStudioError):
    """LS could not be reached, timed out or kept failing with 5xx after all retries."""


class LabelStudioClient:
    def __init__(
        self, url: str, api_key: str, *, timeout: float = 30.0, retries: int = 4, backoff: float = 1.0
    ) -> None:
        if not url:
            raise LabelStudioError("LABEL_STUDIO_URL is not set")
        if not api_key:
            raise LabelStudioError("LABEL_STUDIO_API_KEY is not set (a legacy token or a personal access token)")
        self.url = url.rstrip("/")
        self.retry = RetryPolicy(retries=retries, first_delay=backoff)
        self.timeout = timeout
        try:
            self.sdk = LabelStudio(base_url=self.url, api_key=api_key, timeout=timeout, max_retries=0)
        except ApiError as error:
            raise LabelStudioError(f"LABEL_STUDIO_API_KEY was rejected: {error.body}") from None
        self._http = self.sdk._client_wrapper.httpx_client

    @classmethod
    def for_settings(cls, settings: Settings, retries: int | None = None) -> LabelStudioClient:
        """The client of the operator's Label Studio (LABEL_STUDIO_URL), the one address the token is sent to.

        `retries` overrides AUTOAL_LS_RETRIES for a caller that retries on its own (0: no retries here)."""
        if not settings.label_studio_url:
            raise LabelStudioError(NO_URL_MESSAGE)
        return cls(
            settings.label_studio_url,
            settings.label_studio_api_key or "",
            timeout=settings.ls_timeout,
            retries=settings.ls_retries if retries is None else retries,
            backoff=settings.ls_backoff,
        )

    def auth_headers(self) -> dict[str, str]:
        """The Authorization header for LS (Token for legacy tokens, a fresh Bearer access token for PATs)."""
        headers = self._call("refresh the access token", self.sdk._client_wrapper.get_headers)
        return {"Authorization": headers["Authorization"]}

    # -- reading ----------------------------------------------------------------------------------------

    def tasks(self, project_id: int, page_size: int = 500) -> list[dict[str, Any]]:
        """The project's tasks that matter for a job, walking every page: those with annotations (with
        their annotations), then the unlabeled pool (task fields only: its predictions are not needed and
        are most of the payload). Tasks with only skipped annotations are in neither list."""
        return self._list(project_id, page_size, "all", ANNOTATED_FILTER) + self._list(
            project_id, page_size, "task_only", UNLABELED_FILTER
        )

    def tasks_updated_since(self, project_id: int, since: str, page_size: int = 500) -> list[dict[str, Any]]:
        """The project's tasks whose ``updated_at`` is after ``since`` (LS's "%Y-%m-%dT%H:%M:%S.%fZ"), with
        their annotations: new tasks, and tasks whose annotations or data changed."""
        changed = {
            "conjunction": "and",
            "items": [{"filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime", "value": since}],
        }
        return self._list(project_id, page_size, "all", changed)

    def _list(self, project_id: int, page_size: int, fields: str, filters: dict[str, Any]) -> list[dict[str, Any]]:
        query = json.dumps({"filters": filters})

        def walk() -> list[dict[str, Any]]:
            pager = self.sdk.tasks.list(
                project=project_id, page_size=page_size, fields=fields, query=query, resolve_uri=True
            )
            return [_plain(task) for task in pager]

        return self._call(f"list the tasks of project {project_id}", walk)

    def project(self, project_id: int) -> dict[str, Any]:
        return self._call(f"read project {project_id}", lambda: _plain(self.sdk.projects.get(id=project_id)))

    def model_versions(self, project_id: int) -> dict[str, int]:
        """Prediction count per model version."""

        def read() -> dict[str, int]:
            response = self._http.request(f"api/projects/{project_id}/model-versions/", method="GET")
            _raise_for_status(response)
            return {str(key): int(value) for key, value in response.json().items()}

        return self._call(f"list the model versions of project {project_id}", read)

    # -- writing ----------------------------------------------------------------------------------------

    def import_predictions(self, project_id: int, predictions: list[dict[str, Any]], batch: int = 1000) -> int:
        """Bulk-create predictions ({task, result, score, model_version}); returns how many LS created."""
        created = 0
        for start in range(0, len(predictions), batch):
            chunk = [PredictionRequest(**item) for item in predictions[start : start + batch]]
            response = self._call(
                f"import {len(chunk)} predictions into project {project_id}",
                lambda chunk=chunk: self.sdk.projects.import_predictions(id=project_id, request=chunk),
            )
            created += int(getattr(response, "created", None) or 0)
        return created

    def update_project(self, project_id: int, model_version: str, sampling: str | None = None) -> None:
        """Make LS show and sample by this version's scores (its predictions must be imported first)."""
        fields: dict[str, Any] = {"model_version": model_version}
        if sampling:
            fields["sampling"] = sampling
        self._call(
            f"set the model version of project {project_id}",
            lambda: self.sdk.projects.update(id=project_id, **fields),
        )

    def delete_model_version(self, project_id: int, model_version: str, timeout: float | None = None) -> int:
        """Delete a version's predictions; the number deleted. ``timeout`` (default: the client's) for a large
        version: LS on SQLite takes minutes for 20,000 predictions, and a retry after a client timeout only
        collides with the delete LS is still doing."""

        def delete() -> int:
            response = self._http.request(
                f"api/projects/{project_id}/model-versions/",
                method="DELETE",
                json={"model_version": model_version},
                request_options={"timeout_in_seconds": timeout} if timeout else None,
            )
            _raise_for_status(response)
            return int(response.json().get("deleted_predictions", 0))

        return self._call(f"delete model version {model_version} of project {project_id}", delete)

    def ensure_priority_view(self, project_id: int, title: str) -> int:
        """Create or update the Data Manager tab listing unlabeled tasks by ascending prediction score."""
        data = {"title": title, "ordering": ["tasks:predictions_score"], "filters": UNLABELED_FILTER}

        def ensure() -> int:
            for view in self.sdk.views.list(project=project_id):
                view_data = _plain(view).get("data") or {}
                if view_data.get("title") == title:
                    if view_data.get("ordering") != data["ordering"] or view_data.get("filters") != data["filters"]:
                        merged = {**view_data, **data}
                        self.sdk.views.update(id=str(view.id), project=project_id, data=merged)
                    return int(view.id)
            return int(self.sdk.views.create(project=project_id, data=data).id)

        return self._call(f"keep the {title!r} view of project {project_id}", ensure)

    def ensure_webhook_auth(self, project_id: int, user: str, password: str) -> int:
        """Add our basic-auth header to the webhook LS auto-created for this backend.

        LS creates ``<backend url>/webhook`` without credentials, so annotation events would get 401. Our
        backends are the project's ML backends with basic auth and our user name. Returns how many such
        webhooks exist (all of them carry the header afterwards); 0 means LS has not created it yet.
        """
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        authorization = f"Basic {token}"

        def patch() -> int:
            ours = {
                (backend.url or "").rstrip("/") + "/webhook"
                for backend in self.sdk.ml.list(project=project_id)
                if str(backend.auth_method or "") == "BASIC_AUTH" and backend.basic_auth_user == user
            }
            found = 0
            for webhook in self.sdk.webhooks.list(project=str(project_id)):
                if webhook.url not in ours:
                    continue
                found += 1
                headers = dict(webhook.headers or {})
                if headers.get("Authorization") != authorization:
                    headers["Authorization"] = authorization
                    self.sdk.webhooks.update(id=webhook.id, headers=headers, url=webhook.url)
                    logger.info("project %s: basic auth added to webhook %s", project_id, webhook.id)
            return found

        return self._call(f"add basic auth to the ML webhook of project {project_id}", patch)

    # -- retries ----------------------------------------------------------------------------------------

    def _call(self, what: str, function: Callable[[], T]) -> T:
        """`function()` under the client's retry policy; LabelStudioUnavailable once transient errors outlast it."""
        errors = (httpx.TransportError, ApiError, LabelStudioError)
        try:
            return self.retry.call(
                function, lambda error: isinstance(error, errors) and _is_transient(error), f"LS: {what}"
            )
        except errors as error:
            if not _is_transient(error):
                raise LabelStudioError(f"Label Studio refused to {what}: {_describe(error)}") from None
            raise LabelStudioUnavailable(
                f"Label Studio did not {what} after {self.retry.tries} tries: {_describe(error)}"
            ) from None


class _HttpStatusError(LabelStudioError):
    def __init__(self, status_code: int, body: str) -> None:
        super().__init__(f"HTTP {status_code}: {body[:300]}")
        self.status_code = status_code


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise _HttpStatusError(response.status_code, response.text)


def _is_transient(error: Exception) -> bool:
    if isinstance(error, httpx.TransportError):
        return True
    status = getattr(error, "status_code", None)
    return status is None or status >= 500 or status in (408, 409, 429)


def _describe(error: Exception) -> str:
    if isinstance(error, ApiError):
        body = error.body if isinstance(error.body, str) else json.dumps(error.body, default=str)
        return f"HTTP {error.status_code}: {body[:300]}"
    return f"{type(error).__name__}: {error}"[:400]


def _plain(model: Any) -> dict[str, Any]:
    """An SDK object as plain JSON-like data."""
    if isinstance(model, dict):
        return model
    return model.model_dump(mode="json")
