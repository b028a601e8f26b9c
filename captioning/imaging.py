"""Checking uploaded images and turning them into what the model expects.

`upload_check` runs in the web tier before anything is stored or queued. It detects
the format from the content, never from the name, and reads the pixel count from the
header before decoding. It then decodes the whole image once, so that a truncated file
is rejected at upload instead of failing later in a worker.

`image_normalise` runs in the worker and returns the upright, 8-bit RGB first frame.
"""

import hashlib
import io
import logging
import warnings
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
from django.conf import settings
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

# Pillow format name -> (file extension, MIME type) for every accepted format.
ACCEPTED_FORMATS: dict[str, tuple[str, str]] = {
    "JPEG": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "WEBP": ("webp", "image/webp"),
    "GIF": ("gif", "image/gif"),
    "BMP": ("bmp", "image/bmp"),
    "TIFF": ("tiff", "image/tiff"),
}
ACCEPTED_FORMAT_NAMES = gettext_lazy("JPEG, PNG, WebP, GIF, BMP or TIFF")

# EXIF orientations 5 to 8 turn the stored image by 90 or 270 degrees.
ORIENTATION_TAG = 0x0112
SWAPPED_ORIENTATIONS = {5, 6, 7, 8}


class ImageRejected(Exception):
    """An upload that cannot be captioned, with a stable code for API clients."""

    code = "invalid_image"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class EmptyFile(ImageRejected):
    code = "empty_file"


class ImageTooLarge(ImageRejected):
    code = "image_too_large"


class UnsupportedFormat(ImageRejected):
    code = "unsupported_format"


class TooManyPixels(ImageRejected):
    code = "too_many_pixels"


class ImageTooSmall(ImageRejected):
    code = "image_too_small"


class ImageCorrupt(ImageRejected):
    code = "image_corrupt"


@dataclass(frozen=True)
class CheckedImage:
    """Facts about an upload that passed every check."""

    format: str  # Pillow's name: JPEG, PNG, WEBP, GIF, BMP or TIFF
    extension: str  # for the stored file name, without the dot
    mime_type: str
    width: int  # after EXIF orientation
    height: int  # after EXIF orientation
    byte_size: int
    sha256: str
    frames: int = field(default=1)


def format_bytes(size: int) -> str:
    # Django's filter is translated; its non-breaking space reads badly in JSON.
    return filesizeformat(size).replace("\xa0", " ")


