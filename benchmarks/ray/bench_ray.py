"""Ray executor: 1 vs 2 workers on the mock teacher with a CPU-bound operator, and the global RPM limit.

Run: .venv/bin/python benchmarks/ray/bench_ray.py [--samples 48] [--tool-ms 120] [--rpm 300]

Part 1 times the same build (TabMWP sample problems, Rationale with two operator rounds, Reflection,
Integration, Quality) on a local Ray instance with 1 CPU (one worker at a time) and with 2 CPUs (two
workers). The operator is a pure-Python CPU-bound stand-in for OCR (it holds the GIL for
``--tool-ms``), so one worker can use one core and the speed-up shows the executor's scaling, not
onnxruntime's own threads. The teacher is the mock server with 50 ms median latency.

Part 2 runs the build with ``engine.rpm`` set and counts, from the server's request log, the most
requests that arrived in any sliding 60-second window and in any 1-second window.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ray

from mmat.config import RunConfig
from mmat.engine.ray_executor import run_on_ray
from mmat.llm.mock_server import MockTeacherServer
from mmat.sources import load
from mmat.stages.rule_teacher import StageRuleResponder

ROOT = Path(__file__).resolve().parents[2]


def burn_cpu(images: Any, **args: Any) -> str:
    """A CPU-bound operator: hashes for about ``TOOL_MS`` milliseconds, holding the GIL."""
    deadline = time.process_time() + TOOL_MS / 1000
    digest = b"mmat"
    while time.process_time() < deadline:
        digest = hashlib.sha256(digest).digest()
    return f"text read from the image ({digest.hex()[:8]})"


TOOL_MS = 120


def tools_factory(config: RunConfig, cache_dir: Path) -> Any:
    from mmat.tools.runner import ToolRunner

    runner = ToolRunner(config.with_overrides({"tools.enabled": []}), cache_dir=cache_dir)
    runner.register("ocr", "reads the text in the image (CPU-bound stand-in)", burn_cpu)
    return runner


def make_config(base_url: str, samples: int, **engine: Any) -> RunConfig:
    return RunConfig.from_dict(
        {
            "sources": [{"name": "tabmwp", "root": str(ROOT / "examples/data/tabmwp"), "limit": samples}],
            "teacher": {"kind": "openai", "base_url": base_url, "model": "mock", "api_key_env": None},
            "tools": {"enabled": []},
            "stages": {"answer_retries": 0},
            "engine": {"shards": 8, "max_samples_in_flight": 8, **engine},
            "output": {"exports": []},
        }
    )


def one_build(server: MockTeacherServer, samples: int, cpus: int, **engine: Any) -> dict[str, Any]:
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    out = Path(tempfile.mkdtemp(prefix="mmat-ray-bench-"))
    try:
        config = make_config(server.base_url, samples, **engine)
        records = list(load(config.sources[0]))
        first = server.request_count
        started = time.monotonic()
        stats = run_on_ray(config, records, out, tools_factory=tools_factory)
        wall = time.monotonic() - started
        return {
            "wall_s": wall,
            "requests": server.request_count - first,
            "kept": stats.get("kept", 0),
            "rejected": stats.get("rejected", 0),
            "times": [r.time for r in server.requests[first:] if r.path.endswith("/chat/completions")],
            "paths": sorted({r.path for r in server.requests[first:]}),
        }
    finally:
        ray.shutdown()
        shutil.rmtree(out, ignore_errors=True)


def max_in_window(times: list[float], window_s: float) -> int:
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


def main() -> None:
    global TOOL_MS
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=48)
    parser.add_argument("--tool-ms", type=int, default=120)
    parser.add_argument("--rpm", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only-rpm", action="store_true", help="skip the 1-vs-2-worker timing")
    args = parser.parse_args()
    TOOL_MS = args.tool_ms
    results: dict[str, Any] = {"samples": args.samples, "tool_ms": args.tool_ms}
    with MockTeacherServer(latency_median_s=0.05, latency_spread=0.3, seed=1) as server:
        server.responder = StageRuleResponder(operator_rounds=2)
        for cpus in () if args.only_rpm else (1, 2):
            walls = []
            for _ in range(args.repeats):
                run = one_build(server, args.samples, cpus)
                walls.append(run["wall_s"])
                print(
                    f"workers={cpus} wall={run['wall_s']:.2f}s requests={run['requests']} kept={run['kept']}"
                )
            results[f"workers_{cpus}"] = {"median_wall_s": statistics.median(walls), "walls_s": walls}
        if not args.only_rpm:
            results["speedup"] = results["workers_1"]["median_wall_s"] / results["workers_2"]["median_wall_s"]
        limited = one_build(server, args.samples, 2, rpm=args.rpm)
        times = sorted(limited["times"])
        results["rpm_limit"] = {
            "limit_rpm": args.rpm,
            "requests": limited["requests"],
            "duration_s": times[-1] - times[0] if times else 0.0,
            "paths": limited["paths"],
            "max_in_any_60s": max_in_window(times, 60.0),
            "max_in_any_1s": max_in_window(times, 1.0),
            "achieved_rpm": 60.0 * (len(times) - 1) / max(1e-9, times[-1] - times[0])
            if len(times) > 1
            else 0.0,
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
