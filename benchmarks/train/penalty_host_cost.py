"""Host-side (Python + dispatch) cost of one penalty forward+backward on the 1.1B model's layer layout.

The GPU step of a ~1B LoRA model is launch-bound, so what the penalty costs on the host is what it
adds to the step. This builds TinyLlama's structure (22 blocks, 7 LoRA targets each = 154 LoRA layers)
with tiny widths on the CPU, where the arithmetic is negligible, and times:

- ``walk``: finding the LoRA layers (``iter_lora_factors``)
- ``uncached``: ``lora_frobenius_penalty`` (walks every call), grouped Gram form
- ``per_layer``: the same without stacking equal shapes
- ``cached``: ``FrobeniusPenalty`` (walks once), what the trainer and the ms-swift plugin use

Usage: ``python benchmarks/train/penalty_host_cost.py``.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import peft
import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from mmat.train import penalty


def median_ms(function: Callable[[], object], repeats: int = 50) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    torch.set_num_threads(1)
    config = transformers.LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=176,
        num_hidden_layers=22,
        num_attention_heads=4,
        num_key_value_heads=1,
    )
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = peft.get_peft_model(
        transformers.LlamaForCausalLM(config),
        peft.LoraConfig(r=8, target_modules=targets, init_lora_weights=False),
    )
    cached = penalty.FrobeniusPenalty(model)
    results = {
        "walk": median_ms(lambda: list(penalty.iter_lora_factors(model)), 20),
        "uncached": median_ms(lambda: penalty.lora_frobenius_penalty(model).backward()),
        "per_layer": median_ms(lambda: penalty.lora_frobenius_penalty(model, grouped=False).backward()),
        "cached": median_ms(lambda: cached().backward()),
    }
    layers = sum(1 for _ in penalty.iter_lora_factors(model))
    print(f"{layers} LoRA layers; median ms per call (forward+backward where it applies):")
    for name, value in results.items():
        print(f"  {name:<10} {value:7.2f}")


if __name__ == "__main__":
    main()
