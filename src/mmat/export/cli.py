"""``mmat export`` and ``mmat card``: thin commands over :mod:`mmat.export`."""

from __future__ import annotations

from pathlib import Path

import click

from mmat.export.image_paths import IMAGE_MODES


@click.command("export")
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--format",
    "fmt",
    required=True,
    help="Exporter name (see `mmat plugins`): swift, llamafactory, llava, parquet, mmat1m.",
)
@click.option(
    "--images",
    type=click.Choice(IMAGE_MODES),
    default=None,
    help="Image paths: relative to the export dir (default), absolute, or copied into it.",
)
@click.option(
    "--kind",
    type=click.Choice(["rr", "orr", "both"]),
    default=None,
    help="Multi-turn RR (default), one-turn ORR, or both into DEST/rr and DEST/orr.",
)
@click.option("--shard-size", type=int, default=None, help="Rows per output file (default 10000).")
@click.option(
    "--final-round-only",
    is_flag=True,
    default=None,
    help="ms-swift: train only on the final answer (loss flags).",
)
@click.option(
    "--dest",
    type=click.Path(file_okay=False),
    default=None,
    help="Output folder (default OUT_DIR/exports/FORMAT).",
)
def export_cmd(
    out_dir: str,
    fmt: str,
    images: str | None,
    kind: str | None,
    shard_size: int | None,
    final_round_only: bool | None,
    dest: str | None,
) -> None:
    """Export the accepted samples of a build OUT_DIR into a training format."""
    from mmat.export.run import run_export
    from mmat.store import EXPORTS_DIR

    target = Path(dest) if dest else Path(out_dir) / EXPORTS_DIR / fmt
    kinds: list[str | None] = ["rr", "orr"] if kind == "both" else [kind]
    for one in kinds:
        where = target / one if kind == "both" and one else target
        written = run_export(
            out_dir,
            fmt,
            dest=where,
            image_paths=images,
            kind=one,
            shard_size=shard_size,
            final_round_only=final_round_only,
        )
        click.echo(f"{fmt}{f' ({one})' if one else ''}: wrote {len(written)} file(s) under {where}")


@click.command("card")
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--out", type=click.Path(dir_okay=False), default=None, help="Card path (default OUT_DIR/README.md)."
)
@click.option("--title", default=None, help="Dataset title shown on the card.")
def card_cmd(out_dir: str, out: str | None, title: str | None) -> None:
    """Write the dataset card (README.md) of a build OUT_DIR: provenance, statistics, licences."""
    from mmat.export.card import write_card

    path = write_card(out_dir, out, title=title)
    click.echo(f"dataset card written to {path}")