def file_hash(file: IO[bytes]) -> tuple[int, str]:
    """Return the byte size and SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    file.seek(0)
    while chunk := file.read(1024 * 1024):
        digest.update(chunk)
        size += len(chunk)
    file.seek(0)
    return size, digest.hexdigest()


def oriented_size(image: Image.Image, *, decode: bool = True) -> tuple[int, int]:
    """Return (width, height) as shown after the EXIF orientation is applied.

    Pillow decodes a whole PNG to find an eXIf chunk that follows the pixel data.
    With decode=False such a PNG counts as upright, so that an image over the pixel
    limit is never decoded just to name its size.
    """
    width, height = image.size
    if not decode and image.format == "PNG" and "exif" not in image.info:
        return width, height
    try:
        orientation = image.getexif().get(ORIENTATION_TAG)
    except Exception:  # A damaged EXIF block only loses the orientation.
        logger.warning("Ignoring an unreadable EXIF block", exc_info=True)
        return width, height
    if orientation in SWAPPED_ORIENTATIONS:
        return height, width
    return width, height


def header_size(content: bytes) -> tuple[int, int] | None:
    """Return (width, height) from an accepted format's header, or None.

    Calls the format plugins directly, because they parse only the header and
    leave the decompression-bomb check to Image.open. An oversized image's
    rejection can then name its real size.
    """
    Image.init()
    for image_format in ACCEPTED_FORMATS:
        factory, accept = Image.OPEN[image_format]
        if accept is not None and not accept(content[:16]):
            continue
        try:
            with factory(io.BytesIO(content), None) as image:
                return oriented_size(image, decode=False)
        except (SyntaxError, ValueError, OSError):
            continue
    return None


def too_many_pixels(width: int, height: int, *, max_pixels: int) -> "TooManyPixels":
    """Build the rejection for an image over the pixel limit, naming its size."""
    pixels = width * height
    return TooManyPixels(
        _(
            "The image is %(width)dx%(height)d (%(pixels)s pixels), and the limit is "
            "%(max_pixels)s pixels (%(megapixels)s megapixels). "
            "Scale the image down and upload it again."
        )
        % {
            "width": width,
            "height": height,
            "pixels": f"{pixels:,}",
            "max_pixels": f"{max_pixels:,}",
            "megapixels": f"{max_pixels / 1e6:g}",
        },
        width=width,
        height=height,
        max_pixels=max_pixels,
    )


def image_open(content: bytes) -> Image.Image:
    """Open an image from memory lazily, reading only its header.

    Raises TooManyPixels when Pillow's own decompression-bomb guard trips, and
    UnsupportedFormat when Pillow recognises no accepted format in the content.
    """
    max_pixels = settings.MAX_IMAGE_PIXELS

    # Pillow raises DecompressionBombError above twice Image.MAX_IMAGE_PIXELS and
    # warns above it. Keeping its limit equal to ours makes its error ours, and the
    # warning is dropped because the pixel check in upload_check rejects those files.
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(content), formats=list(ACCEPTED_FORMATS))
    except Image.DecompressionBombError:
        size = header_size(content)
        if size is not None:
            raise too_many_pixels(*size, max_pixels=max_pixels) from None
        raise TooManyPixels(
            _(
                "The image has more than %(pixels)s pixels, and the limit is %(max_pixels)s "
                "pixels (%(megapixels)s megapixels). Scale the image down and upload it again."
            )
            % {
                "pixels": f"{2 * max_pixels:,}",
                "max_pixels": f"{max_pixels:,}",
                "megapixels": f"{max_pixels / 1e6:g}",
            },
            max_pixels=max_pixels,
        ) from None
    except (UnidentifiedImageError, SyntaxError, ValueError, OSError) as error:
        raise UnsupportedFormat(
            _(
                "The file is not a %(formats)s image that could be read. "
                "Upload a photo in one of those formats."
            )
            % {"formats": str(ACCEPTED_FORMAT_NAMES)},
            accepted_formats=list(ACCEPTED_FORMATS),
        ) from error


def upload_check(*, file: IO[bytes]) -> CheckedImage:
    """Check an uploaded file and return its facts, or raise ImageRejected.

    The checks run cheapest first: size on disk, format and pixel count from the
    header, then a full decode. The file position is back at 0 afterwards.
    """
    max_bytes = settings.MAX_UPLOAD_BYTES
    min_side = settings.MIN_IMAGE_SIDE
    max_pixels = settings.MAX_IMAGE_PIXELS

    # Bytes
    byte_size, sha256 = file_hash(file)
    if byte_size == 0:
        raise EmptyFile(_("The file is empty (0 bytes). Choose an image file and upload it again."))
    if byte_size > max_bytes:
        raise ImageTooLarge(
            _(
                "The file is %(size)s, and the limit is %(max_size)s. "
                "Compress or scale the image down and upload it again."
            )
            % {"size": format_bytes(byte_size), "max_size": format_bytes(max_bytes)},
            byte_size=byte_size,
            max_bytes=max_bytes,
        )

    # Header: format and size, without decoding the pixels. The content is read into
    # memory, at most MAX_UPLOAD_BYTES, because Pillow closes the file it reads from.
    file.seek(0)
    content = file.read()
    file.seek(0)
    image = image_open(content)
    try:
        image_format = image.format
        if image_format not in ACCEPTED_FORMATS:  # nocoverage: `formats=` already limits it
            raise UnsupportedFormat(
                _("%(format)s images are not accepted. Upload a %(formats)s image.")
                % {"format": image_format, "formats": str(ACCEPTED_FORMAT_NAMES)},
                accepted_formats=list(ACCEPTED_FORMATS),
            )
        width, height = oriented_size(image)
        pixels = width * height
        if pixels > max_pixels:
            raise too_many_pixels(width, height, max_pixels=max_pixels)
        if min(width, height) < min_side:
            raise ImageTooSmall(
                _(
                    "The image is %(width)dx%(height)d pixels, and the minimum is "
                    "%(min_side)dx%(min_side)d. Upload a larger image."
                )
                % {"width": width, "height": height, "min_side": min_side},
                width=width,
                height=height,
                min_side=min_side,
            )
        frames = getattr(image, "n_frames", 1)
    finally:
        image.close()

    # Pixels: verify() checks the structure, and only a full decode finds a file that
    # ends early, so the image is opened a second time because verify() spends it.
    try:
        with image_open(content) as image:
            image.verify()
        with image_open(content) as image:
            image.load()
    except ImageRejected:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        logger.info("Rejected an upload that failed to decode: %s", error)
        raise ImageCorrupt(
            _(
                "The image is truncated or corrupt, because it could not be decoded "
                "completely. Export or download it again and upload the new file."
            )
        ) from error

    extension, mime_type = ACCEPTED_FORMATS[image_format]
    return CheckedImage(
        format=image_format,
        extension=extension,
        mime_type=mime_type,
        width=width,
        height=height,
        byte_size=byte_size,
        sha256=sha256,
        frames=frames,
    )


def image_to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16-bit and 32-bit single-channel images into 8-bit grayscale.

    Pillow's own conversion of mode I;16 to L clips every value above 255, which turns
    most 16-bit photos into a white square.
    """
    values = np.asarray(image)
    if image.mode == "F":
        # NOTE: float images carry no standard range; 0..1 is assumed when the values
        # fit it, and 0..255 otherwise.
        scale = 255.0 if values.size and float(values.max()) <= 1.0 else 1.0
        scaled = values.astype(np.float64) * scale
    else:
        scaled = values.astype(np.float64) / 257.0  # 65535 / 257 = 255
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def image_normalise(*, image: Image.Image) -> Image.Image:
    """Return the first frame of an image upright, as 8-bit RGB with no alpha.

    Transparent pixels are composited onto white, because the photos the model was
    trained on have no transparency and a black background changes the caption.
    """
    # First frame: an animated GIF or multi-page TIFF is captioned by its first image.
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    image.load()

    # Upright, as the EXIF orientation tag specifies.
    image = ImageOps.exif_transpose(image)

    # Bit depth
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        image = image_to_8bit(image)

    # Alpha. Palette images with a transparent index go through RGBA, since a direct
    # conversion to RGB makes Pillow warn and drop the transparency.
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("LA", "La", "PA", "RGBa", "RGBA") or (
        image.mode == "L" and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")

    # Colour: CMYK (including Adobe's inverted CMYK JPEGs), grayscale, palette, YCbCr.
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image


def image_read_normalised(*, file: IO[bytes]) -> Image.Image:
    """Open a stored image and return it normalised for the model.

    The result does not depend on the file staying open, because exif_transpose
    always returns a new image.
    """
    file.seek(0)
    with Image.open(file, formats=list(ACCEPTED_FORMATS)) as image:
        return image_normalise(image=image)
