"""Celery tasks: thin wrappers that take an id and call a service."""

import logging

from celery import shared_task

from captioning import evaluations, registry, services
from captioning.models import ModelVersion

logger = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def caption_job_run(self, job_id: str) -> None:
    """Caption one job. Failures while captioning are stored on the job, not raised."""
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    services.job_run(job_id=job_id, redelivered=redelivered)


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def model_version_validate(model_version_id: int) -> None:
    """Validate a newly registered model version; the outcome is stored on it."""
    version = ModelVersion.objects.filter(
        pk=model_version_id, status=ModelVersion.Status.VALIDATING
    ).first()
    if version is None:
        logger.info("Model version %s is not waiting for validation; skipping it", model_version_id)
        return
    registry.model_version_validate(model_version=version)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def evaluation_run(self, evaluation_id: int) -> None:
    """Caption and score an evaluation's dataset; the outcome is stored on it."""
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    evaluations.evaluation_run(evaluation_id=evaluation_id, redelivered=redelivered)
