"""The optional judge model that extracts answers where the rules find none.

Any OpenAI-compatible chat endpoint works (a local vLLM/SGLang server, the mock server in tests,
or a hosted API). Replies are cached on disk by prompt hash so re-scoring never pays twice; every
item scored with the judge's help says so in its :class:`~mmat.eval.scorers.base.ItemScore`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path
from typing import Protocol

from mmat.errors import ConfigError, MissingDependencyError, TeacherError


class Judge(Protocol):
    """Anything that answers a text prompt."""

    name: str

    async def complete(self, prompt: str) -> str: ...


class OpenAIJudge:
    """A judge behind an OpenAI-compatible ``/chat/completions`` endpoint (temperature 0).

    Example:
        >>> judge = OpenAIJudge("http://127.0.0.1:8000/v1", "qwen2.5-7b-instruct")
        >>> letter = await judge.complete("... Option letter:")

    Args:
        base_url: the API root, ending in ``/v1`` for most servers.
        model: the model name the server expects.
        api_key_env: the environment variable holding the key (never passed on the command line).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 60.0,
        max_tokens: int = 32,
        retries: int = 2,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"judge base URL {base_url!r} must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"{model}@{self.base_url}"
        self.api_key = os.environ.get(api_key_env, "")
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.retries = retries

    async def complete(self, prompt: str) -> str:
        try:
            import httpx
        except ImportError as error:
            raise MissingDependencyError("the judge client (httpx)", "eval", error) from None
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0.0,
            "max_tokens": self.max_tokens,
        }
        last: Exception | None = None
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            for attempt in range(self.retries + 1):
                try:
                    response = await client.post(
                        f"{self.base_url}/chat/completions", json=body, headers=headers
                    )
                    if response.status_code >= 500 or response.status_code == 429:
                        raise TeacherError("server", f"judge answered HTTP {response.status_code}")
                    if response.status_code >= 400:
                        raise TeacherError(
                            "client",
                            f"judge answered HTTP {response.status_code}: {response.text[:200]}; "
                            "check --judge-model and --judge-base-url",
                        )
                    return str(response.json()["choices"][0]["message"]["content"] or "")
                except TeacherError as error:
                    if error.kind == "client":
                        raise
                    last = error
                except (httpx.HTTPError, KeyError, IndexError, ValueError) as error:
                    last = error
                await asyncio.sleep(0.5 * (attempt + 1))
        raise TeacherError(
            "server", f"judge at {self.base_url} failed after {self.retries + 1} tries: {last}"
        )


class JudgeCache:
    """Judge replies on disk (JSONL), keyed by judge name and prompt hash."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._replies: dict[str, str] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    self._replies[row["key"]] = row["reply"]

    @staticmethod
    def key(judge: str, prompt: str) -> str:
        return hashlib.sha256(f"{judge}\n{prompt}".encode()).hexdigest()

    def get(self, judge: str, prompt: str) -> str | None:
        return self._replies.get(self.key(judge, prompt))

    def put(self, judge: str, prompt: str, reply: str) -> None:
        key = self.key(judge, prompt)
        self._replies[key] = reply
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"key": key, "judge": judge, "reply": reply}, ensure_ascii=False) + "\n")
