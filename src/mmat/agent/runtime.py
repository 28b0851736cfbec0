"""The agent runtime: run a model tuned on MMAT data with live operators.

Three modes (SPEC §2):

- ``rr``: the multi-turn Rationale-and-Reflection loop. Each model call stops at ``</SIGNAL>`` (the
  tag is re-appended), the step is parsed with :func:`mmat.wire.parse_step`, the operators it asks for
  run in parallel together with RAG (top-k 3), and their results come back in the observation turn
  exactly as in training. ``reflection`` is answered with the reflection prompt, ``end`` with the
  summarise turn, whose reply is the answer.
- ``orr``: every available operator runs first, in parallel; their outputs go into the api-block
  user turn built by :func:`mmat.wire.render_orr_user` (the same function the Integration stage
  uses), one model call, and the answer is parsed from ``<ANSWER>``.
- ``baseline``: the plain question, one call.

Every string the model reads or writes goes through :mod:`mmat.wire`. The history is append-only, so
each turn resends the previous request byte for byte plus the new messages, and images are encoded
once per run by the model client.

Example:
    >>> agent = Agent(OpenAIModel("http://127.0.0.1:8000/v1", "mmat-8b"), ToolRunner(...))
    >>> result = await agent.answer([ImageRef(path="table.png")], "What is the total?", mode="rr")
    >>> result.answer, result.latency_s, result.operator_timings
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from mmat.agent.models import Generation, ModelClient
from mmat.agent.result import AgentMode, AgentResult, OperatorTiming
from mmat.errors import ConfigError, TeacherError, WireFormatError
from mmat.images import resolve_image
from mmat.llm.base import ChatMessage, ImagePart, TextPart
from mmat.schema import ApiBlock, ImageRef, Signal, Step, ToolResult
from mmat.tools.base import ToolProvider
from mmat.wire import (
    ORR_SYSTEM_PROMPT,
    REFLECTION_PROMPT_TURN,
    canonical_operator,
    observation_turn,
    parse_orr_answer,
    parse_step,
    question_turn,
    render_orr_user,
    render_rr_system,
    render_summarize,
    spell_operator,
)

logger = logging.getLogger(__name__)

SIGNAL_STOP = "</SIGNAL>"
"""The stop string of RR step calls; servers drop it, the runtime puts it back."""

RAG_NAME = "rag"
"""How RAG results are named in the observation turn (``Here are rag results ...``)."""

CORRECTIVE_TURN = (
    "Your previous reply does not follow the step format: {problem}. Reply with one step written as "
    "<THOUGHT>one concise reasoning step</THOUGHT>, optionally <OPERATOR>operator names</OPERATOR> and "
    "<RAG>a search query</RAG>, then <SIGNAL>continue</SIGNAL>, <SIGNAL>reflection</SIGNAL> or "
    "<SIGNAL>end</SIGNAL>."
)
"""The one corrective re-ask after a malformed step (not part of the training data; kept short)."""

MODES: tuple[str, ...] = get_args(AgentMode)

_OPEN_SIGNAL = re.compile(r"<SIGNAL>[^<]*\Z", re.IGNORECASE)

OperatorFn = Callable[[Sequence[ImageRef]], "str | ToolResult | Awaitable[str | ToolResult]"]


def close_signal(text: str) -> str:
    """Re-append ``</SIGNAL>`` when a stop sequence cut it off (servers do not return stop strings)."""
    return text + SIGNAL_STOP if _OPEN_SIGNAL.search(text) else text


@dataclass(frozen=True)
class UserOperator:
    """An operator declared by the user for zero-shot use (SPEC §1: e.g. face recognition).

    It is listed in the RR system prompt with its description, runs when a step names it, and
    joins the api blocks in ORR mode. ``fn(images)`` may be sync (run in a thread) or async and
    returns the observation text or a :class:`~mmat.schema.ToolResult`; an exception becomes an
    observation saying the operator failed.

    Example:
        >>> def recognise(images):
        ...     return "The face belongs to Grace Hopper."
        >>> UserOperator("face recognition", "names the people whose faces are visible", recognise)
    """

    name: str
    description: str
    fn: OperatorFn

    def __post_init__(self) -> None:
        canonical = canonical_operator(self.name)
        if not canonical or not re.fullmatch(r"[a-z0-9_]+", canonical):
            raise ConfigError(
                f"operator name {self.name!r} must be letters, digits, spaces or underscores, e.g. 'face_recognition'"
            )
        if canonical == RAG_NAME:
            raise ConfigError("'rag' is the search tag, not an operator; pick another name")
        if not self.description.strip():
            raise ConfigError(f"operator {self.name!r} needs a one-line description: the model reads it")
        if not callable(self.fn):
            raise ConfigError(f"operator {self.name!r}: fn must be callable as fn(images) -> str")
        object.__setattr__(self, "name", canonical)


def as_image_ref(image: ImageRef | str | Path) -> ImageRef:
    """Accept an :class:`ImageRef`, a path or a URL."""
    return image if isinstance(image, ImageRef) else ImageRef(path=str(image))


def orr_api_blocks(outputs: Sequence[tuple[str, ToolResult]]) -> list[ApiBlock]:
    """The api blocks of the ORR user turn: one per operator that succeeded, in the given order.

    RAG results are excluded (SPEC §2.2) and failed operators are left out: the model was tuned on
    real operator outputs only.
    """
    return [
        ApiBlock(tool=canonical_operator(name), text=result.text)
        for name, result in outputs
        if result.ok and canonical_operator(name) != RAG_NAME
    ]


def orr_user_text(question: str, outputs: Sequence[tuple[str, ToolResult]]) -> str:
    """The ORR user turn for ``question`` and these operator outputs (via :func:`mmat.wire.render_orr_user`)."""
    return render_orr_user(question, orr_api_blocks(outputs))


class _RunFailed(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class _Run:
    """The state of one ``answer`` call: the append-only conversation and the result being filled."""

    def __init__(self, model: ModelClient, result: AgentResult) -> None:
        self.model = model
        self.result = result
        self.messages: list[ChatMessage] = []

    def add(self, role: str, text: str, images: Sequence[ImageRef] = ()) -> None:
        content: str | list[TextPart | ImagePart] = text
        if images:
            content = [*(ImagePart(image=ref) for ref in images), TextPart(text=text)]
        self.messages.append(ChatMessage(role=role, content=content))  # type: ignore[arg-type]
        self.result.messages.append({"role": role, "content": text})

    async def call(self, *, stop: Sequence[str] | None = None) -> Generation:
        started = time.perf_counter()
        try:
            generation = await self.model.generate(list(self.messages), stop=stop)
        finally:
            self.result.turn_latencies_s.append(time.perf_counter() - started)
            self.result.model_calls += 1
        self.result.prompt_tokens += generation.usage.prompt_tokens
        self.result.completion_tokens += generation.usage.completion_tokens
        return generation


class Agent:
    """Runs a model tuned on MMAT data in RR, ORR or baseline mode.

    Args:
        model: the model client (:class:`~mmat.agent.models.OpenAIModel`,
            :class:`~mmat.agent.models.TransformersModel` or any :class:`ModelClient`).
        tools: the operators and RAG search (``mmat.tools.runner.ToolRunner``); None runs without
            the built-in operators (and without RAG).
        extra_operators: user-declared operators for zero-shot use.
        max_steps: the most RR steps before the run fails with ``step_limit``.
        time_limit_s: wall-time limit of one ``answer`` call; None for no limit.
        rag_top_k: snippets per RAG query (the paper uses 3).
        system_prompt: the RR system prompt the model was tuned with, verbatim (e.g. read from a
            released ``*_RR_sys.jsonl`` row); by default it is rendered by
            :func:`mmat.wire.render_rr_system` from the available operators, as the Rationale stage
            does for the same tool configuration.

    Raises:
        ConfigError: a limit is out of range or a declared operator clashes with another.
    """

    def __init__(
        self,
        model: ModelClient,
        tools: ToolProvider | None = None,
        *,
        extra_operators: list[UserOperator] | None = None,
        max_steps: int = 8,
        time_limit_s: float | None = None,
        rag_top_k: int = 3,
        system_prompt: str | None = None,
    ) -> None:
        if max_steps < 1:
            raise ConfigError(f"max_steps must be at least 1, got {max_steps}")
        if time_limit_s is not None and time_limit_s <= 0:
            raise ConfigError(f"time_limit_s must be positive or None, got {time_limit_s}")
        if rag_top_k < 1:
            raise ConfigError(f"rag_top_k must be at least 1, got {rag_top_k}")
        self.model = model
        self.tools = tools
        self.max_steps = max_steps
        self.time_limit_s = time_limit_s
        self.rag_top_k = rag_top_k
        self.system_prompt = system_prompt
        self.user_operators: dict[str, UserOperator] = {}
        builtin = dict(tools.available()) if tools is not None else {}
        for op in extra_operators or []:
            if op.name in self.user_operators:
                raise ConfigError(f"operator {op.name!r} is declared twice; give each operator one name")
            if op.name in builtin:
                raise ConfigError(
                    f"operator {op.name!r} is already provided by the tool layer; name yours differently"
                )
            self.user_operators[op.name] = op
        # the tool layer's order, as the Rationale stage lists them in the training system prompt
        self.catalog: dict[str, str] = dict(builtin)
        self.catalog.update({name: op.description for name, op in self.user_operators.items()})

    # ----------------------------------------------------------------------------------------------

    def rr_system_prompt(self) -> str:
        """The RR system prompt listing this agent's operators (and RAG when a tool layer is given)."""
        if self.system_prompt is not None:
            return self.system_prompt
        return render_rr_system(self.catalog.items(), rag=self.tools is not None)

    async def answer(
        self, images: Sequence[ImageRef | str | Path], question: str, *, mode: AgentMode = "rr"
    ) -> AgentResult:
        """Answer ``question`` about ``images``; never raises for model or operator failures.

        A run that ends without an answer returns a result with ``error`` and ``error_kind`` set.

        Raises:
            ConfigError: ``mode`` is not ``rr``, ``orr`` or ``baseline``.
            ImageError: a local image is missing or outside its root.
        """
        if mode not in MODES:
            raise ConfigError(f"unknown agent mode {mode!r}; valid modes: {', '.join(MODES)}")
        refs = [as_image_ref(image) for image in images]
        for ref in refs:
            if not ref.is_url:
                resolve_image(ref)
        result = AgentResult(mode=mode, question=question)
        run = _Run(self.model, result)
        started = time.perf_counter()
        deadline = asyncio.timeout(self.time_limit_s)
        try:
            async with deadline:
                if mode == "rr":
                    await self._answer_rr(run, refs, question)
                elif mode == "orr":
                    await self._answer_orr(run, refs, question)
                else:
                    await self._answer_baseline(run, refs, question)
        except TimeoutError:
            if not deadline.expired():
                raise  # not our limit: a bug below, let it surface
            result.error_kind = "time_limit"
            result.error = (
                f"time limit of {self.time_limit_s}s reached after {result.model_calls} model calls "
                f"and {len(result.steps)} steps; raise time_limit_s or lower max_steps"
            )
        except _RunFailed as failure:
            result.error_kind, result.error = failure.kind, str(failure)
        except TeacherError as error:
            result.error_kind = "model_error"
            result.error = f"model call failed ({error.kind}): {error}"
        finally:
            result.latency_s = time.perf_counter() - started
        if result.error:
            result.answer = ""
        return result

    # ----------------------------------------------------------------------------------------------

    async def _answer_baseline(self, run: _Run, images: list[ImageRef], question: str) -> None:
        run.add("user", question, images)
        generation = await run.call()
        run.add("assistant", generation.text)
        run.result.raw_output = generation.text
        self._set_answer(run.result, generation.text.strip())

    async def _answer_orr(self, run: _Run, images: list[ImageRef], question: str) -> None:
        names = list(self.catalog)
        outputs = await self._run_batch(run, names, None, images)
        run.add("system", ORR_SYSTEM_PROMPT)
        run.add("user", orr_user_text(question, outputs), images)
        generation = await run.call()
        run.add("assistant", generation.text)
        run.result.raw_output = generation.text
        try:
            parsed = parse_orr_answer(generation.text)
        except WireFormatError as error:
            raise _RunFailed("malformed_answer", f"the ORR reply has no parsable answer: {error}") from None
        self._set_answer(run.result, parsed.answer.strip())

    async def _answer_rr(self, run: _Run, images: list[ImageRef], question: str) -> None:
        result = run.result
        run.add("system", self.rr_system_prompt())
        run.add("user", question_turn(question).content, images)
        reasked = False
        while True:
            if len(result.steps) >= self.max_steps:
                raise _RunFailed(
                    "step_limit",
                    f"the model took {self.max_steps} steps without <SIGNAL>end</SIGNAL>; raise max_steps "
                    "or check that the model was tuned on MMAT RR data",
                )
            generation = await run.call(stop=[SIGNAL_STOP])
            text = close_signal(generation.text)
            run.add("assistant", text)
            result.raw_output = text
            try:
                step = parse_step(text)
            except WireFormatError as error:
                problem = str(error).rsplit(". Got: ", 1)[0]
                if reasked:
                    raise _RunFailed(
                        "malformed_step",
                        f"step {len(result.steps) + 1} is malformed after one corrective re-ask: {problem}. "
                        f"Last output: {text[:200]!r}",
                    ) from None
                reasked = True
                result.reasks += 1
                run.add("user", CORRECTIVE_TURN.format(problem=problem))
                continue
            reasked = False
            result.steps.append(step)
            if step.signal is Signal.END:
                break
            if step.signal is Signal.REFLECTION:
                if step.operators or step.rag_query is not None:
                    logger.warning("a reflection step asked for operators or RAG; they are not run")
                run.add("user", REFLECTION_PROMPT_TURN)
                continue
            run.add("user", await self._observe(run, step, images))
        run.add("user", render_summarize(question))
        generation = await run.call()
        run.add("assistant", generation.text)
        result.raw_output = generation.text
        self._set_answer(result, generation.text.strip())

    @staticmethod
    def _set_answer(result: AgentResult, answer: str) -> None:
        if not answer:
            raise _RunFailed("empty_answer", "the model's final answer is empty")
        result.answer = answer

    # ----------------------------------------------------------------------------------------------

    async def _observe(self, run: _Run, step: Step, images: list[ImageRef]) -> str:
        """Run what a step asked for and return the observation turn's text."""
        names = list(dict.fromkeys(step.operators))
        query = step.rag_query.strip() if step.rag_query is not None else None
        outputs = await self._run_batch(run, names, query or None, images)
        return observation_turn([(name, self._observation_text(name, r)) for name, r in outputs]).content

    @staticmethod
    def _observation_text(name: str, result: ToolResult) -> str:
        if result.ok or result.text:
            return result.text
        return f"the {spell_operator(name)} operator failed: {result.error}"

    async def _run_batch(
        self, run: _Run, names: Sequence[str], query: str | None, images: list[ImageRef]
    ) -> list[tuple[str, ToolResult]]:
        """Run operators (and a RAG query) concurrently; results in request order, RAG last."""
        jobs: list[Awaitable[tuple[ToolResult, OperatorTiming]]] = [
            self._run_operator(name, images) for name in names
        ]
        labels = list(names)
        if query is not None:
            jobs.append(self._run_rag(query))
            labels.append(RAG_NAME)
        if not jobs:
            return []
        started = time.perf_counter()
        done = await asyncio.gather(*jobs)
        run.result.step_tool_wall_s.append(time.perf_counter() - started)
        outputs = []
        for label, (tool_result, timing) in zip(labels, done, strict=True):
            run.result.tool_results.append(tool_result)
            run.result.operator_timings.append(timing)
            outputs.append((label, tool_result))
        return outputs

    async def _run_operator(self, name: str, images: list[ImageRef]) -> tuple[ToolResult, OperatorTiming]:
        started = time.perf_counter()
        if name in self.user_operators:
            result = await self._run_user_operator(self.user_operators[name], images)
        elif name in self.catalog and self.tools is not None:
            result = await self.tools.run(name, images)
        else:
            available = ", ".join(spell_operator(n) for n in self.catalog) or "none"
            result = ToolResult(
                tool=name,
                error="unknown_operator",
                text=f"{spell_operator(name)} is not an available operator. Available operators: {available}.",
            )
        elapsed = time.perf_counter() - started
        timing = OperatorTiming(tool=name, latency_s=elapsed, cached=result.cached, error=result.error)
        return result, timing

    async def _run_user_operator(self, op: UserOperator, images: list[ImageRef]) -> ToolResult:
        started = time.perf_counter()
        try:
            if inspect.iscoroutinefunction(op.fn):
                output = await op.fn(images)
            else:
                output = await asyncio.to_thread(op.fn, images)
                if inspect.isawaitable(output):
                    output = await output
        except Exception as error:  # user code: its failure is an observation, not a crash
            logger.warning("user operator %s failed: %r", op.name, error)
            return ToolResult(
                tool=op.name,
                error=f"{type(error).__name__}: {error}",
                text=f"the {op.name} operator failed: {error}",
                elapsed_s=time.perf_counter() - started,
            )
        if isinstance(output, ToolResult):
            return output
        return ToolResult(tool=op.name, text=str(output), elapsed_s=time.perf_counter() - started)

    async def _run_rag(self, query: str) -> tuple[ToolResult, OperatorTiming]:
        started = time.perf_counter()
        if self.tools is None:
            result = ToolResult(
                tool=RAG_NAME, error="rag_unavailable", text="RAG search is not available in this run."
            )
        else:
            result = await self.tools.search(query, k=self.rag_top_k)
        elapsed = time.perf_counter() - started
        return result, OperatorTiming(
            tool=RAG_NAME, latency_s=elapsed, cached=result.cached, error=result.error
        )


def run_answer(
    agent: Agent, images: Sequence[ImageRef | str | Path], question: str, *, mode: AgentMode = "rr"
) -> AgentResult:
    """Synchronous wrapper of :meth:`Agent.answer` for scripts (not for use inside an event loop)."""
    return asyncio.run(agent.answer(images, question, mode=mode))


__all__ = [
    "MODES",
    "SIGNAL_STOP",
    "Agent",
    "UserOperator",
    "close_signal",
    "orr_api_blocks",
    "orr_user_text",
    "run_answer",
]
