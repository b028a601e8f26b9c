"""Downscaled JPEG copies of stored uploads for the pages: thumbnails and previews.

A rendition is made from the normalised image (upright, RGB, alpha on white, first
frame), so it shows what the model saw, and it works for formats that browsers do not
draw, such as TIFF. Each one is written once to storage under a name derived from the
job id and read from there afterwards.
"""

import io
import logging
import uuid

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from captioning import imaging

logger = logging.getLogger(__name__)

# Rendition name -> longest side in pixels.
RENDITION_SIZES = {
    "small": 480,
    "large": 1600,
}
JPEG_QUALITY = 85


def rendition_name(*, job_id: uuid.UUID, size: str) -> str:
    """Return the storage name of a job's rendition."""
    return f"renditions/{job_id}-{size}.jpg"


def rendition_render(*, image_name: str, size: str) -> bytes:
    """Read a stored upload and return it as a JPEG no larger than `size` allows."""
    longest_side = RENDITION_SIZES[size]
    with default_storage.open(image_name, "rb") as file:
        image = imaging.image_read_normalised(file=file)
    image.thumbnail((longest_side, longest_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return buffer.getvalue()


def rendition_get(*, job_id: uuid.UUID, image_name: str, size: str) -> bytes:
    """Return a job's rendition, rendering and storing it on first use.

    Raises KeyError for an unknown size and FileNotFoundError when the upload is gone.
    """
    if size not in RENDITION_SIZES:
        raise KeyError(f"Unknown rendition size {size!r}; expected one of {sorted(RENDITION_SIZES)}.")
    name = rendition_name(job_id=job_id, size=size)
    if default_storage.exists(name):
        with default_storage.open(name, "rb") as file:
            return file.read()

    data = rendition_render(image_name=image_name, size=size)
    # Two requests may render the same rendition at once. The storage then saves the
    # second copy under a suffixed name, which is deleted again.
    stored_name = default_storage.save(name, ContentFile(data))
    if stored_name != name:
        default_storage.delete(stored_name)
    logger.info("Stored %s rendition of caption job %s", size, job_id)
    return data
