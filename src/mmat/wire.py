"""The MMAT-1M wire format: the tagged RR and ORR strings, rendered and parsed by one module.

Training data and inference speak one format because this module writes and reads both (SPEC §2).
Parsing is tolerant of what real data and real models produce (newlines between tags, several
operators separated by commas, ``face detection`` with a space, upper-case operator names, the
``-ocr information: `` prefix) and keeps how a string was spelled so that
``render_step(parse_step(s)) == s`` for every well-formed string.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from mmat.errors import WireFormatError
from mmat.schema import (
    ApiBlock,
    Segment,
    Signal,
    Step,
    StepFormat,
    Trajectory,
    Turn,
    TurnKind,
)

# --------------------------------------------------------------------------------------------------
# Operators

OPERATOR_NAMES = ("image_caption", "label_bbox", "ocr", "face_detection")
"""The paper's four image operators, as named in the data. RAG is a tag of its own, not an operator."""

_RR_SPELLING = {"face_detection": "face detection"}


def canonical_operator(name: str) -> str:
    """Return the canonical operator name: ``"face detection"`` -> ``"face_detection"``, ``"OCR"`` -> ``"ocr"``."""
    return re.sub(r"[\s\-]+", "_", name.strip()).lower()


def spell_operator(name: str) -> str:
    """Return how RR text writes an operator (``face_detection`` is written ``face detection``)."""
    return _RR_SPELLING.get(name, name)


# --------------------------------------------------------------------------------------------------
# RR assistant steps

_TAIL_BLOCK = re.compile(r"<(OPERATOR|RAG)>(.*?)</\1>(\s*)", re.IGNORECASE | re.DOTALL)
_SIGNAL = re.compile(r"<SIGNAL>(.*?)</SIGNAL>(\s*)\Z", re.IGNORECASE | re.DOTALL)
_THOUGHT_OPEN = re.compile(r"\A(\s*)<THOUGHT>", re.IGNORECASE)
_THOUGHT_CLOSE = re.compile(r"</THOUGHT>", re.IGNORECASE)
_OPERATOR_SPLIT = re.compile(r"(\s*[,;]\s*)")
_NO_OPERATOR = {"", "none", "null", "n/a", "no"}


def _parse_tail(tail: str) -> tuple[list[str], list[tuple[str, str]], str, str] | None:
    """Parse what follows ``</THOUGHT>``: optional blocks then the signal. None if it does not fit."""
    gap = re.match(r"\s*", tail)
    assert gap is not None
    gaps = [gap.group(0)]
    pos = gap.end()
    blocks: list[tuple[str, str]] = []
    while True:
        match = _TAIL_BLOCK.match(tail, pos)
        if not match:
            break
        blocks.append((match.group(1).lower(), match.group(2)))
        gaps.append(match.group(3))
        pos = match.end()
    signal = _SIGNAL.match(tail, pos)
    if not signal:
        return None
    return gaps, blocks, signal.group(1), signal.group(2)


def parse_step(text: str) -> Step:
    """Parse one RR assistant step.

    Raises:
        WireFormatError: naming what is missing or wrong (no ``<THOUGHT>``, no ``<SIGNAL>``, an
            unknown signal, a repeated block).
    """
    opening = _THOUGHT_OPEN.match(text)
    if not opening:
        raise WireFormatError("an RR step must start with <THOUGHT>", text)
    closings = [m for m in _THOUGHT_CLOSE.finditer(text, opening.end())]
    if not closings:
        raise WireFormatError("an RR step needs a closing </THOUGHT> tag", text)
    # The thought may itself contain tags: take the last </THOUGHT> whose tail is well formed.
    for close in reversed(closings):
        parsed = _parse_tail(text[close.end() :])
        if parsed is not None:
            break
    else:
        if not re.search(r"<SIGNAL>", text, re.IGNORECASE):
            raise WireFormatError("an RR step must end with <SIGNAL>continue|reflection|end</SIGNAL>", text)
        raise WireFormatError(
            "after </THOUGHT> an RR step allows only <OPERATOR>, <RAG> and a final <SIGNAL> block", text
        )
    gaps, blocks, raw_signal, trailing = parsed
    try:
        signal = Signal(raw_signal.strip().lower())
    except ValueError:
        raise WireFormatError(
            f"unknown signal {raw_signal.strip()!r}; expected one of continue, reflection, end", text
        ) from None
    kinds = [kind for kind, _ in blocks]
    for kind in ("operator", "rag"):
        if kinds.count(kind) > 1:
            raise WireFormatError(f"an RR step may hold at most one <{kind.upper()}> block", text)
    fmt = StepFormat(leading=opening.group(1), gaps=gaps, order=kinds, trailing=trailing)  # type: ignore[arg-type]
    operators: list[str] = []
    rag_query: str | None = None
    for kind, inner in blocks:
        if kind == "rag":
            rag_query = inner
            continue
        stripped = inner.strip()
        fmt.operator_padding = (inner[: len(inner) - len(inner.lstrip())], inner[len(inner.rstrip()) :])
        if stripped.lower() in _NO_OPERATOR:
            fmt.operator_spellings = [stripped]
            continue
        parts = _OPERATOR_SPLIT.split(stripped)
        fmt.operator_spellings = parts[0::2]
        fmt.operator_separators = parts[1::2]
        operators = [canonical_operator(p) for p in fmt.operator_spellings if p.strip()]
    step = Step(
        thought=text[opening.end() : close.start()],
        operators=operators,
        rag_query=rag_query,
        signal=signal,
    )
    if render_step(step) != text:
        step.format = fmt
    return step


