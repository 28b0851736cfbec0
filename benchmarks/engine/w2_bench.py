"""W2: 1,000 records x (Rationale with 2 operator rounds -> Reflection -> Integration), side by side.

mmat (the engine running the real stages) against Bespoke Curator (the same chain as chained
``curator.LLM`` stages, operator rounds flattened between them) and, when its venv exists, NeMo Data
Designer (the chain as dependent LLM columns). All talk to one mock teacher server in this process
(rule-based stage replies, log-normal latency) at the same request concurrency; operators take a fixed
mock latency. Reports records/s (median over --runs) and client CPU seconds.

    .venv/bin/python benchmarks/engine/w2_bench.py --n 1000 --runs 3
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from mmat.config import SourceConfig
from mmat.llm.mock_server import MockTeacherServer
from mmat.schema import Sample
from mmat.sources import load
from mmat.stages.prompts import load_prompt
from mmat.stages.rule_teacher import StageRuleResponder
from mmat.wire import render_question, render_summarize

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = HERE / "_work" / "w2"
OPERATORS = {"ocr": "reads the text in the image", "image_caption": "describes the image"}
VENVS = {
    "curator": HERE / "venv" / "bin" / "python",
    "datadesigner": HERE / "w2_dd" / "venv" / "bin" / "python",
}


def make_records(n: int) -> tuple[Path, Path]:
    """n distinct TabMWP-based records (numeric answers), as mmat Samples and as pre-rendered rows."""
    base = [
        s
        for s in load(SourceConfig(name="tabmwp", root=str(ROOT / "examples" / "data" / "tabmwp")))
        if isinstance(s, Sample) and s.qas[0].answer_type.value == "number"
    ]
    rationale = load_prompt("rationale")
    general = load_prompt("general_reflection")
    math = load_prompt("math_reflection")
    system = rationale.render_system(
        operators="\n".join(f"- {k}: {v}" for k, v in OPERATORS.items()),
        rag_rule=rationale.extra["rag_rules"]["enabled"],
    )
    urls: dict[str, str] = {}
    WORK.mkdir(parents=True, exist_ok=True)
    samples_path, rows_path = WORK / f"records-{n}.jsonl", WORK / f"rows-{n}.jsonl"
    with samples_path.open("w") as samples, rows_path.open("w") as rows:
        for i in range(n):
            sample = base[i % len(base)].model_copy(deep=True)
            sample.id = f"w2/{i}"
            qa = sample.qas[0]
            qa.templated_question = f"{qa.templated_question} (record {i})"
            samples.write(sample.model_dump_json() + "\n")
            image = Path(sample.images[0].root or "") / sample.images[0].path
            if str(image) not in urls:
                urls[str(image)] = "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode()
            first = rationale.render("first", question=qa.templated_question, answer=qa.answer, feedback="")
            row = {
                "id": sample.id,
                "image_data_url": urls[str(image)],
                "system": system,
                "first": first.replace("\n\n", "\n"),
                "question_turn": render_question(qa.templated_question, image_placeholders=1),
                "summarize": rationale.render("summarize", summarize=render_summarize(qa.question)),
                "general_system": general.system,
                "general_head": general.render(
                    "judge", question=qa.templated_question, answer=qa.answer, conversation=""
                ),
                "math_system": math.system,
                "math_head": math.render(
                    "judge", question=qa.templated_question, answer=qa.answer, conversation=""
                ),
            }
            rows.write(json.dumps(row) + "\n")
    return samples_path, rows_path


def run_peer(
    peer: str, server: MockTeacherServer, args: argparse.Namespace, run: int, paths: tuple[Path, Path]
) -> dict:
    server.reset()
    out = WORK / f"{peer}-{args.n}-{run}"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    common = [
        "--base-url",
        server.base_url,
        "--concurrency",
        str(args.concurrency),
        "--tool-latency",
        str(args.tool_latency),
    ]
    if peer == "mmat":
        command = [
            sys.executable,
            str(HERE / "w2_worker_mmat.py"),
            "--records",
            str(paths[0]),
            "--out",
            str(out),
            *common,
        ]
    elif peer == "curator":
        command = [
            str(VENVS["curator"]),
            str(HERE / "w2_worker_curator.py"),
            "--records",
            str(paths[1]),
            "--cache",
            str(out),
            *common,
        ]
    else:
        command = [
            str(VENVS["datadesigner"]),
            str(HERE / "w2_worker_datadesigner.py"),
            "--records",
            str(paths[1]),
            "--out",
            str(out),
            *common,
        ]
    env = {
        **os.environ,
        "TIKTOKEN_CACHE_DIR": str(
            HERE / "venv" / "lib/python3.11/site-packages/litellm/litellm_core_utils/tokenizers"
        ),
        "TELEMETRY_ENABLED": "false",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"tool": peer, "error": (done.stderr or done.stdout)[-1500:]}
    result = json.loads(lines[-1])
    result["server_requests"] = server.request_count
    result["records_per_s"] = args.n / result["wall_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.1, help="mock teacher median latency (s)")
    parser.add_argument("--tool-latency", type=float, default=0.03, help="mock operator latency (s)")
    parser.add_argument("--peers", default="mmat,curator,datadesigner")
    parser.add_argument("--timeout", type=int, default=1800)
    args = parser.parse_args()
    paths = make_records(args.n)
    peers = [p for p in args.peers.split(",") if p == "mmat" or VENVS[p].exists()]
    results: dict[str, list[dict]] = {p: [] for p in peers}
    with MockTeacherServer(latency_median_s=args.latency, latency_spread=0.3, seed=7) as server:
        server.responder = StageRuleResponder(operator_rounds=2)
        for run in range(args.runs):
            for peer in peers:
                result = run_peer(peer, server, args, run, paths)
                results[peer].append(result)
                print(json.dumps(result), flush=True)
    summary = {}
    for peer, runs in results.items():
        ok = [r for r in runs if "error" not in r]
        if ok:
            summary[peer] = {
                "records_per_s_median": round(statistics.median(r["records_per_s"] for r in ok), 2),
                "cpu_s_median": round(statistics.median(r["cpu_s"] for r in ok), 2),
                "requests_median": statistics.median(r["server_requests"] for r in ok),
                "runs": len(ok),
            }
        else:
            summary[peer] = {"error": runs[-1].get("error", "")[-600:]}
    report = {
        "n": args.n,
        "concurrency": args.concurrency,
        "latency_s": args.latency,
        "tool_latency_s": args.tool_latency,
        "summary": summary,
    }
    (WORK / f"w2_results-{args.n}.json").write_text(json.dumps({"report": report, "runs": results}, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
