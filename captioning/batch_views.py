"""The batch pages: one upload's photos in a grid, their live status, exports, and
caption corrections.

The upload page's script creates a batch, then posts each file on its own to
`batch_upload`, so every file has its own progress and its own result. Jobs are
created by captioning.services either way, as for the API.
"""

import logging
import uuid

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.translation import gettext, ngettext
from django.views.decorators.http import require_GET, require_POST

from captioning import exports, imaging, selectors, services
from captioning.forms import CaptionOptionsForm, CorrectionForm
from captioning.models import CaptionBatch, CaptionJob
from captioning.views import image_alt, job_or_404, redirect_target, wants_json

logger = logging.getLogger(__name__)


# Helpers


def batch_or_404(batch_id: uuid.UUID, *, user) -> CaptionBatch:
    # Another user's batch returns 404 like an unknown id, as jobs do.
    batch = selectors.batch_get_visible(batch_id=batch_id, user=user)
    if batch is None:
        raise Http404(gettext("No batch has this id."))
    return batch


def json_error(*, code: str, message: str, status: int, **fields) -> JsonResponse:
    """Return the error shape of the page scripts: {"error": {"code", "message"}} and `fields`."""
    return JsonResponse({"error": {"code": code, "message": message}, **fields}, status=status)


def upload_forbidden(request) -> JsonResponse | None:
    """Return a 403 response when settings require sign-in and the visitor is anonymous."""
    if settings.WEB_ALLOW_ANONYMOUS or request.user.is_authenticated:
        return None
    return json_error(
        code="not_authenticated",
        message=gettext("Sign in to upload photos, then try again."),
        status=403,
    )


def progress_summary(progress: dict[str, int]) -> str:
    """Return the batch's progress as a sentence, failures counted apart."""
    if progress["failed"]:
        return ngettext(
            "%(done)d of %(total)d photo finished, %(failed)d failed",
            "%(done)d of %(total)d photos finished, %(failed)d failed",
            progress["total"],
        ) % progress
    return ngettext(
        "%(done)d of %(total)d photo finished",
        "%(done)d of %(total)d photos finished",
        progress["total"],
    ) % progress


def job_card_context(job: CaptionJob) -> dict:
    next_url = reverse("web:batch_detail", kwargs={"batch_id": job.batch_id}) if job.batch_id else ""
    return {
        "job": job,
        "next_url": next_url,
        "status_label": job.get_status_display(),
        "alt": image_alt(job),
    }


def job_announcement(job: CaptionJob) -> str:
    """Return what the live region reads out when a job finishes."""
    name = job.original_filename or str(job.pk)
    if job.status == CaptionJob.Status.SUCCEEDED:
        return gettext("Caption ready for %(filename)s: %(caption)s") % {
            "filename": name,
            "caption": job.display_caption,
        }
    return gettext("%(filename)s could not be captioned.") % {"filename": name}


def job_card_json(job: CaptionJob, *, request) -> dict:
    """Return one job of the status endpoint, with its card rendered in the page's language."""
    html = render_to_string("captioning/_batch_card.html", job_card_context(job), request=request)
    return {
        "id": str(job.pk),
        "status": job.status,
        "finished": job.is_finished,
        "caption": job.display_caption,
        "original_caption": job.caption,
        "corrected": bool(job.corrected_caption),
        "error": job.error_message,
        "announcement": job_announcement(job) if job.is_finished else "",
        "html": html,
    }


def batch_script_strings() -> dict:
    """Return the translated strings that static/js/batch.js shows."""
    return {
        "copied": gettext("Copied"),
        "copyFailed": gettext("Copying failed. Select the caption and copy it by hand."),
        "saved": gettext("Correction saved."),
        "saveFailed": gettext("The correction was not saved. Try again."),
        "offline": gettext("Lost contact with the server. Retrying…"),
        "finished": gettext("All photos are finished."),
    }


