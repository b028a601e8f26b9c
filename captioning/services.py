"""Every change of state of caption jobs: creating, running, failing and deleting
them. Views, the API, tasks and the admin call these; model versions change in
captioning.registry.
"""

import logging
import time
import uuid
from typing import IO

from django.conf import settings
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from captioning import imaging, inference, registry, renditions, selectors
from captioning.models import CaptionBatch, CaptionJob, ModelVersion

logger = logging.getLogger(__name__)


class NoActiveModelVersion(Exception):
    """No model version is active, so a job has nothing to caption it with."""


class JobRunning(Exception):
    """A worker is captioning the job, so it cannot be deleted until it finishes."""


class BatchFull(Exception):
    """The batch already has BATCH_MAX_JOBS jobs, so it takes no more photos."""


class CorrectionRejected(Exception):
    """A caption correction that cannot be stored. `message` is the reason, for a person."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# Jobs one web upload may create, the same limit as a batch request to the API.
BATCH_MAX_JOBS = 50

# Maximum length of a correction in characters. Captions are one sentence.
CORRECTION_MAX_CHARS = 500


def upload_name(*, job_id: uuid.UUID, extension: str) -> str:
    """Return the storage name for a job's image; the extension follows the content."""
    return f"uploads/{job_id}.{extension}"


def job_enqueue(*, job_id: uuid.UUID) -> None:
    """Send a job to the workers, logging rather than raising when the broker is down.

    A job that could not be sent stays queued in the database, which is the record.
    """
    from captioning.tasks import caption_job_run

    try:
        caption_job_run.delay(str(job_id))
    except Exception:
        logger.exception("Could not enqueue caption job %s; it stays queued", job_id)
    else:
        logger.info("Enqueued caption job %s", job_id)


def job_create(
    *,
    upload: IO[bytes],
    original_filename: str = "",
    user=None,
    model_version: ModelVersion | None = None,
    beam_size: int | None = None,
    max_length: int | None = None,
    num_captions: int | None = None,
    batch: CaptionBatch | None = None,
) -> CaptionJob:
    """Check an upload, store it, create a queued job, and enqueue it after commit.

    Raises imaging.ImageRejected before anything is stored when the upload cannot be
    captioned. `batch` groups the job with the other photos of one web upload.
    `model_version` pins the job to a version. Without one, the canary share
    may send the job to the candidate version; otherwise it uses the version that is
    active when a worker runs it.
    """
    checked = imaging.upload_check(file=upload)
    if model_version is not None:
        route = CaptionJob.Route.PINNED
    else:
        model_version, route = registry.job_route()

    job_id = uuid.uuid4()
    name = upload_name(job_id=job_id, extension=checked.extension)
    upload.seek(0)
    stored_name = default_storage.save(name, File(upload, name=name))
    try:
        with transaction.atomic():
            job = CaptionJob.objects.create(
                id=job_id,
                user=user if user is not None and user.is_authenticated else None,
                image=stored_name,
                original_filename=(original_filename or "")[:255],
                byte_size=checked.byte_size,
                format=checked.format,
                width=checked.width,
                height=checked.height,
                sha256=checked.sha256,
                beam_size=beam_size,
                max_length=max_length,
                num_captions=num_captions,
                model_version=model_version,
                route=route,
                batch=batch,
            )
            transaction.on_commit(lambda: job_enqueue(job_id=job.id))
    except Exception:
        default_storage.delete(stored_name)
        raise

    logger.info(
        "Created caption job %s: %s %dx%d, %d bytes, %s model version %s",
        job.id,
        checked.format,
        checked.width,
        checked.height,
        checked.byte_size,
        route,
        model_version.pk if model_version is not None else "active",
    )
    return job


