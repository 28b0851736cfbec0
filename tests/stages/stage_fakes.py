"""A small in-process StageContext for unit tests of single stages (scenario tests use the engine)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mmat.config import RunConfig
from mmat.llm.base import ChatMessage, Completion, DecodingParams
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


class FakeContext:
    """Scripted teacher replies (FIFO), canned operator texts, and a call log."""

    def __init__(
        self,
        replies: Sequence[str] = (),
        *,
        tools: dict[str, str] | None = None,
        search: str = "snippet one; snippet two",
        config: RunConfig | None = None,
        responder: Callable[[list[ChatMessage], str], str] | None = None,
    ) -> None:
        self.config = config or RunConfig()
        self.replies = list(replies)
        self.tools = tools if tools is not None else {"ocr": "guacamole | $2 per pound"}
        self.search_text = search
        self.responder = responder
        self.calls: list[tuple[str, list[ChatMessage]]] = []
        self.tool_calls: list[str] = []

    async def chat(
        self,
        messages: list[ChatMessage],
        *,
        purpose: str,
        prompt_hash: str,
        params: DecodingParams | None = None,
    ) -> Completion:
        assert prompt_hash
        self.calls.append((purpose, messages))
        if self.responder is not None:
            return Completion(text=self.responder(messages, purpose))
        if not self.replies:
            raise AssertionError(f"no scripted reply left for {purpose}")
        return Completion(text=self.replies.pop(0))

    async def tool(self, name: str, images: Sequence[ImageRef], **args: Any) -> ToolResult:
        self.tool_calls.append(name)
        return ToolResult(tool=name, version="1", text=self.tools[name])

    async def search(self, query: str, *, k: int | None = None) -> ToolResult:
        self.tool_calls.append(f"rag:{query}")
        return ToolResult(tool="rag", version="1", text=self.search_text)

    def available_tools(self) -> dict[str, str]:
        return {name: f"the {name} operator" for name in self.tools}


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


class ServerContext(FakeContext):
    """Like FakeContext, but every teacher call goes over HTTP to a MockTeacherServer."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        from mmat.llm.openai_client import OpenAITeacher

        super().__init__(**kwargs)
        self.teacher = OpenAITeacher(base_url, "mock-teacher", api_key_env=None)

    async def chat(
        self,
        messages: list[ChatMessage],
        *,
        purpose: str,
        prompt_hash: str,
        params: DecodingParams | None = None,
    ) -> Completion:
        assert prompt_hash
        self.calls.append((purpose, messages))
        return await self.teacher.complete(messages, params or DecodingParams())
