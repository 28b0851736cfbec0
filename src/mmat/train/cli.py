"""``mmat train``: LoRA fine-tuning with the Frobenius penalty, on PEFT or through ms-swift."""

from __future__ import annotations

import json
from typing import Any

import click
from pydantic import ValidationError

from mmat.errors import ConfigError
from mmat.train.config import DEFAULT_LAMBDA, TrainConfig


@click.command("train")
@click.option(
    "--data", required=True, help="ms-swift export: a .jsonl file, a folder of shards or the export root."
)
@click.option(
    "--model", "model", required=True, help="Local checkpoint folder (or a model id in the HF cache)."
)
@click.option(
    "--lambda",
    "penalty_lambda",
    type=float,
    default=DEFAULT_LAMBDA,
    show_default=True,
    help="Weight of sum_i ||Delta W_i||_F^2 (0 = plain LoRA).",
)
@click.option("--rank", type=int, default=8, show_default=True, help="LoRA rank r.")
@click.option("--alpha", type=float, default=32.0, show_default=True, help="LoRA alpha (scaling alpha/r).")
@click.option("--dropout", type=float, default=0.05, show_default=True, help="LoRA dropout.")
@click.option("--rslora", "use_rslora", is_flag=True, help="rsLoRA scaling alpha/sqrt(r).")
@click.option(
    "--targets",
    default="all-linear",
    show_default=True,
    help="Comma-separated module names; all-linear = every linear layer of the language model.",
)
@click.option("--backend", type=click.Choice(["peft", "swift"]), default="peft", show_default=True)
@click.option("--output", "output_dir", default="out/train", show_default=True, help="Output folder.")
@click.option("--lr", "learning_rate", type=float, default=4e-5, show_default=True)
@click.option("--weight-decay", type=float, default=0.1, show_default=True)
@click.option("--epochs", type=float, default=1.0, show_default=True)
@click.option("--max-steps", type=int, default=-1, show_default=True, help="Stop after N optimizer steps.")
@click.option("--batch-size", type=int, default=1, show_default=True)
@click.option("--grad-accum", type=int, default=1, show_default=True)
@click.option("--max-length", type=int, default=16384, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--bf16/--no-bf16", default=None, help="Default: bf16 when the GPU supports it.")
@click.option("--deepspeed", default=None, help="DeepSpeed JSON, or 'zero2' for the shipped ZeRO-2 config.")
@click.option("--save-steps", type=int, default=None, help="Save a checkpoint every N steps.")
@click.option(
    "--swift-arg",
    "swift_args",
    multiple=True,
    help="swift backend: one extra `swift sft` argument (repeat: --swift-arg=--model_type --swift-arg=llava1_5_hf).",
)
@click.option("--launch/--print-only", default=False, help="swift backend: run `swift sft` or only print it.")
def train(**options: Any) -> None:
    """Fine-tune a VLM with LoRA plus lambda * sum ||Delta W||_F^2 on an mmat export.

    \b
    Paper defaults (MMAT-1M Table 7): lr 4e-5, weight decay 0.1, 1 epoch, batch 1,
    max length 16384, seed 42, bf16. Loss only on assistant turns.
    """
    backend = options["backend"]
    launch = options.pop("launch")
    options["swift_args"] = list(options["swift_args"])
    options["targets"] = [t.strip() for t in str(options["targets"]).split(",") if t.strip()]
    try:
        config = TrainConfig(**options)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise ConfigError(f"invalid training options: {problems}") from None
    if backend == "swift":
        from mmat.train.swift_backend import prepare_swift_run

        run = prepare_swift_run(config)
        click.echo(f"dataset: {run.dataset} ({run.rows} rows)")
        click.echo(run.shell_command())
        if launch:
            raise SystemExit(run.launch())
        return
    from mmat.train.trainer import run_training

    summary = run_training(config)
    shown = {k: v for k, v in summary.items() if k != "log_history"}
    click.echo(json.dumps(shown, indent=2, default=str))