def render_step(step: Step) -> str:
    """Render an RR assistant step; a parsed step renders back to its exact input."""
    fmt = step.format
    if step.rag_query is not None and re.search(r"</RAG>|<SIGNAL>", step.rag_query, re.IGNORECASE):
        raise WireFormatError("a RAG query may not contain </RAG> or <SIGNAL>", step.rag_query)
    if fmt is not None:
        order: list[str] = list(fmt.order)
    else:
        order = (["operator"] if step.operators else []) + (["rag"] if step.rag_query is not None else [])
    gaps = list(fmt.gaps) if fmt is not None else []
    gaps += [""] * (len(order) + 1 - len(gaps))
    out = [fmt.leading if fmt else "", "<THOUGHT>", step.thought, "</THOUGHT>", gaps[0]]
    for i, kind in enumerate(order):
        if kind == "rag":
            out += ["<RAG>", step.rag_query or "", "</RAG>"]
        else:
            out += ["<OPERATOR>", _render_operators(step), "</OPERATOR>"]
        out.append(gaps[i + 1])
    out += ["<SIGNAL>", step.signal.value, "</SIGNAL>", fmt.trailing if fmt else ""]
    return "".join(out)


def _render_operators(step: Step) -> str:
    fmt = step.format
    if fmt is not None and fmt.operator_spellings:
        spelled = [s for s in fmt.operator_spellings if s.strip().lower() not in _NO_OPERATOR]
        if [canonical_operator(s) for s in spelled] == step.operators:
            parts = [fmt.operator_spellings[0]]
            for separator, spelling in zip(fmt.operator_separators, fmt.operator_spellings[1:], strict=False):
                parts += [separator, spelling]
            left, right = fmt.operator_padding
            return left + "".join(parts) + right
    return ", ".join(spell_operator(name) for name in step.operators)


# --------------------------------------------------------------------------------------------------
# System prompts

OPERATOR_DESCRIPTIONS = {
    "image_caption": "describes the image: first a scene graph of objects, attributes and relations, then a caption",
    "label_bbox": "open-vocabulary detection: finds the named objects and returns their normalised boxes",
    "ocr": "reads the text in the image",
    "face_detection": "finds human faces and returns their pixel boxes",
}
"""One-line descriptions offered to the teacher and the tuned model."""


def render_rr_system(operators: Iterable[tuple[str, str]] | None = None, *, rag: bool = True) -> str:
    """The RR system prompt listing the operators the model may call (name, one-line description)."""
    listed = list(operators if operators is not None else OPERATOR_DESCRIPTIONS.items())
    lines = [
        "You are a visual reasoning agent. Answer the question about the image by reasoning step by step.",
        "At each step you may call operators that look at the image"
        + (" and RAG, a web search for knowledge the image does not show." if rag else "."),
        "Available operators:",
        *(f"- {spell_operator(name)}: {description}" for name, description in listed),
        "Write every step as <THOUGHT>one concise reasoning step</THOUGHT>, then optionally "
        "<OPERATOR>comma-separated operator names</OPERATOR>"
        + (" and <RAG>a search query</RAG>" if rag else "")
        + ", then <SIGNAL>continue</SIGNAL>.",
        "The results come back in the next turn. Use <SIGNAL>reflection</SIGNAL> when your reasoning "
        "should be checked and <SIGNAL>end</SIGNAL> when it is complete.",
        "When asked to summarize, reply with the short final answer only.",
    ]
    return "\n".join(lines)


