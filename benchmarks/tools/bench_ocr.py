"""OCR cell recall against TabMWP ``table_for_pd`` on the shared tables, and time per image.

A cell (column header or non-empty value) counts as found when its whitespace-normalised text is a
substring of one rendered OCR row, so a cell split across rows or merged wrongly counts as missed.

    .venv/bin/python benchmarks/tools/bench_ocr.py [--min-side 600 0] [--limit N] [--show-misses]
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
    parser.add_argument(
        "--min-side", type=int, nargs="+", default=[600], help="settings to compare, interleaved per image"
    )
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--show-misses", action="store_true")
    opts = parser.parse_args()
    problems = json.loads((DATA / "problems_dev_sample.json").read_text())
    tools = {side: RapidOcrTool(min_side=side) for side in opts.min_side}
    started = time.perf_counter()
    for tool in tools.values():
        tool.setup()
    load_s = time.perf_counter() - started
    found = dict.fromkeys(tools, 0)
    total = 0
    times: dict[int, list[float]] = {side: [] for side in tools}
    full: dict[int, int] = dict.fromkeys(tools, 0)
    for index, (pid, problem) in enumerate(sorted(problems.items())):
        if opts.limit and index >= opts.limit:
            break
        ref = ImageRef(path=f"tables/{pid}.png", root=str(DATA))
        cells = table_cells(problem)
        total += len(cells)
        for side, tool in tools.items():  # interleaved, so machine load hits every setting alike
            t0 = time.perf_counter()
            result = tool.run([ref])
            times[side].append(time.perf_counter() - t0)
            hits = [found_in(c, result.payload["rows"]) for c in cells]
            found[side] += sum(hits)
            full[side] += all(hits)
            if opts.show_misses and not all(hits):
                print(
                    side,
                    pid,
                    [c for c, h in zip(cells, hits, strict=True) if not h],
                    "|",
                    result.payload["rows"],
                )
    for side in tools:
        print(
            json.dumps(
                {
                    "min_side": side,
                    "tables": len(times[side]),
                    "cells": total,
                    "cell_recall": round(found[side] / max(1, total), 4),
                    "tables_fully_read": full[side],
                    "model_load_s": round(load_s / len(tools), 2),
                    "s_per_image_mean": round(statistics.mean(times[side]), 3),
                    "s_per_image_median": round(statistics.median(times[side]), 3),
                }
            )
        )


if __name__ == "__main__":
    main()
