"""Every change of state of caption jobs: creating, running, failing and deleting
them. Views, the API, tasks and the admin call these; model versions change in
captioning.registry.
"""

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import IO

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext

from captioning import filenames, imaging, inference, registry, renditions, selectors
from captioning.models import CaptionBatch, CaptionJob, ModelVersion

logger = logging.getLogger(__name__)


class NoActiveModelVersion(Exception):
    """No model version is active, so a job has nothing to caption it with."""


class TransientError(Exception):
    """The database or the storage failed in a way that may pass; retry the job later."""


# Errors worth a retry: the database or a network file system briefly unavailable.
# Storage OSErrors other than a missing file count too; Pillow's own OSErrors on a
# damaged image become ImageRejected before they get here.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, OSError)


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
        logger.exception("Could not enqueue caption job %s; it stays queued for the sweep", job_id)
        return
    try:
        CaptionJob.objects.filter(pk=job_id).update(enqueued_at=timezone.now())
    except (OperationalError, InterfaceError):
        logger.warning("Enqueued caption job %s but could not record when", job_id)
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
                original_filename=filenames.display_filename(original_filename),
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
    """Create an empty batch owned by `user`, or by no user for an anonymous visitor."""
    batch = CaptionBatch.objects.create(user=user if user is not None and user.is_authenticated else None)
    logger.info("Created caption batch %s", batch.pk)
    return batch


def batch_rejection_record(*, batch: CaptionBatch, filename: str, code: str, message: str) -> None:
    """Record on a batch a file that was rejected before it became a job.

    The row lock keeps rejections that arrive in parallel from overwriting each other.
    At most BATCH_MAX_JOBS are kept, like the jobs themselves.
    """
    with transaction.atomic():
        locked = CaptionBatch.objects.select_for_update().get(pk=batch.pk)
        if len(locked.rejected) >= BATCH_MAX_JOBS:
            return
        locked.rejected.append({"filename": filenames.display_filename(filename), "code": code, "message": message})
        locked.save(update_fields=["rejected"])
    logger.info("Caption batch %s: recorded rejected upload (%s)", batch.pk, code)


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


def job_fail(*, job: CaptionJob, message: str, run_token: str | None = None) -> CaptionJob:
    """Mark an unfinished job failed with a message a person can act on.

    With `run_token`, only the run that holds the job may fail it. A job that is
    already finished keeps its outcome.
    """
    unfinished = CaptionJob.objects.filter(pk=job.pk).exclude(status__in=CaptionJob.FINISHED_STATUSES)
    if run_token is not None:
        unfinished = unfinished.filter(run_token=run_token)
    now = timezone.now()
    failed = unfinished.update(
        status=CaptionJob.Status.FAILED, error_message=message, finished_at=now, run_token=""
    )
    if failed:
        job.status, job.error_message, job.finished_at = CaptionJob.Status.FAILED, message, now
        logger.warning("Caption job %s failed: %s", job.pk, message)
        return job
    logger.info("Caption job %s was not failed: another run holds it or it is finished", job.pk)
    return selectors.job_get(job_id=job.pk) or job


def job_start(*, job_id: uuid.UUID, run_token: str, takeover_token: str | None = None) -> CaptionJob | None:
    """Move a job to running under `run_token` and count the attempt.

    Returns the job, or None when another run holds it. The filtered UPDATE makes the
    move atomic, so one job never runs twice at once. A queued job can be started, and
    so can a running one that `takeover_token` still holds: the try before this one of
    the same task, which died or hit a transient error.
    """
    startable = Q(status=CaptionJob.Status.QUEUED)
    if takeover_token:
        startable |= Q(status=CaptionJob.Status.RUNNING, run_token=takeover_token)
    moved = (
        CaptionJob.objects.filter(id=job_id)
        .filter(startable)
        .update(
            status=CaptionJob.Status.RUNNING,
            run_token=run_token,
            attempts=F("attempts") + 1,
            started_at=timezone.now(),
        )
    )
    if moved == 0:
        return None
    return CaptionJob.objects.select_related("model_version").get(id=job_id)


def job_release(*, job: CaptionJob, run_token: str) -> None:
    """Put a job that `run_token` holds back in the queue, keeping its attempt count.

    Used after a transient error. It may fail itself while the database is down; the
    sweep then finds the job running past its time limit.
    """
    try:
        CaptionJob.objects.filter(
            pk=job.pk, status=CaptionJob.Status.RUNNING, run_token=run_token
        ).update(status=CaptionJob.Status.QUEUED, run_token="")
    except (OperationalError, InterfaceError):
        logger.warning("Could not put caption job %s back in the queue; the sweep will re-queue it", job.pk)


def attempts_spent_message(attempts: int) -> str:
    return (
        f"Captioning was tried {attempts} times and no try finished: the worker stopped or "
        "the database or storage was unavailable each time. Upload the image again; if this "
        "keeps happening, the image may be crashing the model."
    )


