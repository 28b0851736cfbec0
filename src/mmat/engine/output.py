"""Durable per-shard appends and the completion index that makes a killed run resumable.

Each finished record is one JSON line appended to its shard (``accepted/shard-NNNNN.jsonl`` or
``rejects/shard-NNNNN.jsonl``, see :mod:`mmat.store`) with a single ``write`` on a file opened with
``O_APPEND``, so a SIGKILL leaves either the whole line or, at worst, a torn last line that the next
run cuts off. The shard files are the completion index: on start the engine reads the keys of the
records already written and skips them; everything else (the samples in flight at the kill) runs
again, their finished teacher calls served by the call cache.

A record's key is its sample id; the reject of one QA of a dialogue that was kept is keyed
``id#qa_id``; a loader reject without an id is keyed by its location.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from mmat.schema import Reject, Sample
from mmat.store import ACCEPTED_DIR, REJECTS_DIR, shard_file

logger = logging.getLogger(__name__)


def record_key(record: Sample | Reject) -> str:
    """What identifies a record across runs: its id (``id#qa_id`` for the reject of one QA of a kept
    dialogue); a reject without an id, its location or content."""
    if isinstance(record, Reject) and record.id and record.qa_id is not None:
        return f"{record.id}#{record.qa_id}"
    if record.id:
        return record.id
    if isinstance(record, Sample):  # unreachable: a sample always has an id
        return record.id
    where = (
        record.location or hashlib.sha256(f"{record.stage}|{record.reason}|{record.raw}".encode()).hexdigest()
    )
    return f"@{where}"


def shard_of(key: str, shards: int) -> int:
    """The shard of a record: a stable hash of its key, so reruns put it in the same place."""
    if shards <= 1:
        return 0
    return int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) % shards


def _key_of_line(line: str) -> str | None:
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if data.get("id") and data.get("qa_id") is not None and "qas" not in data:
        return f"{data['id']}#{data['qa_id']}"
    if data.get("id"):
        return str(data["id"])
    where = (
        data.get("location")
        or hashlib.sha256(f"{data.get('stage')}|{data.get('reason')}|{data.get('raw')}".encode()).hexdigest()
    )
    return f"@{where}"


class ShardStore:
    """The output directory of one run: appenders per shard and kind, and the set of finished keys."""

    def __init__(
        self, out_dir: Path, shards: int = 1, *, fsync: bool = False, only_shard: int | None = None
    ) -> None:
        self.out_dir = Path(out_dir)
        self.shards = max(1, shards)
        self.fsync = fsync
        # A Ray worker owns one shard: it reads (and repairs) only that shard's files, because other
        # workers are appending to theirs and cutting their "torn" last line would destroy a write.
        self.only_shard = only_shard
        self._fds: dict[tuple[str, int], int] = {}
        self.done: set[str] = set()
        self.torn_lines = 0

    def load(self) -> set[str]:
        """Read the keys already written (cutting torn last lines); returns them."""
        pattern = "shard-*.jsonl" if self.only_shard is None else f"shard-{self.only_shard:05d}.jsonl"
        for kind in (ACCEPTED_DIR, REJECTS_DIR):
            for path in sorted((self.out_dir / kind).glob(pattern)):
                self._repair_tail(path)
                with path.open(encoding="utf-8") as handle:
                    for line in handle:
                        if line.strip():
                            key = _key_of_line(line)
                            if key is not None:
                                self.done.add(key)
        return self.done

    def _repair_tail(self, path: Path) -> None:
        size = path.stat().st_size
        if size == 0:
            return
        with path.open("rb+") as handle:
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return
            # a SIGKILL mid-write: cut back to the last complete line
            chunk = min(size, 1 << 20)
            handle.seek(size - chunk)
            tail = handle.read(chunk)
            cut = tail.rfind(b"\n")
            keep = 0 if cut < 0 else size - chunk + cut + 1
            handle.truncate(keep)
        self.torn_lines += 1
        logger.warning("cut a torn last line off %s (the run was killed mid-write)", path)

    def _fd(self, kind: str, shard: int) -> int:
        fd = self._fds.get((kind, shard))
        if fd is None:
            path = shard_file(self.out_dir, kind, shard)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._fds[(kind, shard)] = fd
        return fd

    def write(self, record: Sample | Reject) -> None:
        """Append one record to its shard, in one write; mark its key done."""
        key = record_key(record)
        kind = ACCEPTED_DIR if isinstance(record, Sample) else REJECTS_DIR
        line = (record.model_dump_json(exclude_none=False) + "\n").encode("utf-8")
        fd = self._fd(kind, shard_of(key, self.shards))
        written = os.write(fd, line)
        while written < len(line):  # only for huge records; a kill here leaves a torn line
            written += os.write(fd, line[written:])
        if self.fsync:
            os.fsync(fd)
        self.done.add(key)

    def sync(self) -> None:
        for fd in self._fds.values():
            os.fsync(fd)

    def close(self) -> None:
        for fd in self._fds.values():
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._fds.clear()
