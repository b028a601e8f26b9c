"""Reads behind the admin dashboard: production figures, the index summary, comparisons.

Selectors only: nothing here writes, and nothing imports the Django admin, so the
admin pages, their template tags and the tests share one source of figures.

Percentiles use the nearest-rank definition: the p-th percentile of n sorted values is
the value at 1-based rank ceil(p / 100 * n). It is always an observed time, and the same
on every database, because it is computed in Python rather than by SQL functions that
SQLite lacks.
"""

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from datetime import timezone as dt_timezone
from urllib.parse import urlsplit

import redis
from django.db.models import Count, F, Q, QuerySet
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from captioning.models import CaptionJob, Evaluation, ModelAlias, ModelVersion, Rollout
from captioning.registry import CANDIDATE_ALIAS

logger = logging.getLogger(__name__)

# Periods that the figures pages offer, by the key used in ?period=.
PERIODS = {
    "24h": (timedelta(hours=24), _("24 hours")),
    "7d": (timedelta(days=7), _("7 days")),
    "30d": (timedelta(days=30), _("30 days")),
}
DEFAULT_PERIOD = "7d"
# Periods up to this length are charted per hour, longer ones per day.
HOURLY_SERIES_MAX = timedelta(days=2)
# The most frequent error messages listed per version.
FAILURE_REASONS_SHOWN = 5
# Connect and read timeout for the queue depth, so a dead Redis cannot hold up a page.
QUEUE_DEPTH_TIMEOUT_SECONDS = 1.0
# Sample photos shown per dataset on the comparison page.
SAMPLE_ROWS_SHOWN = 8
# Metrics where a smaller value is better. Every other numeric score is better when higher.
LOWER_IS_BETTER = {"loss", "perplexity"}
# Keys in ModelVersion.scores that are counts, not metrics: shown, never highlighted.
COUNT_KEYS = {"images"}
METRIC_ORDER = ["bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider", "spice"]


