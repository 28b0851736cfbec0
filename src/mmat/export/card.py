"""The dataset card: ``README.md`` of a dataset repository built from a build output directory.

It says what was built and how (teachers, prompt hashes, tool backends and versions, from each
trajectory's provenance), shows the statistics report (``report.md``/``report.json`` when the build
wrote one, else numbers computed from the store in one streaming pass), and lists the licence of
every source, with a prominent warning when any record is non-commercial (TabMWP is CC BY-NC-SA 4.0).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmat.export.stats import BuildStats, collect_stats
from mmat.store import EXPORTS_DIR, REPORT_JSON, REPORT_MD

CARD_FILE = "README.md"
_HF_LICENCES = {
    "apache-2.0": "apache-2.0",
    "apache 2.0": "apache-2.0",
    "cc-by-4.0": "cc-by-4.0",
    "cc by 4.0": "cc-by-4.0",
    "cc-by-nc-sa-4.0": "cc-by-nc-sa-4.0",
    "cc by-nc-sa 4.0": "cc-by-nc-sa-4.0",
    "cc by nc sa 4.0": "cc-by-nc-sa-4.0",
    "mit": "mit",
}
NON_COMMERCIAL_HEADING = "NON-COMMERCIAL DATA INSIDE"
PLUMBING_GRADE = "plumbing"


def _demote_headings(markdown: str, levels: int = 2) -> str:
    """Push an embedded report's headings under the card's ``## Statistics`` section."""
    out = []
    fenced = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("#"):
            line = "#" * levels + line
        out.append(line)
    return "\n".join(out)


def hf_licence_id(licence: str) -> str | None:
    """The Hugging Face licence identifier of a licence name, or None when it has none."""
    return _HF_LICENCES.get(licence.strip().lower())


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def _front_matter(stats: BuildStats, title: str, parquet_dir: Path | None, card_dir: Path) -> list[str]:
    licences = sorted({e.license for entries in stats.licences.values() for e in entries.values()})
    ids = {hf_licence_id(name) for name in licences}
    lines = ["---"]
    if len(ids) == 1 and None not in ids:
        lines.append(f"license: {next(iter(ids))}")
    else:
        lines += ["license: other", "license_name: mixed-per-source"]
    lines += [
        f"pretty_name: {json.dumps(title)}",
        "task_categories:",
        "- visual-question-answering",
        "- image-text-to-text",
        "language:",
        "- en",
        "tags:",
        "- multimodal",
        "- agent-tuning",
        "- tool-use",
        "- chain-of-thought",
        "- mmat",
    ]
    if stats.non_commercial_sources:
        lines.append("- non-commercial")
    if parquet_dir is not None:
        splits = sorted({p.name.split("-")[0] for p in parquet_dir.glob("*.parquet")})
        relative = (
            parquet_dir.relative_to(card_dir).as_posix()
            if parquet_dir.is_relative_to(card_dir)
            else str(parquet_dir)
        )
        lines += ["configs:", "- config_name: default", "  data_files:"]
        lines += [f"  - split: {split}\n    path: {relative}/{split}-*.parquet" for split in splits]
    lines.append("---")
    return lines


def _non_commercial_warning(stats: BuildStats) -> list[str]:
    nc_samples = sum(
        e.samples for entries in stats.licences.values() for e in entries.values() if e.non_commercial
    )
    rows = [
        f"{source} ({', '.join(e.license for e in stats.licences[source].values() if e.non_commercial)})"
        for source in stats.non_commercial_sources
    ]
    return [
        "> [!WARNING]",
        f"> ## ⚠️ {NON_COMMERCIAL_HEADING}: NOT FOR COMMERCIAL USE",
        ">",
        f"> **{nc_samples} of {stats.accepted} samples come from sources licensed for non-commercial use only: "
        f"{'; '.join(rows)}.** As long as they are included, this dataset and models trained on it must not be "
        "used commercially. Each row carries `license` and `non_commercial`; drop the rows with "
        "`non_commercial == true` (or rebuild without those sources) for commercial use.",
        "",
    ]


