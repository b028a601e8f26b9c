"""The one adapter between the captioning app and the `ml` package.

Each worker process keeps one loaded Captioner per model version and reuses it for
every job. Nothing here imports torch or `ml` at import time, and no model is loaded
before the first job arrives, so a prefork worker's parent process never touches CUDA
and each forked child initialises its own device.
"""

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    from PIL import Image

    from captioning.models import ModelVersion
    from ml.captioner import Captioner

logger = logging.getLogger(__name__)

STARTER_NAME = "starter"
STARTER_CHECKPOINT = "checkpoints/starter.safetensors"


class ModelUnavailable(Exception):
    """A model version's checkpoint could not be loaded. The message explains why."""


@dataclass(frozen=True)
class Caption:
    text: str
    log_prob: float
    confidence: float
    truncated: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "log_prob": self.log_prob,
            "confidence": self.confidence,
            "truncated": self.truncated,
        }


@dataclass(frozen=True)
class CaptionResult:
    captions: list[Caption]  # best first, at least one
    model_seconds: float  # time inside the model, without loading it


# Loaded captioners by ModelVersion primary key, private to this process.
_captioners: dict[int, "Captioner"] = {}
_captioners_lock = threading.Lock()


def checkpoint_path(checkpoint: str) -> Path:
    """Resolve a ModelVersion.checkpoint value against settings.CHECKPOINT_ROOT."""
    path = Path(checkpoint)
    if not path.is_absolute():
        path = Path(settings.CHECKPOINT_ROOT) / path
    return path


def checkpoint_fields(checkpoint: str) -> dict[str, Any]:
    """Return the config and scores stored in a checkpoint, for a ModelVersion row.

    Reads only the metadata, without building the model. Raises
    ml.checkpoint.CheckpointError naming the file when it is missing or invalid.
    """
    from ml.checkpoint import read_checkpoint_metadata

    metadata = read_checkpoint_metadata(checkpoint_path(checkpoint))
    record = metadata.get("record") or {}
    return {
        "config": metadata.get("config") or {},
        "scores": record.get("scores") or {},
    }


def caption_device() -> str:
    """Return the torch device name for this process: CAPTION_DEVICE, else CUDA if present."""
    if settings.CAPTION_DEVICE:
        return settings.CAPTION_DEVICE

    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def captioner_get(*, model_version: "ModelVersion") -> "Captioner":
    """Return the loaded Captioner for a model version, loading it on first use."""
    captioner = _captioners.get(model_version.pk)
    if captioner is not None:
        return captioner

    with _captioners_lock:
        captioner = _captioners.get(model_version.pk)
        if captioner is not None:
            return captioner

        from ml.captioner import Captioner
        from ml.checkpoint import CheckpointError

        path = checkpoint_path(model_version.checkpoint)
        device = caption_device()
        logger.info(
            "Loading model version %s (%s) from %s on %s",
            model_version.pk,
            model_version.name,
            path,
            device,
        )
        started = time.perf_counter()
        try:
            captioner = Captioner.from_checkpoint(path, device=device)
        except CheckpointError as error:
            raise ModelUnavailable(
                f"Model version {model_version.name!r} could not be loaded: {error}. "
                "Restore the checkpoint file or activate another model version."
            ) from error
        logger.info(
            "Loaded model version %s in %.1f s", model_version.pk, time.perf_counter() - started
        )
        _captioners[model_version.pk] = captioner
        return captioner


def images_caption(
    *,
    model_version: "ModelVersion",
    images: Sequence["Image.Image"],
    num_captions: int,
    beam_size: int | None = None,
    max_length: int | None = None,
) -> list[CaptionResult]:
    """Caption normalised RGB images with a model version; one result per image.

    `model_seconds` covers the whole batch, because the model runs it in one pass.
    """
    captioner = captioner_get(model_version=model_version)
    started = time.perf_counter()
    hypotheses = captioner.caption(
        list(images), beam_size=beam_size, max_length=max_length, num_captions=num_captions
    )
    seconds = time.perf_counter() - started

    results = []
    for per_image in hypotheses:
        captions = [
            Caption(
                text=hypothesis.text,
                log_prob=float(hypothesis.log_prob),
                confidence=float(hypothesis.confidence),
                truncated=bool(hypothesis.truncated),
            )
            for hypothesis in per_image
        ]
        results.append(CaptionResult(captions=captions, model_seconds=seconds))
    return results
