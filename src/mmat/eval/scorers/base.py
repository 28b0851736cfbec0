"""The scorer interface: extract an answer from a prediction, score it, aggregate the scores.

A scorer first tries its rules (``extract``). Where the rules find nothing and a judge model is
configured, the judge is asked with ``judge_prompt`` and its reply parsed with ``parse_judge``;
the item's :class:`ItemScore` then says ``method="judge"`` and keeps the judge's raw reply, so a
reader of the scores always knows which numbers a model helped produce.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from pydantic import Field

from mmat.eval.items import EvalItem
from mmat.schema import Record


class ItemScore(Record):
    """The score of one prediction: ``score`` is in [0, 1]."""

    index: str
    extracted: str | None = None
    score: float = 0.0
    method: Literal["rule", "judge", "none"] = "rule"
    judge_output: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class Scorer(ABC):
    """Turns predictions of one benchmark into item scores and metrics.

    Subclasses set ``name`` and ``headline`` (the metric key the comparison table shows) and
    implement ``extract``, ``score_extracted`` and, when they break results down, ``aggregate``.
    """

    name: str = ""
    headline: str = "accuracy"
    #: what the headline is measured in, for tables ("%" or "/1000")
    unit: str = "%"

    @abstractmethod
    def extract(self, item: EvalItem, prediction: str) -> str | None:
        """The answer the rules find in ``prediction``, or ``None`` when they find none."""

    @abstractmethod
    def score_extracted(self, item: EvalItem, extracted: str | None, prediction: str) -> float:
        """The score in [0, 1] of an extracted answer (``None``: nothing was found)."""

    def judge_prompt(self, item: EvalItem, prediction: str) -> str | None:
        """The prompt asking a judge model to extract the answer; ``None``: this scorer uses no judge."""
        return None

    def parse_judge(self, item: EvalItem, output: str) -> str | None:
        """The answer in a judge's reply, or ``None``."""
        text = output.strip()
        return text or None

    def aggregate(self, items: Sequence[EvalItem], scores: Sequence[ItemScore]) -> dict[str, Any]:
        """Metrics over all items: overall accuracy (x100) and its breakdown by category."""
        metrics: dict[str, Any] = {"n": len(scores), "accuracy": percent(s.score for s in scores)}
        metrics.update(breakdowns(items, scores))
        return metrics


def percent(values: Iterable[float]) -> float:
    """Mean x 100, rounded to 2 decimals (0 for no values)."""
    values = list(values)
    return round(100.0 * sum(values) / len(values), 2) if values else 0.0


def breakdowns(items: Sequence[EvalItem], scores: Sequence[ItemScore]) -> dict[str, dict[str, float]]:
    """Accuracy per ``category``, ``l2_category`` and ``split`` where items carry them."""
    out: dict[str, dict[str, float]] = {}
    for field in ("category", "l2_category", "split"):
        groups: dict[str, list[float]] = defaultdict(list)
        for item, score in zip(items, scores, strict=True):
            key = getattr(item, field)
            if key:
                groups[key].append(score.score)
        if groups:
            out[f"by_{field}"] = {key: percent(values) for key, values in sorted(groups.items())}
    return out