def _provenance(stats: BuildStats) -> list[str]:
    lines = ["## How it was built", ""]
    lines += [
        "Built with mmat following the MMAT-1M data engine (arXiv 2507.21924): "
        "Foundation -> Rationale (teacher reasoning with operators and RAG) -> Reflection (anti-cheating "
        "and math step-skipping repairs) -> Integration (one-turn ORR form), then a judge's quality score.",
        "",
        "### Teacher",
        "",
    ]
    if stats.teachers:
        lines += _table(["teacher / model", "samples"], [[k, v] for k, v in stats.teachers.most_common()])
        if stats.teacher_grades:
            grades = ", ".join(f"{grade} ({n})" for grade, n in stats.teacher_grades.most_common())
            lines += ["", f"Teacher grade: {grades}."]
        if stats.teacher_grades.get(PLUMBING_GRADE):
            lines += [
                "",
                f"> [!CAUTION]\n> {stats.teacher_grades[PLUMBING_GRADE]} sample(s) were written by a plumbing-grade "
                "teacher (rule-based, for testing the pipeline): their rationales are not training data.",
            ]
    else:
        lines.append("No teacher was recorded in the provenance of these samples.")
    lines += ["", "### Prompt hashes", ""]
    if stats.prompt_hashes:
        rows = [
            [name, digest, n]
            for name, counts in sorted(stats.prompt_hashes.items())
            for digest, n in counts.most_common()
        ]
        lines += _table(["prompt", "hash", "samples"], rows)
    else:
        lines.append("No prompt hashes were recorded.")
    lines += ["", "### Operator backends and versions", ""]
    if stats.tool_versions:
        rows = [
            [tool, version, n]
            for tool, counts in sorted(stats.tool_versions.items())
            for version, n in counts.most_common()
        ]
        lines += _table(["operator", "backend / version", "samples"], rows)
    else:
        lines.append("No operator versions were recorded.")
    if stats.mmat_versions:
        lines += [
            "",
            "mmat version(s): " + ", ".join(f"{v} ({n})" for v, n in stats.mmat_versions.most_common()),
        ]
    return [*lines, ""]


def _computed_statistics(stats: BuildStats) -> list[str]:
    data = stats.to_dict()
    lines = [
        f"- accepted samples (dialogues): **{stats.accepted}**, QA pairs: **{stats.qas}**, rejected: **{stats.rejected}**",
        f"- samples with a reflection: {stats.reflection_samples} ({data['reflection_rate']:.1%})"
        + (
            f"; by kind: {', '.join(f'{k} {v}' for k, v in stats.reflections_by_kind.most_common())}"
            if stats.reflections_by_kind
            else ""
        ),
    ]
    if data["quality_mean"] is not None:
        lines.append(f"- mean quality score: {data['quality_mean']:.3f}")
    lines += ["", "**Samples per source**", ""]
    lines += _table(
        ["source", "accepted", "rejected"],
        [[s, n, stats.rejects_by_source.get(s, 0)] for s, n in stats.by_source.most_common()],
    )
    lines += ["", "**Operator calls**", ""]
    lines += _table(
        ["operator", "calls", "samples using it"],
        [[k, v, stats.samples_using[k]] for k, v in stats.operator_calls.most_common()],
    )
    lines += ["", "**Reasoning steps per QA**", ""]
    lines += _table(["steps", "QA pairs"], [[k, v] for k, v in data["steps_histogram"].items()])
    if stats.quality_count:
        lines += ["", "**Quality score distribution**", ""]
        lines += _table(
            ["score", "samples"],
            [[f"{i / 10:.1f}-{(i + 1) / 10:.1f}", n] for i, n in enumerate(stats.quality_bins)],
        )
    if stats.rejected:
        lines += ["", "**Rejects by reason**", ""]
        lines += _table(["reason", "records"], [[k, v] for k, v in stats.rejects_by_reason.most_common()])
    return lines


def _report_json_section(report: Any) -> list[str]:
    if not isinstance(report, dict):
        return ["```json", json.dumps(report, indent=2, ensure_ascii=False), "```"]
    scalars = [[k, v] for k, v in report.items() if not isinstance(v, (dict, list))]
    lines = _table(["statistic", "value"], scalars) if scalars else []
    for key, value in report.items():
        if isinstance(value, dict) and all(not isinstance(v, (dict, list)) for v in value.values()):
            lines += ["", f"**{key}**", "", *_table(["", "value"], [[k, v] for k, v in value.items()])]
        elif isinstance(value, (dict, list)):
            lines += ["", f"**{key}**", "", "```json", json.dumps(value, indent=2, ensure_ascii=False), "```"]
    return lines


