"""The HTML pages through Django's test client: the no-JavaScript path of every form."""

import io
import re
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from captioning import services
from captioning.models import CaptionBatch, CaptionJob

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def isolated_media(private_media_root):
    """Every test here stores into its own folder."""
    return private_media_root

UPLOAD_URL = "/"


@pytest.fixture
def create_job(png_upload):
    """Return a factory of queued jobs created through the upload service."""

    def make(name: str = "photo.png", size: tuple[int, int] = (64, 48)) -> CaptionJob:
        return services.job_create(upload=png_upload(name, size), original_filename=name)

    return make


def finish_job(job: CaptionJob, caption: str = "a dog runs through the grass") -> CaptionJob:
    """Store a result on a job the way a worker does, without running the model."""
    now = timezone.now()
    job.status = CaptionJob.Status.SUCCEEDED
    job.caption = caption
    job.alternatives = [
        {"text": caption, "log_prob": -3.2, "confidence": 0.61, "truncated": False},
        {"text": "a dog plays in a field", "log_prob": -4.1, "confidence": 0.48, "truncated": False},
    ]
    job.started_at = job.created_at + timedelta(seconds=0.5)
    job.finished_at = now
    job.model_seconds = 0.25
    job.save()
    return job


def stored_uploads(private_media_root) -> list:
    folder = private_media_root / "uploads"
    return sorted(folder.iterdir()) if folder.exists() else []


# Upload page


class UploadPageTests:
    def test_form_shows_limits_from_settings(self, client, settings):
        settings.MAX_UPLOAD_BYTES = 5 * 1024 * 1024
        settings.MAX_IMAGE_PIXELS = 12_000_000
        settings.MIN_IMAGE_SIDE = 64

        response = client.get(UPLOAD_URL)

        assert response.status_code == 200
        html = response.content.decode()
        assert "5.0\xa0MB" in html
        assert "12 megapixels" in html
        assert "at least 64 pixels" in html
        assert "JPEG, PNG, WebP, GIF, BMP, TIFF" in html

    def test_form_is_plain_multipart_with_csrf(self, client):
        response = client.get(UPLOAD_URL)

        html = response.content.decode()
        assert 'enctype="multipart/form-data"' in html
        assert 'name="csrfmiddlewaretoken"' in html
        assert re.search(r'<input type="file" name="images"[^>]* multiple', html)
        assert re.search(r'<label[^>]* for="id_images"', html)

    def test_one_photo_redirects_to_job_page(self, client, private_media_root, png_upload):
        response = client.post(UPLOAD_URL, {"images": png_upload("cat.png")})

        job = CaptionJob.objects.get()
        assert response.status_code == 302
        assert response["Location"] == reverse("web:job_detail", kwargs={"job_id": job.pk})
        assert job.status == CaptionJob.Status.QUEUED
        assert job.original_filename == "cat.png"
        assert len(stored_uploads(private_media_root)) == 1

    def test_several_photos_redirect_to_their_batch(self, client, png_upload):
        files = [png_upload("one.png"), png_upload("two.png"), png_upload("three.png")]

        response = client.post(UPLOAD_URL, {"images": files})

        batch = CaptionBatch.objects.get()
        assert response.status_code == 302
        assert response["Location"] == reverse("web:batch_detail", kwargs={"batch_id": batch.pk})
        assert CaptionJob.objects.filter(batch=batch).count() == 3
        html = client.get(response["Location"]).content.decode()
        for job in CaptionJob.objects.all():
            assert reverse("web:job_detail", kwargs={"job_id": job.pk}) in html
            assert job.original_filename in html

    def test_bad_file_does_not_block_good_ones(self, client, png_upload):
        files = [png_upload("good.png"), png_upload("tiny.png", size=(8, 8))]

        response = client.post(UPLOAD_URL, {"images": files})

        assert response.status_code == 200
        assert CaptionJob.objects.count() == 1
        assert CaptionJob.objects.get().original_filename == "good.png"
        html = response.content.decode()
        assert "1 file was rejected. The other photos were queued for captioning." in html
        batch = CaptionBatch.objects.get()
        assert reverse("web:batch_detail", kwargs={"batch_id": batch.pk}) in html
        assert "tiny.png" in html
        assert "minimum is 32x32" in html

    def test_all_files_rejected_returns_400(self, client, private_media_root, png_upload):
        response = client.post(UPLOAD_URL, {"images": png_upload("tiny.png", size=(8, 8))})

        assert response.status_code == 400
        assert "minimum is 32x32" in response.content.decode()
        assert CaptionJob.objects.count() == 0
        assert stored_uploads(private_media_root) == []

    def test_post_without_files_returns_400(self, client):
        response = client.post(UPLOAD_URL, {})

        assert response.status_code == 400
        assert "Choose at least one photo to upload." in response.content.decode()

    def test_too_many_files_return_400(self, client, png_upload):
        files = [png_upload(f"photo-{index}.png") for index in range(51)]

        response = client.post(UPLOAD_URL, {"images": files})

        assert response.status_code == 400
        assert "at most 50 can be uploaded at once" in response.content.decode()
        assert CaptionJob.objects.count() == 0

    def test_post_without_csrf_token_is_forbidden(self, png_upload):
        client = Client(enforce_csrf_checks=True)

        response = client.post(UPLOAD_URL, {"images": png_upload()})

        assert response.status_code == 403
        assert CaptionJob.objects.count() == 0


