"""Odd and malformed uploads, each sent to the REST API and to the upload page.

Every case is generated here with Pillow or as plain bytes. A case states what the
service must do with it: accept it and queue one job, or reject it with a 4xx status,
an error code and a message naming the problem. Whatever happens, no request gets a 5xx, a
rejected upload creates no job and stores nothing, an accepted upload is stored
under a generated name, and Django's temporary upload files are all removed, because
the tests make Django spool every upload to a private FILE_UPLOAD_TEMP_DIR.

The files in the shared bad-inputs folder have their own tests in test_api.py,
test_imaging.py and tests/web/test_views.py, so none of them is repeated here.
"""

import html
import io
import json
import re
import uuid
import zipfile
from base64 import b64encode
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from zlib import crc32

import pytest
from django.test import Client
from PIL import Image

from captioning.models import CaptionJob

API_URL = "/api/v1/captions/"
PAGE_URL = "/"
GENERATED_NAME = re.compile(r"^uploads/[0-9a-f-]{36}\.(jpg|png|gif|bmp|tiff|webp)$")


# Building files


def encoded(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def gradient(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """Return an image of a gradient in `mode`, so no case is a flat colour."""
    return Image.linear_gradient("L").resize(size).convert(mode)


def png(size: tuple[int, int] = (48, 40)) -> bytes:
    return encoded(gradient(size), "PNG")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + crc32(kind + data).to_bytes(4, "big")


def png_header_only(width: int, height: int) -> bytes:
    """Return a PNG that declares width x height in its header and contains no pixel data."""
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IEND", b"")


def bmp_header_only(width: int, height: int) -> bytes:
    """Return a 24-bit BMP that declares width x height and contains 16 bytes of pixels."""
    info = (
        (40).to_bytes(4, "little")
        + width.to_bytes(4, "little", signed=True)
        + height.to_bytes(4, "little", signed=True)
        + (1).to_bytes(2, "little")
        + (24).to_bytes(2, "little")
        + bytes(24)
    )
    pixels = bytes(16)
    size = 14 + len(info) + len(pixels)
    return b"BM" + size.to_bytes(4, "little") + bytes(4) + (14 + len(info)).to_bytes(4, "little") + info + pixels


def heic_header() -> bytes:
    """Return the opening of an HEIC file: an ISO BMFF `ftyp` box with brand heic."""
    brands = b"heic" + bytes(4) + b"mif1heic"
    return (8 + len(brands)).to_bytes(4, "big") + b"ftyp" + brands + bytes(64)


def avif() -> bytes:
    """Return a real AVIF when this Pillow writes one, else the opening of one."""
    try:
        return encoded(gradient((48, 40)), "AVIF")
    except (KeyError, OSError):
        brands = b"avif" + bytes(4) + b"mif1avif"
        return (8 + len(brands)).to_bytes(4, "big") + b"ftyp" + brands + bytes(64)


def zip_of_png() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("photo.png", png())
    return buffer.getvalue()


def apng() -> bytes:
    frames = [gradient((48, 40)), gradient((48, 40)).rotate(180)]
    return encoded(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=100, loop=0)


def jpeg_with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(gradient((80, 40)), "JPEG", exif=exif)


def many_page_tiff(pages: int = 40) -> bytes:
    frames = [gradient((40, 36)) for _ in range(pages)]
    return encoded(frames[0], "TIFF", save_all=True, append_images=frames[1:])


def palette_png() -> bytes:
    return encoded(gradient((48, 40)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG")


def float_tiff() -> bytes:
    image = Image.linear_gradient("L").resize((48, 40)).convert("F").point(lambda value: value / 255)
    return encoded(image, "TIFF")


def i16_tiff() -> bytes:
    image = Image.linear_gradient("L").resize((48, 40)).convert("I").point(lambda value: value * 200)
    return encoded(image.convert("I;16"), "TIFF")


SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
    b'<rect width="64" height="64" fill="teal"/><script>alert(1)</script></svg>'
)
HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


# The cases


@dataclass(frozen=True)
class Case:
    """One upload and what must happen to it.

    `error` is None for an accepted upload; `size` is then the (width, height) the
    job records, after EXIF orientation. For a rejected one, `error` is the API's
    error code and `message` a piece of text that both the API and the page show.
    """

    id: str
    content: Callable[[], bytes]
    filename: str = "photo.png"
    error: str | None = None
    message: str = ""
    format: str = "PNG"
    size: tuple[int, int] = (48, 40)
    display_name: str | None = None  # the stored original_filename, when it differs from `filename`
    settings: dict = field(default_factory=dict)


FORMATS = "JPEG, PNG, WebP, GIF, BMP or TIFF"

CONTENT_CASES = [
    # Formats the service does not accept, whatever the file name.
    Case("svg", lambda: SVG, "drawing.svg", "unsupported_format", FORMATS),
    Case("heic-header", heic_header, "IMG_0001.HEIC", "unsupported_format", FORMATS),
    Case("avif", avif, "photo.avif", "unsupported_format", FORMATS),
    Case("pdf", lambda: PDF, "scan.pdf", "unsupported_format", FORMATS),
    Case("pdf-from-pillow", lambda: encoded(gradient((48, 40)), "PDF"), "scan.pdf", "unsupported_format", FORMATS),
    Case("zip-of-png", zip_of_png, "photos.zip", "unsupported_format", FORMATS),
    Case("html-named-jpg", lambda: HTML, "photo.jpg", "unsupported_format", FORMATS),
    Case("one-byte", lambda: b"x", "photo.jpg", "unsupported_format", FORMATS),
    # The content decides the format, not the name.
    Case("jpeg-named-png", lambda: encoded(gradient((48, 40)), "JPEG"), "photo.png", format="JPEG"),
    # Pixel size limits: MIN_IMAGE_SIDE is 32 by default.
    Case("one-pixel-gif", lambda: encoded(gradient((1, 1)), "GIF"), "dot.gif", "image_too_small", "32x32"),
    Case("side-just-below-minimum", lambda: png((31, 200)), "thin.png", "image_too_small", "31x200 pixels"),
    Case("sides-at-minimum", lambda: png((32, 32)), "small.png", size=(32, 32)),
    Case(
        "png-header-bomb",
        lambda: png_header_only(100_000, 100_000),
        "bomb.png",
        "too_many_pixels",
        "100000x100000 (10,000,000,000 pixels)",
    ),
    Case(
        "bmp-header-bomb",
        lambda: bmp_header_only(20_000, 20_000),
        "bomb.bmp",
        "too_many_pixels",
        "40,000,000 pixels",
    ),
    # Frames, modes and orientation: accepted. tests/stack checks that a worker captions them.
    Case("animated-png", apng, "moving.png"),
    Case("many-page-tiff", many_page_tiff, "scan.tiff", format="TIFF", size=(40, 36)),
    Case("cmyk-tiff", lambda: encoded(gradient((48, 40), "CMYK"), "TIFF"), "print.tif", format="TIFF"),
    Case("la-png", lambda: encoded(gradient((48, 40), "LA"), "PNG"), "gray-alpha.png"),
    Case("palette-png-opaque", palette_png, "palette.png"),
    Case("i16-tiff", i16_tiff, "depth.tiff", format="TIFF"),
    Case("float-tiff", float_tiff, "float.tiff", format="TIFF"),
    Case("exif-orientation-8", lambda: jpeg_with_orientation(8), "turned.jpg", format="JPEG", size=(40, 80)),
]

# A name shows in the page and the API only after cleaning, and never reaches storage.
NAME_CASES = [
    Case("parent-folders", png, "../../etc/passwd.jpg", display_name="passwd.jpg"),
    Case("absolute-path", png, "/var/www/index.png", display_name="index.png"),
    Case("windows-parent-folders", png, "..\\..\\x.jpg", display_name="x.jpg"),
    Case("control-characters", png, "a\x00b\x07c\x1b[31m.png", display_name="abc[31m.png"),
    Case("right-to-left-override", png, "photo\u202egnp.exe", display_name="photognp.exe"),
    Case("very-long-name", png, "n" * 320 + ".png", display_name="n" * 115 + "….png"),
    Case("emoji-and-cjk", png, "猫の写真😀.png"),
    Case("script-tag", png, "<script>alert(1)</script>.png", display_name="script>.png"),
    Case("html-attribute", png, '<img src=x onerror="alert(1)">.png'),
]


def exactly_at_limit() -> list[Case]:
    """A file exactly MAX_UPLOAD_BYTES long is accepted, and one byte over is not."""
    content = png((48, 40))
    return [
        Case("exactly-max-upload-bytes", lambda: content, settings={"MAX_UPLOAD_BYTES": len(content)}),
        Case(
            "one-byte-over-max-upload-bytes",
            lambda: content,
            error="image_too_large",
            message="Compress or scale the image down",
            settings={"MAX_UPLOAD_BYTES": len(content) - 1},
        ),
    ]


FILE_CASES = CONTENT_CASES + NAME_CASES + exactly_at_limit()


# Sending requests


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str) -> bytes:
    """Encode (field name, file name or None, content) parts as multipart/form-data.

    Written by hand, because Django's test client drops the folders from file names
    and cannot send a NUL byte in one.
    """
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            body += b"Content-Type: application/octet-stream\r\n"
        body += b"\r\n" + content + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def post_multipart(client: Client, url: str, parts, **extra):
    boundary = uuid.uuid4().hex
    return client.generic(
        "POST",
        url,
        multipart(parts, boundary),
        content_type=f"multipart/form-data; boundary={boundary}",
        **extra,
    )


@pytest.fixture
def upload_temp_dir(settings, tmp_path) -> Path:
    """Spool every upload to a private folder, which must be empty after each request."""
    folder = tmp_path / "upload-tmp"
    folder.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(folder)
    # Django keeps bodies up to this size in memory; at 0 every file goes to disk.
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0
    return folder


@pytest.fixture
def media_folder(settings, tmp_path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = str(root)
    return root


@pytest.fixture
def api_client(api_token) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {api_token}")


def stored_files(media_folder: Path) -> list[str]:
    return sorted(str(path.relative_to(media_folder)) for path in media_folder.rglob("*") if path.is_file())


def check_accepted_job(case: Case, media_folder: Path) -> CaptionJob:
    """Check the one job an accepted case created, and return it."""
    [job] = CaptionJob.objects.all()
    assert job.status == CaptionJob.Status.QUEUED
    assert job.format == case.format
    assert (job.width, job.height) == case.size
    assert job.original_filename == (case.display_name if case.display_name is not None else case.filename)
    assert GENERATED_NAME.match(job.image.name), job.image.name
    assert job.image.name.startswith(f"uploads/{job.pk}.")
    assert stored_files(media_folder) == [job.image.name]
    return job


def check_nothing_left(media_folder: Path, upload_temp_dir: Path) -> None:
    assert not CaptionJob.objects.exists()
    assert stored_files(media_folder) == []
    assert list(upload_temp_dir.iterdir()) == []


# Files through the API and the page


@pytest.mark.django_db
@pytest.mark.parametrize("case", FILE_CASES, ids=lambda case: case.id)
def test_file_case_through_api(case, api_client, settings, media_folder, upload_temp_dir):
    for name, value in case.settings.items():
        setattr(settings, name, value)

    response = post_multipart(api_client, API_URL, [("image", case.filename, case.content())])

    assert list(upload_temp_dir.iterdir()) == []
    if case.error is None:
        assert response.status_code == 202, response.content
        job = check_accepted_job(case, media_folder)
        body = response.json()
        assert body["id"] == str(job.pk)
        assert body["image"]["original_filename"] == job.original_filename
    else:
        assert response.status_code == 400, response.content
        error = response.json()["error"]
        assert error["code"] == case.error
        assert case.message in error["message"]
        check_nothing_left(media_folder, upload_temp_dir)


@pytest.mark.django_db
@pytest.mark.parametrize("case", FILE_CASES, ids=lambda case: case.id)
def test_file_case_through_page(case, client, settings, media_folder, upload_temp_dir):
    for name, value in case.settings.items():
        setattr(settings, name, value)

    response = post_multipart(client, PAGE_URL, [("images", case.filename, case.content())])

    assert list(upload_temp_dir.iterdir()) == []
    if case.error is None:
        assert response.status_code == 302, response.content[:2000]
        job = check_accepted_job(case, media_folder)
        assert response["Location"] == f"/jobs/{job.pk}/"
    else:
        assert response.status_code == 400
        page = response.content.decode()
        assert html.escape(case.message) in page
        check_nothing_left(media_folder, upload_temp_dir)


@pytest.mark.django_db
def test_uploads_are_spooled_to_temp_dir(api_client, media_folder, upload_temp_dir, monkeypatch):
    """The fixture really sends uploads to disk, so the empty-folder checks mean something."""
    from captioning import imaging

    seen = []
    original_check = imaging.upload_check

    def recording_check(*, file):
        path = Path(file.temporary_file_path())
        seen.append((path.parent, path.exists()))
        return original_check(file=file)

    monkeypatch.setattr(imaging, "upload_check", recording_check)
    response = post_multipart(api_client, API_URL, [("image", "photo.png", png())])

    assert response.status_code == 202
    assert seen == [(upload_temp_dir, True)]
    assert list(upload_temp_dir.iterdir()) == []


@pytest.mark.django_db
def test_pixel_bomb_is_not_decoded_to_name_its_size(api_client, settings, media_folder, upload_temp_dir, monkeypatch):
    """An image over twice the pixel limit is rejected from its header, with no pixel decoded."""
    from PIL import PngImagePlugin

    settings.MAX_IMAGE_PIXELS = 1000
    loads = []
    original_load = PngImagePlugin.PngImageFile.load

    def recording_load(image):
        loads.append(image.size)
        return original_load(image)

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", recording_load)
    response = post_multipart(api_client, API_URL, [("image", "bomb.png", png((100, 100)))])

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "too_many_pixels"
    assert "100x100 (10,000 pixels)" in response.json()["error"]["message"]
    assert loads == []
    check_nothing_left(media_folder, upload_temp_dir)


# Names shown on the pages


@pytest.mark.django_db
@pytest.mark.parametrize("case", NAME_CASES, ids=lambda case: case.id)
def test_name_is_escaped_on_job_pages(case, client, media_folder, upload_temp_dir):
    response = post_multipart(client, PAGE_URL, [("images", case.filename, case.content())])
    assert response.status_code == 302
    job = CaptionJob.objects.get()

    for url in (response["Location"], "/jobs/"):
        page = client.get(url).content.decode()
        assert html.escape(job.original_filename) in page, url
        assert "<script>alert" not in page
        assert "<img src=x" not in page
        assert "\u202e" not in page
        assert "\x00" not in page


# Multipart shapes and headers


@dataclass(frozen=True)
class RequestCase:
    """A malformed request, and the status and error code or page text it must get.

    `api_code` is None where the API must accept the request; `page_text` is a piece
    of the page's answer, and `page_status` its status.
    """

    id: str
    send: Callable[[Client, str, str], object]  # (client, url, file field name) -> response
    api_status: int
    api_code: str | None
    api_message: str
    page_status: int
    page_text: str


def post_raw(client, url, body: bytes, content_type: str | None, **extra):
    if content_type is None:
        # The test client always sets CONTENT_TYPE, so it is removed from the environ.
        return client.generic("POST", url, body, content_type="", **extra)
    return client.generic("POST", url, body, content_type=content_type, **extra)


def send_no_file_field(client, url, field_name):
    return post_multipart(client, url, [("note", None, b"no photo here")])


def send_wrong_field_name(client, url, field_name):
    return post_multipart(client, url, [("file", "photo.png", png())])


def send_empty_filename(client, url, field_name):
    return post_multipart(client, url, [(field_name, "", png())])


def send_two_files(client, url, field_name):
    return post_multipart(client, url, [(field_name, "one.png", png()), (field_name, "two.png", png())])


def send_missing_boundary(client, url, field_name):
    body = multipart([(field_name, "photo.png", png())], "abc123")
    return post_raw(client, url, body, "multipart/form-data")


def send_truncated_body(client, url, field_name):
    body = multipart([(field_name, "photo.png", png((64, 64)))], "abc123")
    return post_raw(client, url, body[: len(body) // 2], "multipart/form-data; boundary=abc123")


def send_truncated_in_headers(client, url, field_name):
    body = multipart([(field_name, "photo.png", png())], "abc123")
    return post_raw(client, url, body[:60], "multipart/form-data; boundary=abc123")


def send_json_base64(client, url, field_name):
    body = json.dumps({field_name: b64encode(png()).decode()}).encode()
    return post_raw(client, url, body, "application/json")


def send_text_plain(client, url, field_name):
    body = multipart([(field_name, "photo.png", png())], "abc123")
    return post_raw(client, url, body, "text/plain")


def send_no_content_type(client, url, field_name):
    body = multipart([(field_name, "photo.png", png())], "abc123")
    return post_raw(client, url, body, None)


def send_short_content_length(client, url, field_name):
    """Content-Length declares fewer bytes than were sent, so the body ends early."""
    boundary = "abc123"
    body = multipart([(field_name, "photo.png", png((64, 64)))], boundary)
    return client.generic(
        "POST",
        url,
        body,
        content_type=f"multipart/form-data; boundary={boundary}",
        CONTENT_LENGTH=str(len(body) - 100),
    )


def send_chunked(client, url, field_name):
    """A chunked body without Content-Length: Django reads none of it."""
    body = multipart([(field_name, "photo.png", png())], "abc123")
    return client.generic(
        "POST",
        url,
        body,
        content_type="multipart/form-data; boundary=abc123",
        CONTENT_LENGTH="",
        HTTP_TRANSFER_ENCODING="chunked",
    )


CHOOSE_PHOTO = "Choose at least one photo to upload."

REQUEST_CASES = [
    RequestCase("no-file-field", send_no_file_field, 400, "invalid", "see details", 400, CHOOSE_PHOTO),
    RequestCase("wrong-field-name", send_wrong_field_name, 400, "invalid", "see details", 400, CHOOSE_PHOTO),
    RequestCase("empty-filename", send_empty_filename, 400, "invalid", "see details", 400, CHOOSE_PHOTO),
    RequestCase("two-files-in-one-field", send_two_files, 400, "too_many_files", "/api/v1/captions/batch/", 302, ""),
    # Django's multipart parser fails before the view runs, so the page is the site's 400.html.
    RequestCase("missing-boundary", send_missing_boundary, 400, "parse_error", "Invalid boundary", 400, "could not read this request"),
    # Django drops a file part whose closing boundary never came, so the file is missing.
    RequestCase("truncated-in-file", send_truncated_body, 400, "invalid", "see details", 400, CHOOSE_PHOTO),
    RequestCase("truncated-in-headers", send_truncated_in_headers, 400, "invalid", "see details", 400, CHOOSE_PHOTO),
    RequestCase("json-with-base64", send_json_base64, 400, "invalid", "see details", 400, CHOOSE_PHOTO),
    RequestCase("text-plain-content-type", send_text_plain, 415, "unsupported_media_type", "text/plain", 400, CHOOSE_PHOTO),
    RequestCase("no-content-type", send_no_content_type, 415, "unsupported_media_type", "Unsupported media type", 400, CHOOSE_PHOTO),
    RequestCase("short-content-length", send_short_content_length, 400, "invalid", "see details", 400, CHOOSE_PHOTO),
    RequestCase("chunked-body", send_chunked, 411, "length_required", "Content-Length", 400, CHOOSE_PHOTO),
]


@pytest.mark.django_db
@pytest.mark.parametrize("case", REQUEST_CASES, ids=lambda case: case.id)
def test_request_case_through_api(case, api_client, media_folder, upload_temp_dir):
    response = case.send(api_client, API_URL, "image")

    assert response.status_code == case.api_status, response.content
    error = response.json()["error"]
    assert error["code"] == case.api_code
    assert case.api_message in error["message"]
    if case.api_code == "invalid":
        assert "image" in error["details"]
    check_nothing_left(media_folder, upload_temp_dir)


@pytest.mark.django_db
@pytest.mark.parametrize("case", REQUEST_CASES, ids=lambda case: case.id)
def test_request_case_through_page(case, client, media_folder, upload_temp_dir):
    response = case.send(client, PAGE_URL, "images")

    assert response.status_code == case.page_status, response.content[:2000]
    assert list(upload_temp_dir.iterdir()) == []
    if case.page_status == 302:
        # Two photos in the page's multiple-file field are a batch of two jobs.
        assert CaptionJob.objects.filter(status=CaptionJob.Status.QUEUED).count() == 2
        assert len(stored_files(media_folder)) == 2
    else:
        assert html.escape(case.page_text) in response.content.decode()
        check_nothing_left(media_folder, upload_temp_dir)


# Response headers


@pytest.mark.django_db
def test_nosniff_on_pages_api_and_images(client, api_client, media_folder, upload_temp_dir):
    response = post_multipart(client, PAGE_URL, [("images", "photo.png", png())])
    job = CaptionJob.objects.get()
    api_job = post_multipart(api_client, API_URL, [("image", "photo.png", png())]).json()

    page_urls = ["/", "/jobs/", f"/jobs/{job.pk}/", f"/jobs/{job.pk}/image/", "/accounts/login/"]
    for url in page_urls:
        response = client.get(url)
        assert response.status_code == 200, url
        assert response["X-Content-Type-Options"] == "nosniff", url
    api_urls = [API_URL, api_job["url"], api_job["image"]["url"], "/api/v1/models/", "/api/v1/nothing/"]
    for url in api_urls:
        response = api_client.get(url)
        assert response.status_code in (200, 404), url
        assert response["X-Content-Type-Options"] == "nosniff", url


@pytest.mark.django_db
def test_replaced_upload_is_served_as_checked_type(client, api_client, media_folder, upload_temp_dir):
    """Bytes swapped in storage after the checks still go out as the checked image type."""
    post_multipart(client, PAGE_URL, [("images", "page.png", png())])
    post_multipart(api_client, API_URL, [("image", "api.png", png())])
    page_job = CaptionJob.objects.get(original_filename="page.png")
    api_job = CaptionJob.objects.get(original_filename="api.png")
    for job in (page_job, api_job):
        (media_folder / job.image.name).write_bytes(HTML)

    responses = {
        page_job: client.get(f"/jobs/{page_job.pk}/image/"),
        api_job: api_client.get(f"{API_URL}{api_job.pk}/image"),
    }
    for job, response in responses.items():
        assert response.status_code == 200
        assert response["Content-Type"] == "image/png"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"
        assert response["Content-Disposition"] == f'inline; filename="{job.pk}.png"'
