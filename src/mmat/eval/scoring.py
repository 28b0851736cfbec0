"""Scoring a set of predictions: rules first, the judge where the rules fail, then the metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from mmat.eval.items import EvalItem
from mmat.eval.judge import Judge, JudgeCache
from mmat.eval.scorers.base import ItemScore, Scorer


async def score_items(
    scorer: Scorer,
    items: Sequence[EvalItem],
    predictions: Mapping[str, str | None],
    *,
    judge: Judge | None = None,
    judge_cache: JudgeCache | None = None,
    concurrency: int = 8,
) -> tuple[list[ItemScore], dict[str, Any]]:
    """Score every item; an item with no prediction (missing or failed) scores 0 with method ``none``.

    Returns:
        The item scores (in ``items`` order) and the metrics, which add ``missing`` (items without a
        prediction) and ``judge_used`` (items whose answer the judge extracted) to the scorer's own.
    """
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(item: EvalItem) -> ItemScore:
        prediction = predictions.get(item.index)
        if prediction is None:
            return ItemScore(index=item.index, score=0.0, method="none", detail={"missing": True})
        extracted = scorer.extract(item, prediction)
        if extracted is not None or judge is None:
            return ItemScore(
                index=item.index,
                extracted=extracted,
                score=scorer.score_extracted(item, extracted, prediction),
                method="rule" if extracted is not None else "none",
            )
        prompt = scorer.judge_prompt(item, prediction)
        if prompt is None:
            return ItemScore(
                index=item.index, score=scorer.score_extracted(item, None, prediction), method="none"
            )
        reply = judge_cache.get(judge.name, prompt) if judge_cache else None
        if reply is None:
            async with gate:
                reply = await judge.complete(prompt)
            if judge_cache:
                judge_cache.put(judge.name, prompt, reply)
        extracted = scorer.parse_judge(item, reply)
        return ItemScore(
            index=item.index,
            extracted=extracted,
            score=scorer.score_extracted(item, extracted, prediction),
            method="judge",
            judge_output=reply,
        )

    scores = list(await asyncio.gather(*(one(item) for item in items)))
    metrics = scorer.aggregate(items, scores)
    metrics["missing"] = sum(1 for s in scores if s.detail.get("missing"))
    metrics["judge_used"] = sum(1 for s in scores if s.method == "judge")
    return scores, metrics
