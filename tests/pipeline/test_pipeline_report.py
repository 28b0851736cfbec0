"""The statistics report: counts per QA, multi-QA dialogues, QA-level rejects, Markdown."""

from __future__ import annotations

from pathlib import Path

from mmat.config import RunConfig
from mmat.pipeline import build
from mmat.pipeline.report import InputTally, build_report, render_markdown
from mmat.schema import (
    QA,
    ImageRef,
    Reflection,
    ReflectionKind,
    Reject,
    Sample,
    Segment,
    Signal,
    Step,
    Trajectory,
)
from mmat.store import shard_file
from mmat.wire import answer_turn, observation_turn, question_turn, step_turn, summarize_turn

ROOT = Path(__file__).resolve().parents[2]


def qa(qa_id: str) -> QA:
    return QA(qa_id=qa_id, question="q?", templated_question="q? Answer.", answer="3")


def segment(qa_id: str, steps: list[Step], reflections: list[Reflection] | None = None) -> Segment:
    turns = [question_turn("q? Answer.")]
    for item in steps:
        turns.append(step_turn(item))
        if item.signal is Signal.CONTINUE:
            turns.append(observation_turn([("ocr", "3")] if item.operators else []))
    turns += [summarize_turn("q?"), answer_turn("3")]
    return Segment(qa_id=qa_id, turns=turns, reflections=reflections or [])


def sample(sample_id: str, source: str, n_qas: int) -> Sample:
    return Sample(
        id=sample_id,
        source=source,
        license="x",
        images=[ImageRef(path="a.png")],
        qas=[qa(str(i)) for i in range(n_qas)],
    )


def test_report_counts_qas_across_whole_and_partial_rejects(tmp_path: Path) -> None:
    tally = InputTally()
    inputs = [sample("a", "tabmwp", 1), sample("b", "llava_cot", 3), sample("c", "llava_cot", 2)]
    bad_record = Reject(stage="foundation", reason="bad_json", detail="line 4")
    list(tally.count([*inputs, bad_record]))
    kept_a = inputs[0].model_copy(deep=True)
    ocr = Step(thought="read", operators=["ocr", "face_detection"], rag_query="x")
    end = Step(thought="3", signal=Signal.END)
    kept_a.trajectory = Trajectory(
        system="s", segments=[segment("0", [ocr, end], [Reflection(kind=ReflectionKind.MATH, reason="gap")])]
    )
    kept_b = inputs[1].model_copy(deep=True)
    kept_b.trajectory = Trajectory(
        system="s", segments=[segment("0", [ocr, ocr, ocr, ocr, end]), segment("2", [end])]
    )
    kept_b.metadata["rejected_qas"] = [
        {"qa_id": "1", "stage": "reflection", "reason": "answer_leak", "detail": ""}
    ]
    accepted = shard_file(tmp_path, "accepted", 0)
    accepted.parent.mkdir(parents=True)
    accepted.write_text(kept_a.model_dump_json() + "\n" + kept_b.model_dump_json() + "\n")
    rejects = shard_file(tmp_path, "rejects", 0)
    rejects.parent.mkdir(parents=True)
    whole = Reject(id="c", source="llava_cot", stage="rationale", reason="answer_mismatch")
    # what the engine writes for the QA dropped from the kept dialogue b
    dropped = Reject(id="b", source="llava_cot", qa_id="1", stage="reflection", reason="answer_leak")
    rejects.write_text("\n".join(r.model_dump_json() for r in (whole, bad_record, dropped)) + "\n")
    report = build_report(
        tmp_path, tally, stats={"teacher": "mock", "calls": 9, "cost_usd": 0.5, "rates": {}}
    )
    assert report["totals"] == {
        "input_dialogues": 3,
        "input_qas": 6,
        "accepted_dialogues": 2,
        "accepted_qas": 3,
        "rejected_qas": 3,
        "dialogue_turns": 6 + 12 + 4,
        "source_rejects": 1,
    }
    assert report["check"] == {"input_qas": 6, "accepted_plus_rejected": 6, "adds_up": True}
    assert report["rejects_by_reason"] == {"answer_mismatch": 2, "answer_leak": 1}
    assert report["steps_per_qa"] == {"1": 1, "2": 1, "5+": 1}
    assert report["operator_calls"] == {
        "image_caption": 0,
        "label_bbox": 0,
        "ocr": 5,
        "face_detection": 5,
        "rag": 5,
    }
    assert report["reflections"] == {"general": 0, "math": 1, "gate": 0}
    assert report["sources"]["llava_cot"]["rejected_qas"] == 3
    assert report["teacher"] == {"teacher": "mock", "calls": 9, "cost_usd": 0.5}
    assert report["engine"] == {"rates": {}}
    md = render_markdown(report)
    assert "| llava_cot | 2 | 5 | 1 | 2 | 3 | 6 | 0 | 0 | 4 | 4 | 4 |" in md
    assert "| answer_mismatch | 2 |" in md
    assert "Check: accepted + rejected QAs = 6, input QAs = 6 (adds up)." in md


def test_demo_config_runs_end_to_end_with_the_rules_teacher(tmp_path: Path) -> None:
    config = RunConfig.from_yaml(ROOT / "configs" / "demo.yaml")
    assert config.teacher.kind == "rules"
    config = config.with_overrides({"tools.enabled": [], "output.exports": ["mmat1m", "swift"]})
    config.sources[0].root = str(ROOT / "examples" / "data" / "tabmwp")
    config.sources[0].limit = 4
    result = build(config, out_dir=tmp_path / "demo", progress=False)
    assert result.report["check"] == {"input_qas": 4, "accepted_plus_rejected": 4, "adds_up": True}
    assert result.report["teacher"]["teacher_grade"] == "plumbing"
    assert result.exports["swift"], "the chat-format exporter also ran"


def test_ablations_no_reflection_and_orr_only(tmp_path: Path) -> None:
    base = RunConfig.from_yaml(ROOT / "configs" / "demo.yaml").with_overrides({"tools.enabled": []})
    base.sources[0].root = str(ROOT / "examples" / "data" / "tabmwp")
    base.sources[0].limit = 2
    plain = build(base.with_overrides({"ablation": "no_reflection"}), out_dir=tmp_path / "r", progress=False)
    assert "reflection.general_reflection" not in plain.report["teacher"]["calls_by_purpose"]
    orr = build(base.with_overrides({"ablation": "orr_only"}), out_dir=tmp_path / "o", progress=False)
    assert [p.name for p in orr.exports["mmat1m"]] == ["dataset_qa_rr_train_all_ORR.jsonl"]
