"""The deterministic leak and grounding gate: catches reasoning cheating without an LLM call.

The teacher knows the gold answer while it reasons, so it may write it down before anything supports
it. The gate reads a segment's steps in order and flags:

- ``meta_leak``: a thought that talks about an answer it was given (``the standard answer``,
  ``the given answer``, ``ground truth``, ``reference answer``...). Such text cannot be repaired by
  appending a reflection, so the Reflection stage rejects the QA.
- ``unsupported_answer``: a thought that states the gold answer (by value for numbers, as whole words
  for text, as the option text for option letters) while neither an earlier operator or RAG output,
  nor the question itself, nor an explicit derivation (an arithmetic expression before it, or
  ``= value``) supports it. The Reflection stage repairs it with reflection turns.

Yes/no answers and bare option letters are not checked: they are too short to tell a leak from prose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mmat.schema import QA, AnswerType, Segment, Signal, TurnKind
from mmat.stages.verify import NUMBER_WORDS, normalize_text, numbers_match, parse_number

META_LEAK = re.compile(
    r"\b(?:standard|gold(?:en)?|given|expected|reference|target|provided|official|ground[- ]truth)\s+"
    r"(?:answer|solution|label)s?\b"
    r"|\bground[- ]truth\b"
    r"|\b(?:correct|right|final)\s+answer\s+(?:was\s+|is\s+)?(?:given|provided|stated|supplied)\b"
    r"|\banswer\s+(?:we\s+were|i\s+was|that\s+was)\s+(?:given|told|provided)\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"[-+−]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?")
_ORDINAL_WORD = re.compile(r"\b(?:step|row|column|line|option|figure|table)\s*\Z", re.IGNORECASE)
_ARITHMETIC = re.compile(r"\d\s*(?:[-+×x*/÷]|times|plus|minus|divided by)\s*[$(]?\d", re.IGNORECASE)
_DERIVED = re.compile(r"(?:=|≈|equals|is equal to|gives|makes|totals?)\s*[$]?\s*\Z", re.IGNORECASE)


@dataclass(frozen=True)
class GateFinding:
    """One flagged step. ``turn`` indexes the segment's turns; ``step`` counts steps from 1."""

    kind: str
    turn: int
    step: int
    reason: str


def _answer_forms(qa: QA) -> tuple[list[tuple[float, str]], list[str]]:
    """The gold answer as numbers and as normalised texts worth searching for."""
    golds = [qa.answer, *qa.aliases]
    if qa.choices and qa.answer_type is AnswerType.OPTION_LETTER:
        letter = re.fullmatch(r"\(?([A-Za-z])\)?", qa.answer.strip())
        if letter and ord(letter.group(1).upper()) - 65 < len(qa.choices):
            golds = [qa.choices[ord(letter.group(1).upper()) - 65], *qa.aliases]
    numbers: list[tuple[float, str]] = []
    texts: list[str] = []
    for gold in golds:
        value = parse_number(gold, qa.unit)
        if value is not None:
            numbers.append((value, gold))
            continue
        normalized = normalize_text(gold)
        if len(normalized) >= 3 and normalized not in ("yes", "no", "true", "false"):
            texts.append(normalized)
    return numbers, texts


def _number_positions(text: str, numbers: list[tuple[float, str]]) -> list[int]:
    """Where in ``text`` a number equal to the gold answer starts."""
    found = []
    for match in _NUMBER.finditer(text):
        if _ORDINAL_WORD.search(text[: match.start()]):
            continue  # "step 1", "row 2": counting the reasoning, not stating a value
        raw = match.group(0).replace("$", "").replace("%", "").replace(",", "").replace("−", "-")
        try:
            value = float(raw)
        except ValueError:
            continue
        if any(numbers_match(value, gold, gold_text) for gold, gold_text in numbers):
            found.append(match.start())
    return found


def _mentions(text: str, numbers: list[tuple[float, str]], texts: list[str]) -> int | None:
    """Position of the first mention of the gold answer in ``text``, or None."""
    positions = _number_positions(text, numbers)
    if texts:
        lowered = text.lower()
        normalized = normalize_text(text)
        for gold in texts:
            if re.search(rf"(?<!\w){re.escape(gold)}(?!\w)", normalized):
                at = lowered.find(gold.split()[0])
                positions.append(max(at, 0))
    return min(positions) if positions else None


def _in_evidence(evidence: str, numbers: list[tuple[float, str]], texts: list[str]) -> bool:
    spelled = " ".join(str(NUMBER_WORDS.get(word, word)) for word in evidence.lower().split())
    if _number_positions(spelled, numbers):
        return True
    normalized = normalize_text(evidence)
    return any(re.search(rf"(?<!\w){re.escape(gold)}(?!\w)", normalized) for gold in texts)


def _derived(thought: str, at: int) -> bool:
    before = thought[:at]
    return bool(_ARITHMETIC.search(before) or _DERIVED.search(before))


def check_segment(segment: Segment, qa: QA) -> list[GateFinding]:
    """Flag the steps of one segment that leak or state the gold answer without support."""
    numbers, texts = _answer_forms(qa)
    findings: list[GateFinding] = []
    evidence = [qa.templated_question]
    step_number = 0
    for index, turn in enumerate(segment.turns):
        if turn.kind in (TurnKind.OBSERVATION,):
            evidence.append(turn.content)
            continue
        if turn.kind is not TurnKind.STEP or turn.step is None:
            continue
        step_number += 1
        thought = turn.step.thought
        leak = META_LEAK.search(thought)
        if leak:
            findings.append(
                GateFinding(
                    "meta_leak",
                    index,
                    step_number,
                    f"step {step_number} refers to an answer given in advance ({leak.group(0)!r})",
                )
            )
            continue
        if turn.step.signal is Signal.REFLECTION:
            continue
        if numbers or texts:
            at = _mentions(thought, numbers, texts)
            if (
                at is not None
                and not _derived(thought, at)
                and not _in_evidence("\n".join(evidence), numbers, texts)
            ):
                findings.append(
                    GateFinding(
                        "unsupported_answer",
                        index,
                        step_number,
                        f"step {step_number} states the answer {qa.answer!r} before any operator output or "
                        "derivation supports it",
                    )
                )
                continue
        evidence.append(thought)
    return findings


def mentions_answer(text: str, qa: QA) -> bool:
    """Whether ``text`` states the gold answer (used to keep reflection triggers answer-free)."""
    numbers, texts = _answer_forms(qa)
    return _mentions(text, numbers, texts) is not None
