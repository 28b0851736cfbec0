"""Images as the model sees them: base64 data URLs, encoded once and reused on every turn.

An RR run resends the whole history on each turn; the image part must be byte-identical each time (so
server prefix caches hit) and should not be read and encoded again. :class:`ImageEncoder` keeps the
encoded form of the last few images, keyed by where they live and the file's size and mtime.
"""

from __future__ import annotations

import base64
import io
import os
from collections import OrderedDict

from mmat.images import decode_image, read_image_bytes, resolve_image
from mmat.schema import ImageRef

_MIME_BY_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff_mime(data: bytes) -> str | None:
    """The MIME type of PNG, JPEG, GIF or WebP bytes; None for anything else."""
    for magic, mime in _MIME_BY_MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def encode_data_url(ref: ImageRef) -> str:
    """Read ``ref`` with every guard of :mod:`mmat.images` and return a ``data:`` URL.

    PNG, JPEG, GIF and WebP are sent as they are; other formats (BMP, TIFF...) are decoded and sent
    as PNG, which every OpenAI-compatible server accepts.
    """
    data = read_image_bytes(ref)
    mime = sniff_mime(data)
    if mime is None:
        image = decode_image(data, name=f"image {ref.path}")
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data, mime = buffer.getvalue(), "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


class ImageEncoder:
    """A small LRU cache of data URLs; URLs (``https://...``) pass through unencoded.

    Args:
        capacity: how many encoded images to keep (an RR run needs its own images only).

    Attributes:
        encodes: how many times an image was actually read and encoded (tests and stats read it).
    """

    def __init__(self, capacity: int = 16) -> None:
        self.capacity = capacity
        self.encodes = 0
        self._cache: OrderedDict[tuple[str | None, str, str | None, int, int], str] = OrderedDict()

    def url(self, ref: ImageRef) -> str:
        """The URL to send for ``ref``: the same string every time while the file is unchanged."""
        if ref.is_url:
            return ref.path
        stat = os.stat(resolve_image(ref))
        key = (ref.root, ref.path, ref.sha256, stat.st_size, stat.st_mtime_ns)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        encoded = encode_data_url(ref)
        self.encodes += 1
        self._cache[key] = encoded
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return encoded
