"""HTML pages: the upload form, one job, the history of jobs, corrections and deletion.

The views parse the request, call captioning.services and captioning.selectors, and
render. Stored uploads are served only by `job_image` and `job_rendition`, which look
the file up through the job, so a request never names a path in storage.
"""

import logging
import uuid
from dataclasses import dataclass

from datetime import datetime, time, timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_http_methods

from captioning import imaging, renditions, selectors, services
from captioning.forms import JobFilterForm, UploadForm
from captioning.models import CaptionBatch, CaptionJob

logger = logging.getLogger(__name__)

# Formats that every current browser draws. Others (TIFF) are shown as a rendition.
BROWSER_FORMATS = {"JPEG", "PNG", "GIF", "WEBP", "BMP"}

# Pillow's format names as people write them, where the two differ.
FORMAT_DISPLAY_NAMES = {"WEBP": "WebP"}

JOBS_PER_PAGE = 24

# A stored upload never changes, so browsers may keep it for a day. `private` keeps
# shared caches out, because a signed-in user sees only their own jobs.
IMAGE_CACHE_CONTROL = "private, max-age=86400"


@dataclass
class UploadResult:
    """The outcome of one uploaded file: its job, or the reason it was rejected."""

    filename: str
    job: CaptionJob | None = None
    batch: CaptionBatch | None = None
    error: str = ""


# Helpers


def job_or_404(job_id: uuid.UUID, *, user) -> CaptionJob:
    # Another user's job returns 404 like an unknown id, as in the API.
    job = selectors.job_get_visible(job_id=job_id, user=user)
    if job is None:
        raise Http404(gettext("No caption job has this id."))
    return job


def image_alt(job: CaptionJob) -> str:
    """Return alt text for a job's image: the caption, corrected or not, once there is one."""
    if job.display_caption:
        return job.display_caption
    return gettext("Uploaded photo %(filename)s, not captioned yet") % {
        "filename": job.original_filename or job.pk
    }


def upload_limits() -> dict:
    """Return the upload limits as the upload page shows them, read from settings."""
    return {
        "max_bytes": settings.MAX_UPLOAD_BYTES,
        "max_megapixels": f"{settings.MAX_IMAGE_PIXELS / 1_000_000:g}",
        "min_side": settings.MIN_IMAGE_SIDE,
        "formats": [FORMAT_DISPLAY_NAMES.get(name, name) for name in imaging.ACCEPTED_FORMATS],
        "max_files": UploadForm.max_files,
    }


def upload_script_strings() -> dict:
    """Return the translated strings and limits that static/js/upload.js needs."""
    return {
        "maxBytes": settings.MAX_UPLOAD_BYTES,
        # Units as Django's filesizeformat names them, so sizes read the same on the page.
        "units": [gettext("bytes"), gettext("KB"), gettext("MB"), gettext("GB")],
        "size": gettext("%(value)s %(unit)s"),
        "tooLarge": gettext("Larger than the %(limit)s limit: it will be rejected."),
        "empty": gettext("The file is empty: it will be rejected."),
        "previewAlt": gettext("Preview of %(name)s"),
        "remove": gettext("Remove"),
        "removeLabel": gettext("Remove %(name)s"),
        "selected": gettext("Photos chosen: %(count)s"),
        "submit": gettext("Upload and caption"),
        "uploading": gettext("Uploading…"),
        "maxFiles": UploadForm.max_files,
        "tooMany": gettext("You chose %(count)s files, and at most %(max)s can be uploaded at once. Remove some."),
        "progress": gettext("Uploading: %(percent)s%%"),
        "queued": gettext("Uploaded, waiting for its caption"),
        "failed": gettext("Upload failed. Check the connection and try again."),
        "progressLabel": gettext("Upload progress of %(name)s"),
        "done": gettext("Uploaded %(created)s of %(total)s files."),
        "openBatch": gettext("Open the batch"),
        "openJob": gettext("Open job page"),
    }


def job_context(job: CaptionJob) -> dict:
    """Return the context shared by the job page and its panel."""
    alternatives = []
    for alternative in job.alternatives or []:
        confidence = alternative.get("confidence")
        if not alternative.get("text") or confidence is None:
            continue
        alternatives.append(
            {"caption": alternative["text"], "percent": round(100 * float(confidence))}
        )
    return {
        "job": job,
        "next_url": reverse("web:job_detail", kwargs={"job_id": job.pk}),
        "finished": job.is_finished,
        "status_label": job.get_status_display(),
        "image_alt": image_alt(job),
        "alternatives": alternatives,
        "timings": {
            "queue_seconds": job.queue_seconds,
            "model_seconds": job.model_seconds,
            "total_seconds": job.total_seconds,
        },
    }