def job_delete(*, job: CaptionJob) -> None:
    """Delete a job, then its stored image and renditions once the deletion commits.

    Raises JobRunning for a running job, because its worker is about to write to the
    row. A queued job may go: the worker skips an id that no longer exists.
    """
    with transaction.atomic():
        deleted, _ = (
            CaptionJob.objects.filter(pk=job.pk).exclude(status=CaptionJob.Status.RUNNING).delete()
        )
        if not deleted:
            raise JobRunning(f"Caption job {job.pk} is running; delete it once it has finished.")
        names = [job.image.name] + [
            renditions.rendition_name(job_id=job.pk, size=size) for size in renditions.RENDITION_SIZES
        ]
        transaction.on_commit(lambda: stored_files_delete(names=names))
    logger.info("Deleted caption job %s", job.pk)


def batch_create(*, user=None) -> CaptionBatch:
    """Create an empty batch owned by `user`, or by nobody for an anonymous visitor."""
    batch = CaptionBatch.objects.create(user=user if user is not None and user.is_authenticated else None)
    logger.info("Created caption batch %s", batch.pk)
    return batch


def batch_job_create(*, batch: CaptionBatch, upload: IO[bytes], original_filename: str = "", **options) -> CaptionJob:
    """Create a job in `batch` with job_create's options, for the batch's owner.

    Raises BatchFull once the batch has BATCH_MAX_JOBS jobs, and imaging.ImageRejected
    like job_create. Two uploads racing for the last place may both get it, so a
    batch can end one or two jobs over the limit.
    """
    if batch.jobs.count() >= BATCH_MAX_JOBS:
        raise BatchFull(f"Caption batch {batch.pk} already has {BATCH_MAX_JOBS} photos.")
    return job_create(
        upload=upload, original_filename=original_filename, user=batch.user, batch=batch, **options
    )


def job_correct(*, job: CaptionJob, text: str) -> CaptionJob:
    """Store a person's correction of a captioned job, keeping the model's caption.

    Blank `text` removes the correction. Raises CorrectionRejected when the job has
    no caption yet or the text is longer than CORRECTION_MAX_CHARS.
    """
    text = " ".join(text.split())
    if job.status != CaptionJob.Status.SUCCEEDED:
        raise CorrectionRejected(gettext("Only a captioned photo can be corrected. Wait until its caption arrives."))
    if len(text) > CORRECTION_MAX_CHARS:
        raise CorrectionRejected(
            gettext("The correction has %(count)d characters, and at most %(max)d are kept. Shorten it.")
            % {"count": len(text), "max": CORRECTION_MAX_CHARS}
        )
    if text == job.caption:
        text = ""
    job.corrected_caption = text
    job.corrected_at = timezone.now() if text else None
    job.save(update_fields=["corrected_caption", "corrected_at"])
    logger.info("Caption job %s correction %s", job.pk, "stored" if text else "removed")
    return job


def stored_files_delete(*, names: list[str]) -> None:
    """Delete files from storage, logging rather than raising when one cannot go."""
    for name in names:
        try:
            default_storage.delete(name)
        except OSError:
            logger.exception("Could not delete %s from storage; remove it by hand", name)


def job_wait(*, job: CaptionJob, timeout_seconds: float, poll_seconds: float = 0.25) -> CaptionJob:
    """Re-read a job until it is finished or `timeout_seconds` have passed; return it.

    NOTE: this blocks a web server thread for the whole wait, which is why the API
    caps the wait at 30 seconds.
    """
    deadline = time.monotonic() + timeout_seconds
    while not job.is_finished and time.monotonic() < deadline:
        time.sleep(min(poll_seconds, max(deadline - time.monotonic(), 0)))
        job = selectors.job_get(job_id=job.pk) or job
    return job


def job_fail(*, job: CaptionJob, message: str) -> CaptionJob:
    """Mark a job failed with a message a person can act on."""
    job.status = CaptionJob.Status.FAILED
    job.error_message = message
    job.finished_at = timezone.now()
    job.save(update_fields=["status", "error_message", "finished_at"])
    logger.warning("Caption job %s failed: %s", job.id, message)
    return job


