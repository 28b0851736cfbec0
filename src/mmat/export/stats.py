"""Statistics of a build output, gathered in one streaming pass: for the dataset card and the viewer.

:func:`summarize_sample` reads what matters from one accepted sample's JSON (a dict, as stored),
:class:`BuildStats` adds summaries and rejects up; nothing keeps the records themselves.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmat.store import iter_accepted, iter_rejects

RAG = "rag"
QUALITY_BINS = 10
STEP_BUCKETS = ("1", "2", "3", "4", "5+")


@dataclass
class SampleSummary:
    """What the statistics and the viewer's filters need from one accepted sample."""

    id: str
    source: str
    license: str
    non_commercial: bool
    qas: int
    operators: Counter[str]
    steps_per_qa: list[int]
    reflections: set[str]
    quality: float | None


def summarize_sample(record: dict[str, Any]) -> SampleSummary:
    """Summarise one accepted sample given as its stored JSON object."""
    operators: Counter[str] = Counter()
    steps_per_qa: list[int] = []
    reflections: set[str] = set()
    trajectory = record.get("trajectory") or {}
    for segment in trajectory.get("segments") or []:
        steps = 0
        for turn in segment.get("turns") or []:
            step = turn.get("step")
            if turn.get("kind") != "step" or not step:
                continue
            steps += 1
            operators.update(step.get("operators") or [])
            if step.get("rag_query") is not None:
                operators[RAG] += 1
            if step.get("signal") == "reflection" and not segment.get("reflections"):
                reflections.add("signalled")
        steps_per_qa.append(steps)
        for reflection in segment.get("reflections") or []:
            reflections.add(str(reflection.get("kind", "general")))
    quality = record.get("quality") or {}
    score = quality.get("score")
    return SampleSummary(
        id=str(record.get("id", "")),
        source=str(record.get("source", "unknown")),
        license=str(record.get("license", "unknown")),
        non_commercial=bool(record.get("non_commercial", False)),
        qas=len(record.get("qas") or []) or len(steps_per_qa),
        operators=operators,
        steps_per_qa=steps_per_qa,
        reflections=reflections,
        quality=float(score) if isinstance(score, (int, float)) else None,
    )


def step_bucket(steps: int) -> str:
    return "5+" if steps >= 5 else str(max(steps, 1))


@dataclass
class SourceLicence:
    license: str
    non_commercial: bool
    samples: int = 0