# Odd and malformed uploads, as the browser form sends them. Each row: file name, then
# None when accepted, or a fragment of the message on the 400 page.
BAD_INPUT_CASES = [
    ("exif-orientation-6.jpg", None),
    ("cmyk.jpg", None),
    ("gray16.png", None),
    ("palette-transparent.png", None),
    ("rgba-half-transparent.png", None),
    ("grayscale.jpg", None),
    ("animated-two-palettes.gif", None),
    ("png-named.txt", None),
    ("truncated.jpg", "truncated or corrupt"),
    ("empty.png", "The file is empty"),
    ("one-pixel.png", "minimum is 32x32"),
    ("bomb-15000x15000.png", "40,000,000 pixels"),
    ("gif-header-html.gif", "not a JPEG, PNG, WebP, GIF, BMP or TIFF image"),
]


class BadInputFormTests:
    @pytest.mark.parametrize(("name", "message"), BAD_INPUT_CASES)
    def test_bad_input_gets_its_behaviour(self, client, bad_inputs_dir, private_media_root, name, message, file_upload):
        response = client.post(UPLOAD_URL, {"images": file_upload(bad_inputs_dir / name)})

        if message is None:
            assert response.status_code == 302, response.content.decode()[:2000]
            job = CaptionJob.objects.get()
            assert response["Location"] == reverse("web:job_detail", kwargs={"job_id": job.pk})
            assert job.original_filename == name
            page = client.get(response["Location"])
            assert page.status_code == 200
        else:
            assert response.status_code == 400
            html = response.content.decode()
            assert message in html
            assert name in html
            assert CaptionJob.objects.count() == 0
            assert stored_uploads(private_media_root) == []

    def test_exif_rotated_photo_is_recorded_upright(self, client, bad_inputs_dir, file_upload):
        client.post(UPLOAD_URL, {"images": file_upload(bad_inputs_dir / "exif-orientation-6.jpg")})

        job = CaptionJob.objects.get()
        assert (job.width, job.height) == (640, 426)

    def test_png_named_txt_served_as_png(self, client, bad_inputs_dir, file_upload):
        client.post(UPLOAD_URL, {"images": file_upload(bad_inputs_dir / "png-named.txt")})

        job = CaptionJob.objects.get()
        assert job.image.name.endswith(".png")
        response = client.get(reverse("web:job_image", kwargs={"job_id": job.pk}))
        assert response["Content-Type"] == "image/png"

    def test_whole_table_in_one_post(self, client, bad_inputs_dir, file_upload):
        """All sample files in one request: each accepted one gets a job, each bad one a line."""
        files = [file_upload(bad_inputs_dir / name) for name, _ in BAD_INPUT_CASES]

        response = client.post(UPLOAD_URL, {"images": files})

        assert response.status_code == 200
        accepted = {name for name, message in BAD_INPUT_CASES if message is None}
        assert set(CaptionJob.objects.values_list("original_filename", flat=True)) == accepted
        html = response.content.decode()
        for name, message in BAD_INPUT_CASES:
            if message is not None:
                assert message in html, name