def download_response(*, content: str, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(content.encode("utf-8"), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


# Views


@require_POST
def batch_create(request):
    """Create an empty batch for the upload page's script and return its URLs (201)."""
    forbidden = upload_forbidden(request)
    if forbidden is not None:
        return forbidden
    batch = services.batch_create(user=request.user)
    return JsonResponse(
        {
            "id": str(batch.pk),
            "url": reverse("web:batch_detail", kwargs={"batch_id": batch.pk}),
            "upload_url": reverse("web:batch_upload", kwargs={"batch_id": batch.pk}),
        },
        status=201,
    )


@require_POST
def batch_upload(request, batch_id: uuid.UUID):
    """Create a job in a batch from the multipart field `image` and the caption options.

    Returns 201 with the job, 400 with the reason for a rejected file or option, 403
    when sign-in is required, 404 for an unknown batch, and 409 when the batch is full.
    """
    forbidden = upload_forbidden(request)
    if forbidden is not None:
        return forbidden
    batch = selectors.batch_get_visible(batch_id=batch_id, user=request.user)
    if batch is None:
        return json_error(code="not_found", message=gettext("No batch has this id."), status=404)
    upload = request.FILES.get("image")
    if upload is None:
        return json_error(
            code="missing_file", message=gettext("Send the photo in the field “image”."), status=400
        )
    filename = upload.name or ""

    options_form = CaptionOptionsForm(request.POST)
    if not options_form.is_valid():
        messages = [f"{options_form.fields[name].label}: {' '.join(errors)}" for name, errors in options_form.errors.items()]
        return json_error(code="invalid_options", message=" ".join(messages), status=400, filename=filename)

    try:
        job = services.batch_job_create(
            batch=batch, upload=upload, original_filename=filename, **options_form.job_options()
        )
    except services.BatchFull:
        message = gettext("This batch already has %(max)d photos. Upload the rest as a new batch.") % {
            "max": services.BATCH_MAX_JOBS
        }
        return json_error(code="batch_full", message=message, status=409, filename=filename)
    except imaging.ImageRejected as error:
        logger.info("Rejected upload %r to caption batch %s: %s", filename, batch.pk, error.code)
        services.batch_rejection_record(batch=batch, filename=filename, code=error.code, message=error.message)
        return json_error(code=error.code, message=error.message, status=400, filename=filename)

    return JsonResponse(
        {
            "filename": filename,
            "job": {
                "id": str(job.pk),
                "status": job.status,
                "url": reverse("web:job_detail", kwargs={"job_id": job.pk}),
            },
        },
        status=201,
    )


@require_GET
def batch_detail(request, batch_id: uuid.UUID):
    batch = batch_or_404(batch_id, user=request.user)
    jobs = list(selectors.batch_jobs(batch=batch))
    progress = selectors.batch_progress(batch=batch)
    context = {
        "nav_section": "jobs",
        "batch": batch,
        "cards": [job_card_context(job) for job in jobs],
        "progress": progress,
        "summary": progress_summary(progress),
        "finished": progress["done"] == progress["total"],
        "batch_strings": batch_script_strings(),
    }
    return render(request, "captioning/batch_detail.html", context)


@require_GET
def batch_status(request, batch_id: uuid.UUID):
    """Return the batch's progress and every job's card, for static/js/batch.js."""
    batch = batch_or_404(batch_id, user=request.user)
    jobs = list(selectors.batch_jobs(batch=batch))
    progress = selectors.batch_progress(batch=batch)
    response = JsonResponse(
        {
            "id": str(batch.pk),
            **progress,
            "finished": progress["done"] == progress["total"],
            "summary": progress_summary(progress),
            "jobs": [job_card_json(job, request=request) for job in jobs],
        }
    )
    response["Cache-Control"] = "no-store"
    return response


@require_GET
def batch_export(request, batch_id: uuid.UUID, export_format: str):
    """Return the batch's captions as a CSV or JSON download."""
    batch = batch_or_404(batch_id, user=request.user)
    jobs = list(selectors.batch_jobs(batch=batch))
    if export_format == "csv":
        return download_response(
            content=exports.batch_export_csv(batch=batch, jobs=jobs),
            content_type="text/csv; charset=utf-8",
            filename=f"captions-{batch.pk}.csv",
        )
    if export_format == "json":
        return download_response(
            content=exports.batch_export_json(batch=batch, jobs=jobs),
            content_type="application/json; charset=utf-8",
            filename=f"captions-{batch.pk}.json",
        )
    raise Http404(gettext("Exports are available as CSV and JSON."))


@require_POST
def job_correct(request, job_id: uuid.UUID):
    """Store a correction of a job's caption from the field `caption`; blank removes it.

    With `Accept: application/json` the response is JSON with the job's card for
    static/js/batch.js, or 400 with the reason. Otherwise it redirects to `next`.
    """
    job = job_or_404(job_id, user=request.user)
    form = CorrectionForm(request.POST)
    error = None
    if form.is_valid():
        try:
            job = services.job_correct(job=job, text=form.cleaned_data["caption"])
        except services.CorrectionRejected as rejected:
            error = rejected.message
    else:
        error = " ".join(form.errors["caption"])

    if wants_json(request):
        if error is not None:
            return JsonResponse({"error": {"code": "invalid_correction", "message": error}}, status=400)
        return JsonResponse(job_card_json(job, request=request))

    if error is not None:
        messages.error(request, error)
    else:
        messages.success(request, gettext("Correction saved."))
    return redirect(redirect_target(request, reverse("web:job_detail", kwargs={"job_id": job.pk})))
