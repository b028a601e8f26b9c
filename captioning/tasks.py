"""Celery tasks: thin wrappers that take an id and call a service."""

import logging

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from captioning import evaluations, registry, services
from captioning.models import ModelVersion

logger = logging.getLogger(__name__)


@shared_task(
    bind=True,
    acks_late=True,
    # When the pool process dies mid-task (killed, out of memory), the worker sends the
    # task again as a counted retry. If that send fails, reject_on_worker_lost puts
    # the message back in the queue.
    retry_on_worker_lost=True,
    reject_on_worker_lost=True,
    max_retries=max(settings.JOB_MAX_ATTEMPTS - 1, 0),
    default_retry_delay=settings.JOB_RETRY_BACKOFF_SECONDS,
    soft_time_limit=settings.CAPTION_SOFT_TIME_LIMIT,
    time_limit=settings.CAPTION_TIME_LIMIT,
    ignore_result=True,
)
def caption_job_run(self, job_id: str) -> None:
    """Caption one job. Failures while captioning are stored on the job, not raised.

    Transient database and storage errors are retried with an exponential backoff,
    up to JOB_MAX_ATTEMPTS tries in all.
    """
    retries = self.request.retries
    run_token = f"{self.request.id}:{retries}"
    takeover_token = f"{self.request.id}:{retries - 1}" if retries else None
    try:
        services.job_run(job_id=job_id, run_token=run_token, takeover_token=takeover_token)
    except (services.TransientError, OperationalError, InterfaceError) as error:
        # A database error before the job started lands here too: nothing was stored,
        # and the job is still queued.
        countdown = settings.JOB_RETRY_BACKOFF_SECONDS * 2**retries
        logger.warning("Retrying caption job %s in %d s after: %s", job_id, countdown, error)
        # Past max_retries this raises the error instead; the job is back in the queue,
        # so the sweep fails it once its attempts are spent.
        raise self.retry(exc=error, countdown=countdown) from error


@shared_task(ignore_result=True)
def jobs_sweep() -> None:
    """Finish or re-send the jobs that lost workers or lost messages left behind."""
    services.jobs_sweep()


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.EVALUATION_TIME_LIMIT - 60,
    time_limit=settings.EVALUATION_TIME_LIMIT,
    ignore_result=True,
)
def model_version_validate(model_version_id: int) -> None:
    """Validate a newly registered model version; the outcome is stored on it."""
    version = ModelVersion.objects.filter(
        pk=model_version_id, status=ModelVersion.Status.VALIDATING
    ).first()
    if version is None:
        logger.info("Model version %s is not waiting for validation; skipping it", model_version_id)
        return
    registry.model_version_validate(model_version=version)


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.EVALUATION_TIME_LIMIT - 60,
    time_limit=settings.EVALUATION_TIME_LIMIT,
    ignore_result=True,
)
def evaluation_run(self, evaluation_id: int) -> None:
    """Caption and score an evaluation's dataset; the outcome is stored on it."""
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    evaluations.evaluation_run(evaluation_id=evaluation_id, redelivered=redelivered)
