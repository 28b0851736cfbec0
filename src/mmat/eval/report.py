"""The comparison table of evaluation runs (paper Tables 3-5): Markdown, JSON and a bar chart.

``collect_scores`` finds every ``score.json`` under the given output directories. Columns are
``label / mode``, where the label is the directory's name (or the model name in the run settings
when the directories share a name); rows are the benchmarks in the paper's order, then ``Avg``
(the paper's 8-benchmark average, OCRBench divided by 10 to a percentage; shown only over the
benchmarks a column has, and marked with how many those are), then the Dyn-VQA rows. A second
table gives mean latency per item and its ratio to the same label's baseline.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmat.errors import ConfigError, MissingDependencyError
from mmat.eval.benchmarks import BENCHMARKS
from mmat.eval.runner import MODES, SCORE, write_json

AVERAGE_ROW = "Avg"
_ORDER = {name: i for i, name in enumerate(BENCHMARKS)}


def collect_scores(out_dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Every ``score.json`` below ``out_dirs``, each with ``label`` added."""
    found: list[dict[str, Any]] = []
    for out_dir in out_dirs:
        root = Path(out_dir)
        if not root.is_dir():
            raise ConfigError(f"{root} is not a directory; pass the --out directory of `mmat eval` runs")
        for path in sorted(root.rglob(SCORE)):
            score = json.loads(path.read_text(encoding="utf-8"))
            score["label"] = root.resolve().name
            score["path"] = str(path)
            found.append(score)
    if not found:
        raise ConfigError(
            f"no {SCORE} under {', '.join(map(str, out_dirs))}; run `mmat eval --bench ... --out DIR` first"
        )
    labels = {s["label"] for s in found}
    if len(labels) < len(out_dirs):  # directories with the same name: tell them apart by model
        for score in found:
            model = score.get("settings", {}).get("model")
            if model:
                score["label"] = f"{score['label']}:{model}"
    return found


def _column(score: dict[str, Any]) -> str:
    return f"{score['label']} / {score['mode']}"


def _row_order(key: str) -> tuple[int, str]:
    bench = key.split("_")[0] if key.startswith("DynVQA") else key
    return (_ORDER.get(bench, len(_ORDER)), key)


def _percent_value(score: dict[str, Any]) -> float | None:
    value = score.get("headline_value")
    if value is None:
        return None
    return float(value) / 10 if score.get("unit") == "/1000" else float(value)


