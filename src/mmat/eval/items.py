"""The record evaluation works on: one benchmark question with its images and gold answers."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from mmat.schema import ImageRef, Record


class EvalItem(Record):
    """One benchmark question, ready for the agent.

    ``prompt`` is exactly what the agent is asked (options and style suffix rendered);
    ``question`` is the benchmark's raw question. ``answer`` is the gold answer as the benchmark
    scores it (an option letter for multiple choice, ``Yes``/``No`` for HallusionBench);
    ``answers`` holds every accepted gold string where a benchmark has several (OCRBench, Dyn-VQA).
    ``choices`` maps option letters to option texts.
    """

    bench: str
    index: str
    question: str
    prompt: str
    images: list[ImageRef] = Field(default_factory=list)
    answer: str = ""
    answers: list[str] = Field(default_factory=list)
    choices: dict[str, str] = Field(default_factory=dict)
    category: str | None = None
    l2_category: str | None = None
    split: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    def gold_list(self) -> list[str]:
        """Every gold answer: ``answers`` when given, else ``[answer]``."""
        return list(self.answers) if self.answers else [self.answer]
