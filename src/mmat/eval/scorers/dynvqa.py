"""Dyn-VQA's "F1-Recall", exactly as OmniSearch's ``evaluate.py`` computes it.

For each item: the prediction has newlines and tabs turned into spaces, is stripped, then goes
through the VQA punctuation and digit/article normalisation (:mod:`mmat.eval.text`), whatever the
language. An empty normalised prediction scores 0. Each gold answer (``str()`` of it: some golds
are numbers) and the prediction are tokenised: English by NLTK's ``word_tokenize`` on the
lower-cased text, Chinese by jieba; tokens that are substrings of ``,.?!:;'"`` (English) or of
``，、。 ,.《》`` (Chinese) are dropped. The item score is the best, over gold answers, of
``|gold ∩ pred| / |gold|`` (multiset intersection; when either side has no tokens, 1 if both are
equal else 0). The benchmark score is the mean x 100.

NLTK's ``word_tokenize`` needs its ``punkt_tab`` sentence model, which is data outside the wheel.
When it is installed (``python -m nltk.downloader punkt_tab``) it is used; otherwise sentences are
split by an untrained Punkt tokenizer that knows common English abbreviations, and the scores
record ``tokenizer: punkt-untrained`` so numbers from the two set-ups are never mixed silently.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from mmat.errors import MissingDependencyError
from mmat.eval.items import EvalItem
from mmat.eval.scorers.base import ItemScore, Scorer, percent
from mmat.eval.text import normalize_vqa_answer

EN_DROP = ",.?!:;'\""
ZH_DROP = "，、。 ,.《》"
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "e.g", "i.e", "inc", "ltd", "co",
    "corp", "u.s", "u.k", "u.n", "no", "gen", "gov", "lt", "col", "sgt", "capt", "mt", "ft", "jan",
    "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "a.m", "p.m",
}  # fmt: skip


@cache
def english_tokenizer() -> tuple[Callable[[str], list[str]], str]:
    """NLTK ``word_tokenize`` (or its untrained-Punkt stand-in) and the name of what is used."""
    try:
        import nltk
        from nltk.tokenize import NLTKWordTokenizer
        from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
    except ImportError as error:
        raise MissingDependencyError("Dyn-VQA English scoring (nltk)", "eval", error) from None
    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
    except LookupError:
        params = PunktParameters()
        params.abbrev_types = set(_ABBREVIATIONS)
        sentences = PunktSentenceTokenizer(params)
        words = NLTKWordTokenizer()

        def tokenize(text: str) -> list[str]:
            return [token for sentence in sentences.tokenize(text) for token in words.tokenize(sentence)]

        return tokenize, "punkt-untrained"
    return nltk.word_tokenize, "nltk.word_tokenize"


@cache
def _jieba() -> Any:
    try:
        import jieba
    except ImportError as error:
        raise MissingDependencyError("Dyn-VQA Chinese scoring (jieba)", "eval", error) from None
    jieba.setLogLevel(logging.WARNING)
    return jieba


def tokenize_en(text: object) -> list[str]:
    """OmniSearch's ``process_string_en``."""
    tokenize, _ = english_tokenizer()
    return [word for word in tokenize(str(text).lower()) if word not in EN_DROP]


def tokenize_zh(text: object) -> list[str]:
    """OmniSearch's ``process_string``."""
    return [word for word in " ".join(_jieba().cut(str(text))).split() if word not in ZH_DROP]


def token_recall(gold: Sequence[str], pred: Sequence[str]) -> float:
    """``|gold ∩ pred| / |gold|`` with OmniSearch's empty-side rule."""
    common = Counter(gold) & Counter(pred)
    same = sum(common.values())
    if not gold or not pred:
        return float(list(gold) == list(pred))
    return same / len(gold) if same else 0.0


def f1_recall(prediction: str, golds: Sequence[object], lang: str) -> float:
    """One item's F1-Recall in [0, 1] (x100 happens in the aggregate)."""
    normalised = normalize_vqa_answer(prediction)
    if normalised == "" or not golds:
        return 0.0
    tokenize = tokenize_zh if lang == "zh" else tokenize_en
    pred_tokens = tokenize(normalised)
    return max(token_recall(tokenize(gold), pred_tokens) for gold in golds)


class DynVqaScorer(Scorer):
    """Dyn-VQA F1-Recall (x100); the language comes from each item's ``meta['lang']``."""

    name = "DynVQA"
    headline = "f1_recall"

    def extract(self, item: EvalItem, prediction: str) -> str | None:
        return prediction

    def score_extracted(self, item: EvalItem, extracted: str | None, prediction: str) -> float:
        golds: list[object] = list(item.meta.get("gold_raw") or item.gold_list())
        return f1_recall(prediction, golds, str(item.meta.get("lang", "en")))

    def aggregate(self, items: Sequence[EvalItem], scores: Sequence[ItemScore]) -> dict[str, Any]:
        langs = sorted({str(item.meta.get("lang", "en")) for item in items})
        metrics: dict[str, Any] = {
            "n": len(scores),
            "f1_recall": percent(s.score for s in scores),
            "lang": ",".join(langs),
        }
        if "en" in langs:
            metrics["tokenizer"] = english_tokenizer()[1]
        return metrics
