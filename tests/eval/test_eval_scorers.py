"""Scorer rules, each checked on hand-computed cases."""

from __future__ import annotations

import pytest

from mmat.eval.items import EvalItem
from mmat.eval.scorers.base import ItemScore
from mmat.eval.scorers.choice import MultipleChoiceScorer, infer_option
from mmat.eval.scorers.math import MathVisionScorer, MathVistaScorer, answer_span, last_number
from mmat.eval.scorers.mmmu import MmmuScorer, parse_open_reply
from mmat.eval.scorers.ocrbench import HMER, OcrBenchScorer
from mmat.eval.scorers.yesno import YesNoScorer, extract_yes_no
from mmat.eval.scoring import score_items
from mmat.eval.text import normalize_vqa_answer, process_punctuation

CHOICES = {"A": "a red apple", "B": "a green pear", "C": "a yellow banana", "D": "a purple plum"}


def item(index: str = "1", **kwargs: object) -> EvalItem:
    fields: dict[str, object] = {"bench": "t", "index": index, "question": "q?", "prompt": "q?"}
    fields.update(kwargs)
    return EvalItem(**fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- MC


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("B", "B"),
        ("(C)", "C"),
        ("The answer is (B).", "B"),
        ("Answer: D", "D"),
        # one letter, but too early (VLMEvalKit wants it among the last five words) and the text is long
        ("B is what I would pick because the fruit in the picture is green and shaped like a pear", None),
        # two letters named: ambiguous
        ("A or C", None),
        # no letter: the option text decides
        ("a yellow banana", "C"),
        # two option texts appear: ambiguous
        ("a red apple and a green pear", None),
        ("Cannot determine the answer", "Z"),
        ("Z", "Z"),
    ],
)
def test_option_extraction_follows_vlmevalkit_rules(answer: str, expected: str | None) -> None:
    assert infer_option(answer, CHOICES) == expected


def test_multiple_choice_scores_and_breaks_down_by_category() -> None:
    scorer = MultipleChoiceScorer("MMStar")
    items = [
        item("1", answer="B", choices=CHOICES, category="fruit"),
        item("2", answer="C", choices=CHOICES, category="fruit"),
        item("3", answer="A", choices=CHOICES, category="colour"),
    ]
    preds = ["The answer is B.", "A", "a red apple"]
    scores = [
        ItemScore(index=i.index, score=scorer.score_extracted(i, scorer.extract(i, p), p))
        for i, p in zip(items, preds, strict=True)
    ]
    metrics = scorer.aggregate(items, scores)
    assert [s.score for s in scores] == [1.0, 0.0, 1.0]
    assert metrics["accuracy"] == 66.67
    assert metrics["by_category"] == {"colour": 100.0, "fruit": 50.0}


