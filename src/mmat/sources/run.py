"""Run the Foundation stage alone: stream one source into a samples file and a rejects file."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmat.schema import Reject, Sample


@dataclass
class FoundationSummary:
    """Counters of one Foundation run (also written as ``<out>.stats.json``)."""

    source: str = ""
    kept: int = 0
    rejected: int = 0
    qas: int = 0
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    qa_per_entry: Counter[int] = field(default_factory=Counter)
    by_subset: Counter[str] = field(default_factory=Counter)
    non_commercial: int = 0
    elapsed_s: float = 0.0

    def add(self, record: Sample | Reject) -> None:
        if isinstance(record, Sample):
            self.kept += 1
            self.qas += len(record.qas)
            self.qa_per_entry[len(record.qas)] += 1
            self.by_subset[record.subset or "-"] += 1
            self.non_commercial += record.non_commercial
        else:
            self.rejected += 1
            self.rejected_by_reason[record.reason] += 1

    @property
    def records_per_s(self) -> float:
        return (self.kept + self.rejected) / self.elapsed_s if self.elapsed_s else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": "foundation",
            "source": self.source,
            "kept": self.kept,
            "rejected": self.rejected,
            "qas": self.qas,
            "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
            "qa_per_entry": {str(k): v for k, v in sorted(self.qa_per_entry.items())},
            "by_subset": dict(sorted(self.by_subset.items())),
            "non_commercial": self.non_commercial,
            "elapsed_s": round(self.elapsed_s, 3),
            "records_per_s": round(self.records_per_s, 1),
        }


def write_records(
    records: Iterable[Sample | Reject],
    out: str | Path,
    rejects: str | Path | None = None,
    *,
    source: str = "",
    on_record: Callable[[FoundationSummary], None] | None = None,
) -> FoundationSummary:
    """Write samples (one JSON per line) to ``out`` and rejects to ``rejects``; return the counters.

    ``on_record`` is called after every record (the CLI updates its progress bar there). The
    counters are also written to ``<out>.stats.json``.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rejects_path = Path(rejects) if rejects else out.with_name(out.stem + ".rejects.jsonl")
    rejects_path.parent.mkdir(parents=True, exist_ok=True)
    summary = FoundationSummary(source=source)
    started = time.perf_counter()
    with out.open("w", encoding="utf-8") as good, rejects_path.open("w", encoding="utf-8") as bad:
        for record in records:
            (good if isinstance(record, Sample) else bad).write(record.model_dump_json() + "\n")
            summary.add(record)
            if on_record is not None:
                on_record(summary)
    summary.elapsed_s = time.perf_counter() - started
    stats_path(out).write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    return summary


def stats_path(out: str | Path) -> Path:
    """Where the counters of a Foundation run that wrote ``out`` go."""
    out = Path(out)
    return out.with_name(out.stem + ".stats.json")