ORR_SYSTEM_PROMPT = (
    "You are a visual reasoning assistant. Reason step by step using the image and the provided operator "
    "outputs, then answer in the form "
    "<THOUGHT>your reasoning</THOUGHT><ANSWER>The answer is: your answer</ANSWER>"
)


# --------------------------------------------------------------------------------------------------
# RR user turns

QUESTION_SUFFIX = "Please start your reasoning."
CONTINUE_SUFFIX = "Please continue your reasoning."
NO_TOOL_TURN = "No additional operator or rag results were selected in the previous step. Please continue your reasoning."
REFLECTION_PROMPT_TURN = (
    "No additional operator or rag results were selected in the previous step. Please make a reflection."
)
SUMMARIZE_PREFIX = (
    "Based on the above information, please summarize and give the answer to the initial question: "
)
_OBSERVATION = re.compile(
    r"\AHere are (?P<names>.+?) results from the previous step:(?P<head>\s*)(?P<body>.*?)(?P<tail>\s*)"
    + re.escape(CONTINUE_SUFFIX)
    + r"\Z",
    re.DOTALL,
)


@dataclass
class Observation:
    """A parsed observation turn: which results it carries, and how it was laid out.

    ``names`` are spelled as in the text (``face detection``). With ``labelled`` each text follows a
    ``-name information: `` marker; ``seps`` holds the whitespace after the header, between blocks and
    before the closing sentence.
    """

    names: list[str]
    texts: list[str]
    labelled: bool = False
    seps: list[str] = field(default_factory=list)


def render_observation(
    results: Sequence[tuple[str, str]] | Observation, *, labelled: bool | None = None
) -> str:
    """Render the user turn that returns operator and RAG results to the model.

    Args:
        results: ``(operator name, rendered text)`` pairs in the order the step asked for them, or a
            parsed :class:`Observation`.
        labelled: prefix each text with ``-name information: ``; by default only when there are
            several results.
    """
    if isinstance(results, Observation):
        obs = results
    else:
        names = [spell_operator(canonical_operator(name)) for name, _ in results]
        is_labelled = len(results) > 1 if labelled is None else labelled
        sep = "\n" if is_labelled else " "
        obs = Observation(names, [text for _, text in results], is_labelled, [sep] * (len(results) + 1))
    if not obs.names:
        raise WireFormatError("an observation turn needs at least one result; use NO_TOOL_TURN instead", "")
    seps = obs.seps + [" "] * (len(obs.texts) + 1 - len(obs.seps))
    body = []
    for i, text in enumerate(obs.texts):
        if i:
            body.append(seps[i])
        body.append(f"-{obs.names[i]} information: {text}" if obs.labelled else text)
    return (
        f"Here are {', '.join(obs.names)} results from the previous step:"
        + seps[0]
        + "".join(body)
        + seps[len(obs.texts)]
        + CONTINUE_SUFFIX
    )


def parse_observation(text: str) -> Observation:
    """Parse an observation turn; accepts texts with or without the ``-name information: `` prefix."""
    match = _OBSERVATION.match(text)
    if not match:
        raise WireFormatError(
            "an observation turn reads 'Here are NAME results from the previous step: ... "
            + CONTINUE_SUFFIX
            + "'",
            text,
        )
    names = [n for n in re.split(r", ", match.group("names"))]
    body = match.group("body")
    markers = [f"-{name} information: " for name in names]
    if body.startswith(markers[0]):
        texts: list[str] = []
        seps = [match.group("head")]
        rest = body[len(markers[0]) :]
        for marker in markers[1:]:
            at = rest.find(marker)
            if at < 0:
                break
            chunk = rest[:at]
            stripped = chunk.rstrip()
            texts.append(stripped)
            seps.append(chunk[len(stripped) :])
            rest = rest[at + len(marker) :]
        else:
            texts.append(rest)
            seps.append(match.group("tail"))
            return Observation(names, texts, True, seps)
    return Observation(names, [body], False, [match.group("head"), match.group("tail")])


