"""The Frobenius penalty: Gram form against the dense form, peft layers, refusals."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

from torch import nn  # noqa: E402

from mmat.train.penalty import (  # noqa: E402
    FrobeniusPenalty,
    UnsupportedAdapterError,
    frobenius_sq_dense,
    frobenius_sq_gram,
    iter_lora_factors,
    lora_frobenius_penalty,
    lora_update_norms,
)

pytestmark = pytest.mark.heavy


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gram_form_equals_dense_form_in_value_and_gradient(dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(8, 48, generator=generator, dtype=dtype, requires_grad=True)
    b = torch.randn(40, 8, generator=generator, dtype=dtype, requires_grad=True)
    scaling = 32 / 8
    gram = frobenius_sq_gram(a, b, scaling)
    dense = frobenius_sq_dense(a, b, scaling)
    assert gram.dtype == dtype
    rtol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(gram, dense, rtol=rtol, atol=0)
    grad_a_gram, grad_b_gram = torch.autograd.grad(gram, (a, b))
    grad_a_dense, grad_b_dense = torch.autograd.grad(dense, (a, b))
    for mine, reference in ((grad_a_gram, grad_a_dense), (grad_b_gram, grad_b_dense)):
        # elementwise, relative to the gradient's scale (single entries near zero cancel in fp32)
        torch.testing.assert_close(mine, reference, rtol=rtol, atol=rtol * float(reference.abs().max()))


def test_low_precision_factors_are_computed_in_fp32() -> None:
    a = torch.randn(4, 16).to(torch.bfloat16)
    b = torch.randn(12, 4).to(torch.bfloat16)
    value = frobenius_sq_gram(a, b, 2.0)
    assert value.dtype == torch.float32
    reference = frobenius_sq_dense(a.double(), b.double(), 2.0)
    assert math.isclose(float(value), float(reference), rel_tol=1e-5)


def test_stacked_factors_sum_per_layer_terms_with_their_own_scaling() -> None:
    a = torch.randn(3, 4, 10, dtype=torch.float64)
    b = torch.randn(3, 6, 4, dtype=torch.float64)
    scalings = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    stacked = frobenius_sq_gram(a, b, scalings)
    separate = sum(frobenius_sq_dense(a[i], b[i], float(scalings[i])) for i in range(3))
    torch.testing.assert_close(stacked, separate)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.q = nn.Linear(16, 16)
        self.v = nn.Linear(16, 24)
        self.conv = nn.Conv2d(3, 8, 3)
        self.head = nn.Linear(24, 50)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.v(self.q(self.embed(x))))


def _peft(targets: list[str], **kwargs: object) -> nn.Module:
    torch.manual_seed(0)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False, **kwargs)
    return peft.get_peft_model(Tiny(), config)


def _dense_total(model: nn.Module) -> torch.Tensor:
    """sum ||get_delta_weight||^2 as peft itself computes Delta W (the ground truth)."""
    total = torch.zeros((), dtype=torch.float64)
    for module in model.modules():
        if isinstance(module, peft.tuners.lora.LoraLayer):
            for adapter in module.active_adapters:
                total = total + module.get_delta_weight(adapter).double().pow(2).sum()
    return total


@pytest.mark.parametrize("rslora", [False, True])
def test_penalty_matches_peft_delta_weights_on_linear_embedding_and_conv(rslora: bool) -> None:
    model = _peft(["q", "v", "embed", "conv"], use_rslora=rslora)
    factors = list(iter_lora_factors(model))
    assert {f.module_name.rsplit(".", 1)[-1] for f in factors} == {"q", "v", "embed", "conv"}
    expected_scaling = 8 / math.sqrt(4) if rslora else 8 / 4
    assert all(f.scaling == expected_scaling for f in factors)
    for grouped in (True, False):
        value = lora_frobenius_penalty(model, grouped=grouped)
        assert value.dtype == torch.float32
        assert math.isclose(float(value.detach()), float(_dense_total(model).detach()), rel_tol=1e-5)
    norms = lora_update_norms(model)
    assert len(norms) == 4 and all(v > 0 for v in norms.values())


def test_penalty_gradient_reaches_every_lora_factor_and_nothing_else() -> None:
    model = _peft(["q", "v", "embed"])
    lora_frobenius_penalty(model).backward()
    for name, parameter in model.named_parameters():
        if "lora_" in name:
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
        else:
            assert parameter.grad is None, name


def test_only_active_adapters_count() -> None:
    model = _peft(["q"])
    first = float(lora_frobenius_penalty(model))
    model.add_adapter("other", peft.LoraConfig(r=2, target_modules=["v"], init_lora_weights=False))
    assert math.isclose(float(lora_frobenius_penalty(model)), first, rel_tol=1e-6)
    model.set_adapter("other")
    assert {f.adapter for f in iter_lora_factors(model)} == {"other"}


def test_a_model_without_lora_has_zero_penalty() -> None:
    assert float(lora_frobenius_penalty(Tiny())) == 0.0


def test_dora_is_refused_with_the_fix() -> None:
    model = _peft(["q"], use_dora=True)
    with pytest.raises(UnsupportedAdapterError, match=r"DoRA.*Fix: train with use_dora=False"):
        lora_frobenius_penalty(model)


def test_adalora_is_refused() -> None:
    torch.manual_seed(0)
    config = peft.AdaLoraConfig(target_modules=["q"], total_step=10, init_r=4, target_r=2)
    model = peft.get_peft_model(Tiny(), config)
    with pytest.raises(UnsupportedAdapterError, match="AdaLoRA"):
        lora_frobenius_penalty(model)


def test_the_cached_penalty_follows_training_steps_and_adapter_switches() -> None:
    from mmat.train.penalty import FrobeniusPenalty

    model = _peft(["q", "v", "embed", "conv"])
    cached = FrobeniusPenalty(model)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(3):  # the cached factors are the live parameters: values and gradients stay right
        value = cached()
        assert float(value.detach()) == pytest.approx(float(lora_frobenius_penalty(model).detach()), rel=1e-6)
        value.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.add_adapter("other", peft.LoraConfig(r=2, target_modules=["v"], init_lora_weights=False))
    model.set_adapter("other")
    assert float(cached().detach()) == pytest.approx(float(lora_frobenius_penalty(model).detach()), rel=1e-6)
    assert float(cached().detach()) != pytest.approx(float(value.detach()))


@pytest.mark.parametrize("rslora", [False, True])
def test_closed_form_gradients_equal_autograd(rslora: bool) -> None:
    model = _peft(["q", "v", "embed", "conv"], use_rslora=rslora).double()
    lora = {n: p for n, p in model.named_parameters() if "lora_" in n}
    for p in lora.values():  # a gradient already there (the data loss's) must be added to, not replaced
        p.grad = torch.full_like(p, 0.25)
    (0.3 * lora_frobenius_penalty(model)).backward()
    expected = {n: p.grad.clone() for n, p in lora.items() if p.grad is not None}
    for p in lora.values():
        p.grad = torch.full_like(p, 0.25)
    value = FrobeniusPenalty(model).add_gradients_(0.3)
    assert math.isclose(float(value), float(_dense_total(model)), rel_tol=1e-6)  # P is returned in fp32
    assert set(expected) == set(lora)
    for name, p in lora.items():
        assert p.grad is not None
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-6, atol=1e-6)  # autograd path sums in fp32


def test_closed_form_creates_missing_gradients() -> None:
    model = _peft(["q"])
    FrobeniusPenalty(model).add_gradients_(1.0)
    grads = [p.grad for n, p in model.named_parameters() if "lora_" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