def upload_one(*, file, user, batch: CaptionBatch | None, options: dict) -> UploadResult:
    """Create a job for one uploaded file, or record why it was rejected."""
    try:
        if batch is None:
            job = services.job_create(upload=file, original_filename=file.name, user=user, **options)
        else:
            job = services.batch_job_create(batch=batch, upload=file, original_filename=file.name, **options)
    except imaging.ImageRejected as error:
        logger.info("Rejected upload %r: %s", file.name, error.code)
        return UploadResult(filename=file.name, error=error.message)
    return UploadResult(filename=file.name, job=job, batch=batch)


def redirect_target(request, fallback: str) -> str:
    """Return the form's `next` URL when it points into this site, else `fallback`."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return fallback


def wants_json(request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


# Views


@require_http_methods(["GET", "HEAD", "POST"])
def upload(request):
    """Show the upload form, and create one job per uploaded photo.

    This is the path without JavaScript; static/js/upload.js posts each file to
    batch_upload instead. One accepted photo redirects to its job page. Several files
    form one batch, and redirect to its page when every file was accepted. Otherwise
    the form renders again with a result per file: 200 when at least one job was
    created, 400 when none was.
    """
    results: list[UploadResult] = []
    batch = None
    if not settings.WEB_ALLOW_ANONYMOUS and not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())

    if request.method == "POST":
        form = UploadForm(request.POST, request.FILES)
        if form.is_valid():
            files = form.cleaned_data["images"]
            if len(files) > 1:
                batch = services.batch_create(user=request.user)
            options = form.job_options()
            results = [upload_one(file=file, user=request.user, batch=batch, options=options) for file in files]
            accepted = [result for result in results if result.job is not None]
            if len(results) == 1 and accepted:
                return redirect("web:job_detail", job_id=accepted[0].job.pk)
            if batch is not None and len(accepted) == len(results):
                return redirect("web:batch_detail", batch_id=batch.pk)
            if batch is not None and not accepted:
                batch.delete()
                batch = None
            form = UploadForm()
    else:
        form = UploadForm()

    created_count = sum(1 for result in results if result.job is not None)
    status = 400 if request.method == "POST" and created_count == 0 else 200
    context = {
        "nav_section": "upload",
        "form": form,
        "limits": upload_limits(),
        "upload_strings": upload_script_strings(),
        "results": results,
        "created_count": created_count,
        "rejected_count": len(results) - created_count,
        "batch": batch,
    }
    return render(request, "captioning/upload.html", context, status=status)


@require_GET
def job_detail(request, job_id: uuid.UUID):
    job = job_or_404(job_id, user=request.user)
    context = job_context(job)
    context["nav_section"] = "jobs"
    if job.format in BROWSER_FORMATS:
        context["image_url"] = reverse("web:job_image", kwargs={"job_id": job.pk})
    else:
        context["image_url"] = reverse("web:job_rendition", kwargs={"job_id": job.pk, "size": "large"})
    return render(request, "captioning/job_detail.html", context)


@require_GET
def job_panel(request, job_id: uuid.UUID):
    """Return the job page's result panel as HTML inside JSON, for static/js/job.js."""
    job = job_or_404(job_id, user=request.user)
    context = job_context(job)
    html = render_to_string("captioning/_job_panel.html", context, request=request)
    response = JsonResponse(
        {
            "id": str(job.pk),
            "status": job.status,
            "finished": job.is_finished,
            "html": html,
            "image_alt": context["image_alt"],
            "title": f"{job.caption or gettext('Caption job')} · Captionsite",
        }
    )
    response["Cache-Control"] = "no-store"
    return response


@require_GET
def job_image(request, job_id: uuid.UUID):
    """Return a job's stored upload with the content type found by the upload checks."""
    job = job_or_404(job_id, user=request.user)
    if not job.image or job.format not in imaging.ACCEPTED_FORMATS:
        raise Http404(gettext("This job has no stored image."))
    extension, mime_type = imaging.ACCEPTED_FORMATS[job.format]
    try:
        file = job.image.open("rb")
    except FileNotFoundError:
        logger.warning("Image of caption job %s is missing from storage", job.pk)
        raise Http404(gettext("This job's image is no longer stored.")) from None

    response = FileResponse(file, content_type=mime_type)
    response["Content-Disposition"] = f'inline; filename="{job.pk}.{extension}"'
    return image_headers(response)


