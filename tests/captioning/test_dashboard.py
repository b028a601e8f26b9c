"""The admin dashboard: production figures, the index summary, comparison and sample photos."""

import io
import uuid
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
import redis
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.template.loader import render_to_string
from django.test import RequestFactory
from PIL import Image

from captioning import dashboard
from captioning.models import CaptionJob, Evaluation, ModelAlias, ModelVersion, Rollout
from tests.web.test_translations import english_phrases

NOW = datetime(2026, 5, 3, 12, 30, tzinfo=dt_timezone.utc)
COMPARE_URL = "/admin/captioning/modelversion/compare/"


def make_version(name: str, **fields) -> ModelVersion:
    fields.setdefault("status", ModelVersion.Status.READY)
    return ModelVersion.objects.create(name=name, checkpoint="checkpoints/starter.safetensors", **fields)


def make_job(
    version,
    *,
    created_at: datetime,
    status: str = CaptionJob.Status.SUCCEEDED,
    queue_seconds: float | None = None,
    model_seconds: float | None = None,
    error_message: str = "",
) -> CaptionJob:
    """Create a job with exact timestamps. created_at is set after the insert, because it is auto_now_add."""
    job = CaptionJob.objects.create(
        image=f"uploads/{uuid.uuid4()}.png", byte_size=1, format="PNG", width=32, height=32,
        sha256="0" * 64, model_version=version, status=status, model_seconds=model_seconds,
        error_message=error_message,
    )
    started_at = created_at + timedelta(seconds=queue_seconds) if queue_seconds is not None else None
    finished_at = started_at + timedelta(seconds=model_seconds or 0) if started_at and status in CaptionJob.FINISHED_STATUSES else None
    CaptionJob.objects.filter(pk=job.pk).update(
        created_at=created_at, started_at=started_at, finished_at=finished_at
    )
    job.refresh_from_db()
    return job


def jpeg_size(content: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(content)) as image:
        assert image.format == "JPEG"
        return image.size


# Percentiles


class TestPercentile:
    def test_nearest_rank_values(self):
        values = list(range(1, 21))

        assert dashboard.percentile(values, 50) == 10
        assert dashboard.percentile(values, 95) == 19
        assert dashboard.percentile(values, 100) == 20

    def test_single_and_empty(self):
        assert dashboard.percentile([4.0], 50) == 4.0
        assert dashboard.percentile([4.0], 95) == 4.0
        assert dashboard.percentile([], 50) is None

    def test_out_of_range_rejected(self):
        with pytest.raises(ValueError, match="0, 100"):
            dashboard.percentile([1], 0)


# Production figures


@pytest.fixture
def figures_version(db):
    """A version with 10 succeeded, 3 failed and 1 queued job in the 24 hours before NOW."""
    version = make_version("figures")
    other = make_version("other")
    for index in range(1, 11):
        make_job(
            version, created_at=NOW - timedelta(hours=2, minutes=index),
            queue_seconds=index, model_seconds=index / 10,
        )
    for queue_seconds, message in ((20, "Out of memory"), (30, "Out of memory"), (40, "")):
        make_job(
            version, created_at=NOW - timedelta(hours=5), status=CaptionJob.Status.FAILED,
            queue_seconds=queue_seconds, error_message=message,
        )
    make_job(version, created_at=NOW - timedelta(minutes=1), status=CaptionJob.Status.QUEUED)
    # Outside the period, and another version's job: neither counts.
    make_job(version, created_at=NOW - timedelta(hours=30), queue_seconds=999, model_seconds=99)
    make_job(other, created_at=NOW - timedelta(hours=1), queue_seconds=500, model_seconds=50)
    return version