# Job page


class JobPageTests:
    def test_queued_job_shows_waiting_and_polls(self, client, create_job):
        job = create_job()

        response = client.get(reverse("web:job_detail", kwargs={"job_id": job.pk}))

        assert response.status_code == 200
        html = response.content.decode()
        assert "Waiting for a worker to pick up this photo" in html
        assert 'data-finished="false"' in html
        assert reverse("web:job_panel", kwargs={"job_id": job.pk}) in html
        assert reverse("web:job_image", kwargs={"job_id": job.pk}) in html
        assert 'alt="Uploaded photo photo.png, not captioned yet"' in html
        assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in html

    def test_succeeded_job_shows_caption_and_details(self, client, create_job):
        job = finish_job(create_job())

        response = client.get(reverse("web:job_detail", kwargs={"job_id": job.pk}))

        html = response.content.decode()
        assert '<p class="caption-text" data-caption>a dog runs through the grass</p>' in html
        assert 'alt="a dog runs through the grass"' in html
        assert "a dog plays in a field" in html
        assert "61% confidence" in html
        assert "48% confidence" in html
        assert "PNG, 64 × 48 pixels" in html
        assert "0.25 s" in html
        assert 'data-finished="true"' in html
        assert 'http-equiv="refresh"' not in html

    def test_failed_job_shows_its_message(self, client, create_job):
        job = services.job_fail(job=create_job(), message="The model file is missing.")

        response = client.get(reverse("web:job_detail", kwargs={"job_id": job.pk}))

        html = response.content.decode()
        assert "This photo could not be captioned." in html
        assert "The model file is missing." in html
        assert 'role="alert"' in html

    def test_unknown_job_is_404(self, client):
        response = client.get("/jobs/00000000-0000-4000-8000-000000000000/")

        assert response.status_code == 404

    def test_not_found_page_is_styled_and_translated(self, client, settings):
        """With DEBUG off, a missing page renders the site's own 404 in the browser's language."""
        settings.DEBUG = False
        english = client.get("/jobs/00000000-0000-4000-8000-000000000000/")
        chinese = client.get("/no-such-page/", HTTP_ACCEPT_LANGUAGE="zh-CN")

        assert english.status_code == 404
        assert "Page not found" in english.content.decode()
        assert 'class="site-header"' in english.content.decode()
        assert chinese.status_code == 404
        assert "找不到页面" in chinese.content.decode()

    def test_panel_returns_status_and_html(self, client, create_job):
        job = create_job()
        url = reverse("web:job_panel", kwargs={"job_id": job.pk})

        queued = client.get(url).json()
        finish_job(job)
        succeeded = client.get(url).json()

        assert queued["status"] == "queued"
        assert queued["finished"] is False
        assert "Waiting for a worker" in queued["html"]
        assert succeeded["status"] == "succeeded"
        assert succeeded["finished"] is True
        assert "a dog runs through the grass" in succeeded["html"]
        assert succeeded["image_alt"] == "a dog runs through the grass"

    def test_panel_is_not_cached(self, client, create_job):
        job = create_job()

        response = client.get(reverse("web:job_panel", kwargs={"job_id": job.pk}))

        assert response["Cache-Control"] == "no-store"


# Serving stored images


