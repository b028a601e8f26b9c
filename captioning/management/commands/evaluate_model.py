"""Score a model version on a captioned dataset, here or on a worker."""

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from captioning import evaluations, selectors
from captioning.models import Evaluation


class Command(BaseCommand):
    help = (
        "Caption a dataset under DATASET_ROOT with a model version and score the captions "
        "(BLEU-1 to 4, METEOR, ROUGE-L, CIDEr-D). The scores are stored on the version "
        "under DATASET_NAME. The last line of the output is the scores as one JSON object. "
        "Exits with status 1 when the evaluation fails."
    )

    def add_arguments(self, parser):
        parser.add_argument("version", help="Model version: id, alias, NAME:NUMBER or NAME.")
        parser.add_argument(
            "dataset_name",
            nargs="?",
            help="Name the scores are stored under on the version, such as flickr8k-test. "
            "Default: the annotation file's folder name, followed by -everyN-OFFSET with "
            "--select-every and by -firstN with --limit, such as flickr8k-900-every10-0.",
        )
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument(
            "--captions-csv",
            help="CSV with the header image,caption, relative to DATASET_ROOT or absolute inside it.",
        )
        source.add_argument(
            "--coco-json",
            help="COCO captions JSON, relative to DATASET_ROOT or absolute inside it.",
        )
        parser.add_argument(
            "--images",
            required=True,
            help="Folder of the images the captions name, relative to DATASET_ROOT or absolute inside it.",
        )
        parser.add_argument(
            "--select-every",
            type=int,
            default=0,
            help="Score only every N-th image in name order, the split that "
            "ml.train --exclude-every N held out. Default: 0, every image.",
        )
        parser.add_argument(
            "--select-offset",
            type=int,
            default=0,
            help="Position of the scored image within each group of N. Default: 0.",
        )
        parser.add_argument(
            "--limit", type=int, help="Score at most this many images. Default: all selected."
        )
        parser.add_argument(
            "--queue",
            action="store_true",
            help="Send the evaluation to a Celery worker and return at once, instead of "
            "running it in this process.",
        )

    def handle(self, *args, version: str, dataset_name: str | None, queue: bool, **options):
        model_version = selectors.model_version_resolve(version)
        if model_version is None:
            raise CommandError(f"No model version matches {version!r}.")
        if options["coco_json"]:
            dataset_format, annotations = Evaluation.Format.COCO_JSON, options["coco_json"]
        else:
            dataset_format, annotations = Evaluation.Format.CAPTIONS_CSV, options["captions_csv"]
        if dataset_name is None:
            dataset_name = default_dataset_name(
                annotations,
                select_every=options["select_every"],
                select_offset=options["select_offset"],
                limit=options["limit"],
            )
        try:
            evaluation = evaluations.evaluation_create(
                model_version=model_version,
                dataset_name=dataset_name,
                format=dataset_format,
                annotations=annotations,
                images_dir=options["images"],
                limit=options["limit"],
                select_every=options["select_every"],
                select_offset=options["select_offset"],
            )
        except evaluations.EvaluationError as error:
            raise CommandError(str(error)) from error

        if queue:
            evaluations.evaluation_enqueue_later(evaluation=evaluation)
            self.stdout.write(
                f"Queued evaluation {evaluation.pk} of {model_version.label} on {dataset_name}; "
                "a worker stores the scores on the version when it finishes."
            )
            return

        self.stdout.write(
            f"Evaluating {model_version.label} on {dataset_name} ({settings.DATASET_ROOT})…"
        )
        evaluation = evaluations.evaluation_run(
            evaluation_id=evaluation.pk, progress=self._progress_write
        )
        if evaluation.status != Evaluation.Status.SUCCEEDED:
            raise CommandError(f"Evaluation {evaluation.pk} failed: {evaluation.error_message}")
        for sample in evaluation.samples[:3]:
            self.stdout.write(f"  {sample['image']}: {sample['caption']}")
        self.stdout.write(
            f"Evaluation {evaluation.pk}: {model_version.label} on {dataset_name}, "
            f"{evaluation.scores['images']} images, stored on the version."
        )
        self.stdout.write(json.dumps(evaluation.scores))

    def _progress_write(self, done: int, total: int) -> None:
        self.stdout.write(f"  captioned {done}/{total} images")


def default_dataset_name(annotations: str, *, select_every: int, select_offset: int, limit: int | None) -> str:
    """Name the scores after the dataset's folder and the selection, so that a split or a
    shortened run never overwrites the scores of the whole dataset.
    """
    path = Path(annotations)
    name = path.parent.name or path.stem
    if select_every:
        name += f"-every{select_every}-{select_offset}"
    if limit:
        name += f"-first{limit}"
    return name
