"""Durable state: one SQLite database (stdlib ``sqlite3``) of JSON documents, guarded by a lock."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    created_at REAL NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX IF NOT EXISTS objects_by_time ON objects (kind, created_at);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Store:
    """Documents by kind ('file', 'job', 'batch', 'deployment', ...) and id. Thread-safe."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")
        self._connection.executescript(SCHEMA)
        self.lock = threading.RLock()

    def put(self, kind: str, document: dict[str, Any]) -> None:
        with self.lock:
            self._connection.execute(
                "INSERT OR REPLACE INTO objects (kind, id, created_at, data) VALUES (?, ?, ?, ?)",
                (kind, document["id"], float(document["created_at"]), json.dumps(document)),
            )

    def get(self, kind: str, object_id: str) -> dict[str, Any] | None:
        with self.lock:
            row = self._connection.execute(
                "SELECT data FROM objects WHERE kind = ? AND id = ?", (kind, object_id)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def list(self, kind: str) -> list[dict[str, Any]]:
        """Every document of a kind, newest first."""
        with self.lock:
            rows = self._connection.execute(
                "SELECT data FROM objects WHERE kind = ? ORDER BY created_at DESC, rowid DESC", (kind,)
            ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def delete(self, kind: str, object_id: str) -> None:
        with self.lock:
            self._connection.execute("DELETE FROM objects WHERE kind = ? AND id = ?", (kind, object_id))

    def meta(self, key: str, default: Any = None) -> Any:
        with self.lock:
            row = self._connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value: Any) -> None:
        with self.lock:
            self._connection.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value))
            )

    def close(self) -> None:
        with self.lock:
            self._connection.close()
