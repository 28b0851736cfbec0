"""The lazy image check of a Foundation sample, for the engine and the operators to call.

Loaders only check that an image path stays inside its root (and, by default, that the file
exists); decoding waits until an image is first needed. A bad image rejects only its own sample.
"""

from __future__ import annotations

from mmat.errors import ImageError
from mmat.images import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, check_image
from mmat.schema import Reject, Sample

STAGE = "foundation"


def check_images(
    sample: Sample, *, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_IMAGE_PIXELS
) -> Sample:
    """Check every image of ``sample`` and return a copy whose images carry sha256, width and height.

    Raises:
        ImageError: for the first bad image (``image_outside_root``, ``image_missing``,
            ``image_too_large``, ``image_undecodable``, ``image_changed``, ``image_is_url``), with
            ``record_id`` set to the sample id.
    """
    checked = []
    for ref in sample.images:
        try:
            checked.append(check_image(ref, max_bytes=max_bytes, max_pixels=max_pixels))
        except ImageError as error:
            raise ImageError(error.reason, error.detail, record_id=sample.id, location=ref.path) from None
    return sample.model_copy(update={"images": checked})


def check_images_or_reject(
    sample: Sample, *, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_IMAGE_PIXELS
) -> Sample | Reject:
    """:func:`check_images`, with a bad image turned into ``Reject(stage="foundation")``."""
    try:
        return check_images(sample, max_bytes=max_bytes, max_pixels=max_pixels)
    except ImageError as error:
        return Reject(
            id=sample.id,
            source=sample.source,
            stage=STAGE,
            reason=error.reason,
            detail=error.detail,
            location=error.location,
        )
