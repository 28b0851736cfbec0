"""LoRA fine-tuning with the Frobenius penalty, on transformers' ``Trainer`` and PEFT.

:class:`FrobeniusPenaltyTrainer` adds ``lambda * sum_i ||Delta W_i||_F^2`` to the model's loss once
per optimizer step, whatever the gradient accumulation: when the data loss is already normalised over
the whole accumulated batch (transformers passes ``num_items_in_batch`` to the model) the Trainer does
not divide it by the accumulation steps, so each micro-step adds ``lambda * P / steps``; when the loss
is a per-micro-batch mean the Trainer divides it, so each micro-step adds ``lambda * P``. Either way
the accumulated gradient of the penalty is that of ``lambda * P``. The penalty is logged next to the
loss as ``lora_frobenius`` (``P``) and ``penalty_loss`` (``lambda * P``).

:func:`run_training` is what ``mmat train --backend peft`` runs: load the checkpoint and its processor,
wrap the model with LoRA on the chosen targets, encode the export with assistant-only labels, train
with the paper's settings and save the adapter.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from mmat.errors import ConfigError, MissingDependencyError, RecordError
from mmat.train.collators import Collator, collator_for
from mmat.train.config import TrainConfig
from mmat.train.data import ConversationEncoder, ExportRows, TrainRow
from mmat.train.penalty import FrobeniusPenalty, total_update_norm

log = logging.getLogger(__name__)

try:
    from transformers import Trainer, TrainingArguments
except ImportError as _error:  # pragma: no cover - the train extra brings transformers
    raise MissingDependencyError("transformers (training)", "train", _error) from None

# Module names that belong to the vision side or to the output head: ``all-linear`` leaves them frozen,
# as ms-swift does with its default ``--freeze_vit true --freeze_aligner true``.
_NOT_LANGUAGE = re.compile(
    r"(^|\.)(vision_tower|vision_model|visual|vision_encoder|vit|multi_modal_projector|mm_projector|"
    r"connector|mlp1|image_newline|lm_head|embed_out|output)(\.|$)"
)


class FrobeniusPenaltyTrainer(Trainer):
    """A ``Trainer`` whose loss is ``L_data + lambda * sum_i ||Delta W_i||_F^2`` over the LoRA updates.

    Args:
        penalty_lambda: the weight ``lambda`` (0 trains plain LoRA, the penalty is still logged).
        *args, **kwargs: passed to :class:`transformers.Trainer`.

    Example:
        >>> trainer = FrobeniusPenaltyTrainer(model=peft_model, args=args, train_dataset=ds,
        ...                                   data_collator=collator, penalty_lambda=1e-4)
        >>> trainer.train()  # doctest: +SKIP
    """

    def __init__(
        self, *args: Any, penalty_lambda: float = 0.0, penalty_mode: str = "auto", **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        if penalty_lambda < 0:
            raise ConfigError(f"penalty lambda must be >= 0, got {penalty_lambda}")
        if penalty_mode not in ("auto", "autograd", "closed_form"):
            raise ConfigError(f"penalty_mode must be auto, autograd or closed_form, got {penalty_mode!r}")
        self.penalty_lambda = float(penalty_lambda)
        self.penalty_mode = penalty_mode
        self._penalty: FrobeniusPenalty | None = None
        # Summed on the device and read at logging time only: a float() per step would synchronise.
        self._penalty_sum: torch.Tensor | None = None
        self._penalty_count = 0

    def loss_already_scaled_for_accumulation(self, num_items_in_batch: Any) -> bool:
        """Whether the Trainer will leave the loss undivided by the accumulation steps (mirrors it)."""
        explicit = getattr(self, "loss_is_scaled_for_ga", None)
        if explicit is not None:
            return bool(explicit)
        return bool(
            (self.model_accepts_loss_kwargs and num_items_in_batch is not None)
            or self.compute_loss_func is not None
        )

    def penalty_tracker(self, model: nn.Module) -> FrobeniusPenalty:
        """The :class:`FrobeniusPenalty` of ``model``: its LoRA layers found once and reused."""
        if self._penalty is None or self._penalty.model is not model:
            self._penalty = FrobeniusPenalty(model)
        return self._penalty

    def penalty_of(self, model: nn.Module) -> torch.Tensor:
        """``sum_i ||Delta W_i||_F^2`` of ``model``."""
        return self.penalty_tracker(model)()

    def uses_closed_form(self) -> bool:
        """Whether the penalty's gradient is added in closed form after ``backward`` (the fast path).

        ``auto`` takes it whenever gradients live in ``.grad`` as plain tensors: not under DeepSpeed or
        FSDP, not with fp16 loss scaling. Otherwise the penalty goes through autograd in the loss.
        """
        if self.penalty_mode == "autograd" or self.penalty_lambda == 0:
            return False
        plain = not (
            getattr(self, "is_deepspeed_enabled", False)
            or getattr(self, "is_fsdp_enabled", False)
            or self.args.fp16
        )
        if self.penalty_mode == "closed_form" and not plain:
            raise ConfigError(
                "penalty_mode closed_form needs gradients in .grad: not with DeepSpeed, FSDP or fp16. "
                "Fix: use penalty_mode auto or autograd"
            )
        return plain

    def training_step(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.uses_closed_form():
            # One optimizer step sums the micro-steps' gradients, so each adds lambda * dP / steps.
            steps = max(1, int(getattr(self, "current_gradient_accumulation_steps", 1)))
            tracker = self.penalty_tracker(self.accelerator.unwrap_model(model))
            value = tracker.add_gradients_(self.penalty_lambda / steps)
            self._record_penalty(value)
            loss = loss + (self.penalty_lambda / steps) * value.to(loss.device, loss.dtype)
        return loss

    def _record_penalty(self, value: torch.Tensor) -> None:
        detached = value.detach()
        self._penalty_sum = detached if self._penalty_sum is None else self._penalty_sum + detached
        self._penalty_count += 1

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        result = super().compute_loss(
            model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )
        if not model.training:
            return result
        loss: Any
        outputs: Any
        loss, outputs = result if return_outputs else (result, None)
        if self.uses_closed_form():
            return result  # training_step adds the penalty's gradient after backward
        with torch.set_grad_enabled(self.penalty_lambda > 0):  # lambda 0: logged only, no backward
            penalty = self.penalty_of(self.accelerator.unwrap_model(model))
        self._record_penalty(penalty)
        if self.penalty_lambda > 0:
            weight = self.penalty_lambda
            if self.loss_already_scaled_for_accumulation(num_items_in_batch):
                weight /= max(1, int(getattr(self, "current_gradient_accumulation_steps", 1)))
            loss = loss + weight * penalty.to(loss.device, loss.dtype)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs and self._penalty_count and self._penalty_sum is not None:
            mean = float(self._penalty_sum) / self._penalty_count
            logs["lora_frobenius"] = mean
            logs["penalty_loss"] = self.penalty_lambda * mean
            self._penalty_sum, self._penalty_count = None, 0
        super().log(logs, *args, **kwargs)


# --------------------------------------------------------------------------------------------------
# Datasets


class EncodedDataset(Dataset[dict[str, torch.Tensor]]):
    """Rows read and encoded on access; a bad row is logged, remembered and replaced by the next one.

    Args:
        rows: a sequence of rows (an :class:`~mmat.train.data.ExportRows` index or a list); reading
            a row may raise :class:`~mmat.errors.RecordError`.
        encoder: turns a row into model inputs with assistant-only labels.
    """

    def __init__(self, rows: Sequence[TrainRow] | ExportRows, encoder: ConversationEncoder) -> None:
        if len(rows) == 0:
            raise ConfigError("the training data holds no row; check --data")
        self.rows = rows
        self.encoder = encoder
        self.skipped: set[int] = set()

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        for step in range(len(self.rows)):
            position = (index + step) % len(self.rows)
            if position in self.skipped:
                continue
            try:
                return self.encoder.encode(self.rows[position]).inputs
            except RecordError as error:
                log.warning("row %s skipped: %s", position, error)
                self.skipped.add(position)
        raise ConfigError("no row of the training data could be read and encoded (see the warnings above)")


# --------------------------------------------------------------------------------------------------
# Model loading and LoRA


def language_linear_targets(model: nn.Module) -> list[str]:
    """Full names of the language model's ``nn.Linear`` layers (no vision tower, projector or head)."""
    names = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name and not _NOT_LANGUAGE.search(name)
    ]
    if not names:
        raise ConfigError(
            f"{type(model).__name__} has no linear layer outside the vision tower and head; pass --targets"
        )
    return names


