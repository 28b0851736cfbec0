"""Stream N synthetic TabMWP-style problems through load + template + write; report records/s and peak RSS.

Usage:
    python benchmarks/foundation/bench_foundation.py --records 1000000 [--workdir DIR] [--keep]

The synthetic ``problems_train.json`` is one JSON object keyed by problem id, like the real TabMWP
files (all question and answer types, tables, choices, units). It is generated in a child process so
the measured process starts clean; the measured process runs ``mmat.sources.load`` (streaming parse,
validation, templating) and ``write_records`` (JSON Lines out) and reports ``ru_maxrss``.
Images are not created (a million table PNGs would measure the file system), so the run uses
``check_images: none``; the per-record existence check the default ``exists`` mode adds is one
``os.path.isfile`` call, measured separately with ``--stat-cost``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEMPLATES = [
    ("free_text", "integer_number", None, None),
    ("free_text", "decimal_number", None, "$"),
    ("multi_choice", "extractive_text", ["Monday", "Tuesday", "Wednesday", "Thursday"], None),
    ("multi_choice", "boolean_text", ["yes", "no"], None),
    ("multi_choice", "other_text", ["linear", "nonlinear"], None),
]


def generate(path: Path, records: int, seed: int = 0) -> None:
    """Write the synthetic problems file member by member (never all in memory)."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        out.write("{\n")
        for pid in range(1, records + 1):
            ques_type, ans_type, choices, unit = TEMPLATES[pid % len(TEMPLATES)]
            a, b = rng.randint(1, 99), rng.randint(1, 99)
            if choices:
                answer = choices[pid % len(choices)]
            elif ans_type == "decimal_number":
                answer = f"{a * 1.25:.2f}"
            else:
                answer = str(a + b)
            problem = {
                "question": f"Look at the table. How many items did store {pid} sell on day {a}? Use the numbers shown.",
                "choices": choices,
                "answer": answer,
                "unit": unit,
                "table_title": f"Sales {pid}",
                "table": f"Day | Items\nMonday | {a}\nTuesday | {b}\nWednesday | {a + b}",
                "table_for_pd": {
                    "Day": ["Monday", "Tuesday", "Wednesday"],
                    "Items": [str(a), str(b), str(a + b)],
                },
                "row_num": 4,
                "column_num": 2,
                "solution": f"Add the numbers: {a} + {b} = {a + b}.",
                "ques_type": ques_type,
                "ans_type": ans_type,
                "grade": 1 + pid % 8,
                "split": "train",
            }
            out.write(("" if pid == 1 else ",\n") + json.dumps(str(pid)) + ": " + json.dumps(problem))
        out.write("\n}\n")


def measure(root: Path, out: Path, check: str) -> dict[str, float]:
    from mmat.config import SourceConfig
    from mmat.sources import load
    from mmat.sources.run import write_records

    config = SourceConfig(name="tabmwp", root=str(root), options={"check_images": check})
    started = time.perf_counter()
    summary = write_records(load(config), out, source="tabmwp")
    elapsed = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_kb = usage.ru_maxrss
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "records": summary.kept + summary.rejected,
        "kept": summary.kept,
        "rejected": summary.rejected,
        "seconds": round(elapsed, 2),
        "records_per_s": round((summary.kept + summary.rejected) / elapsed),
        "cpu_seconds": round(cpu, 2),
        "records_per_cpu_s": round((summary.kept + summary.rejected) / cpu),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "input_mb": round((root / "problems_train.json").stat().st_size / 2**20, 1),
        "output_mb": round(out.stat().st_size / 2**20, 1),
    }


def compare_parsers(path: Path) -> dict[str, float]:
    """Members per second of mmat's streaming reader vs ijson (C backend), parse only."""
    from mmat.sources.streaming import iter_json_items

    rates: dict[str, float] = {}
    started = time.perf_counter()
    count = sum(1 for _ in iter_json_items(path))
    rates["mmat_streaming_reader"] = round(count / (time.perf_counter() - started))
    try:
        import ijson
    except ImportError:
        return rates
    with path.open("rb") as handle:
        started = time.perf_counter()
        count = sum(1 for _ in ijson.kvitems(handle, ""))
        rates[f"ijson_{ijson.backend}"] = round(count / (time.perf_counter() - started))
    return rates


def stat_cost(root: Path, calls: int = 200_000) -> float:
    """Microseconds per ``os.path.isfile`` on a table image path (the ``exists`` check)."""
    (root / "tables").mkdir(exist_ok=True)
    (root / "tables" / "1.png").write_bytes(b"x")
    started = time.perf_counter()
    for i in range(calls):
        os.path.isfile(os.path.join(str(root), f"tables/{1 + i % 2}.png"))
    return round((time.perf_counter() - started) / calls * 1e6, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--compare-parsers", action="store_true", help="also time ijson vs mmat's reader")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # child mode
    parser.add_argument("--check", default="none", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.measure / "out.jsonl", args.check)))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mmat-bench-foundation-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        generate(workdir / "problems_train.json", args.records)
        print(f"generated {args.records} problems in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        child = subprocess.run(
            [sys.executable, __file__, "--measure", str(workdir), "--check", "none"],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(child.stdout)
        result["exists_check_us_per_record"] = stat_cost(workdir)
        if args.compare_parsers:
            result["parse_only_members_per_s"] = compare_parsers(workdir / "problems_train.json")
        result["load_average_after"] = round(os.getloadavg()[0], 2)
        result["machine"] = f"{os.cpu_count()} cores, shared with other work while measuring"
        print(json.dumps(result, indent=2))
    finally:
        if not args.keep:
            (workdir / "tables" / "1.png").unlink(missing_ok=True)
            for name in ("problems_train.json", "out.jsonl", "out.rejects.jsonl", "out.stats.json"):
                (workdir / name).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
