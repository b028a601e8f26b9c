"""Template tags of the admin dashboard: the index summary and the production charts."""

from collections.abc import Sequence

from django import template
from django.utils import timezone
from django.utils.safestring import SafeString
from django.utils.translation import gettext

from captioning import charts, dashboard

register = template.Library()


@register.inclusion_tag("admin/captioning/_dashboard.html", takes_context=True)
def captioning_dashboard(context) -> dict:
    """Render the captioning summary for staff who may view model versions; nothing for others."""
    request = context.get("request")
    if request is None or not request.user.has_perm("captioning.view_modelversion"):
        return {"summary": None}
    return {"summary": dashboard.index_summary(), "request": request}


@register.simple_tag(takes_context=True)
def period_query(context, period: str) -> str:
    """Return the current query string with ?period= replaced, for the period links."""
    query = context["request"].GET.copy()
    query["period"] = period
    return "?" + query.urlencode()


def _bucket_label(bucket: dashboard.Bucket, size: str) -> str:
    local = timezone.localtime(bucket.start)
    return local.strftime("%H:%M") if size == "hour" else local.strftime("%m-%d")


def _peak(series: Sequence[dashboard.Bucket], size: str, count) -> tuple[str, int]:
    if not series:
        return "–", 0
    busiest = max(series, key=count)
    return _bucket_label(busiest, size), count(busiest)


def _x_title(size: str) -> str:
    zone = timezone.get_current_timezone_name()
    if size == "hour":
        return gettext("Hour starting (%(zone)s)") % {"zone": zone}
    return gettext("Day (%(zone)s)") % {"zone": zone}


@register.simple_tag
def jobs_chart(figures: dashboard.VersionFigures) -> SafeString:
    """Draw the version's jobs per hour or day, split into succeeded, failed and unfinished."""
    size = figures.bucket_size
    series = figures.series
    label, peak = _peak(series, size, lambda bucket: bucket.jobs)
    numbers = {
        "jobs": figures.jobs,
        "succeeded": figures.succeeded,
        "failed": figures.failed,
        "peak_label": label,
        "peak": peak,
    }
    if size == "hour":
        summary = gettext(
            "Jobs per hour: %(jobs)s in all, %(succeeded)s succeeded, %(failed)s failed. "
            "Busiest hour: %(peak_label)s with %(peak)s jobs."
        ) % numbers
    else:
        summary = gettext(
            "Jobs per day: %(jobs)s in all, %(succeeded)s succeeded, %(failed)s failed. "
            "Busiest day: %(peak_label)s with %(peak)s jobs."
        ) % numbers
    layers = [
        charts.Layer(gettext("Succeeded"), [bucket.succeeded for bucket in series], charts.BLUE),
        charts.Layer(gettext("Failed"), [bucket.failed for bucket in series], charts.RED),
        charts.Layer(
            gettext("Queued or running"),
            [bucket.jobs - bucket.succeeded - bucket.failed for bucket in series],
            charts.LIGHT_BLUE,
        ),
    ]
    return charts.column_chart(
        labels=[_bucket_label(bucket, size) for bucket in series],
        layers=layers,
        summary=f"{figures.model_version.label}: {summary}",
        x_title=_x_title(size),
        y_title=gettext("Jobs"),
    )


@register.simple_tag
def throughput_chart(summary: dashboard.IndexSummary) -> SafeString:
    """Draw the jobs that finished in each of the last 24 hours, failures stacked on top."""
    series = summary.finished_series
    label, peak = _peak(series, "hour", lambda bucket: bucket.succeeded)
    text = gettext(
        "Finished jobs per hour over the last 24 hours: %(succeeded)s succeeded, %(failed)s failed. "
        "Busiest hour: %(peak_label)s with %(peak)s succeeded."
    ) % {
        "succeeded": summary.succeeded_last_day,
        "failed": sum(bucket.failed for bucket in series),
        "peak_label": label,
        "peak": peak,
    }
    return charts.column_chart(
        labels=[_bucket_label(bucket, "hour") for bucket in series],
        layers=[
            charts.Layer(gettext("Succeeded"), [bucket.succeeded for bucket in series], charts.BLUE),
            charts.Layer(gettext("Failed"), [bucket.failed for bucket in series], charts.RED),
        ],
        summary=text,
        x_title=_x_title("hour"),
        y_title=gettext("Jobs"),
    )


def _timings_summary(title: str, rows: Sequence[charts.PercentileRow]) -> str:
    described = "; ".join(
        gettext("%(label)s: p50 %(p50)s, p95 %(p95)s")
        % {"label": row.label, "p50": charts.seconds_format(row.p50), "p95": charts.seconds_format(row.p95)}
        for row in rows
    )
    return f"{title}. {described}."


@register.simple_tag
def timings_chart(figures_list: Sequence[dashboard.VersionFigures], measure: str) -> SafeString:
    """Draw one measure ("queue" or "model" time) with a bar per version, on one scale."""
    if measure == "queue":
        title = gettext("Queue time: upload to start of captioning")
        rows = [
            charts.PercentileRow(figures.model_version.label, figures.queue.p50, figures.queue.p95)
            for figures in figures_list
        ]
    else:
        title = gettext("Model time: the caption call of succeeded jobs")
        rows = [
            charts.PercentileRow(figures.model_version.label, figures.model.p50, figures.model.p95)
            for figures in figures_list
        ]
    return charts.percentile_chart(
        rows=rows, summary=_timings_summary(title, rows), x_title=gettext("Seconds")
    )


@register.simple_tag
def version_timings_chart(figures: dashboard.VersionFigures) -> SafeString:
    """Draw one version's queue time and model time as two bars on one scale."""
    rows = [
        charts.PercentileRow(gettext("Queue time"), figures.queue.p50, figures.queue.p95),
        charts.PercentileRow(gettext("Model time"), figures.model.p50, figures.model.p95),
    ]
    title = gettext("Queue and model time of %(version)s") % {"version": figures.model_version.label}
    return charts.percentile_chart(
        rows=rows, summary=_timings_summary(title, rows), x_title=gettext("Seconds")
    )


@register.filter
def seconds(value: float | None) -> str:
    return charts.seconds_format(value)


@register.filter
def item(sequence, index: int):
    """Return sequence[index], for the per-version columns of the comparison tables."""
    return sequence[index]