def job_start(*, job_id: uuid.UUID) -> CaptionJob | None:
    """Move a job from queued to running and return it, or None when another worker did.

    The filtered UPDATE makes the move atomic, so one job never runs twice at once.
    """
    moved = CaptionJob.objects.filter(id=job_id, status=CaptionJob.Status.QUEUED).update(
        status=CaptionJob.Status.RUNNING, started_at=timezone.now()
    )
    if moved == 0:
        return None
    return CaptionJob.objects.select_related("model_version").get(id=job_id)


def job_run(*, job_id: uuid.UUID, redelivered: bool = False) -> CaptionJob | None:
    """Caption a queued job and store the result or the failure on it.

    Returns the job, or None when it does not exist. A finished job is returned
    unchanged. A job found running belongs to another worker, unless the broker
    delivered it again because the worker that started it died. Such a job is marked
    failed, so an image that crashes workers cannot loop forever.
    """
    job = selectors.job_get(job_id=job_id)
    if job is None:
        logger.warning("Caption job %s does not exist; skipping it", job_id)
        return None
    if job.is_finished:
        logger.info("Caption job %s is already %s; skipping it", job_id, job.status)
        return job
    if job.status == CaptionJob.Status.RUNNING:
        if redelivered:
            return job_fail(
                job=job,
                message=(
                    "The worker captioning this image stopped before it finished. "
                    "Upload the image again; if this keeps happening, the image may "
                    "be crashing the model."
                ),
            )
        logger.info("Caption job %s is running in another worker; skipping it", job_id)
        return job

    job = job_start(job_id=job_id)
    if job is None:
        logger.info("Caption job %s was started by another worker; skipping it", job_id)
        return selectors.job_get(job_id=job_id)
    logger.info("Started caption job %s", job.id)

    try:
        return job_caption(job=job)
    except imaging.ImageRejected as error:
        return job_fail(job=job, message=error.message)
    except (inference.ModelUnavailable, NoActiveModelVersion) as error:
        return job_fail(job=job, message=str(error))
    except FileNotFoundError:
        return job_fail(
            job=job,
            message="The uploaded image is no longer in storage. Upload it again.",
        )
    except Exception as error:
        # Any other error is a bug or an outage, not the user's doing. It is recorded
        # on the job so that the job never stays running, and logged with its traceback.
        logger.exception("Caption job %s raised an unexpected error", job.id)
        return job_fail(
            job=job,
            message=(
                f"Captioning failed because of an internal error ({type(error).__name__}). "
                "Try again later; if it persists, report the job id to the operators."
            ),
        )


def job_caption(*, job: CaptionJob) -> CaptionJob:
    """Read, normalise and caption a running job's image, and store the result."""
    # Model version: the one the job requests, else the active one.
    model_version = job.model_version or selectors.model_version_get_active()
    if model_version is None:
        raise NoActiveModelVersion(
            "No model version is active. An administrator has to activate one, with the "
            "Activate action in the admin's model version list or with "
            "manage.py activate_model NAME."
        )

    # Image
    with default_storage.open(job.image.name, "rb") as file:
        image = imaging.image_read_normalised(file=file)

    # Model
    [result] = inference.images_caption(
        model_version=model_version,
        images=[image],
        num_captions=job.num_captions or settings.CAPTION_ALTERNATIVES,
        beam_size=job.beam_size,
        max_length=job.max_length,
    )
    best = result.captions[0]

    # Result
    job.status = CaptionJob.Status.SUCCEEDED
    job.caption = best.text
    job.truncated = best.truncated
    job.alternatives = [caption.to_dict() for caption in result.captions]
    job.model_version = model_version
    job.model_seconds = result.model_seconds
    job.error_message = ""
    job.finished_at = timezone.now()
    job.save(
        update_fields=[
            "status",
            "caption",
            "truncated",
            "alternatives",
            "model_version",
            "model_seconds",
            "error_message",
            "finished_at",
        ]
    )
    logger.info(
        "Caption job %s succeeded with model version %s in %.2f s of model time",
        job.id,
        model_version.pk,
        result.model_seconds,
    )
    return job
