"""The captions of a batch as CSV and JSON files, for importing alt text elsewhere.

Both formats carry the same fields per photo, in the order the jobs were created,
which is the batch page's order. Files upload in parallel, so it can differ from the
order in which they were chosen. The CSV is written for
spreadsheets: UTF-8 with a byte order mark, so Excel reads Chinese file names, and no
cell that a spreadsheet would run as a formula.
"""

import csv
import io
import json
from collections.abc import Iterable

from captioning.models import CaptionBatch, CaptionJob

CSV_COLUMNS = [
    "filename",
    "caption",
    "original_caption",
    "alternatives",
    "model_version",
    "status",
    "error",
]

# Spreadsheets read a cell starting with one of these as a formula. Tab and carriage
# return count too, because some spreadsheets strip them before looking.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

# Separates alternatives inside one CSV cell.
ALTERNATIVES_SEPARATOR = " | "


def job_export_record(job: CaptionJob) -> dict:
    """Return the exported fields of one job.

    `caption` is the correction when there is one, and `original_caption` is always
    what the model wrote.
    """
    alternatives = [
        {"text": alternative["text"], "confidence": alternative.get("confidence")}
        for alternative in job.alternatives or []
        if alternative.get("text")
    ]
    return {
        "filename": job.original_filename,
        "caption": job.display_caption,
        "original_caption": job.caption,
        "corrected": bool(job.corrected_caption),
        "alternatives": alternatives,
        "model_version": job.model_version.label if job.model_version else "",
        "status": job.status,
        "error": job.error_message,
    }


def csv_cell(value: str) -> str:
    """Return `value` made inert for spreadsheets: a leading apostrophe before a formula."""
    if value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def batch_export_csv(*, jobs: Iterable[CaptionJob]) -> str:
    """Return the CSV text of `jobs`, starting with a byte order mark and a header row."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for job in jobs:
        record = job_export_record(job)
        record["alternatives"] = ALTERNATIVES_SEPARATOR.join(
            alternative["text"] for alternative in record["alternatives"]
        )
        writer.writerow([csv_cell(str(record[column])) for column in CSV_COLUMNS])
    return buffer.getvalue()


def batch_export_json(*, batch: CaptionBatch, jobs: Iterable[CaptionJob]) -> str:
    """Return the JSON text of `jobs`: the batch id, its creation time and one item per job."""
    document = {
        "batch": str(batch.pk),
        "created_at": batch.created_at.isoformat(),
        "items": [job_export_record(job) for job in jobs],
    }
    return json.dumps(document, ensure_ascii=False, indent=2)
