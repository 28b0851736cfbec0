"""``mmat serve-agent``: the agent itself behind an OpenAI-compatible chat endpoint.

Evaluation toolkits (VLMEvalKit's OpenAI wrapper, OmniSearch scripts) and apps call
``POST /v1/chat/completions`` as they would call any VLM; behind it the agent runs RR, ORR or the
baseline with live operators and returns the final answer as the assistant message.

- The question is the text of the last user message; images are the ``image_url`` parts of the user
  messages, as ``data:`` URLs (written once to a private temporary folder, named by sha256) or
  ``http(s)`` URLs (passed through).
- The mode is the request's ``mode`` field, else the model name (``mmat-rr``, ``mmat-orr``,
  ``mmat-baseline``; any name ending in ``-rr``/``-orr``/``-baseline``), else the server default.
- The reply is a ``chat.completion``; ``choices[0].finish_reason`` is ``stop``, or ``error`` when the
  run ended without an answer (the content is then empty). The full :class:`AgentResult` (trajectory,
  per-turn and per-operator latency) rides along under the extra key ``mmat``.
- ``GET /v1/models`` lists the three modes; ``GET /health`` answers ``ok``. Streaming is refused.

Example:
    >>> with AgentServer(agent) as server:          # doctest: +SKIP
    ...     OpenAIModel(server.base_url, "mmat-orr")  # the agent is now a model like any other
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from mmat.agent.encoding import sniff_mime
from mmat.agent.result import AgentMode
from mmat.agent.runtime import MODES, Agent
from mmat.errors import ConfigError, MmatError
from mmat.llm.serving import BackgroundServer
from mmat.schema import ImageRef

logger = logging.getLogger(__name__)

_DATA_URL = re.compile(r"\Adata:(image/[\w.+-]+);base64,", re.IGNORECASE)
_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp"}
MAX_REQUEST_BYTES = 64 * 1024 * 1024


class RequestError(MmatError):
    """A chat request the agent server cannot serve (answered with HTTP 400)."""


def mode_for(body: dict[str, Any], default: AgentMode) -> AgentMode:
    """The agent mode a request asks for: ``mode`` field, else the model name's suffix, else ``default``."""
    requested = body.get("mode")
    if requested is not None:
        if requested not in MODES:
            raise RequestError(f"unknown mode {requested!r}; valid modes: {', '.join(MODES)}")
        return requested  # type: ignore[no-any-return]
    model = str(body.get("model") or "").lower()
    for mode in MODES:
        if model == mode or model.endswith(f"-{mode}"):
            return mode  # type: ignore[return-value]
    return default