@pytest.mark.django_db
class TestProductionFigures:
    def test_counts(self, figures_version):
        [figures] = dashboard.production_figures(
            model_versions=[figures_version], since=NOW - timedelta(hours=24), until=NOW
        )

        assert figures.jobs == 14
        assert figures.succeeded == 10
        assert figures.failed == 3
        assert figures.unfinished == 1

    def test_percentiles(self, figures_version):
        [figures] = dashboard.production_figures(
            model_versions=[figures_version], since=NOW - timedelta(hours=24), until=NOW
        )

        # Queue times of started jobs: 1..10, 20, 30, 40 (13 values).
        assert figures.queue.count == 13
        assert figures.queue.p50 == pytest.approx(7)
        assert figures.queue.p95 == pytest.approx(40)
        # Model times of succeeded jobs: 0.1..1.0.
        assert figures.model.count == 10
        assert figures.model.p50 == pytest.approx(0.5)
        assert figures.model.p95 == pytest.approx(1.0)

    def test_failure_reasons_grouped(self, figures_version):
        [figures] = dashboard.production_figures(
            model_versions=[figures_version], since=NOW - timedelta(hours=24), until=NOW
        )

        reasons = [(reason.message, reason.count) for reason in figures.failure_reasons]
        assert reasons == [("Out of memory", 2), ("(no message)", 1)]

    def test_hourly_series(self, figures_version):
        [figures] = dashboard.production_figures(
            model_versions=[figures_version], since=NOW - timedelta(hours=24), until=NOW
        )
        by_start = {bucket.start: bucket for bucket in figures.series}

        assert figures.bucket_size == "hour"
        # 12:30 the day before to 12:30: 25 hours overlap the period.
        assert len(figures.series) == 25
        assert figures.series[0].start == datetime(2026, 5, 2, 12, tzinfo=dt_timezone.utc)
        assert by_start[datetime(2026, 5, 3, 10, tzinfo=dt_timezone.utc)].succeeded == 10
        assert by_start[datetime(2026, 5, 3, 7, tzinfo=dt_timezone.utc)].failed == 3
        assert by_start[datetime(2026, 5, 3, 12, tzinfo=dt_timezone.utc)].jobs == 1
        assert sum(bucket.jobs for bucket in figures.series) == 14

    def test_daily_series_in_local_days(self, figures_version, settings):
        settings.TIME_ZONE = "Asia/Shanghai"
        [figures] = dashboard.production_figures(
            model_versions=[figures_version], since=NOW - timedelta(days=7), until=NOW
        )

        assert figures.bucket_size == "day"
        assert len(figures.series) == 8
        first = figures.series[0].start
        assert (first.hour, first.minute) == (0, 0)
        assert str(first.tzinfo) == "Asia/Shanghai"
        # 30 hours before NOW is 2 May 14:30 in Shanghai, the rest is on 3 May.
        assert [bucket.jobs for bucket in figures.series[-2:]] == [1, 14]

    def test_empty_period(self, db):
        version = make_version("idle")

        figures = dashboard.version_figures(model_version=version, since=NOW - timedelta(hours=1), until=NOW)

        assert figures.jobs == 0
        assert figures.queue.p50 is None
        assert figures.failure_rate is None
        assert [bucket.jobs for bucket in figures.series] == [0, 0]


# Queue depth


class TestQueueDepth:
    def test_real_redis(self, redis_url):
        client = redis.Redis.from_url(redis_url)
        queue = f"dashboard-test-{uuid.uuid4().hex[:8]}"
        client.rpush(queue, "a", "b", "c")
        try:
            depth = dashboard.queue_depth(broker_url=redis_url, queue_name=queue)
        finally:
            client.delete(queue)
            client.close()

        assert depth.messages == 3
        assert depth.error == ""

    def test_default_is_celery_queue(self, redis_url):
        assert dashboard.queue_depth().messages == 0

    def test_unreachable_redis(self):
        depth = dashboard.queue_depth(broker_url="redis://127.0.0.1:1/0")

        assert depth.messages is None
        assert "ConnectionError" in depth.error

    def test_memory_broker(self):
        depth = dashboard.queue_depth(broker_url="memory://")

        assert depth.messages is None
        assert "not Redis" in depth.error


# Index page


@pytest.fixture
def unreachable_broker(monkeypatch):
    from captionsite.celery import app

    monkeypatch.setitem(app.conf, "broker_url", "redis://127.0.0.1:1/0")


@pytest.fixture
def plain_user_client(client, db):
    user = get_user_model().objects.create_user(username="plain", password="x")
    client.force_login(user)
    return client


@pytest.fixture
def staff_without_permission_client(client, db):
    user = get_user_model().objects.create_user(username="staff", password="x", is_staff=True)
    client.force_login(user)
    return client


