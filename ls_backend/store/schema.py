"""The store's schema and its ordered migrations (``PRAGMA user_version`` counts the ones applied).

A new schema version is one more entry in ``MIGRATIONS``: statements that turn the previous version into
the new one, run in one transaction when a store is opened. Never edit a released entry.
"""

from __future__ import annotations

# Schema 1: the tables as first released (before the store had a version).
SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS projects (
    project_id INTEGER PRIMARY KEY,
    label_config TEXT,
    interface TEXT,
    config_error TEXT,
    hostname TEXT,
    current_version TEXT,
    version_counter INTEGER NOT NULL DEFAULT 0,
    updated_at REAL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL,
    action TEXT NOT NULL,
    task_ids TEXT NOT NULL DEFAULT '[]',
    annotation_ids TEXT NOT NULL DEFAULT '[]',
    received_at REAL NOT NULL,
    handled_by INTEGER
);
CREATE INDEX IF NOT EXISTS events_pending ON events (project_id, handled_by);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL,
    trigger TEXT NOT NULL,
    status TEXT NOT NULL,
    stage TEXT,
    progress REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    heartbeat_at REAL,
    error TEXT,
    model_version TEXT,
    n_labels INTEGER,
    n_pool INTEGER,
    n_media_failed INTEGER,
    train_seconds REAL,
    rank_seconds REAL,
    push_seconds REAL,
    last_event_id INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_project ON jobs (project_id, status);
CREATE TABLE IF NOT EXISTS models (
    project_id INTEGER NOT NULL,
    model_version TEXT NOT NULL,
    created_at REAL NOT NULL,
    checkpoint TEXT NOT NULL,
    n_labels INTEGER,
    n_pool INTEGER,
    holdout_accuracy REAL,
    classes TEXT,
    strategy_weights TEXT,
    cost_report TEXT,
    report TEXT,
    job_id INTEGER,
    PRIMARY KEY (project_id, model_version)
);
CREATE TABLE IF NOT EXISTS rankings (
    project_id INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    model_version TEXT NOT NULL,
    rank INTEGER NOT NULL,
    priority REAL NOT NULL,
    score REAL NOT NULL,
    predicted_label TEXT,
    confidence REAL,
    predicted_cost REAL,
    informativeness REAL,
    strategy_weights TEXT,
    ranked_at REAL NOT NULL,
    PRIMARY KEY (project_id, task_id)
);
CREATE TABLE IF NOT EXISTS annotations (
    annotation_id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL,
    task_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS label_costs (
    project_id INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    model_version TEXT NOT NULL,
    predicted_seconds REAL NOT NULL,
    observed_seconds REAL NOT NULL,
    recorded_at REAL NOT NULL,
    PRIMARY KEY (project_id, task_id)
);
"""

# Schema 2: annotation ids are keyed per project (a post for one project cannot re-key another's), the
# /setup hostname is gone (the token goes only to LABEL_STUDIO_URL), failed pushes and media failures kept.
SCHEMA_2 = (
    """
    CREATE TABLE annotations_2 (
        project_id INTEGER NOT NULL,
        annotation_id INTEGER NOT NULL,
        task_id INTEGER NOT NULL,
        PRIMARY KEY (project_id, annotation_id)
    )
    """,
    "INSERT INTO annotations_2 (project_id, annotation_id, task_id) SELECT project_id, annotation_id, task_id "
    "FROM annotations",
    "DROP TABLE annotations",
    "ALTER TABLE annotations_2 RENAME TO annotations",
    "ALTER TABLE projects DROP COLUMN hostname",
    """
    CREATE TABLE pending_pushes (
        project_id INTEGER PRIMARY KEY,
        model_version TEXT NOT NULL,
        labels_digest TEXT NOT NULL,
        model TEXT NOT NULL,
        ranking TEXT NOT NULL,
        created_at REAL NOT NULL
    )
    """,
    """
    CREATE TABLE media_failures (
        project_id INTEGER NOT NULL,
        task_id INTEGER NOT NULL,
        kind TEXT NOT NULL,
        reason TEXT NOT NULL,
        job_id INTEGER,
        recorded_at REAL NOT NULL,
        PRIMARY KEY (project_id, task_id)
    )
    """,
)

# Schema 3: each ranked task keeps the candidates that score it highest (the status page's and /explain's "why").
SCHEMA_3 = ("ALTER TABLE rankings ADD COLUMN top_candidates TEXT",)

# Schema 4: two-speed retraining. A model says which path made it ("full": the backbone trained; "fast": the
# head refitted on cached embeddings) and its backbone; a job, its lane (full retrains run in their own, in
# the background), its path, latency and embedding-cache use; the tasks as LS last listed them (task_mirror),
# so a fast job lists only what changed.
SCHEMA_4 = (
    "ALTER TABLE jobs ADD COLUMN lane TEXT NOT NULL DEFAULT 'fast'",
    "ALTER TABLE models ADD COLUMN path TEXT",
    "ALTER TABLE models ADD COLUMN backbone_version TEXT",
    "ALTER TABLE jobs ADD COLUMN path TEXT",
    "ALTER TABLE jobs ADD COLUMN latency_seconds REAL",
    "ALTER TABLE jobs ADD COLUMN cache_hits INTEGER",
    "ALTER TABLE jobs ADD COLUMN cache_misses INTEGER",
    "ALTER TABLE jobs ADD COLUMN n_pushed INTEGER",
    "ALTER TABLE jobs ADD COLUMN path_reason TEXT",
    "ALTER TABLE jobs ADD COLUMN list_seconds REAL",
    "ALTER TABLE jobs ADD COLUMN n_listed INTEGER",
    "ALTER TABLE jobs ADD COLUMN media_seconds REAL",
    """
    CREATE TABLE task_mirror (
        project_id INTEGER NOT NULL,
        task_id INTEGER NOT NULL,
        task TEXT NOT NULL,
        updated_at TEXT,
        PRIMARY KEY (project_id, task_id)
    )
    """,
    "ALTER TABLE projects ADD COLUMN tasks_listed_until TEXT",
    "ALTER TABLE projects ADD COLUMN fully_listed_at REAL",
)

MIGRATIONS: tuple[tuple[int, str | tuple[str, ...]], ...] = (
    (1, SCHEMA_1), (2, SCHEMA_2), (3, SCHEMA_3), (4, SCHEMA_4)
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


class StoreVersionError(RuntimeError):
    """The store was written by a newer release than this one."""


def statements_of(statements: str | tuple[str, ...]) -> list[str]:
    if isinstance(statements, tuple):
        return list(statements)
    return [statement for statement in statements.split(";") if statement.strip()]
