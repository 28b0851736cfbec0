"""A rule-based teacher for the stage prompts, to drive the mock teacher server offline.

It plays the teacher well enough to exercise every stage end to end without a model: the Rationale
steps call the offered operators for ``operator_rounds`` steps and then conclude; the summarise turn
gets the target answer read back from the first user message; the judges find nothing to repair and
score 0.9. Its output is plumbing-grade, not training data: use it for demos of the machinery, tests
and benchmarks (``server.responder = StageRuleResponder()``).

Example:
    >>> with MockTeacherServer() as server:                      # doctest: +SKIP
    ...     server.responder = StageRuleResponder(operator_rounds=2)
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from mmat.config import TeacherConfig
from mmat.errors import ConfigError
from mmat.llm.base import ChatMessage, Completion, DecodingParams, Teacher, Usage
from mmat.llm.mock_server import request_text

_TARGET = re.compile(r"^Target answer \(for you only[^)]*\): (?P<answer>.*)$", re.MULTILINE)
_OPERATOR_LINE = re.compile(r"^- (?P<name>[a-z_ ]+): ", re.MULTILINE)


class StageRuleResponder:
    """A ``MockTeacherServer.responder`` that answers mmat's stage prompts by rule.

    Args:
        operator_rounds: how many Rationale steps call operators before the concluding step.
    """

    def __init__(self, operator_rounds: int = 1) -> None:
        self.operator_rounds = operator_rounds

    def __call__(self, body: dict[str, Any]) -> str:
        system = request_text(body, "system")
        messages = body.get("messages") or []
        if '"quality_score"' in system:
            return json.dumps(
                {
                    "quality_score": 0.9,
                    "scoring_reason": "coherent steps grounded in the operator outputs",
                    "criteria": {"coherence": 0.9, "relevance": 0.9, "accuracy": 0.9, "completeness": 0.9},
                }
            )
        if '"cheating"' in system:
            return json.dumps({"cheating": False, "reason": "", "trigger": "", "corrected_thought": ""})
        if '"gap"' in system:
            return json.dumps({"gap": False, "reason": "", "trigger": "", "supplement": ""})
        if '"corrected_thought"' in system:
            return json.dumps(
                {
                    "trigger": "Wait, I should rely only on what the operators returned.",
                    "corrected_thought": "Going back over the operator outputs, they support the result.",
                }
            )
        first_user = next((m for m in messages if m.get("role") == "user"), None)
        first_text = request_text({"messages": [first_user]}) if first_user else ""
        last = messages[-1] if messages else {}
        last_text = request_text({"messages": [last]})
        if "Reply with the short final answer only" in last_text:
            target = _TARGET.search(first_text)
            return target.group("answer").strip() if target else "unknown"
        steps = sum(1 for m in messages if m.get("role") == "assistant")
        operators = [name.strip().replace(" ", "_") for name in _OPERATOR_LINE.findall(system)]
        if steps < self.operator_rounds and operators and "last step" not in last_text:
            picked = ["ocr"] if "ocr" in operators else operators[:1]
            if steps % 2 == 1 and len(operators) > 1:
                picked = [op for op in operators if op not in picked][:1]
            return json.dumps(
                {
                    "thought": f"I look at the image with {', '.join(picked)} to collect the facts.",
                    "operators": picked,
                    "rag": {"needed": False, "query": None},
                    "next_action": "continue",
                }
            )
        return json.dumps(
            {
                "thought": "Putting together what the image shows, I work out the result the question asks for.",
                "operators": [],
                "rag": {"needed": False, "query": None},
                "next_action": "final_answer",
            }
        )


class RuleTeacher(Teacher):
    """The rule-based stage teacher in process (no HTTP): ``teacher.kind: rules`` in a run config.

    Plumbing-grade: it shows the machinery working offline in seconds (the data it writes is not
    training data). ``teacher.model`` may read ``rules`` or ``rules-N`` for N operator rounds.

    Example:
        >>> config = RunConfig.from_dict({"teacher": {"kind": "rules", "model": "rules-2"}})
    """

    name = "rules"
    grade = "plumbing"
    supports_images = False

    def __init__(self, model: str = "rules-1") -> None:
        match = re.fullmatch(r"rules(?:-(\d+))?", model)
        if not match:
            raise ConfigError(
                f"teacher model {model!r} for kind 'rules' must read 'rules' or 'rules-N' (N operator rounds)"
            )
        self.model = model
        self.responder = StageRuleResponder(operator_rounds=int(match.group(1) or 1))

    @classmethod
    def from_config(cls, config: TeacherConfig) -> RuleTeacher:
        return cls(config.model if config.model.startswith("rules") else "rules-1")

    async def complete(self, messages: list[ChatMessage], params: DecodingParams) -> Completion:
        started = time.perf_counter()
        body = {"messages": [{"role": m.role, "content": m.text()} for m in messages]}
        text = self.responder(body)
        prompt_tokens = sum(len(m.text()) for m in messages) // 4
        return Completion(
            text=text,
            finish_reason="stop",
            model=self.model,
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=len(text) // 4),
            latency_s=time.perf_counter() - started,
        )
