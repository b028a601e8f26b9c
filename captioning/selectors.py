"""Reads of captioning state, shared by the API, the pages, the tasks and the admin."""

import uuid
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet

from captioning.models import CaptionBatch, CaptionJob, ModelActivation, ModelAlias, ModelVersion

# The alias that always names the active version; it is never stored.
PRODUCTION_ALIAS = "production"


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


def job_list_search(*, jobs: QuerySet[CaptionJob], text: str) -> QuerySet[CaptionJob]:
    """Narrow `jobs` to those whose caption or correction contains `text`, ignoring case."""
    text = text.strip()
    if not text:
        return jobs
    return jobs.filter(Q(caption__icontains=text) | Q(corrected_caption__icontains=text))


def batch_get_visible(*, batch_id: uuid.UUID | str, user) -> CaptionBatch | None:
    """Return a batch that `user` may see, or None, by the rule of job_list_visible."""
    batches = CaptionBatch.objects.all()
    if not user.is_staff:
        batches = batches.filter(user=user) if user.is_authenticated else batches.filter(user__isnull=True)
    try:
        return batches.get(id=batch_id)
    except (CaptionBatch.DoesNotExist, ValidationError, ValueError):
        return None


def batch_jobs(*, batch: CaptionBatch) -> QuerySet[CaptionJob]:
    """Return a batch's jobs in the order they were created."""
    return batch.jobs.select_related("model_version").order_by("created_at", "id")


def batch_progress(*, batch: CaptionBatch) -> dict[str, int]:
    """Count a batch's jobs: `total`, `done` (finished either way), `succeeded`, `failed`."""
    counts = batch.jobs.aggregate(
        total=Count("id"),
        succeeded=Count("id", filter=Q(status=CaptionJob.Status.SUCCEEDED)),
        failed=Count("id", filter=Q(status=CaptionJob.Status.FAILED)),
    )
    counts["done"] = counts["succeeded"] + counts["failed"]
    return counts


def model_version_list_used() -> QuerySet[ModelVersion]:
    """Return the versions that captioned or were asked for by at least one job."""
    return ModelVersion.objects.filter(jobs__isnull=False).distinct().order_by("name", "number")


def job_list_filter(
    *,
    jobs: QuerySet[CaptionJob],
    status: str | None = None,
    model_version: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[CaptionJob]:
    """Narrow `jobs` by status, model version and creation time.

    The model version is an id, an alias or NAME:NUMBER for one version, or a name for
    all of that name's versions.
    """
    if status is not None:
        jobs = jobs.filter(status=status)
    if model_version is not None:
        name, _, number = model_version.rpartition(":")
        if model_version.isascii() and model_version.isdigit():
            jobs = jobs.filter(model_version_id=int(model_version))
        elif name and number.isascii() and number.isdigit():
            jobs = jobs.filter(model_version__name=name, model_version__number=int(number))
        elif model_version == PRODUCTION_ALIAS or ModelAlias.objects.filter(name=model_version).exists():
            jobs = jobs.filter(model_version=model_version_resolve(model_version))
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
    return ModelVersion.objects.prefetch_related("aliases").order_by("-created_at")


def model_version_resolve(reference: str) -> ModelVersion | None:
    """Return the version a person or a request means by `reference`, or None.

    Accepted: an id ("7"), an alias ("candidate", and "production" for the active
    version), a name and number ("flickr:3"), or a name alone for its newest ready
    version ("flickr").
    """
    reference = reference.strip()
    if reference.isascii() and reference.isdigit():
        return ModelVersion.objects.filter(pk=int(reference)).first()
    if reference == PRODUCTION_ALIAS:
        return ModelVersion.objects.filter(is_active=True).first()
    alias = ModelAlias.objects.select_related("model_version").filter(name=reference).first()
    if alias is not None:
        return alias.model_version
    name, _, number = reference.rpartition(":")
    if name and number.isascii() and number.isdigit():
        return ModelVersion.objects.filter(name=name, number=int(number)).first()
    return (
        ModelVersion.objects.filter(name=reference, status=ModelVersion.Status.READY)
        .order_by("-number")
        .first()
    )


def model_version_get_active() -> ModelVersion | None:
    return ModelVersion.objects.filter(is_active=True).first()


def model_version_rollback_plan() -> tuple[ModelVersion | None, list[ModelActivation]]:
    """Return the version a rollback would activate and the activations it undoes.

    The target is the version that the newest activation not yet rolled back replaced.
    When that version has since been retired or failed, the rollback walks further back
    to the first one that is still ready, undoing every activation on the way. Returns
    (None, []) when no earlier version qualifies.
    """
    undone = []
    activations = (
        ModelActivation.objects.select_related("previous")
        .filter(reason=ModelActivation.Reason.ACTIVATE, rolled_back_at__isnull=True)
        .order_by("-activated_at", "-id")
    )
    for activation in activations:
        undone.append(activation)
        previous = activation.previous
        if previous is None:
            break
        if previous.status == ModelVersion.Status.READY and not previous.is_active:
            return previous, undone
    return None, []


def model_version_rollback_target() -> ModelVersion | None:
    """Return the version that a rollback would activate, or None when there is none."""
    target, _ = model_version_rollback_plan()
    return target
