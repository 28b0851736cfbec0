"""Test helpers for the stages: teacher step replies, a real TabMWP sample, canned tools, the engine context."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmat.config import RunConfig
from mmat.schema import QA, AnswerType, ImageRef, Sample, ToolResult

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data" / "tabmwp"


def step(thought: str, operators: Sequence[str] = (), query: str | None = None, final: bool = False) -> str:
    """A teacher step reply as JSON text."""
    return json.dumps(
        {
            "thought": thought,
            "operators": list(operators),
            "rag": {"needed": query is not None, "query": query},
            "next_action": "final_answer" if final else "continue",
        }
    )


def tabmwp_sample(*qas: QA) -> Sample:
    """The real TabMWP problem 22084 (guacamole), or the given QAs on its table image."""
    if not qas:
        qas = (
            QA(
                qa_id="0",
                question="How much did she spend?",
                templated_question="How much did she spend? Answer with a number.",
                answer="8.80",
                answer_type=AnswerType.NUMBER,
                unit="$",
            ),
        )
    return Sample(
        id="tabmwp/22084",
        source="tabmwp",
        split="val",
        license="CC BY-NC-SA 4.0",
        non_commercial=True,
        images=[ImageRef(path="tables/22084.png", root=str(EXAMPLES))],
        qas=list(qas),
    )


class FakeTools:
    """A ToolProvider with canned operator texts and a call log."""

    def __init__(self, tools: dict[str, str], search: str = "snippet one; snippet two") -> None:
        self.tools = tools
        self.search_text = search
        self.calls: list[str] = []

    async def run(self, name: str, images: Sequence[ImageRef], **args: Any) -> ToolResult:
        self.calls.append(name)
        return ToolResult(tool=name, version="1", text=self.tools[name])

    async def search(self, query: str, *, k: int | None = None) -> ToolResult:
        self.calls.append(f"rag:{query}")
        return ToolResult(tool="rag", version="1", text=self.search_text)

    def available(self) -> dict[str, str]:
        return {name: f"the {name} operator" for name in self.tools}


def engine_context(base_url: str, config: RunConfig, tools: dict[str, str] | None = None) -> Any:
    """The engine's real StageContext: OpenAI client -> mock teacher server, limiter, retries, stats."""
    from mmat.engine import EngineContext
    from mmat.llm.openai_client import OpenAITeacher

    teacher = OpenAITeacher(base_url, "mock-teacher", api_key_env=None)
    provider = FakeTools(tools if tools is not None else {"ocr": "guacamole | $2 per pound"})
    return EngineContext(config, teacher, tools=provider)
