"""Cached per-item vectors under one backbone, on disk, so a retrain embeds only new or changed items.

One cache is one directory, for one backbone version (a new backbone gets a new directory; the caller
deletes the old one when the new backbone is committed). Inside:

- ``vectors.f32``: a float32 memory-mapped array (capacity, dim), grown by doubling;
- ``index.sqlite``: key -> row, where a key is the digest of the item's content (the caller hashes the
  media bytes, so a changed image is a new key and a renamed one is not).

Memory stays bounded for 10^6 items: lookups go through SQLite (a temporary table joined with the
index), and `get` copies only the rows asked for, never the whole file. Rows are written before their keys
are committed, so a crash leaves at worst unused rows, never a key pointing at an unwritten row.
One process writes a cache at a time (the job that owns the backbone); readers may run beside it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

VECTORS = "vectors.f32"
INDEX = "index.sqlite"
INITIAL_CAPACITY = 1024
LOOKUP_CHUNK = 50_000


class EmbeddingCache:
    """``get(keys)`` -> (vectors, found); ``put(keys, vectors)``; ``hits`` / ``misses`` count this object's lookups."""

    def __init__(self, directory: str | Path, dim: int) -> None:
        if dim < 1:
            raise ValueError(f"dim: must be >= 1, got {dim}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.dim = int(dim)
        self.hits = 0
        self.misses = 0
        self._db = sqlite3.connect(self.directory / INDEX, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS items (key BLOB PRIMARY KEY, row INTEGER NOT NULL)")
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('dim', ?)", (self.dim,))
        self._db.commit()
        stored = self._db.execute("SELECT value FROM meta WHERE name='dim'").fetchone()[0]
        if stored != self.dim:
            self._db.close()
            raise ValueError(f"dim: the cache at {self.directory} holds {stored}-d vectors, not {self.dim}-d")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def rows(self, keys: Sequence[bytes]) -> np.ndarray:
        """The row of each key, -1 where it is not cached."""
        rows = np.full(len(keys), -1, dtype=np.int64)
        position = {key: i for i, key in enumerate(keys)}
        for start in range(0, len(keys), LOOKUP_CHUNK):
            chunk = keys[start:start + LOOKUP_CHUNK]
            self._db.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (key BLOB PRIMARY KEY)")
            self._db.execute("DELETE FROM wanted")
            self._db.executemany("INSERT OR IGNORE INTO wanted VALUES (?)", ((key,) for key in chunk))
            for key, row in self._db.execute("SELECT items.key, items.row FROM wanted JOIN items USING (key)"):
                rows[position[key]] = row
        self._db.commit()
        return rows

    def get(self, keys: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """(vectors (N, dim) float32, with NaN rows where missing; found mask (N,))."""
        keys = [_check_key(key) for key in keys]
        rows = self.rows(keys)
        found = rows >= 0
        vectors = np.full((len(keys), self.dim), np.nan, dtype=np.float32)
        if found.any():
            stored = self._open(mode="r")
            where = np.flatnonzero(found)
            for start in range(0, len(where), LOOKUP_CHUNK):  # a chunk's copy at a time, never a second (N, dim)
                part = where[start:start + LOOKUP_CHUNK]
                vectors[part] = stored[rows[part]]
            del stored
        self.hits += int(found.sum())
        self.misses += int((~found).sum())
        return vectors, found

    def put(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Store vectors of new keys (keys already cached keep their vector: content keys do not change)."""
        keys = [_check_key(key) for key in keys]
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(keys), self.dim):
            raise ValueError(f"vectors: expected shape ({len(keys)}, {self.dim}), got {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise ValueError("vectors: must be finite")
        rows = self.rows(keys)
        new = {key: i for i, key in enumerate(keys) if rows[i] < 0}  # one row per distinct new key
        if not new:
            return
        first = int(self._db.execute("SELECT COALESCE(MAX(row) + 1, 0) FROM items").fetchone()[0])
        stored = self._open(mode="r+", rows=first + len(new))
        stored[first:first + len(new)] = vectors[list(new.values())]
        stored.flush()
        del stored
        with self._db:
            self._db.executemany("INSERT OR IGNORE INTO items VALUES (?, ?)",
                                 ((key, first + j) for j, key in enumerate(new)))

    def _open(self, mode: str, rows: int = 0) -> np.memmap:
        """The vector file as a memmap, grown (doubling) to hold at least ``rows`` rows when writing."""
        path = self.directory / VECTORS
        capacity = path.stat().st_size // (4 * self.dim) if path.exists() else 0
        if mode == "r+" and rows > capacity:
            capacity = max(INITIAL_CAPACITY, capacity)
            while capacity < rows:
                capacity *= 2
            with open(path, "ab") as handle:
                handle.truncate(capacity * 4 * self.dim)
        return np.memmap(path, dtype=np.float32, mode=mode, shape=(capacity, self.dim))


def _check_key(key: bytes) -> bytes:
    if not isinstance(key, bytes) or not key:
        raise ValueError(f"keys: each key must be non-empty bytes (a content digest), got {key!r}")
    return key