def render_card(out_dir: str | Path, *, title: str | None = None, card_dir: str | Path | None = None) -> str:
    """Render the dataset card of a build output directory (streams the store once)."""
    build = Path(out_dir)
    stats = collect_stats(build)
    title = title or f"MMAT-style multimodal agent-tuning data ({build.resolve().name})"
    where = Path(card_dir) if card_dir is not None else build
    parquet_dir = (build / EXPORTS_DIR / "parquet" / "data").resolve()
    lines = _front_matter(stats, title, parquet_dir if parquet_dir.is_dir() else None, where.resolve())
    lines += ["", f"# {title}", ""]
    if stats.non_commercial_sources:
        lines += _non_commercial_warning(stats)
    lines += [
        "Multimodal agent-tuning data in the MMAT-1M format: each dialogue is an image-question sample with "
        "a multi-turn **RR** trajectory (Rationale and Reflection: `<THOUGHT>`/`<OPERATOR>`/`<RAG>`/`<SIGNAL>` "
        "steps, operator results returned as user turns, reflection repairs) and a one-turn **ORR** form "
        "(operator outputs given up front, `<THOUGHT>...</THOUGHT><ANSWER>The answer is: ...</ANSWER>`).",
        "",
        f"**{stats.accepted} dialogues, {stats.qas} QA pairs** from {len(stats.by_source)} source(s).",
        "",
    ]
    lines += _provenance(stats)
    lines += ["## Statistics", ""]
    report_md, report_json = build / REPORT_MD, build / REPORT_JSON
    if report_md.is_file():
        lines += [
            "From the build's statistics report (`report.md`):",
            "",
            _demote_headings(report_md.read_text(encoding="utf-8").strip()),
            "",
        ]
        lines += ["### Counts from the stored records", ""]
        lines += _computed_statistics(stats)
    elif report_json.is_file():
        lines += ["From the build's statistics report (`report.json`):", ""]
        lines += _report_json_section(json.loads(report_json.read_text(encoding="utf-8")))
        lines += ["", "### Counts from the stored records", ""]
        lines += _computed_statistics(stats)
    else:
        lines += ["Computed from the stored records (the build wrote no `report.json`):", ""]
        lines += _computed_statistics(stats)
    lines += ["", "## Licences", ""]
    lines.append(
        "Every row keeps the licence of its source (`license`, `non_commercial`). The generated reasoning "
        "inherits the terms of the source it was made from."
    )
    lines.append("")
    rows = [
        [source, entry.license, entry.samples, "**NO (non-commercial)**" if entry.non_commercial else "yes"]
        for source, entries in sorted(stats.licences.items())
        for entry in entries.values()
    ]
    lines += _table(["source", "licence", "samples", "commercial use"], rows)
    exports_dir = build / EXPORTS_DIR
    if exports_dir.is_dir():
        present = sorted(p.name for p in exports_dir.iterdir() if p.is_dir())
        if present:
            lines += ["", "## Files", ""]
            lines += [
                f"- `{EXPORTS_DIR}/{name}/`: written by `mmat export OUT_DIR --format {name}`"
                for name in present
            ]
    lines += [
        "",
        "## Citation",
        "",
        "The data engine follows *MMAT-1M: A Large Reasoning Dataset for Multimodal Agent Tuning* "
        "(arXiv:2507.21924). Cite it and every source dataset you use.",
        "",
    ]
    return "\n".join(lines)


def write_card(out_dir: str | Path, path: str | Path | None = None, *, title: str | None = None) -> Path:
    """Write the card to ``path`` (default ``OUT_DIR/README.md``) and return the path."""
    target = Path(path) if path is not None else Path(out_dir) / CARD_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    text = render_card(out_dir, title=title, card_dir=target.parent)
    target.write_text(text, encoding="utf-8")
    return target
