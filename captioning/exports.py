"""The captions of a batch as CSV and JSON files, for importing alt text elsewhere.

Both formats carry the same fields per photo, in the order the jobs were created,
which is the batch page's order, followed by the files rejected at upload with the
status "rejected". Files upload in parallel, so it can differ from the
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


def rejection_export_record(rejection: dict) -> dict:
    """Return the exported fields of a file that was rejected before becoming a job."""
    return {
        "filename": rejection.get("filename", ""),
        "caption": "",
        "original_caption": "",
        "corrected": False,
        "alternatives": [],
        "model_version": "",
        "status": "rejected",
        "error": rejection.get("message", ""),
    }


def batch_export_records(*, batch: CaptionBatch, jobs: Iterable[CaptionJob]) -> list[dict]:
    """Return one record per job, then one per rejected file, so no file goes missing."""
    records = [job_export_record(job) for job in jobs]
    records += [rejection_export_record(rejection) for rejection in batch.rejected or []]
    return records


def csv_cell(value: str) -> str:
    """Return `value` made inert for spreadsheets: a leading apostrophe before a formula."""
    if value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def batch_export_csv(*, batch: CaptionBatch, jobs: Iterable[CaptionJob]) -> str:
    """Return the CSV text of a batch, starting with a byte order mark and a header row."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for record in batch_export_records(batch=batch, jobs=jobs):
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
        "items": batch_export_records(batch=batch, jobs=jobs),
    }
    return json.dumps(document, ensure_ascii=False, indent=2)
