"""Batches, corrections, exports, history filters and deletion through the test client."""

import csv
import io
import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from captioning import exports, services
from captioning.models import CaptionBatch, CaptionJob

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def isolated_media(private_media_root):
    return private_media_root


def finish(job: CaptionJob, caption: str, *, model_version=None) -> CaptionJob:
    job.status = CaptionJob.Status.SUCCEEDED
    job.caption = caption
    job.alternatives = [
        {"text": caption, "confidence": 0.6},
        {"text": "a dog plays in a field", "confidence": 0.4},
    ]
    job.model_version = model_version
    job.started_at = job.created_at
    job.finished_at = timezone.now()
    job.save()
    return job


@pytest.fixture
def batch_with_jobs(png_upload, starter_model_version):
    """Return a batch of three jobs: succeeded, failed and queued."""
    batch = services.batch_create()
    good = services.batch_job_create(batch=batch, upload=png_upload("dog.png"), original_filename="dog.png")
    finish(good, "a dog runs through the grass", model_version=starter_model_version)
    failed = services.batch_job_create(batch=batch, upload=png_upload("bad.png"), original_filename="bad.png")
    services.job_fail(job=failed, message="The model crashed.")
    services.batch_job_create(batch=batch, upload=png_upload("late.png"), original_filename="late.png")
    return batch


def batch_url(name: str, batch: CaptionBatch, **kwargs) -> str:
    return reverse(f"web:{name}", kwargs={"batch_id": batch.pk, **kwargs})


class BatchUploadTests:
    def test_create_then_upload_one_file(self, client, png_upload):
        created = client.post(reverse("web:batch_create"))

        assert created.status_code == 201
        body = created.json()
        response = client.post(body["upload_url"], {"image": png_upload("cat.png"), "beam_size": "3", "num_captions": "2"})

        assert response.status_code == 201
        job = CaptionJob.objects.get()
        assert str(job.batch_id) == body["id"]
        assert job.beam_size == 3
        assert job.num_captions == 2
        assert response.json()["job"]["url"] == reverse("web:job_detail", kwargs={"job_id": job.pk})

    def test_more_captions_than_beams_is_400(self, client, png_upload):
        batch = services.batch_create()

        response = client.post(
            batch_url("batch_upload", batch), {"image": png_upload("cat.png"), "beam_size": "2", "num_captions": "3"}
        )

        assert response.status_code == 400
        assert "keeps at most 2 captions" in response.content.decode()
        assert CaptionJob.objects.count() == 0

    def test_rejected_file_returns_400_with_message(self, client, png_upload):
        batch = services.batch_create()

        response = client.post(batch_url("batch_upload", batch), {"image": png_upload("tiny.png", size=(8, 8))})

        assert response.status_code == 400
        assert "minimum is 32x32" in response.json()["error"]["message"]
        assert response.json()["filename"] == "tiny.png"
        assert CaptionJob.objects.count() == 0

    def test_rejected_file_stays_on_batch(self, client, png_upload):
        batch = services.batch_create()
        client.post(batch_url("batch_upload", batch), {"image": png_upload("cat.png")})
        client.post(batch_url("batch_upload", batch), {"image": png_upload("tiny.png", size=(8, 8))})

        page = client.get(batch_url("batch_detail", batch)).content.decode()
        csv_text = client.get(batch_url("batch_export", batch, export_format="csv")).content.decode("utf-8-sig")
        items = json.loads(client.get(batch_url("batch_export", batch, export_format="json")).content)["items"]

        assert "Files not accepted" in page
        assert "tiny.png" in page
        rows = list(csv.DictReader(io.StringIO(csv_text)))
        assert [(row["filename"], row["status"]) for row in rows] == [("cat.png", "queued"), ("tiny.png", "rejected")]
        assert "minimum is 32x32" in rows[1]["error"]
        assert [item["status"] for item in items] == ["queued", "rejected"]

    def test_missing_file_returns_400(self, client):
        batch = services.batch_create()

        response = client.post(batch_url("batch_upload", batch), {})

        assert response.status_code == 400
        assert response.json()["error"]["code"] == "missing_file"

    def test_invalid_beam_size_returns_400(self, client, png_upload):
        batch = services.batch_create()

        response = client.post(batch_url("batch_upload", batch), {"image": png_upload(), "beam_size": "99"})

        assert response.status_code == 400
        assert "Beam size" in response.json()["error"]["message"]
        assert CaptionJob.objects.count() == 0

    def test_full_batch_returns_409(self, client, png_upload, monkeypatch):
        monkeypatch.setattr(services, "BATCH_MAX_JOBS", 1)
        batch = services.batch_create()
        client.post(batch_url("batch_upload", batch), {"image": png_upload("one.png")})

        response = client.post(batch_url("batch_upload", batch), {"image": png_upload("two.png")})

        assert response.status_code == 409
        assert response.json()["error"]["code"] == "batch_full"

    def test_another_users_batch_is_404(self, client, png_upload, django_user_model):
        owner = django_user_model.objects.create_user(username="owner")
        batch = services.batch_create(user=owner)

        response = client.post(batch_url("batch_upload", batch), {"image": png_upload()})

        assert response.status_code == 404
        assert client.get(batch_url("batch_detail", batch)).status_code == 404
        assert client.get(batch_url("batch_export", batch, export_format="csv")).status_code == 404

    def test_sign_in_required_when_anonymous_is_off(self, client, settings):
        settings.WEB_ALLOW_ANONYMOUS = False

        response = client.post(reverse("web:batch_create"))

        assert response.status_code == 403
        assert "Sign in" in response.json()["error"]["message"]

    def test_uploads_of_signed_in_user_belong_to_them(self, client, api_user, png_upload):
        client.force_login(api_user)
        body = client.post(reverse("web:batch_create")).json()

        client.post(body["upload_url"], {"image": png_upload()})

        assert CaptionBatch.objects.get().user == api_user
        assert CaptionJob.objects.get().user == api_user


