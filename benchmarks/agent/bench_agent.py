"""Latency of the agent in baseline, ORR and RR mode on the mock model with realistic latencies.

The model is the mock OpenAI-compatible server (real HTTP on 127.0.0.1) answering like a tuned model:
RR runs a typical MMAT trajectory (step 1 calls ocr + label_bbox, step 2 a RAG query, step 3 ends,
then the summarise turn: 4 model calls), ORR one call after all four operators, baseline one call.
Operators are simulated with per-tool latencies (``PAPER_LIKE_LATENCIES_S``), so what is measured is
the agent loop: parallel operator execution, prompt building, HTTP, image encoding.

Checks, per ORR run: wall <= (its model call + its slowest operator) * 1.10.

    .venv/bin/python benchmarks/agent/bench_agent.py [--runs 8] [--model-latency 0.5 1.5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from mmat.agent.models import OpenAIModel
from mmat.agent.result import AgentResult
from mmat.agent.runtime import Agent
from mmat.agent.simulated import PAPER_LIKE_LATENCIES_S, SimulatedToolProvider
from mmat.llm.mock_server import MockTeacherServer
from mmat.schema import ImageRef

HERE = Path(__file__).resolve().parent
IMAGE = ImageRef(path="10131.png", root=str(HERE.parents[2] / "shared" / "data" / "tabmwp" / "tables"))
QUESTION = "How much did Veronica make after taxes? Answer the question using a single word or phrase."
OUTPUTS = {
    "image_caption": "A pay stub for Veronica O'Neil listing total earnings and three taxes.",
    "label_bbox": "{'table': [[0.02, 0.05, 0.98, 0.95]]}",
    "ocr": "Employee | Pay period\nVeronica O'Neil | May\nTotal earnings | $3,900.00\nFederal income tax | $504.30\n"
    "State income tax | $272.00\nOther taxes | $298.35\nTotal taxes | ?\nPay after taxes | ?",
    "face_detection": "There is no face in the image.",
}
RR_STEPS = [
    "<THOUGHT>I need the numbers on the pay stub.</THOUGHT><OPERATOR>ocr, label_bbox</OPERATOR>"
    "<SIGNAL>continue</SIGNAL>",
    "<THOUGHT>Check what pay after taxes means.</THOUGHT><RAG>pay after taxes definition</RAG>"
    "<SIGNAL>continue</SIGNAL>",
    "<THOUGHT>504.30 + 272.00 + 298.35 = 1,074.65; 3,900.00 - 1,074.65 = 2,825.35</THOUGHT><SIGNAL>end</SIGNAL>",
]


def tuned_model_responder(body: dict[str, Any]) -> str:
    """Reply as a tuned model would, from the request alone (RR step k, summary, ORR or baseline)."""
    messages = body["messages"]
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    last = messages[-1]["content"]
    last_text = last if isinstance(last, str) else "".join(p.get("text", "") for p in last)
    if "<ANSWER>" in system:
        return "<THOUGHT>3,900.00 - 1,074.65 = 2,825.35</THOUGHT><ANSWER>The answer is: 2,825.35</ANSWER>"
    if not system:
        return "2,825.35"
    if last_text.startswith("Based on the above information"):
        return "2,825.35"
    k = sum(1 for m in messages if m["role"] == "assistant")
    return RR_STEPS[min(k, len(RR_STEPS) - 1)]


def summarise(results: list[AgentResult]) -> dict[str, Any]:
    walls = sorted(r.latency_s for r in results)
    model = [sum(r.turn_latencies_s) for r in results]
    tools = [sum(r.step_tool_wall_s) for r in results]
    overhead = [r.latency_s - m - t for r, m, t in zip(results, model, tools, strict=True)]
    return {
        "runs": len(results),
        "ok": sum(r.ok for r in results),
        "wall_mean_s": statistics.mean(walls),
        "wall_p50_s": statistics.median(walls),
        "wall_max_s": walls[-1],
        "model_calls": statistics.mean(r.model_calls for r in results),
        "model_time_mean_s": statistics.mean(model),
        "tool_wall_mean_s": statistics.mean(tools),
        "loop_overhead_mean_ms": 1000 * statistics.mean(overhead),
    }


async def bench(model_latency_s: float, spread: float, runs: int) -> dict[str, Any]:
    tools = SimulatedToolProvider(
        OUTPUTS,
        latencies_s=PAPER_LIKE_LATENCIES_S,
        search_text="1. Net pay (take-home pay) is gross pay minus taxes and deductions.",
    )
    out: dict[str, Any] = {"model_latency_median_s": model_latency_s, "spread": spread}
    with MockTeacherServer(latency_median_s=model_latency_s, latency_spread=spread, seed=7) as server:
        server.responder = tuned_model_responder
        model = OpenAIModel(server.base_url, "mmat-tuned")
        agent = Agent(model, tools)
        await agent.answer([IMAGE], QUESTION, mode="baseline")  # warm the connection and the image cache
        by_mode: dict[str, list[AgentResult]] = {"baseline": [], "orr": [], "rr": []}
        for _ in range(runs):
            for mode in by_mode:
                by_mode[mode].append(await agent.answer([IMAGE], QUESTION, mode=mode))  # type: ignore[arg-type]
        # many questions at once: the loop never blocks, so N concurrent RR runs take about one run's time
        started = time.perf_counter()
        concurrent = await asyncio.gather(*(agent.answer([IMAGE], QUESTION, mode="rr") for _ in range(16)))
        out["rr_16_concurrent"] = {
            "wall_s": time.perf_counter() - started,
            "ok": sum(r.ok for r in concurrent),
            "single_run_mean_s": statistics.mean(r.latency_s for r in by_mode["rr"]),
        }
        await model.aclose()
        out["image_encodes"] = model.encoder.encodes
    for mode, results in by_mode.items():
        out[mode] = summarise(results)
    checks = []
    for r in by_mode["orr"]:
        bound = (r.turn_latencies_s[0] + max(t.latency_s for t in r.operator_timings)) * 1.10
        checks.append({"wall_s": r.latency_s, "bound_s": bound, "ok": r.latency_s <= bound})
    out["orr_bound"] = {
        "all_ok": all(c["ok"] for c in checks),
        "worst_wall_over_bound": max(c["wall_s"] / c["bound_s"] for c in checks),
    }
    base = out["baseline"]["wall_mean_s"]
    out["orr_over_baseline"] = out["orr"]["wall_mean_s"] / base
    out["rr_over_baseline"] = out["rr"]["wall_mean_s"] / base
    out["orr_tools_in_series_s"] = sum(v for k, v in PAPER_LIKE_LATENCIES_S.items() if k != "rag")
    return out


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| model call (median) | mode | wall mean | p50 | max | model calls | model time | tool wall | loop overhead | x baseline |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        for mode in ("baseline", "orr", "rr"):
            row = res[mode]
            ratio = 1.0 if mode == "baseline" else res[f"{mode}_over_baseline"]
            lines.append(
                f"| {res['model_latency_median_s']:.2f}s | {mode} | {row['wall_mean_s']:.3f}s | "
                f"{row['wall_p50_s']:.3f}s | {row['wall_max_s']:.3f}s | {row['model_calls']:.0f} | "
                f"{row['model_time_mean_s']:.3f}s | {row['tool_wall_mean_s']:.3f}s | "
                f"{row['loop_overhead_mean_ms']:.1f} ms | {ratio:.2f}x |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--model-latency", type=float, nargs="+", default=[0.5, 1.5])
    parser.add_argument("--spread", type=float, default=0.15, help="log-normal sigma of model latency")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    started = time.time()
    results = [asyncio.run(bench(m, args.spread, args.runs)) for m in args.model_latency]
    report = {
        "machine": f"{platform.node()} {platform.machine()} python {platform.python_version()}",
        "tool_latencies_s": PAPER_LIKE_LATENCIES_S,
        "results": results,
        "seconds": time.time() - started,
    }
    args.out.write_text(json.dumps(report, indent=1))
    print(table(results))
    for res in results:
        bound = res["orr_bound"]
        print(
            f"model {res['model_latency_median_s']}s: ORR bound (call + slowest operator + 10%) "
            f"{'held' if bound['all_ok'] else 'BROKEN'} in every run; worst wall/bound "
            f"{bound['worst_wall_over_bound']:.3f}; images encoded {res['image_encodes']}x; "
            f"ORR with operators in series would take {res['model_latency_median_s'] + res['orr_tools_in_series_s']:.2f}s; "
            f"16 concurrent RR runs: {res['rr_16_concurrent']['wall_s']:.2f}s "
            f"({res['rr_16_concurrent']['ok']} ok) vs {res['rr_16_concurrent']['single_run_mean_s']:.2f}s for one"
        )
    return 0 if all(r["orr_bound"]["all_ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
