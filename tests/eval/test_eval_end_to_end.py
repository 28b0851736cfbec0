"""End to end: small TSVs built here, the mock model server as the tuned model, all three modes,
resume, the comparison report, the VLMEvalKit export and adapter, and a Dyn-VQA run."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image

from mmat.cli import cli
from mmat.llm.mock_server import MockTeacherServer, request_text

# question tag -> answer per mode. MMStar golds: A B C D; OCRBench golds: STOP EXIT OPEN.
ANSWERS = {
    "[q1]": {"baseline": "A", "orr": "A", "rr": "A"},
    "[q2]": {"baseline": "A", "orr": "B", "rr": "B"},
    "[q3]": {"baseline": "A", "orr": "A", "rr": "The answer is C."},
    "[q4]": {"baseline": "A", "orr": "A", "rr": "A"},
    "[o1]": {"baseline": "stop", "orr": "STOP", "rr": "It says STOP"},
    "[o2]": {"baseline": "no idea", "orr": "exit", "rr": "EXIT"},
    "[o3]": {"baseline": "no idea", "orr": "no idea", "rr": "open"},
}
FAIL_ONCE: set[str] = set()


def mode_of(body: dict[str, Any]) -> str:
    system = request_text(body, "system")
    return "orr" if "<ANSWER>" in system else "rr" if "<THOUGHT>" in system else "baseline"


def tuned_model(body: dict[str, Any]) -> str:
    """A scripted 'tuned model': follows the wire format of each mode and answers per the table."""
    text = request_text(body)
    tag = next((t for t in ANSWERS if t in text), None)
    mode = mode_of(body)
    answer = ANSWERS[tag][mode] if tag else "Shreveport"
    if mode == "orr":
        if tag in FAIL_ONCE:
            FAIL_ONCE.discard(tag)
            return "I forgot the format"
        return f"<THOUGHT>Looking at the options.</THOUGHT><ANSWER>The answer is: {answer}</ANSWER>"
    if mode == "rr":
        last_user = [m for m in body["messages"] if m["role"] == "user"][-1]
        if "summarize and give the answer" in request_text({"messages": [last_user]}):
            return answer
        steps = sum(1 for m in body["messages"] if m["role"] == "assistant")
        if steps == 0:
            return "<THOUGHT>I look at the image.</THOUGHT><SIGNAL>continue</SIGNAL>"
        return "<THOUGHT>I have what I need.</THOUGHT><SIGNAL>end</SIGNAL>"
    return answer


@pytest.fixture
def server() -> Iterator[MockTeacherServer]:
    with MockTeacherServer() as mock:
        mock.responder = tuned_model
        yield mock


def png_b64(color: str) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 12), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def data(tmp_path: Path) -> dict[str, Path]:
    img = png_b64("red")
    mmstar = write_tsv(
        tmp_path / "MMStar.tsv",
        ["index", "question", "A", "B", "C", "D", "answer", "category", "l2-category", "image"],
        [
            ["1", "Which fruit? [q1]", "apple", "pear", "plum", "fig", "A", "perception", "fine", img],
            ["2", "Which colour? [q2]", "red", "blue", "green", "grey", "B", "perception", "coarse", "1"],
            ["3", "How many? [q3]", "1", "2", "3", "4", "C", "reasoning", "math", png_b64("blue")],
            ["4", "Which shape? [q4]", "disc", "cube", "cone", "ring", "D", "reasoning", "logic", "1"],
        ],
    )
    ocr = write_tsv(
        tmp_path / "OCRBench.tsv",
        ["index", "question", "answer", "category", "image"],
        [
            ["10", "What does the sign say? [o1]", "['STOP']", "Regular Text Recognition", img],
            ["11", "What does the door say? [o2]", "['EXIT']", "Scene Text-centric VQA", img],
            ["12", "What does the shop say? [o3]", "['OPEN']", "Doc-oriented VQA", img],
        ],
    )
    return {"mmstar": mmstar, "ocr": ocr}


def run_cli(args: list[str]) -> str:
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def eval_args(server: MockTeacherServer, bench: str, path: Path, out: Path, *extra: str) -> list[str]:
    return [
        "eval", "--bench", bench, "--data", str(path), "--model", "mmat-tuned", "--base-url", server.base_url,
        "--tools", "none", "--out", str(out), "--concurrency", "3", *extra,
    ]  # fmt: skip


def score_of(out: Path, key: str, mode: str) -> dict[str, Any]:
    return json.loads((out / key / mode / "score.json").read_text())


def test_three_modes_resume_report_and_export(
    server: MockTeacherServer, data: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "mmat-8b"
    FAIL_ONCE.add("[q4]")  # ORR fails on q4 the first time: recorded as an error, retried on rerun
    text = run_cli(eval_args(server, "MMStar", data["mmstar"], out))
    assert "MMStar/orr: accuracy=" in text and "1 errors this run" in text
    orr = score_of(out, "MMStar", "orr")
    assert orr["n_errors"] == 1 and orr["n_predicted"] == 3
    calls_first = len(server.requests)
    # 4 baseline calls + 4 ORR calls + 4 RR items x 3 calls (continue, end, summarise)
    assert calls_first == 4 + 4 + 12

    # rerun: only the failed ORR item is asked again
    text = run_cli(eval_args(server, "MMStar", data["mmstar"], out))
    assert len(server.requests) == calls_first + 1
    assert "MMStar/baseline" in text and "4 resumed" in text
    scores = {mode: score_of(out, "MMStar", mode) for mode in ("baseline", "orr", "rr")}
    assert {m: s["headline_value"] for m, s in scores.items()} == {"baseline": 25.0, "orr": 50.0, "rr": 75.0}
    assert scores["orr"]["n_errors"] == 0
    assert scores["rr"]["metrics"]["by_category"] == {"perception": 100.0, "reasoning": 50.0}
    assert scores["rr"]["latency"]["mean_model_calls"] == 3.0
    assert scores["baseline"]["latency"]["mean_model_calls"] == 1.0
    assert scores["rr"]["latency"]["mean_s"] > 0
    # the predictions file holds every attempt; the last one of an index wins
    orr_lines = (out / "MMStar" / "orr" / "predictions.jsonl").read_text().splitlines()
    assert len(orr_lines) == 5
    rr_records = [
        json.loads(line) for line in (out / "MMStar" / "rr" / "predictions.jsonl").read_text().splitlines()
    ]
    assert {r["index"]: r["prediction"] for r in rr_records}["3"] == "The answer is C."
    assert all(r["steps"] == 2 and r["model_calls"] == 3 for r in rr_records)

    run_cli(
        eval_args(server, "OCRBench", data["ocr"], out, "--mode", "baseline", "--mode", "orr", "--mode", "rr")
    )
    assert score_of(out, "OCRBench", "rr")["headline_value"] == 1000.0
    assert score_of(out, "OCRBench", "baseline")["headline_value"] == 333.3

    # --rescore recomputes from the predictions without calling the model
    before = len(server.requests)
    run_cli([*eval_args(server, "OCRBench", data["ocr"], out), "--rescore"])
    assert len(server.requests) == before

    report_text = run_cli(["eval", "report", str(out)])
    assert "| Model / mode | MMStar | OCRBench | Avg | latency (s) | x baseline |" in report_text
    # average over the benchmarks present (2 of the paper's 8), OCRBench divided by 10
    assert re.search(
        r"\| mmat-8b / baseline \| 25\.0 \| 333\.3 \| 29\.2 \(2/8\) \| [\d.]+ \| 1\.00x \|", report_text
    )
    assert re.search(
        r"\| mmat-8b / orr \| 50\.0 \| 666\.7 \| 58\.3 \(2/8\) \| [\d.]+ \| [\d.]+x \|", report_text
    )
    assert re.search(r"\| mmat-8b / rr \| 75\.0 \| 1000\.0 \| 87\.5 \(2/8\) \|", report_text)
    assert "## Latency per benchmark" in report_text
    report = json.loads((out / "report.json").read_text())
    assert report["average"]["mmat-8b / rr"] == {"value": 87.5, "count": 2}
    assert report["latency"]["mmat-8b / baseline"]["ratio_to_baseline"] == 1.0
    assert report["latency"]["mmat-8b / rr"]["ratio_to_baseline"] is not None
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    exported = run_cli(
        ["eval", "export", str(out), "--bench", "MMStar", "--data", str(data["mmstar"]), "--mode", "rr"]
    )
    path = Path(exported.split("written ", 1)[1].strip())
    assert path.name in ("mmat_MMStar.tsv", "mmat_MMStar.xlsx")
    if path.suffix == ".tsv":
        rows = list(csv.DictReader(path.open(encoding="utf-8"), delimiter="\t"))
        assert "image" not in rows[0] and [r["prediction"] for r in rows] == [
            "A",
            "B",
            "The answer is C.",
            "A",
        ]
        assert rows[0]["question"] == "Which fruit? [q1]" and rows[0]["answer"] == "A"


def test_report_compares_two_models(server: MockTeacherServer, data: dict[str, Path], tmp_path: Path) -> None:
    for name in ("base-model", "tuned-model"):
        run_cli(eval_args(server, "MMStar", data["mmstar"], tmp_path / name, "--mode", "baseline"))
    text = run_cli(["eval", "report", str(tmp_path / "base-model"), str(tmp_path / "tuned-model"),
                    "--output", str(tmp_path / "cmp"), "--no-chart"])  # fmt: skip
    assert "| base-model / baseline | 25.0 | 25.0 (1/8) |" in text
    assert "| tuned-model / baseline | 25.0 | 25.0 (1/8) |" in text
    assert (tmp_path / "cmp" / "report.md").is_file() and not (tmp_path / "cmp" / "report.png").exists()


def test_dynvqa_golden_setting_end_to_end(
    server: MockTeacherServer, shared_data: Path, tmp_path: Path
) -> None:
    images = tmp_path / "dynvqa_images" / "Freshqa_en_extracted_images"
    images.mkdir(parents=True)
    for n in (1, 2, 7):
        Image.new("RGB", (8, 8), "white").save(images / f"image_{n}.jpeg", format="JPEG")
    out = tmp_path / "out"
    data = shared_data / "dynvqa" / "DynVQA_en.202406.head60.jsonl"
    run_cli(eval_args(server, "DynVQA", data, out, "--mode", "baseline", "--setting", "golden", "--limit", "3",
                      "--image-root", str(tmp_path / "dynvqa_images")))  # fmt: skip
    score = score_of(out, "DynVQA_en_golden", "baseline")
    assert score["n_predicted"] == 3 and score["headline"] == "f1_recall"
    # the model got the golden query, with the entity named
    assert "Leonardo DiCaprio's third child" in request_text(server.requests[0].body)
    # 'Shreveport' shares no token with the three gold answers
    assert score["headline_value"] == 0.0
    exported = run_cli(["eval", "export", str(out), "--bench", "DynVQA", "--data", str(data), "--mode", "baseline",
                        "--setting", "golden"])  # fmt: skip
    rows = [json.loads(x) for x in Path(exported.split("written ", 1)[1].strip()).read_text().splitlines()]
    assert rows[0]["prediction"] == "Shreveport" and rows[3]["prediction"] == ""


def test_missing_options_and_unreachable_server_are_reported(tmp_path: Path, data: dict[str, Path]) -> None:
    result = CliRunner().invoke(cli, ["eval", "--bench", "MMStar", "--data", str(data["mmstar"])])
    assert result.exit_code != 0 and "missing --model, --base-url" in result.output


async def test_runner_records_operator_latency(tmp_path: Path, data: dict[str, Path]) -> None:
    from mmat.agent.models import OpenAIModel
    from mmat.agent.runtime import Agent
    from mmat.agent.simulated import SimulatedToolProvider
    from mmat.eval.benchmarks import get_benchmark, load_items
    from mmat.eval.runner import run_mode

    bench = get_benchmark("OCRBench")
    items = load_items(bench, data["ocr"], cache_dir=tmp_path / "img")

    def with_ocr(body: dict[str, Any]) -> str:
        if mode_of(body) == "rr" and not any(m["role"] == "assistant" for m in body["messages"]):
            return "<THOUGHT>Read the text.</THOUGHT><OPERATOR>ocr</OPERATOR><SIGNAL>continue</SIGNAL>"
        return tuned_model(body)

    tools = SimulatedToolProvider({"ocr": "STOP EXIT OPEN"}, latencies_s={"ocr": 0.05})
    with MockTeacherServer() as mock:
        mock.responder = with_ocr
        agent = Agent(OpenAIModel(mock.base_url, "mmat-tuned"), tools)
        summary = await run_mode(agent, bench, items, "rr", tmp_path / "out", concurrency=2)
        orr = await run_mode(agent, bench, items, "orr", tmp_path / "out", concurrency=2)
    assert summary.ran == 3 and summary.errors == 0
    latency = summary.score["latency"]
    assert latency["operator_total_s"]["ocr"] >= 3 * 0.05
    assert latency["mean_s"] >= 0.05
    # ORR runs every operator up front, once per item
    assert orr.score["latency"]["operator_total_s"]["ocr"] >= 3 * 0.05
    assert summary.score["headline_value"] == 1000.0


def test_vlmevalkit_adapter_answers_through_the_agent(server: MockTeacherServer, tmp_path: Path) -> None:
    from mmat.eval.vlmevalkit import MmatAgentVLM

    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8), "red").save(image)
    vlm = MmatAgentVLM(base_url=server.base_url, model="mmat-tuned", mode="rr", tools=None)
    try:
        assert vlm.use_custom_prompt("MMStar") is False
        reply = vlm.generate(
            [{"type": "image", "value": str(image)}, {"type": "text", "value": "Which? [q3]"}]
        )
        assert reply == "The answer is C."
        assert vlm.last_result.model_calls == 3
    finally:
        vlm.close()


def test_openai_judge_rescores_through_the_cli(
    server: MockTeacherServer, data: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    ANSWERS["[q2]"]["baseline"] = "I would go with either A or B"  # no rule can pick one
    try:
        run_cli(eval_args(server, "MMStar", data["mmstar"], out, "--mode", "baseline"))
    finally:
        ANSWERS["[q2]"]["baseline"] = "A"
    assert score_of(out, "MMStar", "baseline")["headline_value"] == 25.0

    with MockTeacherServer() as judge:
        judge.responder = lambda body: "B" if "either A or B" in request_text(body) else "Z"
        args = [*eval_args(server, "MMStar", data["mmstar"], out, "--mode", "baseline"), "--rescore",
                "--judge-model", "judge-7b", "--judge-base-url", judge.base_url]  # fmt: skip
        run_cli(args)
        run_cli(args)  # the second rescoring reads the judge's reply from the cache
        assert len(judge.requests) == 1
    score = score_of(out, "MMStar", "baseline")
    assert score["headline_value"] == 50.0
    assert score["metrics"]["judge_used"] == 1 and score["judge"].startswith("judge-7b@http://127.0.0.1")
    item_scores = [
        json.loads(x) for x in (out / "MMStar" / "baseline" / "scores.jsonl").read_text().splitlines()
    ]
    judged = [s for s in item_scores if s["method"] == "judge"]
    assert judged == [
        {"index": "2", "extracted": "B", "score": 1.0, "method": "judge", "judge_output": "B", "detail": {}}
    ]
