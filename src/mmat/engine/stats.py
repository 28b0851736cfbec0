"""The counters of a run, shown live and written to ``stats.json`` beside the output."""

from __future__ import annotations

import collections
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunStats:
    """What happened so far. ``requests`` counts HTTP attempts; ``calls`` the logical calls."""

    started: float = field(default_factory=time.time)
    total: int | None = None
    samples_seen: int = 0
    skipped_done: int = 0
    skipped_duplicate: int = 0
    accepted: int = 0
    rejected: int = 0
    rejects_by_reason: collections.Counter[str] = field(default_factory=collections.Counter)
    calls: int = 0
    cache_hits: int = 0
    joined_in_flight: int = 0
    requests: int = 0
    retries: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    image_tokens: int = 0
    cost_usd: float = 0.0
    calls_by_purpose: collections.Counter[str] = field(default_factory=collections.Counter)
    tool_calls: collections.Counter[str] = field(default_factory=collections.Counter)
    concurrency_limit: float = 0.0
    in_flight_samples: int = 0
    in_flight_requests: int = 0
    interrupted: bool = False
    finished: bool = False
    teacher: str = ""
    teacher_grade: str = ""
    batch: dict[str, int] = field(default_factory=dict)

    @property
    def elapsed_s(self) -> float:
        return max(1e-9, time.time() - self.started)

    @property
    def finished_samples(self) -> int:
        return self.accepted + self.rejected

    def projected_cost_usd(self) -> float | None:
        """Cost at the end of the run, from the cost per finished sample so far."""
        if not self.total or not self.finished_samples:
            return None
        remaining = max(0, self.total - self.skipped_done - self.finished_samples)
        return self.cost_usd + self.cost_usd / self.finished_samples * remaining

    def to_dict(self) -> dict[str, Any]:
        elapsed = self.elapsed_s
        return {
            "finished": self.finished,
            "interrupted": self.interrupted,
            "teacher": self.teacher,
            "teacher_grade": self.teacher_grade,
            "elapsed_s": round(elapsed, 3),
            "total": self.total,
            "samples_seen": self.samples_seen,
            "skipped_done": self.skipped_done,
            "skipped_duplicate": self.skipped_duplicate,
            "kept": self.accepted,
            "rejected": self.rejected,
            "rejects_by_reason": dict(self.rejects_by_reason),
            "calls": self.calls,
            "cache_hits": self.cache_hits,
            "joined_in_flight": self.joined_in_flight,
            "requests": self.requests,
            "retries": dict(self.retries),
            "errors": dict(self.errors),
            "tokens": {
                "prompt": self.prompt_tokens,
                "completion": self.completion_tokens,
                "image_estimated": self.image_tokens,
            },
            "cost_usd": round(self.cost_usd, 6),
            "projected_cost_usd": None
            if self.projected_cost_usd() is None
            else round(self.projected_cost_usd() or 0, 6),
            "calls_by_purpose": dict(self.calls_by_purpose),
            "tool_calls": dict(self.tool_calls),
            "rates": {
                "samples_per_s": round(self.finished_samples / elapsed, 3),
                "requests_per_s": round(self.requests / elapsed, 3),
                "tokens_per_s": round((self.prompt_tokens + self.completion_tokens) / elapsed, 1),
            },
            "concurrency_limit": round(self.concurrency_limit, 2),
            "batch": dict(self.batch),
        }

    def write(self, path: Path) -> None:
        """Write ``stats.json`` atomically (a reader never sees half a file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(temporary, path)


class ProgressPanel:
    """A rich live panel of the run's rates, cost and rejects (only on a terminal)."""

    def __init__(self, stats: RunStats, *, enabled: bool) -> None:
        self.stats = stats
        self.enabled = enabled
        self._live: Any = None

    def _render(self) -> Any:
        from rich.table import Table

        s = self.stats
        d = s.to_dict()
        table = Table(title=f"mmat engine - teacher {s.teacher} ({s.teacher_grade})", show_header=False)
        done = f"{s.finished_samples}" + (f" / {s.total - s.skipped_done}" if s.total else "")
        table.add_row(
            "samples done",
            f"{done}  (kept {s.accepted}, rejected {s.rejected}, in flight {s.in_flight_samples})",
        )
        table.add_row("samples/s", f"{d['rates']['samples_per_s']:.2f}")
        table.add_row(
            "requests/s",
            f"{d['rates']['requests_per_s']:.2f}  (in flight {s.in_flight_requests}, limit {s.concurrency_limit:.0f})",
        )
        table.add_row("tokens/s", f"{d['rates']['tokens_per_s']:.0f}")
        table.add_row("cache hits", f"{s.cache_hits} of {s.calls} calls")
        projected = s.projected_cost_usd()
        table.add_row(
            "cost",
            f"${s.cost_usd:.4f}" + (f"  (projected ${projected:.2f})" if projected is not None else ""),
        )
        table.add_row("retries", ", ".join(f"{k} {v}" for k, v in s.retries.items()) or "0")
        table.add_row("rejects", ", ".join(f"{k} {v}" for k, v in s.rejects_by_reason.most_common(6)) or "0")
        return table

    def start(self) -> None:
        if not self.enabled:
            return
        from rich.console import Console
        from rich.live import Live

        self._live = Live(self._render(), console=Console(stderr=True), refresh_per_second=2, transient=False)
        self._live.start()

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def stop(self) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.stop()
            self._live = None
