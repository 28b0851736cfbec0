"""A tiny random local model (and a LoRA adapter on it) runs every mode end to end.

The model is built here from a config and a tokenizer trained offline with ``tokenizers``, so it
writes garbage: the tests assert that the loop runs, re-asks, and records the failure or the answer
properly, not that the answer is right.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mmat.agent.runtime import CORRECTIVE_TURN, Agent
from mmat.agent.simulated import SimulatedToolProvider
from mmat.errors import ConfigError
from mmat.llm.base import ChatMessage, ImagePart, TextPart
from mmat.schema import ImageRef
from mmat.wire import NO_TOOL_TURN, ORR_SYSTEM_PROMPT, REFLECTION_PROMPT_TURN, render_rr_system

pytestmark = pytest.mark.heavy

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def build_tiny_model(root: Path, *, adapter: bool) -> tuple[Path, Path | None]:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = [
        render_rr_system(),
        ORR_SYSTEM_PROMPT,
        NO_TOOL_TURN,
        REFLECTION_PROMPT_TURN,
        "<THOUGHT>Read the table.</THOUGHT><OPERATOR>ocr</OPERATOR><SIGNAL>continue</SIGNAL>",
        "Here are ocr results from the previous step: Total earnings $3,900.00 Please continue your reasoning.",
        "<THOUGHT>x</THOUGHT><ANSWER>The answer is: 2,825.35</ANSWER>",
    ]
    specials = ["<|end|>", "<|pad|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus * 4, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|end|>", pad_token="<|pad|>", chat_template=CHAT_TEMPLATE
    )
    base = root / "tiny-base"
    fast.save_pretrained(base)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        bos_token_id=None,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(base)
    if not adapter:
        return base, None
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    lora = root / "tiny-lora"
    peft_model.save_pretrained(lora)
    return base, lora


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path | None]:
    return build_tiny_model(tmp_path_factory.mktemp("agent-model"), adapter=True)


async def test_tiny_local_model_runs_every_mode(
    tiny_model: tuple[Path, Path | None], table_image: ImageRef
) -> None:
    from peft import PeftModel

    from mmat.agent.models import TransformersModel

    base, lora = tiny_model
    model = TransformersModel(str(base), adapter=str(lora), max_tokens=12)
    assert isinstance(model.model, PeftModel)
    agent = Agent(model, SimulatedToolProvider({"ocr": "Total earnings $3,900.00"}), max_steps=3)
    question = "How much did Veronica make after taxes?"

    rr = await agent.answer([table_image], question, mode="rr")
    # random weights never write a well-formed step: one corrective re-ask, then a clear failure record
    assert rr.error_kind == "malformed_step" and rr.answer == ""
    assert rr.model_calls == 2 and rr.reasks == 1
    assert rr.messages[3]["content"].startswith(CORRECTIVE_TURN.split(":", 1)[0])
    assert [m["role"] for m in rr.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert all(latency > 0 for latency in rr.turn_latencies_s)
    assert 0 < rr.completion_tokens <= 24 and rr.prompt_tokens > 0

    orr = await agent.answer([table_image], question, mode="orr")
    assert orr.model_calls == 1 and [t.tool for t in orr.operator_timings] == ["ocr"]
    assert orr.error_kind == "malformed_answer" and orr.raw_output == orr.messages[-1]["content"]
    assert "<|begin_api_invoke|>ocr<|end_api_invoke|>" in orr.messages[1]["content"]

    baseline = await agent.answer([table_image], question, mode="baseline")
    assert baseline.model_calls == 1
    assert baseline.ok, baseline.error
    assert baseline.answer == baseline.raw_output.strip() != ""


async def test_adapter_changes_the_output_and_prompt_uses_the_chat_template(
    tiny_model: tuple[Path, Path | None],
) -> None:
    from mmat.agent.models import TransformersModel
    from mmat.llm.base import ChatMessage

    base, lora = tiny_model
    messages = [ChatMessage(role="user", content="Please start your reasoning.")]
    plain = TransformersModel(str(base), max_tokens=8)
    tuned = TransformersModel(str(base), adapter=str(lora), max_tokens=8)
    assert plain.render_prompt(messages) == "<|user|>\nPlease start your reasoning.<|end|>\n<|assistant|>\n"
    first = await plain.generate(messages)
    assert (await plain.generate(messages)).text == first.text  # greedy: deterministic
    assert (await tuned.generate(messages)).text != first.text
    assert first.usage.completion_tokens <= 8


def test_local_model_errors_say_the_fix(tmp_path: Path, tiny_model: tuple[Path, Path | None]) -> None:
    from mmat.agent.models import TransformersModel

    with pytest.raises(ConfigError, match="cannot load a model config from"):
        TransformersModel(str(tmp_path / "missing"))
    base, _ = tiny_model
    no_template = tmp_path / "no-template"
    no_template.mkdir()
    for item in base.iterdir():
        (no_template / item.name).write_bytes(item.read_bytes())
    config = (no_template / "tokenizer_config.json").read_text()
    import json

    data = json.loads(config)
    data.pop("chat_template", None)
    (no_template / "tokenizer_config.json").write_text(json.dumps(data))
    (no_template / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(ConfigError, match="has no chat template; add 'chat_template'"):
        TransformersModel(str(no_template))


VLM_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|end|>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def build_tiny_vlm(root: Path) -> Path:
    """A tiny random LLaVA (CLIP vision tower + Llama) with a processor, all built offline."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|end|>", "<|pad|>", "<image>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator([render_rr_system(), ORR_SYSTEM_PROMPT, NO_TOOL_TURN] * 4, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|end|>",
        pad_token="<|pad|>",
        extra_special_tokens={"image_token": "<image>"},
    )
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}, do_center_crop=True
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=fast,
        patch_size=14,
        vision_feature_select_strategy="default",
        chat_template=VLM_TEMPLATE,
        num_additional_image_tokens=1,
    )
    path = root / "tiny-vlm"
    processor.save_pretrained(path)
    torch.manual_seed(0)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=28,
            patch_size=14,
        ),
        text_config=LlamaConfig(
            vocab_size=len(fast),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            eos_token_id=fast.eos_token_id,
            pad_token_id=fast.pad_token_id,
            bos_token_id=None,
        ),
        image_token_index=fast.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    LlavaForConditionalGeneration(config).save_pretrained(path)
    return path


