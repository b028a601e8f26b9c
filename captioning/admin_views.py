"""Admin pages beyond the model admins: comparing versions and the evaluation sample photos.

ModelVersionAdmin.get_urls routes the comparison here, and captionsite.urls routes the
sample photos; both are wrapped in admin_site.admin_view, so only active staff reach them.
"""

import io
import logging
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from PIL import Image, ImageOps, UnidentifiedImageError

from captioning import dashboard
from captioning.models import Evaluation, ModelVersion

logger = logging.getLogger(__name__)

# More columns than this no longer fit side by side on a laptop screen.
MAX_COMPARED_VERSIONS = 6
# Maximum width and height of a sample photo as served, in pixels.
SAMPLE_THUMBNAIL_PIXELS = 320
SAMPLE_JPEG_QUALITY = 85


def compare_url(*, model_version_ids: list[int]) -> str:
    """Return the comparison page's URL for these versions, in this order."""
    query = urlencode({"ids": [str(pk) for pk in model_version_ids]}, doseq=True)
    return f"{reverse('admin:captioning_modelversion_compare')}?{query}"


def _ids_parse(values: list[str]) -> list[int]:
    """Return the distinct whole-number ids in `values`, in order, dropping any other value."""
    ids = []
    for value in values:
        value = value.strip()
        if value.isascii() and value.isdigit() and int(value) not in ids:
            ids.append(int(value))
    return ids


def model_version_compare(request, *, model_admin):
    """Show two or more model versions side by side: facts, scores, samples, production."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    changelist = reverse("admin:captioning_modelversion_changelist")

    ids = _ids_parse(request.GET.getlist("ids"))
    by_id = ModelVersion.objects.prefetch_related("aliases").in_bulk(ids)
    versions = [by_id[pk] for pk in ids if pk in by_id]
    if len(versions) < 2:
        messages.warning(request, _("Choose two or more model versions to compare."))
        return HttpResponseRedirect(changelist)
    if len(versions) > MAX_COMPARED_VERSIONS:
        messages.warning(
            request,
            _("Only the first %(count)s versions are compared; choose fewer to see others.")
            % {"count": MAX_COMPARED_VERSIONS},
        )
        versions = versions[:MAX_COMPARED_VERSIONS]

    period = dashboard.period_parse(request.GET.get("period"))
    since, until = dashboard.period_bounds(period=period)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": _("Compare model versions"),
        "columns": [
            {
                "version": version,
                "aliases": sorted(alias.name for alias in version.aliases.all()),
                "training": dashboard.training_summary(version.training),
            }
            for version in versions
        ],
        "score_rows": dashboard.score_rows(model_versions=versions),
        "sample_grids": dashboard.sample_grids(model_versions=versions),
        "figures_list": dashboard.production_figures(model_versions=versions, since=since, until=until),
        "period": period,
        "period_choices": dashboard.period_choices(selected=period),
    }
    return TemplateResponse(request, "admin/captioning/modelversion/compare.html", context)


def model_version_compare_redirect(*, request, queryset):
    """Redirect the "Compare selected versions" action to the comparison page."""
    ids = sorted(queryset.values_list("pk", flat=True))
    if len(ids) < 2:
        messages.warning(request, _("Choose two or more model versions to compare."))
        return None
    return HttpResponseRedirect(compare_url(model_version_ids=ids))


def _sample_path(evaluation: Evaluation, name: str) -> Path:
    """Return the file of sample `name` inside the evaluation's images folder, or raise Http404.

    The name must be one of the evaluation's sample images and a plain file name: path
    separators, "..", and names whose resolved path leaves the images folder or
    DATASET_ROOT are rejected.
    """
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise Http404("Not a sample file name.")
    sample_names = {sample.get("image") for sample in evaluation.samples if isinstance(sample, dict)}
    if name not in sample_names:
        raise Http404("Not one of this evaluation's samples.")

    root = Path(settings.DATASET_ROOT).resolve()
    images_dir = (root / evaluation.images_dir).resolve()
    path = (images_dir / name).resolve()
    if not images_dir.is_relative_to(root) or not path.is_relative_to(images_dir) or not path.is_file():
        raise Http404("The sample photo is not in the dataset folder.")
    return path


def evaluation_sample(request, evaluation_id: int, name: str):
    """Serve one sample photo of an evaluation as a JPEG thumbnail at most 320 px wide or high.

    The file is decoded and re-encoded, never sent as stored, so what reaches the
    browser is always a small, plain JPEG.
    """
    if not (
        request.user.has_perm("captioning.view_modelversion")
        or request.user.has_perm("captioning.view_evaluation")
    ):
        raise PermissionDenied
    evaluation = get_object_or_404(Evaluation, pk=evaluation_id)
    path = _sample_path(evaluation, name)

    try:
        with Image.open(path) as image:
            image.draft("RGB", (SAMPLE_THUMBNAIL_PIXELS, SAMPLE_THUMBNAIL_PIXELS))
            thumbnail = ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError) as error:
        logger.warning("Sample %s of evaluation %s could not be read: %s", name, evaluation.pk, error)
        raise Http404("The sample photo could not be read.") from error
    thumbnail.thumbnail((SAMPLE_THUMBNAIL_PIXELS, SAMPLE_THUMBNAIL_PIXELS))

    buffer = io.BytesIO()
    thumbnail.save(buffer, format="JPEG", quality=SAMPLE_JPEG_QUALITY)
    response = HttpResponse(buffer.getvalue(), content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=3600"
    return response
