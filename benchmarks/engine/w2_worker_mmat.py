"""W2, mmat side: Rationale (2 operator rounds) -> Reflection -> Integration on the engine.

Runs in the project venv. Reads the records written by w2_bench.py, talks to the mock teacher at
--base-url, runs operators through a provider that sleeps --tool-latency seconds per call, and prints
one JSON line: wall and CPU seconds of the engine run, records accepted and rejected.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmat.config import RunConfig
from mmat.engine import Engine
from mmat.llm.openai_client import OpenAITeacher
from mmat.schema import ImageRef, Sample, ToolResult
from mmat.stages.integration import IntegrationStage
from mmat.stages.rationale import RationaleStage
from mmat.stages.reflection import ReflectionStage

OPERATORS = {"ocr": "reads the text in the image", "image_caption": "describes the image"}


class LatencyTools:
    """Operators that take a fixed time (a mock of real tool latency) and return a short text."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s

    async def run(self, name: str, images: Sequence[ImageRef], **args: Any) -> ToolResult:
        await asyncio.sleep(self.latency_s)
        return ToolResult(tool=name, version="1", text=f"{name} output for {Path(images[0].path).name}")

    async def search(self, query: str, *, k: int | None = None) -> ToolResult:
        await asyncio.sleep(self.latency_s)
        return ToolResult(tool="rag", version="1", text=f"snippets for {query}")

    def available(self) -> dict[str, str]:
        return dict(OPERATORS)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--records", required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--in-flight", type=int, default=256)
    parser.add_argument("--tool-latency", type=float, default=0.03)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    config = RunConfig.from_dict(
        {
            "teacher": {
                "kind": "openai",
                "model": "gpt-4o-mini",
                "base_url": args.base_url,
                "api_key_env": None,
            },
            "engine": {
                "max_concurrent_requests": args.concurrency,
                "max_samples_in_flight": args.in_flight,
                "cache_dir": str(Path(args.out) / "cache"),
            },
            "stages": {"quality": False, "answer_retries": 0},
        }
    )
    records = [Sample.model_validate_json(line) for line in Path(args.records).read_text().splitlines()]
    teacher = OpenAITeacher.from_config(config.teacher)
    stages = [RationaleStage(), ReflectionStage(), IntegrationStage()]
    engine = Engine(
        config, teacher, stages, tools=LatencyTools(args.tool_latency), out_dir=Path(args.out), progress=False
    )
    cpu0, wall0 = time.process_time(), time.perf_counter()
    stats = asyncio.run(engine.run(records))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    print(
        json.dumps(
            {
                "tool": "mmat",
                "wall_s": wall,
                "cpu_s": cpu,
                "accepted": stats["kept"],
                "rejected": stats["rejected"],
                "requests": stats["requests"],
            }
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
