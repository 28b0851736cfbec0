"""The ``mmat`` command line: thin commands over the library.

Each family keeps its commands in its own module; this group imports a command only when it runs,
so ``mmat --help`` stays fast and never imports torch. Library errors (:class:`MmatError`) become a
one-line message and the error's exit code.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click

from mmat import __version__
from mmat.errors import MmatError

COMMANDS: dict[str, tuple[str, str]] = {
    # name: ("module:attribute", one-line help shown by `mmat --help`)
    "tools": ("mmat.tools.cli:tools_cmd", "List the operators that can run here, or run one on an image."),
    "index": ("mmat.tools.cli:index_cmd", "Build and query local RAG indexes (BM25, dense, hybrid)."),
    "plugins": ("mmat.cli:plugins", "List registered sources, tools, teachers and exporters."),
    "config": ("mmat.cli:config_cmd", "Print the default run configuration as YAML."),
    "ask": ("mmat.agent.cli:ask", "Ask a tuned model about an image (RR, ORR, baseline)."),
    "serve-agent": ("mmat.agent.cli:serve_agent", "Serve the agent as an OpenAI-compatible endpoint."),
    "cache": ("mmat.engine.commands:cache", "Show or prune the teacher-call cache (stats, prune)."),
    "mock-teacher": (
        "mmat.llm.commands:mock_teacher",
        "Serve a mock OpenAI-compatible teacher on 127.0.0.1.",
    ),
    "eval": (
        "mmat.eval.cli:eval_cmd",
        "Evaluate a model on benchmarks in baseline, ORR and RR modes; report.",
    ),
    "train": (
        "mmat.train.cli:train",
        "Fine-tune a VLM with LoRA + the Frobenius penalty (PEFT or ms-swift).",
    ),
    "release": ("mmat.cli:release", "Check or re-export MMAT-1M release files (RR_sys / ORR jsonl)."),
    "sources": ("mmat.sources.cli:sources_cmd", "List the Foundation source loaders."),
    "foundation": ("mmat.sources.cli:foundation_cmd", "Turn one source dataset into Foundation samples."),
    "export": (
        "mmat.export.cli:export_cmd",
        "Export a build into ms-swift, LLaMA-Factory, LLaVA, Parquet or MMAT-1M files.",
    ),
    "card": (
        "mmat.export.cli:card_cmd",
        "Write the dataset card (README.md) of a build: provenance, statistics, licences.",
    ),
    "view": (
        "mmat.viewer.cli:view",
        "Browse a build in a local web viewer (127.0.0.1): samples, boxes, statistics.",
    ),
    "build": (
        "mmat.pipeline.cli:build_cmd",
        "Run the data engine: sources -> stages -> exports -> report (resumable).",
    ),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, _, attr = COMMANDS[cmd_name][0].partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{COMMANDS[cmd_name][0]} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="mmat")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """mmat: build multimodal agent-tuning data (MMAT-1M), then train, run and evaluate the agent."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@click.command()
def plugins() -> None:
    """List every registered plugin by family."""
    from mmat.registry import EXPORTERS, SOURCES, TEACHERS, TOOLS

    for registry in (SOURCES, TOOLS, TEACHERS, EXPORTERS):
        click.echo(f"{registry.family}s:")
        for name in registry.names():
            click.echo(f"  {name:<24} {registry.target(name)}")


@click.command("config")
def config_cmd() -> None:
    """Print the default run configuration; save it and edit it to start a run config."""
    from mmat.config import RunConfig

    click.echo(RunConfig().to_yaml(), nl=False)


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Write the re-exported files here.")
def release(files: tuple[str, ...], out: str | None) -> None:
    """Read MMAT-1M RR/ORR files, report bad rows, and optionally re-export them."""
    from pathlib import Path

    from mmat.errors import RecordError
    from mmat.export.release import read_release, sample_to_row

    for name in files:
        good = bad = 0
        target = Path(out) / Path(name).name if out else None
        handle = None
        if target:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle = target.open("w", encoding="utf-8")
        for item in read_release(name):
            if isinstance(item, RecordError):
                bad += 1
                click.echo(f"bad row: {item}", err=True)
                continue
            good += 1
            if handle:
                handle.write(sample_to_row(item, item.metadata["release"]["kind"]) + "\n")
        if handle:
            handle.close()
        click.echo(f"{name}: {good} rows ok, {bad} bad" + (f"; written to {target}" if target else ""))


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``mmat`` console script."""
    try:
        return cli.main(args=argv, prog_name="mmat", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except MmatError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(error.exit_code)


if __name__ == "__main__":
    main()
