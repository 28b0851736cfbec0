"""The benchmarks mmat evaluates, by VLMEvalKit name, and how each is read, prompted and scored.

| name | file | scorer | headline |
|---|---|---|---|
| MMStar | ``MMStar.tsv`` | option letter | accuracy |
| MMMU_DEV_VAL | ``MMMU_DEV_VAL.tsv`` | option letter / MMMU open rules | validation accuracy |
| MathVista_MINI | ``MathVista_MINI.tsv`` | MathVista extraction + normalisation | accuracy |
| MathVision_MINI | ``MathVision_MINI.tsv`` | option letter / numeric | accuracy |
| AI2D_TEST | ``AI2D_TEST.tsv`` | option letter | accuracy |
| OCRBench | ``OCRBench.tsv`` | OCRBench substring rules | score out of 1000 |
| RealWorldQA | ``RealWorldQA.tsv`` | option letter | accuracy |
| HallusionBench | ``HallusionBench.tsv`` | yes/no | mean of aAcc, fAcc, qAcc |
| DynVQA | ``DynVQA_{en,zh}.*.jsonl`` | F1-Recall (OmniSearch) | F1-Recall |

Prompts follow VLMEvalKit (``Hint:`` / ``Question:`` / ``Options:`` for multiple choice). With
``prompt_style="mmat"`` (the default) the short-answer style suffix that MMAT's Foundation stage
appends to training questions is added, so the tuned model sees the phrasing it was trained on;
``prompt_style="vlmevalkit"`` leaves VLMEvalKit's prompt untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mmat.errors import ConfigError
from mmat.eval.dynvqa import DynVqaSetting, load_dynvqa
from mmat.eval.items import EvalItem
from mmat.eval.scorers.base import Scorer
from mmat.eval.scorers.choice import MultipleChoiceScorer
from mmat.eval.scorers.dynvqa import DynVqaScorer
from mmat.eval.scorers.math import MathVisionScorer, MathVistaScorer
from mmat.eval.scorers.mmmu import MmmuScorer
from mmat.eval.scorers.ocrbench import OcrBenchScorer
from mmat.eval.scorers.yesno import YesNoScorer
from mmat.eval.tsv import ImageCache, TsvImages, option_columns, read_tsv, split_list_cell
from mmat.schema import ImageRef

PromptStyle = Literal["mmat", "vlmevalkit"]
Kind = Literal["mcq", "yorn", "vqa", "mathvista", "mathvision", "mmmu", "dynvqa"]

SUFFIX = {
    "mcq": "Answer with the option's letter from the given choices directly.",
    "yorn": "Please answer yes or no.",
    "vqa": "Answer the question using a single word or phrase.",
}


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: its VLMEvalKit name, the kind of questions, and its scorer factory."""

    name: str
    kind: Kind
    make_scorer: Callable[[], Scorer]
    #: part of the paper's 8-benchmark average (Dyn-VQA is reported on its own)
    in_average: bool = True
    aliases: tuple[str, ...] = ()

    def scorer(self) -> Scorer:
        return self.make_scorer()


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("MMStar", "mcq", lambda: MultipleChoiceScorer("MMStar")),
        Benchmark("MMMU_DEV_VAL", "mmmu", MmmuScorer, aliases=("MMMU", "MMMU_VAL")),
        Benchmark("MathVista_MINI", "mathvista", MathVistaScorer, aliases=("MathVista",)),
        Benchmark("MathVision_MINI", "mathvision", MathVisionScorer, aliases=("MathVision", "MathV")),
        Benchmark("AI2D_TEST", "mcq", lambda: MultipleChoiceScorer("AI2D_TEST"), aliases=("AI2D",)),
        Benchmark("OCRBench", "vqa", OcrBenchScorer),
        Benchmark("RealWorldQA", "mcq", lambda: MultipleChoiceScorer("RealWorldQA")),
        Benchmark("HallusionBench", "yorn", lambda: YesNoScorer("HallusionBench", hallusion=True)),
        Benchmark(
            "DynVQA", "dynvqa", DynVqaScorer, in_average=False, aliases=("Dyn-VQA", "DynVQA_en", "DynVQA_zh")
        ),
    )
}


def get_benchmark(name: str) -> Benchmark:
    """The benchmark called ``name`` (case-insensitive; aliases like ``MMMU`` accepted)."""
    wanted = name.strip().lower()
    for bench in BENCHMARKS.values():
        if wanted == bench.name.lower() or wanted in (a.lower() for a in bench.aliases):
            return bench
    valid = ", ".join(BENCHMARKS)
    raise ConfigError(f"unknown benchmark {name!r}; valid names: {valid} (VLMEvalKit's dataset names)")


