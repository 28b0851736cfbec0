"""The Reflection stage: catch reasoning cheating and skipped math, and repair with reflection turns.

Per segment (QA), in this order:

1. **The gate** (:mod:`mmat.stages.gate`, no LLM call, ``stages.leak_gate``): a thought that talks
   about an answer given in advance rejects the QA (``answer_leak``); a thought that states the gold
   answer before evidence supports it is repaired with a teacher call (prompt ``repair``).
2. **General reflection** (``stages.general_reflection``): the teacher judges the conversation without
   its final answer and, when the reasoning pretends to reach the answer without support, writes the
   trigger and the corrected reasoning. Skipped when the gate already repaired the segment.
3. **Math reflection** (``stages.math_reflection``, only for QAs with a numeric answer or arithmetic in
   the reasoning): the teacher finds skipped derivation steps and writes the supplement.

A repair is written into the trajectory exactly as SPEC §2.1 shows: the last step's signal becomes
``continue`` and is followed by the no-tool turn, then the trigger step
``<THOUGHT>Wait ...</THOUGHT><SIGNAL>reflection</SIGNAL>``, the ``Please make a reflection.`` user
turn, and the corrected step ending with ``<SIGNAL>end</SIGNAL>``; the summarise turn and the answer
follow. Trigger wording comes from the teacher; when it gives none (or one that states the answer) a
paraphrase from the prompt file is picked deterministically per QA. The whole stage is off under the
``no_reflection`` ablation.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from mmat.errors import SampleRejected
from mmat.llm.base import ChatMessage, TextPart
from mmat.schema import QA, Reflection, ReflectionKind, Sample, Segment, Signal, Step, TurnKind
from mmat.stages.base import Stage, StageContext
from mmat.stages.gate import META_LEAK, check_segment, mentions_answer
from mmat.stages.prompts import PromptTemplate, load_prompt
from mmat.stages.rationale import record_qa_reject
from mmat.stages.replies import ReplyFormatError, as_bool, extract_json_object
from mmat.stages.teacher_calls import ask_json, image_parts, render_transcript
from mmat.stages.verify import parse_number
from mmat.wire import observation_turn, question_turn, reflection_prompt_turn, step_turn


@dataclass
class Repair:
    """A reflection to write: why, the trigger sentence and the corrected reasoning."""

    needed: bool
    reason: str = ""
    trigger: str = ""
    thought: str = ""


def _text(data: dict[str, object], key: str) -> str:
    value = data.get(key) or ""
    if not isinstance(value, str):
        raise ReplyFormatError(f'"{key}" must be a string')
    return " ".join(value.split())


def _parse_judgement(flag: str, body: str):  # type: ignore[no-untyped-def]
    def parse(text: str) -> Repair:
        data = extract_json_object(text)
        if flag not in data:
            raise ReplyFormatError(f'the reply needs "{flag}": true or false')
        if not as_bool(data[flag]):
            return Repair(False)
        thought = _text(data, body)
        if not thought:
            raise ReplyFormatError(f'"{flag}" is true, so "{body}" must hold the corrected reasoning')
        if re.search(r"</?(THOUGHT|SIGNAL|OPERATOR|RAG)>", thought, re.IGNORECASE):
            raise ReplyFormatError(f'"{body}" must be plain text without tags')
        return Repair(True, _text(data, "reason"), _text(data, "trigger"), thought)

    return parse


def _parse_repair(text: str) -> Repair:
    data = extract_json_object(text)
    thought = _text(data, "corrected_thought")
    if not thought:
        raise ReplyFormatError('"corrected_thought" must hold the corrected reasoning step')
    return Repair(True, "", _text(data, "trigger"), thought)


def add_reflection(segment: Segment, kind: ReflectionKind, reason: str, trigger: str, thought: str) -> None:
    """Write a repair into a segment as reflection turns, before its summarise turn (SPEC §2.1)."""
    summarize = max(i for i, turn in enumerate(segment.turns) if turn.kind is TurnKind.SUMMARIZE)
    last = segment.turns[summarize - 1]
    if last.kind is not TurnKind.STEP or last.step is None:
        raise SampleRejected("bad_trajectory", "the turn before the summarise turn must be a reasoning step")
    reopened = step_turn(last.step.model_copy(update={"signal": Signal.CONTINUE, "format": None}))
    reopened.results = last.results
    segment.turns[summarize - 1] = reopened
    segment.turns[summarize:summarize] = [
        observation_turn([]),
        step_turn(Step(thought=trigger, signal=Signal.REFLECTION)),
        reflection_prompt_turn(),
        step_turn(Step(thought=thought, signal=Signal.END)),
    ]
    segment.reflections.append(Reflection(kind=kind, reason=reason, trigger_turn=summarize + 1))


def is_math(segment: Segment, qa: QA) -> bool:
    """A QA worth a math check: a numeric answer, or arithmetic in its reasoning."""
    if parse_number(qa.answer, qa.unit) is not None:
        return True
    return any(
        turn.step is not None and re.search(r"\d\s*[-+×x*/÷=]\s*\d", turn.step.thought)
        for turn in segment.turns
    )


class ReflectionStage(Stage):
    """General (anti-cheating) and math reflection, plus the deterministic leak and grounding gate.

    Example:
        >>> sample = await ReflectionStage().run(sample, ctx)
        >>> sample.trajectory.segments[0].reflections[0].kind
        <ReflectionKind.MATH: 'math'>
    """

    name = "reflection"

    def __init__(
        self,
        general: PromptTemplate | None = None,
        math: PromptTemplate | None = None,
        repair: PromptTemplate | None = None,
    ) -> None:
        self.general = general or load_prompt("general_reflection")
        self.math = math or load_prompt("math_reflection")
        self.repair = repair or load_prompt("repair")

    def enabled(self, config) -> bool:  # type: ignore[no-untyped-def]
        return config.ablation != "no_reflection"

    async def run(self, sample: Sample, ctx: StageContext) -> Sample:
        trajectory = sample.trajectory
        if trajectory is None:
            return sample
        qas = {qa.qa_id: qa for qa in sample.qas}
        kept: list[Segment] = []
        failures: list[SampleRejected] = []
        for segment in trajectory.segments:
            qa = qas[segment.qa_id]
            try:
                await self._reflect(sample, segment, qa, ctx)
            except SampleRejected as failure:
                failures.append(failure)
                record_qa_reject(sample, qa, self.name, failure.reason, failure.detail)
                continue
            kept.append(segment)
        if not kept:
            raise SampleRejected(failures[0].reason, failures[0].detail)
        if kept[0] is not trajectory.segments[0]:
            kept[0].turns[0] = question_turn(
                qas[kept[0].qa_id].templated_question, image_placeholders=len(sample.images)
            )
        trajectory.segments = kept
        hashes = trajectory.provenance.prompt_hashes
        for prompt in (self.general, self.math, self.repair):
            hashes[prompt.name] = prompt.hash
        return sample

    async def _reflect(self, sample: Sample, segment: Segment, qa: QA, ctx: StageContext) -> None:
        stages = ctx.config.stages
        repaired = False
        if stages.leak_gate:
            findings = check_segment(segment, qa)
            for finding in findings:
                if finding.kind == "meta_leak":
                    raise SampleRejected("answer_leak", f"qa {qa.qa_id}: {finding.reason}")
            if findings:
                reason = "; ".join(f.reason for f in findings)
                fix = await self._ask(
                    sample, segment, qa, ctx, self.repair, "repair", _parse_repair, reason=reason
                )
                self._write(sample, segment, qa, ReflectionKind.GATE, reason, fix, self.general)
                repaired = True
        if stages.general_reflection and not repaired:
            judged = await self._ask(
                sample,
                segment,
                qa,
                ctx,
                self.general,
                "judge",
                _parse_judgement("cheating", "corrected_thought"),
            )
            if judged.needed:
                reason = judged.reason or "the reasoning reached the answer without support"
                self._write(sample, segment, qa, ReflectionKind.GENERAL, reason, judged, self.general)
        if stages.math_reflection and is_math(segment, qa):
            judged = await self._ask(
                sample, segment, qa, ctx, self.math, "judge", _parse_judgement("gap", "supplement")
            )
            if judged.needed:
                reason = judged.reason or "a derivation step was skipped"
                self._write(sample, segment, qa, ReflectionKind.MATH, reason, judged, self.math)

    async def _ask(
        self,
        sample: Sample,
        segment: Segment,
        qa: QA,
        ctx: StageContext,
        prompt: PromptTemplate,
        template: str,
        parse,  # type: ignore[no-untyped-def]
        **values: str,
    ) -> Repair:
        text = prompt.render(
            template,
            question=qa.templated_question,
            answer=qa.answer,
            conversation=render_transcript(segment.turns),
            **values,
        )
        messages = [
            ChatMessage(role="system", content=prompt.system),
            ChatMessage(role="user", content=[*image_parts(sample, ctx), TextPart(text=text)]),
        ]
        repair, _ = await ask_json(
            ctx,
            messages,
            parse,
            purpose=f"reflection.{prompt.name}",
            prompt=prompt,
            retries=ctx.config.stages.json_retries,
            reject_reason="malformed_reflection",
        )
        return repair

    def _write(
        self,
        sample: Sample,
        segment: Segment,
        qa: QA,
        kind: ReflectionKind,
        reason: str,
        fix: Repair,
        paraphrases: PromptTemplate,
    ) -> None:
        leak = META_LEAK.search(fix.thought) or META_LEAK.search(fix.trigger)
        if leak:
            raise SampleRejected(
                "answer_leak",
                f"qa {qa.qa_id}: the {kind.value} reflection refers to a given answer ({leak.group(0)!r})",
            )
        trigger = fix.trigger
        if not trigger or mentions_answer(trigger, qa):
            options = list(paraphrases.extra.get("triggers") or ["Wait, let me check my reasoning."])
            pick = int(hashlib.sha256(f"{sample.id}/{qa.qa_id}/{kind.value}".encode()).hexdigest(), 16)
            trigger = options[pick % len(options)]
        add_reflection(segment, kind, reason, trigger, fix.thought)
