"""ORR and baseline modes, and the ORR prompt shared with the Integration stage."""

from __future__ import annotations

import pytest

from mmat.agent.models import OpenAIModel
from mmat.agent.runtime import Agent, UserOperator, orr_user_text
from mmat.agent.simulated import SimulatedToolProvider
from mmat.errors import ConfigError
from mmat.llm.mock_server import MockTeacherServer
from mmat.schema import ApiBlock, ImageRef, Segment, Step, ToolResult
from mmat.stages.integration import to_orr_segment
from mmat.wire import (
    ORR_SYSTEM_PROMPT,
    answer_turn,
    observation_turn,
    question_turn,
    render_orr_user,
    step_turn,
    summarize_turn,
)

QUESTION = "How much did Veronica make after taxes? Answer the question using a single word or phrase."
OUTPUTS = {
    "image_caption": "A pay stub for Veronica O'Neil listing earnings and taxes.",
    "label_bbox": "{'table': [[0.02, 0.05, 0.98, 0.95]]}",
    "ocr": "Total earnings $3,900.00\nTotal taxes ?",
    "face_detection": "There is no face in the image.",
}
LATENCIES = {"image_caption": 0.5, "label_bbox": 0.3, "ocr": 0.2, "face_detection": 0.05}


def _trajectory_segment() -> Segment:
    """An RR segment whose operators produced OUTPUTS (as the Rationale stage records them)."""

    def observed(names: list[str]):  # type: ignore[no-untyped-def]
        turn = observation_turn([(n, OUTPUTS[n]) for n in names])
        turn.results = [ToolResult(tool=n, text=OUTPUTS[n]) for n in names]
        return turn

    return Segment(
        qa_id="0",
        turns=[
            question_turn(QUESTION),
            step_turn(Step(thought="Look.", operators=["image_caption", "label_bbox"])),
            observed(["image_caption", "label_bbox"]),
            step_turn(Step(thought="Read.", operators=["ocr", "face_detection"], rag_query="net pay")),
            observed(["ocr", "face_detection"]),
            step_turn(Step(thought="Done.", signal="end")),  # type: ignore[arg-type]
            summarize_turn(QUESTION),
            answer_turn("2,825.35"),
        ],
    )


async def test_orr_runs_every_operator_in_parallel_then_one_call(
    mock_server: MockTeacherServer, table_image: ImageRef
) -> None:
    tools = SimulatedToolProvider(OUTPUTS, latencies_s=LATENCIES)
    mock_server.script(["<THOUGHT>3,900.00 - 1,074.65</THOUGHT><ANSWER>The answer is: 2,825.35</ANSWER>"])
    result = await Agent(OpenAIModel(mock_server.base_url, "m"), tools).answer(
        [table_image], QUESTION, mode="orr"
    )
    assert result.ok, result.error
    assert result.answer == "2,825.35" and result.model_calls == 1
    (wall,) = result.step_tool_wall_s
    assert 0.5 <= wall < 0.7, f"four operators took {wall:.2f}s; concurrent means ~the slowest (0.5s)"
    (request,) = mock_server.requests
    messages = request.body["messages"]
    assert messages[0] == {"role": "system", "content": ORR_SYSTEM_PROMPT}
    user_text = messages[1]["content"][-1]["text"]
    assert user_text.startswith(QUESTION + "\nUse the following API outputs to help answer the question:\n")
    assert user_text.endswith(
        "<|begin_api_invoke|>face_detection<|end_api_invoke|><|begin_result_of_api|>"
        "There is no face in the image.<|end_result_of_api|>"
    )
    assert "stop" not in request.body
    assert [t.tool for t in result.operator_timings] == list(OUTPUTS)


async def test_orr_prompt_is_the_integration_stage_input(
    mock_server: MockTeacherServer, table_image: ImageRef
) -> None:
    """The agent's ORR user turn and the Integration stage's come from the same code."""
    integration_user = to_orr_segment(_trajectory_segment(), QUESTION).user
    outputs = [(name, ToolResult(tool=name, text=text)) for name, text in OUTPUTS.items()]
    assert orr_user_text(QUESTION, outputs) == integration_user
    mock_server.script(["<THOUGHT>x</THOUGHT><ANSWER>The answer is: 2,825.35</ANSWER>"])
    await Agent(OpenAIModel(mock_server.base_url, "m"), SimulatedToolProvider(OUTPUTS)).answer(
        [table_image], QUESTION, mode="orr"
    )
    sent_user = mock_server.requests[0].body["messages"][1]["content"][-1]["text"]
    assert sent_user == integration_user