# Percentiles


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Return the nearest-rank p-th percentile of ascending values, or None when empty."""
    if not 0 < p <= 100:
        raise ValueError(f"The percentile must be in (0, 100], not {p}.")
    if not sorted_values:
        return None
    rank = math.ceil(p / 100 * len(sorted_values))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class Timings:
    """p50 and p95 in seconds of one measure, and how many jobs they come from."""

    count: int
    p50: float | None
    p95: float | None

    @classmethod
    def of(cls, values: Iterable[float]) -> "Timings":
        ordered = sorted(values)
        return cls(count=len(ordered), p50=percentile(ordered, 50), p95=percentile(ordered, 95))


# Time series


@dataclass(frozen=True)
class Bucket:
    """Jobs counted in one hour or one day, starting at `start`."""

    start: datetime
    jobs: int = 0
    succeeded: int = 0
    failed: int = 0


def period_parse(value: str | None) -> str:
    """Return a key of PERIODS: `value` when it is one, DEFAULT_PERIOD otherwise."""
    return value if value in PERIODS else DEFAULT_PERIOD


def bucket_size_for(*, since: datetime, until: datetime) -> str:
    return "hour" if until - since <= HOURLY_SERIES_MAX else "day"


def _bucket_starts(*, since: datetime, until: datetime, size: str) -> list[datetime]:
    """Return the start of every bucket that overlaps [since, until).

    Hours are cut in UTC, where every hour is 60 minutes long. Days are cut at midnight
    in the current time zone, stepping by calendar date so daylight saving changes
    shift no boundary.
    """
    starts = []
    if size == "hour":
        start = since.astimezone(dt_timezone.utc).replace(minute=0, second=0, microsecond=0)
        while start < until:
            starts.append(start)
            start += timedelta(hours=1)
        return starts
    zone = timezone.get_current_timezone()
    day = timezone.localtime(since, zone).date()
    while True:
        start = datetime.combine(day, time.min, tzinfo=zone)
        if start >= until:
            return starts
        starts.append(start)
        day += timedelta(days=1)


def job_series(
    *, jobs: QuerySet[CaptionJob], since: datetime, until: datetime, field_name: str = "created_at"
) -> list[Bucket]:
    """Count `jobs` per hour or day of `field_name` in [since, until), empty buckets included.

    The counting happens in the database, grouped by the truncated timestamp.
    """
    size = bucket_size_for(since=since, until=until)
    if size == "hour":
        truncate = TruncHour(field_name, tzinfo=dt_timezone.utc)
    else:
        truncate = TruncDay(field_name, tzinfo=timezone.get_current_timezone())
    rows = (
        jobs.filter(**{f"{field_name}__gte": since, f"{field_name}__lt": until})
        .order_by()
        .annotate(bucket=truncate)
        .values("bucket")
        .annotate(
            jobs=Count("pk"),
            succeeded=Count("pk", filter=Q(status=CaptionJob.Status.SUCCEEDED)),
            failed=Count("pk", filter=Q(status=CaptionJob.Status.FAILED)),
        )
    )
    counted = {row["bucket"]: row for row in rows}
    series = []
    for start in _bucket_starts(since=since, until=until, size=size):
        row = counted.get(start)
        if row is None:
            series.append(Bucket(start=start))
        else:
            series.append(
                Bucket(start=start, jobs=row["jobs"], succeeded=row["succeeded"], failed=row["failed"])
            )
    return series


# Production figures


@dataclass(frozen=True)
class FailureReason:
    message: str
    count: int


@dataclass(frozen=True)
class VersionFigures:
    """The production figures of one version for jobs created between `since` and `until`.

    Queue time is started_at - created_at of the jobs that a worker started. Model time
    is model_seconds of the succeeded jobs.
    """

    model_version: ModelVersion
    since: datetime
    until: datetime
    jobs: int
    succeeded: int
    failed: int
    failure_reasons: list[FailureReason]
    queue: Timings
    model: Timings
    bucket_size: str
    series: list[Bucket] = field(default_factory=list)

    @property
    def unfinished(self) -> int:
        return self.jobs - self.succeeded - self.failed

    @property
    def failure_rate(self) -> float | None:
        finished = self.succeeded + self.failed
        return self.failed / finished if finished else None


def _failure_reasons(jobs: QuerySet[CaptionJob]) -> list[FailureReason]:
    rows = (
        jobs.filter(status=CaptionJob.Status.FAILED)
        .order_by()
        .values("error_message")
        .annotate(count=Count("pk"))
        .order_by("-count", "error_message")[:FAILURE_REASONS_SHOWN]
    )
    return [
        FailureReason(message=row["error_message"] or gettext("(no message)"), count=row["count"])
        for row in rows
    ]


def version_figures(*, model_version: ModelVersion, since: datetime, until: datetime) -> VersionFigures:
    """Return the production figures of one version for jobs created in [since, until)."""
    jobs = CaptionJob.objects.filter(
        model_version=model_version, created_at__gte=since, created_at__lt=until
    )
    counts = jobs.aggregate(
        jobs=Count("pk"),
        succeeded=Count("pk", filter=Q(status=CaptionJob.Status.SUCCEEDED)),
        failed=Count("pk", filter=Q(status=CaptionJob.Status.FAILED)),
    )

    # Timings: every started job of the period is read, then sorted here.
    # NOTE: this reads one row per job, which is fine for thousands of jobs a day; a
    # busier service would want percentile_cont on PostgreSQL instead.
    started = jobs.filter(started_at__isnull=False).order_by().values_list("created_at", "started_at")
    queue = Timings.of((started_at - created_at).total_seconds() for created_at, started_at in started)
    model_seconds = (
        jobs.filter(status=CaptionJob.Status.SUCCEEDED, model_seconds__isnull=False)
        .order_by("model_seconds")
        .values_list("model_seconds", flat=True)
    )
    model = Timings.of(model_seconds)

    return VersionFigures(
        model_version=model_version,
        since=since,
        until=until,
        jobs=counts["jobs"],
        succeeded=counts["succeeded"],
        failed=counts["failed"],
        failure_reasons=_failure_reasons(jobs),
        queue=queue,
        model=model,
        bucket_size=bucket_size_for(since=since, until=until),
        series=job_series(
            jobs=CaptionJob.objects.filter(model_version=model_version), since=since, until=until
        ),
    )


def production_figures(
    *, model_versions: Iterable[ModelVersion], since: datetime, until: datetime
) -> list[VersionFigures]:
    """Return the production figures of each version, in the order given."""
    return [
        version_figures(model_version=version, since=since, until=until) for version in model_versions
    ]


def period_bounds(*, period: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    """Return (since, until) of the period key ending now; an unknown key means the default."""
    until = now or timezone.now()
    length, _label = PERIODS[period_parse(period)]
    return until - length, until


def period_choices(*, selected: str) -> list[dict]:
    return [
        {"key": key, "label": label, "selected": key == selected} for key, (_length, label) in PERIODS.items()
    ]


def figures_context(*, model_version: ModelVersion, period: str | None) -> dict:
    """Return the template context of admin/captioning/modelversion/_figures.html."""
    period = period_parse(period)
    since, until = period_bounds(period=period)
    return {
        "figures_list": production_figures(model_versions=[model_version], since=since, until=until),
        "period": period,
        "period_choices": period_choices(selected=period),
    }


# Index summary


@dataclass(frozen=True)
class QueueDepth:
    """Messages waiting in the broker's queue, or None with the reason it is unknown."""

    messages: int | None
    error: str = ""


