"""``mmat ask`` and ``mmat serve-agent``: run a tuned model as an agent from the command line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click

from mmat.agent.result import AgentResult

_MODES = click.Choice(["rr", "orr", "baseline"])


def model_options(function: Any) -> Any:
    """The options that pick the model, the tools and the limits (shared by both commands)."""
    options = [
        click.option(
            "--model",
            "model_name",
            required=True,
            help="Model name on the server (with --base-url), or a local model directory.",
        ),
        click.option("--base-url", help="OpenAI-compatible API root, e.g. http://127.0.0.1:8000/v1."),
        click.option("--api-key-env", help="Environment variable that holds the server's API key."),
        click.option(
            "--adapter", type=click.Path(exists=True, file_okay=False), help="LoRA adapter (local model)."
        ),
        click.option("--device", default="cpu", show_default=True, help="Torch device of a local model."),
        click.option(
            "--max-tokens", type=int, default=1024, show_default=True, help="Most tokens per reply."
        ),
        click.option("--temperature", type=float, default=0.0, show_default=True),
        click.option("--max-steps", type=int, default=8, show_default=True, help="Most RR steps."),
        click.option("--time-limit", type=float, help="Seconds one answer may take."),
        click.option(
            "--config",
            "config_path",
            type=click.Path(exists=True, dir_okay=False),
            help="Run config YAML whose tools/search sections pick operator backends.",
        ),
        click.option(
            "--operators",
            help="Comma-separated operators to enable (default: the config's tools.enabled).",
        ),
        click.option("--no-tools", is_flag=True, help="Run without operators and RAG."),
        click.option(
            "--system-prompt-file",
            type=click.Path(exists=True, dir_okay=False),
            help="The RR system prompt the model was tuned with (default: rendered from the operators).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def build_model(
    model_name: str,
    base_url: str | None,
    api_key_env: str | None,
    adapter: str | None,
    device: str,
    max_tokens: int,
    temperature: float,
) -> Any:
    from mmat.agent.models import OpenAIModel, TransformersModel
    from mmat.errors import ConfigError

    if base_url:
        if adapter:
            raise ConfigError(
                "--adapter is for local models; a server loads its adapter itself (drop --base-url)"
            )
        return OpenAIModel(
            base_url, model_name, api_key_env=api_key_env, temperature=temperature, max_tokens=max_tokens
        )
    if not Path(model_name).is_dir():
        raise ConfigError(
            f"--model {model_name!r} is not a local model directory; give --base-url to use a model server"
        )
    return TransformersModel(
        model_name, adapter=adapter, device=device, max_tokens=max_tokens, temperature=temperature
    )


def build_tools(config_path: str | None, operators: str | None, no_tools: bool) -> Any:
    if no_tools:
        return None
    from mmat.config import RunConfig
    from mmat.tools.runner import ToolRunner

    config = RunConfig.from_yaml(config_path) if config_path else RunConfig()
    if operators:
        config = config.with_overrides(
            {"tools.enabled": [o.strip() for o in operators.split(",") if o.strip()]}
        )
    return ToolRunner(config)


def build_agent(**options: Any) -> Any:
    from mmat.agent.runtime import Agent

    model = build_model(
        options["model_name"],
        options["base_url"],
        options["api_key_env"],
        options["adapter"],
        options["device"],
        options["max_tokens"],
        options["temperature"],
    )
    tools = build_tools(options["config_path"], options["operators"], options["no_tools"])
    system_file = options.get("system_prompt_file")
    return Agent(
        model,
        tools,
        max_steps=options["max_steps"],
        time_limit_s=options["time_limit"],
        system_prompt=Path(system_file).read_text(encoding="utf-8") if system_file else None,
    )


def print_result(result: AgentResult) -> None:
    """Show a run readably: each turn in a panel, then where the time went."""
    from rich.console import Console
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    console = Console()
    styles = {"system": "dim", "user": "cyan", "assistant": "green"}
    calls = iter(result.turn_latencies_s)
    for index, message in enumerate(result.messages):
        role = message["role"]
        title = f"{index} {role}"
        if role == "assistant":
            latency = next(calls, None)
            if latency is not None:
                title += f"  ({latency:.2f}s)"
        console.print(
            Panel(Text(message["content"]), title=title, title_align="left", border_style=styles[role])
        )
    if result.operator_timings:
        table = Table(title="operators", title_justify="left")
        for column in ("operator", "latency", "cached", "error"):
            table.add_column(column)
        for timing in result.operator_timings:
            table.add_row(
                timing.tool, f"{timing.latency_s:.2f}s", "yes" if timing.cached else "", timing.error or ""
            )
        console.print(table)
    summary = (
        f"mode {result.mode}  ·  {result.model_calls} model calls  ·  {len(result.steps)} steps  ·  "
        f"{result.latency_s:.2f}s  ·  tokens {result.prompt_tokens}+{result.completion_tokens}"
    )
    console.print(summary, style="dim")
    if result.ok:
        console.print(Text.assemble(("answer: ", "bold"), (result.answer, "bold green")))
    else:
        console.print(
            Text.assemble((f"failed ({result.error_kind}): ", "bold red"), (result.error or "", "red"))
        )


@click.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@click.argument("question")
@click.option(
    "--mode", type=_MODES, default="rr", show_default=True, help="RR loop, ORR (tools first) or baseline."
)
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON instead.")
def ask(image: str, question: str, mode: str, as_json: bool, **options: Any) -> None:
    """Ask a tuned model QUESTION about IMAGE and show its reasoning, tool calls and answer."""
    from mmat.schema import ImageRef

    agent = build_agent(**options)
    ref = ImageRef(path=str(Path(image).resolve()))

    async def run() -> AgentResult:
        try:
            return await agent.answer([ref], question, mode=mode)  # type: ignore[arg-type]
        finally:
            aclose = getattr(agent.model, "aclose", None)
            if aclose is not None:
                await aclose()
            tools_close = getattr(agent.tools, "aclose", None)
            if tools_close is not None:
                await tools_close()

    result = asyncio.run(run())
    if as_json:
        click.echo(json.dumps(result.model_dump(mode="json"), ensure_ascii=False, indent=1))
    else:
        print_result(result)
    if not result.ok:
        raise SystemExit(1)


@click.command("serve-agent")
@click.option("--mode", type=_MODES, default="rr", show_default=True, help="Mode when a request names none.")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Interface to bind (no authentication!)."
)
@click.option("--port", type=int, default=8010, show_default=True)
@click.option("--max-concurrent", type=int, default=8, show_default=True, help="Agent runs at once.")
@model_options
def serve_agent(mode: str, host: str, port: int, max_concurrent: int, **options: Any) -> None:
    """Expose the agent as an OpenAI-compatible chat endpoint (POST /v1/chat/completions)."""
    from mmat.agent.server import AgentServer

    agent = build_agent(**options)
    server = AgentServer(agent, host=host, port=port, default_mode=mode, max_concurrent=max_concurrent)  # type: ignore[arg-type]

    def announce(ready: AgentServer) -> None:
        click.echo(
            f"mmat agent serving on {ready.base_url} (models: mmat-rr, mmat-orr, mmat-baseline; default {mode}); "
            "Ctrl-C stops it",
            err=True,
        )

    try:
        server.serve_forever(on_ready=announce)
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
