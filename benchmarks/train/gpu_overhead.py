"""Time LoRA training steps with and without the Frobenius penalty; print the overhead in percent.

A randomly initialised Llama-like model (default ~1.1B parameters, TinyLlama's shape) in bf16 with LoRA
r=8 on every linear layer of every block, one sequence of 2048 tokens per step (the paper's batch 1),
AdamW on the LoRA parameters. Modes, interleaved round by round so that clock drift hits all alike:

- ``plain``: loss = cross-entropy
- ``closed_form``: the trainer's default: plain backward, then ``FrobeniusPenalty.add_gradients_``
  adds lambda * dP/dtheta in closed form (batched Gram products, one ``_foreach_add_``)
- ``cached``: loss + lambda * sum ||s B A||_F^2 with ``FrobeniusPenalty`` (the trainer's autograd path:
  LoRA layers found once, factors of equal shape stacked, Gram form)
- ``gram``: the same through ``lora_frobenius_penalty`` (walks the model's modules every step)
- ``gram_per_layer``: the same penalty one layer at a time (no stacking)
- ``dense``: the penalty by forming every s B A (what the Gram form avoids)

Usage (GPU): ``python benchmarks/train/gpu_overhead.py``; CPU smoke test:
``python benchmarks/train/gpu_overhead.py --tiny``. Writes ``$OUT/gpu_overhead_seq{N}.json`` when ``OUT`` is set.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import time
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def import_penalty() -> types.ModuleType:
    """Import mmat.train.penalty from this checkout, even where mmat's own dependencies are missing."""
    sys.path.insert(0, str(ROOT / "src"))
    try:
        return importlib.import_module("mmat.train.penalty")
    except ImportError:  # e.g. no pydantic on the GPU image: load the two modules the penalty needs
        package = types.ModuleType("mmat")
        package.__path__ = [str(ROOT / "src" / "mmat")]
        sys.modules["mmat"] = package
        return importlib.import_module("mmat.train.penalty")


def dense_penalty(model: torch.nn.Module, penalty: types.ModuleType) -> torch.Tensor:
    terms = [(f.scaling * (f.b.float() @ f.a.float())).pow(2).sum() for f in penalty.iter_lora_factors(model)]
    return torch.stack(terms).sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a few-layer model for a CPU smoke test")
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--intermediate", type=int, default=5632)
    parser.add_argument("--layers", type=int, default=22)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per mode per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--penalty-lambda", type=float, default=1e-4)
    parser.add_argument(
        "--modes", default="plain,closed_form,cached,gram,gram_per_layer,dense", help="comma-separated"
    )
    args = parser.parse_args()
    if args.tiny:
        args.hidden, args.intermediate, args.layers, args.heads, args.kv_heads = 64, 128, 2, 4, 2
        args.vocab, args.seq, args.steps, args.rounds, args.warmup = 256, 64, 2, 2, 1

    import peft
    import transformers

    penalty = import_penalty()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=max(4096, args.seq),
    )
    base = transformers.LlamaForCausalLM(config).to(device=device, dtype=dtype)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lora = peft.LoraConfig(r=args.rank, lora_alpha=32, lora_dropout=0.0, target_modules=targets)
    model = peft.get_peft_model(base, lora)
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()  # LoRA factors in fp32, as peft's autocast keeps them
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=4e-5, weight_decay=0.1)
    ids = torch.randint(0, args.vocab, (1, args.seq), device=device)
    n_params = sum(p.numel() for p in model.parameters())
    n_lora_layers = sum(1 for _ in penalty.iter_lora_factors(model))

    cached = penalty.FrobeniusPenalty(model)

    def penalty_of(mode: str) -> torch.Tensor | None:
        if mode == "cached":
            return cached()
        if mode == "gram":
            return penalty.lora_frobenius_penalty(model)
        if mode == "gram_per_layer":
            return penalty.lora_frobenius_penalty(model, grouped=False)
        if mode == "dense":
            return dense_penalty(model, penalty)
        return None

    def step(mode: str) -> float:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = model(input_ids=ids, labels=ids).loss
        extra = penalty_of(mode)
        if extra is not None:
            loss = loss + args.penalty_lambda * extra
        loss.backward()
        if mode == "closed_form":
            cached.add_gradients_(args.penalty_lambda)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def penalty_only(mode: str, repeats: int) -> float:
        times = []
        for _ in range(repeats):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            if mode == "closed_form":
                cached.add_gradients_(args.penalty_lambda)
            else:
                value = penalty_of(mode)
                assert value is not None
                value.backward()
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
            optimizer.zero_grad(set_to_none=True)
        return statistics.median(times)

    modes = args.modes.split(",")
    if modes[0] != "plain":
        raise SystemExit("--modes must start with plain (the baseline)")
    for mode in modes:
        for _ in range(args.warmup):
            step(mode)
    samples: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(args.rounds):
        for mode in modes:
            samples[mode] += [step(mode) for _ in range(args.steps)]
    median = {mode: statistics.median(values) for mode, values in samples.items()}
    result = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "dtype": str(dtype),
        "params": n_params,
        "lora_layers": n_lora_layers,
        "seq": args.seq,
        "rank": args.rank,
        "steps_per_mode": len(samples["plain"]),
        "median_step_s": median,
        "overhead_pct": {
            mode: 100.0 * (median[mode] - median["plain"]) / median["plain"]
            for mode in modes
            if mode != "plain"
        },
        "penalty_fwd_bwd_s": {mode: penalty_only(mode, 10) for mode in modes[1:]},
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
    }
    print(json.dumps(result, indent=2))
    print(
        f"{result['device']}: {n_params / 1e9:.2f}B params, {n_lora_layers} LoRA layers, seq {args.seq}: "
        f"step {median['plain'] * 1e3:.1f} ms plain, {median['closed_form'] * 1e3:.1f} ms with the penalty "
        f"(closed form, the trainer's default) -> overhead {result['overhead_pct'].get('closed_form', float('nan')):+.2f}%; "
        f"autograd: {result['overhead_pct'].get('cached', float('nan')):+.2f}%"
    )
    out = os.environ.get("OUT")
    if out:
        Path(out, f"gpu_overhead_seq{args.seq}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
