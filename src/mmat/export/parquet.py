"""Hugging Face ``datasets`` layout: Parquet shards ``data/{split}-00000-of-00004.parquet``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from mmat.errors import MissingDependencyError
from mmat.export.conversation import ConversationExporter, Message
from mmat.schema import Sample

ROW_GROUP_ROWS = 1_000


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as error:
        raise MissingDependencyError("Parquet export (pyarrow)", "export", error) from None
    return pyarrow


def parquet_schema() -> Any:
    """The Arrow schema of an exported row."""
    pa = _pyarrow()
    return pa.schema(
        [
            ("id", pa.string()),
            ("kind", pa.string()),
            ("source", pa.string()),
            ("subset", pa.string()),
            ("split", pa.string()),
            ("license", pa.string()),
            ("non_commercial", pa.bool_()),
            ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
            ("images", pa.list_(pa.string())),
            ("quality_score", pa.float64()),
        ]
    )


class ShardedParquetWriter:
    """Streams rows into Parquet shards, a row group every ``ROW_GROUP_ROWS`` rows.

    Shards are named ``{stem}-00000-of-00000.parquet`` while written and renamed to the final
    ``-of-NNNNN`` count on :meth:`close`, the naming the ``datasets`` library recognises.
    """

    def __init__(self, directory: Path, stem: str, shard_size: int) -> None:
        self.pa = _pyarrow()
        self.schema = parquet_schema()
        self.directory = directory
        self.stem = stem
        self.shard_size = shard_size
        self.paths: list[Path] = []
        self.rows = 0
        self._writer: Any = None
        self._buffer: list[dict[str, Any]] = []
        self._in_shard = 0

    def write(self, row: dict[str, Any]) -> None:
        if self._writer is None or self._in_shard >= self.shard_size:
            self._open_next()
        self._buffer.append(row)
        self._in_shard += 1
        self.rows += 1
        if len(self._buffer) >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._buffer and self._writer is not None:
            self._writer.write_table(self.pa.Table.from_pylist(self._buffer, schema=self.schema))
            self._buffer = []

    def _open_next(self) -> None:
        self._close_current()
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.stem}-{len(self.paths):05d}.parquet.part"
        self.paths.append(path)
        self._writer = self.pa.parquet.ParquetWriter(str(path), self.schema, compression="zstd")
        self._in_shard = 0

    def _close_current(self) -> None:
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def close(self) -> None:
        self._close_current()
        total = len(self.paths)
        final = []
        for index, path in enumerate(self.paths):
            target = path.with_name(f"{self.stem}-{index:05d}-of-{total:05d}.parquet")
            if path.exists():
                path.replace(target)
            final.append(target)
        self.paths = final


class ParquetExporter(ConversationExporter):
    """Writes Parquet shards for the Hugging Face ``datasets`` library (``load_dataset("parquet", ...)``).

    Columns: ``id, kind, source, subset, split, license, non_commercial, messages (list of
    {role, content}), images (list of paths), quality_score``. Shards go to
    ``data/{split}-00000-of-00002.parquet``, the layout a dataset repository's card can point to.

    Example:
        >>> ParquetExporter(shard_size=50_000).export(samples, Path("out/hf"))
    """

    name: ClassVar[str] = "parquet"
    description: ClassVar[str] = "Hugging Face datasets Parquet shards (data/{split}-*.parquet)"

    def data_dir(self, out_dir: Path, split: str) -> Path:
        return out_dir / "data"

    def make_writer(self, out_dir: Path, split: str) -> ShardedParquetWriter:
        return ShardedParquetWriter(self.data_dir(out_dir, split), split, self.shard_size)

    def row(self, sample: Sample, messages: list[Message], images: list[str]) -> dict[str, Any]:
        return {
            "id": sample.id,
            "kind": self.kind,
            "source": sample.source,
            "subset": sample.subset,
            "split": sample.split,
            "license": sample.license,
            "non_commercial": sample.non_commercial,
            "messages": [{"role": role, "content": content} for role, content in messages],
            "images": images,
            "quality_score": sample.quality.score if sample.quality else None,
        }
