"""OCRBench: a prediction scores when one gold answer is a substring of it; the score is out of 1000.

Rules (OCRBench's and VLMEvalKit's): for *Handwritten Mathematical Expression Recognition* both
sides lose newlines and all spaces and the match is case-sensitive; for every other category both
are lower-cased, stripped and newlines become spaces. The five reported groups are Text Recognition
(the six recognition categories together), Scene Text-centric VQA, Doc-oriented VQA, Key
Information Extraction and HMER; the final score is the number of hits, which is out of 1000 on the
full benchmark (``score_1000`` rescales a subset to 1000 so partial runs compare).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mmat.eval.items import EvalItem
from mmat.eval.scorers.base import ItemScore, Scorer

HMER = "Handwritten Mathematical Expression Recognition"
TEXT_RECOGNITION = (
    "Regular Text Recognition",
    "Irregular Text Recognition",
    "Artistic Text Recognition",
    "Handwriting Recognition",
    "Digit String Recognition",
    "Non-Semantic Text Recognition",
)
GROUPS = (
    "Text Recognition",
    "Scene Text-centric VQA",
    "Doc-oriented VQA",
    "Key Information Extraction",
    HMER,
)


def ocrbench_hit(category: str, answers: Sequence[str], prediction: str) -> bool:
    """Whether ``prediction`` contains one of ``answers`` under the category's rule."""
    if category == HMER:
        pred = prediction.strip().replace("\n", " ").replace(" ", "")
        return any(ans.strip().replace("\n", " ").replace(" ", "") in pred for ans in answers)
    pred = prediction.lower().strip().replace("\n", " ")
    return any(ans.lower().strip().replace("\n", " ") in pred for ans in answers)


class OcrBenchScorer(Scorer):
    """OCRBench's substring rules; headline ``score_1000``."""

    name = "OCRBench"
    headline = "score_1000"
    unit = "/1000"

    def extract(self, item: EvalItem, prediction: str) -> str | None:
        return prediction

    def score_extracted(self, item: EvalItem, extracted: str | None, prediction: str) -> float:
        return float(ocrbench_hit(item.category or "", item.gold_list(), prediction))

    def aggregate(self, items: Sequence[EvalItem], scores: Sequence[ItemScore]) -> dict[str, Any]:
        hits: dict[str, int] = {}
        for item, score in zip(items, scores, strict=True):
            category = item.category or ""
            group = "Text Recognition" if category in TEXT_RECOGNITION else category
            hits[group] = hits.get(group, 0) + int(score.score >= 1.0)
        final = sum(hits.values())
        n = len(scores)
        return {
            "n": n,
            "final_score": final,
            "score_1000": round(final * 1000 / n, 1) if n else 0.0,
            "accuracy": round(100 * final / n, 2) if n else 0.0,
            "by_group": {group: hits.get(group, 0) for group in GROUPS}
            | {k: v for k, v in hits.items() if k not in GROUPS},
        }
