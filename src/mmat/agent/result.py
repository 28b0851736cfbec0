"""What one agent run returns: the answer, the conversation, and where the time went.

Shared by the agent runtime (which fills it) and evaluation (which scores and times it).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmat.schema import Record, Step, ToolResult

AgentMode = Literal["baseline", "orr", "rr"]


class OperatorTiming(Record):
    """One operator (or RAG) execution during a run."""

    tool: str
    latency_s: float
    cached: bool = False
    error: str | None = None


class AgentResult(Record):
    """The outcome of ``Agent.answer(images, question, mode=...)``.

    ``messages`` is the exact conversation sent to and received from the model (role, content);
    ``error`` is set when the run ended without an answer (malformed output after the re-ask, step or
    time limit), and ``answer`` is then empty. ``error_kind`` names the failure for counting:
    ``malformed_step``, ``malformed_answer``, ``empty_answer``, ``step_limit``, ``time_limit`` or
    ``model_error``. ``turn_latencies_s`` holds one entry per model call (re-asks and the summarise
    turn included); ``step_tool_wall_s`` the wall time of each RR step's parallel operator batch (and
    of the ORR batch); ``reasks`` counts corrective re-asks after a malformed step.
    """

    mode: AgentMode
    question: str
    answer: str = ""
    raw_output: str = ""
    messages: list[dict[str, str]] = Field(default_factory=list)
    steps: list[Step] = Field(default_factory=list)
    tool_results: list[ToolResult] = Field(default_factory=list)
    turn_latencies_s: list[float] = Field(default_factory=list)
    operator_timings: list[OperatorTiming] = Field(default_factory=list)
    latency_s: float = 0.0
    model_calls: int = 0
    error: str | None = None
    error_kind: str | None = None
    reasks: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    step_tool_wall_s: list[float] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None
