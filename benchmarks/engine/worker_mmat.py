"""One mmat engine run against the mock teacher (runs in the project venv).

A single-call vision stage over N samples; prints one JSON line: wall and CPU seconds of the run call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path

from mmat.config import RunConfig
from mmat.engine import Engine
from mmat.llm.base import ChatMessage, DecodingParams, ImagePart, TextPart
from mmat.llm.openai_client import OpenAITeacher
from mmat.schema import QA, ImageRef, Sample
from mmat.stages.base import Stage, StageContext


class DescribeStage(Stage):
    """One teacher call per sample: the image and a one-line instruction."""

    name = "describe"

    def __init__(self, tag: str) -> None:
        self.tag = tag

    async def run(self, sample: Sample, ctx: StageContext) -> Sample:
        text = f"{self.tag}Describe image {sample.metadata['i']} in one sentence."
        completion = await ctx.chat(
            [ChatMessage(role="user", content=[TextPart(text=text), ImagePart(image=sample.images[0])])],
            purpose="describe",
            prompt_hash="describe:v1",
            params=DecodingParams(max_tokens=64),
        )
        sample.metadata["response"] = completion.text
        return sample


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rpm", type=int, default=None)
    parser.add_argument("--out", required=True)
    parser.add_argument("--cache", required=True)
    parser.add_argument("--tag", default="")
    parser.add_argument("--no-adaptive", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    images = sorted(Path(args.images).glob("*.jpg"))
    config = RunConfig.from_dict(
        {
            "teacher": {"kind": "openai", "model": "gpt-4o-mini", "base_url": args.base_url},
            "engine": {
                "max_concurrent_requests": args.concurrency,
                "max_samples_in_flight": args.concurrency * 2,
                "rpm": args.rpm,
                "adaptive": not args.no_adaptive,
                "cache_dir": args.cache,
            },
        }
    )
    teacher = OpenAITeacher(args.base_url, "gpt-4o-mini", api_key_env=None)

    def samples():
        for i in range(args.n):
            path = images[i % len(images)]
            yield Sample(
                id=f"bench/{i}",
                source="bench",
                license="cc0",
                images=[ImageRef(path=path.name, root=str(path.parent), width=320, height=240)],
                qas=[QA(qa_id="0", question="describe", templated_question="describe", answer="-")],
                metadata={"i": i},
            )

    engine = Engine(
        config, teacher, [DescribeStage(args.tag)], tools=None, out_dir=Path(args.out), progress=False
    )
    cpu0, wall0 = time.process_time(), time.perf_counter()
    stats = asyncio.run(_run(engine, samples(), args.n))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    from mmat.store import iter_accepted

    ids = [sample.id for sample in iter_accepted(args.out)]
    print(
        json.dumps(
            {
                "tool": "mmat",
                "wall_s": wall,
                "cpu_s": cpu,
                "rows": len(ids),
                "distinct_rows": len(set(ids)),
                "written_this_run": stats["kept"],
                "requests": stats["requests"],
            }
        )
    )
    sys.stdout.flush()


async def _run(engine: Engine, records, total: int) -> dict:
    try:
        return await engine.run(records, total=total)
    finally:
        await engine.teacher.aclose()


if __name__ == "__main__":
    main()
