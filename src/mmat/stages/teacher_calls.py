"""How stages talk to the teacher: image parts, JSON calls with re-asks, transcripts for judges."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from mmat.errors import SampleRejected
from mmat.llm.base import ChatMessage, DecodingParams, ImagePart, TextPart
from mmat.schema import Sample, Turn, TurnKind
from mmat.stages.base import StageContext
from mmat.stages.prompts import PromptTemplate
from mmat.stages.replies import ReplyFormatError

T = TypeVar("T")

REASK = (
    "Your reply could not be used: {error}\nReply again with exactly one JSON object in the format the "
    "instructions give, and nothing else."
)


def image_parts(sample: Sample, ctx: StageContext) -> list[TextPart | ImagePart]:
    """The sample's images as message parts (by reference; the teacher client encodes them)."""
    detail = ctx.config.teacher.image_detail
    return [ImagePart(image=ref, detail=detail) for ref in sample.images]


def decoding(ctx: StageContext, *, json_mode: bool) -> DecodingParams:
    teacher = ctx.config.teacher
    return DecodingParams(
        temperature=teacher.temperature,
        max_tokens=teacher.max_tokens,
        json_mode=json_mode,
        seed=ctx.config.seed,
    )


async def ask_json(
    ctx: StageContext,
    messages: list[ChatMessage],
    parse: Callable[[str], T],
    *,
    purpose: str,
    prompt: PromptTemplate,
    retries: int,
    reject_reason: str,
) -> tuple[T, str]:
    """One teacher call whose reply must parse; a bad reply is sent back with the error, ``retries`` times.

    Returns the parsed value and the raw reply text.

    Raises:
        SampleRejected: with ``reject_reason`` when every reply was malformed.
    """
    extra: list[ChatMessage] = []
    error: ReplyFormatError | None = None
    for _ in range(retries + 1):
        completion = await ctx.chat(
            messages + extra, purpose=purpose, prompt_hash=prompt.hash, params=decoding(ctx, json_mode=True)
        )
        try:
            return parse(completion.text), completion.text
        except ReplyFormatError as failure:
            error = failure
            extra = [
                ChatMessage(role="assistant", content=completion.text),
                ChatMessage(role="user", content=REASK.format(error=failure)),
            ]
    raise SampleRejected(
        reject_reason, f"{purpose}: the teacher's reply was unusable after {retries + 1} tries: {error}"
    )


def render_transcript(turns: Sequence[Turn], *, include_answer: bool = False) -> str:
    """A judge-readable transcript of RR turns (``user: ...`` / ``assistant: ...``)."""
    lines = []
    for turn in turns:
        if turn.kind is TurnKind.ANSWER and not include_answer:
            continue
        if turn.kind is TurnKind.SUMMARIZE and not include_answer:
            continue
        lines.append(f"{turn.role}: {turn.content}")
    return "\n".join(lines)
