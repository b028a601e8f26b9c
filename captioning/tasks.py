"""Celery tasks: thin wrappers that take an id and call a service."""

import logging

from celery import shared_task

from captioning import services

logger = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def caption_job_run(self, job_id: str) -> None:
    """Caption one job. Failures while captioning are stored on the job, not raised."""
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    services.job_run(job_id=job_id, redelivered=redelivered)
