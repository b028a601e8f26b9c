"""HTML pages: the upload form, one job, and the recent jobs.

The views parse the request, call captioning.services and captioning.selectors, and
render. Stored uploads are served only by `job_image` and `job_rendition`, which look
the file up through the job, so a request never names a path in storage.
"""

import logging
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_http_methods

from captioning import imaging, renditions, selectors, services
from captioning.forms import UploadForm
from captioning.models import CaptionJob

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
    error: str = ""


# Helpers


def job_or_404(job_id: uuid.UUID, *, user) -> CaptionJob:
    # Another user's job returns 404 like an unknown id, as in the API.
    job = selectors.job_get_visible(job_id=job_id, user=user)
    if job is None:
        raise Http404(gettext("No caption job has this id."))
    return job


def image_alt(job: CaptionJob) -> str:
    """Return alt text for a job's image: the caption once there is one."""
    if job.caption:
        return job.caption
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


def upload_one(*, file, user) -> UploadResult:
    """Create a job for one uploaded file, or record why it was rejected."""
    try:
        job = services.job_create(upload=file, original_filename=file.name, user=user)
    except imaging.ImageRejected as error:
        logger.info("Rejected upload %r: %s", file.name, error.code)
        return UploadResult(filename=file.name, error=error.message)
    return UploadResult(filename=file.name, job=job)


# Views


@require_http_methods(["GET", "HEAD", "POST"])
def upload(request):
    """Show the upload form, and create one job per uploaded photo.

    One accepted photo redirects to its job page. Several photos, or any rejected
    file, render the form again with a result per file: 200 when at least one job
    was created, 400 when none was.
    """
    results: list[UploadResult] = []
    if not settings.WEB_ALLOW_ANONYMOUS and not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())

    if request.method == "POST":
        form = UploadForm(request.POST, request.FILES)
        if form.is_valid():
            files = form.cleaned_data["images"]
            results = [upload_one(file=file, user=request.user) for file in files]
            if len(results) == 1 and results[0].job is not None:
                return redirect("web:job_detail", job_id=results[0].job.pk)
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


@require_GET
def job_list(request):
    jobs = selectors.job_list_visible(user=request.user)
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
    context = {"nav_section": "jobs", "page_obj": page_obj, "jobs": items}
    return render(request, "captioning/job_list.html", context)


# Headers shared by the image views


def image_headers(response: HttpResponse) -> HttpResponse:
    """Add the headers every served upload gets, whatever view returns it."""
    # The content type comes from the upload checks, and nosniff stops a browser from
    # second-guessing it, so no stored file can be run as HTML or script.
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = IMAGE_CACHE_CONTROL
    return response
