"""`mmat train` end to end: a tiny random LLaVA trains on exported rows, saves and reloads its adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

from mmat.cli import main  # noqa: E402

pytestmark = [pytest.mark.heavy, pytest.mark.slow]


def _train(tiny_llava: Path, train_export: Path, out: Path, penalty_lambda: float) -> dict:  # type: ignore[type-arg]
    main(
        [
            "train",
            "--data",
            str(train_export),
            "--model",
            str(tiny_llava),
            "--output",
            str(out),
            "--lambda",
            str(penalty_lambda),
            "--max-steps",
            "6",
            "--lr",
            "5e-3",
            "--rank",
            "4",
            "--alpha",
            "8",
            "--no-bf16",
        ]
    )
    return json.loads((out / "mmat_train.json").read_text())


@pytest.fixture(scope="module")
def runs(tiny_llava: Path, train_export: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[float, dict]:  # type: ignore[type-arg]
    root = tmp_path_factory.mktemp("runs")
    return {lam: _train(tiny_llava, train_export, root / f"lambda{lam}", lam) for lam in (0.0, 2.0)}


def test_training_lowers_the_loss_and_logs_the_penalty(runs: dict) -> None:  # type: ignore[type-arg]
    summary = runs[0.0]
    assert summary["steps"] == 6 and summary["rows"] == 4 and summary["rows_skipped"] == 0
    losses = [entry["loss"] for entry in summary["log_history"] if "loss" in entry]
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2
    logged = [entry for entry in summary["log_history"] if "loss" in entry]
    assert all("lora_frobenius" in entry for entry in logged)
    assert logged[-1]["lora_frobenius"] > 0  # the adapters moved
    penalised = [entry for entry in runs[2.0]["log_history"] if "loss" in entry]
    assert penalised[-1]["penalty_loss"] == pytest.approx(2.0 * penalised[-1]["lora_frobenius"])


def test_lambda_gives_a_smaller_update_on_the_same_seed(runs: dict) -> None:  # type: ignore[type-arg]
    assert 0 < runs[2.0]["delta_w_norm"] < runs[0.0]["delta_w_norm"]


def test_the_adapter_saves_and_reloads(runs: dict, tiny_llava: Path) -> None:  # type: ignore[type-arg]
    from transformers import AutoModelForImageTextToText

    from mmat.train.penalty import total_update_norm

    adapter = Path(runs[0.0]["adapter_dir"])
    assert (adapter / "adapter_config.json").is_file()
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8
    # all-linear = the language model's linear layers only, as ms-swift freezes the vision tower
    assert all("vision_tower" not in t and "lm_head" not in t for t in config["target_modules"])
    base = AutoModelForImageTextToText.from_pretrained(tiny_llava)
    reloaded = peft.PeftModel.from_pretrained(base, str(adapter))
    assert total_update_norm(reloaded) == pytest.approx(runs[0.0]["delta_w_norm"], rel=1e-5)


def test_a_tiny_qwen2_vl_trains_in_batches_of_two(
    tiny_qwen2_vl: Path, train_export: Path, tmp_path: Path
) -> None:
    from mmat.train.config import TrainConfig
    from mmat.train.trainer import run_training

    summary = run_training(
        TrainConfig(
            data=str(train_export),
            model=str(tiny_qwen2_vl),
            output_dir=str(tmp_path),
            max_steps=2,
            batch_size=2,
            learning_rate=5e-3,
            bf16=False,
        )
    )
    assert summary["steps"] == 2 and summary["delta_w_norm"] > 0
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "adapter" / "chat_template.jinja").is_file()  # the processor travels with it
