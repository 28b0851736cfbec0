"""The Rationale stage: an iterative teacher loop per QA that writes the RR trajectory.

For each QA the teacher sees the image(s), the templated question, the gold answer as a target it must
reach without quoting, and the operators that can run here. It answers each step as JSON
(``thought``, ``operators``, ``rag {needed, query}``, ``next_action``); mmat validates the JSON,
runs the requested operators (concurrently) and the RAG search through the engine's tool layer,
renders the RR step and observation turns with :mod:`mmat.wire`, and loops until ``final_answer`` or
``stages.max_steps``. Then come the summarise turn and the short final answer, which is checked
against the gold answer (:mod:`mmat.stages.verify`); a mismatch re-runs the QA with feedback up to
``stages.answer_retries`` times.

Choices worth knowing:

- **Malformed JSON** is repaired when unambiguous (fences, prose, single quotes, trailing commas) and
  otherwise sent back to the teacher with the error, ``stages.json_retries`` times.
- **An unavailable operator** (not offered here, or switched off by the ``no_operators`` ablation) is
  not run and never appears in the RR text: the teacher is re-asked for the same step with the list
  of available operators (this counts against ``json_retries``); if it insists, the unavailable names
  are dropped from the step. Training data thus never teaches calling an operator the system prompt
  did not declare. A RAG request under the ``no_rag`` ablation is dropped the same way.
- **The step limit**: the teacher is told when its next step is the last; a last step that still asks
  for tools is written without them and ends the reasoning.
- **Multi-QA dialogues** give one segment per QA, run one after the other. A QA that fails is listed
  in ``sample.metadata["rejected_qas"]``, and the engine writes it to the rejects file; the dialogue is
  rejected only when no QA is left.
- **The final answer turn** holds the gold answer (the Foundation stage keeps it unchanged); the
  teacher's own answer only decides whether the QA is accepted.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from mmat import __version__
from mmat.errors import SampleRejected
from mmat.llm.base import ChatMessage, TextPart
from mmat.schema import QA, Provenance, Sample, Segment, Signal, Step, ToolResult, Trajectory, Turn
from mmat.stages.base import Stage, StageContext
from mmat.stages.prompts import PromptTemplate, load_prompt
from mmat.stages.replies import ReplyFormatError, TeacherStep, clean_final_answer, parse_step_reply
from mmat.stages.teacher_calls import REASK, decoding, image_parts
from mmat.stages.verify import check_answer
from mmat.wire import (
    answer_turn,
    observation_turn,
    question_turn,
    render_rr_system,
    render_summarize,
    spell_operator,
    step_turn,
    summarize_turn,
)

logger = logging.getLogger(__name__)

RAG_NAME = "rag"
"""How RAG results are named in the observation turn (``Here are rag results from the previous step:``)."""


def offered_operators(ctx: StageContext) -> dict[str, str]:
    """The operators offered to the teacher: those that can run here, none under ``no_operators``."""
    if ctx.config.ablation == "no_operators":
        return {}
    return dict(ctx.available_tools())


def rag_enabled(ctx: StageContext) -> bool:
    return ctx.config.ablation != "no_rag"


def record_qa_reject(sample: Sample, qa: QA, stage: str, reason: str, detail: str) -> None:
    """Note a QA that did not make it; the engine writes it to the rejects file with its ``qa_id``."""
    sample.metadata.setdefault("rejected_qas", []).append(
        {"qa_id": qa.qa_id, "stage": stage, "reason": reason, "detail": detail}
    )


class RationaleStage(Stage):
    """Writes the RR trajectory of every QA with the teacher, the operators and RAG.

    Example:
        >>> sample = await RationaleStage().run(sample, ctx)
        >>> print(sample.trajectory.segments[0].turns[1].content)
        <THOUGHT>I need the prices in the table.</THOUGHT><OPERATOR>ocr</OPERATOR><SIGNAL>continue</SIGNAL>
    """

    name = "rationale"

    def __init__(self, prompt: PromptTemplate | None = None) -> None:
        self.prompt = prompt or load_prompt("rationale")

    async def run(self, sample: Sample, ctx: StageContext) -> Sample:
        offered = offered_operators(ctx)
        rag = rag_enabled(ctx)
        segments: list[Segment] = []
        failures: list[SampleRejected] = []
        tool_versions: dict[str, str] = {}
        for index, qa in enumerate(sample.qas):
            try:
                segment = await self._qa(sample, qa, index, ctx, offered, rag)
            except SampleRejected as failure:
                failures.append(failure)
                record_qa_reject(sample, qa, self.name, failure.reason, failure.detail)
                continue
            for turn in segment.turns:
                for result in turn.results:
                    if result.version:
                        tool_versions[result.tool] = result.version
            segments.append(segment)
        if not segments:
            first = failures[0]
            raise SampleRejected(first.reason, first.detail)
        if segments[0].qa_id != sample.qas[0].qa_id:
            # The first QA was dropped: the first kept segment now carries the image placeholders.
            qa = next(q for q in sample.qas if q.qa_id == segments[0].qa_id)
            segments[0].turns[0] = question_turn(qa.templated_question, image_placeholders=len(sample.images))
        sample.trajectory = Trajectory(
            system=render_rr_system(offered.items(), rag=rag),
            segments=segments,
            provenance=Provenance(
                mmat_version=__version__,
                prompt_hashes={self.name: self.prompt.hash},
                tool_versions=tool_versions,
                config_hash=ctx.config.fingerprint(),
            ),
        )
        return sample

    # ----------------------------------------------------------------------------------------------

    async def _qa(
        self, sample: Sample, qa: QA, index: int, ctx: StageContext, offered: dict[str, str], rag: bool
    ) -> Segment:
        feedback = ""
        detail = ""
        attempts = ctx.config.stages.answer_retries + 1
        for _ in range(attempts):
            segment, predicted = await self._attempt(sample, qa, index, ctx, offered, rag, feedback)
            check = check_answer(predicted, qa)
            if check.ok:
                segment.verified = True
                return segment
            detail = check.detail
            logger.info("sample %s qa %s: wrong final answer (%s)", sample.id, qa.qa_id, detail)
            feedback = self.prompt.render("retry", predicted=predicted, reason=check.detail)
        raise SampleRejected(
            "answer_mismatch",
            f"qa {qa.qa_id}: the final answer did not match the gold answer in {attempts} attempt(s); last: {detail}",
        )

    async def _attempt(
        self,
        sample: Sample,
        qa: QA,
        index: int,
        ctx: StageContext,
        offered: dict[str, str],
        rag: bool,
        feedback: str,
    ) -> tuple[Segment, str]:
        prompt = self.prompt
        max_steps = max(1, ctx.config.stages.max_steps)
        listing = (
            "\n".join(f"- {name}: {text}" for name, text in offered.items())
            or "- (none: reason without operators)"
        )
        system = prompt.render_system(
            operators=listing, rag_rule=prompt.extra["rag_rules"]["enabled" if rag else "disabled"]
        )
        first = prompt.render("first", question=qa.templated_question, answer=qa.answer, feedback=feedback)
        first = first.replace("\n\n", "\n")
        messages = [
            ChatMessage(role="system", content=system),
            ChatMessage(role="user", content=[*image_parts(sample, ctx), TextPart(text=first)]),
        ]
        placeholders = len(sample.images) if index == 0 else 0
        turns: list[Turn] = [question_turn(qa.templated_question, image_placeholders=placeholders)]
        for number in range(1, max_steps + 1):
            step = await self._ask_step(messages, ctx, offered, rag, number)
            last = number == max_steps
            operators = [] if last else step.operators
            query = None if last or not rag else step.rag_query
            final = last or (step.final and not operators and query is None)
            rr_step = Step(
                thought=step.thought,
                operators=operators,
                rag_query=query,
                signal=Signal.END if final else Signal.CONTINUE,
            )
            turns.append(step_turn(rr_step))
            messages.append(ChatMessage(role="assistant", content=_step_json(step, operators, query, final)))
            if final:
                break
            results = await self._run_tools(sample, ctx, operators, query)
            observation = observation_turn([(name, result.text) for name, result in results])
            observation.results = [result for _, result in results]
            turns.append(observation)
            template = "last" if number + 1 == max_steps else "next"
            messages.append(
                ChatMessage(
                    role="user",
                    content=prompt.render(template, observation=observation.content, number=number + 1),
                )
            )
        turns.append(summarize_turn(qa.question))
        messages.append(
            ChatMessage(
                role="user", content=prompt.render("summarize", summarize=render_summarize(qa.question))
            )
        )
        completion = await ctx.chat(
            messages,
            purpose="rationale.answer",
            prompt_hash=prompt.hash,
            params=decoding(ctx, json_mode=False),
        )
        turns.append(answer_turn(qa.answer))
        return Segment(qa_id=qa.qa_id, turns=turns), clean_final_answer(completion.text)

    async def _ask_step(
        self, messages: list[ChatMessage], ctx: StageContext, offered: dict[str, str], rag: bool, number: int
    ) -> TeacherStep:
        """One step from the teacher: re-asks on malformed JSON and on unavailable operators."""
        retries = ctx.config.stages.json_retries
        extra: list[ChatMessage] = []
        error: Exception | None = None
        for attempt in range(retries + 1):
            completion = await ctx.chat(
                messages + extra,
                purpose="rationale.step",
                prompt_hash=self.prompt.hash,
                params=decoding(ctx, json_mode=True),
            )
            try:
                step = parse_step_reply(completion.text)
            except ReplyFormatError as failure:
                error = failure
                extra = [
                    ChatMessage(role="assistant", content=completion.text),
                    ChatMessage(role="user", content=REASK.format(error=failure)),
                ]
                continue
            if not rag:
                step.rag_query = None
            unavailable = [name for name in step.operators if name not in offered]
            if unavailable:
                if attempt < retries:
                    extra = [
                        ChatMessage(role="assistant", content=completion.text),
                        ChatMessage(
                            role="user",
                            content=self.prompt.render(
                                "unavailable",
                                names=", ".join(unavailable),
                                available=", ".join(offered) or "none",
                                number=number,
                            ),
                        ),
                    ]
                    continue
                logger.info("dropping unavailable operators %s after %d re-asks", unavailable, retries)
                step.operators = [name for name in step.operators if name in offered]
            return step
        raise SampleRejected(
            "malformed_step",
            f"step {number}: the teacher's reply was not a valid JSON step after {retries + 1} tries: {error}",
        )

    async def _run_tools(
        self, sample: Sample, ctx: StageContext, operators: list[str], query: str | None
    ) -> list[tuple[str, ToolResult]]:
        """Run the step's operators and RAG concurrently, in the order the step named them."""
        calls: list[Any] = [ctx.tool(name, sample.images) for name in operators]
        if query is not None:
            calls.append(ctx.search(query, k=ctx.config.search.top_k))
        results = await asyncio.gather(*calls)
        names = [spell_operator(name) for name in operators] + ([RAG_NAME] if query is not None else [])
        return list(zip(names, results, strict=True))


def _step_json(step: TeacherStep, operators: list[str], query: str | None, final: bool) -> str:
    """The teacher's step as it stays in the conversation: normalised, only what was run."""
    return json.dumps(
        {
            "thought": step.thought,
            "operators": operators,
            "rag": {"needed": query is not None, "query": query},
            "next_action": "final_answer" if final else "continue",
        },
        ensure_ascii=False,
    )
