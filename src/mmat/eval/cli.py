"""``mmat eval``: run a benchmark in baseline/ORR/RR mode, report, and export for VLMEvalKit.

Examples::

    mmat eval --bench MMStar --data MMStar.tsv --model mmat-8b --base-url http://127.0.0.1:8000/v1 \\
        --mode baseline --mode orr --mode rr --out out/eval/mmat-8b
    mmat eval --bench DynVQA --data DynVQA_en.202406.jsonl --image-root dynvqa_images --setting golden ...
    mmat eval report out/eval/mmat-8b out/eval/internvl-8b --output out/eval/report
    mmat eval export out/eval/mmat-8b --bench MMStar --data MMStar.tsv --mode rr
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import click

from mmat.agent.result import AgentMode
from mmat.errors import ConfigError

logger = logging.getLogger(__name__)

_MODES: tuple[AgentMode, ...] = ("baseline", "orr", "rr")


def run_key(bench_name: str, items: list[Any], setting: str) -> str:
    """The output folder name of a run: the benchmark, and for Dyn-VQA its language and setting."""
    if bench_name != "DynVQA":
        return bench_name
    langs = sorted({str(item.meta.get("lang", "en")) for item in items}) or ["en"]
    return f"DynVQA_{'+'.join(langs)}_{setting}"


def _build_tools(choice: str, config_path: str | None, out: Path) -> Any:
    if choice == "none":
        return None
    from mmat.config import RunConfig
    from mmat.tools.runner import ToolRunner

    config = RunConfig.from_yaml(config_path) if config_path else RunConfig()
    return ToolRunner(config, cache_dir=out / "tool_cache")


@click.group("eval", invoke_without_command=True)
@click.option("--bench", help="Benchmark (VLMEvalKit name): MMStar, MMMU_DEV_VAL, ..., DynVQA.")
@click.option("--data", type=click.Path(dir_okay=False), help="The benchmark's TSV (or Dyn-VQA JSONL) file.")
@click.option("--model", help="Model name the server expects.")
@click.option("--base-url", help="OpenAI-compatible API root of the model, e.g. http://127.0.0.1:8000/v1.")
@click.option("--api-key-env", default=None, help="Environment variable holding the model's API key.")
@click.option(
    "--mode",
    "modes",
    multiple=True,
    type=click.Choice(_MODES),
    help="Agent mode; repeat for several (default all).",
)
@click.option("--out", default="out/eval", show_default=True, type=click.Path(file_okay=False))
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1, 512))
@click.option("--limit", type=click.IntRange(1), help="Only the first N items (smoke runs).")
@click.option(
    "--image-root", type=click.Path(file_okay=False), help="Folder of images (image_path / Dyn-VQA)."
)
@click.option(
    "--image-cache",
    type=click.Path(file_okay=False),
    help="Where inline images are decoded (default OUT/images).",
)
@click.option(
    "--setting",
    type=click.Choice(["query", "golden"]),
    default="query",
    show_default=True,
    help="Dyn-VQA setting.",
)
@click.option("--lang", type=click.Choice(["en", "zh"]), help="Dyn-VQA language (default: from the file).")
@click.option("--prompt-style", type=click.Choice(["mmat", "vlmevalkit"]), default="mmat", show_default=True)
@click.option(
    "--tools",
    type=click.Choice(["default", "none"]),
    default="default",
    show_default=True,
    help="'default': the operators of the run config; 'none': no operators or RAG.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True),
    help="Run config YAML for the tools.",
)
@click.option("--max-steps", default=8, show_default=True, type=click.IntRange(1))
@click.option("--time-limit", type=float, help="Seconds per item before the agent gives up.")
@click.option("--judge-model", help="Judge model for answers the rules cannot extract (recorded per item).")
@click.option("--judge-base-url", help="OpenAI-compatible API root of the judge.")
@click.option("--judge-api-key-env", default="OPENAI_API_KEY", show_default=True)
@click.option("--rescore", is_flag=True, help="Only recompute scores from existing predictions.")
@click.pass_context
def eval_cmd(ctx: click.Context, **opts: Any) -> None:
    """Evaluate a model on a benchmark in baseline, ORR and RR modes (subcommands: report, export)."""
    if ctx.invoked_subcommand is not None:
        return
    missing = [f"--{name.replace('_', '-')}" for name in ("bench", "data") if not opts[name]]
    if not opts["rescore"]:
        missing += [f"--{name.replace('_', '-')}" for name in ("model", "base_url") if not opts[name]]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)}; see `mmat eval --help`")
    summaries = asyncio.run(_run(opts))
    for summary in summaries:
        score = summary.score
        value = score.get("headline_value")
        latency = score.get("latency", {}).get("mean_s")
        click.echo(
            f"{summary.run_key}/{summary.mode}: {score['headline']}={value} "
            f"({score['n_predicted']}/{score['n_items']} predicted, {summary.errors} errors this run, "
            f"{summary.skipped} resumed; mean latency {latency}s) -> {summary.out_dir}"
        )


async def _run(opts: dict[str, Any]) -> list[Any]:
    from mmat.eval.benchmarks import get_benchmark, load_items
    from mmat.eval.runner import RunSummary, run_mode, score_mode

    bench = get_benchmark(opts["bench"])
    out = Path(opts["out"])
    items = load_items(
        bench,
        opts["data"],
        cache_dir=opts["image_cache"] or out / "images",
        image_root=opts["image_root"],
        prompt_style=opts["prompt_style"],
        setting=opts["setting"],
        lang=opts["lang"],
        limit=opts["limit"],
    )
    key = run_key(bench.name, items, opts["setting"])
    judge = None
    if opts["judge_model"]:
        if not opts["judge_base_url"]:
            raise ConfigError("--judge-model needs --judge-base-url (an OpenAI-compatible API root)")
        from mmat.eval.judge import OpenAIJudge

        judge = OpenAIJudge(
            opts["judge_base_url"], opts["judge_model"], api_key_env=opts["judge_api_key_env"]
        )
    settings = {
        k: opts[k]
        for k in (
            "model",
            "base_url",
            "data",
            "setting",
            "prompt_style",
            "tools",
            "max_steps",
            "time_limit",
            "limit",
        )
    }
    modes: tuple[AgentMode, ...] = opts["modes"] or _MODES
    summaries: list[RunSummary] = []
    if opts["rescore"]:
        for mode in modes:
            mode_dir = out / key / mode
            if not mode_dir.is_dir():
                raise ConfigError(f"nothing to rescore in {mode_dir}; run without --rescore first")
            score = await score_mode(
                bench, items, mode_dir, judge=judge, settings=settings, run_key=key, mode=mode
            )
            summaries.append(
                RunSummary(key, mode, mode_dir, ran=0, skipped=len(items), errors=0, score=score)
            )
        return summaries
    from mmat.agent.models import OpenAIModel
    from mmat.agent.runtime import Agent

    model = OpenAIModel(opts["base_url"], opts["model"], api_key_env=opts["api_key_env"])
    agent = Agent(
        model,
        _build_tools(opts["tools"], opts["config_path"], out),
        max_steps=opts["max_steps"],
        time_limit_s=opts["time_limit"],
    )
    for mode in modes:
        summaries.append(
            await run_mode(
                agent,
                bench,
                items,
                mode,
                out,
                run_key=key,
                concurrency=opts["concurrency"],
                judge=judge,
                settings=settings,
            )
        )
    return summaries


@eval_cmd.command("report")
@click.argument("out_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@click.option(
    "--output",
    type=click.Path(file_okay=False),
    help="Where to write report.{md,json,png} (default: first OUT_DIR).",
)
@click.option("--no-chart", is_flag=True, help="Skip the PNG bar chart.")
def report_cmd(out_dirs: tuple[str, ...], output: str | None, no_chart: bool) -> None:
    """Compare runs: the scores table (paper Tables 3-5 shape) and latency, as Markdown, JSON and PNG."""
    from mmat.eval.report import write_report

    written = write_report(out_dirs, output or out_dirs[0], chart=not no_chart)
    click.echo(Path(written["markdown"]).read_text(encoding="utf-8"))
    click.echo("written: " + ", ".join(str(p) for p in written.values()))


@eval_cmd.command("export")
@click.argument("out_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--bench", required=True, help="Benchmark name (as for `mmat eval`).")
@click.option(
    "--data", required=True, type=click.Path(dir_okay=False, exists=True), help="The benchmark TSV."
)
@click.option("--mode", required=True, type=click.Choice(_MODES))
@click.option("--model-name", default="mmat", show_default=True, help="Model name in the file name.")
@click.option(
    "--format", "fmt", type=click.Choice(["auto", "xlsx", "tsv"]), default="auto", show_default=True
)
@click.option("--setting", type=click.Choice(["query", "golden"]), default="query")
def export_cmd(
    out_dir: str, bench: str, data: str, mode: str, model_name: str, fmt: str, setting: str
) -> None:
    """Write predictions as VLMEvalKit's ``{model}_{dataset}.xlsx`` (or .tsv) for its evaluator."""
    from mmat.eval.vlmevalkit import export_predictions

    path = export_predictions(out_dir, bench, data, mode, model_name=model_name, fmt=fmt, setting=setting)
    click.echo(f"written {path}")
