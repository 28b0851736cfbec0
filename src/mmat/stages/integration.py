"""The Integration stage: RR -> ORR, the one-turn form of every segment (SPEC §2.2).

Per segment: the user turn is the templated question followed by one api block per non-RAG operator
output (in the order the operators ran; identical outputs once; failed operators left out); the
assistant turn merges every thought, reflection text included, in order, into one ``<THOUGHT>``
followed by ``<ANSWER>The answer is: ...</ANSWER>``. Both are rendered by :mod:`mmat.wire`, the same
functions the ORR agent uses at inference. Off when ``stages.integration`` is false, except under the
``orr_only`` ablation.
"""

from __future__ import annotations

from mmat.config import RunConfig
from mmat.errors import SampleRejected
from mmat.schema import ApiBlock, OrrSample, OrrSegment, Sample, Segment, TurnKind
from mmat.stages.base import Stage, StageContext
from mmat.wire import (
    ORR_SYSTEM_PROMPT,
    canonical_operator,
    parse_observation,
    render_orr_answer,
    render_orr_user,
)

RAG_NAMES = {"rag", "search", "web_search", "wikipedia"}


def api_blocks(segment: Segment) -> list[ApiBlock]:
    """The non-RAG operator outputs of a segment, as ORR api blocks."""
    blocks: list[ApiBlock] = []
    seen: set[tuple[str, str]] = set()
    operators: list[str] = []
    for turn in segment.turns:
        if turn.kind is TurnKind.STEP and turn.step is not None:
            operators = list(turn.step.operators)
            continue
        if turn.kind is not TurnKind.OBSERVATION:
            continue
        if turn.results:
            pairs = [
                (name, result.text)
                for name, result in zip(operators, turn.results, strict=False)
                if result.ok
            ]
        else:  # an imported trajectory: read the observation text
            observation = parse_observation(turn.content)
            pairs = list(zip(observation.names, observation.texts, strict=False))
        for name, text in pairs:
            tool = canonical_operator(name)
            if tool in RAG_NAMES or (tool, text) in seen:
                continue
            seen.add((tool, text))
            blocks.append(ApiBlock(tool=tool, text=text))
    return blocks


def merged_thought(segment: Segment) -> str:
    """Every thought of a segment, reflection text included, in order."""
    return " ".join(
        turn.step.thought.strip()
        for turn in segment.turns
        if turn.kind is TurnKind.STEP and turn.step is not None
    )


def to_orr_segment(segment: Segment, templated_question: str) -> OrrSegment:
    answers = [turn.content for turn in segment.turns if turn.kind is TurnKind.ANSWER]
    if not answers:
        raise SampleRejected("bad_trajectory", f"segment {segment.qa_id} has no final answer turn")
    blocks = api_blocks(segment)
    thought = merged_thought(segment)
    return OrrSegment(
        qa_id=segment.qa_id,
        user=render_orr_user(templated_question, blocks),
        assistant=render_orr_answer(thought, answers[-1]),
        api_blocks=blocks,
        thought=thought,
        answer=answers[-1],
    )


class IntegrationStage(Stage):
    """Turns the RR trajectory into its ORR form (``sample.orr``).

    Example:
        >>> sample = await IntegrationStage().run(sample, ctx)
        >>> sample.orr.segments[0].assistant
        '<THOUGHT>I read the table. 2 x 4.4 = 8.8</THOUGHT><ANSWER>The answer is: 8.80</ANSWER>'
    """

    name = "integration"

    def enabled(self, config: RunConfig) -> bool:
        return config.stages.integration or config.ablation == "orr_only"

    async def run(self, sample: Sample, ctx: StageContext) -> Sample:
        if sample.trajectory is None:
            raise SampleRejected("no_trajectory", "Integration needs the Rationale stage's trajectory")
        questions = {qa.qa_id: qa.templated_question for qa in sample.qas}
        sample.orr = OrrSample(
            system=ORR_SYSTEM_PROMPT,
            segments=[to_orr_segment(s, questions[s.qa_id]) for s in sample.trajectory.segments],
        )
        return sample
