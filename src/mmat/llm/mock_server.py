"""A real OpenAI-compatible teacher server on 127.0.0.1, for tests, benchmarks and offline demos.

It speaks ``POST /v1/chat/completions``, ``GET /v1/models`` and the Batch API (``/v1/files``,
``/v1/batches``) over HTTP (aiohttp), in a background thread with its own event loop, so synchronous
and asynchronous code can both talk to it. It is not a fake object: clients use real sockets.

What it offers:

* **Replies**: :meth:`MockTeacherServer.script` queues replies first in, first out; each item is the
  assistant text or a :class:`Fault`. When the queue is empty, :attr:`MockTeacherServer.responder`
  answers (a callable ``request_body_dict -> str | Fault``); the default is
  :func:`default_responder`, rule-based and deterministic.
* **Faults** (:data:`FAULT_KINDS`): ``429`` (with ``Retry-After`` and ``retry-after-ms`` headers),
  ``500``, ``503``, ``timeout`` (the server holds the request without answering), ``truncated`` (a
  JSON body cut in half), ``malformed`` (a body that is not JSON), ``empty_choices``. Besides
  scripted faults, ``fault_rate`` injects random faults drawn from ``fault_kinds`` (seeded).
* **Latency**: log-normal around ``latency_median_s`` with ``latency_spread`` (sigma), plus a slow tail
  of ``slow_tail_s`` with probability ``slow_tail_p``.
* **Rate limit**: a token bucket of ``rpm_limit`` requests per minute (one second of burst); requests
  over it get 429 with the wait in ``Retry-After``.
* **Like a real server**: ``stop`` sequences cut the reply before the first stop string, ``max_tokens``
  cuts it with ``finish_reason="length"``, ``usage`` holds estimated token counts, ``model`` is echoed.
* **Request log**: :attr:`MockTeacherServer.requests` (one :class:`LoggedRequest` per request, with
  the parsed body, arrival time and returned status); ``GET /mock/stats`` reports counts to other
  processes and ``POST /mock/reset`` clears them.

Example:
    >>> with MockTeacherServer() as server:                       # doctest: +SKIP
    ...     server.script(["hello", Fault("429", retry_after=0.1)])
    ...     teacher = OpenAITeacher(server.base_url, "mock-model")
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import itertools
import json
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mmat.errors import ConfigError
from mmat.llm.serving import BackgroundServer

logger = logging.getLogger(__name__)

FAULT_KINDS = ("429", "500", "503", "timeout", "truncated", "malformed", "empty_choices")


@dataclass(frozen=True)
class Fault:
    """A failure the server returns instead of a reply.

    Args:
        kind: one of :data:`FAULT_KINDS`.
        retry_after: seconds sent in ``Retry-After`` with a 429.
        delay_s: how long a ``timeout`` holds the request (default: until the server stops).
    """

    kind: str
    retry_after: float = 1.0
    delay_s: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ConfigError(f"unknown fault kind {self.kind!r}; valid kinds: {', '.join(FAULT_KINDS)}")


Reply = str | Fault
Responder = Callable[[dict[str, Any]], Reply]


@dataclass
class LoggedRequest:
    """One request the server received. Also readable as a dict (``logged["body"]``)."""

    path: str
    body: dict[str, Any]
    time: float
    status: int = 0
    fault: str | None = None
    prompt_hash: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


# ---------------------------------------------------------------------------------------------------
# The default rule-based responder


def request_text(body: dict[str, Any], role: str | None = None) -> str:
    """The text of a request's messages (image parts left out), optionally of one role only."""
    parts: list[str] = []
    for message in body.get("messages") or []:
        if role is not None and message.get("role") != role:
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(
                p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
            )
    return "\n".join(parts)


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            return request_text({"messages": [message]})
    return ""