def resolve_targets(model: nn.Module, targets: list[str]) -> list[str] | str:
    """Expand ``all-linear`` into the language model's linear layers; other names pass through."""
    if targets == ["all-linear"]:
        return language_linear_targets(model)
    return list(targets)


def apply_lora(model: nn.Module, config: TrainConfig) -> Any:
    """Wrap ``model`` with a LoRA adapter (plain or rsLoRA) as ``config`` says; returns the PeftModel."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,  # type: ignore[arg-type]  # peft accepts floats
        lora_dropout=config.dropout,
        use_rslora=config.use_rslora,
        target_modules=resolve_targets(model, config.targets),
        bias="none",
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as error:
        raise ConfigError(f"LoRA targets {config.targets} do not fit this model: {error}") from None


def load_model_and_processor(name: str, *, bf16: bool) -> tuple[nn.Module, Any]:
    """Load a local checkpoint (or one already in the Hugging Face cache) and its processor."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    from mmat.train.processors import load_processor

    try:
        model_config = AutoConfig.from_pretrained(name)
    except OSError as error:
        raise ConfigError(
            f"--model {name}: no checkpoint found ({error}). Fix: pass a local folder holding config.json, "
            "the weights and the processor files, or a model id already in the Hugging Face cache"
        ) from None
    processor = load_processor(name, str(getattr(model_config, "model_type", "")))
    dtype = torch.bfloat16 if bf16 else torch.float32
    multimodal = getattr(processor, "image_processor", None) is not None
    loader = AutoModelForImageTextToText if multimodal else AutoModelForCausalLM
    try:
        model = loader.from_pretrained(name, dtype=dtype)
    except ValueError as error:
        raise ConfigError(
            f"--model {name}: model type {model_config.model_type!r} cannot be loaded by {loader.__name__}: {error}"
        ) from None
    return model, processor


