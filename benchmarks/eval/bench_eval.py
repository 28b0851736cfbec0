"""What evaluation itself costs: the runner's overhead, resume, scoring and loading throughput.

1. Pipeline: a synthetic MMStar-shaped TSV (N items, inline PNG images) runs through ``run_mode`` in
   baseline, ORR and RR mode against the mock model server (real HTTP on 127.0.0.1, log-normal
   latency) with simulated operators (``PAPER_LIKE_LATENCIES_S`` scaled by ``--tool-scale``). RR
   answers like a tuned model: step 1 calls ocr + label_bbox, step 2 ends, then the summary (3 model
   calls); ORR runs the four operators, then one call; baseline one call. Reported: wall time,
   items/s, mean item latency, latency ratio to baseline, and the runner's overhead
   (wall - sum(item latency) / concurrency). A second pass measures resume (nothing left to run).
2. Scoring: Dyn-VQA F1-Recall (English, Chinese) on the real shared items, MC option extraction.
3. Loading: decoding a TSV with inline images into the content-addressed cache.

    .venv/bin/python benchmarks/eval/bench_eval.py [--items 64] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import io
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

from mmat.agent.models import OpenAIModel
from mmat.agent.runtime import Agent
from mmat.agent.simulated import PAPER_LIKE_LATENCIES_S, SimulatedToolProvider
from mmat.eval.benchmarks import get_benchmark, load_items
from mmat.eval.dynvqa import load_dynvqa
from mmat.eval.runner import run_mode
from mmat.eval.scorers.choice import infer_option
from mmat.eval.scorers.dynvqa import english_tokenizer, f1_recall
from mmat.llm.mock_server import MockTeacherServer, request_text

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared" / "data" / "dynvqa"


def responder(body: dict[str, Any]) -> str:
    system = request_text(body, "system")
    if "<ANSWER>" in system:
        return "<THOUGHT>The operators show the answer.</THOUGHT><ANSWER>The answer is: B</ANSWER>"
    if "<THOUGHT>" in system:
        last = [m for m in body["messages"] if m["role"] == "user"][-1]
        if "summarize and give the answer" in request_text({"messages": [last]}):
            return "B"
        if not any(m["role"] == "assistant" for m in body["messages"]):
            return "<THOUGHT>Read the chart.</THOUGHT><OPERATOR>ocr, label_bbox</OPERATOR><SIGNAL>continue</SIGNAL>"
        return "<THOUGHT>The second bar is tallest.</THOUGHT><SIGNAL>end</SIGNAL>"
    return "B"


def make_tsv(path: Path, n: int) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["index", "question", "A", "B", "C", "D", "answer", "category", "image"])
        for i in range(n):
            buffer = io.BytesIO()
            Image.new("RGB", (448, 448), (i % 256, (7 * i) % 256, 90)).save(buffer, format="PNG")
            image = base64.b64encode(buffer.getvalue()).decode()
            writer.writerow([str(i), f"Which bar is tallest? ({i})", "1st", "2nd", "3rd", "4th",
                             "B" if i % 4 else "C", "chart", image])  # fmt: skip
    return path


async def pipeline(
    items: int, concurrency: int, model_latency: float, tool_scale: float, work: Path
) -> dict[str, Any]:
    tsv = make_tsv(work / "MMStar.tsv", items)
    started = time.perf_counter()
    loaded = load_items(get_benchmark("MMStar"), tsv, cache_dir=work / "images")
    load_s = time.perf_counter() - started
    bench = get_benchmark("MMStar")
    latencies = {k: v * tool_scale for k, v in PAPER_LIKE_LATENCIES_S.items()}
    tools = SimulatedToolProvider(
        {"image_caption": "A bar chart.", "label_bbox": "{'bar': [[0.1, 0.2, 0.3, 0.9]]}", "ocr": "10 40 20 30",
         "face_detection": "There is no face in the image."}, latencies_s=latencies,
    )  # fmt: skip
    out: dict[str, Any] = {"items": items, "concurrency": concurrency, "tsv_load_s": round(load_s, 3)}
    with MockTeacherServer(latency_median_s=model_latency, latency_spread=0.25, seed=1) as server:
        server.responder = responder
        agent = Agent(OpenAIModel(server.base_url, "mmat-tuned"), tools)
        for mode in ("baseline", "orr", "rr"):
            began = time.perf_counter()
            summary = await run_mode(agent, bench, loaded, mode, work / "out", concurrency=concurrency)
            wall = time.perf_counter() - began
            lat = summary.score["latency"]
            began = time.perf_counter()
            resumed = await run_mode(agent, bench, loaded, mode, work / "out", concurrency=concurrency)
            resume_s = time.perf_counter() - began
            out[mode] = {
                "wall_s": round(wall, 3),
                "items_per_s": round(items / wall, 2),
                "mean_item_latency_s": lat["mean_s"],
                "p90_item_latency_s": lat["p90_s"],
                "model_calls_per_item": lat["mean_model_calls"],
                "overhead_s": round(wall - lat["total_s"] / concurrency, 3),
                "accuracy": summary.score["headline_value"],
                "errors": summary.errors,
                "resume_wall_s": round(resume_s, 3),
                "resume_ran": resumed.ran,
            }
    for mode in ("orr", "rr"):
        out[mode]["latency_x_baseline"] = round(
            out[mode]["mean_item_latency_s"] / out["baseline"]["mean_item_latency_s"], 2
        )
    return out


def scoring() -> dict[str, Any]:
    en = load_dynvqa(SHARED / "DynVQA_en.202406.head60.jsonl")
    zh = load_dynvqa(SHARED / "DynVQA_zh.202406.head30.jsonl")
    f1_recall("warm up", ["warm"], "en"), f1_recall("预热", ["预热"], "zh")
    results: dict[str, Any] = {"tokenizer": english_tokenizer()[1]}
    for name, items, repeat in (("dynvqa_en", en, 20), ("dynvqa_zh", zh, 20)):
        preds = [str(item.answers[-1]) for item in items]
        began = time.perf_counter()
        for _ in range(repeat):
            for item, pred in zip(items, preds, strict=True):
                f1_recall(pred, item.meta["gold_raw"], item.meta["lang"])
        elapsed = time.perf_counter() - began
        results[f"{name}_items_per_s"] = round(repeat * len(items) / elapsed)
    choices = {"A": "a red apple", "B": "a green pear", "C": "a yellow banana", "D": "a purple plum"}
    answers = [
        "The answer is (B).",
        "a yellow banana",
        "A or C",
        "I think it is D because it is purple",
    ] * 2500
    began = time.perf_counter()
    for answer in answers:
        infer_option(answer, choices)
    results["mc_extraction_items_per_s"] = round(len(answers) / (time.perf_counter() - began))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--model-latency", type=float, default=0.3, help="median seconds per model call")
    parser.add_argument("--tool-scale", type=float, default=0.5, help="factor on PAPER_LIKE_LATENCIES_S")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = {
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "python": sys.version.split()[0],
            "settings": {"model_latency_s": args.model_latency, "tool_scale": args.tool_scale,
                         "tool_latencies_s": {k: v * args.tool_scale for k, v in PAPER_LIKE_LATENCIES_S.items()}},
            "pipeline": asyncio.run(pipeline(args.items, args.concurrency, args.model_latency, args.tool_scale, Path(tmp))),
            "scoring": scoring(),
        }  # fmt: skip
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
