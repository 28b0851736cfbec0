"""What the chat-format exporters share: messages of a sample, ``<image>`` placeholders, sharded files.

Every training format below is a list of ``(role, content)`` messages plus an ordered list of images.
:func:`sample_messages` gives the RR (multi-turn) or ORR (one-turn) messages of a sample, operator
observations staying user turns exactly as in the MMAT-1M data; :func:`place_image_tokens` makes the
number of ``<image>`` placeholders equal the number of images (adding them to the first user turn when
the record has none, refusing a record whose count differs); :class:`ShardedJsonlWriter` streams rows
into ``{split}-00000.jsonl`` files of at most ``shard_size`` rows.
"""

from __future__ import annotations

import json
import logging
import os
from abc import abstractmethod
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, ClassVar, Literal, Protocol

from mmat.errors import ConfigError, MmatError, RecordError
from mmat.export.base import Exporter
from mmat.export.image_paths import IMAGE_MODES, ImageMode, ImagePlacer
from mmat.schema import Sample
from mmat.wire import render_rr_messages

Kind = Literal["rr", "orr"]
KINDS: tuple[str, ...] = ("rr", "orr")
IMAGE_TOKEN = "<image>"
DEFAULT_SHARD_SIZE = 10_000
SPLITS = {
    "train": "train",
    "val": "validation",
    "validation": "validation",
    "dev": "validation",
    "test": "test",
}

Message = tuple[str, str]

logger = logging.getLogger(__name__)


class ImagePlaceholderError(MmatError):
    """The ``<image>`` placeholders of a sample do not match its images."""


def sample_messages(sample: Sample, kind: Kind) -> list[Message]:
    """The ``(role, content)`` messages of ``sample``: its RR trajectory or its ORR form, system first.

    Raises:
        RecordError: the sample lacks that form (reason ``no_trajectory`` / ``no_orr``).
    """
    if kind == "rr":
        if sample.trajectory is None:
            raise RecordError(
                "no_trajectory",
                "sample has no RR trajectory; export it with kind='orr' or rebuild it with the Rationale stage",
                record_id=sample.id,
            )
        return render_rr_messages(sample.trajectory)
    if sample.orr is None:
        raise RecordError(
            "no_orr",
            "sample has no ORR form; enable the Integration stage or export with kind='rr'",
            record_id=sample.id,
        )
    messages: list[Message] = [("system", sample.orr.system)] if sample.orr.system else []
    for segment in sample.orr.segments:
        messages += [("user", segment.user), ("assistant", segment.assistant)]
    return messages


def count_image_tokens(messages: Iterable[Message]) -> int:
    """How many ``<image>`` placeholders the messages hold."""
    return sum(content.count(IMAGE_TOKEN) for _, content in messages)


def place_image_tokens(messages: list[Message], n_images: int, *, sample_id: str) -> list[Message]:
    """Return messages whose ``<image>`` placeholders number exactly ``n_images``, in image order.

    A record without placeholders gets ``<image>\\n`` per image at the start of its first user turn
    (the order of the placeholders is the order of the image list). A record that has some keeps
    them; a count that differs from the number of images is an error, never silently repaired.

    Raises:
        ImagePlaceholderError: the counts differ, or a placeholder sits in the system prompt.
    """
    for role, content in messages:
        if role == "system" and IMAGE_TOKEN in content:
            raise ImagePlaceholderError(
                f"sample {sample_id}: the system prompt holds an {IMAGE_TOKEN} placeholder; "
                "placeholders belong in user turns. Fix: remove it from the system prompt"
            )
    found = count_image_tokens(messages)
    if found == n_images:
        return messages
    if found == 0:
        first_user = next((i for i, (role, _) in enumerate(messages) if role == "user"), None)
        if first_user is None:
            raise ImagePlaceholderError(f"sample {sample_id}: no user turn to hold the image placeholders")
        out = list(messages)
        role, content = out[first_user]
        out[first_user] = (role, f"{IMAGE_TOKEN}\n" * n_images + content)
        return out
    raise ImagePlaceholderError(
        f"sample {sample_id}: {found} {IMAGE_TOKEN} placeholder(s) in the messages but {n_images} image(s); "
        f"each image needs exactly one {IMAGE_TOKEN}, in order. Fix: correct the question turn of the record "
        "(or remove every placeholder and let the exporter place them)"
    )


def check_image_tokens(messages: Iterable[Message], images: list[Any], *, sample_id: str) -> None:
    """Raise :class:`ImagePlaceholderError` unless the placeholders number the images exactly."""
    found = count_image_tokens(messages)
    if found != len(images):
        raise ImagePlaceholderError(
            f"sample {sample_id}: {found} {IMAGE_TOKEN} placeholder(s) but {len(images)} image(s) in the row"
        )


