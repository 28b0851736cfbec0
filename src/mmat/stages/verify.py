"""Answer verification: does the teacher's final answer equal the gold answer?

Comparison is by meaning, per :class:`~mmat.schema.AnswerType`: numbers with a tolerance (``8.8`` =
``8.80`` = ``$8.80`` = ``8.80 dollars``), fractions (``3/4`` = ``0.75``, mixed ``1 1/2``), percentages,
option letters against option texts (``B`` = ``(B)`` = ``B. 12 apples`` = ``12 apples``), yes/no
(``Yes.`` = ``yes``), InfoSeek aliases and numeric ranges, and free text after normalisation (case,
punctuation, articles, spaces).

Example:
    >>> check_answer("$8.8", qa).ok   # qa.answer == "8.80"
    True
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from dataclasses import dataclass
from fractions import Fraction

from mmat.schema import QA, AnswerType

NUMBER_WORDS = {
    word: index
    for index, word in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        ]
    )
}
"""Spelled numbers the answer check and the leak gate read as digits."""
_NUMBER = re.compile(r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+−]?\.\d+")
_FRACTION = re.compile(r"\A([-+−]?)(?:(\d+)\s+)?(\d+)\s*/\s*(\d+)\Z")
_CURRENCY = "$€£¥₹"
_YES = {"yes", "true", "correct", "y", "right"}
_NO = {"no", "false", "incorrect", "n", "wrong"}
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans({ch: " " for ch in string.punctuation + "，。！？：；“”‘’"})


@dataclass(frozen=True)
class AnswerCheck:
    """The verdict on one final answer. ``reason`` is a short code when it failed."""

    ok: bool
    reason: str = ""
    detail: str = ""


def normalize_text(text: str) -> str:
    """Lower case, NFKC, punctuation and articles dropped, spaces collapsed."""
    text = unicodedata.normalize("NFKC", text).lower().strip()
    text = text.translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def parse_number(text: str, unit: str | None = None) -> float | None:
    """Read one number from a short answer, or None if it does not hold exactly one.

    Units (the QA's ``unit``, currency signs, ``%``) and a surrounding word or two are ignored;
    fractions and number words up to twenty are read.
    """
    raw = unicodedata.normalize("NFKC", text).strip().rstrip(".")
    if unit:
        raw = raw.replace(unit.strip(), " ")
    raw = raw.translate({ord(c): " " for c in _CURRENCY + "%"}).replace("−", "-").strip()
    fraction = _FRACTION.match(raw)
    if fraction:
        sign, whole, num, den = fraction.groups()
        if int(den) == 0:
            return None
        value = Fraction(int(whole or 0)) + Fraction(int(num), int(den))
        return float(-value if sign in ("-", "−") else value)
    lowered = raw.lower()
    if lowered in NUMBER_WORDS:
        return float(NUMBER_WORDS[lowered])
    numbers = _NUMBER.findall(raw)
    if len(numbers) != 1:
        return None
    rest = _NUMBER.sub(" ", raw, count=1)
    if sum(ch.isdigit() for ch in rest) or len(rest.split()) > 3:
        return None
    return float(numbers[0].replace(",", ""))


def _decimals(text: str) -> int | None:
    match = re.search(r"\.(\d+)\s*\D*\Z", text.strip())
    return len(match.group(1)) if match else None


def numbers_match(
    predicted: float, gold: float, gold_text: str = "", *, predicted_text: str = "", rel_tol: float = 1e-4
) -> bool:
    """Equal within ``rel_tol``, or equal once rounded to the gold answer's decimals; a fraction gold
    answer also accepts a decimal of at least two places (``1/3`` = ``0.33``)."""
    if math.isclose(predicted, gold, rel_tol=rel_tol, abs_tol=1e-9):
        return True
    decimals = _decimals(gold_text)
    if decimals is not None and round(predicted, decimals) == round(gold, decimals):
        return True
    if "/" in gold_text:
        shown = _decimals(predicted_text)
        return shown is not None and shown >= 2 and round(gold, shown) == round(predicted, shown)
    return False


def _letter(text: str, count: int) -> int | None:
    match = re.fullmatch(r"\s*(?:option\s+)?\(?([A-Za-z])\)?(?:[.:)]\s*.*)?\s*", text, re.IGNORECASE)
    if not match:
        return None
    index = ord(match.group(1).upper()) - ord("A")
    return index if 0 <= index < count else None


def _option_index(text: str, choices: list[str], *, letters: bool) -> int | None:
    normalized = normalize_text(text)
    for index, choice in enumerate(choices):
        if normalized and normalized == normalize_text(choice):
            return index
    if letters:
        return _letter(text, len(choices))
    return None


def _yes_no(text: str) -> str | None:
    words = normalize_text(text).split()
    if not words:
        return None
    if words[0] in _YES:
        return "yes"
    if words[0] in _NO:
        return "no"
    return None


def check_answer(predicted: str, qa: QA, *, rel_tol: float = 1e-4) -> AnswerCheck:
    """Compare a final answer with the QA's gold answer, its aliases and ranges."""
    kind = qa.answer_type.value
    shown = f"expected {qa.answer!r} ({kind}), got {predicted!r}"
    if not predicted.strip():
        return AnswerCheck(False, "empty_answer", f"the final answer is empty; {shown}")
    golds = [qa.answer, *qa.aliases]
    if qa.choices:
        gold_index = next(
            (
                i
                for g in golds
                if (i := _option_index(g, qa.choices, letters=qa.answer_type is AnswerType.OPTION_LETTER))
                is not None
            ),
            None,
        )
        if gold_index is not None:
            got = _option_index(predicted, qa.choices, letters=True)
            if got == gold_index:
                return AnswerCheck(True)
            if got is not None:
                return AnswerCheck(
                    False,
                    "answer_mismatch",
                    f"chose option {chr(65 + got)} ({qa.choices[got]!r}) but the answer is option "
                    f"{chr(65 + gold_index)} ({qa.choices[gold_index]!r}); {shown}",
                )
    if qa.answer_type is AnswerType.YES_NO or all(_yes_no(g) and len(g.split()) == 1 for g in golds):
        gold_yn = {_yes_no(g) for g in golds} - {None}
        got_yn = _yes_no(predicted)
        if got_yn is not None and gold_yn:
            if got_yn in gold_yn:
                return AnswerCheck(True)
            return AnswerCheck(
                False, "answer_mismatch", f"answered {got_yn} instead of {qa.answer!r}; {shown}"
            )
    got_number = parse_number(predicted, qa.unit)
    if got_number is not None:
        for gold in golds:
            gold_number = parse_number(gold, qa.unit)
            if gold_number is not None and numbers_match(
                got_number, gold_number, gold, predicted_text=predicted, rel_tol=rel_tol
            ):
                return AnswerCheck(True)
        for interval in qa.answer_ranges:
            if interval.lo <= got_number <= interval.hi:
                return AnswerCheck(True)
    normalized = normalize_text(predicted)
    if normalized and any(normalized == normalize_text(g) for g in golds):
        return AnswerCheck(True)
    if got_number is not None and (parse_number(qa.answer, qa.unit) is not None or qa.answer_ranges):
        return AnswerCheck(False, "answer_mismatch", f"the number differs; {shown}")
    return AnswerCheck(False, "answer_mismatch", shown)
