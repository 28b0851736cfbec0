"""The OpenAI-compatible client against the real mock server: replies, faults, images, usage, keys."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from mmat.errors import ConfigError, TeacherError
from mmat.llm.base import ChatMessage, DecodingParams, ImagePart, TextPart
from mmat.llm.mock_server import Fault, MockTeacherServer
from mmat.llm.openai_client import OpenAITeacher
from mmat.schema import ImageRef

USER = [ChatMessage(role="user", content="What is in the picture?")]


@pytest.fixture(scope="module")
def server():
    with MockTeacherServer(log_images=True) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh(server):
    server.reset()


async def test_reply_usage_cost_and_model_echo(server) -> None:
    server.script(["a cat on a mat"])
    teacher = OpenAITeacher(server.base_url, "gpt-mock", prices={"input": 2.0, "output": 10.0})
    completion = await teacher.complete(USER, DecodingParams(max_tokens=20))
    await teacher.aclose()
    assert completion.text == "a cat on a mat"
    assert completion.model == "gpt-mock"
    assert completion.finish_reason == "stop"
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens == 4
    expected = (completion.usage.prompt_tokens * 2.0 + 4 * 10.0) / 1e6
    assert completion.cost_usd == pytest.approx(expected)
    assert teacher.total_cost_usd == pytest.approx(expected) and teacher.calls == 1
    assert server.request_count == 1 and server.requests[0].status == 200
    assert server.requests[0]["body"]["max_tokens"] == 20


@pytest.mark.parametrize(
    ("fault", "kind", "message"),
    [
        (Fault("429", retry_after=2.5), "rate_limit", "429 rate limited"),
        (Fault("500"), "server", "said 500"),
        (Fault("503"), "server", "said 503"),
        (Fault("truncated"), "malformed", "not JSON"),
        (Fault("malformed"), "malformed", "not JSON"),
        (Fault("empty_choices"), "malformed", "without choices"),
        (Fault("timeout", delay_s=2.0), "timeout", "did not answer within 0.3 s"),
    ],
)
async def test_each_fault_maps_to_its_error_kind(server, fault, kind, message) -> None:
    server.script([fault])
    teacher = OpenAITeacher(server.base_url, "m", timeout_s=0.3)
    with pytest.raises(TeacherError, match=message) as caught:
        await teacher.complete(USER, DecodingParams())
    await teacher.aclose()
    assert caught.value.kind == kind
    if fault.kind == "429":
        assert caught.value.retry_after == pytest.approx(2.5)
    if fault.kind in ("429", "500", "503"):
        assert caught.value.status == int(fault.kind)
    assert server.request_count == 1


async def test_client_error_and_refused_connection() -> None:
    teacher = OpenAITeacher("http://127.0.0.1:9/v1", "m", timeout_s=2)
    with pytest.raises(TeacherError, match="cannot reach") as caught:
        await teacher.complete(USER, DecodingParams())
    await teacher.aclose()
    assert caught.value.kind == "server"


async def test_stop_sequences_and_length_cut(server) -> None:
    server.script(["<THOUGHT>look</THOUGHT><SIGNAL>continue</SIGNAL>\nmore text", "x" * 100])
    teacher = OpenAITeacher(server.base_url, "m")
    first = await teacher.complete(USER, DecodingParams(stop=["</SIGNAL>"]))
    second = await teacher.complete(USER, DecodingParams(max_tokens=5))
    await teacher.aclose()
    assert first.text == "<THOUGHT>look</THOUGHT><SIGNAL>continue"
    assert second.text == "x" * 20 and second.finish_reason == "length"
    assert server.requests[0].body["stop"] == ["</SIGNAL>"]


def _png(path: Path, size: tuple[int, int]) -> ImageRef:
    Image.new("RGB", size, (200, 30, 30)).save(path)
    return ImageRef(path=path.name, root=str(path.parent), width=size[0], height=size[1])


async def test_images_are_encoded_at_send_time_and_downscaled(server, tmp_path: Path) -> None:
    ref = _png(tmp_path / "big.png", (1200, 600))
    message = ChatMessage(
        role="user", content=[TextPart(text="describe"), ImagePart(image=ref, detail="low")]
    )
    assert "base64" not in message.model_dump_json()
    server.script(["ok", "ok"])
    teacher = OpenAITeacher(server.base_url, "m", image_max_side=300)
    completion = await teacher.complete([message], DecodingParams())
    assert completion.usage.image_tokens == 85
    part = server.requests[0].body["messages"][0]["content"][1]
    assert part["image_url"]["detail"] == "low"
    header, payload = part["image_url"]["url"].split(",", 1)
    assert header == "data:image/png;base64"
    assert Image.open(io.BytesIO(base64.b64decode(payload))).size == (300, 150)
    original = OpenAITeacher(server.base_url, "m")
    await original.complete([message], DecodingParams())
    await teacher.aclose()
    await original.aclose()
    payload = server.requests[1].body["messages"][0]["content"][1]["image_url"]["url"].split(",", 1)[1]
    assert base64.b64decode(payload) == (tmp_path / "big.png").read_bytes()


async def test_missing_image_is_a_client_error(server, tmp_path: Path) -> None:
    message = ChatMessage(
        role="user", content=[ImagePart(image=ImageRef(path="gone.png", root=str(tmp_path)))]
    )
    teacher = OpenAITeacher(server.base_url, "m")
    with pytest.raises(TeacherError, match="does not exist") as caught:
        await teacher.complete([message], DecodingParams())
    assert caught.value.kind == "client"
    assert server.request_count == 0


async def test_api_key_from_env_only_in_headers(server, monkeypatch) -> None:
    monkeypatch.setenv("MMAT_TEST_KEY", "sk-secret-123")
    teacher = OpenAITeacher(server.base_url, "m", api_key_env="MMAT_TEST_KEY")
    assert "sk-secret" not in repr(teacher) and "sk-secret" not in teacher.fingerprint()
    assert "sk-secret" not in json.dumps(teacher.request_body(USER, DecodingParams()))
    server.script(["fine"])
    assert (await teacher.complete(USER, DecodingParams())).text == "fine"
    await teacher.aclose()


def test_openai_host_without_key_is_a_config_error(monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="export OPENAI_API_KEY"):
        OpenAITeacher("https://api.openai.com/v1", "gpt-4o")
    with pytest.raises(ConfigError, match="not an http"):
        OpenAITeacher("127.0.0.1:8000", "m")
    with pytest.raises(ConfigError, match="unknown price keys"):
        OpenAITeacher("http://127.0.0.1:1/v1", "m", prices={"in": 1.0})


async def test_json_mode_and_seed_are_sent(server) -> None:
    teacher = OpenAITeacher(server.base_url, "m")
    completion = await teacher.complete(
        [ChatMessage(role="user", content="Reply with the step as JSON with next_action.")],
        DecodingParams(json_mode=True, seed=7, top_p=0.9),
    )
    await teacher.aclose()
    body = server.requests[0].body
    assert body["response_format"] == {"type": "json_object"} and body["seed"] == 7 and body["top_p"] == 0.9
    assert json.loads(completion.text)["next_action"] == "continue"
