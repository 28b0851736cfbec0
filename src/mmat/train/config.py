"""The training configuration, with the paper's settings as defaults (SPEC §4, Table 7).

The paper gives LoRA, 1 epoch, lr 4e-5, weight decay 0.1, batch 1, gradient accumulation 1, max length
16384, bf16, seed 42, DeepSpeed ZeRO-2 with ms-swift. It does not give lambda, the LoRA rank, alpha or
targets: rank, alpha and dropout default to ms-swift's (8, 32, 0.05) and targets to every linear layer
of the language model (ms-swift's ``all-linear`` with the vision tower frozen); lambda defaults to
``1e-4`` and is meant to be tuned.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mmat.errors import ConfigError

DEFAULT_LAMBDA = 1e-4


def deepspeed_zero2_path() -> Path:
    """Path of the DeepSpeed ZeRO-2 config shipped with mmat (``"auto"`` values filled by transformers)."""
    return Path(str(resources.files("mmat.train").joinpath("deepspeed_zero2.json")))


class TrainConfig(BaseModel):
    """Everything one ``mmat train`` needs; CLI flags map one to one onto these fields."""

    model_config = ConfigDict(extra="forbid")

    data: str
    model: str
    output_dir: str = "out/train"
    backend: Literal["peft", "swift"] = "peft"
    penalty_lambda: float = Field(DEFAULT_LAMBDA, ge=0.0, description="weight of sum_i ||Delta W_i||_F^2")
    rank: int = Field(8, ge=1)
    alpha: float = Field(32.0, gt=0.0)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    use_rslora: bool = False
    targets: list[str] = Field(default_factory=lambda: ["all-linear"])
    learning_rate: float = Field(4e-5, gt=0.0)
    weight_decay: float = Field(0.1, ge=0.0)
    epochs: float = Field(1.0, gt=0.0)
    max_steps: int = -1
    batch_size: int = Field(1, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(16384, ge=16)
    seed: int = 42
    bf16: bool | None = Field(None, description="None: bf16 when the hardware supports it")
    deepspeed: str | None = Field(None, description="DeepSpeed config path, or 'zero2' for the shipped one")
    logging_steps: int = Field(1, ge=1)
    save_steps: int | None = None
    lr_scheduler: str = "cosine"
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    dataloader_workers: int = Field(0, ge=0)
    gradient_checkpointing: bool = False
    split: str = "train"
    swift_args: list[str] = Field(
        default_factory=list, description="extra `swift sft` arguments, e.g. ['--model_type', 'llava1_5_hf']"
    )

    @field_validator("targets")
    @classmethod
    def _targets_not_empty(cls, value: list[str]) -> list[str]:
        cleaned = [t.strip() for t in value if t.strip()]
        if not cleaned:
            raise ValueError("targets must name at least one module (or 'all-linear')")
        return cleaned

    def deepspeed_config(self) -> str | None:
        """The DeepSpeed config file to use, resolving ``zero2`` to the shipped one."""
        if self.deepspeed in (None, ""):
            return None
        if self.deepspeed == "zero2":
            return str(deepspeed_zero2_path())
        if not Path(self.deepspeed).is_file():
            raise ConfigError(
                f"DeepSpeed config {self.deepspeed} does not exist; pass a JSON file or 'zero2' for mmat's ZeRO-2 config"
            )
        return self.deepspeed
