"""A content-addressed image store: image bytes written once, named by their sha256.

Sources whose images arrive as bytes (parquet, HF datasets) put them here, so records carry a
reference (``ab/abcdef....png`` under the store root) and never the bytes; the same image met twice
is written once.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from mmat.schema import ImageRef

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tif"),
    (b"MM\x00*", "tif"),
)


def image_extension(data: bytes) -> str:
    """The file extension of image bytes from their magic number (``img`` when unknown)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for magic, ext in _MAGIC:
        if data.startswith(magic):
            return ext
    return "img"


class ImageStore:
    """Images on disk under ``root`` named ``<sha256[:2]>/<sha256>.<ext>``.

    Example:
        >>> store = ImageStore("out/images")  # doctest: +SKIP
        >>> ref = store.put(png_bytes)  # doctest: +SKIP
        >>> ref.path, ref.root  # ('3f/3fa9....png', '/abs/out/images')  # doctest: +SKIP
    """

    def __init__(self, root: str | Path) -> None:
        self.root = os.path.abspath(root)
        self.written = 0
        self.reused = 0

    def put(self, data: bytes) -> ImageRef:
        """Store ``data`` (unless already there) and return its reference with ``sha256`` set."""
        digest = hashlib.sha256(data).hexdigest()
        relative = f"{digest[:2]}/{digest}.{image_extension(data)}"
        target = os.path.join(self.root, relative)
        if os.path.exists(target):
            self.reused += 1
        else:
            folder = os.path.dirname(target)
            os.makedirs(folder, exist_ok=True)
            # Write then rename, so a crash or a parallel writer never leaves a half file under the name.
            handle, temporary = tempfile.mkstemp(dir=folder, suffix=".part")
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(data)
                os.replace(temporary, target)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
            self.written += 1
        return ImageRef(path=relative, root=self.root, sha256=digest)
