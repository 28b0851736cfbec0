"""Reading images by reference: resolve against a root, hash, decode with guards.

Records carry :class:`~mmat.schema.ImageRef`; bytes are read only when a tool or the teacher needs
them. A path that escapes its root (``..``, an absolute path, a symlink out) is refused, and a bad
image raises :class:`~mmat.errors.ImageError`, which rejects only the sample that holds it.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import TYPE_CHECKING

from mmat.errors import ImageError
from mmat.schema import ImageRef

if TYPE_CHECKING:
    from PIL import Image

MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_IMAGE_PIXELS = 100_000_000


def resolve_image(ref: ImageRef) -> Path:
    """Return the local file of ``ref``, refusing paths that leave ``ref.root``.

    Raises:
        ImageError: reason ``image_outside_root`` or ``image_missing``.
    """
    if ref.is_url:
        raise ImageError(
            "image_is_url", f"image {ref.path} is a URL; download it into a root directory first"
        )
    path = Path(ref.path)
    if ref.root is not None:
        root = Path(ref.root).resolve()
        if path.is_absolute() or ".." in path.parts:
            raise ImageError(
                "image_outside_root",
                f"image path {ref.path!r} must be relative to {root} without '..'; fix the record or the root",
            )
        full = (root / path).resolve()
        if not full.is_relative_to(root):
            raise ImageError(
                "image_outside_root",
                f"image {ref.path!r} resolves to {full}, outside its root {root} (symlink?)",
            )
    else:
        full = path.resolve()
    if not full.is_file():
        raise ImageError("image_missing", f"image file {full} does not exist; check the source root")
    return full


def read_image_bytes(ref: ImageRef, *, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """Read the bytes of ``ref`` (size-capped) and check them against ``ref.sha256`` when set."""
    path = resolve_image(ref)
    size = path.stat().st_size
    if size > max_bytes:
        raise ImageError("image_too_large", f"image {path} is {size} bytes, above the {max_bytes}-byte limit")
    data = path.read_bytes()
    if ref.sha256 is not None and hashlib.sha256(data).hexdigest() != ref.sha256:
        raise ImageError(
            "image_changed", f"image {path} does not match its recorded sha256; rebuild the input"
        )
    return data


def image_sha256(ref: ImageRef) -> str:
    """The sha256 of the image bytes (from the record when it already knows it)."""
    if ref.sha256:
        return ref.sha256
    return hashlib.sha256(read_image_bytes(ref)).hexdigest()


def decode_image(data: bytes, *, name: str = "image", max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode bytes into an RGB PIL image, refusing decompression bombs and broken files."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            if width * height > max_pixels:
                raise ImageError(
                    "image_too_large",
                    f"{name} is {width}x{height} pixels, above the {max_pixels}-pixel limit",
                )
            probe.load()
            return probe.convert("RGB")
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise ImageError("image_undecodable", f"{name} cannot be decoded: {error}") from None


def load_image(ref: ImageRef) -> Image.Image:
    """Read and decode ``ref`` with every guard of this module."""
    return decode_image(read_image_bytes(ref), name=f"image {ref.path}")


def check_image(
    ref: ImageRef, *, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_IMAGE_PIXELS
) -> ImageRef:
    """Read, hash and fully decode ``ref`` once; return a copy with ``sha256``, ``width``, ``height``.

    This is the lazy check a sample's images get when they are first needed: inside the root, present,
    under the byte and pixel limits (decompression-bomb guard), decodable, unchanged since recorded.

    Raises:
        ImageError: the reason says which check failed.
    """
    data = read_image_bytes(ref, max_bytes=max_bytes)
    image = decode_image(data, name=f"image {ref.path}", max_pixels=max_pixels)
    return ref.model_copy(
        update={"sha256": hashlib.sha256(data).hexdigest(), "width": image.width, "height": image.height}
    )