class CountingJudge:
    name = "fake-judge"

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.prompts: list[str] = []

    async def complete(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.reply


async def test_judge_fallback_is_used_only_when_rules_fail_and_is_recorded(tmp_path) -> None:
    from mmat.eval.judge import JudgeCache

    scorer = MultipleChoiceScorer("MMStar")
    items = [item("1", answer="B", choices=CHOICES), item("2", answer="C", choices=CHOICES)]
    # item 1 is extractable by rule; item 2 ("A or C") is not
    preds = {"1": "B", "2": "I hesitate between A or C, finally the banana"}
    judge = CountingJudge("C")
    cache = JudgeCache(tmp_path / "judge.jsonl")
    scores, metrics = await score_items(scorer, items, preds, judge=judge, judge_cache=cache)
    assert [s.method for s in scores] == ["rule", "judge"]
    assert scores[1].extracted == "C" and scores[1].judge_output == "C" and scores[1].score == 1.0
    assert metrics["judge_used"] == 1 and metrics["accuracy"] == 100.0
    assert (
        len(judge.prompts) == 1
        and "I hesitate" in judge.prompts[0]
        and "C. a yellow banana" in judge.prompts[0]
    )
    # a rerun reads the reply from the cache on disk
    again = CountingJudge("A")
    scores2, _ = await score_items(
        scorer, items, preds, judge=again, judge_cache=JudgeCache(tmp_path / "judge.jsonl")
    )
    assert again.prompts == []
    assert scores2[1].extracted == "C"


async def test_missing_predictions_score_zero_and_are_counted() -> None:
    scorer = MultipleChoiceScorer()
    items = [item("1", answer="B", choices=CHOICES), item("2", answer="C", choices=CHOICES)]
    scores, metrics = await score_items(scorer, items, {"1": "B"})
    assert [s.method for s in scores] == ["rule", "none"]
    assert metrics["missing"] == 1 and metrics["accuracy"] == 50.0


# ---------------------------------------------------------------------------------------- OCRBench


def test_ocrbench_rules_and_score_out_of_1000() -> None:
    scorer = OcrBenchScorer()
    items = [
        item("1", category="Regular Text Recognition", answers=["STOP"]),
        item("2", category="Doc-oriented VQA", answers=["$12.50", "12.50"]),
        item("3", category=HMER, answers=["x^{2} + 1"]),
        item("4", category=HMER, answers=["X^{2}"]),
        item("5", category="Key Information Extraction", answers=["ACME Ltd"]),
    ]
    preds = [
        "the sign says stop.",  # case-insensitive substring: hit
        "It costs 12.50 dollars",  # second gold matches: hit
        "x^{2}+1",  # HMER: spaces removed on both sides: hit
        "x^{2}",  # HMER is case-sensitive: miss
        "ACME",  # gold is not inside the prediction: miss
    ]
    scores = [
        ItemScore(index=i.index, score=scorer.score_extracted(i, p, p))
        for i, p in zip(items, preds, strict=True)
    ]
    metrics = scorer.aggregate(items, scores)
    assert [s.score for s in scores] == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert metrics["final_score"] == 3
    assert metrics["score_1000"] == 600.0  # 3 of 5, scaled to the full benchmark's 1000
    assert metrics["by_group"]["Text Recognition"] == 1
    assert metrics["by_group"][HMER] == 1
    assert metrics["by_group"]["Key Information Extraction"] == 0


# ------------------------------------------------------------------------------- MathVista / MathV


def test_mathvista_extraction_and_normalisation() -> None:
    scorer = MathVistaScorer()
    integer = item("i", answer="14", meta={"question_type": "free_form", "answer_type": "integer"})
    floating = item(
        "f", answer="0.6", meta={"question_type": "free_form", "answer_type": "float", "precision": "1"}
    )
    listing = item("l", answer="[2007, 2008]", meta={"question_type": "free_form", "answer_type": "list"})
    choice = item(
        "c",
        answer="8/11",
        choices={"A": "3/11", "B": "8/11", "C": "6/11", "D": "3/5"},
        meta={"question_type": "multi_choice", "answer_type": "text", "answer_option": "B"},
    )
    cases = [
        (integer, "The missing number is 14.", "14", 1.0),
        (integer, "I count 1,400 dots, so the answer is: 1,400", "1400", 0.0),
        (floating, "The fraction is 0.63", "0.63", 1.0),  # rounded to 1 decimal: 0.6
        (floating, "0.66", "0.66", 0.0),  # rounds to 0.7
        (listing, "It peaks between [2007, 2008].", "[2007, 2008]", 1.0),
        (choice, "The correct answer is (B) 8/11.", "B", 1.0),
        (choice, "3/5", "D", 0.0),
    ]
    for case, prediction, extracted, score in cases:
        got = scorer.extract(case, prediction)
        assert got == extracted, prediction
        assert scorer.score_extracted(case, got, prediction) == score, prediction


def test_math_helpers() -> None:
    assert answer_span("so \\boxed{\\frac{1}{2}} is it") == "\\frac{1}{2}"
    assert answer_span("The answer is: 35.") == "35"
    assert last_number("from -3 to 1,234.5 units") == "1234.5"


def test_mathvision_free_form_and_choice() -> None:
    scorer = MathVisionScorer()
    fraction = item("1", answer="0.5")
    assert scorer.score_extracted(fraction, scorer.extract(fraction, "\\boxed{\\frac{1}{2}}"), "") == 1.0
    assert scorer.score_extracted(fraction, scorer.extract(fraction, "The answer is 0.55"), "") == 0.0
    word = item("2", answer="$\\text{north}$")
    assert scorer.score_extracted(word, scorer.extract(word, "The answer is: North."), "") == 1.0
    choice = item("3", answer="C", choices={"A": "1", "B": "2", "C": "3", "D": "4", "E": "5"})
    assert scorer.extract(choice, "Therefore the answer is C") == "C"
    assert scorer.score_extracted(choice, "C", "") == 1.0


# -------------------------------------------------------------------------------- HallusionBench


def test_yes_no_extraction() -> None:
    assert extract_yes_no("Yes, it is.") == "Yes"
    assert extract_yes_no("no") == "No"
    assert extract_yes_no("Yes and no") == "Unknown"
    assert extract_yes_no("The chart shows 2019.") == "Unknown"


def test_hallusion_accuracies_hand_computed() -> None:
    # index "<cat>_<subcat>_x_<set>_<figure>_<question>": set/figure/question are parts 3, 4, 5
    rows = [
        ("VS_chart_0_1_0_0", "Yes", "Yes"),
        ("VS_chart_0_1_0_1", "No", "No"),
        ("VS_chart_0_1_1_0", "No", "Yes"),  # wrong
        ("VS_chart_0_1_1_1", "No", "No"),
        ("VD_map_0_2_0_0", "Yes", "Yes"),
        ("VD_map_0_2_1_0", "Yes", "Yes"),
    ]
    items = [
        item(index, answer=gold, category=index[:2], l2_category=index.split("_")[1])
        for index, gold, _ in rows
    ]
    scorer = YesNoScorer("HallusionBench", hallusion=True)
    scores = [
        ItemScore(index=i.index, score=scorer.score_extracted(i, scorer.extract(i, p), p))
        for i, (_, _, p) in zip(items, rows, strict=True)
    ]
    metrics = scorer.aggregate(items, scores)
    # aAcc: 5/6; figures: chart_1_0 ok, chart_1_1 broken, map_2_0 ok, map_2_1 ok -> 3/4;
    # questions: chart_1_q0 (figs 0,1) broken, chart_1_q1 ok, map_2_q0 ok -> 2/3
    assert metrics["aAcc"] == 83.33
    assert metrics["fAcc"] == 75.0
    assert metrics["qAcc"] == 66.67
    assert metrics["overall"] == round((83.33 + 75.0 + 66.67) / 3, 2)
    assert metrics["by_category"]["VD"] == {"aAcc": 100.0, "fAcc": 100.0, "qAcc": 100.0, "overall": 100.0}


# ---------------------------------------------------------------------------------------- MMMU


def test_mmmu_open_answers_and_validation_headline() -> None:
    scorer = MmmuScorer()
    number = item("1", answer="3.14", split="validation")
    words = item("2", answer="Paris", split="validation")
    several = item("3", answer="['2', '2.0']", split="dev")
    choice = item("4", answer="A", choices={"A": "x", "B": "y"}, split="dev")
    assert 3.14 in parse_open_reply("So the value is 3.14159, which rounds; the answer is 3.14")
    preds = ["The result is 3.14", "the capital is paris.", "I get 3", "A"]
    scores = [
        ItemScore(index=i.index, score=scorer.score_extracted(i, scorer.extract(i, p), p))
        for i, p in zip([number, words, several, choice], preds, strict=True)
    ]
    assert [s.score for s in scores] == [1.0, 1.0, 0.0, 1.0]
    metrics = scorer.aggregate([number, words, several, choice], scores)
    assert metrics["by_split"] == {"dev": 50.0, "validation": 100.0}
    assert metrics["val_accuracy"] == 100.0 and metrics["accuracy"] == 75.0


# ------------------------------------------------------------------------------ VQA normalisation


def test_vqa_normalisation_quirks() -> None:
    # a mark touching a space is deleted, else it becomes a space
    assert process_punctuation("yes, it is") == "yes it is"
    assert process_punctuation("left/right") == "left right"
    # periods go unless a digit follows
    assert process_punctuation("It is 3.5 m.") == "It is 3.5 m"
    assert normalize_vqa_answer("The Two cats\nran.") == "2 cats ran"
    assert normalize_vqa_answer("dont") == "don't"
