"""Multiple choice: find the option a free-form answer picked (MMStar, AI2D, RealWorldQA, MMMU).

The rules are VLMEvalKit's ``can_infer``: first an option *letter* standing alone among the last
five words (after ``.()[],:;!*#{}`` become spaces) when exactly one option letter appears; else an
option *text* that appears in the answer, when exactly one does and the answer is not much longer
than all options together. ``Z`` stands for "no option" (a refusal).
"""

from __future__ import annotations

from collections.abc import Mapping

from mmat.eval.items import EvalItem
from mmat.eval.scorers.base import Scorer

REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
_SPACED = ".()[],:;!*#{}"


def infer_option_letter(answer: str, choices: Mapping[str, str]) -> str | None:
    """The option letter written in ``answer``: exactly one letter among the words, near the end."""
    for refusal in REFUSALS:
        if refusal in answer:
            return "Z"
    spaced = answer
    for char in _SPACED:
        spaced = spaced.replace(char, " ")
    words = spaced.split()
    found = [letter for letter in choices if letter in words]
    if len(found) == 1:
        letter = found[0]
        if words.index(letter) > len(words) - 5:
            return letter
        return None
    if not found and "Z" in words:
        return "Z"
    return None


def infer_option_text(answer: str, choices: Mapping[str, str]) -> str | None:
    """The option whose text appears in ``answer``, when exactly one does."""
    lowered = answer.lower()
    if len(lowered) > 2 * sum(len(str(text)) for text in choices.values()):
        return None
    hits = [letter for letter, text in choices.items() if str(text).lower() in lowered]
    return hits[0] if len(hits) == 1 else None


def infer_option(answer: str, choices: Mapping[str, str]) -> str | None:
    """VLMEvalKit's ``can_infer``: the letter rule, then the text rule; ``None`` when neither works."""
    answer = str(answer)
    return infer_option_letter(answer, choices) or infer_option_text(answer, choices)


def option_judge_prompt(question: str, choices: Mapping[str, str], prediction: str) -> str:
    """Ask a judge which option an answer chose; it must reply with one letter, or Z for none."""
    options = "\n".join(f"{letter}. {text}" for letter, text in choices.items())
    return (
        "You match a model's answer to a multiple-choice question with the option it chose.\n"
        "Reply with the option letter only. Reply Z if the answer chooses no option or several.\n\n"
        f"Question: {question}\nOptions:\n{options}\nModel answer: {prediction}\nOption letter:"
    )


def parse_option_reply(output: str, choices: Mapping[str, str]) -> str | None:
    """The letter in a judge's reply (``Z`` included), by the same letter rule."""
    letter = infer_option_letter(output.strip(), {**choices, "Z": ""})
    return letter


class MultipleChoiceScorer(Scorer):
    """Accuracy over option letters, with overall and per-category breakdowns.

    Example:
        >>> scorer = MultipleChoiceScorer("MMStar")
        >>> scorer.extract(item, "The answer is (B).")  # 'B'
    """

    def __init__(self, name: str = "multiple_choice") -> None:
        self.name = name

    def extract(self, item: EvalItem, prediction: str) -> str | None:
        if not item.choices:
            return None
        return infer_option(prediction, item.choices)

    def score_extracted(self, item: EvalItem, extracted: str | None, prediction: str) -> float:
        return float(extracted is not None and extracted == item.answer.strip().upper())

    def judge_prompt(self, item: EvalItem, prediction: str) -> str | None:
        return option_judge_prompt(item.question, item.choices, prediction) if item.choices else None

    def parse_judge(self, item: EvalItem, output: str) -> str | None:
        return parse_option_reply(output, item.choices)
