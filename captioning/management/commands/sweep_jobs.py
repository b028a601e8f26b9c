"""Finish or re-send the caption jobs that lost workers or lost messages left behind."""

from django.core.management.base import BaseCommand

from captioning import services


class Command(BaseCommand):
    help = (
        "Send long-queued jobs to the broker again, re-queue running jobs whose worker is "
        "gone, and fail jobs whose attempts are spent. Celery beat runs the same sweep every "
        "JOB_SWEEP_INTERVAL_SECONDS; run this by hand or from cron where no beat runs."
    )

    def handle(self, *args, **options):
        report = services.jobs_sweep()
        self.stdout.write(
            f"Sent again: {report.resent}, queued again: {report.requeued}, failed: {report.failed}."
        )
