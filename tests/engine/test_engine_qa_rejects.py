"""A QA dropped from a dialogue that is kept goes to the rejects file with its qa_id, exactly once."""

from __future__ import annotations

from pathlib import Path

from engine_helpers import config, make_samples

from mmat.engine import Engine
from mmat.engine.output import ShardStore
from mmat.llm.base import ChatMessage, Completion, DecodingParams, Teacher
from mmat.schema import Sample
from mmat.stages.base import Stage, StageContext
from mmat.store import iter_accepted, iter_rejects


class SilentTeacher(Teacher):
    name = "silent"

    async def complete(self, messages: list[ChatMessage], params: DecodingParams) -> Completion:
        raise AssertionError("these stages never call the teacher")


class DropSecondQa(Stage):
    name = "rationale"

    async def run(self, sample: Sample, ctx: StageContext) -> Sample:
        sample.metadata.setdefault("rejected_qas", []).append(
            {"qa_id": "1", "stage": self.name, "reason": "answer_mismatch", "detail": "said 4, gold 5"}
        )
        return sample


def test_dropped_qas_are_written_to_rejects_once(tmp_path: Path) -> None:
    samples = make_samples(3)
    Engine(config(), SilentTeacher(), [DropSecondQa()], out_dir=tmp_path, progress=False).run_sync(samples)
    rejects = list(iter_rejects(tmp_path))
    assert sorted((r.id, r.qa_id, r.reason, r.detail) for r in rejects) == sorted(
        (s.id, "1", "answer_mismatch", "said 4, gold 5") for s in samples
    )
    assert len(list(iter_accepted(tmp_path))) == 3

    # a kill between the QA reject and its dialogue: the dialogue reruns, the reject is not repeated
    accepted = next(tmp_path.glob("accepted/shard-*.jsonl"))
    lines = accepted.read_text().splitlines()
    accepted.write_text("\n".join(lines[:-1]) + "\n")
    stats = Engine(config(), SilentTeacher(), [DropSecondQa()], out_dir=tmp_path, progress=False).run_sync(
        samples
    )
    assert stats["kept"] == 1 and stats["skipped_done"] == 2
    assert len(list(iter_rejects(tmp_path))) == 3
    assert len(list(iter_accepted(tmp_path))) == 3
    assert len(ShardStore(tmp_path).load()) == 6  # 3 dialogues + 3 QA rejects, each its own key
