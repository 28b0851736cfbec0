"""Yes/No questions and HallusionBench's three accuracies.

HallusionBench (VLMEvalKit's rules): a prediction is ``Yes`` when the word ``yes`` appears and
``no`` does not (after VQA punctuation handling), ``No`` the other way round, else ``Unknown``.
- aAcc: accuracy over all questions;
- fAcc: share of *figures* whose every question is right (group ``l2-category, set_id, figure_id``);
- qAcc: share of *questions* right on every figure they are asked about (group
  ``l2-category, set_id, question_id``).
The ids come from the item's ``index`` (``..._<set>_<figure>_<question>`` as parts 3, 4 and 5 of
its ``_``-split, VLMEvalKit's convention) or from ``set_id``/``figure_id``/``question_id`` columns.
The headline is the mean of the three, as the OpenCompass leaderboard reports it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from mmat.eval.items import EvalItem
from mmat.eval.scorers.base import ItemScore, Scorer, percent
from mmat.eval.text import process_punctuation

_YES = {"yes", "true", "1", "y"}
_NO = {"no", "false", "0", "n"}


def extract_yes_no(text: str) -> str:
    """``Yes``, ``No`` or ``Unknown`` by VLMEvalKit's word rule."""
    words = process_punctuation(text.lower()).split()
    if "yes" in words and "no" not in words:
        return "Yes"
    if "yes" not in words and "no" in words:
        return "No"
    return "Unknown"


def normalize_gold_yes_no(value: str) -> str:
    """Gold answers arrive as ``Yes``/``No`` or ``1``/``0``; return ``Yes`` or ``No``."""
    lowered = value.strip().lower()
    if lowered in _YES:
        return "Yes"
    if lowered in _NO:
        return "No"
    return value.strip()


def hallusion_ids(item: EvalItem) -> tuple[str, str, str]:
    """``(set_id, figure_id, question_id)`` of a HallusionBench item."""
    meta = item.meta
    if all(meta.get(key) not in (None, "") for key in ("set_id", "figure_id", "question_id")):
        return str(meta["set_id"]), str(meta["figure_id"]), str(meta["question_id"])
    parts = item.index.split("_")
    if len(parts) >= 6:
        return parts[3], parts[4], parts[5]
    return item.index, item.index, item.index


class YesNoScorer(Scorer):
    """Accuracy of Yes/No answers; with ``hallusion=True`` also fAcc and qAcc (HallusionBench)."""

    def __init__(self, name: str = "yes_no", *, hallusion: bool = False) -> None:
        self.name = name
        self.hallusion = hallusion
        self.headline = "overall" if hallusion else "accuracy"

    def extract(self, item: EvalItem, prediction: str) -> str | None:
        found = extract_yes_no(prediction)
        return None if found == "Unknown" else found

    def score_extracted(self, item: EvalItem, extracted: str | None, prediction: str) -> float:
        return float(extracted is not None and extracted == normalize_gold_yes_no(item.answer))

    def judge_prompt(self, item: EvalItem, prediction: str) -> str | None:
        return (
            "You match a model's answer to a yes/no question with Yes or No.\n"
            "Reply with one word: Yes, No, or Unknown when the answer says neither.\n\n"
            f"Question: {item.question}\nModel answer: {prediction}\nYour reply:"
        )

    def parse_judge(self, item: EvalItem, output: str) -> str | None:
        found = extract_yes_no(output)
        return None if found == "Unknown" else found

    def aggregate(self, items: Sequence[EvalItem], scores: Sequence[ItemScore]) -> dict[str, Any]:
        if not self.hallusion:
            return super().aggregate(items, scores)
        metrics: dict[str, Any] = {"n": len(scores), **hallusion_accuracies(items, scores)}
        for field in ("category", "l2_category"):
            keys = sorted({getattr(item, field) for item in items if getattr(item, field)})
            if keys:
                metrics[f"by_{field}"] = {}
                for key in keys:
                    pairs = [(i, s) for i, s in zip(items, scores, strict=True) if getattr(i, field) == key]
                    metrics[f"by_{field}"][key] = hallusion_accuracies(
                        [p[0] for p in pairs], [p[1] for p in pairs]
                    )
        return metrics


def hallusion_accuracies(items: Sequence[EvalItem], scores: Sequence[ItemScore]) -> dict[str, float]:
    """aAcc, fAcc, qAcc (x100) and their mean ``overall``."""
    figures: dict[str, list[bool]] = defaultdict(list)
    questions: dict[str, list[bool]] = defaultdict(list)
    for item, score in zip(items, scores, strict=True):
        set_id, figure_id, question_id = hallusion_ids(item)
        group = item.l2_category or ""
        figures[f"{group}_{set_id}_{figure_id}"].append(score.score >= 1.0)
        questions[f"{group}_{set_id}_{question_id}"].append(score.score >= 1.0)
    a_acc = percent(s.score for s in scores)
    f_acc = percent(float(all(v)) for v in figures.values())
    q_acc = percent(float(all(v)) for v in questions.values())
    return {"aAcc": a_acc, "fAcc": f_acc, "qAcc": q_acc, "overall": round((a_acc + f_acc + q_acc) / 3, 2)}
