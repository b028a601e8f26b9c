"""Scoring model versions on captioned datasets that the server can read.

An evaluation captions every selected image of a dataset with one model version,
through the same loading and image normalisation as caption jobs, and scores the
captions with BLEU-1 to 4, METEOR, ROUGE-L and CIDEr-D (ml.metrics). The scores are
stored on the evaluation and on the version, under the dataset's name, where the API's
model list shows them.

Datasets are read only from inside settings.DATASET_ROOT, so a person who may start an
evaluation cannot make the server read arbitrary files.
"""

import logging
import re
import time
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from PIL import Image

from captioning import imaging, inference
from captioning.models import Evaluation, ModelVersion

logger = logging.getLogger(__name__)

# Images captioned in one pass of the model; progress is saved after each batch.
EVALUATION_BATCH_SIZE = 16
# Images whose caption and references are kept on the evaluation for people to read.
EVALUATION_SAMPLES = 20
# Dataset names key ModelVersion.scores and appear in URLs and JSON.
DATASET_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class EvaluationError(Exception):
    """An evaluation that cannot be created or run. The message gives the reason and the fix."""


# Datasets


def dataset_path(value: str | Path) -> Path:
    """Resolve a dataset path against DATASET_ROOT and reject one that leaves it.

    Relative paths are taken from DATASET_ROOT. Symbolic links and ".." are resolved
    before the check, so neither can reach outside.
    """
    root = Path(settings.DATASET_ROOT).resolve()
    path = (root / Path(value)).resolve()
    if not path.is_relative_to(root):
        raise EvaluationError(
            f"{value} is outside the dataset folder {root}. Copy the dataset into it, or "
            "set DATASET_ROOT to a folder that contains the dataset."
        )
    return path


def _dataset_items(evaluation: Evaluation) -> list:
    """Read the evaluation's dataset and return the images it scores, in name order."""
    from ml.data import DatasetError, every_nth, read_captions_csv, read_coco_json

    annotations = dataset_path(evaluation.annotations)
    images_dir = dataset_path(evaluation.images_dir)
    try:
        if evaluation.format == Evaluation.Format.COCO_JSON:
            items = read_coco_json(annotations, images_dir)
        else:
            items = read_captions_csv(annotations, images_dir)
    except DatasetError as error:
        raise EvaluationError(str(error)) from error
    if evaluation.select_every:
        items, _ = every_nth(items, every=evaluation.select_every, offset=evaluation.select_offset)
    if evaluation.limit:
        items = items[: evaluation.limit]
    if not items:
        raise EvaluationError(
            f"The dataset {evaluation.annotations} has no captioned images to score with "
            f"the selection given (every {evaluation.select_every or 1}, offset "
            f"{evaluation.select_offset}, limit {evaluation.limit or 'none'})."
        )
    return items


# Creating


def evaluation_create(
    *,
    model_version: ModelVersion,
    dataset_name: str,
    format: str,
    annotations: str,
    images_dir: str,
    limit: int | None = None,
    select_every: int = 0,
    select_offset: int = 0,
    user=None,
) -> Evaluation:
    """Check the request and create a queued evaluation.

    Run it with evaluation_run here, or on a worker with evaluation_enqueue_later.
    Raises EvaluationError naming the bad value.
    """
    if model_version.status not in (ModelVersion.Status.READY, ModelVersion.Status.RETIRED):
        raise EvaluationError(
            f"Model version {model_version.label} is {model_version.get_status_display().lower()}; "
            "only a validated version can be evaluated."
        )
    if not DATASET_NAME_PATTERN.match(dataset_name):
        raise EvaluationError(
            f"{dataset_name!r} is not a valid dataset name. Use up to 100 letters, digits, "
            "dots, hyphens and underscores, starting with a letter or digit, such as "
            "'flickr8k-test'."
        )
    if format not in Evaluation.Format.values:
        raise EvaluationError(
            f"{format!r} is not a dataset format; use one of {', '.join(Evaluation.Format.values)}."
        )
    if limit is not None and limit < 1:
        raise EvaluationError(f"The limit must be at least 1 image, not {limit}.")
    if select_every and (select_every < 2 or not 0 <= select_offset < select_every):
        raise EvaluationError(
            f"Selecting every {select_every}-th image at offset {select_offset} is not a "
            "split: use every 2 or more, and an offset from 0 to every - 1."
        )
    if not select_every and select_offset:
        raise EvaluationError("An offset needs select_every; give both or neither.")
    if not dataset_path(annotations).is_file():
        raise EvaluationError(
            f"The annotations file {dataset_path(annotations)} does not exist. Paths are read "
            f"inside DATASET_ROOT ({settings.DATASET_ROOT}); set it to the folder that holds "
            "the dataset."
        )
    if not dataset_path(images_dir).is_dir():
        raise EvaluationError(
            f"The images folder {dataset_path(images_dir)} does not exist. Paths are read "
            f"inside DATASET_ROOT ({settings.DATASET_ROOT}); set it to the folder that holds "
            "the dataset."
        )

    evaluation = Evaluation.objects.create(
        model_version=model_version,
        dataset_name=dataset_name,
        format=format,
        annotations=str(annotations),
        images_dir=str(images_dir),
        limit=limit,
        select_every=select_every,
        select_offset=select_offset,
        created_by=user if user is not None and user.is_authenticated else None,
    )
    logger.info(
        "Created evaluation %s of model version %s on %s",
        evaluation.pk,
        model_version.pk,
        dataset_name,
    )
    return evaluation


def evaluation_enqueue_later(*, evaluation: Evaluation) -> None:
    """Send the evaluation to a worker once the current transaction commits."""
    from captioning.tasks import evaluation_run as evaluation_run_task

    transaction.on_commit(lambda: evaluation_run_task.delay(evaluation.pk))