async def test_tiny_vision_language_model_sees_the_image(tmp_path: Path, table_image: ImageRef) -> None:
    from mmat.agent.models import TransformersModel

    model = TransformersModel(str(build_tiny_vlm(tmp_path)), max_tokens=6)
    assert model.vision
    agent = Agent(model, SimulatedToolProvider({"ocr": "Total earnings $3,900.00"}), max_steps=2)
    rr = await agent.answer([table_image], "How much did Veronica make after taxes?", mode="rr")
    assert rr.error_kind == "malformed_step" and rr.model_calls == 2
    assert model.decodes == 1  # the image was decoded once for both calls
    prompt = model.render_prompt(
        [ChatMessage(role="user", content=[ImagePart(image=table_image), TextPart(text="Q")])]
    )
    assert prompt == "<|user|>\n<image>\nQ<|end|>\n<|assistant|>\n"
    baseline = await agent.answer([table_image], "How much?", mode="baseline")
    text_only = model.render_prompt([ChatMessage(role="user", content="How much?")])
    placeholder_free = len(model.tokenizer(text_only, add_special_tokens=False)["input_ids"])
    # the <image> slot and its newline became the 28x28 image's 2x2 = 4 patch tokens
    image_slot = len(model.tokenizer("<image>\n", add_special_tokens=False)["input_ids"])
    assert baseline.prompt_tokens == placeholder_free + image_slot - 1 + 4


def test_ask_runs_a_local_model_with_its_adapter(
    tiny_model: tuple[Path, Path | None], table_image: ImageRef
) -> None:
    from click.testing import CliRunner

    from mmat.cli import cli

    base, lora = tiny_model
    image = str(Path(table_image.root or "") / table_image.path)
    args = ["ask", image, "How much?", "--model", str(base), "--adapter", str(lora), "--no-tools"]
    result = CliRunner().invoke(cli, [*args, "--mode", "baseline", "--max-tokens", "6", "--json"])
    assert result.exit_code == 0, result.output
    assert '"mode": "baseline"' in result.output and '"model_calls": 1' in result.output
