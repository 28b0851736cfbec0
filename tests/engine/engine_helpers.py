"""Trivial stages and records for the engine tests (and the SIGKILL worker process)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mmat.config import RunConfig
from mmat.errors import SampleRejected
from mmat.llm.base import ChatMessage, DecodingParams
from mmat.schema import QA, ImageRef, Sample
from mmat.stages.base import Stage, StageContext


class AskStage(Stage):
    """One teacher call per sample whose message includes what the earlier stages wrote."""

    def __init__(self, name: str, prompt: str = "v1") -> None:
        self.name = name
        self.prompt = prompt

    async def run(self, sample: Sample, ctx: StageContext) -> Sample:
        earlier = json.dumps(sample.metadata, sort_keys=True)
        text = f"[{self.name} {self.prompt}] {sample.qas[0].question} | {earlier}"
        completion = await ctx.chat(
            [ChatMessage(role="user", content=text)],
            purpose=self.name,
            prompt_hash=f"{self.name}:{self.prompt}",
            params=DecodingParams(max_tokens=64),
        )
        sample.metadata[self.name] = completion.text
        return sample


class RejectOddStage(Stage):
    name = "gate"

    async def run(self, sample: Sample, ctx: StageContext) -> Sample:
        if int(sample.id.rsplit("-", 1)[1]) % 2:
            raise SampleRejected("odd_id", f"{sample.id} is odd")
        return sample


def make_samples(n: int, prefix: str = "s") -> list[Sample]:
    return [
        Sample(
            id=f"test/{prefix}-{i}",
            source="test",
            license="cc0",
            images=[ImageRef(path=f"img-{i}.png", sha256=f"{i:064x}")],
            qas=[QA(qa_id="0", question=f"question {i}?", templated_question=f"question {i}?", answer="a")],
        )
        for i in range(n)
    ]


def config(**engine: object) -> RunConfig:
    base = {"backoff_base_s": 0.01, "backoff_max_s": 0.05}
    base.update(engine)
    return RunConfig.from_dict({"engine": base, "teacher": {"kind": "openai", "model": "mock-model"}})


def main() -> None:
    """``python engine_helpers.py BASE_URL OUT N``: one engine run (killed by the resume test)."""
    from mmat.engine import Engine
    from mmat.llm.openai_client import OpenAITeacher

    base_url, out, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    cfg = config(max_concurrent_requests=8, max_samples_in_flight=16, shards=3)
    teacher = OpenAITeacher(base_url, "mock-model", timeout_s=10)
    engine = Engine(cfg, teacher, [AskStage("ask")], tools=None, out_dir=out, progress=False)
    stats = engine.run_sync(make_samples(n))
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