class BatchPageTests:
    def test_page_shows_cards_progress_and_exports(self, client, batch_with_jobs):
        response = client.get(batch_url("batch_detail", batch_with_jobs))

        html = response.content.decode()
        assert response.status_code == 200
        assert "2 of 3 photos finished, 1 failed" in html
        assert 'alt="a dog runs through the grass"' in html
        assert "The model crashed." in html
        assert batch_url("batch_export", batch_with_jobs, export_format="csv") in html
        assert 'data-finished="false"' in html

    def test_status_returns_progress_and_cards(self, client, batch_with_jobs):
        response = client.get(batch_url("batch_status", batch_with_jobs))

        body = response.json()
        assert response["Cache-Control"] == "no-store"
        assert (body["total"], body["done"], body["failed"]) == (3, 2, 1)
        assert body["finished"] is False
        assert [job["status"] for job in body["jobs"]] == ["succeeded", "failed", "queued"]
        assert "a dog runs through the grass" in body["jobs"][0]["announcement"]
        assert "dog.png" in body["jobs"][0]["html"]

    def test_unknown_export_format_is_404(self, client, batch_with_jobs):
        response = client.get(batch_url("batch_export", batch_with_jobs, export_format="xlsx"))

        assert response.status_code == 404


class ExportTests:
    def test_csv_has_bom_header_and_corrected_caption(self, client, batch_with_jobs):
        job = batch_with_jobs.jobs.get(original_filename="dog.png")
        services.job_correct(job=job, text="a black dog runs across a lawn")

        response = client.get(batch_url("batch_export", batch_with_jobs, export_format="csv"))

        assert response["Content-Type"] == "text/csv; charset=utf-8"
        assert "attachment" in response["Content-Disposition"]
        assert response.content.startswith(b"\xef\xbb\xbf")
        rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
        assert list(rows[0]) == exports.CSV_COLUMNS
        assert rows[0]["caption"] == "a black dog runs across a lawn"
        assert rows[0]["original_caption"] == "a dog runs through the grass"
        assert rows[0]["alternatives"] == "a dog runs through the grass | a dog plays in a field"
        assert rows[0]["model_version"] == "starter:1"
        assert rows[1]["status"] == "failed"
        assert rows[1]["error"] == "The model crashed."
        assert rows[2]["status"] == "queued"

    @pytest.mark.parametrize("value", ["=1+1", "+cmd", "-2", "@SUM(A1)", "\tx", "\rx"])
    def test_csv_neutralises_formula_cells(self, value):
        assert exports.csv_cell(value) == "'" + value

    def test_csv_keeps_ordinary_cells(self):
        assert exports.csv_cell("a dog - running") == "a dog - running"

    def test_formula_in_filename_and_caption_is_inert(self, client, png_upload):
        batch = services.batch_create()
        job = services.batch_job_create(batch=batch, upload=png_upload("=HYPERLINK.png"), original_filename="=HYPERLINK.png")
        finish(job, "a dog")
        services.job_correct(job=job, text="@import danger")

        response = client.get(batch_url("batch_export", batch, export_format="csv"))

        [row] = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
        assert row["filename"] == "'=HYPERLINK.png"
        assert row["caption"] == "'@import danger"

    def test_chinese_filename_survives_csv(self, client, png_upload):
        batch = services.batch_create()
        services.batch_job_create(batch=batch, upload=png_upload("小狗.png"), original_filename="小狗.png")

        response = client.get(batch_url("batch_export", batch, export_format="csv"))

        assert "小狗.png" in response.content.decode("utf-8-sig")

    def test_json_has_every_field(self, client, batch_with_jobs):
        response = client.get(batch_url("batch_export", batch_with_jobs, export_format="json"))

        document = json.loads(response.content)
        assert response["Content-Type"] == "application/json; charset=utf-8"
        assert document["batch"] == str(batch_with_jobs.pk)
        first = document["items"][0]
        assert first["filename"] == "dog.png"
        assert first["caption"] == "a dog runs through the grass"
        assert first["corrected"] is False
        assert first["alternatives"][1] == {"text": "a dog plays in a field", "confidence": 0.4}
        assert first["model_version"] == "starter:1"
        assert document["items"][1]["error"] == "The model crashed."


