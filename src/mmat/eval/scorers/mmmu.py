"""MMMU (dev/val): options by letter; open questions by MMMU's own open-answer rules.

Open answers follow the MMMU evaluation: the reply is lower-cased and split into lines; in each
line the shortest text after a key phrase (``could be``, ``so``, ``is``, ``thus``, ``therefore``,
``final``, ``answer``, ``result``; also ``=`` in the last line) is a key response; numbers in the
key responses are added; numbers are rounded to 2 decimals, strings lower-cased (a one-character
string gets a space on one side). A reply is right when a gold number equals a predicted number or
a gold string is a substring of a predicted string. The headline is the validation-split accuracy
(MMMU_DEV_VAL's reported number), or overall accuracy when no item is marked ``validation``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from mmat.eval.items import EvalItem
from mmat.eval.scorers.base import ItemScore, Scorer, breakdowns, percent
from mmat.eval.scorers.choice import infer_option, option_judge_prompt, parse_option_reply
from mmat.eval.tsv import split_list_cell

_KEY_PHRASES = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")
_COMMAS = re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b")
_SCIENTIFIC = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
_SIMPLE = re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+)(?![eE][+-]?\d+)(?![,\d])")


def extract_numbers(text: str) -> list[str]:
    """Numbers with thousands commas, in scientific notation, and plain ones."""
    return _COMMAS.findall(text) + _SCIENTIFIC.findall(text) + _SIMPLE.findall(text)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


def normalize_open(text: str) -> list[str | float]:
    """A number rounded to 2 decimals, or the lower-cased string (padded when one character)."""
    text = text.strip()
    if _is_number(text):
        return [round(float(text.replace(",", "")), 2)]
    text = text.lower()
    if len(text) == 1:
        return [" " + text, text + " "]
    return [text]


def key_responses(reply: str) -> list[str]:
    """The shortest text after a key phrase in each line of ``reply``."""
    reply = reply.strip().strip(".").lower()
    lines = re.split(r"\.\s(?=[A-Z])|\n", reply)
    found: list[str] = []
    for number, line in enumerate(lines):
        phrases = (*_KEY_PHRASES, "=") if number == len(lines) - 1 else _KEY_PHRASES
        shortest: str | None = None
        for phrase in phrases:
            if phrase in line:
                tail = line.split(phrase)[-1].strip()
                if shortest is None or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in (":", ",", ".", "!", "?", ";", "'"):
            found.append(shortest)
    return found or [reply]


def parse_open_reply(reply: str) -> list[str | float]:
    """Every normalised candidate answer in an open reply."""
    keys = key_responses(reply)
    candidates = list(keys)
    for key in keys:
        candidates.extend(extract_numbers(key))
    normalised: list[str | float] = []
    for candidate in candidates:
        for value in normalize_open(candidate):
            if value not in normalised:
                normalised.append(value)
    return normalised


def open_reply_correct(golds: Sequence[str], predictions: Sequence[str | float]) -> bool:
    """MMMU's ``eval_open``: numbers by equality, strings by gold-in-prediction."""
    gold_norm: list[str | float] = []
    for gold in golds:
        gold_norm.extend(normalize_open(gold))
    for pred in predictions:
        if isinstance(pred, str):
            if any(isinstance(g, str) and g in pred for g in gold_norm):
                return True
        elif pred in gold_norm:
            return True
    return False


class MmmuScorer(Scorer):
    """MMMU accuracy; headline ``val_accuracy``."""

    name = "MMMU"
    headline = "val_accuracy"

    def extract(self, item: EvalItem, prediction: str) -> str | None:
        if item.choices:
            return infer_option(prediction, item.choices)
        return prediction.strip() or None

    def score_extracted(self, item: EvalItem, extracted: str | None, prediction: str) -> float:
        if extracted is None:
            return 0.0
        if item.choices:
            return float(extracted == item.answer.strip().upper())
        golds = item.answers or split_list_cell(item.answer)
        return float(open_reply_correct(golds, parse_open_reply(extracted)))

    def judge_prompt(self, item: EvalItem, prediction: str) -> str | None:
        return option_judge_prompt(item.question, item.choices, prediction) if item.choices else None

    def parse_judge(self, item: EvalItem, output: str) -> str | None:
        return parse_option_reply(output, item.choices)

    def aggregate(self, items: Sequence[EvalItem], scores: Sequence[ItemScore]) -> dict[str, Any]:
        metrics: dict[str, Any] = {"n": len(scores), "accuracy": percent(s.score for s in scores)}
        metrics.update(breakdowns(items, scores))
        by_split = metrics.get("by_split", {})
        metrics["val_accuracy"] = by_split.get("validation", metrics["accuracy"])
        return metrics