class AgentServer(BackgroundServer):
    """Serves one :class:`Agent` over HTTP on loopback, in a background thread or in the foreground.

    Args:
        agent: the agent to expose.
        host: interface to bind; loopback by default (the endpoint has no authentication).
        port: 0 picks a free port.
        default_mode: the mode when a request names none.
        max_concurrent: agent runs at once; more requests wait their turn.
    """

    def __init__(
        self,
        agent: Agent,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        default_mode: AgentMode = "rr",
        max_concurrent: int = 8,
    ) -> None:
        if default_mode not in MODES:
            raise ConfigError(f"unknown agent mode {default_mode!r}; valid modes: {', '.join(MODES)}")
        self.agent = agent
        self.default_mode: AgentMode = default_mode
        self.max_concurrent = max_concurrent
        super().__init__(host=host, port=port)
        self._images = tempfile.TemporaryDirectory(prefix="mmat-agent-images-")
        self._slots: asyncio.Semaphore | None = None
        self.requests_served = 0

    label = "agent server"

    def stop(self) -> None:
        super().stop()
        self._images.cleanup()

    def serve_forever(self, on_ready: Any = None) -> None:
        """Serve in the calling thread until interrupted (the CLI's mode)."""
        try:
            super().serve_forever(on_ready)
        finally:
            self._images.cleanup()

    def build_app(self) -> Any:
        from aiohttp import web

        self._slots = asyncio.Semaphore(self.max_concurrent)
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        return app

    async def on_shutdown(self) -> None:
        aclose = getattr(self.agent.model, "aclose", None)
        if aclose is not None:
            await aclose()

    # -- requests ----------------------------------------------------------------------------------

    def images_of(self, body: dict[str, Any]) -> list[ImageRef]:
        """The images of the request's user messages, in order."""
        refs: list[ImageRef] = []
        for message in body.get("messages") or []:
            if message.get("role") != "user" or not isinstance(message.get("content"), list):
                continue
            for part in message["content"]:
                if not isinstance(part, dict) or part.get("type") != "image_url":
                    continue
                url = part.get("image_url")
                url = url.get("url") if isinstance(url, dict) else url
                if not isinstance(url, str):
                    raise RequestError("an image_url part needs {'url': 'data:image/...;base64,...'}")
                refs.append(self._image_ref(url))
        return refs

    def _image_ref(self, url: str) -> ImageRef:
        if url.startswith(("http://", "https://")):
            return ImageRef(path=url)
        match = _DATA_URL.match(url)
        if not match:
            raise RequestError(
                "images must be data:image/...;base64,... or http(s) URLs; local paths are not accepted"
            )
        try:
            data = base64.b64decode(url[match.end() :], validate=True)
        except (binascii.Error, ValueError):
            raise RequestError("an image data URL does not hold valid base64") from None
        mime = sniff_mime(data) or match.group(1).lower()
        sha = hashlib.sha256(data).hexdigest()
        name = sha + _EXTENSIONS.get(mime, ".img")
        target = Path(self._images.name) / name
        if not target.exists():
            target.write_bytes(data)
        return ImageRef(path=name, root=self._images.name, sha256=sha)

    @staticmethod
    def question_of(body: dict[str, Any]) -> str:
        """The text of the last user message."""
        for message in reversed(body.get("messages") or []):
            if message.get("role") != "user":
                continue
            content = message.get("content")
            if isinstance(content, str):
                text = content
            elif isinstance(content, list):
                text = "\n".join(
                    p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
                )
            else:
                text = ""
            if text.strip():
                return text.strip()
        raise RequestError("the request has no user message with text; send the question as a user message")

    async def _chat(self, request: Any) -> Any:
        from aiohttp import web

        try:
            body = json.loads(await request.read())
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                raise RequestError("the body must be a JSON object with a 'messages' list")
            if body.get("stream"):
                raise RequestError('streaming is not supported by the agent server; send "stream": false')
            mode = mode_for(body, self.default_mode)
            question = self.question_of(body)
            images = self.images_of(body)
        except ValueError:
            return _error(web, 400, "the request body is not JSON")
        except RequestError as error:
            return _error(web, 400, str(error))
        assert self._slots is not None
        async with self._slots:
            try:
                result = await self.agent.answer(images, question, mode=mode)
            except MmatError as error:
                return _error(web, 400, str(error))
        self.requests_served += 1
        payload = {
            "id": f"chatcmpl-mmat-{self.requests_served}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model") or f"mmat-{mode}"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.answer},
                    "finish_reason": "stop" if result.ok else "error",
                }
            ],
            "usage": {
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens,
                "total_tokens": result.prompt_tokens + result.completion_tokens,
            },
            "mmat": result.model_dump(mode="json"),
        }
        return web.json_response(payload, dumps=lambda o: json.dumps(o, ensure_ascii=False))

    async def _models(self, request: Any) -> Any:
        from aiohttp import web

        data = [{"id": f"mmat-{mode}", "object": "model", "owned_by": "mmat"} for mode in MODES]
        return web.json_response({"object": "list", "data": data})

    async def _health(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response({"status": "ok", "model": getattr(self.agent.model, "name", "")})


def _error(web: Any, status: int, message: str) -> Any:
    return web.json_response({"error": {"message": message, "type": "invalid_request_error"}}, status=status)
