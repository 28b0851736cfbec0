"""Repair UTF-8 text that was decoded as Windows-1252/Latin-1 ("donâ€™t" -> "don't"), when safe.

Safe means: the text shows the tell-tale characters of that mistake, re-encoding it gives bytes that
are valid UTF-8, and the result has fewer tell-tale characters. Anything else is left as it is.
"""

from __future__ import annotations

import re

# Lead characters of UTF-8 sequences seen through cp1252/latin-1 (Ã Â â ð Å Ä Ë ...), followed by a
# continuation-looking character.
_SUSPECT = re.compile(
    "[\u00c2-\u00f4][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013-\u2122]"
)
_CP1252_UNDEFINED = {0x81, 0x8D, 0x8F, 0x90, 0x9D}


def _to_bytes(text: str) -> bytes | None:
    """Undo a cp1252 decode (latin-1 for the five bytes cp1252 leaves undefined)."""
    out = bytearray()
    for char in text:
        code = ord(char)
        if code < 0x80:
            out.append(code)
            continue
        try:
            out += char.encode("cp1252")
        except UnicodeEncodeError:
            if code in _CP1252_UNDEFINED or 0x80 <= code <= 0xFF:
                out.append(code)
            else:
                return None
    return bytes(out)


def repair_mojibake(text: str) -> str | None:
    """The repaired text, or ``None`` when ``text`` shows no mojibake or cannot be repaired safely.

    Example:
        >>> repair_mojibake("donâ€™t stop")
        'don’t stop'
        >>> repair_mojibake("café") is None
        True
    """
    if text.isascii() or not _SUSPECT.search(text):
        return None
    current = text
    for _ in range(2):  # text mangled twice is common enough
        raw = _to_bytes(current)
        if raw is None:
            break
        try:
            fixed = raw.decode("utf-8")
        except UnicodeDecodeError:
            break
        if fixed == current or len(_SUSPECT.findall(fixed)) >= len(_SUSPECT.findall(current)):
            break
        current = fixed
        if not _SUSPECT.search(current):
            break
    if current == text or any(ord(c) < 32 and c not in "\t\n\r" for c in current):
        return None
    return current