def default_responder(body: dict[str, Any]) -> str:
    """Answer deterministically from the request alone (the same request gets the same reply).

    Rules, first match wins (``k`` is the number of assistant messages already in the request,
    ``h`` a short hash of the messages):

    1. JSON wanted (``response_format`` is ``json_object`` or the prompt says ``JSON``):
       a. prompt mentions ``quality_score``: ``{"quality_score": 0.9, "scoring_reason": ...}``;
       b. prompt mentions ``next_action``: a rationale step ``{"thought", "operators": [],
          "rag": {"needed": false, "query": null}, "next_action"}`` with ``next_action`` ``continue``
          while ``k < 2`` and ``final_answer`` after;
       c. otherwise ``{"reply": "mock", "id": h}``.
    2. The system prompt holds ``<THOUGHT>`` (an RR agent): the last user message asking to
       "summarize and give the answer" gets ``mock answer``; otherwise a tagged step
       ``<THOUGHT>Mock step k+1 ...</THOUGHT><SIGNAL>continue</SIGNAL>`` (``end`` once ``k >= 2``).
       With an ORR prompt (``<ANSWER>`` in the system prompt) the reply is
       ``<THOUGHT>...</THOUGHT><ANSWER>The answer is: mock answer</ANSWER>``.
    3. Otherwise: ``mock reply h: <first 60 characters of the last user message>``.
    """
    messages = body.get("messages") or []
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:8]
    k = sum(1 for m in messages if m.get("role") == "assistant")
    text = request_text(body)
    system = request_text(body, "system")
    last_user = _last_user_text(body)
    wants_json = (body.get("response_format") or {}).get("type") == "json_object" or "JSON" in text
    if wants_json:
        if "quality_score" in text:
            return json.dumps({"quality_score": 0.9, "scoring_reason": f"mock judge {digest}: coherent"})
        if "next_action" in text:
            step = {
                "thought": f"Mock step {k + 1} ({digest}): look at the image for the question.",
                "operators": [],
                "rag": {"needed": False, "query": None},
                "next_action": "continue" if k < 2 else "final_answer",
            }
            return json.dumps(step)
        return json.dumps({"reply": "mock", "id": digest})
    if "<ANSWER>" in system:
        return f"<THOUGHT>Mock reasoning {digest}.</THOUGHT><ANSWER>The answer is: mock answer</ANSWER>"
    if "<THOUGHT>" in system:
        if "summarize and give the answer" in last_user:
            return "mock answer"
        signal = "continue" if k < 2 else "end"
        return f"<THOUGHT>Mock step {k + 1} ({digest}).</THOUGHT><SIGNAL>{signal}</SIGNAL>"
    return f"mock reply {digest}: {last_user[:60]}"


# ---------------------------------------------------------------------------------------------------


_DATA_URL = re.compile(r"^data:([^;,]+);base64,")


def _estimate_tokens(body: dict[str, Any]) -> int:
    tokens = 0
    for message in body.get("messages") or []:
        tokens += 4
        content = message.get("content")
        if isinstance(content, str):
            tokens += (len(content) + 3) // 4
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    continue
                if part.get("type") == "text":
                    tokens += (len(part.get("text", "")) + 3) // 4
                elif part.get("type") == "image_url":
                    detail = (part.get("image_url") or {}).get("detail", "auto")
                    tokens += 85 if detail == "low" else 765
    return tokens


def _strip_images(body: dict[str, Any]) -> dict[str, Any]:
    """A copy of the body with base64 image payloads replaced by their size and a quick hash (the
    process's string hash: cheap on 64 KB payloads, stable within one server process)."""
    messages = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                url = (part.get("image_url") or {}).get("url", "") if isinstance(part, dict) else ""
                match = _DATA_URL.match(url) if isinstance(url, str) else None
                if match:
                    payload = url[match.end() :]
                    digest = f"{hash(payload) & 0xFFFFFFFFFFFF:012x}"
                    part = {
                        **part,
                        "image_url": {
                            **part["image_url"],
                            "url": f"data:{match.group(1)};base64,<{len(payload)} chars #{digest}>",
                        },
                    }
                parts.append(part)
            message = {**message, "content": parts}
        messages.append(message)
    return {**body, "messages": messages}