@pytest.mark.django_db
class TestIndexDashboard:
    def test_summary_figures(self, figures_version, unreachable_broker):
        ModelAlias.objects.create(name="candidate", model_version=figures_version)
        Rollout.objects.update_or_create(pk=Rollout.SINGLETON_ID, defaults={"canary_percent": 15})

        summary = dashboard.index_summary(now=NOW)

        assert summary.queue_depth.messages is None
        assert summary.queued_in_database == 1
        # The other version's job counts here too: the index covers every version.
        assert summary.status_counts == {"queued": 1, "running": 0, "succeeded": 11, "failed": 3}
        assert len(summary.finished_series) == 25
        assert summary.succeeded_last_day == 11
        assert summary.candidate_version == figures_version
        assert summary.canary_percent == 15

    def test_index_renders_for_staff(self, admin_client, starter_model_version, unreachable_broker):
        response = admin_client.get("/admin/")
        html = response.content.decode()

        assert response.status_code == 200
        assert 'id="captioning-dashboard"' in html
        assert "unknown" in html
        assert f'/admin/captioning/modelversion/{starter_model_version.pk}/change/' in html
        assert '<svg class="chart"' in html
        assert 'role="img"' in html
        # The app list still follows the dashboard.
        assert html.index("captioning-dashboard") < html.index('id="content-related"')

    def test_index_shows_real_queue_depth(self, admin_client, redis_url):
        html = admin_client.get("/admin/").content.decode()

        assert "<dd data-queue-depth>" in html
        assert "unknown" not in html.split("data-queue-depth>")[1].split("</dd>")[0]

    def test_index_refused_for_non_staff(self, plain_user_client):
        response = plain_user_client.get("/admin/")

        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]

    def test_dashboard_hidden_without_permission(self, staff_without_permission_client, unreachable_broker):
        response = staff_without_permission_client.get("/admin/")

        assert response.status_code == 200
        assert "captioning-dashboard" not in response.content.decode()


# Comparison


