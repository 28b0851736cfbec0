"""mmat's engine vs Bespoke Curator, side by side against the same mock teacher server.

Workloads (issue #4): W1 5,000 single-call vision requests at concurrency 64 and 200 ms median
latency; W3 goodput under a 1,200 RPM server limit; W4 SIGKILL at 50 % then resume (wasted requests);
W5 warm rerun (requests sent). Each runs ``--repeats`` times; the README reports medians.

Set-up (once)::

    python3 -m venv benchmarks/engine/venv
    benchmarks/engine/venv/bin/pip install bespokelabs-curator
    .venv/bin/python benchmarks/engine/bench_engine.py --workloads W1,W3,W4,W5 --repeats 3

Curator runs offline: ``TIKTOKEN_CACHE_DIR`` points at the tokenizer files inside litellm, telemetry
is off, and its RPM/TPM limits are set explicitly (high, or the server's limit for W3). mmat and
Curator both run in their own process; CPU is the process CPU time of the run call.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = HERE / "_work"
MMAT_PY = ROOT / ".venv" / "bin" / "python"
CURATOR_PY = HERE / "venv" / "bin" / "python"
LITELLM_TOKENIZERS = "lib/python3.11/site-packages/litellm/litellm_core_utils/tokenizers"


def make_images(directory: Path, count: int) -> None:
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for i in range(count):
        path = directory / f"img-{i:05d}.jpg"
        if not path.exists():
            Image.effect_noise((320, 240), 40 + rng.random() * 40).convert("RGB").save(path, quality=85)


class Server:
    """``mmat mock-teacher`` in its own process."""

    def __init__(self, port: int, *, latency_ms: float, spread: float, rpm: int | None = None) -> None:
        command = [
            str(ROOT / ".venv" / "bin" / "mmat"),
            "mock-teacher",
            "--port",
            str(port),
            "--latency-ms",
            str(latency_ms),
            "--latency-spread",
            str(spread),
        ]
        if rpm:
            command += ["--rpm", str(rpm)]
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        line = self.process.stderr.readline() if self.process.stderr else ""
        if "listening" not in line:
            raise RuntimeError(f"mock teacher did not start: {line}")

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/mock/stats") as response:
            return json.loads(response.read())

    def reset(self) -> None:
        urllib.request.urlopen(
            urllib.request.Request(self.url + "/mock/reset", data=b"", method="POST")
        ).read()

    def close(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.communicate(timeout=30)


def curator_env() -> dict[str, str]:
    return {
        **os.environ,
        "TIKTOKEN_CACHE_DIR": str(HERE / "venv" / LITELLM_TOKENIZERS),
        "TELEMETRY_ENABLED": "false",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


def worker_command(tool: str, server: Server, n: int, run_dir: Path, **extra: Any) -> list[str]:
    if tool == "mmat":
        command = [str(MMAT_PY), str(HERE / "worker_mmat.py"), "--out", str(run_dir / "out")]
    else:
        command = [str(CURATOR_PY), str(HERE / "worker_curator.py")]
    command += [
        "--base-url",
        server.base_url,
        "--images",
        str(WORK / "images"),
        "--n",
        str(n),
        "--cache",
        str(run_dir / "cache"),
        "--concurrency",
        str(extra.get("concurrency", 64)),
    ]
    if extra.get("rpm"):
        command += ["--rpm", str(extra["rpm"])]
    return command


def run_worker(tool: str, server: Server, n: int, run_dir: Path, **extra: Any) -> dict[str, Any]:
    env = curator_env() if tool == "curator" else dict(os.environ)
    done = subprocess.run(
        worker_command(tool, server, n, run_dir, **extra),
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"tool"')]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{tool} worker failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(lines[-1])


def fresh_dir(name: str) -> Path:
    import shutil

    path = WORK / name
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


# -- workloads --------------------------------------------------------------------------------------


def w1(tools: list[str], repeats: int, n: int) -> list[dict[str, Any]]:
    server = Server(18701, latency_ms=200, spread=0.3)
    rows = []
    try:
        for repeat in range(repeats):
            for tool in tools:
                server.reset()
                result = run_worker(tool, server, n, fresh_dir(f"w1-{tool}"))
                stats = server.stats()
                row = {
                    "workload": "W1",
                    "tool": tool,
                    "repeat": repeat,
                    "requests": stats["requests"],
                    "ok": stats["ok_requests"],
                    "requests_per_s": n / result["wall_s"],
                    "cpu_ms_per_request": 1000 * result["cpu_s"] / n,
                    "wall_s": result["wall_s"],
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        server.close()
    return rows


def w3(tools: list[str], repeats: int, n: int, rpm: int = 1200) -> list[dict[str, Any]]:
    server = Server(18703, latency_ms=200, spread=0.3, rpm=rpm)
    rows = []
    variants = [(tool, rpm) for tool in tools]
    if "mmat" in tools:
        variants.append(("mmat", None))  # the limit unknown to the client: AIMD + Retry-After only
    try:
        for repeat in range(repeats):
            for tool, client_rpm in variants:
                server.reset()
                time.sleep(1.5)  # let the server's bucket refill
                extra: dict[str, Any] = {"rpm": client_rpm} if client_rpm else {}
                if tool == "curator" and not client_rpm:
                    continue
                run_worker(tool, server, n, fresh_dir(f"w3-{tool}"), **extra)
                stats = server.stats()
                window = (stats["last_time"] - stats["first_time"]) or 1e-9
                goodput_rpm = 60.0 * stats["ok_requests"] / window
                row = {
                    "workload": "W3",
                    "tool": tool + ("" if client_rpm else " (limit unknown)"),
                    "repeat": repeat,
                    "requests": stats["requests"],
                    "ok": stats["ok_requests"],
                    "rejected_429": stats["by_status"].get("429", 0),
                    "goodput_rpm": goodput_rpm,
                    "goodput_fraction": goodput_rpm / rpm,
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        server.close()
    return rows


def _kill_at_half(tool: str, server: Server, n: int, run_dir: Path) -> int:
    env = curator_env() if tool == "curator" else dict(os.environ)
    process = subprocess.Popen(
        worker_command(tool, server, n, run_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    deadline = time.time() + 600
    while time.time() < deadline:
        if server.stats()["ok_requests"] >= n // 2:
            break
        if process.poll() is not None:
            raise RuntimeError(f"{tool} finished before it could be killed")
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return int(server.stats()["requests"])


def w4(tools: list[str], repeats: int, n: int) -> list[dict[str, Any]]:
    server = Server(18704, latency_ms=200, spread=0.3)
    rows = []
    try:
        for repeat in range(repeats):
            for tool in tools:
                server.reset()
                run_dir = fresh_dir(f"w4-{tool}")
                at_kill = _kill_at_half(tool, server, n, run_dir)
                result = run_worker(tool, server, n, run_dir)
                stats = server.stats()
                wasted = stats["requests"] - stats["unique_prompts"]
                row = {
                    "workload": "W4",
                    "tool": tool,
                    "repeat": repeat,
                    "requests_before_kill": at_kill,
                    "requests_total": stats["requests"],
                    "unique_prompts": stats["unique_prompts"],
                    "wasted_requests": wasted,
                    "in_flight_bound": 64,
                    "rows_after_resume": result["rows"],
                    "distinct_rows_after_resume": result["distinct_rows"],
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        server.close()
    return rows


def w5(tools: list[str], repeats: int, n: int) -> list[dict[str, Any]]:
    server = Server(18705, latency_ms=200, spread=0.3)
    rows = []
    try:
        for repeat in range(repeats):
            for tool in tools:
                run_dir = fresh_dir(f"w5-{tool}")
                server.reset()
                run_worker(tool, server, n, run_dir)
                cold = server.stats()["requests"]
                server.reset()
                result = run_worker(tool, server, n, run_dir)
                warm = server.stats()["requests"]
                row = {
                    "workload": "W5",
                    "tool": tool,
                    "repeat": repeat,
                    "cold_requests": cold,
                    "warm_requests": warm,
                    "warm_wall_s": result["wall_s"],
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        server.close()
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Median of every numeric column per (workload, tool)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["workload"], row["tool"]), []).append(row)
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for (workload, tool), items in sorted(groups.items()):
        numeric = {
            key: statistics.median(float(item[key]) for item in items)
            for key in items[0]
            if key not in ("workload", "tool", "repeat") and isinstance(items[0][key], (int, float))
        }
        numeric["runs"] = len(items)
        summary.setdefault(workload, {})[tool] = numeric
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workloads", default="W1,W3,W4,W5")
    parser.add_argument("--tools", default="mmat,curator")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--w1-n", type=int, default=5000)
    parser.add_argument("--w3-n", type=int, default=600)
    parser.add_argument("--w4-n", type=int, default=2000)
    parser.add_argument("--w5-n", type=int, default=1000)
    parser.add_argument("--results", default=str(HERE / "results.json"))
    args = parser.parse_args()
    tools = args.tools.split(",")
    if "curator" in tools and not CURATOR_PY.exists():
        sys.exit(
            f"{CURATOR_PY} is missing: python3 -m venv {HERE}/venv && {HERE}/venv/bin/pip install bespokelabs-curator"
        )
    make_images(WORK / "images", 200)
    rows: list[dict[str, Any]] = []
    runners = {
        "W1": lambda: w1(tools, args.repeats, args.w1_n),
        "W3": lambda: w3(tools, args.repeats, args.w3_n),
        "W4": lambda: w4(tools, args.repeats, args.w4_n),
        "W5": lambda: w5(tools, args.repeats, args.w5_n),
    }
    for workload in args.workloads.split(","):
        rows += runners[workload]()
    summary = summarise(rows)
    Path(args.results).write_text(json.dumps({"rows": rows, "summary": summary}, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
