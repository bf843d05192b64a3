"""The Flask app with a real store (no job runner started, so queued jobs stay queued and can be read)."""

import base64
import json

import pytest

from ls_backend.app import UNTRAINED_VERSION, create_app
from ls_backend.label_config import LabelConfigs
from ls_backend.labeling import parse_label_config
from ls_backend.runners import ThreadRunner
from ls_backend.settings import Settings
from ls_backend.store import Store
from ls_backend.webhook import WebhookHandler

CONFIG = (
    '<View><Image name="image" value="$image"/><Choices name="digit" toName="image">'
    '<Choice value="0"/><Choice value="1"/><Choice value="2"/></Choices></View>'
)
AUTH = {"Authorization": "Basic " + base64.b64encode(b"ml:s3cret").decode()}


@pytest.fixture
def app(tmp_path):
    settings = Settings(model_dir=tmp_path, basic_auth_user="ml", basic_auth_pass="s3cret", patch_webhook_auth=False)
    return create_app(settings, start_runner=False)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def store(app):
    return app.extensions["autoal"].store


def post(client, path, body, headers=AUTH):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(path, data=data, headers={**headers, "Content-Type": "application/json"})


def project(project_id=1, label_config=CONFIG):
    return {"id": project_id, "title": "digits", "label_config": label_config, "model_version": ""}


def annotation_event(annotation_id, task_id, action="ANNOTATION_CREATED", cancelled=False, project_id=1):
    return {
        "action": action,
        "annotation": {
            "id": annotation_id,
            "task": task_id,
            "was_cancelled": cancelled,
            "lead_time": 3.5,
            "result": [{"from_name": "digit", "to_name": "image", "type": "choices", "value": {"choices": ["1"]}}],
        },
        "task": {"id": task_id, "data": {"image": f"/data/upload/1/{task_id}.png"}, "project": project_id},
        "project": project(project_id),
    }


def commit_ranking(store, project_id=1, n=3):
    rows = [
        {
            "task_id": 10 + i,
            "rank": i + 1,
            "priority": 1 - i / n,
            "score": i / n,
            "predicted_label": "2",
            "strategy_weights": {"entropy": 1.0},
        }
        for i in range(n)
    ]
    store.commit_model(
        project_id,
        {"model_version": "autoal-v1", "checkpoint": "/nowhere", "n_labels": 5, "holdout_accuracy": 0.5},
        rows,
    )


# -- auth -----------------------------------------------------------------------------------------------


def test_every_route_needs_basic_auth(client):
    for method, path in [
        ("get", "/health"),
        ("post", "/webhook"),
        ("post", "/predict"),
        ("get", "/metrics"),
        ("get", "/versions"),
        ("post", "/setup"),
        ("get", "/explain/1/1"),
    ]:
        response = getattr(client, method)(path)
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"].startswith("Basic")
    wrong = {"Authorization": "Basic " + base64.b64encode(b"ml:wrong").decode()}
    assert client.get("/health", headers=wrong).status_code == 401
    assert client.get("/health", headers={"Authorization": "Bearer ml:s3cret"}).status_code == 401
    assert client.get("/health", headers=AUTH).json["status"] == "UP"


