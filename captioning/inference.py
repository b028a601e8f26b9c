"""The one adapter between the captioning app and the `ml` package.

Each worker process keeps the captioners of the model versions it used last, up to
settings.LOADED_MODEL_VERSIONS, and evicts the least recently used. Nothing here
imports torch or `ml` at import time, and no model is loaded
before the first job arrives, so a prefork worker's parent process never touches CUDA
and each forked child initialises its own device.
"""

import logging
import threading
import time
from collections import OrderedDict
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


# Loaded captioners by ModelVersion primary key, least recently used first; private
# to this process.
_captioners: OrderedDict[int, "Captioner"] = OrderedDict()
_captioners_lock = threading.Lock()


def checkpoint_path(checkpoint: str) -> Path:
    """Resolve a ModelVersion.checkpoint value against settings.CHECKPOINT_ROOT."""
    path = Path(checkpoint)
    if not path.is_absolute():
        path = Path(settings.CHECKPOINT_ROOT) / path
    return path


def caption_device() -> str:
    """Return the torch device name for this process: CAPTION_DEVICE, else CUDA if present."""
    if settings.CAPTION_DEVICE:
        return settings.CAPTION_DEVICE

    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def loaded_model_version_ids() -> list[int]:
    """Ids of the versions loaded in this process, least recently used first."""
    return list(_captioners)


def captioner_get(*, model_version: "ModelVersion") -> "Captioner":
    """Return the loaded Captioner for a model version, loading it on first use.

    Loading checks that the file still has the sha256 the registry recorded, and
    evicts the least recently used version once more than LOADED_MODEL_VERSIONS are
    loaded.
    """
    with _captioners_lock:
        captioner = _captioners.get(model_version.pk)
        if captioner is not None:
            _captioners.move_to_end(model_version.pk)
            return captioner

        captioner = _captioner_load(model_version)
        _captioners[model_version.pk] = captioner
        while len(_captioners) > max(settings.LOADED_MODEL_VERSIONS, 1):
            evicted, _ = _captioners.popitem(last=False)
            logger.info("Unloaded model version %s, the least recently used", evicted)
            _device_cache_release()
        return captioner


def _captioner_load(model_version: "ModelVersion") -> "Captioner":
    from ml.captioner import Captioner
    from ml.checkpoint import CheckpointError

    from captioning.registry import file_sha256

    path = checkpoint_path(model_version.checkpoint)
    device = caption_device()
    logger.info(
        "Loading model version %s (%s) from %s on %s",
        model_version.pk,
        model_version.label,
        path,
        device,
    )
    started = time.perf_counter()
    try:
        if model_version.checkpoint_sha256 and path.is_file():
            sha256 = file_sha256(path)
            if sha256 != model_version.checkpoint_sha256:
                raise CheckpointError(
                    path,
                    f"the file changed after it was registered (sha256 {sha256[:12]}…, "
                    f"registered {model_version.checkpoint_sha256[:12]}…)",
                )
        captioner = Captioner.from_checkpoint(path, device=device)
    except CheckpointError as error:
        raise ModelUnavailable(
            f"Model version {model_version.label} could not be loaded: {error}. "
            "Restore the checkpoint file or activate another model version."
        ) from error
    logger.info(
        "Loaded model version %s in %.1f s", model_version.pk, time.perf_counter() - started
    )
    return captioner


def _device_cache_release() -> None:
    """Return the memory of an evicted model to the GPU, when one is in use."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


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
