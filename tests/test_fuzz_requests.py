"""Hostile requests against every route: never a 5xx, and a rejected request leaves the store as it was.

Property-based (hypothesis, derandomized so CI sees the same cases every run): JSON of wrong types,
integers beyond 64 bits, non-ASCII digits, lone UTF-16 surrogates, deep nesting, long strings and unknown
actions, shaped like what Label Studio sends so the checks past the first field are reached too. Each of
the six routes gets 1,000 cases (6,000 in all; AUTOAL_FUZZ_CASES sets another number per route for a longer
run); a few known attacks of the probe run as fixed examples.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
from urllib.parse import quote as url_quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ls_backend.app import create_app
from ls_backend.labeling import parse_label_config
from ls_backend.settings import Settings
from ls_backend.webhook import LS_ACTIONS

AUTH = {"Authorization": "Basic " + base64.b64encode(b"ml:s3cret").decode()}
CONFIG = (
    '<View><Image name="image" value="$image"/><Choices name="digit" toName="image">'
    '<Choice value="0"/><Choice value="1"/></Choices></View>'
)
CASES = int(os.environ.get("AUTOAL_FUZZ_CASES", "1000"))
FUZZ = settings(
    max_examples=CASES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- values ---------------------------------------------------------------------------------------------

huge_ints = st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**30, -(10**40), 2**63 - 1, -1, 0])
ints = st.integers() | huge_ints
surrogates = st.characters(codec=None, categories=["Cs"])
hostile_text = (
    st.text(max_size=30)
    | st.text(alphabet=surrogates, min_size=1, max_size=3)
    | st.sampled_from(["²", "١٢", "1.5", "-3", " 7 ", "0x10", "1e5", "9" * 40, "1." + "9" * 30, "", "NaN", "../.."])
    | st.text(alphabet=st.characters(), min_size=1, max_size=5).map(lambda s: s + "\udfff")
    | st.just("x" * 100_000)
)
scalars = st.none() | st.booleans() | ints | st.floats() | hostile_text
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=12,
)
ids = ints | hostile_text | scalars
id_objects = st.fixed_dictionaries({"id": ids}) | json_values


def shaped(fields: dict) -> st.SearchStrategy:
    """An object with these keys (each maybe missing) and hostile extra keys."""
    return st.fixed_dictionaries({}, optional=fields).flatmap(
        lambda body: st.dictionaries(hostile_text, json_values, max_size=2).map(lambda extra: {**extra, **body})
    )


projects = st.fixed_dictionaries({"id": ids}, optional={"label_config": hostile_text | st.just(CONFIG)}) | json_values
annotations = shaped({"id": ids, "task": ids, "was_cancelled": json_values, "result": json_values})
webhook_bodies = shaped(
    {
        "action": st.sampled_from(sorted(LS_ACTIONS)) | hostile_text | json_values,
        "project": projects,
        "annotation": annotations | st.lists(annotations, max_size=5) | json_values,
        "annotations": st.lists(id_objects, max_size=5) | json_values,
        "task": st.fixed_dictionaries({"id": ids}) | json_values,
        "tasks": st.lists(id_objects | ids, max_size=5) | json_values,
    }
)
project_values = ids | st.builds(lambda a, b: f"{a}.{b}", ints | hostile_text, ints | hostile_text)
setup_bodies = shaped(
    {
        "project": project_values,
        "schema": st.sampled_from([CONFIG, "<View/>", "<View><Image", "<!DOCTYPE x [<!ENTITY a 'a'>]><View/>"])
        | hostile_text
        | json_values,
        "hostname": hostile_text | json_values,
        "access_token": hostile_text,
    }
)
task_lists = st.lists(
    shaped({"id": ids, "data": st.fixed_dictionaries({"image": hostile_text}) | json_values, "project": ids}),
    max_size=5,
)
predict_bodies = shaped(
    {"tasks": task_lists | json_values, "project": project_values, "label_config": hostile_text | st.just(CONFIG)}
)
raw_bodies = st.sampled_from(
    [b"[" * 50_000, b'{"a":' * 50_000, b"\xff\xfe", b"{", b"null", b"1" * 5000, b'"\\ud800"', b"{}" * 3]
)

# -- the app and its store ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("fuzz")
    app = create_app(
        Settings(model_dir=model_dir, basic_auth_user="ml", basic_auth_pass="s3cret", patch_webhook_auth=False),
        start_runner=False,
    )
    store = app.extensions["autoal"].store
    store.save_label_config(1, CONFIG, parse_label_config(CONFIG).to_dict(), None)
    store.remember_annotations(1, [(100, 10), (101, 11)])
    rows = [
        {"task_id": 10 + i, "rank": i + 1, "priority": 1 - i / 5, "score": i / 5, "predicted_label": "1"}
        for i in range(5)
    ]
    store.commit_model(1, {"model_version": "autoal-v1", "checkpoint": "/nowhere", "n_labels": 4}, rows)
    return app


def store_digest(app) -> str:
    """A hash of every row of every table."""
    path = app.extensions["autoal"].store.path
    digest = hashlib.sha256()
    with sqlite3.connect(path) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        for table in tables:
            for row in db.execute(f"SELECT * FROM {table} ORDER BY rowid"):
                digest.update(repr(row).encode())
    return digest.hexdigest()


def check(app, method: str, path: str, body: bytes | None = None) -> None:
    before = store_digest(app)
    client = app.test_client()
    headers = {**AUTH, "Content-Type": "application/json"}
    response = client.open(path, method=method, data=body, headers=headers)
    assert response.status_code < 500, (path, body[:300] if body else None, response.get_data()[:300])
    if response.status_code >= 400:
        assert response.is_json and response.json["error"], path
        assert len(response.get_data()) < 2000  # never an echo of the input
        assert store_digest(app) == before, f"a rejected request changed the store: {path} {body[:200]!r}"


def quote(text: str) -> str:
    """Percent-encoded, surrogates included (as the invalid UTF-8 bytes a hostile client may send)."""
    return url_quote(text.encode("utf-8", "surrogatepass"), safe="")


def dumps(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode()  # ensure_ascii: surrogates travel as \\udxxx escapes


# -- the properties -------------------------------------------------------------------------------------


@FUZZ
@given(body=webhook_bodies)
@example(body={"action": "ANNOTATIONS_DELETED", "project": {"id": 1}, "annotations": [{"id": 7}] * 300_000})
@example(body={"action": "TASKS_DELETED", "project": {"id": 1}, "tasks": [{"id": 10}]})
@example(body={"action": "ANNOTATION_CREATED", "project": {"id": 10**30}, "annotation": {"id": 1, "task": 1}})
@example(body={"action": "X" * 100_000, "project": {"id": 1}})
def test_webhook(app, body):
    check(app, "POST", "/webhook", dumps(body))


@FUZZ
@given(body=setup_bodies)
@example(body={"project": "²", "schema": CONFIG})
@example(body={"project": "1.1", "schema": CONFIG, "hostname": "http://attacker.example:9"})
@example(body={"project": "1.1", "schema": "\ud800"})
def test_setup(app, body):
    check(app, "POST", "/setup", dumps(body))


@FUZZ
@given(body=predict_bodies | raw_bodies)
@example(body={"tasks": [{"id": 2**64}], "project": "1.1"})
def test_predict(app, body):
    check(app, "POST", "/predict", body if isinstance(body, bytes) else dumps(body))


@FUZZ
@given(project=hostile_text | ints.map(str))
@example(project="9" * 40)
@example(project="²")
def test_versions(app, project):
    check(app, "GET", f"/versions?project={quote(project)}")


@FUZZ
@given(project=hostile_text | ints.map(str), task=hostile_text | ints.map(str))
@example(project="1", task="999999999999999999999999999999")
def test_explain(app, project, task):
    check(app, "GET", f"/explain/{quote(project) or '1'}/{quote(task) or '1'}")


@FUZZ
@given(project=hostile_text | ints.map(str))
@example(project="²")
def test_status_page(app, project):
    check(app, "GET", f"/?project={quote(project)}")


def test_the_seeded_store_survived(app):
    store = app.extensions["autoal"].store
    assert store.current_version(1) == "autoal-v1"
    assert store.tasks_of_annotations(1, [100, 101]) == [10, 11]
    assert len(store.ranking(1)) == 5  # no webhook wiped the ranking