def split_of(sample: Sample) -> str:
    """The export split of a sample: ``train``, ``validation`` or ``test`` (unknown splits train)."""
    return SPLITS.get((sample.split or "train").lower(), "train")


class RowWriter(Protocol):
    """Streams rows into shard files."""

    paths: list[Path]
    rows: int

    def write(self, row: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class ShardedJsonlWriter:
    """Streams JSON rows into ``dir/{stem}-00000.jsonl``, ``-00001``... of at most ``shard_size`` rows."""

    def __init__(self, directory: Path, stem: str, shard_size: int = DEFAULT_SHARD_SIZE) -> None:
        if shard_size < 1:
            raise ConfigError(f"shard_size must be at least 1, got {shard_size}")
        self.directory = directory
        self.stem = stem
        self.shard_size = shard_size
        self.paths: list[Path] = []
        self.rows = 0
        self._handle: IO[str] | None = None
        self._in_shard = 0

    def write(self, row: dict[str, Any]) -> None:
        if self._handle is None or self._in_shard >= self.shard_size:
            self._open_next()
        assert self._handle is not None
        self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._in_shard += 1
        self.rows += 1

    def _open_next(self) -> None:
        self.close()
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.stem}-{len(self.paths):05d}.jsonl"
        self.paths.append(path)
        self._handle = path.open("w", encoding="utf-8")
        self._in_shard = 0

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class ConversationExporter(Exporter):
    """Base of the chat-format exporters: one row per sample, sharded JSONL per split.

    Args:
        image_paths: ``relative`` (to the export directory), ``absolute`` or ``copy``.
        kind: ``rr`` (multi-turn Rationale and Reflection) or ``orr`` (one-turn).
        shard_size: rows per file.

    Subclasses implement :meth:`row`; they may override :meth:`finish` to write metadata files.
    """

    file_stem: ClassVar[str] = ""

    def __init__(
        self,
        *,
        image_paths: ImageMode = "relative",
        kind: Kind = "rr",
        shard_size: int = DEFAULT_SHARD_SIZE,
    ) -> None:
        if kind not in KINDS:
            raise ConfigError(f"unknown export kind {kind!r}; use 'rr' (multi-turn) or 'orr' (one-turn)")
        if shard_size < 1:
            raise ConfigError(f"shard_size must be at least 1, got {shard_size}")
        if image_paths not in IMAGE_MODES:
            raise ConfigError(f"unknown image path mode {image_paths!r}; use one of {', '.join(IMAGE_MODES)}")
        self.image_paths: ImageMode = image_paths
        self.kind: Kind = kind
        self.shard_size = shard_size
        self.rows_by_split: dict[str, int] = {}
        self.skipped: Counter[str] = Counter()

    @abstractmethod
    def row(self, sample: Sample, messages: list[Message], images: list[str]) -> dict[str, Any]:
        """One output row: ``messages`` already carry the right ``<image>`` placeholders."""

    def export(self, samples: Iterable[Sample], out_dir: Path) -> list[Path]:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.skipped = Counter()
        placer = ImagePlacer(self.image_paths, out_dir)
        writers: dict[str, RowWriter] = {}
        try:
            for sample in samples:
                if (sample.trajectory if self.kind == "rr" else sample.orr) is None:
                    # e.g. an orr_only ablation exported as RR: counted and reported, not fatal
                    self.skipped[f"no_{'trajectory' if self.kind == 'rr' else 'orr'}"] += 1
                    continue
                messages = sample_messages(sample, self.kind)
                messages = place_image_tokens(messages, len(sample.images), sample_id=sample.id)
                images = [placer.place(ref) for ref in sample.images]
                split = split_of(sample)
                if split not in writers:
                    writers[split] = self.make_writer(out_dir, split)
                writers[split].write(self.row(sample, messages, images))
        finally:
            for writer in writers.values():
                writer.close()
        self.rows_by_split = {split: writer.rows for split, writer in writers.items()}
        for reason, count in self.skipped.items():
            logger.warning(
                "%s export skipped %d sample(s) (%s); export them with kind=%r",
                self.name,
                count,
                reason,
                "orr" if self.kind == "rr" else "rr",
            )
        written = [path for writer in writers.values() for path in writer.paths]
        written += self.finish(out_dir, {split: writer.paths for split, writer in writers.items()})
        return sorted(written)

    def make_writer(self, out_dir: Path, split: str) -> RowWriter:
        """The sharded writer of one split (JSONL unless a subclass writes another file type)."""
        return ShardedJsonlWriter(self.data_dir(out_dir, split), self.file_stem or split, self.shard_size)

    def data_dir(self, out_dir: Path, split: str) -> Path:
        """The folder the shards of ``split`` go to."""
        return out_dir / split

    def finish(self, out_dir: Path, shards: dict[str, list[Path]]) -> list[Path]:
        """Write metadata files after the rows; returns their paths."""
        return []


def relative_posix(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()