def test_without_credentials_only_loopback_clients_are_served(tmp_path):
    client = create_app(Settings(model_dir=tmp_path), start_runner=False).test_client()
    store = client.application.extensions["autoal"].store
    assert client.get("/health").status_code == 200
    assert client.get("/versions").status_code == 200  # the test client is 127.0.0.1
    assert client.get("/versions", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    remote = {"REMOTE_ADDR": "192.0.2.7"}
    assert client.get("/health", environ_base=remote).status_code == 200
    for path, body in [("/webhook", {"action": "START_TRAINING", "project": {"id": 1}}), ("/setup", {})]:
        response = client.post(path, json=body, environ_base=remote)
        assert response.status_code == 403, path
        assert "BASIC_AUTH_USER" in response.json["error"]
    assert client.get("/", environ_base=remote).status_code == 403
    assert client.get("/versions", environ_base={"REMOTE_ADDR": "::ffff:192.0.2.7"}).status_code == 403
    assert store.recent_jobs() == [] and store.event_counts() == {}


def test_anonymous_remote_clients_need_an_explicit_opt_in(tmp_path):
    settings = Settings(model_dir=tmp_path, allow_anonymous=True)
    client = create_app(settings, start_runner=False).test_client()
    assert client.get("/versions", environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 200


# -- setup ----------------------------------------------------------------------------------------------


def test_setup_stores_nothing_it_was_told_and_reports_the_version(client, store):
    response = post(
        client,
        "/setup",
        {
            "project": "1.1795620780",
            "schema": CONFIG,
            "hostname": "http://ls:8080",
            "access_token": "x",
            "extra_params": {"k": "v"},
        },
    )
    assert response.status_code == 200
    assert response.json == {"model_version": UNTRAINED_VERSION}
    assert store.project(1) is None  # neither the schema nor the hostname: jobs read LS itself
    commit_ranking(store)
    assert post(client, "/setup", {"project": "1.1795620780", "schema": CONFIG}).json == {"model_version": "autoal-v1"}
    assert store.recent_jobs(1) == []  # same config again: nothing to do


def remember_config(store, project_id=1, label_config=CONFIG):
    """What a job stores after reading the project's label config from LS."""
    store.save_label_config(project_id, label_config, parse_label_config(label_config).to_dict(), None)


def test_setup_with_a_changed_config_asks_a_job_to_read_it_from_ls(client, store):
    remember_config(store)
    post(client, "/setup", {"project": "1.1", "schema": CONFIG})
    assert store.recent_jobs(1) == []
    post(client, "/setup", {"project": "1.1", "schema": CONFIG.replace('<Choice value="2"/>', "")})
    assert [job["trigger"] for job in store.recent_jobs(1)] == ["label config changed"]
    assert store.project(1)["interface"]["classes"] == ["0", "1", "2"]  # unchanged until LS confirms


def test_setup_rejects_unsupported_config_with_a_message(client, store):
    response = post(client, "/setup", {"project": "2.1", "schema": '<View><Text name="t" value="$t"/></View>'})
    assert response.status_code == 422
    assert "Image" in response.json["error"]
    assert response.status == "422 " + response.json["error"]  # LS shows the reason phrase in its UI
    assert store.project(2) is None


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"", 400, "empty"),
        ([1, 2], 400, "JSON object"),
        ({"schema": CONFIG}, 400, "missing 'project'"),
        ({"project": "abc.1", "schema": CONFIG}, 400, "'project' must look like"),
        ({"project": "1.1"}, 400, "missing 'schema'"),
    ],
)
def test_setup_bad_requests(client, body, status, message):
    response = post(client, "/setup", body)
    assert response.status_code == status
    assert message in response.json["error"]


# -- predict --------------------------------------------------------------------------------------------


def tasks(ids, project_id=1):
    return [{"id": i, "data": {"image": f"/data/upload/{project_id}/{i}.png"}, "project": project_id} for i in ids]


def test_predict_before_any_model_gives_valid_empty_results(client):
    body = {"tasks": tasks([1, 2, 3]), "project": "1.17", "label_config": CONFIG, "params": {"context": None}}
    response = post(client, "/predict", body)
    assert response.status_code == 200
    assert response.json == {"results": [[], [], []]}  # one (empty) list of predictions per task


def test_predict_answers_from_the_stored_ranking(client, store):
    remember_config(store)
    commit_ranking(store)
    response = post(client, "/predict", {"tasks": tasks([12, 10, 11]), "project": "1.1"})
    results = response.json["results"]
    assert [r["score"] for r in results] == pytest.approx([2 / 3, 0.0, 1 / 3])
    assert all(r["model_version"] == "autoal-v1" for r in results)
    assert results[0]["result"] == [
        {"from_name": "digit", "to_name": "image", "type": "choices", "value": {"choices": ["2"]}}
    ]


def test_predict_of_ten_thousand_tasks(client, store):
    remember_config(store)
    commit_ranking(store, n=10_000)
    response = post(client, "/predict", {"tasks": tasks(range(10, 10_010)), "project": "1.1"})
    results = response.json["results"]
    assert len(results) == 10_000
    assert results[-1]["score"] == pytest.approx(9_999 / 10_000)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"project": "1.1"}, "'tasks' must be a non-empty list"),
        ({"tasks": [], "project": "1.1"}, "'tasks' must be a non-empty list"),
        ({"tasks": [{"data": {}}], "project": "1.1"}, "integer 'id'"),
        ({"tasks": [{"id": "7"}], "project": "1.1"}, "integer 'id'"),
        ({"tasks": [{"id": 7}]}, "missing 'project'"),
    ],
)
def test_predict_bad_requests(client, body, message):
    response = post(client, "/predict", body)
    assert response.status_code == 400
    assert message in response.json["error"]


# -- webhook --------------------------------------------------------------------------------------------


