"""A byte-offset index over a build's shards: filters and pages without holding the records.

One streaming pass over ``accepted/`` and ``rejects/`` keeps, per record, its shard number, byte offset
and length plus a few compact codes (status, source, reject reason, operators used as a bit mask,
reflection kinds as a bit mask, quality score) in :mod:`array` columns: about 40 bytes a record, so a
million-record build indexes in some 40 MB. A page reads only its own lines back from disk.
"""

from __future__ import annotations

import json
import logging
import math
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmat.export.stats import BuildStats
from mmat.store import ACCEPTED_DIR, REJECTS_DIR

logger = logging.getLogger(__name__)

ACCEPTED, REJECTED = 0, 1
STATUS_NAMES = ("accepted", "rejected")
MAX_PAGE = 200
NO_REFLECTION = "none"
CACHE_DIR = ".mmat-viewer"
CACHE_VERSION = 1
PROGRESS_EVERY = 100_000


class _Interner:
    """Strings <-> small integer codes, in first-seen order."""

    def __init__(self, *initial: str) -> None:
        self.names: list[str] = []
        self.codes: dict[str, int] = {}
        for name in initial:
            self.code(name)

    def code(self, name: str) -> int:
        found = self.codes.get(name)
        if found is None:
            found = self.codes[name] = len(self.names)
            self.names.append(name)
        return found


@dataclass
class Query:
    """A list request: filters (empty means any) and the page."""

    status: str = ""
    source: str = ""
    operator: str = ""
    reflection: str = ""
    reason: str = ""
    quality_min: float | None = None
    quality_max: float | None = None
    text: str = ""
    offset: int = 0
    limit: int = 50


@dataclass
class Page:
    total: int
    total_exact: bool
    items: list[dict[str, Any]] = field(default_factory=list)


