"""MathVista and MathVision: answer extraction and normalisation.

Rules first (VLMEvalKit's "prefetch"): multiple choice goes through the option rules of
:mod:`mmat.eval.scorers.choice`; free-form answers are taken from ``\\boxed{...}``, from
``The answer is: ...``, or from the whole reply, and numeric answers from the last number in that
span. Normalisation follows MathVista: integers compare as integers, floats after rounding to the
item's ``precision``, lists element-wise, text case-insensitively. MathVision compares numbers with
a small tolerance and strings after stripping LaTeX dressing (``$``, ``\\text{}``, spaces).
When the rules find nothing and a judge is configured, the judge extracts the answer (recorded).
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from mmat.eval.items import EvalItem
from mmat.eval.scorers.base import ItemScore, Scorer, breakdowns, percent
from mmat.eval.scorers.choice import infer_option, option_judge_prompt, parse_option_reply

_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?|-?\.\d+")
_ANSWER_IS = re.compile(r"answer\s*(?:is|:)\s*:?\s*(.+)", re.IGNORECASE | re.DOTALL)


def boxed_content(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (nested braces allowed)."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for pos in range(begin, len(text)):
        if text[pos] == "{":
            depth += 1
        elif text[pos] == "}":
            if depth == 0:
                return text[begin:pos]
            depth -= 1
    return None


def answer_span(prediction: str) -> str:
    """The part of a reply that states the answer: boxed, after "answer is", or the whole reply."""
    boxed = boxed_content(prediction)
    if boxed is not None:
        return boxed.strip()
    found = _ANSWER_IS.search(prediction)
    if found:
        return found.group(1).strip().rstrip(".").strip()
    return prediction.strip()


def last_number(text: str) -> str | None:
    """The last number in ``text`` with thousands separators removed."""
    numbers = _NUMBER.findall(text)
    return numbers[-1].replace(",", "") if numbers else None


def _to_float(value: str) -> float | None:
    text = value.strip().replace(",", "").rstrip("%").strip("$ ")
    frac = re.fullmatch(r"\\[dt]?frac\{(-?[\d.]+)\}\{(-?[\d.]+)\}", text) or re.fullmatch(
        r"(-?[\d.]+)\s*/\s*(-?[\d.]+)", text
    )
    try:
        if frac:
            return float(frac.group(1)) / float(frac.group(2))
        return float(text)
    except (ValueError, ZeroDivisionError):
        return None


def _parse_list(value: str) -> list[str] | None:
    text = value.strip()
    match = re.search(r"\[.*\]", text, re.DOTALL)
    if not match:
        return None
    try:
        parsed = ast.literal_eval(match.group(0))
    except (ValueError, SyntaxError):
        parsed = [part.strip() for part in match.group(0)[1:-1].split(",")]
    if not isinstance(parsed, (list, tuple)):
        return None
    return [_norm_scalar(str(x)) for x in parsed]


def _norm_scalar(value: str) -> str:
    number = _to_float(value)
    if number is None:
        return value.strip().lower()
    return str(int(number)) if number == int(number) else repr(number)


def gold_option_letter(item: EvalItem) -> str:
    """The gold letter of a multiple-choice item (``answer_option``, a letter answer, or by text)."""
    letter = str(item.meta.get("answer_option") or "").strip()
    if letter:
        return letter.upper()
    if item.answer.strip().upper() in item.choices:
        return item.answer.strip().upper()
    for key, text in item.choices.items():
        if text.strip() == item.answer.strip():
            return key
    return item.answer.strip()


class MathVistaScorer(Scorer):
    """MathVista testmini: accuracy overall, per task and per skill."""

    name = "MathVista"

    def _is_choice(self, item: EvalItem) -> bool:
        return item.meta.get("question_type") == "multi_choice" or (
            bool(item.choices) and item.meta.get("question_type") is None
        )

    def extract(self, item: EvalItem, prediction: str) -> str | None:
        if self._is_choice(item):
            return infer_option(answer_span(prediction), item.choices) or infer_option(
                prediction, item.choices
            )
        span = answer_span(prediction)
        answer_type = item.meta.get("answer_type", "text")
        if answer_type in ("integer", "float"):
            return last_number(span)
        if answer_type == "list":
            parsed = _parse_list(span)
            return None if parsed is None else "[" + ", ".join(parsed) + "]"
        return span or None

    def score_extracted(self, item: EvalItem, extracted: str | None, prediction: str) -> float:
        if extracted is None:
            return 0.0
        if self._is_choice(item):
            return float(extracted.strip().upper() == gold_option_letter(item))
        answer_type = item.meta.get("answer_type", "text")
        if answer_type == "integer":
            got, want = _to_float(extracted), _to_float(item.answer)
            return float(got is not None and want is not None and int(got) == int(want))
        if answer_type == "float":
            got, want = _to_float(extracted), _to_float(item.answer)
            if got is None or want is None:
                return 0.0
            precision = item.meta.get("precision")
            if precision not in (None, ""):
                digits = int(float(precision))
                return float(round(got, digits) == round(want, digits))
            return float(abs(got - want) <= 1e-9 * max(1.0, abs(want)))
        if answer_type == "list":
            got_list, want_list = _parse_list(extracted), _parse_list(item.answer)
            return float(got_list is not None and got_list == want_list)
        return float(extracted.strip().lower() == item.answer.strip().lower())

    def judge_prompt(self, item: EvalItem, prediction: str) -> str | None:
        if self._is_choice(item):
            return option_judge_prompt(item.question, item.choices, prediction)
        return (
            "Extract the final answer from a model's reply to a math question. Reply with the answer "
            f"only, as a{'n integer' if item.meta.get('answer_type') == 'integer' else ' value'}"
            " without units or words, or with Unknown if the reply gives none.\n\n"
            f"Question: {item.question}\nModel reply: {prediction}\nExtracted answer:"
        )

    def parse_judge(self, item: EvalItem, output: str) -> str | None:
        if self._is_choice(item):
            return parse_option_reply(output, item.choices)
        text = output.strip()
        if not text or text.lower().startswith("unknown"):
            return None
        return self.extract(item, text)

    def aggregate(self, items: Sequence[EvalItem], scores: Sequence[ItemScore]) -> dict[str, Any]:
        metrics: dict[str, Any] = {"n": len(scores), "accuracy": percent(s.score for s in scores)}
        tasks: dict[str, list[float]] = defaultdict(list)
        skills: dict[str, list[float]] = defaultdict(list)
        for item, score in zip(items, scores, strict=True):
            if item.meta.get("task"):
                tasks[str(item.meta["task"])].append(score.score)
            for skill in item.meta.get("skills") or []:
                skills[str(skill)].append(score.score)
        if tasks:
            metrics["by_task"] = {k: percent(v) for k, v in sorted(tasks.items())}
        if skills:
            metrics["by_skill"] = {k: percent(v) for k, v in sorted(skills.items())}
        return metrics


def _strip_latex(text: str) -> str:
    text = re.sub(r"\\text\{([^}]*)\}", r"\1", text)
    text = text.replace("$", "").replace("\\left", "").replace("\\right", "").replace("\\!", "")
    return re.sub(r"\s+", "", text).rstrip(".").lower()


class MathVisionScorer(Scorer):
    """MathVision testmini: options by letter, free-form answers numerically or as cleaned strings."""

    name = "MathVision"

    def extract(self, item: EvalItem, prediction: str) -> str | None:
        if item.choices:
            return infer_option(answer_span(prediction), item.choices) or infer_option(
                prediction, item.choices
            )
        span = answer_span(prediction)
        if _to_float(_strip_latex(item.answer)) is not None:
            if _to_float(_strip_latex(span)) is not None:
                return _strip_latex(span)
            return last_number(span)
        return span or None

    def score_extracted(self, item: EvalItem, extracted: str | None, prediction: str) -> float:
        if extracted is None:
            return 0.0
        if item.choices:
            return float(extracted.strip().upper() == gold_option_letter(item))
        got, want = _to_float(_strip_latex(extracted)), _to_float(_strip_latex(item.answer))
        if got is not None and want is not None:
            return float(abs(got - want) <= 1e-4 * max(1.0, abs(want)))
        return float(_strip_latex(extracted) == _strip_latex(item.answer))

    def judge_prompt(self, item: EvalItem, prediction: str) -> str | None:
        if item.choices:
            return option_judge_prompt(item.question, item.choices, prediction)
        return (
            "Extract the final answer from a model's reply to a math question. Reply with the answer "
            "only (a number or a short expression), or Unknown if the reply gives none.\n\n"
            f"Question: {item.question}\nModel reply: {prediction}\nExtracted answer:"
        )

    def parse_judge(self, item: EvalItem, output: str) -> str | None:
        if item.choices:
            return parse_option_reply(output, item.choices)
        text = output.strip()
        return None if not text or text.lower().startswith("unknown") else answer_span(text)

    def aggregate(self, items: Sequence[EvalItem], scores: Sequence[ItemScore]) -> dict[str, Any]:
        metrics: dict[str, Any] = {"n": len(scores), "accuracy": percent(s.score for s in scores)}
        metrics.update(breakdowns(items, scores))
        levels: dict[str, list[float]] = defaultdict(list)
        for item, score in zip(items, scores, strict=True):
            if item.meta.get("level") not in (None, ""):
                levels[str(item.meta["level"])].append(score.score)
        if levels:
            metrics["by_level"] = {k: percent(v) for k, v in sorted(levels.items())}
        return metrics