def job_run(
    *, job_id: uuid.UUID, run_token: str = "", takeover_token: str | None = None
) -> CaptionJob | None:
    """Caption a job once and store the result or the failure on it.

    `run_token` names this delivery of the task; `takeover_token` names the previous
    try of the same task when this delivery is its retry. Returns the job, or None when
    it does not exist. A finished job, and a job that another run holds, are returned
    unchanged: a second delivery of a message is a no-op.

    Raises TransientError when the database or the storage failed in a way that may
    pass. The job is then back in the queue, and the task retries it with a backoff.
    """
    job = selectors.job_get(job_id=job_id)
    if job is None:
        logger.warning("Caption job %s does not exist; skipping it", job_id)
        return None
    if job.is_finished:
        logger.info("Caption job %s is already %s; skipping it", job_id, job.status)
        return job
    if job.attempts >= settings.JOB_MAX_ATTEMPTS and (
        job.status == CaptionJob.Status.QUEUED or job.run_token == takeover_token
    ):
        return job_fail(job=job, message=attempts_spent_message(job.attempts))

    started = job_start(job_id=job_id, run_token=run_token, takeover_token=takeover_token)
    if started is None:
        logger.info("Caption job %s is held by another run (%s); skipping it", job_id, job.run_token)
        return selectors.job_get(job_id=job_id)
    job = started
    logger.info("Started caption job %s, attempt %d (%s)", job.id, job.attempts, run_token)

    try:
        return job_caption(job=job, run_token=run_token)
    except imaging.ImageRejected as error:
        return job_fail(job=job, message=error.message, run_token=run_token)
    except (inference.ModelUnavailable, NoActiveModelVersion) as error:
        return job_fail(job=job, message=str(error), run_token=run_token)
    except FileNotFoundError:
        return job_fail(
            job=job,
            message="The uploaded image is no longer in storage. Upload it again.",
            run_token=run_token,
        )
    except SoftTimeLimitExceeded:
        return job_fail(
            job=job,
            message=(
                f"Captioning took longer than the limit of {settings.CAPTION_SOFT_TIME_LIMIT} s "
                "per image. Try again later, when the workers are less busy."
            ),
            run_token=run_token,
        )
    except TRANSIENT_ERRORS as error:
        logger.warning("Caption job %s hit a transient error: %r; it will be retried", job.id, error)
        job_release(job=job, run_token=run_token)
        raise TransientError(str(error)) from error
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
            run_token=run_token,
        )


@dataclass(frozen=True)
class SweepReport:
    resent: int  # queued jobs sent to the broker again
    requeued: int  # running jobs whose worker is gone, queued again
    failed: int  # jobs whose attempts are spent


# Seconds past the hard time limit before the sweep treats a running job's worker as
# gone. The margin covers clock skew between hosts and a worker slow to report.
SWEEP_GRACE_SECONDS = 30


def jobs_sweep() -> SweepReport:
    """Finish or re-send every job that a lost worker or a lost message left behind.

    A job queued for JOB_RESEND_AFTER_SECONDS since it was last sent is sent again, in
    case its message was lost; a second copy is harmless, because a start is guarded.
    A job running past the hard time limit lost its worker (the limit would have ended
    the task), so it goes back to the queue. Either one fails once its attempts are
    spent. Celery beat runs this every JOB_SWEEP_INTERVAL_SECONDS.
    """
    now = timezone.now()
    resend_before = now - timedelta(seconds=settings.JOB_RESEND_AFTER_SECONDS)
    lost_before = now - timedelta(seconds=settings.CAPTION_TIME_LIMIT + SWEEP_GRACE_SECONDS)
    resent = requeued = failed = 0

    stale_queued = CaptionJob.objects.filter(status=CaptionJob.Status.QUEUED).filter(
        Q(enqueued_at__lt=resend_before) | Q(enqueued_at__isnull=True, created_at__lt=resend_before)
    )
    for job in stale_queued.only("id", "attempts", "status"):
        if job.attempts >= settings.JOB_MAX_ATTEMPTS:
            job_fail(job=job, message=attempts_spent_message(job.attempts))
            failed += 1
            continue
        logger.info("Caption job %s waited in the queue since before %s; sending it again", job.pk, resend_before)
        job_enqueue(job_id=job.pk)
        resent += 1

    lost_running = CaptionJob.objects.filter(status=CaptionJob.Status.RUNNING, started_at__lt=lost_before)
    for job in lost_running.only("id", "attempts", "status", "run_token"):
        if job.attempts >= settings.JOB_MAX_ATTEMPTS:
            job_fail(job=job, message=attempts_spent_message(job.attempts), run_token=job.run_token)
            failed += 1
            continue
        moved = CaptionJob.objects.filter(
            pk=job.pk, status=CaptionJob.Status.RUNNING, run_token=job.run_token
        ).update(status=CaptionJob.Status.QUEUED, run_token="")
        if moved:
            logger.warning(
                "Caption job %s ran past its time limit under %s; its worker is gone, so it is "
                "queued again",
                job.pk,
                job.run_token,
            )
            job_enqueue(job_id=job.pk)
            requeued += 1

    report = SweepReport(resent=resent, requeued=requeued, failed=failed)
    if resent or requeued or failed:
        logger.info("Sweep: %s", report)
    return report


def job_caption(*, job: CaptionJob, run_token: str) -> CaptionJob:
    """Read, normalise and caption a running job's image, and store the result.

    The result is stored only while `run_token` still holds the job. A run that the
    sweep gave up on, or a duplicate, finds the job taken and discards its caption.
    """
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
    finished_at = timezone.now()
    fields = {
        "status": CaptionJob.Status.SUCCEEDED,
        "caption": best.text,
        "truncated": best.truncated,
        "alternatives": [caption.to_dict() for caption in result.captions],
        "model_version": model_version,
        "model_seconds": result.model_seconds,
        "error_message": "",
        "finished_at": finished_at,
        "run_token": "",
    }
    stored = CaptionJob.objects.filter(
        pk=job.pk, status=CaptionJob.Status.RUNNING, run_token=run_token
    ).update(**fields)
    if not stored:
        logger.warning(
            "Caption job %s was taken from run %s before it finished; discarding its caption",
            job.pk,
            run_token,
        )
        return selectors.job_get(job_id=job.pk) or job
    for name, value in fields.items():
        setattr(job, name, value)
    logger.info(
        "Caption job %s succeeded with model version %s in %.2f s of model time",
        job.id,
        model_version.pk,
        result.model_seconds,
    )
    return job