def photo_bytes(size=(800, 600), colour=(200, 120, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def dataset_root(settings, tmp_path):
    images = tmp_path / "tiny" / "images"
    images.mkdir(parents=True)
    for name in ("dog.png", "cat.png", "boat.png"):
        (images / name).write_bytes(photo_bytes())
    (tmp_path / "secret.png").write_bytes(photo_bytes())
    settings.DATASET_ROOT = tmp_path
    return tmp_path


def make_evaluation(version, captions: dict[str, str], **fields) -> Evaluation:
    samples = [
        {"image": image, "caption": caption, "references": [f"a photo of a {image[:-4]}", "another reference"]}
        for image, caption in captions.items()
    ]
    fields.setdefault("status", Evaluation.Status.SUCCEEDED)
    return Evaluation.objects.create(
        model_version=version, dataset_name="tiny-test", format=Evaluation.Format.CAPTIONS_CSV,
        annotations="tiny/captions.csv", images_dir="tiny/images", samples=samples, **fields,
    )


@pytest.fixture
def compared(db, dataset_root):
    first = make_version(
        "alpha", scores={"tiny-test": {"bleu4": 0.2, "cider": 0.5, "images": 3}},
        training={"data": {"sources": [{"captions_csv": "data/captions.csv", "images": 729}]}, "epochs": 10, "seed": 3},
        encoder="efficientnet_lite0", decoder="transformer",
    )
    second = make_version(
        "beta", scores={"tiny-test": {"bleu4": 0.3, "cider": 0.4, "images": 3}, "validation": {"bleu4": 0.1}},
        decoder="lstm",
    )
    make_evaluation(first, {"dog.png": "a dog runs", "cat.png": "a cat sleeps", "boat.png": "a boat"})
    make_evaluation(second, {"cat.png": "a cat on a bed", "dog.png": "a brown dog"})
    # A failed evaluation is never shown, even when it is the newest.
    make_evaluation(second, {"dog.png": "failed caption"}, status=Evaluation.Status.FAILED)
    return first, second


@pytest.mark.django_db
class TestComparison:
    def test_score_rows_mark_best(self, compared):
        rows = {(row.dataset, row.metric): row for row in dashboard.score_rows(model_versions=list(compared))}

        assert rows[("tiny-test", "bleu4")].best == {1}
        assert rows[("tiny-test", "cider")].best == {0}
        assert rows[("tiny-test", "images")].best == frozenset()
        assert rows[("validation", "bleu4")].values == [None, 0.1]
        assert rows[("validation", "bleu4")].best == frozenset()

    def test_sample_grid_matches_images(self, compared):
        [grid] = dashboard.sample_grids(model_versions=list(compared))

        assert grid.dataset == "tiny-test"
        assert [row.image for row in grid.rows] == ["dog.png", "cat.png"]
        assert grid.rows[0].captions == ["a dog runs", "a brown dog"]
        assert grid.rows[0].references[0] == "a photo of a dog"

    def test_page_renders_for_staff(self, admin_client, compared):
        first, second = compared

        response = admin_client.get(COMPARE_URL, {"ids": [first.pk, second.pk], "period": "24h"})
        html = response.content.decode()

        assert response.status_code == 200
        assert "alpha:1" in html
        assert "beta:1" in html
        assert 'data-score="tiny-test/bleu4"' in html
        assert '<td class="number best-score"><strong>0.3000</strong>' in html
        assert "a brown dog" in html
        assert "a cat sleeps" in html
        assert 'alt="a photo of a dog"' in html
        assert "failed caption" not in html
        assert "729 images" in html
        assert 'id="production-figures"' in html
        assert '<strong aria-current="true">24 hours</strong>' in html

    def test_page_is_chinese(self, admin_client, compared):
        first, second = compared
        admin_client.cookies["django_language"] = "zh-hans"

        html = admin_client.get(COMPARE_URL, {"ids": [first.pk, second.pk]}).content.decode()

        assert "生产数据" in html
        # The admin's navigation shows model names that are not this page's strings.
        content = html[html.index('<div id="content-main"'):html.index("<!-- END Content -->")]
        allowed = [
            "Captionsite", "Django", "alpha:1", "beta:1", "efficientnet_lite0", "transformer", "lstm",
            "tiny-test", "a dog runs", "a brown dog", "a cat sleeps", "a cat on a bed",
            "a photo of a dog", "a photo of a cat", "another reference", "captions.csv", "dog.png", "cat.png",
        ]
        phrases = english_phrases(content, allowed)
        assert phrases == [], phrases

    def test_fewer_than_two_redirects(self, admin_client, compared):
        response = admin_client.get(COMPARE_URL, {"ids": [compared[0].pk, "x"]})

        assert response.status_code == 302
        assert response["Location"] == "/admin/captioning/modelversion/"

    def test_action_redirects_to_page(self, admin_client, compared):
        first, second = compared

        response = admin_client.post(
            "/admin/captioning/modelversion/",
            {"action": "compare", "_selected_action": [second.pk, first.pk]},
        )

        assert response.status_code == 302
        assert response["Location"] == f"{COMPARE_URL}?ids={first.pk}&ids={second.pk}"

    def test_refused_for_non_staff(self, plain_user_client, compared):
        response = plain_user_client.get(COMPARE_URL, {"ids": [version.pk for version in compared]})

        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]

    def test_refused_without_view_permission(self, staff_without_permission_client, compared):
        response = staff_without_permission_client.get(COMPARE_URL, {"ids": [version.pk for version in compared]})

        assert response.status_code == 403

    def test_figures_include_for_change_page(self, compared):
        request = RequestFactory().get("/admin/captioning/modelversion/1/change/", {"period": "30d"})
        context = dashboard.figures_context(model_version=compared[0], period=request.GET["period"])

        html = render_to_string("admin/captioning/modelversion/_figures.html", {**context, "request": request})

        assert context["period"] == "30d"
        assert "Queue and model time of alpha:1" in html
        assert "?period=7d#production-figures" in html


# Sample photos


def sample_url(evaluation: Evaluation, name: str) -> str:
    return f"/admin/captioning/evaluation/{evaluation.pk}/sample/{name}"


@pytest.mark.django_db
class TestSamplePhoto:
    def test_reencoded_thumbnail(self, admin_client, compared):
        evaluation = compared[0].evaluations.get()

        response = admin_client.get(sample_url(evaluation, "dog.png"))

        assert response.status_code == 200
        assert response["Content-Type"] == "image/jpeg"
        assert jpeg_size(response.content) == (320, 240)

    @pytest.mark.parametrize("name", ["../secret.png", "..%2Fsecret.png", "..", "nope.png", "tiny/images/dog.png"])
    def test_bad_names_not_found(self, admin_client, compared, name):
        evaluation = compared[0].evaluations.get()

        assert admin_client.get(sample_url(evaluation, name)).status_code == 404

    def test_sample_named_outside_folder_not_found(self, admin_client, compared):
        evaluation = compared[0].evaluations.get()
        evaluation.samples = [{"image": "../secret.png", "caption": "x", "references": []}]
        evaluation.save()

        assert admin_client.get(sample_url(evaluation, "../secret.png")).status_code == 404

    def test_undecodable_file_not_found(self, admin_client, compared, dataset_root):
        (dataset_root / "tiny" / "images" / "dog.png").write_bytes(b"not an image")
        evaluation = compared[0].evaluations.get()

        assert admin_client.get(sample_url(evaluation, "dog.png")).status_code == 404

    def test_refused_for_non_staff(self, plain_user_client, compared):
        evaluation = compared[0].evaluations.get()

        response = plain_user_client.get(sample_url(evaluation, "dog.png"))

        assert response.status_code == 302

    def test_staff_with_view_permission(self, staff_without_permission_client, compared):
        evaluation = compared[0].evaluations.get()
        user = get_user_model().objects.get(username="staff")
        assert staff_without_permission_client.get(sample_url(evaluation, "dog.png")).status_code == 403

        user.user_permissions.add(Permission.objects.get(codename="view_modelversion"))

        assert staff_without_permission_client.get(sample_url(evaluation, "dog.png")).status_code == 200