@dataclass
class BuildStats:
    """Counters over a whole build, filled one record at a time."""

    accepted: int = 0
    rejected: int = 0
    qas: int = 0
    by_source: Counter[str] = field(default_factory=Counter)
    rejects_by_source: Counter[str] = field(default_factory=Counter)
    licences: dict[str, dict[str, SourceLicence]] = field(default_factory=dict)
    operator_calls: Counter[str] = field(default_factory=Counter)
    samples_using: Counter[str] = field(default_factory=Counter)
    steps_histogram: Counter[str] = field(default_factory=Counter)
    reflection_samples: int = 0
    reflections_by_kind: Counter[str] = field(default_factory=Counter)
    quality_bins: list[int] = field(default_factory=lambda: [0] * QUALITY_BINS)
    quality_sum: float = 0.0
    quality_count: int = 0
    rejects_by_reason: Counter[str] = field(default_factory=Counter)
    rejects_by_stage: Counter[str] = field(default_factory=Counter)
    teachers: Counter[str] = field(default_factory=Counter)
    teacher_grades: Counter[str] = field(default_factory=Counter)
    prompt_hashes: dict[str, Counter[str]] = field(default_factory=dict)
    tool_versions: dict[str, Counter[str]] = field(default_factory=dict)
    mmat_versions: Counter[str] = field(default_factory=Counter)

    def add_sample(self, record: dict[str, Any], summary: SampleSummary | None = None) -> SampleSummary:
        """Count one accepted sample (its stored JSON object); returns its summary."""
        summary = summary or summarize_sample(record)
        self.accepted += 1
        self.qas += summary.qas
        self.by_source[summary.source] += 1
        entry = self.licences.setdefault(summary.source, {}).setdefault(
            summary.license, SourceLicence(summary.license, summary.non_commercial)
        )
        entry.samples += 1
        entry.non_commercial = entry.non_commercial or summary.non_commercial
        self.operator_calls.update(summary.operators)
        self.samples_using.update(summary.operators.keys())
        for steps in summary.steps_per_qa:
            self.steps_histogram[step_bucket(steps)] += 1
        if summary.reflections:
            self.reflection_samples += 1
            self.reflections_by_kind.update(summary.reflections)
        if summary.quality is not None and not math.isnan(summary.quality):
            index = min(int(summary.quality * QUALITY_BINS), QUALITY_BINS - 1)
            self.quality_bins[max(index, 0)] += 1
            self.quality_sum += summary.quality
            self.quality_count += 1
        provenance = (record.get("trajectory") or {}).get("provenance") or {}
        teacher = "/".join(str(p) for p in (provenance.get("teacher"), provenance.get("teacher_model")) if p)
        if teacher:
            self.teachers[teacher] += 1
        if provenance.get("teacher_grade"):
            self.teacher_grades[str(provenance["teacher_grade"])] += 1
        for name, digest in (provenance.get("prompt_hashes") or {}).items():
            self.prompt_hashes.setdefault(name, Counter())[str(digest)] += 1
        for tool, version in (provenance.get("tool_versions") or {}).items():
            self.tool_versions.setdefault(tool, Counter())[str(version)] += 1
        if provenance.get("mmat_version"):
            self.mmat_versions[str(provenance["mmat_version"])] += 1
        return summary

    def add_reject(self, record: dict[str, Any]) -> None:
        """Count one reject (its stored JSON object)."""
        self.rejected += 1
        self.rejects_by_reason[str(record.get("reason", "unknown"))] += 1
        self.rejects_by_stage[str(record.get("stage", "unknown"))] += 1
        if record.get("source"):
            self.rejects_by_source[str(record["source"])] += 1

    def to_state(self) -> dict[str, Any]:
        """Every counter as plain JSON (for caches); :meth:`from_state` reads it back."""
        state: dict[str, Any] = {}
        for name, value in vars(self).items():
            if name == "licences":
                state[name] = {s: {k: vars(e) for k, e in entries.items()} for s, entries in value.items()}
            elif isinstance(value, dict) and value and all(isinstance(v, Counter) for v in value.values()):
                state[name] = {k: dict(v) for k, v in value.items()}
            else:
                state[name] = dict(value) if isinstance(value, Counter) else value
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> BuildStats:
        stats = cls()
        for name, value in state.items():
            current = getattr(stats, name)
            if name == "licences":
                stats.licences = {
                    s: {k: SourceLicence(**e) for k, e in entries.items()} for s, entries in value.items()
                }
            elif name in ("prompt_hashes", "tool_versions"):
                setattr(stats, name, {k: Counter(v) for k, v in value.items()})
            elif isinstance(current, Counter):
                setattr(stats, name, Counter(value))
            else:
                setattr(stats, name, value)
        return stats

    @property
    def non_commercial_sources(self) -> list[str]:
        return sorted(
            s for s, entries in self.licences.items() if any(e.non_commercial for e in entries.values())
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (the viewer's ``/api/stats`` and the card's numbers)."""
        return {
            "accepted": self.accepted,
            "rejected": self.rejected,
            "qas": self.qas,
            "by_source": dict(self.by_source.most_common()),
            "rejects_by_source": dict(self.rejects_by_source.most_common()),
            "licences": {
                source: [vars(entry) for entry in entries.values()]
                for source, entries in sorted(self.licences.items())
            },
            "non_commercial_sources": self.non_commercial_sources,
            "operator_calls": dict(self.operator_calls.most_common()),
            "samples_using": dict(self.samples_using.most_common()),
            "steps_histogram": {bucket: self.steps_histogram.get(bucket, 0) for bucket in STEP_BUCKETS},
            "reflection_samples": self.reflection_samples,
            "reflection_rate": self.reflection_samples / self.accepted if self.accepted else 0.0,
            "reflections_by_kind": dict(self.reflections_by_kind.most_common()),
            "quality_bins": list(self.quality_bins),
            "quality_mean": self.quality_sum / self.quality_count if self.quality_count else None,
            "rejects_by_reason": dict(self.rejects_by_reason.most_common()),
            "rejects_by_stage": dict(self.rejects_by_stage.most_common()),
            "teachers": dict(self.teachers.most_common()),
            "teacher_grades": dict(self.teacher_grades.most_common()),
            "prompt_hashes": {k: dict(v.most_common()) for k, v in sorted(self.prompt_hashes.items())},
            "tool_versions": {k: dict(v.most_common()) for k, v in sorted(self.tool_versions.items())},
            "mmat_versions": dict(self.mmat_versions.most_common()),
        }


def collect_stats(out_dir: str | Path) -> BuildStats:
    """One streaming pass over a build's accepted samples and rejects."""
    stats = BuildStats()
    for sample in iter_accepted(out_dir):
        stats.add_sample(sample.model_dump(mode="json"))
    for reject in iter_rejects(out_dir):
        stats.add_reject(reject.model_dump(mode="json"))
    return stats
