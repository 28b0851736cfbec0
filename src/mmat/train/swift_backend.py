"""``mmat train --backend swift``: write the dataset for ms-swift and build the ``swift sft`` command.

The rows are checked with the same reader as the PEFT backend and written to one JSONL file in
ms-swift's standard format (``messages`` with ``<image>`` placeholders, per-message ``loss`` flags kept,
absolute image paths so the command runs from any folder). The command carries the paper's settings
(SPEC §4) and the mmat loss plugin; ``lambda`` travels in ``MMAT_LORA_LAMBDA``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from mmat.errors import MissingDependencyError
from mmat.train.config import TrainConfig
from mmat.train.data import read_rows

PLUGIN_FILE = "mmat_frobenius_plugin.py"
LOSS_TYPE = "mmat_frobenius"
LAMBDA_ENV = "MMAT_LORA_LAMBDA"


def plugin_path() -> Path:
    """The plugin file to pass to ``swift sft --external_plugins``."""
    return Path(__file__).resolve().parent / "swift_plugin" / PLUGIN_FILE


@dataclass
class SwiftRun:
    """A prepared ms-swift run: the dataset written, the argument vector and its environment."""

    dataset: Path
    rows: int
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def shell_command(self) -> str:
        """The command as one shell line, environment first."""
        env = " ".join(f"{key}={shlex.quote(value)}" for key, value in self.env.items())
        return (env + " " if env else "") + shlex.join(self.argv)

    def launch(self) -> int:
        """Run ``swift sft`` and return its exit status.

        Raises:
            MissingDependencyError: the ``swift`` command is not installed.
        """
        env = {**os.environ, **self.env}
        executable = shutil.which(self.argv[0], path=env.get("PATH"))
        if executable is None:
            raise MissingDependencyError("ms-swift (the `swift` command)", "swift")
        return subprocess.run([executable, *self.argv[1:]], env=env, check=False).returncode


def write_swift_dataset(config: TrainConfig, out_file: Path) -> int:
    """Write the checked rows of ``config.data`` as ms-swift JSONL with absolute image paths."""
    out_file.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with out_file.open("w", encoding="utf-8") as handle:
        for row in read_rows(config.data, config.split):
            messages = []
            for role, content, trained in row.messages:
                message: dict[str, object] = {"role": role, "content": content}
                if role == "assistant" and not trained:
                    message["loss"] = False
                messages.append(message)
            record: dict[str, object] = {
                "messages": messages,
                "images": [str(p.resolve()) for p in row.images],
            }
            if row.row_id is not None:
                record["id"] = row.row_id
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def swift_arguments(config: TrainConfig, dataset: Path) -> list[str]:
    """``swift sft`` arguments with the paper's settings and the mmat loss plugin."""
    bf16 = True if config.bf16 is None else config.bf16
    argv = [
        "swift",
        "sft",
        "--model",
        config.model,
        "--tuner_type",
        "lora",
        "--dataset",
        str(dataset),
        "--num_train_epochs",
        f"{config.epochs:g}",
        "--learning_rate",
        f"{config.learning_rate:g}",
        "--weight_decay",
        f"{config.weight_decay:g}",
        "--per_device_train_batch_size",
        str(config.batch_size),
        "--gradient_accumulation_steps",
        str(config.grad_accum),
        "--max_length",
        str(config.max_length),
        "--seed",
        str(config.seed),
        "--torch_dtype",
        "bfloat16" if bf16 else "float32",
        "--lora_rank",
        str(config.rank),
        "--lora_alpha",
        f"{config.alpha:g}",
        "--lora_dropout",
        f"{config.dropout:g}",
        "--target_modules",
        *config.targets,
        "--external_plugins",
        str(plugin_path()),
        "--loss_type",
        LOSS_TYPE,
        "--output_dir",
        str(Path(config.output_dir) / "swift"),
        "--logging_steps",
        str(config.logging_steps),
    ]
    if config.use_rslora:
        argv += ["--use_rslora", "true"]
    if config.max_steps > 0:
        argv += ["--max_steps", str(config.max_steps)]
    if config.save_steps:
        argv += ["--save_steps", str(config.save_steps)]
    if config.deepspeed:
        argv += ["--deepspeed", config.deepspeed_config() or "zero2"]
    return argv + list(config.swift_args)


def prepare_swift_run(config: TrainConfig) -> SwiftRun:
    """Write the dataset under ``output_dir`` and return the run to launch or print."""
    dataset = Path(config.output_dir).resolve() / "swift_data" / f"{config.split}.jsonl"
    rows = write_swift_dataset(config, dataset)
    return SwiftRun(
        dataset=dataset,
        rows=rows,
        argv=swift_arguments(config, dataset),
        env={LAMBDA_ENV: f"{config.penalty_lambda:g}"},
    )
