"""The RR/ORR wire format: exact strings from SPEC §2, tolerance, errors and lossless round-trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmat.errors import WireFormatError
from mmat.schema import ApiBlock, Signal, Step, TurnKind
from mmat.wire import (
    NO_TOOL_TURN,
    REFLECTION_PROMPT_TURN,
    classify_user_turn,
    parse_observation,
    parse_orr_answer,
    parse_orr_user,
    parse_question,
    parse_rr_messages,
    parse_step,
    render_observation,
    render_orr_answer,
    render_orr_user,
    render_question,
    render_rr_messages,
    render_step,
    render_summarize,
)

SPEC_STEPS = [
    "<THOUGHT>I need to read the table.</THOUGHT><OPERATOR>ocr</OPERATOR><SIGNAL>continue</SIGNAL>",
    "<THOUGHT>Find the store.</THOUGHT><OPERATOR>ocr</OPERATOR>\n<SIGNAL>continue</SIGNAL>",
    "<THOUGHT>Who founded it?</THOUGHT><RAG>founder of Acme Corp</RAG><SIGNAL>continue</SIGNAL>",
    "<THOUGHT>Wait, my reasoning could use more math.</THOUGHT><SIGNAL>reflection</SIGNAL>",
    "<THOUGHT>2 x 4.4 = 8.8, so she spent $8.80.</THOUGHT><SIGNAL>end</SIGNAL>",
    "<THOUGHT>Look at people.</THOUGHT><OPERATOR>image_caption, face detection</OPERATOR><SIGNAL>continue</SIGNAL>",
    "<THOUGHT>Both.</THOUGHT><OPERATOR>ocr</OPERATOR><RAG>q</RAG><SIGNAL>continue</SIGNAL>",
]


@pytest.mark.parametrize("text", SPEC_STEPS)
def test_spec_steps_round_trip(text: str) -> None:
    assert render_step(parse_step(text)) == text


def test_step_fields_are_parsed() -> None:
    step = parse_step(SPEC_STEPS[5])
    assert step.thought == "Look at people."
    assert step.operators == ["image_caption", "face_detection"]
    assert step.rag_query is None
    assert step.signal is Signal.CONTINUE
    assert step.format is None  # canonical spelling needs no layout record


def test_rag_step() -> None:
    step = parse_step(SPEC_STEPS[2])
    assert step.rag_query == "founder of Acme Corp" and step.operators == []


def test_canonical_render_of_a_new_step() -> None:
    step = Step(
        thought="Read it.", operators=["ocr", "face_detection"], rag_query="x", signal=Signal.CONTINUE
    )
    assert render_step(step) == (
        "<THOUGHT>Read it.</THOUGHT><OPERATOR>ocr, face detection</OPERATOR><RAG>x</RAG><SIGNAL>continue</SIGNAL>"
    )


@pytest.mark.parametrize(
    ("text", "operators"),
    [
        (
            "<THOUGHT>a</THOUGHT>\n\n<OPERATOR> OCR ,label_bbox;Face Detection </OPERATOR>\n<SIGNAL>continue</SIGNAL>",
            ["ocr", "label_bbox", "face_detection"],
        ),
        ("<THOUGHT>a</THOUGHT><OPERATOR>None</OPERATOR><SIGNAL>continue</SIGNAL>", []),
        ("<THOUGHT>a</THOUGHT><OPERATOR></OPERATOR><SIGNAL>continue</SIGNAL>", []),
        (
            "<THOUGHT>a</THOUGHT><OPERATOR>face_recognition</OPERATOR><SIGNAL>continue</SIGNAL>",
            ["face_recognition"],
        ),
        ("  <THOUGHT>a</THOUGHT><RAG>r</RAG>\n<OPERATOR>ocr</OPERATOR> <SIGNAL>end</SIGNAL>\n", ["ocr"]),
        ("<thought>a</thought><operator>ocr</operator><signal>continue</signal>", ["ocr"]),
    ],
)
def test_tolerant_parsing_keeps_the_bytes(text: str, operators: list[str]) -> None:
    step = parse_step(text)
    assert step.operators == operators
    if text.startswith("<THOUGHT>") or text.startswith("  "):
        assert render_step(step) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("I think it is 5", "must start with <THOUGHT>"),
        ("<THOUGHT>a<SIGNAL>continue</SIGNAL>", "closing </THOUGHT>"),
        ("<THOUGHT>a</THOUGHT><OPERATOR>ocr</OPERATOR>", "must end with <SIGNAL>"),
        ("<THOUGHT>a</THOUGHT><SIGNAL>stop</SIGNAL>", "unknown signal 'stop'"),
        ("<THOUGHT>a</THOUGHT>so<SIGNAL>end</SIGNAL>", "allows only <OPERATOR>, <RAG>"),
        ("<THOUGHT>a</THOUGHT><RAG>x</RAG><RAG>y</RAG><SIGNAL>end</SIGNAL>", "at most one <RAG>"),
    ],
)
def test_malformed_steps_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(WireFormatError, match=message):
        parse_step(text)


thought_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=80) | st.sampled_from(
    [
        "a < b > c",
        "</THOUGHT>",
        "x</THOUGHT><SIGNAL>end</SIGNAL>",
        "line1\nline2",
        "价格是 8.80 元 ✓",
        "<OPERATOR>ocr",
    ]
)
operator_names = st.lists(
    st.sampled_from(["ocr", "image_caption", "label_bbox", "face_detection", "my_tool"]), max_size=3
)
rag_queries = st.none() | st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="<"), max_size=30
)
whitespace = st.sampled_from(["", "\n", " ", "\n\n"])


@given(thought=thought_text, operators=operator_names, rag=rag_queries, signal=st.sampled_from(list(Signal)))
def test_render_parse_render_is_identity(
    thought: str, operators: list[str], rag: str | None, signal: Signal
) -> None:
    text = render_step(Step(thought=thought, operators=operators, rag_query=rag, signal=signal))
    parsed = parse_step(text)
    assert (parsed.thought, parsed.operators, parsed.rag_query, parsed.signal) == (
        thought,
        operators,
        rag,
        signal,
    )
    assert render_step(parsed) == text


@given(thought=thought_text, gap1=whitespace, gap2=whitespace, trailing=whitespace, ops=operator_names)
def test_parse_render_is_identity_on_spaced_text(
    thought: str, gap1: str, gap2: str, trailing: str, ops: list[str]
) -> None:
    block = f"<OPERATOR>{','.join(o.replace('_', ' ') for o in ops)}</OPERATOR>{gap2}" if ops else ""
    text = f"<THOUGHT>{thought}</THOUGHT>{gap1}{block}<SIGNAL>continue</SIGNAL>{trailing}"
    assert render_step(parse_step(text)) == text


# ---------------------------------------------------------------------------------------------- user turns


def test_observation_turn_exact_text() -> None:
    assert render_observation([("ocr", "hummus | $4 per pound")]) == (
        "Here are ocr results from the previous step: hummus | $4 per pound Please continue your reasoning."
    )


def test_observation_with_the_information_prefix_is_accepted() -> None:
    text = "Here are ocr results from the previous step:\n-ocr information: SALE 50%\nPlease continue your reasoning."
    obs = parse_observation(text)
    assert obs.names == ["ocr"] and obs.texts == ["SALE 50%"] and obs.labelled
    assert render_observation(obs) == text


def test_several_results_are_labelled() -> None:
    text = render_observation([("image_caption", "A table."), ("face_detection", "There is no face.")])
    assert text == (
        "Here are image_caption, face detection results from the previous step:\n"
        "-image_caption information: A table.\n-face detection information: There is no face.\n"
        "Please continue your reasoning."
    )
    obs = parse_observation(text)
    assert obs.texts == ["A table.", "There is no face."]
    assert render_observation(obs) == text


@given(texts=st.lists(st.text(max_size=40), min_size=1, max_size=3), labelled=st.booleans())
def test_observation_round_trip(texts: list[str], labelled: bool) -> None:
    names = ["ocr", "image_caption", "rag"][: len(texts)]
    text = render_observation(list(zip(names, texts, strict=True)), labelled=labelled)
    assert render_observation(parse_observation(text)) == text
    assert classify_user_turn(text) is TurnKind.OBSERVATION


def test_fixed_user_turns_are_classified() -> None:
    assert classify_user_turn(NO_TOOL_TURN) is TurnKind.NO_TOOL
    assert classify_user_turn(REFLECTION_PROMPT_TURN) is TurnKind.REFLECTION_PROMPT
    assert classify_user_turn(render_summarize("How much?")) is TurnKind.SUMMARIZE
    assert classify_user_turn(render_question("How much? Give a short answer.")) is TurnKind.QUESTION
    with pytest.raises(WireFormatError, match="unknown RR user turn"):
        classify_user_turn("hello there")


def test_question_turn_round_trip_with_placeholders() -> None:
    text = render_question("What is shown?", image_placeholders=2)
    assert text == "<image>\n<image>\nWhat is shown? Please start your reasoning."
    assert parse_question(text) == ("What is shown?", 2)


# ---------------------------------------------------------------------------------------------- ORR


def test_orr_user_and_answer_exact_text() -> None:
    blocks = [ApiBlock(tool="image_caption", text="A price list."), ApiBlock(tool="ocr", text="hummus | $4")]
    user = render_orr_user("How much? Answer with a number.", blocks)
    assert user == (
        "How much? Answer with a number.\nUse the following API outputs to help answer the question:\n"
        "<|begin_api_invoke|>image_caption<|end_api_invoke|><|begin_result_of_api|>A price list.<|end_result_of_api|>\n"
        "<|begin_api_invoke|>ocr<|end_api_invoke|><|begin_result_of_api|>hummus | $4<|end_result_of_api|>"
    )
    assert parse_orr_user(user) == ("How much? Answer with a number.", blocks)
    answer = render_orr_answer("2 x 4.4 = 8.8.", "8.80")
    assert answer == "<THOUGHT>2 x 4.4 = 8.8.</THOUGHT><ANSWER>The answer is: 8.80</ANSWER>"
    assert render_orr_answer(parse_orr_answer(answer)) == answer


@pytest.mark.parametrize(
    "text",
    ["<THOUGHT>t</THOUGHT>\n<ANSWER>35</ANSWER>", "<THOUGHT>a<b</THOUGHT><ANSWER>The answer is:C</ANSWER>\n"],
)
def test_orr_answer_tolerance(text: str) -> None:
    parsed = parse_orr_answer(text)
    assert parsed.answer in ("35", "C")
    assert render_orr_answer(parsed) == text


def test_orr_answer_without_answer_tag() -> None:
    with pytest.raises(WireFormatError, match="needs <ANSWER>"):
        parse_orr_answer("<THOUGHT>x</THOUGHT> 35")


# ---------------------------------------------------------------------------------------------- trajectories

RR_CONVERSATION = [
    ("system", "SYSTEM"),
    ("user", "<image>\nHow much did she spend? Answer with a number. Please start your reasoning."),
    ("assistant", SPEC_STEPS[0]),
    (
        "user",
        "Here are ocr results from the previous step: guacamole | $2 per pound Please continue your reasoning.",
    ),
    ("assistant", "<THOUGHT>2 x 4.4 = 8.80.</THOUGHT><SIGNAL>continue</SIGNAL>"),
    ("user", NO_TOOL_TURN),
    ("assistant", "<THOUGHT>Wait, check the math.</THOUGHT><SIGNAL>reflection</SIGNAL>"),
    ("user", REFLECTION_PROMPT_TURN),
    ("assistant", "<THOUGHT>2 x 4.4 = 8.8, i.e. $8.80.</THOUGHT><SIGNAL>end</SIGNAL>"),
    ("user", render_summarize("How much did she spend?")),
    ("assistant", "8.80"),
    ("user", "Is it cheap? Answer yes or no. Please start your reasoning."),
    ("assistant", "<THOUGHT>Yes.</THOUGHT><SIGNAL>end</SIGNAL>"),
    ("user", render_summarize("Is it cheap?")),
    ("assistant", "yes"),
]


def test_rr_conversation_round_trip_and_segments() -> None:
    trajectory = parse_rr_messages(RR_CONVERSATION)
    assert trajectory.system == "SYSTEM"
    assert [len(s.turns) for s in trajectory.segments] == [10, 4]
    kinds = [t.kind for t in trajectory.segments[0].turns]
    assert kinds[:3] == [TurnKind.QUESTION, TurnKind.STEP, TurnKind.OBSERVATION]
    assert kinds[-2:] == [TurnKind.SUMMARIZE, TurnKind.ANSWER]
    assert trajectory.segments[0].turns[5].step is not None
    assert trajectory.segments[0].turns[5].step.signal is Signal.REFLECTION
    assert render_rr_messages(trajectory) == RR_CONVERSATION


def test_rr_conversation_errors_name_the_message() -> None:
    broken = [*RR_CONVERSATION[:2], ("assistant", "just text")]
    with pytest.raises(
        WireFormatError, match=r"message 2 \(assistant\): an RR step must start with <THOUGHT>"
    ):
        parse_rr_messages(broken)
    with pytest.raises(WireFormatError, match="must open with the question turn"):
        parse_rr_messages([("user", NO_TOOL_TURN)])


def test_signal_case_and_padding_are_tolerated() -> None:
    assert parse_step("<THOUGHT>a</THOUGHT><SIGNAL> END </SIGNAL>").signal is Signal.END
    assert parse_orr_answer("<thought>a</thought><answer>C</answer>").answer == "C"
