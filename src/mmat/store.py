"""The layout of a build's output directory, and streaming readers for it.

The engine writes, everything else (exporters, the viewer, reports) only reads::

    OUT_DIR/
      accepted/shard-00000.jsonl   one Sample JSON per line (trajectory, orr, quality filled)
      rejects/shard-00000.jsonl    one Reject JSON per line
      stats.json                   counters of the run (kept, rejected by reason, calls, tokens, cost)
      report.json, report.md       the statistics report (paper Table 1 shape)
      exports/<exporter>/...       what the exporters wrote

Readers stream line by line, so a million-record output is never held in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mmat.errors import RecordError
from mmat.schema import Reject, Sample

ACCEPTED_DIR = "accepted"
REJECTS_DIR = "rejects"
STATS_FILE = "stats.json"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
EXPORTS_DIR = "exports"


def shard_file(out_dir: Path, kind: str, shard: int) -> Path:
    """The file of one shard: ``kind`` is ``accepted`` or ``rejects``."""
    return out_dir / kind / f"shard-{shard:05d}.jsonl"


def _files(out_dir: Path, kind: str) -> list[Path]:
    return sorted((Path(out_dir) / kind).glob("shard-*.jsonl"))


def iter_accepted(out_dir: str | Path) -> Iterator[Sample]:
    """Stream the accepted samples of a build, shard by shard."""
    for path in _files(Path(out_dir), ACCEPTED_DIR):
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        yield Sample.model_validate_json(line)
                    except ValueError as error:
                        raise RecordError(
                            "bad_output_record",
                            f"cannot read an accepted sample ({error}); was the output written by another mmat version?",
                            location=f"{path}:{number}",
                        ) from None


def iter_rejects(out_dir: str | Path) -> Iterator[Reject]:
    """Stream the rejects of a build, shard by shard."""
    for path in _files(Path(out_dir), REJECTS_DIR):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield Reject.model_validate_json(line)