async def test_orr_leaves_out_failed_operators_and_keeps_user_ones(
    mock_server: MockTeacherServer, table_image: ImageRef
) -> None:
    tools = SimulatedToolProvider({"ocr": OUTPUTS["ocr"]})
    tools.descriptions["label_bbox"] = "detection"  # offered, but it fails (no output configured)
    agent = Agent(
        OpenAIModel(mock_server.base_url, "m"),
        tools,
        extra_operators=[UserOperator("face recognition", "names people", lambda images: "Veronica")],
    )
    mock_server.script(["<THOUGHT>x</THOUGHT><ANSWER>2,825.35</ANSWER>"])
    result = await agent.answer([table_image], QUESTION, mode="orr")
    assert result.ok and result.answer == "2,825.35"
    user_text = mock_server.requests[0].body["messages"][1]["content"][-1]["text"]
    assert user_text == render_orr_user(
        QUESTION,
        [ApiBlock(tool="ocr", text=OUTPUTS["ocr"]), ApiBlock(tool="face_recognition", text="Veronica")],
    )
    timings = [(t.tool, t.error) for t in result.operator_timings]
    assert timings == [("ocr", None), ("label_bbox", "not_enabled"), ("face_recognition", None)]


async def test_orr_unparsable_answer_is_a_failure_record(
    mock_server: MockTeacherServer, table_image: ImageRef
) -> None:
    mock_server.script(["I think it is 2,825.35"])
    result = await Agent(OpenAIModel(mock_server.base_url, "m")).answer([table_image], QUESTION, mode="orr")
    assert result.error_kind == "malformed_answer" and result.answer == ""
    assert result.error is not None and "needs <ANSWER>The answer is: ...</ANSWER>" in result.error
    assert result.raw_output == "I think it is 2,825.35"
    # without a tool layer ORR is the bare question
    assert mock_server.requests[0].body["messages"][1]["content"][-1]["text"] == QUESTION


async def test_baseline_sends_the_plain_question(
    mock_server: MockTeacherServer, table_image: ImageRef
) -> None:
    mock_server.script(["  $2,825.35 \n"])
    tools = SimulatedToolProvider(OUTPUTS)
    result = await Agent(OpenAIModel(mock_server.base_url, "m"), tools).answer(
        [table_image], QUESTION, mode="baseline"
    )
    assert result.ok and result.answer == "$2,825.35"
    (request,) = mock_server.requests
    assert len(request.body["messages"]) == 1
    content = request.body["messages"][0]["content"]
    assert [p["type"] for p in content] == ["image_url", "text"] and content[1]["text"] == QUESTION
    assert tools.calls == [] and result.operator_timings == []
    assert result.messages == [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": "  $2,825.35 \n"},
    ]


async def test_unknown_mode_and_missing_image(mock_server: MockTeacherServer, table_image: ImageRef) -> None:
    agent = Agent(OpenAIModel(mock_server.base_url, "m"))
    with pytest.raises(ConfigError, match="unknown agent mode 'fast'; valid modes: baseline, orr, rr"):
        await agent.answer([table_image], QUESTION, mode="fast")  # type: ignore[arg-type]
    missing = ImageRef(path="nope.png", root=table_image.root)
    with pytest.raises(Exception, match="does not exist"):
        await agent.answer([missing], QUESTION)
    assert mock_server.request_count == 0


async def test_every_mode_against_the_mock_servers_default_responder(
    mock_server: MockTeacherServer, table_image: ImageRef
) -> None:
    """The mock's rule-based replies (no script) speak the RR and ORR formats: a plumbing smoke test."""
    agent = Agent(OpenAIModel(mock_server.base_url, "m"))
    rr = await agent.answer([table_image], "How much?", mode="rr")
    assert rr.ok and rr.answer == "mock answer" and len(rr.steps) == 3 and rr.steps[-1].signal == "end"
    orr = await agent.answer([table_image], "How much?", mode="orr")
    assert orr.ok and orr.answer == "mock answer"
    baseline = await agent.answer([table_image], "How much?", mode="baseline")
    assert baseline.ok and baseline.answer.endswith("How much?")