class JobImageTests:
    def test_image_is_served_with_checked_type_and_nosniff(self, client, create_job):
        job = create_job()

        response = client.get(reverse("web:job_image", kwargs={"job_id": job.pk}))

        assert response.status_code == 200
        assert response["Content-Type"] == "image/png"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Content-Disposition"] == f'inline; filename="{job.pk}.png"'
        with job.image.open("rb") as stored:
            assert b"".join(response.streaming_content) == stored.read()

    def test_missing_file_is_404(self, client, private_media_root, create_job):
        job = create_job()
        (private_media_root / job.image.name).unlink()

        response = client.get(reverse("web:job_image", kwargs={"job_id": job.pk}))

        assert response.status_code == 404

    def test_rendition_is_small_jpeg(self, client, create_job):
        job = create_job(size=(1200, 900))

        response = client.get(reverse("web:job_rendition", kwargs={"job_id": job.pk, "size": "small"}))

        assert response.status_code == 200
        assert response["Content-Type"] == "image/jpeg"
        assert response["X-Content-Type-Options"] == "nosniff"
        image = Image.open(io.BytesIO(response.content))
        assert image.format == "JPEG"
        assert image.size == (480, 360)

    def test_rendition_is_stored_once_and_reused(self, client, private_media_root, create_job):
        job = create_job()
        url = reverse("web:job_rendition", kwargs={"job_id": job.pk, "size": "small"})

        first = client.get(url).content
        second = client.get(url).content

        assert first == second
        assert [path.name for path in (private_media_root / "renditions").iterdir()] == [f"{job.pk}-small.jpg"]

    def test_unknown_rendition_size_is_404(self, client, create_job):
        job = create_job()

        response = client.get(f"/jobs/{job.pk}/image/huge.jpg")

        assert response.status_code == 404

    def test_rendition_of_rotated_photo_is_upright(self, client, bad_inputs_dir, file_upload):
        client.post(UPLOAD_URL, {"images": file_upload(bad_inputs_dir / "exif-orientation-6.jpg")})
        job = CaptionJob.objects.get()

        response = client.get(reverse("web:job_rendition", kwargs={"job_id": job.pk, "size": "small"}))

        assert Image.open(io.BytesIO(response.content)).size == (480, 320)

    def test_rendition_flattens_transparency_onto_white(self, client, bad_inputs_dir, file_upload):
        client.post(UPLOAD_URL, {"images": file_upload(bad_inputs_dir / "rgba-half-transparent.png")})
        job = CaptionJob.objects.get()

        response = client.get(reverse("web:job_rendition", kwargs={"job_id": job.pk, "size": "small"}))

        image = Image.open(io.BytesIO(response.content)).convert("L")
        darkest, brightest = image.getextrema()
        # Half-transparent pixels over white are at least half bright, never black.
        assert darkest >= 100
        assert brightest >= 200

    def test_tiff_job_page_shows_rendition(self, client):
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), (200, 30, 30)).save(buffer, format="TIFF")
        job = services.job_create(
            upload=SimpleUploadedFile("scan.tiff", buffer.getvalue()), original_filename="scan.tiff"
        )

        html = client.get(reverse("web:job_detail", kwargs={"job_id": job.pk})).content.decode()

        assert reverse("web:job_rendition", kwargs={"job_id": job.pk, "size": "large"}) in html


# Recent jobs


class JobListTests:
    def test_empty_list_invites_an_upload(self, client):
        response = client.get("/jobs/")

        assert response.status_code == 200
        assert "No photos yet" in response.content.decode()

    def test_jobs_show_thumbnail_caption_and_status(self, client, create_job):
        done = finish_job(create_job("done.png"))
        waiting = create_job("waiting.png")

        html = client.get("/jobs/").content.decode()

        small = reverse("web:job_rendition", kwargs={"job_id": done.pk, "size": "small"})
        assert f'src="{small}" alt="a dog runs through the grass"' in html
        assert "Caption in progress" in html
        assert reverse("web:job_detail", kwargs={"job_id": waiting.pk}) in html
        assert 'class="badge badge-succeeded"' in html
        assert 'class="badge badge-queued"' in html

    def test_age_reads_just_now_then_ago(self, client, create_job):
        old = create_job("old.png")
        CaptionJob.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=2))
        create_job("new.png")

        html = client.get("/jobs/").content.decode()

        assert "Just now" in html
        assert "2\xa0hours ago" in html

    def test_list_is_paginated_newest_first(self, client, create_job):
        jobs = [create_job(f"photo-{index}.png") for index in range(25)]

        first = client.get("/jobs/").content.decode()
        second = client.get("/jobs/?page=2").content.decode()

        assert "Page 1 of 2" in first
        assert 'rel="next"' in first
        assert str(jobs[-1].pk) in first
        assert str(jobs[0].pk) not in first
        assert "Page 2 of 2" in second
        assert str(jobs[0].pk) in second
        assert 'rel="prev"' in second

    def test_page_out_of_range_shows_last_page(self, client, create_job):
        job = create_job()

        response = client.get("/jobs/?page=99")

        assert response.status_code == 200
        assert str(job.pk) in response.content.decode()


