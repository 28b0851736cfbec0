"""Export a build output directory into a training format: the library side of ``mmat export``."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

from mmat.errors import ConfigError
from mmat.export.base import Exporter
from mmat.registry import EXPORTERS
from mmat.store import EXPORTS_DIR, iter_accepted

logger = logging.getLogger(__name__)


def create_exporter(name: str, *, strict: bool = True, **options: Any) -> Exporter:
    """Instantiate the exporter registered as ``name`` with the options it accepts.

    Options left at ``None`` are not passed. An option the exporter does not take is an error that
    names the options it does take, unless ``strict=False`` (a run config's ``output.image_paths``
    applies to the chat formats and is dropped for ``mmat1m``).
    """
    cls = EXPORTERS.get(name)
    given = {key: value for key, value in options.items() if value is not None}
    accepted = {
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"
    }
    unknown = sorted(set(given) - accepted)
    if unknown and not strict:
        logger.debug("exporter %s ignores option(s) %s", name, ", ".join(unknown))
        given = {key: value for key, value in given.items() if key in accepted}
    elif unknown:
        takes = f"it takes: {', '.join(sorted(accepted))}" if accepted else "it takes no options"
        raise ConfigError(
            f"exporter {name!r} does not take option(s) {', '.join(unknown)}; {takes}. Fix: drop those flags"
        )
    exporter: Exporter = cls(**given)
    return exporter


def run_export(
    build_dir: str | Path,
    name: str,
    *,
    dest: str | Path | None = None,
    **options: Any,
) -> list[Path]:
    """Stream the accepted samples of ``build_dir`` into exporter ``name``; return the written files.

    Args:
        build_dir: a build output directory (see :mod:`mmat.store`).
        name: a registered exporter (``swift``, ``llamafactory``, ``llava``, ``parquet``, ``mmat1m``...).
        dest: where to write; default ``build_dir/exports/<name>``.
        options: exporter options such as ``image_paths``, ``kind``, ``shard_size``, ``final_round_only``.
    """
    build = Path(build_dir)
    if not (build / "accepted").is_dir():
        raise ConfigError(
            f"{build} has no accepted/ folder; give the output directory of a build (mmat build ... --out DIR)"
        )
    exporter = create_exporter(name, **options)
    target = Path(dest) if dest is not None else build / EXPORTS_DIR / name
    written = exporter.export(iter_accepted(build), target)
    logger.info("exporter %s wrote %d file(s) under %s", name, len(written), target)
    skipped = getattr(exporter, "skipped", None)
    if skipped and not sum(getattr(exporter, "rows_by_split", {}).values()):
        other = "orr" if options.get("kind") in (None, "rr") else "rr"
        raise ConfigError(
            f"exporter {name!r} wrote nothing: every sample lacks that form ({dict(skipped)}); "
            f"export with kind={other!r}"
        )
    return written