def test_annotation_events_coalesce_into_one_queued_job(client, store):
    answers = [post(client, "/webhook", annotation_event(100 + i, 10 + i)).json for i in range(5)]
    assert answers[0]["coalesced"] is False
    assert all(a["coalesced"] and a["job"] == answers[0]["job"] for a in answers[1:])
    assert [job["status"] for job in store.recent_jobs(1)] == ["queued"]
    assert store.pending_events(1) == 5
    assert store.project(1) is None  # the payload's label config is a hint; the job reads LS's


class WatchedRunner(ThreadRunner):
    """The real thread runner (not started), noting whether each job it is handed is committed already."""

    def __init__(self, settings: Settings, store: Store) -> None:
        super().__init__(settings, store)
        self.committed: list[bool] = []
        self.other = Store(store.path)  # its own connection: sees committed rows only

    def submit(self, job_id: int) -> None:
        self.committed.append(self.other.job(job_id) is not None)
        super().submit(job_id)


def test_a_webhook_writes_in_one_transaction_and_hands_the_job_over_once_committed(app, client, store):
    backend = app.extensions["autoal"]
    backend.runner = WatchedRunner(backend.settings, store)
    assert post(client, "/webhook", annotation_event(100, 10)).json["coalesced"] is False
    assert backend.runner.committed == [True]

    def failing_request(project_id: int, trigger: str) -> dict:
        raise RuntimeError("the job could not be requested")

    handler = WebhookHandler(store, failing_request, LabelConfigs(store))
    with pytest.raises(RuntimeError):
        handler.handle(annotation_event(101, 11))
    assert store.pending_events(1) == 1  # the failed event left nothing: neither the event...
    assert store.tasks_of_annotations(1, [100, 101]) == [10]  # ...nor its annotation id


def test_skipped_annotation_is_recorded_but_is_not_a_label(client, store):
    answer = post(client, "/webhook", annotation_event(100, 10, cancelled=True)).json
    assert answer["status"] == "recorded"
    assert store.recent_jobs(1) == []
    assert store.event_counts() == {"ANNOTATION_CREATED": 1}
    updated = post(client, "/webhook", annotation_event(100, 10, action="ANNOTATION_UPDATED", cancelled=True))
    assert updated.json["status"] == "queued"  # an update may have removed a label


def test_deletion_event_with_ids_only_names_the_tasks_seen_before(client, store):
    post(client, "/webhook", annotation_event(100, 10))
    post(client, "/webhook", annotation_event(101, 11))
    answer = post(
        client,
        "/webhook",
        {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 101}, {"id": 999}], "project": project()},
    ).json
    assert answer["status"] == "queued"
    assert answer["tasks"] == [11]
    other = {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 101}], "project": project(2)}
    assert post(client, "/webhook", other).json["tasks"] == []  # annotation ids are per project


def test_an_annotation_id_of_another_project_does_not_rekey_this_one(client, store):
    post(client, "/webhook", annotation_event(100, 10))
    post(client, "/webhook", annotation_event(100, 77, project_id=2))
    assert store.tasks_of_annotations(1, [100]) == [10]
    assert store.tasks_of_annotations(2, [100]) == [77]


def test_deleting_many_annotations_at_once(client, store):
    ids = [{"id": i} for i in range(50_000)]
    answer = post(client, "/webhook", {"action": "ANNOTATIONS_DELETED", "annotations": ids, "project": project()})
    assert answer.status_code == 200 and answer.json["tasks"] == []


def test_bulk_annotations_and_start_training_and_new_tasks_queue_work(client, store):
    bulk = {
        "action": "ANNOTATIONS_CREATED",
        "project": project(),
        "annotation": [{"id": 1, "task": 5, "was_cancelled": False}, {"id": 2, "task": 6, "was_cancelled": True}],
        "task": [{"id": 5}, {"id": 6}],
    }
    assert post(client, "/webhook", bulk).json["status"] == "queued"
    assert post(client, "/webhook", {"action": "START_TRAINING", "project": project(2)}).json["job"]
    assert (
        post(
            client, "/webhook", {"action": "TASKS_CREATED", "project": project(3), "tasks": [{"id": 1, "data": {}}]}
        ).json["status"]
        == "queued"
    )
    assert sorted(job["project_id"] for job in store.recent_jobs()) == [1, 2, 3]


def test_a_task_deletion_removes_nothing_until_ls_confirms_it(client, store):
    commit_ranking(store)
    answer = post(client, "/webhook", {"action": "TASKS_DELETED", "project": project(), "tasks": [{"id": 10}]})
    assert answer.status_code == 200 and answer.json["status"] == "queued"
    assert len(store.ranking(1)) == 3  # a hostile post cannot wipe the ranking
    assert store.prune_ranking(1, [11, 12]) == 1  # what the job does with LS's listing
    assert store.explain(1, 10) is None and store.explain(1, 11) is not None


