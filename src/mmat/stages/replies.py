"""Reading the teacher's JSON replies: extract, repair, validate.

Teachers wrap JSON in code fences, add prose around it, use single quotes or Python literals, leave
trailing commas, or answer ``"operators": "ocr, label_bbox"``. :func:`extract_json_object` repairs what
is unambiguous; :func:`parse_step_reply` validates a Rationale step. Both raise
:class:`ReplyFormatError` with a message written for the teacher, which the stage sends back when it
re-asks.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any

from mmat.errors import MmatError
from mmat.wire import canonical_operator

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_SMART_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})


class ReplyFormatError(MmatError):
    """A teacher reply is not the JSON object the prompt asked for; the message says what is wrong."""


def _balanced_object(text: str) -> str | None:
    """The first balanced ``{...}`` in ``text``, respecting strings."""
    start = text.find("{")
    while start >= 0:
        depth = 0
        quote: str | None = None
        escaped = False
        for index in range(start, len(text)):
            char = text[index]
            if quote:
                if escaped:
                    escaped = False
                elif char == "\\":
                    escaped = True
                elif char == quote:
                    quote = None
                continue
            if char in "\"'":
                quote = char
            elif char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    return text[start : index + 1]
        start = text.find("{", start + 1)
    return None


def extract_json_object(text: str) -> dict[str, Any]:
    """Return the JSON object in a teacher reply, repairing fences, prose, quotes and trailing commas.

    Raises:
        ReplyFormatError: when no object can be recovered.
    """
    fenced = _FENCE.search(text)
    body = fenced.group(1) if fenced else text
    candidate = _balanced_object(body.translate(_SMART_QUOTES))
    if candidate is None:
        if "{" in body:
            raise ReplyFormatError("the JSON object is not closed (a '}' is missing); send the whole object")
        raise ReplyFormatError("no JSON object found; reply with one JSON object and no other text")
    for attempt in (candidate, _TRAILING_COMMA.sub(r"\1", candidate)):
        try:
            value = json.loads(attempt)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    pythonish = re.sub(
        r"\bnull\b", "None", re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", candidate))
    )
    try:
        value = ast.literal_eval(_TRAILING_COMMA.sub(r"\1", pythonish))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        try:
            json.loads(candidate)
        except json.JSONDecodeError as error:
            raise ReplyFormatError(f"the JSON is malformed ({error.msg} at character {error.pos})") from None
        raise ReplyFormatError("the JSON is malformed") from None
    if not isinstance(value, dict):
        raise ReplyFormatError("the reply must be a JSON object")
    return value


@dataclass
class TeacherStep:
    """One Rationale step as the teacher wrote it, validated."""

    thought: str
    operators: list[str]
    rag_query: str | None
    final: bool


_FINAL_WORDS = {"final_answer", "final", "answer", "end", "stop", "finish", "done"}
_CONTINUE_WORDS = {"continue", "next", "more", "go_on"}


def parse_step_reply(text: str) -> TeacherStep:
    """Validate a Rationale step reply ``{thought, operators, rag{needed, query}, next_action}``.

    Raises:
        ReplyFormatError: naming the field that is missing or wrong.
    """
    data = extract_json_object(text)
    thought = data.get("thought")
    if not isinstance(thought, str) or not thought.strip():
        raise ReplyFormatError('"thought" must be a non-empty string holding one reasoning step')
    thought = " ".join(thought.split())
    if re.search(r"</?(THOUGHT|OPERATOR|RAG|SIGNAL|ANSWER)>", thought, re.IGNORECASE):
        raise ReplyFormatError('"thought" must be plain text without <THOUGHT>/<SIGNAL>-style tags')
    raw_ops = data.get("operators", [])
    if raw_ops is None:
        raw_ops = []
    if isinstance(raw_ops, str):
        raw_ops = [part for part in re.split(r"[,;]", raw_ops)]
    if not isinstance(raw_ops, list) or not all(isinstance(op, str) for op in raw_ops):
        raise ReplyFormatError('"operators" must be a list of operator names, e.g. ["ocr"] or []')
    operators: list[str] = []
    for op in raw_ops:
        name = canonical_operator(op)
        if name and name not in ("none", "null", "rag") and name not in operators:
            operators.append(name)
    rag = data.get("rag")
    query: str | None = None
    if isinstance(rag, str):
        query = rag.strip() or None
    elif isinstance(rag, dict):
        needed = rag.get("needed", bool(rag.get("query")))
        if isinstance(needed, str):
            needed = needed.strip().lower() in ("true", "yes", "1")
        if needed:
            raw_query = rag.get("query")
            if not isinstance(raw_query, str) or not raw_query.strip():
                raise ReplyFormatError(
                    '"rag" says needed but has no "query"; give a short search query or set needed to false'
                )
            query = " ".join(raw_query.split())
    elif rag not in (None, False):
        raise ReplyFormatError('"rag" must be {"needed": true|false, "query": "..."|null}')
    if query is not None and re.search(r"</RAG>|<SIGNAL>", query, re.IGNORECASE):
        raise ReplyFormatError('"rag.query" must be plain text')
    action = data.get("next_action", "continue")
    if not isinstance(action, str):
        raise ReplyFormatError('"next_action" must be "continue" or "final_answer"')
    word = canonical_operator(action)
    if word in _FINAL_WORDS:
        final = True
    elif word in _CONTINUE_WORDS:
        final = False
    else:
        raise ReplyFormatError(f'"next_action" is {action!r}; it must be "continue" or "final_answer"')
    return TeacherStep(thought=thought, operators=operators, rag_query=query, final=final)


_ANSWER_PREFIX = re.compile(
    r"\A\s*(?:(?:the\s+)?(?:final\s+)?answer\s*(?:is)?\s*[:：]?|<ANSWER>)\s*", re.IGNORECASE
)


def clean_final_answer(text: str) -> str:
    """The short final answer from a summarise reply: no 'The answer is:', tags, quotes or final period."""
    answer = text.strip()
    answer = re.sub(r"</?ANSWER>", "", answer, flags=re.IGNORECASE).strip()
    answer = _ANSWER_PREFIX.sub("", answer, count=1).strip()
    answer = answer.strip("*` ").strip()
    if len(answer) >= 2 and answer[0] == answer[-1] and answer[0] in "\"'":
        answer = answer[1:-1].strip()
    if answer.endswith(".") and not re.search(r"(?:\b[A-Za-z]\.){2,}\Z", answer):
        answer = answer[:-1].rstrip()
    return answer.splitlines()[0].strip() if answer else answer


def as_bool(value: Any) -> bool:
    """A judge's boolean, accepting ``"true"``/``"yes"``/``1``."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "y")
    return bool(value)
