"""Throughput of the exporters and of the viewer's byte-offset index on a synthetic large build.

    .venv/bin/python benchmarks/export/bench_export_viewer.py --records 50000

Writes N accepted samples (clones of realistic example samples, ids made unique, images shared) and
N/10 rejects, then times: viewer index build, list queries, one record view, and each exporter.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

from mmat.export.example_build import example_reject, example_sample
from mmat.export.run import run_export
from mmat.store import ACCEPTED_DIR, REJECTS_DIR, shard_file
from mmat.viewer.index import Query, RecordIndex


def make_build(out: Path, records: int, shard_size: int = 10_000) -> int:
    templates = [example_sample(i, out / "source_images").model_dump(mode="json") for i in range(12)]
    size = 0
    handle = None
    for n in range(records):
        if n % shard_size == 0:
            if handle:
                handle.close()
            path = shard_file(out, ACCEPTED_DIR, n // shard_size)
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = path.open("w", encoding="utf-8")
        record = dict(templates[n % len(templates)])
        record["id"] = f"{record['source']}/bench/{n:08d}"
        line = json.dumps(record, ensure_ascii=False) + "\n"
        size += len(line)
        assert handle is not None
        handle.write(line)
    if handle:
        handle.close()
    path = shard_file(out, REJECTS_DIR, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as rejects:
        for n in range(records // 10):
            rejects.write(example_reject(n).model_dump_json() + "\n")
    return size


def timed(label: str, fn, results: dict) -> object:
    start = time.perf_counter()
    value = fn()
    results[label] = time.perf_counter() - start
    print(f"{label:<40} {results[label]:8.3f} s")
    return value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mmat-bench-export-"))
    results: dict[str, float] = {}
    try:
        size = timed("write synthetic build", lambda: make_build(work, args.records), results)
        print(f"accepted shards: {args.records} records, {size / 1e6:.1f} MB")
        index = timed("viewer index build (cold)", lambda: RecordIndex.build(work), results)
        timed("viewer index load (cached)", lambda: RecordIndex.build(work), results)
        columns = sum(
            column.buffer_info()[1] * column.itemsize
            for column in (
                index.file_no,
                index.offset,
                index.length,
                index.status,
                index.source,
                index.reason,
                index.operators,
                index.reflections,
                index.quality,
            )
        )
        print(
            f"index columns: {columns / 1e6:.2f} MB for {len(index)} records ({columns / len(index):.0f} B/record)"
        )
        timed("list page 1 (no filter)", lambda: index.query(Query(limit=50)), results)
        timed(
            "list page 1 (source+operator filter)",
            lambda: index.query(Query(source="tabmwp", operator="rag")),
            results,
        )
        timed("list last page", lambda: index.query(Query(offset=args.records - 50)), results)
        timed("text search (first page)", lambda: index.query(Query(text="bench/00000123")), results)
        timed("record view read", lambda: index.record(args.records // 2), results)
        for name, options in (
            ("swift", {}),
            ("llamafactory", {}),
            ("llava", {}),
            ("parquet", {}),
            ("mmat1m", {}),
        ):
            timed(
                f"export {name}",
                lambda n=name, o=options: run_export(work, n, dest=work / "x" / n, **o),
                results,
            )
        for name in ("swift", "llamafactory", "llava", "parquet", "mmat1m"):
            print(f"export {name:<14} {args.records / results[f'export {name}']:10.0f} samples/s")
        print(f"max RSS of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:.0f} MB")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