def test_project_update_retrains_only_when_the_label_config_changes(client, store):
    remember_config(store)
    same = post(client, "/webhook", {"action": "PROJECT_UPDATED", "project": project()}).json
    assert same["status"] == "recorded"
    new_config = CONFIG.replace("</Choices>", '<Choice value="3"/></Choices>')
    changed = post(client, "/webhook", {"action": "PROJECT_UPDATED", "project": project(label_config=new_config)})
    assert changed.json["status"] == "queued"
    assert store.project(1)["interface"]["classes"] == ["0", "1", "2"]  # the job reads the new one from LS
    unsupported = post(
        client, "/webhook", {"action": "PROJECT_UPDATED", "project": project(label_config="<View></View>")}
    )
    assert unsupported.status_code == 200 and unsupported.json["status"] == "queued"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"definitely not json", "not valid JSON"),
        ([{"action": "ANNOTATION_CREATED"}], "JSON object"),
        ({"project": {"id": 1}}, "missing 'action'"),
        ({"action": "ANNOTATION_CREATED"}, "missing 'project'"),
        ({"action": "ANNOTATION_CREATED", "project": {"id": "x"}}, "'project.id' must be an integer"),
        ({"action": "ANNOTATION_CREATED", "project": {"id": 1}}, "missing 'annotation'"),
        ({"action": "ANNOTATION_CREATED", "project": {"id": 1}, "annotation": {"id": 3}}, "'annotation.task'"),
        ({"action": "ANNOTATIONS_DELETED", "project": {"id": 1}}, "'annotations' must be a non-empty list"),
        ({"action": "ANNOTATIONS_DELETED", "project": {"id": 1}, "annotations": [{"pk": 1}]}, "annotations[0].id"),
        ({"action": "TASKS_CREATED", "project": {"id": 1}, "tasks": "all"}, "'tasks' must be a list"),
    ],
)
def test_bad_webhook_payloads_get_4xx_with_a_message(client, store, body, message):
    response = post(client, "/webhook", body)
    assert 400 <= response.status_code < 500
    assert message in response.json["error"]
    assert store.recent_jobs() == []


def test_actions_this_backend_does_not_use_are_acknowledged(client, store):
    response = post(client, "/webhook", {"action": "LABEL_LINK_CREATED", "project": {"id": 1}})
    assert response.json == {"status": "ignored", "action": "LABEL_LINK_CREATED"}
    unknown = post(client, "/webhook", {"action": "ANNOTATION_EXPLODED", "project": {"id": 1}})
    assert unknown.status_code == 200
    assert unknown.json == {"status": "ignored", "detail": "unknown action 'ANNOTATION_EXPLODED'"}
    huge = post(client, "/webhook", {"action": "X" * 1_000_000, "project": {"id": 1}})
    assert huge.status_code == 200 and len(huge.get_data()) < 200  # never echoed back whole
    assert store.event_counts() == {} and store.recent_jobs() == []


# -- versions, explain, metrics -------------------------------------------------------------------------


def test_versions_explain_and_metrics(client, store):
    assert client.get("/versions", headers=AUTH).json == {"versions": []}
    assert client.get("/explain/1/10", headers=AUTH).status_code == 404
    post(client, "/webhook", annotation_event(100, 10))
    commit_ranking(store)
    assert client.get("/versions", headers=AUTH).json == {"versions": ["autoal-v1"]}
    assert client.get("/versions?project=1", headers=AUTH).json == {"versions": ["autoal-v1"]}
    explained = client.get("/explain/1/11", headers=AUTH).json
    assert explained["rank"] == 2 and explained["model_version"] == "autoal-v1"
    assert explained["model"]["holdout_accuracy"] == 0.5
    text = client.get("/metrics", headers=AUTH).get_data(as_text=True)
    assert 'autoal_webhook_events_total{action="ANNOTATION_CREATED"} 1.0' in text
    assert 'autoal_jobs_total{status="queued"} 1.0' in text
    assert 'autoal_pool_size{project="1"} 3.0' in text
    assert 'autoal_queue_age_seconds{project="1"}' in text
    assert "autoal_retrain_seconds_count 0.0" in text


def test_unknown_route_and_method_are_json_4xx(client):
    assert client.get("/nope", headers=AUTH).status_code == 404
    response = client.get("/webhook", headers=AUTH)
    assert response.status_code == 405 and "error" in response.json