def render_question(templated_question: str, *, image_placeholders: int = 0) -> str:
    """The first user turn of a segment: the question, then ``Please start your reasoning.``"""
    return "<image>\n" * image_placeholders + f"{templated_question} {QUESTION_SUFFIX}"


def parse_question(text: str) -> tuple[str, int]:
    """Return the templated question and the number of leading ``<image>`` placeholders."""
    count = 0
    rest = text
    while rest.startswith("<image>"):
        count += 1
        rest = rest[len("<image>") :].lstrip("\n")
    if not rest.rstrip().endswith(QUESTION_SUFFIX):
        raise WireFormatError(f"a question turn must end with {QUESTION_SUFFIX!r}", text)
    return rest.rstrip()[: -len(QUESTION_SUFFIX)].rstrip(), count


def render_summarize(question: str) -> str:
    """The user turn that asks for the short final answer."""
    return SUMMARIZE_PREFIX + question


# --------------------------------------------------------------------------------------------------
# ORR

ORR_API_INTRO = "Use the following API outputs to help answer the question:"
_API_BLOCK = re.compile(
    r"<\|begin_api_invoke\|>(?P<tool>.*?)<\|end_api_invoke\|><\|begin_result_of_api\|>(?P<text>.*?)"
    r"<\|end_result_of_api\|>",
    re.DOTALL,
)
_ORR_ANSWER = re.compile(
    r"\A(?P<lead>\s*)<THOUGHT>(?P<thought>.*)</THOUGHT>(?P<gap>\s*)<ANSWER>(?P<prefix>\s*The answer is:\s*)?"
    r"(?P<answer>.*?)</ANSWER>(?P<trail>\s*)\Z",
    re.DOTALL | re.IGNORECASE,
)


def render_api_block(tool: str, text: str) -> str:
    return f"<|begin_api_invoke|>{tool}<|end_api_invoke|><|begin_result_of_api|>{text}<|end_result_of_api|>"


def render_orr_user(
    templated_question: str, blocks: Sequence[ApiBlock], *, image_placeholders: int = 0
) -> str:
    """The ORR user turn: question, then one api block per non-RAG operator output.

    The Integration stage and the ORR agent both build their prompt with this function.
    """
    head = "<image>\n" * image_placeholders + templated_question
    if not blocks:
        return head
    return "\n".join([head, ORR_API_INTRO, *(render_api_block(b.tool, b.text) for b in blocks)])


def parse_orr_user(text: str) -> tuple[str, list[ApiBlock]]:
    """Return the question part and the api blocks of an ORR user turn."""
    at = text.find(ORR_API_INTRO)
    if at < 0:
        return text, []
    blocks = [ApiBlock(tool=m.group("tool"), text=m.group("text")) for m in _API_BLOCK.finditer(text, at)]
    return text[:at].rstrip("\n"), blocks


@dataclass
class OrrAnswer:
    """A parsed ORR assistant turn ``<THOUGHT>..</THOUGHT><ANSWER>The answer is: ..</ANSWER>``."""

    thought: str
    answer: str
    layout: tuple[str, str, str, str] = ("", "", "The answer is: ", "")


def render_orr_answer(thought: str | OrrAnswer, answer: str = "") -> str:
    """Render the ORR assistant turn (the merged thought and the final answer)."""
    parsed = thought if isinstance(thought, OrrAnswer) else OrrAnswer(thought, answer)
    lead, gap, prefix, trail = parsed.layout
    return f"{lead}<THOUGHT>{parsed.thought}</THOUGHT>{gap}<ANSWER>{prefix}{parsed.answer}</ANSWER>{trail}"


def parse_orr_answer(text: str) -> OrrAnswer:
    """Parse an ORR answer; ``The answer is:`` is optional, tags are case-insensitive."""
    match = _ORR_ANSWER.match(text)
    if not match:
        if "<ANSWER>" not in text.upper():
            raise WireFormatError("an ORR answer needs <ANSWER>The answer is: ...</ANSWER>", text)
        raise WireFormatError("an ORR answer reads <THOUGHT>...</THOUGHT><ANSWER>...</ANSWER>", text)
    layout = (match.group("lead"), match.group("gap"), match.group("prefix") or "", match.group("trail"))
    return OrrAnswer(match.group("thought"), match.group("answer"), layout)


