"""ms-swift backend: dataset + `swift sft` command, and the loss plugin (for real when ms-swift is there)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mmat.train.swift_backend import LAMBDA_ENV, LOSS_TYPE, plugin_path

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

pytestmark = pytest.mark.heavy


def _cli(args: list[str]) -> Any:
    from mmat.train.cli import train

    return CliRunner().invoke(train, args, catch_exceptions=False)


def test_print_only_writes_the_dataset_and_the_paper_command(train_export: Path, tmp_path: Path) -> None:
    result = _cli(
        [
            *("--data", str(train_export), "--model", "OpenGVLab/InternVL2_5-8B", "--backend", "swift"),
            *("--output", str(tmp_path), "--lambda", "0.001", "--deepspeed", "zero2", "--rslora"),
        ]
    )
    assert result.exit_code == 0, result.output
    dataset = tmp_path / "swift_data" / "train.jsonl"
    rows = [json.loads(line) for line in dataset.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 4
    assert all(Path(image).is_absolute() and Path(image).is_file() for row in rows for image in row["images"])
    assert rows[0]["messages"][1]["content"].startswith("<image>")
    command = result.output.strip().splitlines()[-1]
    assert command.startswith(
        f"{LAMBDA_ENV}=0.001 swift sft --model OpenGVLab/InternVL2_5-8B --tuner_type lora"
    )
    for setting in (
        "--num_train_epochs 1",
        "--learning_rate 4e-05",
        "--weight_decay 0.1",
        "--per_device_train_batch_size 1",
        "--gradient_accumulation_steps 1",
        "--max_length 16384",
        "--seed 42",
        "--torch_dtype bfloat16",
        "--lora_rank 8 --lora_alpha 32",
        "--target_modules all-linear",
        f"--external_plugins {plugin_path()}",
        f"--loss_type {LOSS_TYPE}",
        "--use_rslora true",
        "deepspeed_zero2.json",
    ):
        assert setting in command, setting


def test_the_shipped_zero2_config_is_zero_stage_2() -> None:
    from mmat.train.config import deepspeed_zero2_path

    config = json.loads(deepspeed_zero2_path().read_text())
    assert config["zero_optimization"]["stage"] == 2
    assert config["bf16"]["enabled"] == "auto"


def test_the_plugin_sits_alone_in_its_folder() -> None:
    # ms-swift puts the plugin's folder on sys.path: no module there may shadow a top-level name
    assert plugin_path().is_file()
    assert sorted(p.name for p in plugin_path().parent.glob("*.py")) == ["__init__.py", plugin_path().name]


def _load_plugin_with_fake_swift(monkeypatch: pytest.MonkeyPatch, cross_entropy: float) -> types.ModuleType:
    """Import the plugin against a stand-in of the two ms-swift names it uses (the real run is below)."""

    class CustomCrossEntropyLoss:
        def __init__(self, args: Any, trainer: Any) -> None:
            self.args, self.trainer = args, trainer

        def __call__(self, outputs: Any, labels: Any, **kwargs: Any) -> Any:
            return torch.tensor(cross_entropy)

    loss_module = types.ModuleType("swift.loss")
    loss_module.loss_map = {}  # type: ignore[attr-defined]
    causal = types.ModuleType("swift.loss.causal_lm")
    causal.CustomCrossEntropyLoss = CustomCrossEntropyLoss  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "swift", types.ModuleType("swift"))
    monkeypatch.setitem(sys.modules, "swift.loss", loss_module)
    monkeypatch.setitem(sys.modules, "swift.loss.causal_lm", causal)
    spec = importlib.util.spec_from_file_location("_mmat_plugin_under_test", plugin_path())
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert loss_module.loss_map[LOSS_TYPE] is module.FrobeniusPenaltyLoss  # type: ignore[attr-defined]
    return module


@pytest.mark.parametrize(
    ("processes", "averaged", "expected_divisor"), [(1, False, 2), (4, True, 8), (4, False, 2)]
)
def test_the_plugin_adds_lambda_p_once_per_optimizer_step(
    monkeypatch: pytest.MonkeyPatch, processes: int, averaged: bool, expected_divisor: int
) -> None:
    from mmat.train.penalty import lora_frobenius_penalty

    module = _load_plugin_with_fake_swift(monkeypatch, cross_entropy=1.5)
    torch.manual_seed(0)
    model = peft.get_peft_model(
        torch.nn.Sequential(torch.nn.Linear(8, 8)),
        peft.LoraConfig(r=2, target_modules=["0"], init_lora_weights=False),
    )
    model.train()
    trainer = types.SimpleNamespace(
        model=model,
        current_gradient_accumulation_steps=2,
        model_accepts_loss_kwargs=True,
        args=types.SimpleNamespace(average_tokens_across_devices=averaged),
        accelerator=types.SimpleNamespace(num_processes=processes, unwrap_model=lambda m: m),
        custom_metrics={"train": _Metrics()},
    )
    monkeypatch.setenv("MMAT_LORA_LAMBDA", "0.25")
    loss_fn = module.FrobeniusPenaltyLoss(trainer.args, trainer)
    loss = loss_fn(None, None, num_items_in_batch=torch.tensor(10))
    penalty = float(lora_frobenius_penalty(model).detach())
    assert float(loss.detach()) == pytest.approx(1.5 + 0.25 * penalty / expected_divisor, rel=1e-5)
    assert trainer.custom_metrics["train"].values["lora_frobenius"] == [pytest.approx(penalty, rel=1e-5)]
    monkeypatch.setenv("MMAT_LORA_LAMBDA", "lots")
    with pytest.raises(ValueError, match="MMAT_LORA_LAMBDA='lots' is not a number"):
        module.FrobeniusPenaltyLoss(trainer.args, trainer)


class _Metrics(dict):  # type: ignore[type-arg]
    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, list[float]] = {}

    def __missing__(self, key: str) -> Any:
        values = self.values.setdefault(key, [])
        return types.SimpleNamespace(update=lambda v: values.append(float(v)))


def _swift_environment() -> dict[str, str] | None:
    """PATH/PYTHONPATH for a `swift` command: this environment's, or the venv in MMAT_SWIFT_VENV."""
    venv = os.environ.get("MMAT_SWIFT_VENV")
    path = os.environ.get("PATH", "")
    if venv:
        path = f"{Path(venv) / 'bin'}{os.pathsep}{path}"
    if shutil.which("swift", path=path) is None:
        return None
    source = str(Path(__file__).resolve().parents[2] / "src")
    return {
        "PATH": path,
        "PYTHONPATH": source,
        "HF_HUB_OFFLINE": "1",
        "MODELSCOPE_OFFLINE": "1",
    }


@pytest.mark.slow
def test_swift_sft_trains_with_the_plugin(train_export: Path, tiny_llava: Path, tmp_path: Path) -> None:
    """Runs the real ms-swift 4.x (`pip install 'mmat[swift]'`, or MMAT_SWIFT_VENV=/path/to/venv)."""
    environment = _swift_environment()
    if environment is None:
        pytest.skip("ms-swift is not installed here; see benchmarks/train/README.md for the recorded run")
    from mmat.train.config import TrainConfig
    from mmat.train.swift_backend import prepare_swift_run

    config = TrainConfig(
        data=str(train_export),
        model=str(tiny_llava),
        output_dir=str(tmp_path),
        max_steps=2,
        bf16=False,
        rank=4,
        alpha=8,
        max_length=2048,
        penalty_lambda=0.5,
        swift_args=["--model_type", "llava1_5_hf", "--dataloader_num_workers", "0"],
    )
    run = prepare_swift_run(config)
    run.env.update(environment)
    assert run.launch() == 0
    logs = [json.loads(line) for line in next(tmp_path.rglob("logging.jsonl")).read_text().splitlines()]
    steps = [entry for entry in logs if "loss" in entry and "lora_frobenius" in entry]
    assert len(steps) == 2
