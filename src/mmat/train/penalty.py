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
    """One active adapter on one layer: ``Delta W = scaling * B @ A`` (A and B flattened to 2-D)."""

    module_name: str
    adapter: str
    a: torch.Tensor  # (r, in)
    b: torch.Tensor  # (out, r)
    scaling: float


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
            rank = weight_a.shape[0]
            yield LoraFactor(
                module_name=name,
                adapter=adapter,
                a=weight_a.reshape(rank, -1),
                b=weight_b.reshape(weight_b.shape[0], rank),
                scaling=float(module.scaling[adapter]),
            )


def lora_frobenius_penalty(model: nn.Module, *, grouped: bool = True) -> torch.Tensor:
    """``sum_i ||Delta W_i||_F^2`` over every active LoRA adapter of ``model``, in fp32, differentiable.

    Args:
        model: a peft ``PeftModel`` (or any module holding peft LoRA layers, as ms-swift's models do).
        grouped: stack factors of equal shapes and use batched products (same value, fewer kernels).

    Returns:
        A 0-dim fp32 tensor on the device of the first adapter (a zero CPU tensor if there is none).

    Example:
        >>> loss = outputs.loss + 1e-4 * lora_frobenius_penalty(peft_model)  # doctest: +SKIP
    """
    factors = list(iter_lora_factors(model))
    if not factors:
        return torch.zeros((), dtype=torch.float32)
    device = factors[0].a.device
    if not grouped:
        terms = [frobenius_sq_gram(f.a, f.b, f.scaling).to(device) for f in factors]
        return torch.stack(terms).sum()
    # The scaling is part of the key so that it stays a Python float: a tensor of scalings would be a
    # host-to-device copy, which synchronises the stream on every step.
    groups: dict[tuple[Any, ...], list[LoraFactor]] = {}
    for factor in factors:
        key = (
            tuple(factor.a.shape),
            tuple(factor.b.shape),
            factor.a.dtype,
            factor.b.dtype,
            factor.a.device,
            factor.b.device,
            factor.scaling,
        )
        groups.setdefault(key, []).append(factor)
    total = torch.zeros((), dtype=torch.float32, device=device)
    for members in groups.values():
        if len(members) == 1:
            term = frobenius_sq_gram(members[0].a, members[0].b, members[0].scaling)
        else:
            stacked_a = torch.stack([m.a for m in members])
            stacked_b = torch.stack([m.b for m in members])
            term = frobenius_sq_gram(stacked_a, stacked_b, members[0].scaling)
        total = total + term.to(device=device, dtype=torch.float32)
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