# --------------------------------------------------------------------------------------------------
# Turns and whole trajectories


def question_turn(templated_question: str, *, image_placeholders: int = 0) -> Turn:
    return Turn(
        role="user",
        kind=TurnKind.QUESTION,
        content=render_question(templated_question, image_placeholders=image_placeholders),
    )


def step_turn(step: Step) -> Turn:
    return Turn(role="assistant", kind=TurnKind.STEP, content=render_step(step), step=step)


def observation_turn(results: Sequence[tuple[str, str]], *, labelled: bool | None = None) -> Turn:
    """The user turn after a step; with no results it is the fixed no-tool turn."""
    if not results:
        return Turn(role="user", kind=TurnKind.NO_TOOL, content=NO_TOOL_TURN)
    return Turn(
        role="user", kind=TurnKind.OBSERVATION, content=render_observation(results, labelled=labelled)
    )


def reflection_prompt_turn() -> Turn:
    return Turn(role="user", kind=TurnKind.REFLECTION_PROMPT, content=REFLECTION_PROMPT_TURN)


def summarize_turn(question: str) -> Turn:
    return Turn(role="user", kind=TurnKind.SUMMARIZE, content=render_summarize(question))


def answer_turn(answer: str) -> Turn:
    return Turn(role="assistant", kind=TurnKind.ANSWER, content=answer)


def classify_user_turn(text: str) -> TurnKind:
    """Tell which RR user turn a text is."""
    if text == NO_TOOL_TURN:
        return TurnKind.NO_TOOL
    if text == REFLECTION_PROMPT_TURN:
        return TurnKind.REFLECTION_PROMPT
    if text.startswith(SUMMARIZE_PREFIX):
        return TurnKind.SUMMARIZE
    if _OBSERVATION.match(text):
        return TurnKind.OBSERVATION
    if text.rstrip().endswith(QUESTION_SUFFIX):
        return TurnKind.QUESTION
    raise WireFormatError(
        "unknown RR user turn: expected a question ending in 'Please start your reasoning.', an observation, "
        "the no-tool or reflection turn, or the summarise turn",
        text,
    )


def parse_rr_messages(messages: Sequence[tuple[str, str]]) -> Trajectory:
    """Parse ``(role, content)`` messages of an RR conversation into a trajectory, one segment per QA.

    Raises:
        WireFormatError: naming the message index and what was expected there.
    """
    system = ""
    start = 0
    if messages and messages[0][0] == "system":
        system, start = messages[0][1], 1
    segments: list[Segment] = []
    turns: list[Turn] = []
    after_summarize = False
    for index in range(start, len(messages)):
        role, content = messages[index]
        try:
            if role == "user":
                kind = classify_user_turn(content)
                if kind is TurnKind.QUESTION:
                    if turns:
                        segments.append(Segment(qa_id=str(len(segments)), turns=turns))
                    turns = []
                elif not turns:
                    raise WireFormatError("an RR segment must open with the question turn", content)
                after_summarize = kind is TurnKind.SUMMARIZE
                turns.append(Turn(role="user", kind=kind, content=content))
            elif role == "assistant":
                if not turns:
                    raise WireFormatError("an assistant turn came before any question", content)
                if after_summarize:
                    turns.append(answer_turn(content))
                else:
                    turns.append(step_turn(parse_step(content)))
                    turns[-1].content = content
                after_summarize = False
            else:
                raise WireFormatError(
                    f"unexpected role {role!r}; RR turns are system, user or assistant", content
                )
        except WireFormatError as error:
            raise WireFormatError(f"message {index} ({role}): {error.args[0]}", content) from None
    if turns:
        segments.append(Segment(qa_id=str(len(segments)), turns=turns))
    if not segments:
        raise WireFormatError("an RR conversation needs at least one question turn", "")
    return Trajectory(system=system, segments=segments)


def render_rr_messages(trajectory: Trajectory) -> list[tuple[str, str]]:
    """The ``(role, content)`` messages of a trajectory, system prompt first when it has one."""
    out = [("system", trajectory.system)] if trajectory.system else []
    for segment in trajectory.segments:
        out += [(turn.role, turn.content) for turn in segment.turns]
    return out