def bf16_available() -> bool:
    """bf16 training is used when a CUDA device supports it (the paper trains in bf16)."""
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def training_arguments(config: TrainConfig, *, bf16: bool) -> TrainingArguments:
    """transformers ``TrainingArguments`` with the paper's settings from ``config``."""
    if config.deepspeed:
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            raise ConfigError(
                "--deepspeed needs DeepSpeed, which is not installed. Fix: pip install deepspeed on the "
                "CUDA machine and launch with `deepspeed` or `accelerate launch`, or drop --deepspeed"
            ) from None
    return TrainingArguments(
        output_dir=config.output_dir,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,
        seed=config.seed,
        data_seed=config.seed,
        bf16=bf16,
        deepspeed=config.deepspeed_config(),
        logging_steps=config.logging_steps,
        save_strategy="steps" if config.save_steps else "no",
        save_steps=config.save_steps or 500,
        report_to=[],
        remove_unused_columns=False,
        dataloader_num_workers=config.dataloader_workers,
        gradient_checkpointing=config.gradient_checkpointing,
        disable_tqdm=True,
    )


def run_training(config: TrainConfig) -> dict[str, Any]:
    """Train a LoRA adapter with the Frobenius penalty and save it under ``config.output_dir``.

    Returns:
        A summary (also written to ``output_dir/mmat_train.json``): steps, first and last logged loss,
        the final ``sum ||Delta W||_F^2`` and the adapter folder.
    """
    from transformers import set_seed

    set_seed(config.seed)
    bf16 = bf16_available() if config.bf16 is None else config.bf16
    if bf16 and not bf16_available():
        raise ConfigError("--bf16 was asked for but no CUDA device with bf16 is present; drop --bf16")
    model, processor = load_model_and_processor(config.model, bf16=bf16)
    encoder = ConversationEncoder(processor, max_length=config.max_length)
    rows = ExportRows(config.data, config.split)
    dataset = EncodedDataset(rows, encoder)
    tokenizer = getattr(processor, "tokenizer", processor)
    model_type = str(getattr(model.config, "model_type", ""))
    collator: Collator = collator_for(model_type, tokenizer.pad_token_id, multimodal=encoder.multimodal)
    peft_model = apply_lora(model, config)
    if config.gradient_checkpointing:
        peft_model.enable_input_require_grads()
    trainer = FrobeniusPenaltyTrainer(
        model=peft_model,
        args=training_arguments(config, bf16=bf16),
        train_dataset=dataset,
        data_collator=collator,
        penalty_lambda=config.penalty_lambda,
    )
    result = trainer.train()
    adapter_dir = Path(config.output_dir) / "adapter"
    peft_model.save_pretrained(str(adapter_dir))
    if hasattr(processor, "save_pretrained"):
        processor.save_pretrained(str(adapter_dir))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    summary = {
        "steps": trainer.state.global_step,
        "rows": len(rows),
        "rows_skipped": len(dataset.skipped),
        "first_loss": losses[0] if losses else math.nan,
        "last_loss": losses[-1] if losses else math.nan,
        "train_loss": result.training_loss,
        "delta_w_norm": total_update_norm(peft_model),
        "penalty_lambda": config.penalty_lambda,
        "adapter_dir": str(adapter_dir),
        "log_history": trainer.state.log_history,
    }
    Path(config.output_dir, "mmat_train.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
