"""Fixtures of the training tests: RR samples exported by mmat's ms-swift exporter, tiny random VLMs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmat.schema import QA, ImageRef, Sample, Segment, Step, Trajectory
from mmat.schema import Signal as StepSignal
from mmat.wire import (
    answer_turn,
    observation_turn,
    question_turn,
    render_rr_system,
    step_turn,
    summarize_turn,
)

QUESTIONS = [
    ("What colour is the sign?", "red", "The sign text is STOP.", "stop sign"),
    ("How many cars are there?", "2", "Two cars are parked.", "two cars"),
    ("What does the label say?", "milk", "MILK 1L", "a bottle"),
    ("Which animal is shown?", "cat", "no text", "a cat on a sofa"),
]


def make_samples(image_dir: Path, count: int = 4) -> list[Sample]:
    """RR samples built with the wire helpers: question, operator step, observation, end, answer."""
    from PIL import Image

    image_dir.mkdir(parents=True, exist_ok=True)
    samples = []
    for index in range(count):
        question, answer, ocr_text, caption = QUESTIONS[index % len(QUESTIONS)]
        image_path = image_dir / f"img{index}.png"
        Image.new("RGB", (40 + index, 30), (40 * index % 255, 90, 160)).save(image_path)
        turns = [
            question_turn(question, image_placeholders=1),
            step_turn(Step(thought="I read the text in the image.", operators=["ocr", "image_caption"])),
            observation_turn([("ocr", ocr_text), ("image_caption", caption)]),
            step_turn(Step(thought=f"The image shows {caption}.", signal=StepSignal.END)),
            summarize_turn(question),
            answer_turn(answer),
        ]
        samples.append(
            Sample(
                id=f"s{index}",
                source="test",
                license="CC-BY-4.0",
                images=[ImageRef(path=str(image_path))],
                qas=[QA(qa_id="0", question=question, templated_question=question, answer=answer)],
                trajectory=Trajectory(system=render_rr_system(), segments=[Segment(qa_id="0", turns=turns)]),
            )
        )
    return samples


def export_rows(samples: list[Sample], out_dir: Path) -> Path:
    """Export with mmat's ms-swift exporter, as a user would before ``mmat train``."""
    from mmat.export.swift import SwiftExporter

    SwiftExporter(image_paths="relative").export(samples, out_dir)
    return out_dir


def all_texts(export_dir: Path) -> list[str]:
    texts = []
    for file in sorted(export_dir.rglob("*.jsonl")):
        for line in file.read_text(encoding="utf-8").splitlines():
            texts += [m["content"] for m in json.loads(line)["messages"]]
    return texts


@pytest.fixture(scope="session")
def train_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train_export")
    return export_rows(make_samples(root / "images"), root / "export")


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory: pytest.TempPathFactory, train_export: Path) -> Path:
    pytest.importorskip("peft")
    from mmat.train.tiny import build_tiny_llava

    texts = all_texts(train_export)
    return build_tiny_llava(tmp_path_factory.mktemp("tiny_llava"), texts=texts * 4, vocab_size=600)


@pytest.fixture(scope="session")
def tiny_qwen2_vl(tmp_path_factory: pytest.TempPathFactory, train_export: Path) -> Path:
    pytest.importorskip("peft")
    from mmat.train.tiny import build_tiny_qwen2_vl

    texts = all_texts(train_export)
    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny_qwen2_vl"), texts=texts * 4, vocab_size=600)


@pytest.fixture(scope="session")
def tiny_internvl(tmp_path_factory: pytest.TempPathFactory, train_export: Path) -> Path:
    pytest.importorskip("peft")
    from mmat.train.tiny import build_tiny_internvl

    texts = all_texts(train_export)
    return build_tiny_internvl(tmp_path_factory.mktemp("tiny_internvl"), texts=texts * 4, vocab_size=600)


@pytest.fixture(scope="session")
def tiny_mllama(tmp_path_factory: pytest.TempPathFactory, train_export: Path) -> Path:
    pytest.importorskip("peft")
    from mmat.train.tiny import build_tiny_mllama

    texts = all_texts(train_export)
    return build_tiny_mllama(tmp_path_factory.mktemp("tiny_mllama"), texts=texts * 4, vocab_size=600)


@pytest.fixture(scope="session")
def tiny_idefics3(tmp_path_factory: pytest.TempPathFactory, train_export: Path) -> Path:
    pytest.importorskip("peft")
    from mmat.train.tiny import build_tiny_idefics3

    texts = all_texts(train_export)
    return build_tiny_idefics3(tmp_path_factory.mktemp("tiny_idefics3"), texts=texts * 4, vocab_size=600)
