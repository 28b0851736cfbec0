"""Dyn-VQA on the real shared items: loading both key spellings, and F1-Recall on written predictions."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmat.errors import RecordError
from mmat.eval.dynvqa import load_dynvqa
from mmat.eval.items import EvalItem
from mmat.eval.scorers.base import ItemScore
from mmat.eval.scorers.dynvqa import DynVqaScorer, f1_recall

EN_2406 = "dynvqa/DynVQA_en.202406.head60.jsonl"
EN_2502 = "dynvqa/DynVQA_en.202502.head20.jsonl"
ZH_2406 = "dynvqa/DynVQA_zh.202406.head30.jsonl"


def by_id(items: list[EvalItem]) -> dict[str, EvalItem]:
    return {i.index: i for i in items}


def test_loader_reads_both_golden_query_spellings_and_settings(shared_data: Path) -> None:
    old = by_id(load_dynvqa(shared_data / EN_2406))
    new = by_id(load_dynvqa(shared_data / EN_2502, setting="golden"))
    assert len(old) == 60 and len(new) == 20
    assert old["en1"].prompt == "What is the name of his third child?"
    assert old["en1"].meta["golden_query"] == "What is the name of Leonardo DiCaprio's third child?"
    # the 2025 release spells it golden_query; the golden setting asks it
    assert new["en1"].prompt == "What is the name of Leonardo DiCaprio's third child?"
    assert old["en1"].meta["lang"] == "en"
    # numeric gold answers are kept raw (and as strings)
    assert old["en60"].meta["gold_raw"] == [1, "一", 1, "one"]
    assert old["en60"].answers == ["1", "一", "1", "one"]
    zh = load_dynvqa(shared_data / ZH_2406)
    assert {i.meta["lang"] for i in zh} == {"zh"} and len(zh) == 30
    # without an image root the URL is passed on; with one, the downloaded copy is used
    assert old["en1"].images[0].path.startswith("https://")


def test_loader_finds_downloaded_images(shared_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "Freshqa_en_extracted_images"
    folder.mkdir()
    (folder / "image_1.jpeg").write_bytes(b"\xff\xd8\xff fake jpeg")
    items = by_id(load_dynvqa(shared_data / EN_2406, image_root=tmp_path))
    assert items["en1"].images[0].path == str((folder / "image_1.jpeg").resolve())
    assert items["en2"].images[0].path.startswith("https://")  # not downloaded


def test_loader_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "DynVQA_en.bad.jsonl"
    bad.write_text('{"question": "q", "answer": ["a"], "gloden_query": "g"}\n{"question": "q2"}\n')
    with pytest.raises(RecordError, match=r"bad.jsonl:2.*lacks \['answer'\]"):
        load_dynvqa(bad)
    bad.write_text('{"question": "q", "answer": ["a"]}\n')
    with pytest.raises(RecordError, match="golden setting needs 'golden_query'"):
        load_dynvqa(bad, setting="golden")


def test_f1_recall_english_on_real_items(shared_data: Path) -> None:
    items = by_id(load_dynvqa(shared_data / EN_2406))
    golds = {k: v.meta["gold_raw"] for k, v in items.items()}
    # gold 2 has 7 tokens after dropping '.': leonardo dicaprio does not have any children;
    # the prediction shares leonardo, dicaprio, children -> 3/7; the Chinese gold shares none
    assert f1_recall("Leonardo DiCaprio has no children.", golds["en1"], "en") == pytest.approx(3 / 7)
    # the number word is normalised to a digit and matches the numeric gold 1
    assert f1_recall("One.", golds["en60"], "en") == 1.0
    # several golds: the best one counts ('Shreveport' alone, not 'Shreveport, Louisiana')
    assert f1_recall("He was born in Shreveport.", golds["en55"], "en") == 1.0
    assert f1_recall("Louisiana", golds["en55"], "en") == 0.5
    # the article is dropped from the prediction
    assert f1_recall("The United Kingdom", golds["en56"], "en") == 1.0
    # empty predictions score 0, also when normalisation empties them
    assert f1_recall("", golds["en1"], "en") == 0.0
    assert f1_recall(" . ", golds["en1"], "en") == 0.0


def test_f1_recall_english_file_with_chinese_only_gold(shared_data: Path) -> None:
    golds = by_id(load_dynvqa(shared_data / EN_2502))["en13"].meta["gold_raw"]
    assert golds == ["2023年"]
    # English word tokens keep "2023年" whole, so the bare year does not match: OmniSearch's behaviour
    assert f1_recall("2023", golds, "en") == 0.0
    assert f1_recall("2023年", golds, "en") == 1.0


def test_f1_recall_chinese_on_real_items(shared_data: Path) -> None:
    items = by_id(load_dynvqa(shared_data / ZH_2406))
    # gold 目前/还/没有/人类/去过/火星 (。 dropped): the prediction 人类/没有/去过/火星 covers 4 of 6
    assert f1_recall("人类没有去过火星", items["zh2"].meta["gold_raw"], "zh") == pytest.approx(4 / 6)
    # gold 威利/·/纳尔逊/还/活着: 3 of 5
    assert f1_recall("纳尔逊还活着", items["zh10"].meta["gold_raw"], "zh") == pytest.approx(3 / 5)
    # Chinese scoring does not lower-case the gold, but the prediction was lower-cased by the
    # normalisation: 'Leonardo' and 'DiCaprio' no longer match -> 5 of 7
    english = "Leonardo DiCaprio does not have any children."
    assert f1_recall(english, items["zh1"].meta["gold_raw"], "zh") == pytest.approx(5 / 7)
    assert f1_recall("莱昂纳多·迪卡普里奥没有任何孩子。", items["zh1"].meta["gold_raw"], "zh") == 1.0
    assert f1_recall("", items["zh1"].meta["gold_raw"], "zh") == 0.0


def test_dynvqa_aggregate_is_mean_times_100(shared_data: Path) -> None:
    items = by_id(load_dynvqa(shared_data / EN_2406))
    chosen = [items["en1"], items["en60"], items["en55"], items["en18"]]
    preds = ["Leonardo DiCaprio has no children.", "one", "Louisiana", ""]
    scorer = DynVqaScorer()
    scores = [
        ItemScore(index=i.index, score=scorer.score_extracted(i, p, p))
        for i, p in zip(chosen, preds, strict=True)
    ]
    metrics = scorer.aggregate(chosen, scores)
    assert metrics["f1_recall"] == round(100 * (3 / 7 + 1.0 + 0.5 + 0.0) / 4, 2)
    assert metrics["lang"] == "en"
    assert metrics["tokenizer"] in ("nltk.word_tokenize", "punkt-untrained")
