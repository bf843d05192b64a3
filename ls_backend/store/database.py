"""One SQLite file: per-thread connections, transactions, migrations on open, and JSON column helpers.

Every thread keeps its own connection, so the store is safe to use from threads and from separate
processes (the web server, its job process, RQ workers). Every write runs in `Database.transaction`
(``BEGIN IMMEDIATE ... COMMIT``). The writers of one process take turns on a `threading.Lock` first:
waiting on it costs no CPU and ends the moment the writer before is done, where threads waiting in
SQLite's busy handler sleep in growing steps and wake only to poll again. Between processes, SQLite's
own lock and the busy timeout (30 s) still decide.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ls_backend.store.schema import MIGRATIONS, SCHEMA_VERSION, StoreVersionError, statements_of

SQL_CHUNK = 900  # host parameters per statement, below SQLite's limit


class Database:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()  # one writer of this process at a time
        self._connection().execute("PRAGMA journal_mode=WAL")
        self._migrate()

    def _migrate(self) -> None:
        """Bring the file to SCHEMA_VERSION, one migration per transaction (safe with concurrent openers)."""
        for target, statements in MIGRATIONS:
            with self.transaction() as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise StoreVersionError(
                        f"{self.path} has schema {version}, newer than this release reads ({SCHEMA_VERSION}); "
                        "upgrade autoal-labelstudio or use another MODEL_DIR"
                    )
                if version < target:
                    for statement in statements_of(statements):
                        db.execute(statement)
                    db.execute(f"PRAGMA user_version={target}")

    def schema_version(self) -> int:
        with self._read() as db:
            return int(db.execute("PRAGMA user_version").fetchone()[0])

    # -- connection -------------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, kept open: closing the last connection of a WAL database checkpoints
        and removes the WAL file, which made every short-lived connection cost milliseconds."""
        db = getattr(self._local, "db", None)
        if db is None or self._local.pid != os.getpid():  # never reuse a connection across a fork
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db, self._local.pid, self._local.after_commit = db, os.getpid(), []
        return db

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        yield self._connection()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: everything written inside commits together, or nothing on an error.

        One opened inside another (in the same thread) is a savepoint of it: its error undoes its own
        writes, and they commit with the outer transaction. So several writes, of one webhook for example,
        cost one commit and one turn of the write lock.
        """
        db = self._connection()
        if db.in_transaction:
            callbacks = len(self._local.after_commit)
            db.execute("SAVEPOINT nested")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK TO nested")
                db.execute("RELEASE nested")
                del self._local.after_commit[callbacks:]  # they belonged to the writes undone
                raise
            db.execute("RELEASE nested")
            return
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                self._local.after_commit.clear()
                raise
            db.execute("COMMIT")
        callbacks, self._local.after_commit = self._local.after_commit, []
        for callback in callbacks:
            callback()

    def after_commit(self, callback: Callable[[], object]) -> None:
        """Call `callback` once this thread's open transaction has committed (never, if it rolls back), or
        now when none is open: e.g. hand a job to a worker only once the worker can read the job's row."""
        if self._connection().in_transaction:
            self._local.after_commit.append(callback)
        else:
            callback()


def chunks(values: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(values), SQL_CHUNK):
        yield list(values[start : start + SQL_CHUNK])


def dump_json(value: Any) -> str | None:
    return None if value is None else json.dumps(json_safe(value), allow_nan=False)


def json_safe(value: Any) -> Any:
    """Plain JSON types: numpy values become Python numbers, NaN and infinities become null."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if hasattr(value, "tolist"):
        return json_safe(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def load_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
