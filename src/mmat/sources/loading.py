"""The one entry point other code uses to read Foundation samples: :func:`load`."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator

from mmat.config import SourceConfig
from mmat.errors import ConfigError
from mmat.registry import SOURCES
from mmat.schema import Reject, Sample
from mmat.sources.base import Source
from mmat.sources.sharding import id_hash


def open_source(config: SourceConfig) -> Source:
    """Construct the registered loader ``config.name`` (options are validated here, not mid-run)."""
    cls = SOURCES.get(config.name)
    source: Source = cls(config)
    return source


def load(config: SourceConfig) -> Iterator[Sample | Reject]:
    """Stream the samples and rejects of one source, applying ``limit`` and ``sample``/``seed``.

    ``limit`` stops after that many samples; ``sample`` keeps a reproducible random subset of that
    size (same ``seed`` and input -> same samples, in input order; it needs memory for ``sample``
    records). Rejects always pass through. The loader is constructed (and its options checked)
    before the first record is read.

    Example:
        >>> from mmat.config import SourceConfig
        >>> for item in load(SourceConfig(name="tabmwp", root="examples/data/tabmwp", limit=2)):
        ...     print(type(item).__name__, item.id)  # doctest: +SKIP
    """
    for field in ("limit", "sample"):
        value = getattr(config, field)
        if value is not None and value < 0:
            raise ConfigError(f"source {config.name!r}: {field} must be >= 0, got {value}")
    source = open_source(config)
    records = source.iter_records()
    if config.sample is not None:
        records = sample_records(records, config.sample, config.seed)
    if config.limit is not None:
        records = limit_records(records, config.limit)
    return records


def limit_records(records: Iterable[Sample | Reject], limit: int) -> Iterator[Sample | Reject]:
    """Pass records through until ``limit`` samples have gone by (rejects do not count)."""
    if limit == 0:
        return
    kept = 0
    for record in records:
        yield record
        if isinstance(record, Sample):
            kept += 1
            if kept >= limit:
                return


def sample_records(records: Iterable[Sample | Reject], size: int, seed: int) -> Iterator[Sample | Reject]:
    """A reproducible random subset of ``size`` samples, chosen by a seeded hash of each sample id.

    The choice depends only on the ids and the seed (not on file order), keeps the input order, and
    yields rejects as they are met.
    """
    heap: list[tuple[int, int, Sample]] = []  # max-heap on the hash key via negation
    salt = f"mmat-sample-{seed}"[:16]
    for position, record in enumerate(records):
        if not isinstance(record, Sample):
            yield record
            continue
        key = id_hash(record.id, salt)
        if len(heap) < size:
            heapq.heappush(heap, (-key, position, record))
        elif size and -heap[0][0] > key:
            heapq.heapreplace(heap, (-key, position, record))
    for _, _, sample in sorted(heap, key=lambda item: item[1]):
        yield sample