class CorrectionTests:
    def test_correction_keeps_original(self, client, batch_with_jobs):
        job = batch_with_jobs.jobs.get(original_filename="dog.png")

        response = client.post(
            reverse("web:job_correct", kwargs={"job_id": job.pk}),
            {"caption": "  a black dog   on a lawn "},
            HTTP_ACCEPT="application/json",
        )

        job.refresh_from_db()
        assert response.status_code == 200
        assert job.corrected_caption == "a black dog on a lawn"
        assert job.caption == "a dog runs through the grass"
        assert job.corrected_at is not None
        assert response.json()["corrected"] is True
        page = client.get(reverse("web:job_detail", kwargs={"job_id": job.pk})).content.decode()
        assert "a black dog on a lawn" in page
        assert "a dog runs through the grass" in page

    def test_blank_correction_restores_model_caption(self, client, batch_with_jobs):
        job = batch_with_jobs.jobs.get(original_filename="dog.png")
        services.job_correct(job=job, text="something else")

        client.post(reverse("web:job_correct", kwargs={"job_id": job.pk}), {"caption": ""})

        job.refresh_from_db()
        assert job.corrected_caption == ""
        assert job.display_caption == "a dog runs through the grass"

    def test_form_post_redirects_to_next(self, client, batch_with_jobs):
        job = batch_with_jobs.jobs.get(original_filename="dog.png")
        next_url = batch_url("batch_detail", batch_with_jobs)

        response = client.post(
            reverse("web:job_correct", kwargs={"job_id": job.pk}), {"caption": "a dog", "next": next_url}
        )

        assert response.status_code == 302
        assert response["Location"] == next_url

    def test_offsite_next_is_ignored(self, client, batch_with_jobs):
        job = batch_with_jobs.jobs.get(original_filename="dog.png")

        response = client.post(
            reverse("web:job_correct", kwargs={"job_id": job.pk}),
            {"caption": "a dog", "next": "https://example.com/"},
        )

        assert response["Location"] == reverse("web:job_detail", kwargs={"job_id": job.pk})

    def test_queued_job_cannot_be_corrected(self, client, batch_with_jobs):
        job = batch_with_jobs.jobs.get(original_filename="late.png")

        response = client.post(
            reverse("web:job_correct", kwargs={"job_id": job.pk}), {"caption": "x"}, HTTP_ACCEPT="application/json"
        )

        assert response.status_code == 400
        assert "Only a captioned photo can be corrected" in response.json()["error"]["message"]

    def test_too_long_correction_is_400(self, client, batch_with_jobs):
        job = batch_with_jobs.jobs.get(original_filename="dog.png")

        response = client.post(
            reverse("web:job_correct", kwargs={"job_id": job.pk}),
            {"caption": "x" * 501},
            HTTP_ACCEPT="application/json",
        )

        assert response.status_code == 400
        job.refresh_from_db()
        assert job.corrected_caption == ""

    def test_another_users_job_cannot_be_corrected(self, client, png_upload, django_user_model):
        owner = django_user_model.objects.create_user(username="owner")
        job = finish(services.job_create(upload=png_upload(), user=owner), "a cat")

        response = client.post(reverse("web:job_correct", kwargs={"job_id": job.pk}), {"caption": "x"})

        assert response.status_code == 404
        job.refresh_from_db()
        assert job.corrected_caption == ""


@pytest.fixture
def history(png_upload, starter_model_version):
    """Return three finished jobs with different captions and ages."""
    dog = finish(services.job_create(upload=png_upload("dog.png"), original_filename="dog.png"), "a dog in the snow", model_version=starter_model_version)
    cat = finish(services.job_create(upload=png_upload("cat.png")), "a cat on a sofa")
    services.job_correct(job=cat, text="a grey kitten asleep")
    old = services.job_create(upload=png_upload("old.png"))
    services.job_fail(job=old, message="The model crashed.")
    CaptionJob.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    return {"dog": dog, "cat": cat, "old": old}