class RecordIndex:
    """Index of one build output directory. Build it with :meth:`build`."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.files: list[Path] = []
        self.file_no = array("I")
        self.offset = array("Q")
        self.length = array("I")
        self.status = array("B")
        self.source = array("I")
        self.reason = array("I")
        self.operators = array("Q")
        self.reflections = array("B")
        self.quality = array("d")
        self.sources = _Interner()
        self.reasons = _Interner("")
        self.operator_names = _Interner()
        self.reflection_names = _Interner()
        self.stats = BuildStats()
        self.bad_lines = 0

    def __len__(self) -> int:
        return len(self.offset)

    @classmethod
    def build(
        cls,
        out_dir: str | Path,
        *,
        cache: bool = True,
        progress: Callable[[int], None] | None = None,
    ) -> RecordIndex:
        """Stream every shard once and index it.

        With ``cache`` the index is saved under ``OUT_DIR/.mmat-viewer/`` (plain JSON and raw arrays,
        never pickle) and reused while no shard changed size or mtime; an unwritable OUT_DIR only
        costs the cache. ``progress`` is called with the record count every 100,000 records.
        """
        index = cls(Path(out_dir))
        shards = index._shards()
        if cache and index._load_cache(shards):
            logger.info("viewer index of %d records loaded from the cache", len(index))
            return index
        for path, status in shards:
            index._add_file(path, status, progress)
        logger.info("indexed %d records (%d unreadable lines)", len(index), index.bad_lines)
        if cache:
            index._save_cache(shards)
        return index

    def _shards(self) -> list[tuple[Path, int]]:
        return [
            (path, status)
            for status, folder in ((ACCEPTED, ACCEPTED_DIR), (REJECTED, REJECTS_DIR))
            for path in sorted((self.out_dir / folder).glob("shard-*.jsonl"))
        ]

    # ----------------------------------------------------------------------------------------------
    # cache

    def _fingerprint(self, shards: list[tuple[Path, int]]) -> list[list[Any]]:
        out = []
        for path, status in shards:
            info = path.stat()
            out.append([path.relative_to(self.out_dir).as_posix(), status, info.st_size, info.st_mtime_ns])
        return out

    def _columns(self) -> list[tuple[str, array[Any]]]:
        return [
            ("file_no", self.file_no),
            ("offset", self.offset),
            ("length", self.length),
            ("status", self.status),
            ("source", self.source),
            ("reason", self.reason),
            ("operators", self.operators),
            ("reflections", self.reflections),
            ("quality", self.quality),
        ]

    def _save_cache(self, shards: list[tuple[Path, int]]) -> None:
        folder = self.out_dir / CACHE_DIR
        try:
            folder.mkdir(exist_ok=True)
            with (folder / "columns.bin.part").open("wb") as handle:
                for _, column in self._columns():
                    column.tofile(handle)
            header = {
                "version": CACHE_VERSION,
                "shards": self._fingerprint(shards),
                "count": len(self),
                "bad_lines": self.bad_lines,
                "sources": self.sources.names,
                "reasons": self.reasons.names,
                "operators": self.operator_names.names,
                "reflections": self.reflection_names.names,
                "stats": self.stats.to_state(),
            }
            (folder / "columns.bin.part").replace(folder / "columns.bin")
            (folder / "index.json").write_text(json.dumps(header), encoding="utf-8")
        except OSError as error:
            logger.warning(
                "cannot write the viewer index cache under %s (%s); it is rebuilt next time", folder, error
            )

    def _load_cache(self, shards: list[tuple[Path, int]]) -> bool:
        folder = self.out_dir / CACHE_DIR
        try:
            header = json.loads((folder / "index.json").read_text(encoding="utf-8"))
            if header.get("version") != CACHE_VERSION or header.get("shards") != self._fingerprint(shards):
                return False
            count = int(header["count"])
            with (folder / "columns.bin").open("rb") as handle:
                for _, column in self._columns():
                    column.fromfile(handle, count)
        except (OSError, ValueError, KeyError, EOFError, TypeError) as error:
            logger.info("viewer index cache not used (%s); indexing", error)
            self.__init__(self.out_dir)  # type: ignore[misc]
            return False
        self.files = [path for path, _ in shards]
        self.bad_lines = int(header["bad_lines"])
        for interner, names in (
            (self.sources, header["sources"]),
            (self.reasons, header["reasons"]),
            (self.operator_names, header["operators"]),
            (self.reflection_names, header["reflections"]),
        ):
            interner.names, interner.codes = [], {}
            for name in names:
                interner.code(name)
        self.stats = BuildStats.from_state(header["stats"])
        return True

    # ----------------------------------------------------------------------------------------------

    def _add_file(self, path: Path, status: int, progress: Callable[[int], None] | None = None) -> None:
        file_no = len(self.files)
        self.files.append(path)
        position = 0
        with path.open("rb") as handle:
            for line in handle:
                start, position = position, position + len(line)
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    self.bad_lines += 1
                    continue
                if not isinstance(record, dict):
                    self.bad_lines += 1
                    continue
                self._add_record(record, file_no, start, len(line), status)
                if progress is not None and len(self.offset) % PROGRESS_EVERY == 0:
                    progress(len(self.offset))

    def _add_record(self, record: dict[str, Any], file_no: int, start: int, length: int, status: int) -> None:
        self.file_no.append(file_no)
        self.offset.append(start)
        self.length.append(length)
        self.status.append(status)
        self.source.append(self.sources.code(str(record.get("source") or "unknown")))
        if status == ACCEPTED:
            summary = self.stats.add_sample(record)
            mask = 0
            for name in summary.operators:
                code = self.operator_names.code(name)
                if code < 64:
                    mask |= 1 << code
            reflections = 0
            for kind in summary.reflections:
                code = self.reflection_names.code(kind)
                if code < 8:
                    reflections |= 1 << code
            self.reason.append(0)
            self.operators.append(mask)
            self.reflections.append(reflections)
            self.quality.append(summary.quality if summary.quality is not None else math.nan)
        else:
            self.stats.add_reject(record)
            self.reason.append(self.reasons.code(str(record.get("reason") or "unknown")))
            self.operators.append(0)
            self.reflections.append(0)
            self.quality.append(math.nan)

    # ----------------------------------------------------------------------------------------------

    def raw(self, n: int) -> bytes:
        """The stored line of record ``n``."""
        if not 0 <= n < len(self):
            raise IndexError(n)
        with self.files[self.file_no[n]].open("rb") as handle:
            handle.seek(self.offset[n])
            return handle.read(self.length[n])

    def record(self, n: int) -> dict[str, Any]:
        """The stored JSON object of record ``n``."""
        loaded: dict[str, Any] = json.loads(self.raw(n))
        return loaded

    def facets(self) -> dict[str, list[str]]:
        """The values each filter can take."""
        return {
            "status": list(STATUS_NAMES),
            "source": sorted(self.sources.names),
            "operator": sorted(self.operator_names.names),
            "reflection": [NO_REFLECTION, "any", *sorted(self.reflection_names.names)],
            "reason": sorted(name for name in self.reasons.names if name),
        }

    def _candidates(self, query: Query) -> Iterator[int]:
        status = STATUS_NAMES.index(query.status) if query.status in STATUS_NAMES else None
        source = self.sources.codes.get(query.source, -1) if query.source else None
        reason = self.reasons.codes.get(query.reason, -1) if query.reason else None
        operator_bit = None
        if query.operator:
            code = self.operator_names.codes.get(query.operator)
            operator_bit = (1 << code) if code is not None and code < 64 else 0
        reflection_bit = None
        if query.reflection and query.reflection not in (NO_REFLECTION, "any"):
            code = self.reflection_names.codes.get(query.reflection)
            reflection_bit = (1 << code) if code is not None and code < 8 else 0
        qmin, qmax = query.quality_min, query.quality_max
        for n in range(len(self)):
            if status is not None and self.status[n] != status:
                continue
            if source is not None and self.source[n] != source:
                continue
            if reason is not None and self.reason[n] != reason:
                continue
            if operator_bit is not None and not self.operators[n] & operator_bit:
                continue
            if query.reflection == NO_REFLECTION and (self.reflections[n] or self.status[n] != ACCEPTED):
                continue
            if query.reflection == "any" and not self.reflections[n]:
                continue
            if reflection_bit is not None and not self.reflections[n] & reflection_bit:
                continue
            if qmin is not None or qmax is not None:
                score = self.quality[n]
                if (
                    math.isnan(score)
                    or (qmin is not None and score < qmin)
                    or (qmax is not None and score > qmax)
                ):
                    continue
            yield n

    def query(self, query: Query) -> Page:
        """One page of matching records. With a text search the total may be a lower bound."""
        limit = max(1, min(query.limit, MAX_PAGE))
        offset = max(0, query.offset)
        needle = query.text.strip().lower()
        if not needle:
            matched = list(self._candidates(query))
            return Page(len(matched), True, [self.summary(n) for n in matched[offset : offset + limit]])
        # A text search reads the lines themselves: stop once the page (and one more) is found.
        found: list[int] = []
        exact = True
        handles: dict[int, Any] = {}
        try:
            for n in self._candidates(query):
                file_no = self.file_no[n]
                handle = handles.get(file_no)
                if handle is None:
                    handle = handles[file_no] = self.files[file_no].open("rb")
                handle.seek(self.offset[n])
                if needle in handle.read(self.length[n]).decode("utf-8", "replace").lower():
                    found.append(n)
                    if len(found) > offset + limit:
                        exact = False
                        break
        finally:
            for handle in handles.values():
                handle.close()
        return Page(len(found), exact, [self.summary(n) for n in found[offset : offset + limit]])

    def summary(self, n: int) -> dict[str, Any]:
        """The list row of record ``n`` (reads its line for the id and question)."""
        record = self.record(n)
        status = STATUS_NAMES[self.status[n]]
        mask = self.operators[n]
        item: dict[str, Any] = {
            "n": n,
            "id": record.get("id") or f"#{n}",
            "status": status,
            "source": self.sources.names[self.source[n]],
            "operators": [
                name for code, name in enumerate(self.operator_names.names) if code < 64 and mask >> code & 1
            ],
            "reflections": [
                name
                for code, name in enumerate(self.reflection_names.names)
                if code < 8 and self.reflections[n] >> code & 1
            ],
            "quality": None if math.isnan(self.quality[n]) else self.quality[n],
            "reason": self.reasons.names[self.reason[n]] or None,
        }
        if status == "accepted":
            qas = record.get("qas") or [{}]
            item["text"] = str(qas[0].get("question", ""))[:200]
            item["qas"] = len(record.get("qas") or [])
        else:
            item["text"] = f"[{record.get('stage', '?')}] {record.get('detail', '')}"[:200]
        return item
