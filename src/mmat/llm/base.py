"""The teacher interface: ``Teacher.complete(messages, params) -> Completion``.

Messages hold images by reference (:class:`ImagePart` wraps an :class:`~mmat.schema.ImageRef`);
a client encodes them at send time. Teachers raise :class:`~mmat.errors.TeacherError` with a
``kind`` the engine uses for its retry budgets; they never retry themselves.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mmat.schema import ImageRef


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Model):
    type: Literal["text"] = "text"
    text: str


class ImagePart(_Model):
    type: Literal["image"] = "image"
    image: ImageRef
    detail: Literal["low", "high", "auto"] = "auto"


class ChatMessage(_Model):
    """One chat message; ``content`` is a string or a list of text and image parts."""

    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart | ImagePart]

    def text(self) -> str:
        """The message's text with image parts left out."""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if isinstance(part, TextPart))


class DecodingParams(_Model):
    temperature: float = 0.0
    max_tokens: int = 1024
    top_p: float | None = None
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None
    json_mode: bool = False


class Usage(_Model):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    image_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Completion(_Model):
    """A teacher's reply with its cost and timing."""

    text: str
    finish_reason: str | None = None
    model: str = ""
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    latency_s: float = 0.0
    cached: bool = False


def messages_fingerprint(messages: list[ChatMessage]) -> str:
    """Hash messages with images as their sha256 (never their path or bytes)."""

    def part(p: TextPart | ImagePart) -> Any:
        if isinstance(p, TextPart):
            return {"t": p.text}
        return {"i": p.image.sha256 or p.image.path, "d": p.detail}

    blob = [
        {"r": m.role, "c": m.content if isinstance(m.content, str) else [part(p) for p in m.content]}
        for m in messages
    ]
    return hashlib.sha256(json.dumps(blob, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class Teacher(ABC):
    """A chat model that writes rationales, judges or captions.

    Subclasses set ``name`` and ``model`` and implement :meth:`complete`. ``grade`` says whether the
    output is fit for training data (``"production"``) or only exercises the plumbing (``"plumbing"``).
    """

    name: str = "teacher"
    model: str = ""
    grade: Literal["production", "plumbing"] = "production"
    supports_images: bool = True

    @abstractmethod
    async def complete(self, messages: list[ChatMessage], params: DecodingParams) -> Completion:
        """Return one completion or raise :class:`~mmat.errors.TeacherError`."""

    def fingerprint(self) -> str:
        """What identifies this teacher in cache keys (never the API key)."""
        return f"{self.name}:{self.model}"

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
