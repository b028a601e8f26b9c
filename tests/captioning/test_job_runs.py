"""How a job runs when messages repeat, workers die and the database or storage fail:
guarded starts, takeover by a retry, the attempt limit, and the sweep.

Jobs run in the test process with the real starter model; tests/faults runs the
same cases against worker processes that are killed for real.
"""

from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from captioning import inference, services
from captioning.models import CaptionJob

TOKEN = "3f1c-task:0"
RETRY_TOKEN = "3f1c-task:1"


@pytest.fixture
def photo(dataset_dir):
    return dataset_dir / "flickr8k-900" / "images" / "1001773457_577c3a7d70.jpg"


@pytest.fixture
def job(photo, starter_model_version) -> CaptionJob:
    with open(photo, "rb") as file:
        return services.job_create(upload=file, original_filename=photo.name)


def reload(job: CaptionJob) -> CaptionJob:
    job.refresh_from_db()
    return job


def hold(job: CaptionJob, *, token: str = TOKEN, attempts: int = 1, started_ago: float = 1) -> None:
    """Mark the job as running under `token`, as a worker that started it would."""
    CaptionJob.objects.filter(pk=job.pk).update(
        status="running",
        run_token=token,
        attempts=attempts,
        started_at=timezone.now() - timedelta(seconds=started_ago),
    )


@pytest.mark.django_db
class TestGuardedRun:
    def test_run_counts_attempt_and_clears_token(self, job):
        services.job_run(job_id=job.id, run_token=TOKEN)

        job = reload(job)
        assert job.status == "succeeded", job.error_message
        assert job.attempts == 1
        assert job.run_token == ""

    def test_duplicate_delivery_is_noop(self, job):
        """A second copy of the message, while the first run holds the job, changes nothing."""
        hold(job)

        services.job_run(job_id=job.id, run_token=TOKEN)

        job = reload(job)
        assert job.status == "running"
        assert job.attempts == 1
        assert job.run_token == TOKEN

    def test_retry_takes_over_from_its_previous_try(self, job):
        hold(job, token=TOKEN)

        services.job_run(job_id=job.id, run_token=RETRY_TOKEN, takeover_token=TOKEN)

        job = reload(job)
        assert job.status == "succeeded", job.error_message
        assert job.attempts == 2

    def test_retry_never_takes_another_tasks_job(self, job):
        hold(job, token="other-task:0")

        services.job_run(job_id=job.id, run_token=RETRY_TOKEN, takeover_token=TOKEN)

        job = reload(job)
        assert job.status == "running"
        assert job.run_token == "other-task:0"

    def test_spent_attempts_fail_the_job(self, job, settings):
        settings.JOB_MAX_ATTEMPTS = 3
        hold(job, token=TOKEN, attempts=3)

        services.job_run(job_id=job.id, run_token=RETRY_TOKEN, takeover_token=TOKEN)

        job = reload(job)
        assert job.status == "failed"
        assert "tried 3 times" in job.error_message
        assert job.caption == ""

    def test_taken_job_discards_late_caption(self, job, monkeypatch):
        """A run that lost the job while captioning (the sweep re-queued it) stores nothing."""
        caption = inference.images_caption

        def caption_then_lose_job(**kwargs):
            results = caption(**kwargs)
            CaptionJob.objects.filter(pk=job.pk).update(status="queued", run_token="")
            return results

        monkeypatch.setattr(inference, "images_caption", caption_then_lose_job)

        services.job_run(job_id=job.id, run_token=TOKEN)

        job = reload(job)
        assert job.status == "queued"
        assert job.caption == ""

    def test_transient_storage_error_requeues(self, job, monkeypatch):
        def storage_down(*args, **kwargs):
            raise ConnectionError("storage unreachable")

        monkeypatch.setattr(services.default_storage, "open", storage_down)

        with pytest.raises(services.TransientError, match="storage unreachable"):
            services.job_run(job_id=job.id, run_token=TOKEN)

        job = reload(job)
        assert job.status == "queued"
        assert job.attempts == 1
        assert job.run_token == ""

    def test_soft_time_limit_fails_with_limit(self, job, settings, monkeypatch):
        settings.CAPTION_SOFT_TIME_LIMIT = 240

        def too_slow(**kwargs):
            raise SoftTimeLimitExceeded()

        monkeypatch.setattr(inference, "images_caption", too_slow)

        services.job_run(job_id=job.id, run_token=TOKEN)

        job = reload(job)
        assert job.status == "failed"
        assert "longer than the limit of 240 s" in job.error_message

    def test_failing_needs_the_holding_token(self, job):
        hold(job, token="other-task:0")

        services.job_fail(job=job, message="late failure", run_token=TOKEN)

        assert reload(job).status == "running"


@pytest.mark.django_db
class TestSweep:
    @pytest.fixture(autouse=True)
    def limits(self, settings):
        settings.JOB_RESEND_AFTER_SECONDS = 600
        settings.CAPTION_TIME_LIMIT = 300
        settings.JOB_MAX_ATTEMPTS = 3

    def test_fresh_jobs_are_left_alone(self, job):
        hold(job, started_ago=10)

        report = services.jobs_sweep()

        assert report == services.SweepReport(resent=0, requeued=0, failed=0)
        assert reload(job).status == "running"

    def test_long_queued_job_is_sent_again(self, job):
        sent_long_ago = timezone.now() - timedelta(seconds=900)
        CaptionJob.objects.filter(pk=job.pk).update(enqueued_at=sent_long_ago)

        report = services.jobs_sweep()

        job = reload(job)
        assert report.resent == 1
        assert job.status == "queued"
        assert job.enqueued_at > sent_long_ago

    def test_never_sent_job_is_sent(self, job):
        CaptionJob.objects.filter(pk=job.pk).update(
            enqueued_at=None, created_at=timezone.now() - timedelta(seconds=900)
        )

        assert services.jobs_sweep().resent == 1
        assert reload(job).enqueued_at is not None

    def test_job_of_lost_worker_is_queued_again(self, job):
        hold(job, started_ago=400)

        report = services.jobs_sweep()

        job = reload(job)
        assert report.requeued == 1
        assert job.status == "queued"
        assert job.run_token == ""
        assert job.attempts == 1

    def test_spent_lost_job_fails_with_reason(self, job):
        hold(job, attempts=3, started_ago=400)

        report = services.jobs_sweep()

        job = reload(job)
        assert report.failed == 1
        assert job.status == "failed"
        assert "tried 3 times" in job.error_message

    def test_requeued_job_then_succeeds_once(self, job):
        hold(job, started_ago=400)
        services.jobs_sweep()

        services.job_run(job_id=job.id, run_token="sweep-task:0")

        job = reload(job)
        assert job.status == "succeeded", job.error_message
        assert job.attempts == 2


@pytest.mark.django_db
def test_sweep_jobs_command_reports(job, capsys):
    from django.core.management import call_command

    hold(job, started_ago=10_000)

    call_command("sweep_jobs")

    assert "queued again: 1" in capsys.readouterr().out
    assert reload(job).status == "queued"
