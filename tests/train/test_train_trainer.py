"""FrobeniusPenaltyTrainer: the penalty under gradient accumulation, both loss normalisations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

from mmat.train.collators import TextCollator  # noqa: E402
from mmat.train.penalty import lora_frobenius_penalty  # noqa: E402
from mmat.train.trainer import FrobeniusPenaltyTrainer  # noqa: E402

pytestmark = pytest.mark.heavy


def _rows(lengths: list[int]) -> list[dict[str, Any]]:
    generator = torch.Generator().manual_seed(1)
    rows = []
    for length in lengths:
        ids = torch.randint(3, 64, (1, length), generator=generator)
        labels = ids.clone()
        labels[:, :2] = -100  # a "prompt" that is not trained
        rows.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    return rows


class _Rows(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.rows[index]


def _train(
    tmp_path: Path,
    rows: list[dict[str, Any]],
    *,
    batch: int,
    accumulation: int,
    penalty_lambda: float,
    normalised: bool,
    penalty_mode: str = "auto",
) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    base = transformers.LlamaForCausalLM(config)
    lora = peft.LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    model = peft.get_peft_model(base, lora)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / f"b{batch}a{accumulation}"),
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation,
        max_steps=2,
        learning_rate=0.05,
        optim="sgd",  # Adam's first steps are scale-free and would hide a wrongly scaled penalty
        weight_decay=0.0,
        max_grad_norm=0.0,
        lr_scheduler_type="constant",
        seed=0,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        remove_unused_columns=False,
        use_cpu=True,
    )
    trainer = FrobeniusPenaltyTrainer(
        model=model,
        args=args,
        train_dataset=_Rows(rows),
        data_collator=TextCollator(pad_token_id=0),
        penalty_lambda=penalty_lambda,
        penalty_mode=penalty_mode,
    )
    if not normalised:
        # The data loss is then a per-micro-batch mean that the Trainer divides by the accumulation steps.
        trainer.model_accepts_loss_kwargs = False
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logged and all("lora_frobenius" in entry and "penalty_loss" in entry for entry in logged)
    return {name: p.detach().clone() for name, p in model.named_parameters() if "lora_" in name}


@pytest.mark.parametrize(
    ("normalised", "lengths"),
    [
        (True, [7, 12]),  # num_items_in_batch: exact even with different numbers of trained tokens
        (False, [10, 10]),  # per-micro-batch mean: equal only with equal token counts, as for any loss
    ],
)
def test_batch_two_equals_batch_one_with_two_accumulation_steps(
    tmp_path: Path, normalised: bool, lengths: list[int]
) -> None:
    rows = _rows(lengths)
    together = _train(tmp_path, rows, batch=2, accumulation=1, penalty_lambda=0.5, normalised=normalised)
    accumulated = _train(tmp_path, rows, batch=1, accumulation=2, penalty_lambda=0.5, normalised=normalised)
    without = _train(tmp_path, rows, batch=2, accumulation=1, penalty_lambda=0.0, normalised=normalised)
    for name in together:
        torch.testing.assert_close(accumulated[name], together[name], rtol=1e-4, atol=1e-6)
    # the penalty really moved the weights, so the equality above tests its accumulation
    assert max(float((together[n] - without[n]).abs().max()) for n in together) > 1e-3


@pytest.mark.parametrize("normalised", [True, False])
def test_closed_form_and_autograd_penalties_train_the_same_weights(tmp_path: Path, normalised: bool) -> None:
    rows = _rows([10, 10])
    fast = _train(tmp_path, rows, batch=1, accumulation=2, penalty_lambda=0.5, normalised=normalised)
    slow = _train(
        tmp_path,
        rows,
        batch=1,
        accumulation=2,
        penalty_lambda=0.5,
        normalised=normalised,
        penalty_mode="autograd",
    )
    for name in fast:
        torch.testing.assert_close(fast[name], slow[name], rtol=1e-4, atol=1e-6)


def test_penalty_shrinks_the_update_compared_with_lambda_zero(tmp_path: Path) -> None:
    rows = _rows([9, 9])
    plain = _train(tmp_path, rows, batch=1, accumulation=1, penalty_lambda=0.0, normalised=True)
    penalised = _train(tmp_path, rows, batch=1, accumulation=1, penalty_lambda=0.5, normalised=True)

    def update_norm(weights: dict[str, torch.Tensor]) -> float:
        total = 0.0
        for name, a in weights.items():
            if ".lora_A." in name:
                b = weights[name.replace(".lora_A.", ".lora_B.")]
                total += float((2.0 * b @ a).pow(2).sum())
        return total**0.5

    assert update_norm(penalised) < update_norm(plain)


def test_the_penalty_is_not_added_in_evaluation(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    model = peft.get_peft_model(
        transformers.LlamaForCausalLM(config),
        peft.LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False),
    )
    args = transformers.TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    trainer = FrobeniusPenaltyTrainer(model=model, args=args, penalty_lambda=10.0, penalty_mode="autograd")
    batch = TextCollator(0)(_rows([6]))
    model.eval()
    with torch.no_grad():
        evaluated = trainer.compute_loss(model, dict(batch))
        plain = model(**batch).loss
    assert float(evaluated) == pytest.approx(float(plain))
    model.train()
    trained = trainer.compute_loss(model, dict(batch))
    expected = float(plain) + 10.0 * float(lora_frobenius_penalty(model))
    assert float(trained) == pytest.approx(expected, rel=1e-4)


def test_negative_lambda_is_refused(tmp_path: Path) -> None:
    from mmat.errors import ConfigError

    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    model = transformers.LlamaForCausalLM(config)
    args = transformers.TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    with pytest.raises(ConfigError, match="lambda must be >= 0"):
        FrobeniusPenaltyTrainer(model=model, args=args, penalty_lambda=-1.0)


def test_deepspeed_without_deepspeed_says_how_to_get_it(tmp_path: Path) -> None:
    import importlib.util

    from mmat.errors import ConfigError
    from mmat.train.config import TrainConfig
    from mmat.train.trainer import training_arguments

    if importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("DeepSpeed is installed here")
    config = TrainConfig(data="d", model="m", output_dir=str(tmp_path), deepspeed="zero2")
    with pytest.raises(ConfigError, match="pip install deepspeed"):
        training_arguments(config, bf16=False)
