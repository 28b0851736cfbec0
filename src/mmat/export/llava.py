"""LLaVA's instruction format: ``image`` + ``conversations``, the system prompt folded into the first turn."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from mmat.errors import RecordError, WireFormatError
from mmat.export.conversation import ConversationExporter, Message
from mmat.schema import Sample

SYSTEM_OPEN = "<mmat_system>\n"
SYSTEM_CLOSE = "\n</mmat_system>\n\n"
"""Markers around the folded system prompt, so :func:`unfold_system` can take it out again."""

_LEADING_IMAGES = re.compile(r"\A(?:<image>\n)*")
_FROM = {"user": "human", "assistant": "gpt"}
_ROLE = {"human": "user", "gpt": "assistant"}


def fold_system(system: str, conversations: list[dict[str, str]]) -> list[dict[str, str]]:
    """Put ``system`` into the first human turn, after its leading ``<image>`` lines, between markers.

    LLaVA rows have no system field. The markers make the fold reversible: ``unfold_system`` returns
    exactly the system prompt and turns given here.

    Raises:
        WireFormatError: the system prompt holds the closing marker, or the first turn already starts
            with the opening marker (the fold could not be undone).
    """
    if not conversations or conversations[0].get("from") != "human":
        raise WireFormatError("a LLaVA conversation must start with a human turn", str(conversations[:1]))
    first = conversations[0]["value"]
    prefix = _LEADING_IMAGES.match(first)
    assert prefix is not None
    rest = first[prefix.end() :]
    if rest.startswith(SYSTEM_OPEN):
        raise WireFormatError(
            f"the first turn already starts with {SYSTEM_OPEN.strip()!r}; a fold would be ambiguous", first
        )
    if not system:
        return [dict(turn) for turn in conversations]
    if SYSTEM_CLOSE in system:
        raise WireFormatError(
            f"the system prompt contains the fold marker {SYSTEM_CLOSE.strip()!r}; remove it", system
        )
    folded = prefix.group(0) + SYSTEM_OPEN + system + SYSTEM_CLOSE + rest
    return [{**conversations[0], "value": folded}, *(dict(turn) for turn in conversations[1:])]


def unfold_system(conversations: list[dict[str, str]]) -> tuple[str, list[dict[str, str]]]:
    """Undo :func:`fold_system`: return the system prompt ("" if none was folded) and the original turns."""
    if not conversations:
        return "", []
    first = conversations[0]["value"]
    prefix = _LEADING_IMAGES.match(first)
    assert prefix is not None
    rest = first[prefix.end() :]
    if not rest.startswith(SYSTEM_OPEN):
        return "", [dict(turn) for turn in conversations]
    end = rest.find(SYSTEM_CLOSE, len(SYSTEM_OPEN))
    if end < 0:
        raise WireFormatError(f"a folded system prompt lacks its closing {SYSTEM_CLOSE.strip()!r}", first)
    system = rest[len(SYSTEM_OPEN) : end]
    original = prefix.group(0) + rest[end + len(SYSTEM_CLOSE) :]
    return system, [{**conversations[0], "value": original}, *(dict(turn) for turn in conversations[1:])]


def llava_to_messages(row: dict[str, Any]) -> list[Message]:
    """The ``(role, content)`` messages of a LLaVA row, its folded system prompt restored first."""
    system, turns = unfold_system(row["conversations"])
    messages: list[Message] = [("system", system)] if system else []
    return messages + [(_ROLE[turn["from"]], turn["value"]) for turn in turns]


class LlavaExporter(ConversationExporter):
    """Writes LLaVA's format: ``{"id", "image", "conversations": [{"from": "human"|"gpt", "value"}...]}``.

    ``image`` is a string for one image and a list for several. LLaVA has no system field, so the
    system prompt is folded into the first human turn between ``<mmat_system>`` markers, after the
    ``<image>`` lines; :func:`unfold_system` takes it out again losslessly. With relative image paths,
    give the export directory as LLaVA's ``--image_folder``.

    Example:
        >>> LlavaExporter(image_paths="relative").export(samples, Path("out/llava"))
    """

    name: ClassVar[str] = "llava"
    description: ClassVar[str] = "LLaVA (image + conversations), system prompt folded into the first turn"

    def row(self, sample: Sample, messages: list[Message], images: list[str]) -> dict[str, Any]:
        has_system = bool(messages) and messages[0][0] == "system"
        system = messages[0][1] if has_system else ""
        body = messages[1:] if has_system else messages
        turns = []
        for role, content in body:
            if role not in _FROM:
                raise RecordError(
                    "bad_role", f"LLaVA rows hold human/gpt turns, not {role!r}", record_id=sample.id
                )
            turns.append({"from": _FROM[role], "value": content})
        try:
            conversations = fold_system(system, turns)
        except WireFormatError as error:
            raise RecordError("bad_system_fold", str(error), record_id=sample.id) from None
        return {
            "id": sample.id,
            "image": images[0] if len(images) == 1 else images,
            "conversations": conversations,
            "source": sample.source,
            "license": sample.license,
            "non_commercial": sample.non_commercial,
        }
