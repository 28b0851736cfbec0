"""Reading VLMEvalKit's benchmark TSV files.

VLMEvalKit ships every image benchmark as one TSV: a row per question with ``index``, ``question``,
option columns ``A``, ``B``, ... (multiple choice), ``answer``, ``category`` / ``l2-category``,
an optional ``hint``, and the image either inline in ``image`` (base64; a JSON/Python list of
base64 strings for multi-image questions; or, to save space, the ``index`` of an earlier row that
holds the same image, which is any value of 64 characters or fewer) or as a path in ``image_path``.

Inline images are decoded once into a content-addressed cache directory (``<sha256>.<ext>``), so
the agent and its tools receive images by reference like everywhere else in mmat.
"""

from __future__ import annotations

import ast
import base64
import binascii
import csv
import io
import sys
from collections.abc import Iterator
from pathlib import Path

from mmat.errors import ImageError, RecordError
from mmat.schema import ImageRef
from mmat.sources.image_store import ImageStore, image_extension

# VLMEvalKit writes a duplicated image as the index of the row holding it: any value this short.
IMAGE_REFERENCE_MAX_LEN = 64


class ImageCache(ImageStore):
    """The content-addressed image store (``<sha256[:2]>/<sha256>.<ext>``) plus base64 cells of TSVs."""

    def put_base64(self, text: str, *, where: str) -> ImageRef:
        """Decode one base64 image and store it; ``where`` names the row for error messages."""
        try:
            data = base64.b64decode(text.strip(), validate=False)
        except (binascii.Error, ValueError) as error:
            raise ImageError(
                "image_undecodable", f"{where}: the image column is not valid base64 ({error})"
            ) from None
        if image_extension(data) == "img" and not _pillow_can_open(data):
            raise ImageError(
                "image_undecodable",
                f"{where}: the image column decodes to {len(data)} bytes that are no known image format; "
                "is this a VLMEvalKit TSV with base64 images?",
            )
        return self.put(data)


def _pillow_can_open(data: bytes) -> bool:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)):
            return True
    except (UnidentifiedImageError, OSError, ValueError):
        return False


def read_tsv(path: str | Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line_number, row)`` for each data row; empty cells become ``""``.

    Raises:
        RecordError: the file has no ``index`` column (not a VLMEvalKit TSV).
    """
    path = Path(path)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        if not reader.fieldnames or "index" not in reader.fieldnames:
            raise RecordError(
                "not_vlmevalkit_tsv",
                f"{path} has columns {reader.fieldnames!r} but a VLMEvalKit benchmark TSV starts with "
                "an 'index' column; pass the .tsv file VLMEvalKit downloads (e.g. MMStar.tsv)",
                location=str(path),
            )
        for row in reader:
            yield reader.line_num, {key: (value or "").strip("\r") for key, value in row.items() if key}


def split_list_cell(value: str) -> list[str]:
    """A cell that may hold a Python/JSON list (``"['a', 'b']"``) as a list of strings."""
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return [value]
        if isinstance(parsed, list):
            return [str(item) for item in parsed]
    return [value]


def option_columns(row: dict[str, str]) -> dict[str, str]:
    """The non-empty option columns ``A``, ``B``, ... of a row, in letter order."""
    options: dict[str, str] = {}
    for letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        value = row.get(letter, "")
        if value.strip() and value.strip().lower() != "nan":
            options[letter] = value.strip()
    return options


class TsvImages:
    """Resolves the images of rows of one TSV file (inline base64, row references, or paths)."""

    def __init__(self, tsv_path: Path, cache: ImageCache, *, image_root: str | Path | None = None) -> None:
        self.tsv_path = tsv_path
        self.cache = cache
        self.image_root = Path(image_root) if image_root else tsv_path.parent
        self._by_index: dict[str, list[ImageRef]] = {}

    def refs(self, row: dict[str, str], line: int) -> list[ImageRef]:
        """The images of ``row``, decoded into the cache when inline."""
        index = row.get("index", "")
        where = f"{self.tsv_path}:{line} (index {index})"
        inline = row.get("image", "").strip()
        refs: list[ImageRef]
        if inline:
            if len(inline) <= IMAGE_REFERENCE_MAX_LEN:
                if inline not in self._by_index:
                    raise ImageError(
                        "image_reference_unknown",
                        f"{where}: image column {inline!r} refers to index {inline}, which has no image "
                        "earlier in the file; the TSV is truncated or reordered",
                    )
                refs = self._by_index[inline]
            else:
                refs = [self.cache.put_base64(text, where=where) for text in split_list_cell(inline)]
        elif row.get("image_path", "").strip():
            refs = [self._path_ref(p, where) for p in split_list_cell(row["image_path"])]
        else:
            refs = []
        self._by_index[index] = refs
        return refs

    def _path_ref(self, value: str, where: str) -> ImageRef:
        path = Path(value.strip())
        if not path.is_absolute():
            path = self.image_root / path
        if not path.is_file():
            raise ImageError(
                "image_missing",
                f"{where}: image_path {value!r} is not a file under {self.image_root}; "
                "pass --image-root with the folder that holds the benchmark images",
            )
        return ImageRef(path=str(path.resolve()))
