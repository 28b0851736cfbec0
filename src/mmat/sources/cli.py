"""``mmat sources`` and ``mmat foundation``: list the loaders, run the Foundation stage alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mmat.errors import ConfigError


@click.command("sources")
def sources_cmd() -> None:
    """List the registered Foundation sources with a one-line description."""
    from mmat.registry import SOURCES

    for name in SOURCES.names():
        try:
            description = SOURCES.get(name).description
        except Exception as error:  # a broken third-party plugin must not hide the others
            description = f"(cannot be imported: {error})"
        click.echo(f"{name:<12} {description}")


def parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` pairs (values read as YAML, dotted keys nest) -> an options dict."""
    import yaml

    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"option {pair!r} must look like key=value (e.g. -o check_images=none)")
        node = options
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(text) if text else ""
    return options


@click.command("foundation")
@click.option("--source", "source_name", required=True, help="Registered source name (see `mmat sources`).")
@click.option("--root", required=True, type=click.Path(file_okay=False), help="The dataset folder.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Samples JSONL to write.")
@click.option(
    "--rejects", type=click.Path(dir_okay=False), help="Rejects JSONL (default: <out>.rejects.jsonl)."
)
@click.option(
    "--files", multiple=True, help="File or glob under root (repeatable; default: the source's own)."
)
@click.option("--limit", type=int, help="Stop after N samples.")
@click.option("--sample", type=int, help="Keep a reproducible random subset of N samples.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --sample.")
@click.option("-o", "--option", "option_pairs", multiple=True, help="Source option key=value (repeatable).")
@click.option(
    "--image-store", type=click.Path(file_okay=False), help="Image store (default: <out dir>/images)."
)
def foundation_cmd(
    source_name: str,
    root: str,
    out: str,
    rejects: str | None,
    files: tuple[str, ...],
    limit: int | None,
    sample: int | None,
    seed: int,
    option_pairs: tuple[str, ...],
    image_store: str | None,
) -> None:
    """Turn one source dataset into Foundation samples, with a progress bar and a summary."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.table import Table

    from mmat.config import SourceConfig
    from mmat.registry import SOURCES
    from mmat.sources.loading import load
    from mmat.sources.run import stats_path, write_records

    options = parse_options(option_pairs)
    config = SourceConfig(
        name=source_name, root=root, files=list(files), options=options, limit=limit, sample=sample, seed=seed
    )
    options_model = getattr(SOURCES.get(source_name), "Options", None)
    if (
        options_model is not None
        and "image_store" in options_model.model_fields
        and "image_store" not in options
    ):
        # Images that arrive as bytes are written beside the output, not into the dataset folder.
        options["image_store"] = str(Path(image_store or Path(out).parent / "images").resolve())
        config = config.model_copy(update={"options": options})
    console = Console(stderr=True)
    total = limit if limit is not None else sample
    with Progress(
        SpinnerColumn(),
        TextColumn(f"[bold]{source_name}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("kept {task.fields[kept]} · rejected {task.fields[rejected]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("foundation", total=total, kept=0, rejected=0)

        def tick(summary: Any) -> None:
            done = summary.kept + summary.rejected
            if done % 500 == 0:
                progress.update(task, completed=summary.kept, kept=summary.kept, rejected=summary.rejected)

        summary = write_records(load(config), out, rejects, source=source_name, on_record=tick)
        progress.update(task, completed=summary.kept, kept=summary.kept, rejected=summary.rejected)

    table = Table(title=f"Foundation: {source_name}", show_header=False)
    table.add_row("kept samples", str(summary.kept))
    table.add_row("QA pairs", str(summary.qas))
    table.add_row("rejected", str(summary.rejected))
    for reason, count in sorted(summary.rejected_by_reason.items()):
        table.add_row(f"  rejected: {reason}", str(count))
    for size, count in sorted(summary.qa_per_entry.items()):
        table.add_row(f"  entries with {size} QA", str(count))
    table.add_row("non-commercial", str(summary.non_commercial))
    table.add_row("records/s", f"{summary.records_per_s:,.0f}")
    console.print(table)
    click.echo(f"wrote {out} ({summary.kept} samples); stats in {stats_path(out)}")