def queue_depth(*, broker_url: str | None = None, queue_name: str | None = None) -> QueueDepth:
    """Read the length of the Celery queue from Redis (LLEN on the queue's list).

    Both arguments default to the Celery app's configuration. Any failure to reach
    Redis returns messages=None with a reason, never an exception.
    NOTE: tasks published with a priority wait in extra lists that kombu names after
    the queue; they are not counted. Caption jobs are published without one.
    """
    from captionsite.celery import app

    broker_url = broker_url or app.conf.broker_url
    queue_name = queue_name or app.conf.task_default_queue
    scheme = urlsplit(broker_url).scheme
    if scheme not in ("redis", "rediss", "unix"):
        return QueueDepth(messages=None, error=gettext("The broker is not Redis (%(scheme)s).") % {"scheme": scheme})

    client = redis.Redis.from_url(
        broker_url,
        socket_connect_timeout=QUEUE_DEPTH_TIMEOUT_SECONDS,
        socket_timeout=QUEUE_DEPTH_TIMEOUT_SECONDS,
    )
    try:
        return QueueDepth(messages=int(client.llen(queue_name)))
    except (redis.RedisError, OSError) as error:
        # The URL may carry a password, so only the error's class and text are logged.
        logger.warning("Reading the depth of queue %s failed: %s: %s", queue_name, type(error).__name__, error)
        return QueueDepth(
            messages=None,
            error=gettext("Redis is unreachable (%(error)s).") % {"error": type(error).__name__},
        )
    finally:
        client.close()


@dataclass(frozen=True)
class IndexSummary:
    queue_depth: QueueDepth
    queued_in_database: int
    # Jobs created in the last 24 hours, per status value, every status present.
    status_counts: dict[str, int]
    # Jobs that finished in each of the last 24 hours, by finished_at.
    finished_series: list[Bucket]
    active_version: ModelVersion | None
    candidate_version: ModelVersion | None
    canary_percent: int

    @property
    def status_rows(self) -> list[tuple[str, str, int]]:
        """(value, label, count) per status, in the order the model declares them."""
        return [(value, label, self.status_counts[value]) for value, label in CaptionJob.Status.choices]

    @property
    def succeeded_last_day(self) -> int:
        return sum(bucket.succeeded for bucket in self.finished_series)


def index_summary(*, now: datetime | None = None) -> IndexSummary:
    """Return the figures that the admin index shows above the app list."""
    until = now or timezone.now()
    since = until - timedelta(hours=24)

    status_counts = {value: 0 for value in CaptionJob.Status.values}
    rows = (
        CaptionJob.objects.filter(created_at__gte=since, created_at__lt=until)
        .order_by()
        .values("status")
        .annotate(count=Count("pk"))
    )
    for row in rows:
        status_counts[row["status"]] = row["count"]

    candidate = ModelAlias.objects.select_related("model_version").filter(name=CANDIDATE_ALIAS).first()
    # The rollout row is created on first write; until then the canary share is 0.
    canary_percent = (
        Rollout.objects.filter(pk=Rollout.SINGLETON_ID).values_list("canary_percent", flat=True).first() or 0
    )
    return IndexSummary(
        queue_depth=queue_depth(),
        queued_in_database=CaptionJob.objects.filter(status=CaptionJob.Status.QUEUED).count(),
        status_counts=status_counts,
        finished_series=job_series(
            jobs=CaptionJob.objects.all(), since=since, until=until, field_name="finished_at"
        ),
        active_version=ModelVersion.objects.filter(is_active=True).first(),
        candidate_version=candidate.model_version if candidate else None,
        canary_percent=canary_percent,
    )


# Comparison


@dataclass(frozen=True)
class ScoreRow:
    """One dataset and metric, with each version's value (None where it has none)."""

    dataset: str
    metric: str
    values: list[float | None]
    best: frozenset[int]
    is_count: bool


