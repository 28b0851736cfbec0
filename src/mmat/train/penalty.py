"""The Frobenius penalty on LoRA updates: ``lambda * sum_i ||Delta W_i||_F^2`` (SPEC §4).

For one adapter on one layer ``Delta W = s * B @ A`` with ``A`` of shape ``(r, in)`` and ``B`` of shape
``(out, r)``. Its squared Frobenius norm needs no ``out x in`` product::

    ||s B A||_F^2 = s^2 * tr(A^T B^T B A) = s^2 * sum((B^T B) * (A A^T))

two ``r x r`` Gram matrices, computed in fp32 whatever the parameters' dtype. Layers whose factors have
the same shapes are stacked and handled by one batched product, so a model with hundreds of LoRA layers
costs a handful of kernels, not hundreds.

The scaling ``s`` is read from the peft layer (``lora_alpha / r``, or ``lora_alpha / sqrt(r)`` with
rsLoRA, or whatever ``rank_pattern``/``alpha_pattern`` gave that layer). Linear, Embedding and Conv
(``groups == 1``) LoRA layers are covered; DoRA, the other LoRA variants (aLoRA, Arrow, ...), AdaLoRA,
LoRA on ``nn.MultiheadAttention`` and on raw parameters (``target_parameters``) are refused with
:class:`UnsupportedAdapterError`, because for them ``s * B @ A`` is not the update the layer applies.
LoRA biases (``lora_bias=True``) and ``modules_to_save`` are not part of ``Delta W`` and are not penalised.

This module imports only torch (and peft when a model is walked), so it can be used from an ms-swift
plugin or a benchmark without the rest of mmat's dependencies.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mmat.errors import MmatError


class UnsupportedAdapterError(MmatError):
    """A model holds an adapter whose update is not ``s * B @ A``, so the penalty would be wrong."""

    exit_code = 2


@dataclass(frozen=True)
class LoraFactor:
    """One active adapter on one layer: ``Delta W = scaling * B @ A``.

    ``weight_a`` and ``weight_b`` are the peft parameters themselves; :attr:`a` and :attr:`b` are their
    2-D views ``(r, in)`` and ``(out, r)``, taken anew at each use so that autograd sees the live
    parameters (convolution factors have extra kernel dimensions).
    """

    module_name: str
    adapter: str
    weight_a: torch.Tensor
    weight_b: torch.Tensor
    scaling: float

    @property
    def a(self) -> torch.Tensor:
        weight = self.weight_a
        return weight if weight.dim() == 2 else weight.reshape(weight.shape[0], -1)

    @property
    def b(self) -> torch.Tensor:
        weight = self.weight_b
        return weight if weight.dim() == 2 else weight.reshape(weight.shape[0], -1)


def frobenius_sq_gram(a: torch.Tensor, b: torch.Tensor, scaling: float | torch.Tensor) -> torch.Tensor:
    """``||scaling * b @ a||_F^2`` through the two r x r Gram matrices, in fp32 (or fp64 if given fp64).

    ``a`` is ``(r, in)`` or a stack ``(n, r, in)``; ``b`` is ``(out, r)`` or ``(n, out, r)``;
    ``scaling`` is a float or, for stacks, a tensor of n scalings. Returns a scalar (the sum).
    """
    dtype = torch.float64 if a.dtype == torch.float64 or b.dtype == torch.float64 else torch.float32
    a = a.to(dtype)
    b = b.to(dtype)
    gram_a = a @ a.transpose(-1, -2)  # (.., r, r)
    gram_b = b.transpose(-1, -2) @ b  # (.., r, r)
    per_layer = (gram_a * gram_b).sum(dim=(-1, -2))
    if isinstance(scaling, torch.Tensor):
        scale = scaling.to(device=per_layer.device, dtype=dtype)
        return (per_layer * scale * scale).sum()
    return per_layer.sum() * (float(scaling) ** 2)


def frobenius_sq_dense(a: torch.Tensor, b: torch.Tensor, scaling: float) -> torch.Tensor:
    """The reference form ``||scaling * b @ a||_F^2`` that forms the ``out x in`` product (tests only)."""
    return (scaling * (b @ a)).pow(2).sum()


def _refuse(module_name: str, what: str) -> UnsupportedAdapterError:
    return UnsupportedAdapterError(
        f"LoRA layer {module_name!r} uses {what}; the Frobenius penalty is defined only for plain LoRA "
        "and rsLoRA updates Delta W = s * B @ A. Fix: train with use_dora=False and no LoRA variant "
        "(plain LoRA on Linear, Embedding or Conv layers), or set --lambda 0 to train without the penalty"
    )


def iter_lora_factors(model: nn.Module) -> Iterator[LoraFactor]:
    """Yield every active LoRA adapter of ``model`` (a peft or ms-swift model) as 2-D factors.

    Raises:
        UnsupportedAdapterError: for DoRA, LoRA variants, AdaLoRA, MultiheadAttention or parameter
            LoRA, grouped convolutions, and ZeRO-3 partitioned (empty) factors.
    """
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError as error:  # pragma: no cover - peft is in the train extra
        from mmat.errors import MissingDependencyError

        raise MissingDependencyError("PEFT (LoRA)", "train", error) from None
    for name, candidate in model.named_modules():
        if not isinstance(candidate, LoraLayer):
            continue
        module: Any = candidate
        if getattr(module, "disable_adapters", False):
            continue
        kind = type(module).__name__
        if hasattr(module, "ranknum") or "AdaLora" in kind:
            raise _refuse(name, "AdaLoRA (Delta W = B E A scaled by the rank budget)")
        if kind in {"MultiheadAttention", "ParamWrapper"}:
            raise _refuse(name, f"LoRA on {kind} (the update is not applied as s * B @ A)")
        for adapter in module.active_adapters:
            if adapter not in module.scaling:
                continue
            if getattr(module, "use_dora", {}).get(adapter, False):
                raise _refuse(name, f"DoRA (adapter {adapter!r})")
            variant = getattr(module, "lora_variant", {}).get(adapter)
            if variant is not None:
                raise _refuse(name, f"the LoRA variant {type(variant).__name__} (adapter {adapter!r})")
            if adapter in module.lora_A:
                weight_a = module.lora_A[adapter].weight
                lora_b = module.lora_B[adapter]
                if getattr(lora_b, "groups", 1) != 1:
                    raise _refuse(name, "a grouped convolution (groups > 1)")
                weight_b = lora_b.weight
            elif adapter in module.lora_embedding_A:
                weight_a = module.lora_embedding_A[adapter]
                weight_b = module.lora_embedding_B[adapter]
            else:
                continue
            if weight_a.numel() == 0 or weight_b.numel() == 0:
                raise MmatError(
                    f"LoRA factors of {name!r} are empty: the parameters are partitioned (DeepSpeed ZeRO-3). "
                    "Fix: train with ZeRO-2 (mmat ships train/deepspeed_zero2.json) or without DeepSpeed"
                )
            if weight_b.dim() > 2 and any(size != 1 for size in weight_b.shape[2:]):
                raise _refuse(name, "a LoRA B factor with a kernel larger than 1")
            yield LoraFactor(
                module_name=name,
                adapter=adapter,
                weight_a=weight_a,
                weight_b=weight_b,
                scaling=float(module.scaling[adapter]),
            )


def _group_factors(factors: list[LoraFactor]) -> list[list[LoraFactor]]:
    # The scaling is part of the key so that it stays a Python float: a tensor of scalings would be a
    # host-to-device copy, which synchronises the stream on every step.
    groups: dict[tuple[Any, ...], list[LoraFactor]] = {}
    for factor in factors:
        a, b = factor.a, factor.b
        key = (tuple(a.shape), tuple(b.shape), a.dtype, b.dtype, a.device, b.device, factor.scaling)
        groups.setdefault(key, []).append(factor)
    return list(groups.values())


def _penalty_of_groups(groups: list[list[LoraFactor]]) -> torch.Tensor:
    if not groups:
        return torch.zeros((), dtype=torch.float32)
    device = groups[0][0].weight_a.device
    total: torch.Tensor | None = None
    for members in groups:
        if len(members) == 1:
            term = frobenius_sq_gram(members[0].a, members[0].b, members[0].scaling)
        else:
            stacked_a = torch.stack([m.a for m in members])
            stacked_b = torch.stack([m.b for m in members])
            term = frobenius_sq_gram(stacked_a, stacked_b, members[0].scaling)
        term = term.to(device=device, dtype=torch.float32)
        total = term if total is None else total + term
    assert total is not None
    return total


def lora_frobenius_penalty(model: nn.Module, *, grouped: bool = True) -> torch.Tensor:
    """``sum_i ||Delta W_i||_F^2`` over every active LoRA adapter of ``model``, in fp32, differentiable.

    This walks the model on every call; a training loop should hold a :class:`FrobeniusPenalty`,
    which walks it once.

    Args:
        model: a peft ``PeftModel`` (or any module holding peft LoRA layers, as ms-swift's models do).
        grouped: stack factors of equal shapes and use batched products (same value, fewer kernels).

    Returns:
        A 0-dim fp32 tensor on the device of the first adapter (a zero CPU tensor if there is none).

    Example:
        >>> loss = outputs.loss + 1e-4 * lora_frobenius_penalty(peft_model)  # doctest: +SKIP
    """
    factors = list(iter_lora_factors(model))
    if grouped:
        return _penalty_of_groups(_group_factors(factors))
    return _penalty_of_groups([[factor] for factor in factors])


class FrobeniusPenalty:
    """``sum_i ||Delta W_i||_F^2`` of a model, with the LoRA layers found once and reused every step.

    Walking a large model's modules costs milliseconds of Python per step, which a launch-bound GPU
    step pays in full; this callable walks once and keeps the grouped factors. It rebuilds them when
    the model's active adapters or adapter set change (``set_adapter``, ``add_adapter``) or when
    :meth:`refresh` is called.

    Example:
        >>> penalty = FrobeniusPenalty(peft_model)
        >>> loss = outputs.loss + 1e-4 * penalty()  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._groups: list[list[LoraFactor]] | None = None
        self._signature: tuple[Any, ...] | None = None

    def _current_signature(self) -> tuple[Any, ...]:
        model: Any = self.model
        active = getattr(model, "active_adapters", ())
        active = active() if callable(active) else active
        configs = getattr(model, "peft_config", {})
        return (tuple(active or ()), tuple(sorted(configs)) if isinstance(configs, dict) else ())

    def refresh(self) -> None:
        """Find the LoRA layers again (after changing adapters by hand)."""
        self._groups = _group_factors(list(iter_lora_factors(self.model)))
        self._signature = self._current_signature()

    def groups(self) -> list[list[LoraFactor]]:
        """The grouped factors, found again when the adapters changed."""
        if self._groups is None or self._signature != self._current_signature():
            self.refresh()
        assert self._groups is not None
        return self._groups

    def __call__(self) -> torch.Tensor:
        return _penalty_of_groups(self.groups())

    @torch.no_grad()
    def add_gradients_(self, weight: float) -> torch.Tensor:
        """Add ``weight * dP/dtheta`` to every LoRA factor's ``.grad`` in closed form; return ``P``.

        Per layer ``dP/dA = 2 s^2 (B^T B) A`` and ``dP/dB = 2 s^2 B (A A^T)``: a few batched products
        per group of equal shapes, then one multi-tensor ``_foreach_add_``. This is the gradient of
        backpropagating ``weight * P``, without an autograd graph whose backward touches every factor
        one small kernel at a time (what makes the autograd penalty cost several percent of a
        launch-bound LoRA step). Call it after ``backward``, where gradients live in ``.grad``: not
        under DeepSpeed (its buffers hold the gradients) and not with fp16 loss scaling.

        Returns:
            ``P = sum_i ||Delta W_i||_F^2`` (detached, fp32), for logging.
        """
        groups = self.groups()
        if not groups:
            return torch.zeros((), dtype=torch.float32)
        device = groups[0][0].weight_a.device
        total = torch.zeros((), dtype=torch.float32, device=device)
        grads: list[torch.Tensor] = []
        deltas: list[torch.Tensor] = []
        for members in groups:
            scaling = members[0].scaling
            dtype = torch.float64 if members[0].weight_a.dtype == torch.float64 else torch.float32
            a = torch.stack([m.a for m in members]).to(dtype)
            b = torch.stack([m.b for m in members]).to(dtype)
            gram_a = a @ a.transpose(-1, -2)
            gram_b = b.transpose(-1, -2) @ b
            total += ((gram_a * gram_b).sum() * scaling**2).to(device=device, dtype=torch.float32)
            if weight == 0:
                continue
            coefficient = 2.0 * weight * scaling**2
            grad_a = (gram_b @ a).mul_(coefficient)
            grad_b = (b @ gram_a).mul_(coefficient)
            # unbind gives views without a kernel each; plain 2-D factors need no reshape or cast
            for parameters, stacked in (
                ([m.weight_a for m in members], grad_a),
                ([m.weight_b for m in members], grad_b),
            ):
                for parameter, delta in zip(parameters, stacked.unbind(0), strict=True):
                    if delta.shape != parameter.shape or delta.dtype != parameter.dtype:
                        delta = delta.reshape(parameter.shape).to(parameter.dtype)
                    if parameter.grad is None:
                        parameter.grad = delta.clone()
                    else:
                        grads.append(parameter.grad)
                        deltas.append(delta)
        if grads:
            torch._foreach_add_(grads, deltas)
        return total


@torch.no_grad()
def lora_update_norms(model: nn.Module) -> dict[str, float]:
    """``||Delta W||_F`` of every active adapter, keyed ``module_name[adapter]`` (for reports and tests)."""
    return {
        f"{f.module_name}[{f.adapter}]": float(frobenius_sq_gram(f.a, f.b, f.scaling).sqrt())
        for f in iter_lora_factors(model)
    }


def total_update_norm(model: nn.Module) -> float:
    """``sqrt(sum_i ||Delta W_i||_F^2)``: one number that says how far the adapters moved the model."""
    with torch.no_grad():
        return float(lora_frobenius_penalty(model).sqrt())
