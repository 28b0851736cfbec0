"""Deterministic sample ids and shard assignment.

Ids look like ``source/subset/original_id`` and are stable across runs and machines, so the shard of
a sample (a hash of its id, never Python's salted ``hash``) is stable too: a rerun, another worker or
the Ray executor all put the same sample in the same shard.
"""

from __future__ import annotations

import hashlib
import re

from mmat.errors import ConfigError

NO_SUBSET = "default"
_SPACE = re.compile(r"\s")


def make_sample_id(source: str, subset: str | None, original_id: object) -> str:
    """Build ``source/subset/original_id``; whitespace inside the parts becomes ``_``.

    Example:
        >>> make_sample_id("tabmwp", "train", 22084)
        'tabmwp/train/22084'
    """
    parts = [source, subset or NO_SUBSET, str(original_id)]
    joined = "/".join(parts)
    if _SPACE.search(joined) is None and all(parts):
        return joined
    return "/".join("_".join(part.split()) or "_" for part in parts)


def id_hash(sample_id: str, salt: str = "") -> int:
    """A 64-bit integer hash of ``sample_id`` (blake2b), the same on every machine and run."""
    digest = hashlib.blake2b(sample_id.encode("utf-8"), digest_size=8, person=salt.encode()[:16]).digest()
    return int.from_bytes(digest, "big")


def shard_of(sample_id: str, n_shards: int) -> int:
    """The shard (``0 <= shard < n_shards``) that ``sample_id`` belongs to.

    Example:
        >>> shard_of("tabmwp/train/22084", 8) == shard_of("tabmwp/train/22084", 8)
        True
    """
    if n_shards < 1:
        raise ConfigError(f"the number of shards must be at least 1, got {n_shards}")
    return id_hash(sample_id) % n_shards
