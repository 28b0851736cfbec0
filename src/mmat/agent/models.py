"""The model the agent runs: any OpenAI-compatible server, or a local transformers model.

Both clients take the conversation as :class:`~mmat.llm.base.ChatMessage` objects (images by
reference, as :class:`~mmat.llm.base.ImagePart`) and return a :class:`Generation`:

    text, usage = (await model.generate(messages, stop=["</SIGNAL>"])).text, ...

``stop`` follows the OpenAI convention: generation ends *before* the first stop string and the
string itself is not returned (the agent re-appends ``</SIGNAL>``). A failed call raises
:class:`~mmat.errors.TeacherError` with a ``kind`` (``rate_limit``, ``server``, ``timeout``,
``malformed``, ``client``); the agent turns it into a failure record.

Example:
    >>> model = OpenAIModel("http://127.0.0.1:8000/v1", "mmat-internvl2_5-8b")
    >>> local = TransformersModel("./tiny-model", adapter="./lora-adapter")
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from mmat.agent.encoding import ImageEncoder
from mmat.errors import ConfigError, MissingDependencyError, TeacherError
from mmat.llm.base import ChatMessage, ImagePart, TextPart, Usage
from mmat.schema import ImageRef

logger = logging.getLogger(__name__)


@dataclass
class Generation:
    """One model reply.

    Attributes:
        text: the generated text, without the stop string that ended it.
        finish_reason: ``stop`` (a stop string or end of sequence), ``length`` (max tokens) or what
            the server said.
        usage: prompt and completion tokens.
        latency_s: wall time of the call as the client saw it.
    """

    text: str
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0


@runtime_checkable
class ModelClient(Protocol):
    """What :class:`~mmat.agent.runtime.Agent` needs from a model."""

    name: str

    async def generate(
        self, messages: Sequence[ChatMessage], *, stop: Sequence[str] | None = None
    ) -> Generation:
        """Continue the conversation with one assistant message."""
        ...


def message_text(message: ChatMessage) -> str:
    """The text of a message (image parts left out)."""
    return message.text()


def message_images(message: ChatMessage) -> list[ImagePart]:
    """The image parts of a message, in order."""
    if isinstance(message.content, str):
        return []
    return [part for part in message.content if isinstance(part, ImagePart)]


# --------------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP servers (vLLM, SGLang, swift deploy, LMDeploy, the mock server)

_RETRYABLE = {"rate_limit", "server", "timeout"}


class OpenAIModel:
    """A model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    Images go as ``image_url`` parts holding base64 data URLs, placed before the text of their
    message; each image is encoded once and the same string is resent on every turn. Rate limits,
    5xx and timeouts are retried ``max_retries`` times (``Retry-After`` honoured); other errors raise
    at once.

    Args:
        base_url: the server's API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: the model name the server expects.
        api_key_env: name of the environment variable holding the API key (never the key itself).
        timeout_s: per-request timeout.
        temperature: sampling temperature (0 for greedy).
        max_tokens: the most tokens per reply.
        max_retries: retries of rate-limited, failed or timed-out requests.

    Example:
        >>> model = OpenAIModel("http://127.0.0.1:8000/v1", "mmat-8b", api_key_env="VLLM_API_KEY")
        >>> reply = await model.generate([ChatMessage(role="user", content="hi")])
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        timeout_s: float = 120,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        max_retries: int = 2,
        encoder: ImageEncoder | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"base URL {base_url!r} must start with http:// or https://, e.g. http://127.0.0.1:8000/v1"
            )
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"openai:{model}"
        self.timeout_s = timeout_s
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.max_retries = max_retries
        self.encoder = encoder or ImageEncoder()
        self._api_key: str | None = None
        if api_key_env:
            self._api_key = os.environ.get(api_key_env)
            if not self._api_key:
                raise ConfigError(
                    f"environment variable {api_key_env} is not set; export {api_key_env}=<your key> "
                    "or leave out --api-key-env for servers without authentication"
                )
        self._client: Any = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def _http(self) -> Any:
        try:
            import httpx
        except ImportError as error:
            raise MissingDependencyError(
                "the OpenAI-compatible agent client (httpx)", "agent", error
            ) from None
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
            self._client = httpx.AsyncClient(timeout=self.timeout_s, headers=headers)
            self._client_loop = loop
        return self._client

    def to_openai(self, messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
        """The ``messages`` array of the request body; images first within a message."""
        out: list[dict[str, Any]] = []
        for message in messages:
            if isinstance(message.content, str):
                out.append({"role": message.role, "content": message.content})
                continue
            parts: list[dict[str, Any]] = [
                {"type": "image_url", "image_url": {"url": self.encoder.url(p.image), "detail": p.detail}}
                for p in message.content
                if isinstance(p, ImagePart)
            ]
            parts += [{"type": "text", "text": p.text} for p in message.content if isinstance(p, TextPart)]
            out.append({"role": message.role, "content": parts})
        return out

    def request_body(self, messages: Sequence[ChatMessage], stop: Sequence[str] | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": self.to_openai(messages),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if stop:
            body["stop"] = list(stop)
        return body

    async def generate(
        self, messages: Sequence[ChatMessage], *, stop: Sequence[str] | None = None
    ) -> Generation:
        body = self.request_body(messages, stop)
        started = time.perf_counter()
        attempt = 0
        while True:
            try:
                generation = await self._post(body)
                generation.latency_s = time.perf_counter() - started
                return generation
            except TeacherError as error:
                if error.kind not in _RETRYABLE or attempt >= self.max_retries:
                    raise
                delay = error.retry_after if error.retry_after is not None else 0.5 * 2**attempt
                attempt += 1
                logger.info("model call failed (%s), retry %d in %.1fs", error, attempt, delay)
                await asyncio.sleep(min(delay, 30.0))

    async def _post(self, body: dict[str, Any]) -> Generation:
        import httpx

        url = f"{self.base_url}/chat/completions"
        try:
            response = await self._http().post(url, json=body)
        except httpx.TimeoutException:
            raise TeacherError("timeout", f"{url} did not answer within {self.timeout_s}s") from None
        except httpx.HTTPError as error:
            raise TeacherError(
                "server", f"cannot reach {url}: {error}; is the model server running at that address?"
            ) from None
        if response.status_code == 429:
            raise TeacherError(
                "rate_limit", f"{url} answered 429 (rate limited)", retry_after=_retry_after(response.headers)
            )
        if response.status_code >= 500:
            raise TeacherError("server", f"{url} answered {response.status_code}: {response.text[:200]}")
        if response.status_code >= 400:
            raise TeacherError(
                "client",
                f"{url} refused the request with {response.status_code}: {response.text[:300]}; "
                f"check the model name {self.model!r} and that the server accepts images",
            )
        try:
            data = response.json()
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            raise TeacherError(
                "malformed", f"{url} returned a body that is not a chat completion: {response.text[:200]!r}"
            ) from None
        usage = data.get("usage") or {}
        return Generation(
            text=text,
            finish_reason=choice.get("finish_reason"),
            usage=Usage(
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
            ),
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (OpenAI) or ``Retry-After`` (seconds); None if absent."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        try:
            return max(0.0, float(value) * scale) if value is not None else None
        except ValueError:
            continue
    return None


# --------------------------------------------------------------------------------------------------
# Local transformers model (optionally with a PEFT LoRA adapter)


class TransformersModel:
    """A local model run with transformers, optionally with a LoRA adapter.

    Two kinds of model load from ``path``:

    - a vision-language model (its config has a ``vision_config``: LLaVA, Qwen2-VL, InternVL-HF,
      Idefics...) loads with ``AutoProcessor`` and ``AutoModelForImageTextToText``; images are
      decoded once per run (a small cache) and passed to the processor with the chat template's
      image slots;
    - a text-only causal LM loads with ``AutoTokenizer`` and ``AutoModelForCausalLM``; it does not see
      images (operator outputs still carry what the image holds) and a warning says so once.

    The conversation is rendered with the chat template and decoded greedily (sampled when
    ``temperature > 0``); stop strings end generation and are cut from the reply. Generation runs in
    a worker thread, one call at a time.

    Args:
        path: a directory (or hub id already in the local cache) holding config, weights and a
            tokenizer or processor with a chat template.
        adapter: a PEFT adapter directory (``mmat train`` output) to load on top.
        device: torch device, ``cpu`` or ``cuda``.
        max_tokens: the most new tokens per reply.
        temperature: 0 for greedy decoding.

    Example:
        >>> model = TransformersModel("out/base", adapter="out/lora", device="cpu", max_tokens=256)
    """

    def __init__(
        self,
        path: str,
        *,
        adapter: str | None = None,
        device: str = "cpu",
        max_tokens: int = 1024,
        temperature: float = 0.0,
    ) -> None:
        try:
            import torch
            from transformers import (
                AutoConfig,
                AutoModelForCausalLM,
                AutoModelForImageTextToText,
                AutoProcessor,
                AutoTokenizer,
            )
        except ImportError as error:
            raise MissingDependencyError("local transformers models", "local-teacher", error) from None
        self.path = str(path)
        self.adapter = str(adapter) if adapter else None
        self.name = f"local:{os.path.basename(self.path.rstrip('/'))}" + (
            f"+{os.path.basename(self.adapter.rstrip('/'))}" if self.adapter else ""
        )
        self.device = device
        self.max_tokens = max_tokens
        self.temperature = temperature
        try:
            config = AutoConfig.from_pretrained(self.path)
        except (OSError, ValueError) as error:
            raise ConfigError(f"cannot load a model config from {self.path}: {error}") from None
        self.vision = getattr(config, "vision_config", None) is not None
        self.processor: Any = None
        try:
            if self.vision:
                self.processor = AutoProcessor.from_pretrained(self.path)
                self.tokenizer: Any = self.processor.tokenizer
            else:
                self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        except (OSError, ValueError) as error:
            raise ConfigError(f"cannot load a tokenizer from {self.path}: {error}") from None
        template_owner = self.processor if self.vision else self.tokenizer
        if not getattr(template_owner, "chat_template", None):
            raise ConfigError(
                f"the {'processor' if self.vision else 'tokenizer'} in {self.path} has no chat template; "
                "add 'chat_template' to its config (the template the model was tuned with)"
            )
        loader = AutoModelForImageTextToText if self.vision else AutoModelForCausalLM
        try:
            model: Any = loader.from_pretrained(self.path, dtype=torch.float32)
        except (OSError, ValueError) as error:
            raise ConfigError(f"cannot load the model weights from {self.path}: {error}") from None
        if self.adapter:
            try:
                from peft import PeftModel
            except ImportError as error:
                raise MissingDependencyError("LoRA adapters (peft)", "train", error) from None
            try:
                model = PeftModel.from_pretrained(model, self.adapter)
            except (OSError, ValueError) as error:
                raise ConfigError(f"cannot load the LoRA adapter in {self.adapter}: {error}") from None
        self.model: Any = model.to(device).eval()
        self._lock = threading.Lock()
        self._warned_images = False
        self._decoded: OrderedDict[tuple[str | None, str, str | None], Any] = OrderedDict()
        self.decodes = 0

    def _chat(self, messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
        if not self.vision:
            if not self._warned_images and any(message_images(m) for m in messages):
                self._warned_images = True
                logger.warning("%s is a text-only model: images are not shown to it", self.path)
            return [{"role": m.role, "content": m.text()} for m in messages]
        chat: list[dict[str, Any]] = []
        for m in messages:
            parts: list[dict[str, Any]] = [{"type": "image"} for _ in message_images(m)]
            parts.append({"type": "text", "text": m.text()})
            chat.append({"role": m.role, "content": parts})
        return chat

    def render_prompt(self, messages: Sequence[ChatMessage]) -> str:
        """The prompt string the chat template makes of the conversation."""
        owner = self.processor if self.vision else self.tokenizer
        rendered = owner.apply_chat_template(self._chat(messages), tokenize=False, add_generation_prompt=True)
        return str(rendered)

    def _image(self, ref: ImageRef) -> Any:
        from mmat.images import load_image

        key = (ref.root, ref.path, ref.sha256)
        if key not in self._decoded:
            self._decoded[key] = load_image(ref)
            self.decodes += 1
            while len(self._decoded) > 16:
                self._decoded.popitem(last=False)
        return self._decoded[key]

    def _inputs(self, prompt: str, images: list[ImageRef]) -> Any:
        if self.vision:
            pil = [self._image(ref) for ref in images] or None
            return self.processor(text=prompt, images=pil, return_tensors="pt").to(self.device)
        return self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self.device)

    def _generate_sync(self, prompt: str, images: list[ImageRef], stop: Sequence[str]) -> Generation:
        import torch

        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_tokens,
            "do_sample": self.temperature > 0,
            "pad_token_id": pad,
        }
        if self.temperature > 0:
            kwargs["temperature"] = self.temperature
        if stop:
            kwargs["stop_strings"] = list(stop)
            kwargs["tokenizer"] = self.tokenizer
        with self._lock, torch.inference_mode():
            inputs = self._inputs(prompt, images)
            prompt_len = int(inputs["input_ids"].shape[1])
            output = self.model.generate(**inputs, **kwargs)
        new_tokens = output[0, prompt_len:]
        text = str(self.tokenizer.decode(new_tokens, skip_special_tokens=True))
        finish = "length" if len(new_tokens) >= self.max_tokens else "stop"
        cuts = [at for at in (text.find(s) for s in stop if s) if at >= 0]
        if cuts:
            text, finish = text[: min(cuts)], "stop"
        return Generation(
            text=text,
            finish_reason=finish,
            usage=Usage(prompt_tokens=prompt_len, completion_tokens=len(new_tokens)),
        )

    async def generate(
        self, messages: Sequence[ChatMessage], *, stop: Sequence[str] | None = None
    ) -> Generation:
        prompt = self.render_prompt(messages)
        images = [part.image for m in messages for part in message_images(m)] if self.vision else []
        started = time.perf_counter()
        generation = await asyncio.to_thread(self._generate_sync, prompt, images, list(stop or []))
        generation.latency_s = time.perf_counter() - started
        return generation

    async def aclose(self) -> None:
        return None


def dump_messages(messages: Sequence[ChatMessage]) -> str:
    """The conversation as JSON text with images shown by path (for logs and debugging)."""
    rows = []
    for m in messages:
        images = [p.image.path for p in message_images(m)]
        rows.append({"role": m.role, "content": m.text(), **({"images": images} if images else {})})
    return json.dumps(rows, ensure_ascii=False, indent=1)
