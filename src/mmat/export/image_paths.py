"""How an export refers to the images of its samples: relative, absolute, or copied into the export.

``relative`` paths are relative to the export directory (give that directory as LLaVA's
``--image_folder`` or run ms-swift / LLaMA-Factory from it); ``absolute`` paths are resolved on this
machine; ``copy`` puts each image once, content-addressed, under ``images/`` inside the export, so
the export folder is self-contained and can be moved or uploaded as it is.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Literal

from mmat.errors import ImageError
from mmat.images import resolve_image
from mmat.schema import ImageRef

ImageMode = Literal["relative", "absolute", "copy"]
IMAGE_MODES: tuple[str, ...] = ("relative", "absolute", "copy")
COPIED_IMAGES_DIR = "images"

logger = logging.getLogger(__name__)


def source_path(ref: ImageRef) -> Path:
    """The absolute local path of ``ref`` without requiring the file to exist.

    A path that leaves its root (absolute, or with ``..``) is refused like :func:`mmat.images.resolve_image`.
    """
    path = Path(ref.path)
    if ref.root is None:
        return Path(os.path.abspath(path))
    if path.is_absolute() or ".." in path.parts:
        raise ImageError(
            "image_outside_root",
            f"image path {ref.path!r} must be relative to {ref.root} without '..'; fix the record or the root",
        )
    return Path(os.path.abspath(Path(ref.root) / path))


class ImagePlacer:
    """Turns each :class:`ImageRef` into the path string an export writes.

    Args:
        mode: ``relative`` (to ``export_dir``), ``absolute``, or ``copy`` (into ``export_dir/images``).
        export_dir: the directory the export is written to.

    URLs are written unchanged in every mode (a copy would need a download; do that in the source).
    """

    def __init__(self, mode: ImageMode, export_dir: Path) -> None:
        if mode not in IMAGE_MODES:
            from mmat.errors import ConfigError

            raise ConfigError(f"unknown image path mode {mode!r}; use one of {', '.join(IMAGE_MODES)}")
        self.mode = mode
        self.export_dir = Path(os.path.abspath(export_dir))
        self.copied = 0
        self.reused = 0

    def place(self, ref: ImageRef) -> str:
        """The path to write for ``ref`` (copying the file first in ``copy`` mode)."""
        if ref.is_url:
            return ref.path
        if self.mode == "absolute":
            return str(source_path(ref))
        if self.mode == "relative":
            return os.path.relpath(source_path(ref), self.export_dir)
        return self._copy(ref)

    def _copy(self, ref: ImageRef) -> str:
        full = resolve_image(ref)
        digest = ref.sha256 or _file_sha256(full)
        suffix = full.suffix.lower() or ".img"
        relative = Path(COPIED_IMAGES_DIR) / digest[:2] / f"{digest}{suffix}"
        target = self.export_dir / relative
        if target.exists():
            self.reused += 1
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            shutil.copyfile(full, partial)
            partial.replace(target)
            self.copied += 1
        return relative.as_posix()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