class _TokenBucket:
    def __init__(self, rpm: int, burst_s: float = 1.0) -> None:
        self.rate = rpm / 60.0
        self.capacity = max(1.0, self.rate * burst_s)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> float:
        """0.0 when a token was taken, else the seconds until one is free."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class MockTeacherServer(BackgroundServer):
    """An OpenAI-compatible chat server on 127.0.0.1 with scripted replies, faults and latency.

    Args:
        latency_median_s: median reply latency.
        latency_spread: sigma of the log-normal latency (0 = always the median).
        slow_tail_p: probability that a reply is slowed by ``slow_tail_s`` more.
        slow_tail_s: the slow tail's extra seconds.
        rpm_limit: requests per minute before 429s (token bucket, one second of burst); None = no limit.
        seed: seeds latency and random faults.
        fault_rate: probability that an unscripted request gets a random fault.
        fault_kinds: kinds the random faults are drawn from.
        port: the port to listen on (0 = a free one).
        log_images: keep base64 images in the logged bodies (off: replaced by size and sha256).
        batch_delay_s: how long a batch stays ``in_progress`` before it completes.

    Example:
        >>> with MockTeacherServer(latency_median_s=0.2) as server:   # doctest: +SKIP
        ...     server.script(['{"thought": "x"}', Fault("503")])
        ...     print(server.base_url)
        http://127.0.0.1:40123/v1
    """

    def __init__(
        self,
        *,
        latency_median_s: float = 0.0,
        latency_spread: float = 0.0,
        slow_tail_p: float = 0.0,
        slow_tail_s: float = 0.0,
        rpm_limit: int | None = None,
        seed: int = 0,
        fault_rate: float = 0.0,
        fault_kinds: Iterable[str] = ("429", "500", "503"),
        port: int = 0,
        log_images: bool = False,
        batch_delay_s: float = 0.0,
    ) -> None:
        self.latency_median_s = latency_median_s
        self.latency_spread = latency_spread
        self.slow_tail_p = slow_tail_p
        self.slow_tail_s = slow_tail_s
        self.rpm_limit = rpm_limit
        self.fault_rate = fault_rate
        self.fault_kinds = tuple(fault_kinds)
        for kind in self.fault_kinds:
            Fault(kind)
        self.log_images = log_images
        self.batch_delay_s = batch_delay_s
        self.responder: Responder = default_responder
        self.requests: list[LoggedRequest] = []
        self.batch_expire_after: int | None = None
        self._rng = random.Random(seed)
        self._queue: collections.deque[Reply] = collections.deque()
        self._lock = threading.Lock()
        self._bucket = _TokenBucket(rpm_limit) if rpm_limit else None
        super().__init__(host="127.0.0.1", port=port)
        self._ids = itertools.count(1)
        self._files: dict[str, dict[str, Any]] = {}
        self._batches: dict[str, dict[str, Any]] = {}

    label = "mock teacher server"
    shutdown_timeout_s = 0.5
    site_options: ClassVar[dict[str, Any]] = {"backlog": 1024, "reuse_address": True}

    def build_app(self) -> Any:
        from aiohttp import web

        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/files", self._file_upload)
        app.router.add_get("/v1/files/{file_id}", self._file_get)
        app.router.add_get("/v1/files/{file_id}/content", self._file_content)
        app.router.add_post("/v1/batches", self._batch_create)
        app.router.add_get("/v1/batches/{batch_id}", self._batch_get)
        app.router.add_post("/v1/batches/{batch_id}/cancel", self._batch_cancel)
        app.router.add_get("/mock/stats", self._stats)
        app.router.add_post("/mock/reset", self._reset)
        app.router.add_post("/mock/script", self._remote_script)
        return app

    # -- scripting ---------------------------------------------------------------------------------

    def script(self, replies: Iterable[Reply]) -> None:
        """Queue replies (text or :class:`Fault`), answered first in, first out."""
        items = list(replies)
        for item in items:
            if not isinstance(item, (str, Fault)):
                raise ConfigError(f"a scripted reply must be a str or a Fault, not {type(item).__name__}")
        with self._lock:
            self._queue.extend(items)

    @property
    def pending(self) -> int:
        """Scripted replies not yet used."""
        return len(self._queue)

    @property
    def request_count(self) -> int:
        """Chat completion requests received (batch items included)."""
        return len(self.requests)

    def reset(self) -> None:
        """Forget logged requests and scripted replies."""
        with self._lock:
            self.requests.clear()
            self._queue.clear()

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            if self.fault_rate and self.fault_kinds and self._rng.random() < self.fault_rate:
                return Fault(self._rng.choice(self.fault_kinds), retry_after=0.2)
        return self.responder(body)

    def _latency(self) -> float:
        if not self.latency_median_s and not self.slow_tail_p:
            return 0.0
        with self._lock:
            delay = self.latency_median_s
            if self.latency_spread:
                delay *= math.exp(self.latency_spread * self._rng.gauss(0.0, 1.0))
            if self.slow_tail_p and self._rng.random() < self.slow_tail_p:
                delay += self.slow_tail_s
        return delay

    # -- chat completions --------------------------------------------------------------------------

    def _log(self, path: str, body: dict[str, Any]) -> LoggedRequest:
        stripped = _strip_images(body)
        prompt_hash = hashlib.sha256(
            json.dumps([body.get("model"), stripped.get("messages")], sort_keys=True).encode()
        ).hexdigest()[:16]
        logged = LoggedRequest(
            path=path,
            body=body if self.log_images else stripped,
            time=time.time(),
            prompt_hash=prompt_hash,
        )
        self.requests.append(logged)
        return logged

    def _completion(self, body: dict[str, Any], text: str) -> dict[str, Any]:
        finish = "stop"
        stops = body.get("stop") or []
        if isinstance(stops, str):
            stops = [stops]
        cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
        if cut >= 0:
            text = text[:cut]
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        if isinstance(max_tokens, int) and (len(text) + 3) // 4 > max_tokens:
            text = text[: max_tokens * 4]
            finish = "length"
        prompt_tokens = _estimate_tokens(body)
        completion_tokens = (len(text) + 3) // 4
        return {
            "id": f"chatcmpl-mock-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or "mock-model",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _answer(self, body: dict[str, Any], reply: Reply) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body bytes for one reply (``timeout`` is handled by the caller)."""
        if isinstance(reply, str):
            return 200, {}, json.dumps(self._completion(body, reply)).encode()
        kind = reply.kind
        if kind == "429":
            wait = max(reply.retry_after, 0.0)
            headers = {"Retry-After": str(max(1, math.ceil(wait))), "retry-after-ms": str(int(wait * 1000))}
            error = {"error": {"message": "Rate limit reached (mock)", "type": "rate_limit_exceeded"}}
            return 429, headers, json.dumps(error).encode()
        if kind in ("500", "503"):
            error = {"error": {"message": f"mock server error {kind}", "type": "server_error"}}
            return int(kind), {}, json.dumps(error).encode()
        if kind == "empty_choices":
            payload = self._completion(body, "")
            payload["choices"] = []
            return 200, {}, json.dumps(payload).encode()
        if kind == "malformed":
            return 200, {}, b"<html><body>upstream proxy error</body></html>"
        full = json.dumps(self._completion(body, "this reply was cut off in transit")).encode()
        return 200, {}, full[: len(full) // 2]

    async def _chat(self, request: Any) -> Any:
        from aiohttp import web

        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            return web.json_response({"error": {"message": "request body is not JSON"}}, status=400)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return web.json_response({"error": {"message": "'messages' must be a list"}}, status=400)
        logged = self._log(request.path, body)
        if self._bucket is not None:
            with self._lock:
                wait = self._bucket.take()
            if wait > 0:
                logged.status, logged.fault = 429, "rpm"
                status, headers, payload = self._answer(body, Fault("429", retry_after=wait))
                return web.Response(
                    status=status, headers=headers, body=payload, content_type="application/json"
                )
        reply = self._next_reply(body)
        delay = self._latency()
        if delay:
            await asyncio.sleep(delay)
        if isinstance(reply, Fault):
            logged.fault = reply.kind
            if reply.kind == "timeout":
                logged.status = 0
                if self._stop_event is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop_event.wait(), reply.delay_s or 3600.0)
                return web.json_response({"error": {"message": "mock timeout elapsed"}}, status=504)
        status, headers, payload = self._answer(body, reply)
        logged.status = status
        return web.Response(status=status, headers=headers, body=payload, content_type="application/json")

    async def _models(self, request: Any) -> Any:
        from aiohttp import web

        seen = sorted(
            {str(r.body.get("model")) for r in self.requests if r.body.get("model")} | {"mock-model"}
        )
        return web.json_response(
            {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "mmat-mock"} for m in seen]}
        )

    # -- remote control ----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts of the request log (also served at ``GET /mock/stats``)."""
        by_status: collections.Counter[str] = collections.Counter()
        by_fault: collections.Counter[str] = collections.Counter()
        hashes: collections.Counter[str] = collections.Counter()
        ok_hashes: collections.Counter[str] = collections.Counter()
        for logged in list(self.requests):
            by_status[str(logged.status)] += 1
            if logged.fault:
                by_fault[logged.fault] += 1
            hashes[logged.prompt_hash] += 1
            if logged.status == 200:
                ok_hashes[logged.prompt_hash] += 1
        return {
            "requests": len(self.requests),
            "by_status": dict(by_status),
            "by_fault": dict(by_fault),
            "unique_prompts": len(hashes),
            "ok_requests": sum(ok_hashes.values()),
            "ok_unique_prompts": len(ok_hashes),
            "first_time": self.requests[0].time if self.requests else None,
            "last_time": self.requests[-1].time if self.requests else None,
        }

    async def _stats(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response(self.stats())

    async def _reset(self, request: Any) -> Any:
        from aiohttp import web

        self.reset()
        return web.json_response({"ok": True})

    async def _remote_script(self, request: Any) -> Any:
        from aiohttp import web

        try:
            self.script(parse_script(await request.json()))
        except (ValueError, ConfigError) as error:
            return web.json_response({"error": {"message": str(error)}}, status=400)
        return web.json_response({"ok": True, "pending": self.pending})

    # -- Batch API ---------------------------------------------------------------------------------

    async def _file_upload(self, request: Any) -> Any:
        from aiohttp import web

        form = await request.post()
        upload = form.get("file")
        if upload is None or not hasattr(upload, "file"):
            return web.json_response({"error": {"message": "multipart field 'file' is missing"}}, status=400)
        data = upload.file.read()
        return web.json_response(
            self._store_file(data, upload.filename or "upload.jsonl", str(form.get("purpose", "batch")))
        )

    def _store_file(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        file_id = f"file-mock-{next(self._ids)}"
        meta = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
        }
        self._files[file_id] = {"meta": meta, "data": data}
        return meta

    async def _file_get(self, request: Any) -> Any:
        from aiohttp import web

        found = self._files.get(request.match_info["file_id"])
        if found is None:
            return web.json_response({"error": {"message": "no such file"}}, status=404)
        return web.json_response(found["meta"])

    async def _file_content(self, request: Any) -> Any:
        from aiohttp import web

        found = self._files.get(request.match_info["file_id"])
        if found is None:
            return web.json_response({"error": {"message": "no such file"}}, status=404)
        return web.Response(body=found["data"], content_type="application/octet-stream")

    async def _batch_create(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.json()
        input_id = body.get("input_file_id")
        if input_id not in self._files:
            return web.json_response({"error": {"message": f"input file {input_id!r} not found"}}, status=400)
        if body.get("endpoint") != "/v1/chat/completions":
            return web.json_response({"error": {"message": "only /v1/chat/completions batches"}}, status=400)
        batch_id = f"batch_mock_{next(self._ids)}"
        batch = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body["endpoint"],
            "input_file_id": input_id,
            "completion_window": body.get("completion_window", "24h"),
            "status": "in_progress",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": int(time.time()),
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
        }
        self._batches[batch_id] = batch
        asyncio.get_running_loop().create_task(self._run_batch(batch))
        return web.json_response(batch)

    async def _run_batch(self, batch: dict[str, Any]) -> None:
        if self.batch_delay_s:
            await asyncio.sleep(self.batch_delay_s)
        if batch["status"] == "cancelling":
            batch["status"] = "cancelled"
            return
        lines = self._files[batch["input_file_id"]]["data"].decode().splitlines()
        outputs, errors = [], []
        completed = failed = 0
        expired = False
        for number, line in enumerate(line for line in lines if line.strip()):
            item = json.loads(line)
            custom_id = item.get("custom_id")
            if self.batch_expire_after is not None and number >= self.batch_expire_after:
                expired = True
                errors.append(
                    {
                        "id": f"batch_req_{next(self._ids)}",
                        "custom_id": custom_id,
                        "response": None,
                        "error": {"code": "batch_expired", "message": "not done within the window"},
                    }
                )
                failed += 1
                continue
            body = item.get("body") or {}
            logged = self._log("/v1/chat/completions (batch)", body)
            reply = self._next_reply(body)
            if isinstance(reply, Fault) and reply.kind == "timeout":
                reply = Fault("500")
            status, _, payload = self._answer(body, reply)
            logged.status = status
            logged.fault = reply.kind if isinstance(reply, Fault) else None
            try:
                parsed: Any = json.loads(payload)
            except ValueError:
                parsed = payload.decode(errors="replace")
            entry = {
                "id": f"batch_req_{next(self._ids)}",
                "custom_id": custom_id,
                "response": {"status_code": status, "request_id": f"req_{next(self._ids)}", "body": parsed},
                "error": None,
            }
            if status == 200:
                outputs.append(entry)
                completed += 1
            else:
                errors.append(entry)
                failed += 1
        batch["request_counts"] = {"total": completed + failed, "completed": completed, "failed": failed}
        if outputs:
            data = "".join(json.dumps(o) + "\n" for o in outputs).encode()
            batch["output_file_id"] = self._store_file(data, "output.jsonl", "batch_output")["id"]
        if errors:
            data = "".join(json.dumps(e) + "\n" for e in errors).encode()
            batch["error_file_id"] = self._store_file(data, "errors.jsonl", "batch_output")["id"]
        batch["status"] = "expired" if expired else "completed"

    async def _batch_get(self, request: Any) -> Any:
        from aiohttp import web

        batch = self._batches.get(request.match_info["batch_id"])
        if batch is None:
            return web.json_response({"error": {"message": "no such batch"}}, status=404)
        return web.json_response(batch)

    async def _batch_cancel(self, request: Any) -> Any:
        from aiohttp import web

        batch = self._batches.get(request.match_info["batch_id"])
        if batch is None:
            return web.json_response({"error": {"message": "no such batch"}}, status=404)
        if batch["status"] == "in_progress":
            batch["status"] = "cancelling"
        return web.json_response(batch)


def parse_script(items: Any) -> list[Reply]:
    """Turn a JSON script (``["text", {"fault": "429", "retry_after": 2}]``) into replies."""
    if not isinstance(items, list):
        raise ConfigError('a mock script must be a JSON list of strings and {"fault": kind} objects')
    replies: list[Reply] = []
    for item in items:
        if isinstance(item, str):
            replies.append(item)
        elif isinstance(item, dict) and "fault" in item:
            replies.append(
                Fault(
                    str(item["fault"]),
                    retry_after=float(item.get("retry_after", 1.0)),
                    delay_s=item.get("delay_s"),
                )
            )
        else:
            raise ConfigError(f'bad mock script item {item!r}: use a string or {{"fault": "429"}}')
    return replies


def encode_data_url(data: bytes, mime: str = "image/png") -> str:
    """A ``data:`` URL of ``data`` (used by tests that script image requests by hand)."""
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"