# Language


class LanguageTests:
    def test_switcher_remembers_chinese(self, client):
        response = client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/jobs/"})

        assert response.status_code == 302
        assert response["Location"] == "/jobs/"
        html = client.get(UPLOAD_URL).content.decode()
        assert '<html lang="zh-hans">' in html
        assert "为你的照片生成描述" in html

    def test_browser_language_picks_chinese(self, client):
        html = client.get(UPLOAD_URL, HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9").content.decode()

        assert '<html lang="zh-hans">' in html
        assert "上传限制" in html

    def test_switcher_marks_current_language(self, client):
        html = client.get(UPLOAD_URL).content.decode()

        assert re.search(r'value="en"[^>]*aria-pressed="true"', html)
        assert re.search(r'value="zh-hans"[^>]*aria-pressed="false"', html)


class JobPrivacyTests:
    """A user's jobs stay off other visitors' pages, as in the API."""

    @pytest.fixture
    def user_job(self, png_upload, api_user) -> CaptionJob:
        return services.job_create(upload=png_upload("mine.png", (64, 48)), original_filename="mine.png", user=api_user)

    def test_users_job_page_is_404_to_anonymous(self, client, user_job):
        for name in ("web:job_detail", "web:job_image"):
            assert client.get(reverse(name, kwargs={"job_id": user_job.pk})).status_code == 404, name
        rendition = reverse("web:job_rendition", kwargs={"job_id": user_job.pk, "size": "small"})
        assert client.get(rendition).status_code == 404

    def test_users_job_is_missing_from_anonymous_list(self, client, create_job, user_job):
        anonymous_job = create_job("theirs.png")

        html = client.get("/jobs/").content.decode()

        assert reverse("web:job_detail", kwargs={"job_id": anonymous_job.pk}) in html
        assert reverse("web:job_detail", kwargs={"job_id": user_job.pk}) not in html

    def test_owner_sees_their_job_when_signed_in(self, client, api_user, user_job):
        client.force_login(api_user)

        page = client.get(reverse("web:job_detail", kwargs={"job_id": user_job.pk}))
        html = client.get("/jobs/").content.decode()

        assert page.status_code == 200
        assert reverse("web:job_detail", kwargs={"job_id": user_job.pk}) in html


class AnonymousUploadSettingTests:
    def test_upload_page_open_to_anonymous_by_default(self, client):
        assert client.get("/").status_code == 200

    def test_anonymous_visitor_is_sent_to_sign_in_when_off(self, client, png_upload, settings):
        settings.WEB_ALLOW_ANONYMOUS = False

        page = client.get("/")
        posted = client.post("/", {"images": png_upload("photo.png", (64, 48))})

        assert page.status_code == 302
        assert page["Location"].startswith(reverse("login"))
        assert posted.status_code == 302
        assert CaptionJob.objects.count() == 0

    def test_signed_in_user_uploads_when_off(self, client, api_user, png_upload, settings):
        settings.WEB_ALLOW_ANONYMOUS = False
        client.force_login(api_user)

        response = client.post("/", {"images": png_upload("photo.png", (64, 48))})

        assert response.status_code == 302
        assert CaptionJob.objects.get().user == api_user

    def test_sign_in_page_signs_the_user_in(self, client, django_user_model):
        django_user_model.objects.create_user(username="editor", password="a long test password")

        page = client.get(reverse("login"))
        response = client.post(
            reverse("login"), {"username": "editor", "password": "a long test password"}
        )

        assert page.status_code == 200
        assert "Sign in" in page.content.decode()
        assert response.status_code == 302
        assert response["Location"] == reverse("web:upload")
