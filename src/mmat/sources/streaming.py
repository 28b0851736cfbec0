"""Streaming readers: JSON Lines and one big JSON object or array, never held in memory whole.

Both yield ``(location, value)`` pairs, or ``(location, RecordError)`` for a bad line, so the caller
turns a bad line into a reject and goes on. ``location`` is ``file:line`` for JSON Lines and
``file@offset`` (character offset) for a JSON document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from mmat.errors import RecordError

_DECODER = json.JSONDecoder()
_NON_WHITESPACE = re.compile(r"[^ \t\n\r]")
CHUNK_CHARS = 1 << 20


def iter_jsonl(path: Path) -> Iterator[tuple[str, Any | RecordError]]:
    """Yield ``(file:line, parsed value)`` for each non-blank line of a JSON Lines file.

    A line that is not valid JSON (or not UTF-8) yields a :class:`RecordError` with reason
    ``bad_json`` instead of a value; the next line is read as usual.
    """
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            location = f"{path}:{number}"
            try:
                yield location, json.loads(line)
            except UnicodeDecodeError as error:
                yield (
                    location,
                    RecordError(
                        "bad_encoding",
                        f"line is not UTF-8 ({error}); re-encode the file as UTF-8",
                        location=location,
                    ),
                )
            except ValueError as error:
                yield (
                    location,
                    RecordError(
                        "bad_json",
                        f"line is not valid JSON ({error}); fix or delete the line",
                        location=location,
                    ),
                )


class _Buffer:
    """A sliding text window over a file, refilled on demand."""

    def __init__(self, handle: TextIO, chunk: int) -> None:
        self.handle = handle
        self.chunk = chunk
        self.text = ""
        self.pos = 0
        self.consumed = 0  # characters dropped from the front of ``text``
        self.eof = False

    def fill(self) -> bool:
        """Read one more chunk; False at end of file."""
        if self.eof:
            return False
        data = self.handle.read(self.chunk)
        if not data:
            self.eof = True
            return False
        if self.pos > len(self.text) // 2:
            self.consumed += self.pos
            self.text = self.text[self.pos :]
            self.pos = 0
        self.text += data
        return True

    def skip_ws(self) -> str:
        """Skip whitespace and return the next character ('' at end of file) without consuming it."""
        while True:
            found = _NON_WHITESPACE.search(self.text, self.pos)
            if found is not None:
                self.pos = found.start()
                return self.text[self.pos]
            self.pos = len(self.text)
            if not self.fill():
                return ""

    def decode(self) -> Any:
        """Decode one JSON value at the cursor, reading more of the file when it is cut off."""
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as error:
                # Only an error at the end of the window (or an unterminated string) can be a cut;
                # anything earlier is a real syntax error and reading on would not fix it.
                # (a literal like ``nul`` or an escape like ``\u00`` cut short fails a few characters
                # before the end, hence the margin).
                cut = error.pos >= len(self.text) - 8 or error.msg.startswith("Unterminated string")
                if cut and self.fill():
                    continue
                raise
            # A number at the very end of the window may continue in the next chunk.
            if end == len(self.text) and not self.eof and self.fill():
                continue
            self.pos = end
            return value

    @property
    def offset(self) -> int:
        return self.consumed + self.pos


def iter_json_items(path: Path, *, chunk_chars: int = CHUNK_CHARS) -> Iterator[tuple[str, Any | RecordError]]:
    """Stream the members of a top-level JSON object or array without loading the whole document.

    For an object each value is yielded as ``(location, (key, value))``; for an array as
    ``(location, value)``. Memory stays at about one chunk plus one member. A syntax error cannot be
    skipped inside one document, so it yields one ``bad_json`` :class:`RecordError` saying where the
    file broke and how many members were read, and stops that file.
    """
    with path.open("r", encoding="utf-8") as handle:
        buf = _Buffer(handle, chunk_chars)
        read = 0
        try:
            opening = buf.skip_ws()
            if opening not in ("{", "["):
                raise _Syntax("the file must hold one JSON object or array")
            buf.pos += 1
            closing = "}" if opening == "{" else "]"
            first = True
            while True:
                char = buf.skip_ws()
                if char == closing:
                    return
                if not first:
                    if char != ",":
                        raise _Syntax(f"expected ',' or {closing!r}")
                    buf.pos += 1
                    buf.skip_ws()
                first = False
                location = f"{path}@{buf.offset}"
                if opening == "{":
                    key = buf.decode()
                    if not isinstance(key, str):
                        raise _Syntax("object keys must be strings")
                    if buf.skip_ws() != ":":
                        raise _Syntax("expected ':' after a key")
                    buf.pos += 1
                    buf.skip_ws()
                    yield location, (key, buf.decode())
                else:
                    yield location, buf.decode()
                read += 1
        except (_Syntax, json.JSONDecodeError, UnicodeDecodeError) as error:
            where = f"{path}@{buf.offset}"
            yield (
                where,
                RecordError(
                    "bad_json",
                    f"the JSON document is broken here ({error}); {read} members before it were read and "
                    "the rest of the file was skipped. Fix the file (python -m json.tool shows the spot)",
                    location=where,
                ),
            )


class _Syntax(ValueError):
    pass
