"""``mmat tools`` (list, run operators) and ``mmat index`` (build and query RAG indexes)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click


def _load_config(config_path: str | None) -> Any:
    from mmat.config import RunConfig

    return RunConfig.from_yaml(config_path) if config_path else RunConfig()


@click.group("tools")
def tools_cmd() -> None:
    """List the operators that can run here, or run one on an image."""


@tools_cmd.command("list")
@click.option(
    "--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="Run config YAML."
)
def tools_list(config_path: str | None) -> None:
    """Show every enabled operator, its backend version and whether it can run (and the fix if not)."""
    from mmat.tools.runner import ToolRunner

    runner = ToolRunner(_load_config(config_path))
    versions = runner.versions()
    for name, description in runner.available().items():
        click.echo(f"ok    {name:<16} {versions.get(name, '')}  {description}")
    for name, reason in runner.unavailable().items():
        click.echo(f"no    {name:<16} {reason}")
    click.echo(f"rag   {versions['rag']}")


@tools_cmd.command("run")
@click.argument("operator")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--arg", "args", multiple=True, help="KEY=JSON argument, e.g. --arg 'queries=[\"dog\"]'.")
@click.option(
    "--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="Run config YAML."
)
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Tool cache folder (tools.sqlite).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole ToolResult as JSON.")
def tools_run(
    operator: str,
    images: tuple[str, ...],
    args: tuple[str, ...],
    config_path: str | None,
    cache_dir: str | None,
    as_json: bool,
) -> None:
    """Run OPERATOR (ocr, face_detection, label_bbox, image_caption) on IMAGES and print its text."""
    from mmat.errors import ConfigError
    from mmat.schema import ImageRef
    from mmat.tools.runner import ToolRunner

    parsed: dict[str, Any] = {}
    for item in args:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--arg {item!r} must look like KEY=VALUE")
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value

    async def go() -> Any:
        async with ToolRunner(
            _load_config(config_path), cache_dir=Path(cache_dir) if cache_dir else None
        ) as runner:
            return await runner.run(
                operator, [ImageRef(path=str(Path(p).resolve())) for p in images], **parsed
            )

    result = asyncio.run(go())
    click.echo(result.model_dump_json(indent=2) if as_json else result.text)
    if result.error:
        raise click.ClickException(result.error)


@click.group("index")
def index_cmd() -> None:
    """Build and query local RAG indexes (BM25, dense MiniLM + faiss, hybrid)."""


@index_cmd.command("build")
@click.argument("corpus")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Index folder to write.")
@click.option(
    "--backend",
    "backends",
    multiple=True,
    type=click.Choice(["bm25", "dense", "hybrid"]),
    default=("bm25",),
    show_default=True,
    help="Index kinds to build (hybrid = bm25 + dense).",
)
@click.option("--model", "model_path", help="Embedding model folder for dense (default: bundled MiniLM).")
def index_build(corpus: str, out: str, backends: tuple[str, ...], model_path: str | None) -> None:
    """Index CORPUS: a corpus.jsonl ({"id", "title", "text", "url"} a line) or 'wiki:en-us'."""
    from mmat.tools.search import load_documents
    from mmat.tools.search_index import build_index

    docs = load_documents(corpus)
    manifest = build_index(docs, Path(out), backends=backends, corpus=corpus, model_path=model_path)
    click.echo(
        f"indexed {manifest['documents']} documents ({', '.join(manifest['backends'])}) into {out} "
        f"in {manifest['build_s']} s; use it with search.index: {out}"
    )


@index_cmd.command("search")
@click.argument("query")
@click.option(
    "--index", "index", type=click.Path(file_okay=False), help="Index folder (default: offline Wikipedia)."
)
@click.option(
    "--backend", default="bm25", show_default=True, help="bm25, dense, hybrid, google, serpapi, brave."
)
@click.option("-k", "top_k", default=3, show_default=True, help="How many snippets.")
def index_search(query: str, index: str | None, backend: str, top_k: int) -> None:
    """Print the RAG observation for QUERY exactly as the model would see it."""
    from mmat.config import RunConfig
    from mmat.tools.runner import ToolRunner

    config = RunConfig.from_dict({"tools": {"enabled": []}, "search": {"backend": backend, "index": index}})

    async def go() -> Any:
        async with ToolRunner(config) as runner:
            return await runner.search(query, k=top_k)

    result = asyncio.run(go())
    click.echo(result.text)
    if result.error:
        raise click.ClickException(result.error)