@require_GET
def job_rendition(request, job_id: uuid.UUID, size: str):
    """Return a downscaled JPEG of a job's image: `small` for lists, `large` for pages."""
    job = job_or_404(job_id, user=request.user)
    if size not in renditions.RENDITION_SIZES or not job.image:
        raise Http404(gettext("No such image."))
    try:
        data = renditions.rendition_get(job_id=job.pk, image_name=job.image.name, size=size)
    except FileNotFoundError:
        logger.warning("Image of caption job %s is missing from storage", job.pk)
        raise Http404(gettext("This job's image is no longer stored.")) from None

    response = HttpResponse(data, content_type="image/jpeg")
    response["Content-Disposition"] = f'inline; filename="{job.pk}-{size}.jpg"'
    return image_headers(response)


def history_filter(request, jobs):
    """Apply the history page's search and filters to `jobs`.

    Returns the bound form and the narrowed jobs. Invalid fields are reported on the
    form and left out of the filtering, so the page still lists jobs.
    """
    model_labels = [version.label for version in selectors.model_version_list_used()]
    form = JobFilterForm(request.GET or None, model_labels=model_labels)
    if form.is_bound:
        form.is_valid()
    values = getattr(form, "cleaned_data", {})
    jobs = selectors.job_list_search(jobs=jobs, text=values.get("q") or "")
    created_from, created_to = values.get("created_from"), values.get("created_to")
    zone = timezone.get_current_timezone()
    return form, selectors.job_list_filter(
        jobs=jobs,
        status=values.get("status") or None,
        model_version=values.get("model") or None,
        # Dates are whole days in the site's time zone, both ends included.
        created_after=datetime.combine(created_from, time.min, tzinfo=zone) if created_from else None,
        created_before=(
            datetime.combine(created_to + timedelta(days=1), time.min, tzinfo=zone) if created_to else None
        ),
    )


@require_GET
def job_list(request):
    """List the visible jobs, newest first, searched and filtered by the query string.

    Returns 400 with the form's messages when a filter is invalid.
    """
    form, jobs = history_filter(request, selectors.job_list_visible(user=request.user))
    page_obj = Paginator(jobs, JOBS_PER_PAGE).get_page(request.GET.get("page"))
    now = timezone.now()
    items = [
        {
            "job": job,
            "status_label": job.get_status_display(),
            "alt": image_alt(job),
            # timesince rounds down to "0 minutes" for the first minute.
            "is_new": (now - job.created_at).total_seconds() < 60,
        }
        for job in page_obj.object_list
    ]
    filtered = form.is_bound and any(form.data.get(name) for name in form.fields)
    context = {
        "nav_section": "jobs",
        "page_obj": page_obj,
        "jobs": items,
        "filter_form": form,
        "filtered": filtered,
    }
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "captioning/job_list.html", context, status=status)


@require_http_methods(["GET", "HEAD", "POST"])
def job_delete(request, job_id: uuid.UUID):
    """Ask for confirmation on GET, and delete the job and its image on POST.

    A running job cannot be deleted: the page explains why, with status 409.
    """
    job = job_or_404(job_id, user=request.user)
    status = 200
    error = ""
    if request.method == "POST":
        try:
            services.job_delete(job=job)
        except services.JobRunning:
            error = gettext("A worker is captioning this photo right now. Delete it once its caption has arrived.")
            status = 409
        else:
            messages.success(
                request,
                gettext("Deleted the job of %(filename)s.") % {"filename": job.original_filename or job.pk},
            )
            return redirect("web:job_list")
    elif job.status == CaptionJob.Status.RUNNING:
        error = gettext("A worker is captioning this photo right now. Delete it once its caption has arrived.")
    context = {
        "nav_section": "jobs",
        "job": job,
        "image_alt": image_alt(job),
        "status_label": job.get_status_display(),
        "error": error,
    }
    return render(request, "captioning/job_delete.html", context, status=status)


# Headers shared by the image views


def image_headers(response: HttpResponse) -> HttpResponse:
    """Add the headers every served upload gets, whatever view returns it."""
    # The content type comes from the upload checks, and nosniff stops a browser from
    # second-guessing it, so no stored file can be run as HTML or script.
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = IMAGE_CACHE_CONTROL
    return response


def csrf_failure(request, reason: str = ""):
    """Render a rejected form post (CSRF check failed) as a page with a way back."""
    logger.info("Rejected %s %s: CSRF check failed (%s)", request.method, request.path, reason)
    return render(request, "403_csrf.html", status=403)
