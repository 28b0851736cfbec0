"""The Quality stage: a judge scores each finished sample from 0 to 1 (SPEC §1 quality check).

The judge sees the image(s) and the whole RR conversation and scores coherence, relevance, accuracy,
completeness and image-text integration; it replies ``{"quality_score", "scoring_reason",
"criteria"}``. The score is kept in ``sample.quality``; a sample below ``stages.quality_threshold`` is
rejected with reason ``low_quality`` (its score and the judge's reason in the detail).
"""

from __future__ import annotations

from mmat.config import RunConfig
from mmat.errors import SampleRejected
from mmat.llm.base import ChatMessage, TextPart
from mmat.schema import Quality, Sample
from mmat.stages.base import Stage, StageContext
from mmat.stages.prompts import PromptTemplate, load_prompt
from mmat.stages.replies import ReplyFormatError, extract_json_object
from mmat.stages.teacher_calls import ask_json, image_parts
from mmat.wire import render_rr_messages


def _score(value: object, what: str) -> float:
    try:
        score = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ReplyFormatError(f'"{what}" must be a number from 0.0 to 1.0') from None
    if 1.0 < score <= 10.0 and what == "quality_score":
        raise ReplyFormatError('"quality_score" must be between 0.0 and 1.0, not on a 10-point scale')
    if not 0.0 <= score <= 1.0:
        raise ReplyFormatError(f'"{what}" must be between 0.0 and 1.0')
    return score


def parse_quality(text: str) -> Quality:
    """Validate the judge's reply; raises ReplyFormatError naming the bad field."""
    data = extract_json_object(text)
    if "quality_score" not in data:
        raise ReplyFormatError('the reply needs "quality_score" (0.0-1.0) and "scoring_reason"')
    criteria_raw = data.get("criteria") or {}
    if not isinstance(criteria_raw, dict):
        raise ReplyFormatError('"criteria" must map criterion names to scores')
    criteria = {str(k): _score(v, f"criteria.{k}") for k, v in criteria_raw.items()}
    reason = data.get("scoring_reason") or data.get("reason") or ""
    return Quality(
        score=_score(data["quality_score"], "quality_score"), reason=str(reason), criteria=criteria
    )


class QualityStage(Stage):
    """Scores every sample with a judge call and rejects those below the threshold.

    Example:
        >>> sample = await QualityStage().run(sample, ctx)
        >>> sample.quality.score, sample.quality.passed
        (0.9, True)
    """

    name = "quality"

    def __init__(self, prompt: PromptTemplate | None = None) -> None:
        self.prompt = prompt or load_prompt("quality")

    def enabled(self, config: RunConfig) -> bool:
        return config.stages.quality

    async def run(self, sample: Sample, ctx: StageContext) -> Sample:
        if sample.trajectory is None:
            raise SampleRejected("no_trajectory", "Quality needs the Rationale stage's trajectory")
        conversation = "\n".join(
            f"{role}: {content}"
            for role, content in render_rr_messages(sample.trajectory)
            if role != "system"
        )
        messages = [
            ChatMessage(role="system", content=self.prompt.system),
            ChatMessage(
                role="user",
                content=[
                    *image_parts(sample, ctx),
                    TextPart(text=self.prompt.render("judge", conversation=conversation)),
                ],
            ),
        ]
        quality, _ = await ask_json(
            ctx,
            messages,
            parse_quality,
            purpose="quality",
            prompt=self.prompt,
            retries=ctx.config.stages.json_retries,
            reject_reason="malformed_quality",
        )
        threshold = ctx.config.stages.quality_threshold
        quality.passed = quality.score >= threshold
        sample.trajectory.provenance.prompt_hashes[self.name] = self.prompt.hash
        sample.quality = quality
        if not quality.passed:
            raise SampleRejected(
                "low_quality",
                f"quality score {quality.score:.2f} is below the threshold {threshold}: {quality.reason}",
            )
        return sample
