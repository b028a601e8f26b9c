"""Reads of captioning state, shared by the API, the pages, the tasks and the admin."""

import uuid
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from captioning.models import CaptionJob, ModelVersion


def job_get(*, job_id: uuid.UUID | str) -> CaptionJob | None:
    """Return a job with its model version, or None when no job has that id."""
    try:
        return CaptionJob.objects.select_related("model_version").get(id=job_id)
    except (CaptionJob.DoesNotExist, ValidationError, ValueError):
        return None


def job_list_visible(*, user) -> QuerySet[CaptionJob]:
    """Return the jobs that `user` may read and delete, newest first.

    Staff see every job and other users see their own. An anonymous caller sees only
    jobs that belong to no user, which the API reaches by id alone.
    """
    jobs = CaptionJob.objects.select_related("model_version").order_by("-created_at")
    if user.is_staff:
        return jobs
    if user.is_authenticated:
        return jobs.filter(user=user)
    return jobs.filter(user__isnull=True)


def job_list_filter(
    *,
    jobs: QuerySet[CaptionJob],
    status: str | None = None,
    model_version: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[CaptionJob]:
    """Narrow `jobs` by status, model version (id or name) and creation time."""
    if status is not None:
        jobs = jobs.filter(status=status)
    if model_version is not None:
        if model_version.isascii() and model_version.isdigit():
            jobs = jobs.filter(model_version_id=int(model_version))
        else:
            jobs = jobs.filter(model_version__name=model_version)
    if created_after is not None:
        jobs = jobs.filter(created_at__gte=created_after)
    if created_before is not None:
        jobs = jobs.filter(created_at__lt=created_before)
    return jobs


def job_get_visible(*, job_id: uuid.UUID | str, user) -> CaptionJob | None:
    """Return a job that `user` may see, or None when it does not exist or is another's."""
    try:
        return job_list_visible(user=user).get(id=job_id)
    except (CaptionJob.DoesNotExist, ValidationError, ValueError):
        return None


def model_version_list() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.order_by("-created_at")


def model_version_get_by_id_or_name(*, id_or_name: str) -> ModelVersion | None:
    """Return the version with this id when the value is all digits, else by name."""
    if id_or_name.isascii() and id_or_name.isdigit():
        return ModelVersion.objects.filter(pk=int(id_or_name)).first()
    return ModelVersion.objects.filter(name=id_or_name).first()


def model_version_get_active() -> ModelVersion | None:
    return ModelVersion.objects.filter(is_active=True).first()
