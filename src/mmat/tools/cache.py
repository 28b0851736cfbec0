"""The content-addressed tool cache: (image sha256, tool, version, normalised args) -> ToolResult.

Results live in one SQLite file so a rerun re-pays only the calls whose inputs changed. Errors are
never cached (a timeout or a missing extra should be retried next run).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmat.schema import ToolResult

CACHE_FILE = "tools.sqlite"


def normalise_args(args: Mapping[str, Any]) -> str:
    """Canonical JSON of tool arguments: sorted keys, no whitespace, ``None`` values dropped."""

    def canon(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {
                str(k): canon(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0])) if v is not None
            }
        if isinstance(value, list | tuple):
            return [canon(v) for v in value]
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str | int | float | bool) or value is None:
            return value
        return repr(value)

    return json.dumps(canon(dict(args)), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def tool_cache_key(image_sha256: Sequence[str], tool: str, version: str, args: Mapping[str, Any]) -> str:
    """The cache key of one operator call."""
    blob = json.dumps(
        {"images": list(image_sha256), "tool": tool, "version": version, "args": normalise_args(args)},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class ToolCache:
    """A thread-safe SQLite store of successful tool results.

    Args:
        path: the SQLite file, or ``None`` for a cache that lives only in memory.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL") if path else None
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, tool TEXT, version TEXT, result TEXT)"
        )
        self._db.commit()

    def get(self, key: str) -> ToolResult | None:
        with self._lock:
            row = self._db.execute("SELECT result FROM results WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            return ToolResult.model_validate_json(row[0])
        except ValueError:
            return None  # written by an incompatible version: recompute

    def put(self, key: str, result: ToolResult) -> None:
        if result.error is not None:
            return
        blob = result.model_dump_json()
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO results (key, tool, version, result) VALUES (?, ?, ?, ?)",
                (key, result.tool, result.version, blob),
            )
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