def build_report(scores: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The report as data: columns, rows of headline values, averages and latency."""
    mode_rank: dict[str, int] = {m: i for i, m in enumerate(MODES)}
    columns = sorted(
        {_column(s) for s in scores},
        key=lambda c: (c.rsplit(" / ", 1)[0], mode_rank.get(c.rsplit(" / ", 1)[1], 9)),
    )
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    for score in scores:
        cells.setdefault(score["run_key"], {})[_column(score)] = score
    in_avg = sorted((k for k in cells if any(s.get("in_average") for s in cells[k].values())), key=_row_order)
    others = sorted((k for k in cells if k not in in_avg), key=_row_order)
    rows: list[dict[str, Any]] = []
    for key in in_avg + others:
        row: dict[str, Any] = {"benchmark": key, "values": {}, "units": {}}
        for column, score in cells[key].items():
            row["values"][column] = score.get("headline_value")
            row["units"][column] = score.get("unit", "%")
        rows.append(row)
    average: dict[str, Any] = {}
    for column in columns:
        values = [_percent_value(cells[k][column]) for k in in_avg if column in cells[k]]
        present = [v for v in values if v is not None]
        if present:
            average[column] = {"value": round(sum(present) / len(present), 2), "count": len(present)}
    latency: dict[str, dict[str, Any]] = {}
    for column in columns:
        per_bench = {k: cells[k][column]["latency"].get("mean_s") for k in cells if column in cells[k]}
        means = [v for v in per_bench.values() if v is not None]
        latency[column] = {
            "mean_s": round(sum(means) / len(means), 4) if means else None,
            "by_bench": per_bench,
        }
    for column in columns:
        label = column.rsplit(" / ", 1)[0]
        base = latency.get(f"{label} / baseline", {}).get("by_bench", {})
        ratios = [
            latency[column]["by_bench"][k] / base[k]
            for k in latency[column]["by_bench"]
            if base.get(k) and latency[column]["by_bench"][k] is not None
        ]
        latency[column]["ratio_to_baseline"] = round(sum(ratios) / len(ratios), 2) if ratios else None
    return {
        "columns": columns,
        "rows": rows,
        "average": average,
        "average_benchmarks": in_avg,
        "latency": latency,
        "sources": sorted({s["path"] for s in scores}),
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def _short(key: str) -> str:
    """A column title: the paper's benchmark names, Dyn-VQA with its language and setting."""
    names = {"MMMU_DEV_VAL": "MMMU", "MathVista_MINI": "MathVista", "MathVision_MINI": "MathVision",
             "AI2D_TEST": "AI2D", "HallusionBench": "HallBench"}  # fmt: skip
    if key.startswith("DynVQA_"):
        return "Dyn-VQA " + " ".join(key.split("_")[1:])
    return names.get(key, key)


def render_markdown(report: dict[str, Any]) -> str:
    """The comparison table in the paper's shape (a row per model and mode), then per-benchmark latency."""
    columns = report["columns"]
    rows = report["rows"]
    in_avg = report["average_benchmarks"]
    scored = [r for r in rows if r["benchmark"] in in_avg]
    extra = [r for r in rows if r["benchmark"] not in in_avg]
    titles = [_short(r["benchmark"]) for r in scored] + (["Avg"] if in_avg else [])
    titles += [_short(r["benchmark"]) for r in extra] + ["latency (s)", "x baseline"]
    text = "## Scores\n\n| Model / mode | " + " | ".join(titles) + " |\n|---|" + "---:|" * len(titles) + "\n"
    for column in columns:
        cells = [_fmt(r["values"].get(column)) for r in scored]
        if in_avg:
            avg = report["average"].get(column)
            cells.append(
                "–"
                if not avg
                else f"{avg['value']:.1f}" + (f" ({avg['count']}/8)" if avg["count"] != 8 else "")
            )
        cells += [_fmt(r["values"].get(column)) for r in extra]
        latency = report["latency"][column]
        ratio = latency["ratio_to_baseline"]
        cells += [
            "–" if latency["mean_s"] is None else f"{latency['mean_s']:.3f}",
            "–" if ratio is None else f"{ratio:.2f}x",
        ]
        text += f"| {column} | " + " | ".join(cells) + " |\n"
    text += (
        "\nScores are percentages except OCRBench (out of 1000; it enters Avg divided by 10, as in the paper). "
        "Avg is the mean over the paper's eight benchmarks present in the row (count shown when not all 8). "
        "HallBench is the mean of aAcc, fAcc and qAcc; Dyn-VQA is F1-Recall. Latency is the mean seconds per "
        "item, averaged over benchmarks; x baseline is its ratio to the same model's baseline run.\n\n"
    )
    bench_titles = [_short(r["benchmark"]) for r in rows]
    text += "## Latency per benchmark (mean seconds per item)\n\n| Model / mode | " + " | ".join(bench_titles)
    text += " |\n|---|" + "---:|" * len(bench_titles) + "\n"
    for column in columns:
        by_bench = report["latency"][column]["by_bench"]
        values = [by_bench.get(r["benchmark"]) for r in rows]
        text += f"| {column} | " + " | ".join("–" if v is None else f"{v:.3f}" for v in values) + " |\n"
    return text


def render_chart(report: dict[str, Any], path: str | Path) -> Path:
    """A grouped bar chart of headline values (percent scale; OCRBench /10), one bar per column."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise MissingDependencyError("the report chart (matplotlib)", "eval", error) from None
    columns = report["columns"]
    rows = report["rows"]
    labels = [r["benchmark"] for r in rows] + ([AVERAGE_ROW] if report["average"] else [])
    width = 0.8 / max(1, len(columns))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(labels) + 2), 4.5))
    for offset, column in enumerate(columns):
        heights = []
        for row in rows:
            value = row["values"].get(column)
            scale = 0.1 if row["units"].get(column) == "/1000" else 1.0
            heights.append(0.0 if value is None else float(value) * scale)
        if report["average"]:
            heights.append(report["average"].get(column, {}).get("value", 0.0))
        xs = [i + offset * width - 0.4 + width / 2 for i in range(len(labels))]
        ax.bar(xs, heights, width=width, label=column)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right")
    ax.set_ylabel("score (%; OCRBench / 10)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(
    out_dirs: Sequence[str | Path], target: str | Path, *, chart: bool = True
) -> dict[str, Path]:
    """Collect the runs and write ``report.md``, ``report.json`` and ``report.png`` into ``target``."""
    report = build_report(collect_scores(out_dirs))
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    written = {"json": target / "report.json", "markdown": target / "report.md"}
    write_json(written["json"], report)
    written["markdown"].write_text(render_markdown(report), encoding="utf-8")
    if chart:
        written["chart"] = render_chart(report, target / "report.png")
    return written
