"""Services that change state: model versions, and running jobs with the starter model.

Jobs here run in the test process through services.job_run, with the real starter
checkpoint on the CPU. tests/stack runs them in a Celery worker instead.
"""

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.core.files.storage import default_storage

from captioning import services
from captioning.models import CaptionJob, ModelVersion
from captioning.tasks import caption_job_run

REPO_ROOT = Path(__file__).resolve().parents[2]
CAPTION_PATTERN = re.compile(r"^[A-Za-z][A-Za-z' -]*[A-Za-z]( ?[.!?])?$")


def create_job(path, **options) -> CaptionJob:
    with open(path, "rb") as file:
        return services.job_create(upload=file, original_filename=path.name, **options)


@pytest.fixture
def photo(dataset_dir):
    return dataset_dir / "flickr8k-900" / "images" / "1001773457_577c3a7d70.jpg"


@pytest.fixture
def missing_model_version(db):
    return ModelVersion.objects.create(
        name="gone", checkpoint="checkpoints/does-not-exist.safetensors", status="ready"
    )


# Running jobs


@pytest.mark.django_db
class TestJobRun:
    def test_photo_gets_a_caption_from_the_active_version(self, photo, starter_model_version):
        job = create_job(photo)

        services.job_run(job_id=job.id)

        job.refresh_from_db()
        assert job.status == "succeeded", job.error_message
        assert CAPTION_PATTERN.match(job.caption), job.caption
        assert job.model_version == starter_model_version
        assert job.alternatives[0]["text"] == job.caption
        assert job.truncated is job.alternatives[0]["truncated"]
        assert job.started_at <= job.finished_at
        assert job.model_seconds > 0
        assert job.error_message == ""

    def test_alternatives_are_best_first(self, photo, starter_model_version, settings):
        settings.CAPTION_ALTERNATIVES = 3
        job = create_job(photo)

        services.job_run(job_id=job.id)

        job.refresh_from_db()
        assert 1 <= len(job.alternatives) <= 3
        for alternative in job.alternatives:
            assert set(alternative) == {"text", "log_prob", "confidence", "truncated"}
            assert 0 <= alternative["confidence"] <= 1

    def test_animated_gif_gets_the_same_caption_every_time(self, bad_inputs_dir, starter_model_version):
        """The first frame is captioned, so two uploads of the GIF read the same."""
        first = create_job(bad_inputs_dir / "animated-two-palettes.gif")
        second = create_job(bad_inputs_dir / "animated-two-palettes.gif")

        services.job_run(job_id=first.id)
        services.job_run(job_id=second.id)

        first.refresh_from_db()
        second.refresh_from_db()
        assert first.status == second.status == "succeeded"
        assert first.caption == second.caption

    @pytest.mark.parametrize(
        "name",
        ["cmyk.jpg", "gray16.png", "palette-transparent.png", "rgba-half-transparent.png", "png-named.txt"],
    )
    def test_odd_inputs_are_captioned(self, bad_inputs_dir, starter_model_version, name):
        job = create_job(bad_inputs_dir / name)
        services.job_run(job_id=job.id)
        job.refresh_from_db()
        assert job.status == "succeeded", job.error_message
        assert job.caption

    def test_options_reach_the_model(self, photo, starter_model_version):
        """A one-word limit makes a truncated caption of at most one word."""
        job = create_job(photo, beam_size=1, max_length=1)
        services.job_run(job_id=job.id)
        job.refresh_from_db()
        assert job.status == "succeeded", job.error_message
        assert len(job.caption.rstrip(" .").split()) <= 1
        assert job.truncated

    def test_finished_job_is_left_unchanged(self, photo, starter_model_version):
        job = create_job(photo)
        CaptionJob.objects.filter(id=job.id).update(status="succeeded", caption="kept")

        services.job_run(job_id=job.id)

        job.refresh_from_db()
        assert job.caption == "kept"
        assert job.started_at is None

    def test_running_job_is_left_to_its_worker(self, photo, starter_model_version):
        job = create_job(photo)
        CaptionJob.objects.filter(id=job.id).update(status="running")

        services.job_run(job_id=job.id)

        job.refresh_from_db()
        assert job.status == "running"

    def test_unknown_job_is_skipped(self):
        assert services.job_run(job_id=uuid.uuid4()) is None

    def test_unloadable_model_version_fails_the_job(self, photo, missing_model_version):
        job = create_job(photo, model_version=missing_model_version)

        services.job_run(job_id=job.id)

        job.refresh_from_db()
        assert job.status == "failed"
        assert "gone:1 could not be loaded" in job.error_message
        assert "does-not-exist.safetensors" in job.error_message

    def test_no_active_version_fails_the_job(self, photo, starter_model_version):
        ModelVersion.objects.update(is_active=False)
        job = create_job(photo)

        services.job_run(job_id=job.id)

        job.refresh_from_db()
        assert job.status == "failed"
        assert "No model version is active" in job.error_message

    def test_lost_upload_fails_the_job(self, photo, starter_model_version):
        job = create_job(photo)
        default_storage.delete(job.image.name)

        services.job_run(job_id=job.id)

        job.refresh_from_db()
        assert job.status == "failed"
        assert "no longer in storage" in job.error_message


@pytest.mark.django_db
def test_task_runs_the_job(photo, starter_model_version):
    """The Celery task, executed in this process, stores the caption on the job."""
    job = create_job(photo)

    caption_job_run.apply(args=[str(job.id)])

    job.refresh_from_db()
    assert job.status == "succeeded", job.error_message


def test_importing_the_app_loads_no_torch():
    """Nothing touches torch (or CUDA) until a job needs the model, so workers can fork."""
    code = (
        "import sys, django; django.setup(); "
        "import captioning.tasks, captioning.services, captioning.api.views, captionsite.urls; "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={"DJANGO_SETTINGS_MODULE": "captionsite.settings", "PATH": "/usr/bin:/bin"},
        check=True,
    )
    assert result.stdout.strip() == "False", result.stderr
