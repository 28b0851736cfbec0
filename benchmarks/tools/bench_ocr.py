"""OCR cell recall against TabMWP ``table_for_pd`` on the shared tables, and time per image.

A cell (column header or non-empty value) counts as found when its whitespace-normalised text is a
substring of one rendered OCR row, so a cell split across rows or merged wrongly counts as missed.

    .venv/bin/python benchmarks/tools/bench_ocr.py [--min-side 600] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from mmat.schema import ImageRef
from mmat.tools.ocr import RapidOcrTool

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "tabmwp"


def norm(text: str) -> str:
    """Case, whitespace and thousands commas do not count (``0, 3, 6`` is drawn as ``0 3 6``)."""
    return "".join(text.lower().replace(",", "").split())


def table_cells(problem: dict) -> list[str]:
    """Every non-empty value, plus the column headers that the image draws (``Column 1`` is invented
    by ``table_for_pd`` for header-less tables and is not in the image)."""
    first_row = norm(problem["table"].split("\n")[0])
    cells = [str(c) for c in problem["table_for_pd"] if norm(str(c)) and norm(str(c)) in first_row]
    for values in problem["table_for_pd"].values():
        cells.extend(str(v) for v in values)
    return [norm(c) for c in cells if norm(c)]


def found_in(cell: str, rows: list[str]) -> bool:
    """The cell equals, or is part of, one rendered cell of one row."""
    return any(cell in norm(part) for row in rows for part in row.split(" | "))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--min-side", type=int, default=600)
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--show-misses", action="store_true")
    opts = parser.parse_args()
    problems = json.loads((DATA / "problems_dev_sample.json").read_text())
    tool = RapidOcrTool(min_side=opts.min_side)
    started = time.perf_counter()
    tool.setup()
    load_s = time.perf_counter() - started
    found = total = 0
    times = []
    per_table = []
    for index, (pid, problem) in enumerate(sorted(problems.items())):
        if opts.limit and index >= opts.limit:
            break
        ref = ImageRef(path=f"tables/{pid}.png", root=str(DATA))
        t0 = time.perf_counter()
        result = tool.run([ref])
        times.append(time.perf_counter() - t0)
        rows = result.payload["rows"]
        cells = table_cells(problem)
        hits = [found_in(c, rows) for c in cells]
        found += sum(hits)
        total += len(cells)
        per_table.append(sum(hits) / max(1, len(cells)))
        if opts.show_misses and not all(hits):
            print(pid, [c for c, h in zip(cells, hits, strict=True) if not h], "|", rows)
    print(
        json.dumps(
            {
                "tables": len(times),
                "cells": total,
                "cell_recall": round(found / max(1, total), 4),
                "tables_fully_read": sum(1 for r in per_table if r == 1.0),
                "model_load_s": round(load_s, 2),
                "s_per_image_mean": round(statistics.mean(times), 3),
                "s_per_image_median": round(statistics.median(times), 3),
                "min_side": opts.min_side,
            }
        )
    )


if __name__ == "__main__":
    main()
