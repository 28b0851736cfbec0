"""The OpenAI Batch API: prepare a JSONL of chat requests, upload it, create a batch, poll, collect.

Requests that come back failed (5xx, 429) or not done when the batch expired are resubmitted in a
new batch, up to ``resubmits`` times; client errors (4xx) are final. Batch prices are usually half
the online ones: ``discount`` scales the cost recorded per call.

Example:
    >>> client = BatchClient(OpenAITeacher(url, "gpt-4o"), poll_interval_s=30)      # doctest: +SKIP
    >>> done, failed = await client.run({"k1": (messages, DecodingParams())})
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from mmat.errors import TeacherError
from mmat.llm.base import ChatMessage, Completion, DecodingParams
from mmat.llm.openai_client import OpenAITeacher

logger = logging.getLogger(__name__)

TERMINAL = {"completed", "failed", "expired", "cancelled"}
ENDPOINT = "/v1/chat/completions"

BatchRequest = tuple[list[ChatMessage], DecodingParams]


class BatchClient:
    """Runs chat requests through ``/v1/files`` and ``/v1/batches`` of an OpenAI-compatible server.

    Args:
        teacher: the online client whose URL, key, model and request shape the batch reuses.
        poll_interval_s: seconds between status polls.
        completion_window: the batch window sent to the server.
        max_requests: requests per batch (larger request sets are split).
        resubmits: how many times failed or expired requests go into a new batch.
        discount: multiplies the online cost of each call (OpenAI batches cost half).
    """

    def __init__(
        self,
        teacher: OpenAITeacher,
        *,
        poll_interval_s: float = 30.0,
        completion_window: str = "24h",
        max_requests: int = 50_000,
        resubmits: int = 3,
        discount: float = 0.5,
    ) -> None:
        self.teacher = teacher
        self.poll_interval_s = poll_interval_s
        self.completion_window = completion_window
        self.max_requests = max(1, max_requests)
        self.resubmits = resubmits
        self.discount = discount
        self.stats = {"batches": 0, "requests": 0, "resubmitted": 0, "failed": 0}

    def prepare_jsonl(self, requests: dict[str, BatchRequest]) -> bytes:
        """One line per request: ``{"custom_id", "method": "POST", "url", "body"}``."""
        lines = []
        for custom_id, (messages, params) in requests.items():
            body = self.teacher.request_body(messages, params)
            lines.append(
                json.dumps({"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body})
            )
        return ("\n".join(lines) + "\n").encode()

    async def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        session = await self.teacher._client()
        url = f"{self.teacher.base_url}{path}"
        headers = {k: v for k, v in self.teacher._headers.items() if k != "Content-Type"}
        try:
            async with session.request(method, url, headers=headers, **kwargs) as response:
                raw = await response.read()
                if response.status != 200:
                    raise self.teacher._http_error(url, response.status, raw, response.headers)
        except TimeoutError:
            raise TeacherError(
                "timeout", f"{url} did not answer within {self.teacher.timeout_s:g} s"
            ) from None
        try:
            data = json.loads(raw)
        except ValueError:
            raise TeacherError("malformed", f"{url} answered with a body that is not JSON") from None
        if not isinstance(data, dict):
            raise TeacherError("malformed", f"{url} answered {str(data)[:200]}, not an object")
        return data

    async def _content(self, file_id: str) -> bytes:
        session = await self.teacher._client()
        url = f"{self.teacher.base_url}/files/{file_id}/content"
        headers = {k: v for k, v in self.teacher._headers.items() if k != "Content-Type"}
        async with session.get(url, headers=headers) as response:
            raw = await response.read()
            if response.status != 200:
                raise self.teacher._http_error(url, response.status, raw, response.headers)
            return raw

    async def submit(self, requests: dict[str, BatchRequest]) -> dict[str, Any]:
        """Upload the JSONL and create the batch; returns the batch object."""
        import aiohttp

        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field(
            "file",
            self.prepare_jsonl(requests),
            filename="mmat-batch.jsonl",
            content_type="application/jsonl",
        )
        uploaded = await self._json("POST", "/files", data=form)
        batch = await self._json(
            "POST",
            "/batches",
            json={
                "input_file_id": uploaded["id"],
                "endpoint": ENDPOINT,
                "completion_window": self.completion_window,
                "metadata": {"producer": "mmat"},
            },
        )
        self.stats["batches"] += 1
        self.stats["requests"] += len(requests)
        logger.info("submitted batch %s with %d requests", batch.get("id"), len(requests))
        return batch

    async def wait(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Poll until the batch is completed, failed, expired or cancelled."""
        while batch.get("status") not in TERMINAL:
            await asyncio.sleep(self.poll_interval_s)
            batch = await self._json("GET", f"/batches/{batch['id']}")
        return batch

    async def collect(
        self, batch: dict[str, Any], requests: dict[str, BatchRequest]
    ) -> tuple[dict[str, Completion], dict[str, TeacherError]]:
        """Read the output and error files: completions by id, and errors by id (missing = expired)."""
        done: dict[str, Completion] = {}
        errors: dict[str, TeacherError] = {}
        if batch.get("output_file_id"):
            for line in (await self._content(batch["output_file_id"])).decode().splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                custom_id = item.get("custom_id")
                if custom_id not in requests:
                    continue
                response = item.get("response") or {}
                try:
                    completion = self.teacher._parse(
                        "batch", json.dumps(response.get("body")).encode(), requests[custom_id][0], 0.0
                    )
                except TeacherError as error:
                    errors[custom_id] = error
                    continue
                done[custom_id] = completion.model_copy(
                    update={"cost_usd": completion.cost_usd * self.discount}
                )
        if batch.get("error_file_id"):
            for line in (await self._content(batch["error_file_id"])).decode().splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                custom_id = item.get("custom_id")
                if custom_id not in requests or custom_id in done:
                    continue
                response = item.get("response") or {}
                status = int(response.get("status_code") or 0)
                problem = item.get("error") or (response.get("body") or {}).get("error") or {}
                message = (
                    f"batch request {custom_id}: {problem.get('message') or problem.get('code') or status}"
                )
                if status == 429:
                    errors[custom_id] = TeacherError("rate_limit", message)
                elif 400 <= status < 500:
                    errors[custom_id] = TeacherError("client", message)
                else:
                    errors[custom_id] = TeacherError("server", message)
        for custom_id in requests:
            if custom_id not in done and custom_id not in errors:
                errors[custom_id] = TeacherError(
                    "timeout",
                    f"batch request {custom_id} was not done when batch {batch.get('id')} ended ({batch.get('status')})",
                )
        return done, errors

    async def run(
        self, requests: dict[str, BatchRequest]
    ) -> tuple[dict[str, Completion], dict[str, TeacherError]]:
        """Run every request to completion or final failure (resubmitting failed and expired ones)."""
        done: dict[str, Completion] = {}
        errors: dict[str, TeacherError] = {}
        pending = dict(requests)
        for round_number in range(self.resubmits + 1):
            if not pending:
                break
            if round_number:
                self.stats["resubmitted"] += len(pending)
                logger.info("resubmitting %d failed or expired batch requests", len(pending))
            retry: dict[str, BatchRequest] = {}
            ids = list(pending)
            for start in range(0, len(ids), self.max_requests):
                part = {key: pending[key] for key in ids[start : start + self.max_requests]}
                started = time.monotonic()
                batch = await self.wait(await self.submit(part))
                got, failed = await self.collect(batch, part)
                for completion in got.values():
                    completion.latency_s = time.monotonic() - started
                done.update(got)
                for key, error in failed.items():
                    if error.kind == "client":
                        errors[key] = error
                    else:
                        retry[key] = part[key]
                        errors[key] = error
            for key in done:
                errors.pop(key, None)
            pending = retry
        self.stats["failed"] = len(errors)
        return done, errors
