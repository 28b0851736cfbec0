"""The statistics report of a build, shaped like the paper's Table 1, as JSON and Markdown.

It reads only the output store (accepted and rejected records, the engine's ``stats.json``) and the
input tally the build kept while streaming its sources (:class:`InputTally`), so it can be rebuilt at
any time: ``mmat build`` writes ``OUT/report.json`` and ``OUT/report.md`` at the end of every run.

Counts are per QA where the paper counts per QA: every input QA is either accepted (a segment of an
accepted dialogue) or rejected (a whole-dialogue reject, or a QA dropped from a kept dialogue and
written to the rejects file with their ``qa_id``); ``check.adds_up`` says whether they add up.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmat import store
from mmat.schema import Reject, Sample, TurnKind
from mmat.wire import canonical_operator

FOUNDATION = "foundation"
OPERATOR_FAMILIES = ("image_caption", "label_bbox", "ocr", "face_detection", "rag")
TEACHER_KEYS = (
    "teacher",
    "teacher_grade",
    "calls",
    "requests",
    "cache_hits",
    "tokens",
    "cost_usd",
    "calls_by_purpose",
)


@dataclass
class InputTally:
    """What the sources fed the engine: dialogues and QAs per source, QAs per dialogue id."""

    dialogues: Counter[str] = field(default_factory=Counter)
    qas: Counter[str] = field(default_factory=Counter)
    qas_by_id: dict[str, int] = field(default_factory=dict)
    source_rejects: Counter[str] = field(default_factory=Counter)

    def count(self, records: Iterable[Sample | Reject]) -> Iterator[Sample | Reject]:
        """Pass records through, counting them."""
        for record in records:
            if isinstance(record, Sample):
                self.dialogues[record.source] += 1
                self.qas[record.source] += len(record.qas)
                self.qas_by_id[record.id] = len(record.qas)
            else:
                self.source_rejects[record.reason] += 1
            yield record


def _step_bucket(steps: int) -> str:
    return "5+" if steps >= 5 else str(steps)


def build_report(
    out_dir: str | Path, tally: InputTally, *, stats: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Compute the report from the store under ``out_dir`` and the input tally."""
    out = Path(out_dir)
    if stats is None and (out / store.STATS_FILE).is_file():
        stats = json.loads((out / store.STATS_FILE).read_text(encoding="utf-8"))
    per_source: dict[str, Counter[str]] = defaultdict(Counter)
    steps: Counter[str] = Counter()
    operators: Counter[str] = Counter()
    operators_by_source: dict[str, Counter[str]] = defaultdict(Counter)
    reflections: Counter[str] = Counter()
    rejected_by_reason: Counter[str] = Counter()
    rejected_by_stage: Counter[str] = Counter()
    scores: list[float] = []
    turns = 0
    for sample in store.iter_accepted(out):
        counts = per_source[sample.source]
        counts["dialogues"] += 1
        if sample.quality is not None:
            scores.append(sample.quality.score)
        if sample.trajectory is None:
            counts["qas"] += len(sample.qas)
            continue
        for segment in sample.trajectory.segments:
            counts["qas"] += 1
            turns += len(segment.turns)
            n_steps = 0
            for turn in segment.turns:
                if turn.kind is TurnKind.STEP and turn.step is not None:
                    n_steps += 1
                    for name in turn.step.operators:
                        operators[canonical_operator(name)] += 1
                        operators_by_source[sample.source][canonical_operator(name)] += 1
                    if turn.step.rag_query is not None:
                        operators["rag"] += 1
                        operators_by_source[sample.source]["rag"] += 1
            steps[_step_bucket(n_steps)] += 1
            counts["steps"] += n_steps
            for reflection in segment.reflections:
                reflections[reflection.kind.value] += 1
    source_reject_records = 0
    for reject in store.iter_rejects(out):
        if reject.qa_id is not None:  # one QA of a dialogue that was kept
            rejected_by_reason[reject.reason] += 1
            rejected_by_stage[reject.stage] += 1
            per_source[reject.source or "unknown"]["rejected_qas"] += 1
            continue
        n_qas = tally.qas_by_id.get(reject.id or "")
        if n_qas is None:
            source_reject_records += 1
            continue
        rejected_by_reason[reject.reason] += n_qas
        rejected_by_stage[reject.stage] += n_qas
        per_source[reject.source or "unknown"]["rejected_qas"] += n_qas
        per_source[reject.source or "unknown"]["rejected_dialogues"] += 1
    input_qas = sum(tally.qas.values())
    accepted_qas = sum(c["qas"] for c in per_source.values())
    rejected_qas = sum(rejected_by_reason.values())
    sources = sorted(set(tally.dialogues) | set(per_source))
    stats = stats or {}
    teacher = {key: stats[key] for key in TEACHER_KEYS if key in stats}
    report: dict[str, Any] = {
        "sources": {
            name: {
                "input_dialogues": tally.dialogues[name],
                "input_qas": tally.qas[name],
                "accepted_dialogues": per_source[name]["dialogues"],
                "accepted_qas": per_source[name]["qas"],
                "rejected_qas": per_source[name]["rejected_qas"],
                "rationale_steps": per_source[name]["steps"],
                "operator_calls": {f: operators_by_source[name][f] for f in OPERATOR_FAMILIES},
            }
            for name in sources
        },
        "totals": {
            "input_dialogues": sum(tally.dialogues.values()),
            "input_qas": input_qas,
            "accepted_dialogues": sum(c["dialogues"] for c in per_source.values()),
            "accepted_qas": accepted_qas,
            "rejected_qas": rejected_qas,
            "dialogue_turns": turns,
            "source_rejects": sum(tally.source_rejects.values()) or source_reject_records,
        },
        "steps_per_qa": {bucket: steps[bucket] for bucket in sorted(steps, key=lambda b: (len(b), b))},
        "operator_calls": {f: operators[f] for f in OPERATOR_FAMILIES}
        | {k: v for k, v in operators.items() if k not in OPERATOR_FAMILIES},
        "reflections": {
            "general": reflections["general"],
            "math": reflections["math"],
            "gate": reflections["gate"],
        },
        "rejects_by_reason": dict(rejected_by_reason.most_common()),
        "rejects_by_stage": dict(rejected_by_stage.most_common()),
        "quality": {
            "scored": len(scores),
            "mean": round(sum(scores) / len(scores), 4) if scores else None,
            "high_share": round(sum(s >= 0.8 for s in scores) / len(scores), 4) if scores else None,
        },
        "teacher": teacher,
        "engine": {k: v for k, v in stats.items() if k not in TEACHER_KEYS},
        "check": {
            "input_qas": input_qas,
            "accepted_plus_rejected": accepted_qas + rejected_qas,
            "adds_up": accepted_qas + rejected_qas == input_qas,
        },
    }
    return report


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables (the paper's Table 1 layout, then the run's details)."""
    lines = ["# mmat build report", "", "## Data (paper Table 1 layout)", ""]
    lines.append(
        "| source | dialogues in | QAs in | dialogues kept | QAs kept | QAs rejected | steps | "
        + " | ".join(OPERATOR_FAMILIES)
        + " |"
    )
    lines.append("|---" * (7 + len(OPERATOR_FAMILIES)) + "|")
    for name, row in report["sources"].items():
        ops = " | ".join(str(row["operator_calls"][f]) for f in OPERATOR_FAMILIES)
        lines.append(
            f"| {name} | {row['input_dialogues']} | {row['input_qas']} | {row['accepted_dialogues']} | "
            f"{row['accepted_qas']} | {row['rejected_qas']} | {row['rationale_steps']} | {ops} |"
        )
    totals = report["totals"]
    total_ops = " | ".join(str(report["operator_calls"].get(f, 0)) for f in OPERATOR_FAMILIES)
    lines.append(
        f"| **total** | {totals['input_dialogues']} | {totals['input_qas']} | {totals['accepted_dialogues']} | "
        f"{totals['accepted_qas']} | {totals['rejected_qas']} | "
        f"{sum(r['rationale_steps'] for r in report['sources'].values())} | {total_ops} |"
    )
    lines += ["", f"Dialogue turns in accepted data: {totals['dialogue_turns']}.", ""]
    lines += ["## Rationale steps per QA", "", "| steps | QAs |", "|---|---|"]
    lines += [f"| {bucket} | {count} |" for bucket, count in report["steps_per_qa"].items()]
    refl = report["reflections"]
    lines += [
        "",
        "## Reflection",
        "",
        "| general | math | leak gate |",
        "|---|---|---|",
        f"| {refl['general']} | {refl['math']} | {refl['gate']} |",
    ]
    lines += ["", "## Rejected QAs by reason", "", "| reason | QAs |", "|---|---|"]
    lines += [f"| {reason} | {count} |" for reason, count in report["rejects_by_reason"].items()] or [
        "| - | 0 |"
    ]
    quality = report["quality"]
    if quality["scored"]:
        lines += [
            "",
            f"Quality: {quality['scored']} scored, mean {quality['mean']}, share >= 0.8: {quality['high_share']}.",
        ]
    teacher = report["teacher"]
    if teacher:
        lines += ["", "## Teacher", "", "| key | value |", "|---|---|"]
        lines += [
            f"| {key} | {json.dumps(value, sort_keys=True) if isinstance(value, dict) else value} |"
            for key, value in teacher.items()
        ]
    check = report["check"]
    lines += [
        "",
        f"Check: accepted + rejected QAs = {check['accepted_plus_rejected']}, input QAs = {check['input_qas']}"
        + (
            " (adds up)."
            if check["adds_up"]
            else " (DOES NOT ADD UP: some samples are still pending; rerun to resume)."
        ),
        "",
    ]
    return "\n".join(lines)


def write_report(out_dir: str | Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` under ``out_dir``."""
    out = Path(out_dir)
    json_path = out / store.REPORT_JSON
    md_path = out / store.REPORT_MD
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(report), encoding="utf-8")
    return json_path, md_path
