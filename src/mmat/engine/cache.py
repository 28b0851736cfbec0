"""The teacher-call cache: content-addressed, on disk (SQLite in WAL mode), safe under concurrent writers.

A call's key is ``sha256`` of: the teacher's fingerprint, the model, the decoding parameters, the hash
of the prompt template the stage used, and the messages with every image as its sha256
(:func:`~mmat.llm.base.messages_fingerprint`). So a warm rerun sends no request, and editing one
stage's prompt changes the keys of that stage's calls and, because their replies differ, of the calls
that follow them; earlier stages stay cached.

Several processes (shards, Ray workers) may share one cache file: SQLite serialises writers, WAL lets
readers go on while one writes, and ``INSERT OR REPLACE`` makes a duplicate write harmless.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from mmat.errors import ConfigError
from mmat.llm.base import ChatMessage, Completion, DecodingParams, messages_fingerprint

CACHE_FILE = "calls.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    purpose TEXT NOT NULL,
    model TEXT NOT NULL,
    completion TEXT NOT NULL,
    created REAL NOT NULL,
    used REAL NOT NULL,
    hits INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS calls_purpose ON calls(purpose);
CREATE INDEX IF NOT EXISTS calls_used ON calls(used);
"""


def call_key(
    teacher_fingerprint: str,
    model: str,
    params: DecodingParams,
    prompt_hash: str,
    messages: list[ChatMessage],
) -> str:
    """The cache key of one teacher call (images count by their sha256, never by path or bytes)."""
    blob = json.dumps(
        [
            teacher_fingerprint,
            model,
            params.model_dump(mode="json"),
            prompt_hash,
            messages_fingerprint(messages),
        ],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class CallCache:
    """A persistent map ``call_key -> Completion``.

    Args:
        path: the SQLite file, or a directory that holds ``calls.sqlite``.
    """

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if path.is_dir() or not path.suffix:
            path = path / CACHE_FILE
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"cannot create the cache directory {path.parent}: {error}") from None
        self._local = threading.local()
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            except sqlite3.Error as error:
                raise ConfigError(f"cannot open the call cache {self.path}: {error}") from None
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=60000")
            self._local.db = db
        return db

    def get(self, key: str) -> Completion | None:
        """The cached completion of ``key`` (marked ``cached=True``), or None."""
        db = self._connect()
        row = db.execute("SELECT completion FROM calls WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        db.execute("UPDATE calls SET used = ?, hits = hits + 1 WHERE key = ?", (time.time(), key))
        completion = Completion.model_validate_json(row[0])
        return completion.model_copy(update={"cached": True})

    def put(self, key: str, completion: Completion, *, purpose: str = "") -> None:
        now = time.time()
        stored = completion.model_copy(update={"cached": False}).model_dump_json()
        self._connect().execute(
            "INSERT OR REPLACE INTO calls(key, purpose, model, completion, created, used, hits) "
            "VALUES (?, ?, ?, ?, ?, ?, 0)",
            (key, purpose, completion.model, stored, now, now),
        )

    def __contains__(self, key: str) -> bool:
        return self._connect().execute("SELECT 1 FROM calls WHERE key = ?", (key,)).fetchone() is not None

    def __len__(self) -> int:
        return int(self._connect().execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    def stats(self) -> dict[str, Any]:
        """Entries, bytes on disk, hits, and counts per purpose and model."""
        db = self._connect()
        entries, hits = db.execute("SELECT COUNT(*), COALESCE(SUM(hits), 0) FROM calls").fetchone()
        per_purpose = dict(db.execute("SELECT purpose, COUNT(*) FROM calls GROUP BY purpose").fetchall())
        per_model = dict(db.execute("SELECT model, COUNT(*) FROM calls GROUP BY model").fetchall())
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        return {
            "path": str(self.path),
            "entries": int(entries),
            "hits": int(hits),
            "bytes": size,
            "by_purpose": per_purpose,
            "by_model": per_model,
        }

    def prune(
        self,
        *,
        older_than_days: float | None = None,
        purpose: str | None = None,
        keep_last: int | None = None,
    ) -> int:
        """Delete entries not used for ``older_than_days``, of one ``purpose``, or beyond the newest
        ``keep_last``; returns how many were deleted. With no argument nothing is deleted."""
        db = self._connect()
        before = len(self)
        if older_than_days is not None:
            db.execute("DELETE FROM calls WHERE used < ?", (time.time() - older_than_days * 86400,))
        if purpose is not None:
            db.execute("DELETE FROM calls WHERE purpose = ?", (purpose,))
        if keep_last is not None:
            db.execute(
                "DELETE FROM calls WHERE key NOT IN (SELECT key FROM calls ORDER BY used DESC LIMIT ?)",
                (keep_last,),
            )
        deleted = before - len(self)
        if deleted:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.execute("VACUUM")
        return deleted

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
