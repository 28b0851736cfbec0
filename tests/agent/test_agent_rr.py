"""The RR loop against the mock server scripted as a tuned model, with a simulated tool layer."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Sequence

import pytest

from mmat.agent.models import OpenAIModel
from mmat.agent.runtime import CORRECTIVE_TURN, SIGNAL_STOP, Agent, UserOperator, close_signal
from mmat.agent.simulated import SimulatedToolProvider
from mmat.errors import ConfigError
from mmat.llm.mock_server import Fault, MockTeacherServer
from mmat.schema import ImageRef, Signal
from mmat.wire import NO_TOOL_TURN, REFLECTION_PROMPT_TURN, render_observation, render_summarize

QUESTION = "How much did Veronica make after taxes? Answer the question using a single word or phrase."
TABLE_OCR = "Total earnings $3,900.00\nTotal taxes ?\nFederal income tax $504.30"


def model_for(server: MockTeacherServer, **kwargs: object) -> OpenAIModel:
    return OpenAIModel(server.base_url, "mmat-tuned", **kwargs)  # type: ignore[arg-type]


def sent(server: MockTeacherServer) -> list[list[dict[str, object]]]:
    return [r.body["messages"] for r in server.requests]


def texts(messages: Sequence[dict[str, object]]) -> list[str]:
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, list):
            out.append("".join(p["text"] for p in content if p["type"] == "text"))
        else:
            out.append(str(content))
    return out


async def test_single_tool_round_trip(mock_server: MockTeacherServer, table_image: ImageRef) -> None:
    tools = SimulatedToolProvider({"ocr": TABLE_OCR})
    mock_server.script(
        [
            "<THOUGHT>Read the pay stub.</THOUGHT><OPERATOR>ocr</OPERATOR><SIGNAL>continue</SIGNAL>",
            "<THOUGHT>3,900.00 - 1,074.65 = 2,825.35</THOUGHT><SIGNAL>end</SIGNAL>",
            " 2,825.35\n",
        ]
    )
    result = await Agent(model_for(mock_server), tools).answer([table_image], QUESTION)

    assert result.ok, result.error
    assert result.answer == "2,825.35"
    assert [s.operators for s in result.steps] == [["ocr"], []]
    assert [s.signal for s in result.steps] == [Signal.CONTINUE, Signal.END]
    # the server dropped the stop string; the runtime put it back before storing the turn
    assert result.messages[2]["content"].endswith(SIGNAL_STOP)
    assert result.messages[3]["content"] == (
        "Here are ocr results from the previous step: " + TABLE_OCR + " Please continue your reasoning."
    )
    assert result.messages[3]["content"] == render_observation([("ocr", TABLE_OCR)])
    assert result.messages[5]["content"] == render_summarize(QUESTION)
    assert result.messages[1]["content"] == QUESTION + " Please start your reasoning."
    bodies = [r.body for r in mock_server.requests]
    assert [b.get("stop") for b in bodies] == [[SIGNAL_STOP], [SIGNAL_STOP], None]
    assert result.model_calls == 3 and len(result.turn_latencies_s) == 3
    assert [t.tool for t in result.operator_timings] == ["ocr"]
    assert result.tool_results[0].text == TABLE_OCR
    assert result.prompt_tokens > 0 and result.completion_tokens > 0
    assert result.latency_s >= sum(result.turn_latencies_s)


async def test_history_is_resent_byte_identical_and_images_encoded_once(
    mock_server: MockTeacherServer, table_image: ImageRef
) -> None:
    tools = SimulatedToolProvider({"ocr": TABLE_OCR})
    mock_server.script(
        [
            "<THOUGHT>Read it.</THOUGHT><OPERATOR>ocr</OPERATOR>\n<SIGNAL>continue</SIGNAL>",
            "<THOUGHT>Subtract.</THOUGHT><SIGNAL>continue</SIGNAL>",
            "<THOUGHT>Done.</THOUGHT><SIGNAL>end</SIGNAL>",
            "2,825.35",
        ]
    )
    model = model_for(mock_server)
    result = await Agent(model, tools).answer([table_image], QUESTION)
    assert result.ok, result.error
    requests = sent(mock_server)
    assert len(requests) == 4
    for before, after in itertools.pairwise(requests):
        prefix = after[: len(before)]
        assert json.dumps(prefix, ensure_ascii=False) == json.dumps(before, ensure_ascii=False)
    image_part = requests[0][1]["content"][0]  # type: ignore[index]
    assert image_part["type"] == "image_url"
    assert image_part["image_url"]["url"].startswith("data:image/png;base64,iVBOR")
    assert model.encoder.encodes == 1
    # a newline before <SIGNAL> survives byte for byte
    assert (
        texts(requests[1])[2]
        == "<THOUGHT>Read it.</THOUGHT><OPERATOR>ocr</OPERATOR>\n<SIGNAL>continue</SIGNAL>"
    )
    assert texts(requests[2])[4] == "<THOUGHT>Subtract.</THOUGHT><SIGNAL>continue</SIGNAL>"
    assert texts(requests[2])[5] == NO_TOOL_TURN


async def test_two_tools_in_one_step_run_concurrently(
    mock_server: MockTeacherServer, table_image: ImageRef
) -> None:
    tools = SimulatedToolProvider(
        {"ocr": TABLE_OCR, "label_bbox": "{'table': [[0.02, 0.05, 0.98, 0.95]]}"},
        latencies_s={"ocr": 0.3, "label_bbox": 0.6},
    )
    mock_server.script(
        [
            "<THOUGHT>Look.</THOUGHT><OPERATOR>ocr, label_bbox</OPERATOR><SIGNAL>continue</SIGNAL>",
            "<THOUGHT>Done.</THOUGHT><SIGNAL>end</SIGNAL>",
            "2,825.35",
        ]
    )
    result = await Agent(model_for(mock_server), tools).answer([table_image], QUESTION)
    assert result.ok, result.error
    (wall,) = result.step_tool_wall_s
    assert 0.58 <= wall < 0.85, (
        f"two tools took {wall:.2f}s: ~the slower one (0.6s) when concurrent, 0.9s in series"
    )
    (ocr_call, bbox_call) = sorted(tools.calls)[::-1]
    assert ocr_call[1] < bbox_call[2] and bbox_call[1] < ocr_call[2], "the two calls must overlap"
    assert {t.tool: round(t.latency_s, 1) for t in result.operator_timings} == {"ocr": 0.3, "label_bbox": 0.6}
    assert result.messages[3]["content"] == (
        "Here are ocr, label_bbox results from the previous step:\n"
        f"-ocr information: {TABLE_OCR}\n"
        "-label_bbox information: {'table': [[0.02, 0.05, 0.98, 0.95]]}\n"
        "Please continue your reasoning."
    )


async def test_rag_query_runs_with_top_k_and_beside_operators(
    mock_server: MockTeacherServer, table_image: ImageRef
) -> None:
    tools = SimulatedToolProvider(
        {"ocr": TABLE_OCR},
        latencies_s={"ocr": 0.2, "rag": 0.3},
        search_text="1. Pay after taxes is gross pay minus all taxes.",
    )
    mock_server.script(
        [
            "<THOUGHT>What is net pay?</THOUGHT><RAG>net pay definition</RAG><SIGNAL>continue</SIGNAL>",
            "<THOUGHT>Read and check.</THOUGHT><OPERATOR>ocr</OPERATOR><RAG>state income tax</RAG><SIGNAL>continue</SIGNAL>",
            "<THOUGHT>Done.</THOUGHT><SIGNAL>end</SIGNAL>",
            "2,825.35",
        ]
    )
    result = await Agent(model_for(mock_server), tools).answer([table_image], QUESTION)
    assert result.ok, result.error
    assert tools.queries == [("net pay definition", 3), ("state income tax", 3)]
    assert result.messages[3]["content"] == (
        "Here are rag results from the previous step: 1. Pay after taxes is gross pay minus all taxes. "
        "Please continue your reasoning."
    )
    assert result.messages[5]["content"].startswith("Here are ocr, rag results from the previous step:\n-ocr")
    assert result.step_tool_wall_s[1] < 0.45  # ocr (0.2s) and RAG (0.3s) together
    assert [t.tool for t in result.operator_timings] == ["rag", "ocr", "rag"]


async def test_reflection_gets_the_reflection_turn(
    mock_server: MockTeacherServer, table_image: ImageRef
) -> None:
    tools = SimulatedToolProvider({"ocr": TABLE_OCR})
    mock_server.script(
        [
            "<THOUGHT>Read.</THOUGHT><OPERATOR>ocr</OPERATOR><SIGNAL>continue</SIGNAL>",
            "<THOUGHT>Wait, my reasoning could use more math.</THOUGHT><SIGNAL>reflection</SIGNAL>",
            "<THOUGHT>504.30 + 272.00 + 298.35 = 1,074.65; 3,900.00 - 1,074.65 = 2,825.35</THOUGHT><SIGNAL>end</SIGNAL>",
            "2,825.35",
        ]
    )
    result = await Agent(model_for(mock_server), tools).answer([table_image], QUESTION)
    assert result.ok, result.error
    assert [s.signal for s in result.steps] == [Signal.CONTINUE, Signal.REFLECTION, Signal.END]
    assert result.messages[5]["content"] == REFLECTION_PROMPT_TURN
    assert len(tools.calls) == 1


async def test_malformed_step_gets_one_corrective_reask(
    mock_server: MockTeacherServer, table_image: ImageRef
) -> None:
    mock_server.script(
        [
            "The answer is 2,825.35.",
            "<THOUGHT>Compute.</THOUGHT><SIGNAL>end</SIGNAL>",
            "2,825.35",
        ]
    )
    result = await Agent(model_for(mock_server)).answer([table_image], QUESTION)
    assert result.ok, result.error
    assert result.reasks == 1 and result.answer == "2,825.35"
    assert result.messages[3]["content"] == CORRECTIVE_TURN.format(
        problem="an RR step must start with <THOUGHT>"
    )
    assert len(result.steps) == 1


async def test_malformed_twice_ends_with_a_failure_record(
    mock_server: MockTeacherServer, table_image: ImageRef
) -> None:
    mock_server.script(["I do not know.", "<THOUGHT>Still no signal.</THOUGHT>", "never sent"])
    result = await Agent(model_for(mock_server)).answer([table_image], QUESTION)
    assert not result.ok and result.answer == ""
    assert result.error_kind == "malformed_step"
    assert result.error is not None
    assert "step 1 is malformed after one corrective re-ask" in result.error
    assert "<SIGNAL>continue|reflection|end</SIGNAL>" in result.error
    assert result.model_calls == 2 and mock_server.pending == 1
    assert result.raw_output == "<THOUGHT>Still no signal.</THOUGHT>"


async def test_unknown_operator_gets_an_observation(
    mock_server: MockTeacherServer, table_image: ImageRef
) -> None:
    tools = SimulatedToolProvider({"ocr": TABLE_OCR})
    mock_server.script(
        [
            "<THOUGHT>Estimate depth.</THOUGHT><OPERATOR>depth estimation</OPERATOR><SIGNAL>continue</SIGNAL>",
            "<THOUGHT>Read instead.</THOUGHT><OPERATOR>ocr</OPERATOR><SIGNAL>continue</SIGNAL>",
            "<THOUGHT>Done.</THOUGHT><SIGNAL>end</SIGNAL>",
            "2,825.35",
        ]
    )
    result = await Agent(model_for(mock_server), tools).answer([table_image], QUESTION)
    assert result.ok, result.error
    assert result.messages[3]["content"] == (
        "Here are depth_estimation results from the previous step: depth_estimation is not an available "
        "operator. Available operators: ocr. Please continue your reasoning."
    )
    assert result.operator_timings[0].error == "unknown_operator"
    assert [c[0] for c in tools.calls] == ["ocr"]


async def test_user_declared_operator_is_offered_and_called(
    mock_server: MockTeacherServer, table_image: ImageRef
) -> None:
    seen: list[list[ImageRef]] = []

    def recognise(images: Sequence[ImageRef]) -> str:
        seen.append(list(images))
        return "The face belongs to Veronica O'Neil."

    async def broken(images: Sequence[ImageRef]) -> str:
        await asyncio.sleep(0)
        raise RuntimeError("model weights missing")

    agent = Agent(
        model_for(mock_server),
        SimulatedToolProvider({"ocr": TABLE_OCR}),
        extra_operators=[
            UserOperator("face recognition", "names the people whose faces are visible", recognise),
            UserOperator("signature_check", "checks whether the stub is signed", broken),
        ],
    )
    mock_server.script(
        [
            "<THOUGHT>Who is it?</THOUGHT><OPERATOR>face recognition, signature_check</OPERATOR><SIGNAL>continue</SIGNAL>",
            "<THOUGHT>Done.</THOUGHT><SIGNAL>end</SIGNAL>",
            "Veronica",
        ]
    )
    result = await agent.answer([table_image], "Whose pay stub is this?")
    assert result.ok, result.error
    system = result.messages[0]["content"]
    assert "- face_recognition: names the people whose faces are visible" in system
    assert "- signature_check: checks whether the stub is signed" in system
    assert "- ocr:" in system
    assert seen == [[table_image]]
    assert result.messages[3]["content"] == (
        "Here are face_recognition, signature_check results from the previous step:\n"
        "-face_recognition information: The face belongs to Veronica O'Neil.\n"
        "-signature_check information: the signature_check operator failed: model weights missing\n"
        "Please continue your reasoning."
    )
    assert [t.error for t in result.operator_timings] == [None, "RuntimeError: model weights missing"]


def test_user_operator_validation() -> None:
    with pytest.raises(ConfigError, match="needs a one-line description"):
        UserOperator("x", " ", lambda images: "")
    with pytest.raises(ConfigError, match="'rag' is the search tag"):
        UserOperator("RAG", "search", lambda images: "")
    with pytest.raises(ConfigError, match="already provided by the tool layer"):
        Agent(
            model=None,  # type: ignore[arg-type]
            tools=SimulatedToolProvider({"ocr": "x"}),
            extra_operators=[UserOperator("OCR", "my ocr", lambda images: "")],
        )
    with pytest.raises(ConfigError, match="max_steps must be at least 1"):
        Agent(model=None, max_steps=0)  # type: ignore[arg-type]


async def test_step_limit(mock_server: MockTeacherServer, table_image: ImageRef) -> None:
    mock_server.script(["<THOUGHT>Hmm.</THOUGHT><SIGNAL>continue</SIGNAL>"] * 3)
    result = await Agent(model_for(mock_server), max_steps=2).answer([table_image], QUESTION)
    assert result.error_kind == "step_limit" and result.answer == ""
    assert result.error is not None and "took 2 steps without <SIGNAL>end</SIGNAL>" in result.error
    assert result.model_calls == 2 and len(result.steps) == 2
    assert result.messages[-1]["content"] == NO_TOOL_TURN


async def test_time_limit_stops_a_slow_tool(mock_server: MockTeacherServer, table_image: ImageRef) -> None:
    tools = SimulatedToolProvider({"image_caption": "a pay stub"}, latencies_s={"image_caption": 5.0})
    mock_server.script(
        ["<THOUGHT>Look.</THOUGHT><OPERATOR>image_caption</OPERATOR><SIGNAL>continue</SIGNAL>"]
    )
    result = await Agent(model_for(mock_server), tools, time_limit_s=0.4).answer([table_image], QUESTION)
    assert result.error_kind == "time_limit"
    assert result.error is not None and "time limit of 0.4s reached after 1 model calls" in result.error
    assert result.latency_s < 1.0


async def test_model_failure_is_a_record_not_an_exception(
    mock_server: MockTeacherServer, table_image: ImageRef
) -> None:
    mock_server.script([Fault("500"), Fault("500")])
    result = await Agent(model_for(mock_server, max_retries=1)).answer([table_image], QUESTION)
    assert result.error_kind == "model_error"
    assert result.error is not None and "answered 500" in result.error
    assert mock_server.request_count == 2


async def test_rate_limit_is_retried(mock_server: MockTeacherServer, table_image: ImageRef) -> None:
    mock_server.script([Fault("429", retry_after=0.05), "35"])
    result = await Agent(model_for(mock_server)).answer([table_image], "How many?", mode="baseline")
    assert result.ok and result.answer == "35"


def test_close_signal_only_when_cut() -> None:
    assert close_signal("<THOUGHT>a</THOUGHT><SIGNAL>end") == "<THOUGHT>a</THOUGHT><SIGNAL>end</SIGNAL>"
    assert (
        close_signal("<THOUGHT>a</THOUGHT><SIGNAL>end</SIGNAL>") == "<THOUGHT>a</THOUGHT><SIGNAL>end</SIGNAL>"
    )
    assert close_signal("no tags at all") == "no tags at all"


@pytest.mark.slow
async def test_real_tool_runner_reads_the_table_with_rapidocr(
    mock_server: MockTeacherServer, table_image: ImageRef
) -> None:
    """The live tool layer: ToolRunner with RapidOCR on a real TabMWP table."""
    from mmat.config import RunConfig
    from mmat.tools.runner import ToolRunner

    config = RunConfig().with_overrides({"tools.enabled": ["ocr"]})
    mock_server.script(
        [
            "<THOUGHT>Read the pay stub.</THOUGHT><OPERATOR>ocr</OPERATOR><SIGNAL>continue</SIGNAL>",
            "<THOUGHT>3,900.00 - 1,074.65 = 2,825.35</THOUGHT><SIGNAL>end</SIGNAL>",
            "2,825.35",
        ]
    )
    async with ToolRunner(config) as runner:
        if "ocr" not in runner.available():
            pytest.fail(f"RapidOCR must be installed for this test: {runner.unavailable()}")
        result = await Agent(model_for(mock_server), runner).answer([table_image], QUESTION)
    assert result.ok, result.error
    observation = result.messages[3]["content"]
    assert observation.startswith("Here are ocr results from the previous step: ")
    assert observation.endswith(" Please continue your reasoning.")
    for cell in ("Total earnings", "$3,900.00", "$504.30", "$272.00", "$298.35"):
        assert cell in observation
    assert result.operator_timings[0].tool == "ocr" and result.operator_timings[0].error is None