def listed(response) -> str:
    return response.content.decode()


class HistoryTests:
    def test_search_matches_original_caption(self, client, history):
        html = listed(client.get("/jobs/", {"q": "SNOW"}))

        assert "a dog in the snow" in html
        assert "kitten" not in html

    def test_search_matches_correction(self, client, history):
        html = listed(client.get("/jobs/", {"q": "kitten"}))

        assert "a grey kitten asleep" in html
        assert "a dog in the snow" not in html

    def test_status_filter(self, client, history):
        html = listed(client.get("/jobs/", {"status": "failed"}))

        assert "No caption: the job failed." in html
        assert "a dog in the snow" not in html

    def test_model_version_filter(self, client, history):
        html = listed(client.get("/jobs/", {"model": "starter:1"}))

        assert "a dog in the snow" in html
        assert "kitten" not in html

    def test_date_range_filter(self, client, history):
        today = timezone.localdate()

        recent = listed(client.get("/jobs/", {"created_from": today.isoformat()}))
        older = listed(client.get("/jobs/", {"created_to": (today - timedelta(days=5)).isoformat()}))

        assert "a dog in the snow" in recent
        assert "No caption: the job failed." not in recent
        assert "No caption: the job failed." in older
        assert "a dog in the snow" not in older

    def test_invalid_filter_is_400_with_message(self, client, history):
        response = client.get("/jobs/", {"created_from": "2026-02-10", "created_to": "2026-02-01"})

        assert response.status_code == 400
        assert "The end date is before the start date." in listed(response)

    def test_unknown_status_is_400(self, client, history):
        response = client.get("/jobs/", {"status": "exploded"})

        assert response.status_code == 400
        assert "Select a valid choice." in listed(response)

    def test_no_match_says_so(self, client, history):
        html = listed(client.get("/jobs/", {"q": "giraffe"}))

        assert "No jobs match" in html

    def test_pagination_keeps_filters(self, client, png_upload, monkeypatch):
        monkeypatch.setattr("captioning.views.JOBS_PER_PAGE", 2)
        for index in range(3):
            finish(services.job_create(upload=png_upload(f"dog-{index}.png")), f"a dog number {index}")

        html = listed(client.get("/jobs/", {"q": "dog"}))

        assert "q=dog&amp;page=2" in html

    def test_user_sees_only_own_jobs(self, client, png_upload, django_user_model, api_user):
        other = django_user_model.objects.create_user(username="other")
        finish(services.job_create(upload=png_upload(), user=other), "someone else's cat")
        finish(services.job_create(upload=png_upload(), user=api_user), "my own dog")
        client.force_login(api_user)

        html = listed(client.get("/jobs/"))

        assert "my own dog" in html
        assert "someone else&#x27;s cat" not in html


class DeleteTests:
    def test_get_asks_for_confirmation(self, client, history):
        job = history["dog"]

        response = client.get(reverse("web:job_delete", kwargs={"job_id": job.pk}))

        assert response.status_code == 200
        assert "Delete this job?" in listed(response)
        assert CaptionJob.objects.filter(pk=job.pk).exists()

    def test_post_deletes_and_redirects(self, client, history):
        job = history["dog"]

        response = client.post(reverse("web:job_delete", kwargs={"job_id": job.pk}), follow=True)

        assert not CaptionJob.objects.filter(pk=job.pk).exists()
        assert response.redirect_chain[-1][0] == reverse("web:job_list")
        assert "Deleted the job of dog.png." in listed(response)

    def test_running_job_is_kept_with_message(self, client, png_upload):
        job = services.job_create(upload=png_upload())
        CaptionJob.objects.filter(pk=job.pk).update(status=CaptionJob.Status.RUNNING)

        response = client.post(reverse("web:job_delete", kwargs={"job_id": job.pk}))

        assert response.status_code == 409
        assert "A worker is captioning this photo right now." in listed(response)
        assert CaptionJob.objects.filter(pk=job.pk).exists()

    def test_delete_needs_csrf_token(self, history):
        from django.test import Client

        job = history["dog"]

        response = Client(enforce_csrf_checks=True).post(reverse("web:job_delete", kwargs={"job_id": job.pk}))

        assert response.status_code == 403
        assert CaptionJob.objects.filter(pk=job.pk).exists()

    def test_another_users_job_is_404(self, client, png_upload, django_user_model):
        owner = django_user_model.objects.create_user(username="owner")
        job = services.job_create(upload=png_upload(), user=owner)

        response = client.post(reverse("web:job_delete", kwargs={"job_id": job.pk}))

        assert response.status_code == 404
        assert CaptionJob.objects.filter(pk=job.pk).exists()
