"""``mmat cache stats|prune``: look into and trim the teacher-call cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from mmat.engine.cache import CallCache

DIR_HELP = "The cache directory (engine.cache_dir, or OUT_DIR/cache) or its calls.sqlite file."


def _open(path: str) -> CallCache:
    from mmat.engine.cache import CACHE_FILE, CallCache
    from mmat.errors import ConfigError

    target = Path(path)
    if not (target.is_file() or (target / CACHE_FILE).is_file()):
        raise ConfigError(f"no call cache at {target}; pass the run's cache directory (e.g. out/cache)")
    return CallCache(target)


@click.group("cache")
def cache() -> None:
    """Inspect or prune the content-addressed teacher-call cache."""


@cache.command("stats")
@click.option("--dir", "path", default="out/cache", show_default=True, help=DIR_HELP)
def cache_stats(path: str) -> None:
    """Entries, size, hits, and counts per purpose and model, as JSON."""
    store = _open(path)
    click.echo(json.dumps(store.stats(), indent=2, sort_keys=True))


@cache.command("prune")
@click.option("--dir", "path", default="out/cache", show_default=True, help=DIR_HELP)
@click.option("--older-than-days", type=float, help="Delete entries not used for this many days.")
@click.option("--purpose", help="Delete the entries of one call purpose (e.g. rationale.step).")
@click.option("--keep-last", type=int, help="Keep only the most recently used N entries.")
def cache_prune(path: str, older_than_days: float | None, purpose: str | None, keep_last: int | None) -> None:
    """Delete cache entries by age, purpose or count (at least one option)."""
    from mmat.errors import ConfigError

    if older_than_days is None and purpose is None and keep_last is None:
        raise ConfigError("say what to prune: --older-than-days N, --purpose NAME or --keep-last N")
    store = _open(path)
    deleted = store.prune(older_than_days=older_than_days, purpose=purpose, keep_last=keep_last)
    click.echo(f"deleted {deleted} entries; {len(store)} left in {store.path}")