# Running


def evaluation_fail(*, evaluation: Evaluation, message: str) -> Evaluation:
    """Mark an evaluation failed with a message a person can act on."""
    evaluation.status = Evaluation.Status.FAILED
    evaluation.error_message = message
    evaluation.finished_at = timezone.now()
    evaluation.save(update_fields=["status", "error_message", "finished_at"])
    logger.warning("Evaluation %s failed: %s", evaluation.pk, message)
    return evaluation


def evaluation_run(
    *, evaluation_id: int, redelivered: bool = False, progress=None
) -> Evaluation | None:
    """Caption and score a queued evaluation, storing the scores or the failure on it.

    Returns the evaluation, or None when it does not exist. A finished one is returned
    unchanged, and one found running belongs to another worker unless the broker
    delivered it again after its worker died, in which case it is marked failed.
    `progress`, when given, is called with (images done, images total) after each batch.
    """
    evaluation = Evaluation.objects.select_related("model_version").filter(pk=evaluation_id).first()
    if evaluation is None:
        logger.warning("Evaluation %s does not exist; skipping it", evaluation_id)
        return None
    if evaluation.status in (Evaluation.Status.SUCCEEDED, Evaluation.Status.FAILED):
        logger.info("Evaluation %s is already %s; skipping it", evaluation_id, evaluation.status)
        return evaluation
    if evaluation.status == Evaluation.Status.RUNNING:
        # NOTE: Redis also redelivers a task that runs longer than the broker's
        # visibility_timeout (an hour), so an evaluation that long is marked failed here
        # while its first worker still runs it; that worker's result then overwrites the
        # failure when it finishes.
        if redelivered:
            return evaluation_fail(
                evaluation=evaluation,
                message="The worker running this evaluation stopped before it finished. Start it again.",
            )
        logger.info("Evaluation %s is running in another worker; skipping it", evaluation_id)
        return evaluation

    # The filtered UPDATE lets exactly one worker move it from queued to running.
    started = Evaluation.objects.filter(pk=evaluation_id, status=Evaluation.Status.QUEUED).update(
        status=Evaluation.Status.RUNNING, started_at=timezone.now()
    )
    if not started:
        logger.info("Evaluation %s was started by another worker; skipping it", evaluation_id)
        return Evaluation.objects.get(pk=evaluation_id)
    evaluation.refresh_from_db()
    logger.info("Started evaluation %s", evaluation.pk)

    try:
        return _evaluation_score(evaluation, progress)
    except (EvaluationError, inference.ModelUnavailable) as error:
        return evaluation_fail(evaluation=evaluation, message=str(error))
    except Exception as error:
        logger.exception("Evaluation %s raised an unexpected error", evaluation.pk)
        return evaluation_fail(
            evaluation=evaluation,
            message=(
                f"The evaluation failed because of an internal error ({type(error).__name__}: "
                f"{error}). Check the worker's log for the traceback."
            ),
        )


def _images_read(items: list) -> list:
    images = []
    for item in items:
        try:
            with open(item.path, "rb") as file:
                images.append(imaging.image_read_normalised(file=file))
        except imaging.ImageRejected as error:
            raise EvaluationError(f"The dataset image {item.path} was rejected: {error.message}") from error
        # Pillow raises these for files that are damaged or not images at all.
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            raise EvaluationError(
                f"The dataset image {item.path} could not be read ({type(error).__name__}: "
                f"{error}). Replace it, or remove it and its captions from the dataset."
            ) from error
    return images


def _evaluation_score(evaluation: Evaluation, progress) -> Evaluation:
    from ml.metrics import score_captions

    version = evaluation.model_version
    started = time.perf_counter()

    # Dataset
    items = _dataset_items(evaluation)
    evaluation.images_total = len(items)
    evaluation.save(update_fields=["images_total"])

    # Captions, a batch at a time, with the progress stored after each
    predictions: dict[str, str] = {}
    for start in range(0, len(items), EVALUATION_BATCH_SIZE):
        batch = items[start : start + EVALUATION_BATCH_SIZE]
        results = inference.images_caption(
            model_version=version, images=_images_read(batch), num_captions=1
        )
        for item, result in zip(batch, results):
            predictions[item.name] = result.captions[0].text
        Evaluation.objects.filter(pk=evaluation.pk).update(images_done=len(predictions))
        if progress is not None:
            progress(len(predictions), len(items))

    # Scores
    references = {item.name: list(item.captions) for item in items}
    scores = {
        key: round(value, 4) if isinstance(value, float) else value
        for key, value in score_captions(predictions, references).items()
    }
    scores["images"] = len(items)

    # Result, on the evaluation and on the version
    evaluation.status = Evaluation.Status.SUCCEEDED
    evaluation.images_done = len(items)
    evaluation.scores = scores
    evaluation.samples = [
        {"image": item.name, "caption": predictions[item.name], "references": list(item.captions)}
        for item in items[:EVALUATION_SAMPLES]
    ]
    evaluation.error_message = ""
    evaluation.finished_at = timezone.now()
    with transaction.atomic():
        evaluation.save()
        # Locked, so two evaluations finishing together both keep their dataset's scores.
        locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
        locked.scores = {**locked.scores, evaluation.dataset_name: scores}
        locked.save(update_fields=["scores"])
    logger.info(
        "Evaluation %s of model version %s on %s succeeded in %.1f s: CIDEr %s over %d images",
        evaluation.pk,
        version.pk,
        evaluation.dataset_name,
        time.perf_counter() - started,
        scores["cider"],
        len(items),
    )
    return evaluation
