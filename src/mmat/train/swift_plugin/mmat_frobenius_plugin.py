"""ms-swift 4.x loss plugin: cross-entropy plus ``lambda * sum_i ||Delta W_i||_F^2`` on the LoRA updates.

Usage::

    MMAT_LORA_LAMBDA=1e-4 swift sft --train_type lora \\
        --external_plugins $(python -c "import mmat.train.swift_backend as b; print(b.plugin_path())") \\
        --loss_type mmat_frobenius ...

ms-swift imports this file (``--external_plugins``), which registers the loss class under
``mmat_frobenius`` in ``swift.loss.loss_map``; ``--loss_type mmat_frobenius`` makes the trainer call it
as its ``compute_loss_func``. The data term is ms-swift's own token cross-entropy (``loss_scale``
and ``num_items_in_batch`` honoured). With a ``compute_loss_func`` transformers never divides the loss
by the accumulation steps, so the penalty is added as ``lambda * P / accumulation_steps`` per
micro-step (and divided by the number of processes when ms-swift multiplies the loss by it for token
averaging across devices): the accumulated, all-reduced gradient is that of ``lambda * P``.
``P`` is logged as ``lora_frobenius`` beside the loss. ``lambda`` comes from ``MMAT_LORA_LAMBDA``.
"""

from __future__ import annotations

import os
from typing import Any

from swift.loss import loss_map
from swift.loss.causal_lm import CustomCrossEntropyLoss

from mmat.train.penalty import FrobeniusPenalty

LAMBDA_ENV = "MMAT_LORA_LAMBDA"
LOSS_TYPE = "mmat_frobenius"


def penalty_weight(trainer: Any, penalty_lambda: float, num_items_in_batch: Any) -> float:
    """The factor of ``P`` in one micro-step's loss so that an optimizer step sees ``lambda * P``."""
    weight = penalty_lambda / max(1, int(getattr(trainer, "current_gradient_accumulation_steps", 1) or 1))
    args = getattr(trainer, "args", None)
    if (
        getattr(args, "average_tokens_across_devices", False)
        and getattr(trainer, "model_accepts_loss_kwargs", False)
        and num_items_in_batch is not None
    ):
        weight /= max(1, int(trainer.accelerator.num_processes))
    return weight


class FrobeniusPenaltyLoss(CustomCrossEntropyLoss):  # type: ignore[misc]
    """ms-swift's cross-entropy plus the Frobenius penalty on every active LoRA update."""

    def __init__(self, args: Any, trainer: Any) -> None:
        super().__init__(args, trainer)
        raw = os.environ.get(LAMBDA_ENV, "1e-4")
        try:
            self.penalty_lambda = float(raw)
        except ValueError:
            raise ValueError(f"{LAMBDA_ENV}={raw!r} is not a number; set it to e.g. 1e-4") from None
        if self.penalty_lambda < 0:
            raise ValueError(f"{LAMBDA_ENV} must be >= 0, got {self.penalty_lambda}")
        self._penalty: FrobeniusPenalty | None = None

    def __call__(
        self,
        outputs: Any,
        labels: Any,
        *,
        num_items_in_batch: Any = None,
        loss_scale: Any = None,
        **kwargs: Any,
    ) -> Any:
        loss = super().__call__(
            outputs, labels, num_items_in_batch=num_items_in_batch, loss_scale=loss_scale, **kwargs
        )
        trainer = kwargs.get("trainer") or self.trainer
        model = trainer.accelerator.unwrap_model(trainer.model)
        if not model.training:
            return loss
        if self._penalty is None or self._penalty.model is not model:
            self._penalty = FrobeniusPenalty(model)  # finds the LoRA layers once, not every step
        penalty = self._penalty()
        metrics = getattr(trainer, "custom_metrics", None)
        if metrics is not None:
            metrics["train"]["lora_frobenius"].update(penalty.detach())
        if self.penalty_lambda == 0:
            return loss
        weight = penalty_weight(trainer, self.penalty_lambda, num_items_in_batch)
        return loss + weight * penalty.to(loss.device, loss.dtype)


loss_map[LOSS_TYPE] = FrobeniusPenaltyLoss
