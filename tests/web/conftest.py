"""Fixtures for the HTML page tests: upload factories, a photo, a private media folder.

`bad_inputs_dir`, `dataset_dir` and the stack fixtures come from tests/conftest.py.
"""

import io
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

# A black and white dog running through the grass.
PHOTO_NAME = "1009434119_febe49276a.jpg"


@pytest.fixture
def photo_path(dataset_dir) -> Path:
    path = dataset_dir / "flickr8k-900" / "images" / PHOTO_NAME
    if not path.is_file():
        pytest.fail(f"The sample photo {path} is missing.")
    return path


@pytest.fixture
def private_media_root(settings, tmp_path) -> Path:
    """Give one test its own MEDIA_ROOT, so it can list exactly what it stored.

    Tests that use the stack must not request this: the worker process reads the
    session's MEDIA_ROOT.
    """
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = str(root)
    return root


def png_bytes(size: tuple[int, int]) -> bytes:
    """Return a PNG of a gradient, so the image is not a flat colour."""
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def png_upload():
    """Return a factory of in-memory PNG uploads."""

    def make(name: str = "photo.png", size: tuple[int, int] = (64, 48)) -> SimpleUploadedFile:
        return SimpleUploadedFile(name, png_bytes(size), content_type="image/png")

    return make


@pytest.fixture
def file_upload():
    """Return a factory that reads a file from disk as an upload.

    The content type is a generic one, because the checks must decide the format
    from the content alone.
    """

    def make(path: Path) -> SimpleUploadedFile:
        return SimpleUploadedFile(path.name, path.read_bytes(), content_type="application/octet-stream")

    return make