def mcq_prompt(question: str, options: dict[str, str], hint: str = "") -> str:
    """VLMEvalKit's multiple-choice prompt."""
    prompt = f"Hint: {hint}\n" if hint else ""
    prompt += f"Question: {question}\n"
    if options:
        prompt += "Options:\n" + "".join(f"{key}. {text}\n" for key, text in options.items())
        prompt += "Please select the correct answer from the options above. \n"
    return prompt


def _with_suffix(prompt: str, kind: str, style: PromptStyle) -> str:
    suffix = SUFFIX.get(kind)
    if style == "vlmevalkit" or not suffix:
        return prompt
    return prompt.rstrip() + "\n" + suffix


def _clean(value: str) -> str:
    value = value.strip()
    return "" if value.lower() == "nan" else value


def _row_item(bench: Benchmark, row: dict[str, str], images: list[ImageRef], style: PromptStyle) -> EvalItem:
    question = _clean(row.get("question", ""))
    hint = _clean(row.get("hint", ""))
    options = option_columns(row)
    common: dict[str, Any] = {
        "bench": bench.name,
        "index": _clean(row.get("index", "")),
        "question": question,
        "images": images,
        "category": _clean(row.get("category", "")) or None,
        "l2_category": _clean(row.get("l2-category", row.get("l2_category", ""))) or None,
        "split": _clean(row.get("split", "")) or None,
    }
    answer = _clean(row.get("answer", ""))
    if bench.kind == "mcq" or (bench.kind == "mmmu" and options):
        prompt = _with_suffix(mcq_prompt(question, options, hint), "mcq", style)
        return EvalItem(**common, prompt=prompt, answer=answer.upper(), choices=options)
    meta: dict[str, Any] = {}
    if bench.kind == "mmmu":
        prompt = _with_suffix((f"Hint: {hint}\n" if hint else "") + question, "vqa", style)
        return EvalItem(**common, prompt=prompt, answer=answer, answers=split_list_cell(answer))
    if bench.kind == "yorn":
        meta = {k: _clean(row[k]) for k in ("set_id", "figure_id", "question_id") if row.get(k)}
        return EvalItem(**common, prompt=_with_suffix(question, "yorn", style), answer=answer, meta=meta)
    if bench.kind == "vqa":
        return EvalItem(
            **common,
            prompt=_with_suffix(question, "vqa", style),
            answer=answer,
            answers=split_list_cell(answer),
        )
    choices_list = (
        [c for c in split_list_cell(_clean(row.get("choices", ""))) if c] if row.get("choices") else []
    )
    choices = {chr(65 + i): text for i, text in enumerate(choices_list)} or options
    if bench.kind == "mathvista":
        meta = {
            key: _clean(row.get(key, ""))
            for key in ("question_type", "answer_type", "precision", "answer_option", "task")
            if _clean(row.get(key, ""))
        }
        if row.get("skills"):
            meta["skills"] = split_list_cell(_clean(row["skills"]))
        return EvalItem(**common, prompt=question, answer=answer, choices=choices, meta=meta)
    # mathvision
    prompt = question
    if choices and "(A)" not in question:
        prompt += "\nChoices: " + " ".join(f"({k}) {v}" for k, v in choices.items())
    if _clean(row.get("level", "")):
        meta["level"] = _clean(row["level"])
    if not common["category"] and _clean(row.get("subject", "")):
        common["category"] = _clean(row["subject"])
    return EvalItem(**common, prompt=prompt, answer=answer, choices=choices, meta=meta)


def load_items(
    bench: Benchmark,
    path: str | Path,
    *,
    cache_dir: str | Path,
    image_root: str | Path | None = None,
    prompt_style: PromptStyle = "mmat",
    setting: DynVqaSetting = "query",
    lang: str | None = None,
    limit: int | None = None,
) -> list[EvalItem]:
    """Read a benchmark file into :class:`EvalItem` records, decoding inline images into ``cache_dir``.

    Raises:
        ConfigError: the file does not exist.
        RecordError: a row is malformed (the message gives ``file:line``).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"benchmark file {path} does not exist; download {bench.name}'s "
            f"{'JSONL from the OmniSearch repository' if bench.kind == 'dynvqa' else 'TSV as VLMEvalKit does'}"
            " and pass its path to --data"
        )
    if bench.kind == "dynvqa":
        items = load_dynvqa(path, setting=setting, lang=lang, image_root=image_root, bench=bench.name)
        return items[:limit] if limit else items
    images = TsvImages(path, ImageCache(cache_dir), image_root=image_root)
    items = []
    for line, row in read_tsv(path):
        items.append(_row_item(bench, row, images.refs(row, line), prompt_style))
        if limit and len(items) >= limit:
            break
    return items