def _metric_sort_key(metric: str) -> tuple:
    if metric in METRIC_ORDER:
        return (0, METRIC_ORDER.index(metric), metric)
    return (2 if metric in COUNT_KEYS else 1, 0, metric)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def score_rows(*, model_versions: Sequence[ModelVersion]) -> list[ScoreRow]:
    """Return a row per dataset and numeric metric found in any version's scores.

    `best` contains the indexes of the versions with the best value of the row, all of
    them when tied. Rows with a single value, and rows of counts, have no best.
    """
    datasets = sorted({name for version in model_versions for name in (version.scores or {})})
    rows = []
    for dataset in datasets:
        per_version = [
            (version.scores or {}).get(dataset) if isinstance((version.scores or {}).get(dataset), dict) else {}
            for version in model_versions
        ]
        metrics = sorted(
            {metric for scores in per_version for metric, value in scores.items() if _is_number(value)},
            key=_metric_sort_key,
        )
        for metric in metrics:
            values = [scores.get(metric) if _is_number(scores.get(metric)) else None for scores in per_version]
            present = [value for value in values if value is not None]
            is_count = metric in COUNT_KEYS
            best: frozenset[int] = frozenset()
            if not is_count and len(present) >= 2:
                target = min(present) if metric in LOWER_IS_BETTER else max(present)
                best = frozenset(index for index, value in enumerate(values) if value == target)
            rows.append(ScoreRow(dataset=dataset, metric=metric, values=values, best=best, is_count=is_count))
    return rows


@dataclass(frozen=True)
class SampleRow:
    """One photo, served through `evaluation_id`, with each version's caption or None."""

    image: str
    evaluation_id: int
    references: list[str]
    captions: list[str | None]


@dataclass(frozen=True)
class SampleGrid:
    dataset: str
    # Per version, the evaluation whose samples are shown, or None.
    evaluations: list[Evaluation | None]
    rows: list[SampleRow]


def _newest_evaluations(model_versions: Sequence[ModelVersion]) -> dict[tuple[int, str], Evaluation]:
    """Return the newest succeeded evaluation with samples per (version id, dataset name)."""
    newest: dict[tuple[int, str], Evaluation] = {}
    evaluations = Evaluation.objects.filter(
        model_version__in=model_versions, status=Evaluation.Status.SUCCEEDED
    ).order_by(F("finished_at").desc(nulls_last=True), "-created_at", "-pk")
    for evaluation in evaluations:
        if not isinstance(evaluation.samples, list) or not evaluation.samples:
            continue
        newest.setdefault((evaluation.model_version_id, evaluation.dataset_name), evaluation)
    return newest


def _samples_by_image(evaluation: Evaluation | None) -> dict[str, dict]:
    if evaluation is None:
        return {}
    samples = {}
    for sample in evaluation.samples:
        if isinstance(sample, dict) and isinstance(sample.get("image"), str):
            samples.setdefault(sample["image"], sample)
    return samples


def sample_grids(*, model_versions: Sequence[ModelVersion]) -> list[SampleGrid]:
    """Return, per dataset that two or more of the versions were evaluated on, their
    captions of the same sample photos, matched by image file name.

    A photo is shown when at least two versions captioned it, in the order of the first
    version that did, and at most SAMPLE_ROWS_SHOWN per dataset.
    """
    newest = _newest_evaluations(model_versions)
    datasets = sorted({dataset for _version_id, dataset in newest})
    grids = []
    for dataset in datasets:
        evaluations = [newest.get((version.pk, dataset)) for version in model_versions]
        if sum(evaluation is not None for evaluation in evaluations) < 2:
            continue
        by_image = [_samples_by_image(evaluation) for evaluation in evaluations]

        rows = []
        seen = set()
        for evaluation, samples in zip(evaluations, by_image):
            for image, sample in samples.items():
                if image in seen or sum(image in other for other in by_image) < 2:
                    continue
                seen.add(image)
                references = [text for text in sample.get("references") or [] if isinstance(text, str)]
                captions = [other[image].get("caption") if image in other else None for other in by_image]
                rows.append(
                    SampleRow(image=image, evaluation_id=evaluation.pk, references=references, captions=captions)
                )
        if rows:
            grids.append(SampleGrid(dataset=dataset, evaluations=evaluations, rows=rows[:SAMPLE_ROWS_SHOWN]))
    return grids


def training_summary(training: dict) -> dict:
    """Return the facts of a training record that a comparison shows.

    `data` lists each source as its file name and image count. The other keys are the
    record's epochs, seed and objective, each None when the record lacks it.
    """
    training = training if isinstance(training, dict) else {}
    data = training.get("data")
    sources = data.get("sources") if isinstance(data, dict) else None
    described = []
    for source in sources if isinstance(sources, list) else []:
        if not isinstance(source, dict):
            continue
        path = source.get("captions_csv") or source.get("coco_json") or source.get("images_dir") or ""
        name = str(path).replace("\\", "/").rsplit("/", 1)[-1] or gettext("unnamed source")
        images = source.get("images")
        if isinstance(images, int):
            described.append(gettext("%(name)s (%(images)s images)") % {"name": name, "images": images})
        else:
            described.append(name)
    if not described and isinstance(data, str):
        described.append(data)
    return {
        "data": described,
        "epochs": training.get("epochs"),
        "seed": training.get("seed"),
        "objective": training.get("objective"),
    }
