"""The model registry: every change to model versions, aliases and the rollout.

Registering stores a checkpoint and creates a `validating` version; validation proves
that the file loads without running code, that its config is complete and that it
captions a known photo, and leaves the version `ready` or `failed`. Only ready versions
may be activated, carry an alias or be pinned by a request.

Every change takes a lock on the single Rollout row first, so two administrators who
activate, roll back or move aliases at the same moment are applied one after the other.
"""

import hashlib
import logging
import os
import random
import tempfile
import time
from dataclasses import fields as dataclass_fields
from importlib import resources
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from captioning import inference, selectors
from captioning.models import (
    CaptionJob,
    ModelActivation,
    ModelAlias,
    ModelVersion,
    Rollout,
    alias_name_validator,
    model_version_name_validator,
)

logger = logging.getLogger(__name__)

PRODUCTION_ALIAS = selectors.PRODUCTION_ALIAS
# The alias that the canary share sends traffic to.
CANDIDATE_ALIAS = "candidate"

# Draws the canary share. Tests seed it for a repeatable split.
canary_random = random.Random()


class RegistryError(Exception):
    """A registry change that is not allowed; the message states why and what to do."""


def rollout_get() -> Rollout:
    rollout, _ = Rollout.objects.get_or_create(pk=Rollout.SINGLETON_ID)
    return rollout


def _rollout_lock() -> Rollout:
    """Lock the rollout row for the rest of the transaction, creating it if needed."""
    rollout_get()
    return Rollout.objects.select_for_update().get(pk=Rollout.SINGLETON_ID)


def job_route() -> tuple[ModelVersion | None, str]:
    """Choose the version for an unpinned job: the canary share or the active version.

    Returns (version, route). For the active route the version is None, because the
    worker uses whichever version is active when it runs the job.
    """
    rollout = Rollout.objects.filter(pk=Rollout.SINGLETON_ID).first()
    if rollout is not None and rollout.canary_percent > 0:
        if canary_random.uniform(0, 100) < rollout.canary_percent:
            candidate = (
                ModelAlias.objects.select_related("model_version")
                .filter(name=CANDIDATE_ALIAS, model_version__status=ModelVersion.Status.READY)
                .first()
            )
            if candidate is not None:
                return candidate.model_version, CaptionJob.Route.CANARY
    return None, CaptionJob.Route.ACTIVE


# Registering and validating


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_store(*, source: IO[bytes], name: str) -> tuple[str, str, int]:
    """Copy a checkpoint into settings.MODEL_STORE_ROOT under a name of our own.

    Returns (checkpoint path as stored on the version, sha256, byte size). The file is
    named after its content, so the registry's copy never changes under a version.
    """
    store = Path(settings.MODEL_STORE_ROOT)
    store.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with tempfile.NamedTemporaryFile(dir=store, suffix=".partial", delete=False) as partial:
        try:
            for block in iter(lambda: source.read(1024 * 1024), b""):
                digest.update(block)
                size += len(block)
                partial.write(block)
        except BaseException:
            os.unlink(partial.name)
            raise
    sha256 = digest.hexdigest()
    target = store / f"{name}-{sha256[:16]}.safetensors"
    os.chmod(partial.name, 0o644)
    os.replace(partial.name, target)
    return checkpoint_reference(target), sha256, size


def checkpoint_reference(path: Path) -> str:
    """Return `path` relative to CHECKPOINT_ROOT when it lies inside, else absolute."""
    path = path.resolve()
    try:
        return str(path.relative_to(Path(settings.CHECKPOINT_ROOT).resolve()))
    except ValueError:
        return str(path)


def model_version_register(
    *, source: IO[bytes], name: str, description: str = "", user=None
) -> ModelVersion:
    """Store a checkpoint and create its version, numbered after the name's last one.

    The version starts `validating`; call model_version_validate, or enqueue
    tasks.model_version_validate, to make it ready.
    """
    try:
        model_version_name_validator(name)
    except ValidationError as error:
        raise RegistryError(f"{name!r} is not a valid model name. {' '.join(error.messages)}") from error
    checkpoint, sha256, size = checkpoint_store(source=source, name=name)
    for _attempt in range(5):
        try:
            with transaction.atomic():
                last = ModelVersion.objects.filter(name=name).aggregate(Max("number"))["number__max"]
                version = ModelVersion.objects.create(
                    name=name,
                    number=(last or 0) + 1,
                    description=description,
                    checkpoint=checkpoint,
                    checkpoint_sha256=sha256,
                    checkpoint_bytes=size,
                    status=ModelVersion.Status.VALIDATING,
                    status_message="Waiting for validation.",
                    registered_by=user if user is not None and user.is_authenticated else None,
                )
            break
        except IntegrityError:
            # Another registration of the same name took this number; take the next.
            continue
    else:
        raise RegistryError(f"Could not number a new version of {name!r}; try again.")
    logger.info(
        "Registered model version %s (%s) from %s, %d bytes", version.pk, version.label, checkpoint, size
    )
    return version


def checkpoint_facts(path: Path, *, count_parameters: bool = True) -> dict:
    """Read what the registry shows about a checkpoint: hash, size, architecture, record.

    With `count_parameters`, builds the model from the config to count its parameters,
    without loading weights; validation passes False and counts the model it loads.
    Raises ml.checkpoint.CheckpointError for a file that is not a valid checkpoint and
    RegistryError for a config that lacks settings.
    """
    from ml.checkpoint import read_checkpoint_metadata
    from ml.model import CaptionConfig, CaptionModel

    metadata = read_checkpoint_metadata(path)
    config = metadata["config"]
    missing = sorted({field.name for field in dataclass_fields(CaptionConfig)} - set(config))
    if missing:
        raise RegistryError(
            f"The checkpoint's config lacks {', '.join(missing)}; it was not written by "
            "this version of ml.train. Export it again with ml.checkpoint.save_checkpoint."
        )
    record = metadata["record"]
    facts = {
        "checkpoint_sha256": file_sha256(path),
        "checkpoint_bytes": path.stat().st_size,
        "config": config,
        "training": {key: value for key, value in record.items() if key != "scores"},
        "record_scores": record.get("scores") or {},
        "encoder": config["backbone"],
        "decoder": config["decoder"],
        "vocabulary_size": metadata["vocab_size"],
    }
    if count_parameters:
        model = CaptionModel(CaptionConfig.from_dict(config))
        facts["parameter_count"] = sum(parameter.numel() for parameter in model.parameters())
    return facts


def model_version_validate_later(*, model_version: ModelVersion) -> None:
    """Enqueue validation on a worker, which has the device the model will run on."""
    from captioning.tasks import model_version_validate

    transaction.on_commit(lambda: model_version_validate.delay(model_version.pk))


def smoke_image_path() -> Path:
    """The known photo that every version captions before it is accepted."""
    if settings.MODEL_SMOKE_IMAGE:
        return Path(settings.MODEL_SMOKE_IMAGE)
    # scikit-image's astronaut: a NASA portrait, in the public domain.
    return Path(str(resources.files("skimage") / "data" / "astronaut.png"))


def _validation_progress(version: ModelVersion, message: str) -> None:
    ModelVersion.objects.filter(pk=version.pk).update(status_message=message)
    logger.info("Validating model version %s: %s", version.pk, message)


def model_version_validate(*, model_version: ModelVersion) -> ModelVersion:
    """Check a validating version's checkpoint and mark it ready or failed.

    The checks, in order: the file is the one registered, it is a safetensors
    checkpoint (pickles are refused unopened, since loading one can run code), its
    config names every setting, the model loads, and it captions the smoke photo.
    """
    from PIL import Image

    from ml.captioner import Captioner
    from ml.checkpoint import CheckpointError

    version = model_version
    if version.status != ModelVersion.Status.VALIDATING:
        raise RegistryError(f"Model version {version.label} is {version.status}, not validating.")
    started = time.perf_counter()
    path = inference.checkpoint_path(version.checkpoint)
    try:
        _validation_progress(version, "Checking the file and its config.")
        if not path.is_file():
            raise RegistryError(f"The checkpoint file {path} is missing.")
        facts = checkpoint_facts(path, count_parameters=False)
        if version.checkpoint_sha256 and facts["checkpoint_sha256"] != version.checkpoint_sha256:
            raise RegistryError(
                f"The checkpoint file {path} changed after it was registered: its sha256 "
                f"is {facts['checkpoint_sha256'][:12]}…, registered {version.checkpoint_sha256[:12]}…."
            )

        _validation_progress(version, "Loading the model.")
        captioner = Captioner.from_checkpoint(path, device=inference.caption_device())
        facts["parameter_count"] = sum(parameter.numel() for parameter in captioner.model.parameters())

        _validation_progress(version, "Captioning the smoke test photo.")
        with Image.open(smoke_image_path()) as image:
            photo = image.convert("RGB")
        [[best, *_]] = captioner.caption([photo], num_captions=1)
        if not best.text.strip():
            raise RegistryError("The model wrote an empty caption for the smoke test photo.")
    except (CheckpointError, RegistryError) as error:
        return _validation_failed(version, str(error))
    except Exception as error:
        logger.exception("Validating model version %s raised an unexpected error", version.pk)
        return _validation_failed(
            version, f"The model could not be loaded or run ({type(error).__name__}: {error})."
        )

    record_scores = facts.pop("record_scores")
    for field, value in facts.items():
        setattr(version, field, value)
    # Scores from evaluations run here win over those the training run recorded.
    version.scores = {**record_scores, **version.scores}
    version.smoke_caption = best.text
    version.status = ModelVersion.Status.READY
    version.status_message = f"Validated in {time.perf_counter() - started:.1f} s."
    version.save()
    logger.info("Model version %s (%s) is ready", version.pk, version.label)
    return version


def _validation_failed(version: ModelVersion, reason: str) -> ModelVersion:
    version.status = ModelVersion.Status.FAILED
    version.status_message = reason
    version.save(update_fields=["status", "status_message"])
    logger.warning("Model version %s failed validation: %s", version.pk, reason)
    return version


# Activation and rollback


def _require_ready(version: ModelVersion, doing: str) -> None:
    if version.status != ModelVersion.Status.READY:
        detail = f": {version.status_message}" if version.status == ModelVersion.Status.FAILED else ""
        raise RegistryError(
            f"Model version {version.label} is {version.get_status_display().lower()}{detail}; "
            f"only a ready version can be {doing}."
        )


def _activate_locked(version: ModelVersion, *, user, reason: str) -> ModelActivation:
    previous = ModelVersion.objects.filter(is_active=True).first()
    # Deactivate first: the database allows at most one active row at any moment.
    ModelVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
    ModelVersion.objects.filter(pk=version.pk).update(is_active=True)
    version.is_active = True
    return ModelActivation.objects.create(
        model_version=version,
        previous=previous,
        reason=reason,
        activated_by=user if user is not None and user.is_authenticated else None,
    )


def model_version_activate(*, model_version: ModelVersion, user=None) -> ModelVersion:
    """Make a ready version the active one; workers use it for their next unpinned job.

    Activating the candidate removes the "candidate" alias and sets the canary share
    to 0, since the canary has ended.
    """
    with transaction.atomic():
        _rollout_lock()
        version = ModelVersion.objects.get(pk=model_version.pk)
        _require_ready(version, "activated")
        if version.is_active:
            return version
        activation = _activate_locked(version, user=user, reason=ModelActivation.Reason.ACTIVATE)
        # Promoting the candidate ends its canary: all unpinned traffic is now its own.
        promoted_candidate = ModelAlias.objects.filter(name=CANDIDATE_ALIAS, model_version=version).delete()[0]
        if promoted_candidate:
            Rollout.objects.filter(pk=Rollout.SINGLETON_ID).update(canary_percent=0)
            logger.info("Model version %s was the candidate; removed the alias and the canary share", version.pk)
    logger.info(
        "Activated model version %s (%s), replacing %s",
        version.pk,
        version.label,
        activation.previous_id,
    )
    return version


def model_version_rollback(*, user=None) -> ModelVersion:
    """Re-activate the version that was active before the newest activation.

    Rolling back twice walks further back through the activations, like an undo.
    Versions retired or failed since are skipped (selectors.model_version_rollback_plan).
    """
    with transaction.atomic():
        _rollout_lock()
        target, undone = selectors.model_version_rollback_plan()
        if target is None:
            raise RegistryError(
                "There is no earlier active version to roll back to: every version that an "
                "activation replaced is retired or failed, or none was ever replaced."
            )
        now = timezone.now()
        ModelActivation.objects.filter(pk__in=[activation.pk for activation in undone]).update(
            rolled_back_at=now
        )
        replaced = selectors.model_version_get_active()
        _activate_locked(target, user=user, reason=ModelActivation.Reason.ROLLBACK)
    logger.info(
        "Rolled back from model version %s to %s (%s), undoing %d activations",
        replaced.pk if replaced else None,
        target.pk,
        target.label,
        len(undone),
    )
    return target


# Aliases, retirement and the canary share


def alias_set(*, name: str, model_version: ModelVersion, user=None) -> ModelAlias:
    """Point an alias at a ready version, moving it from wherever it pointed."""
    if name == PRODUCTION_ALIAS:
        raise RegistryError(
            "'production' always names the active version; activate the version instead."
        )
    try:
        alias_name_validator(name)
    except ValidationError as error:
        raise RegistryError(f"{name!r} is not a valid alias. {' '.join(error.messages)}") from error
    with transaction.atomic():
        _rollout_lock()
        version = ModelVersion.objects.get(pk=model_version.pk)
        _require_ready(version, "given an alias")
        alias, _ = ModelAlias.objects.update_or_create(
            name=name,
            defaults={
                "model_version": version,
                "updated_by": user if user is not None and user.is_authenticated else None,
            },
        )
    logger.info("Alias %s now names model version %s (%s)", name, version.pk, version.label)
    return alias


def alias_remove(*, name: str) -> None:
    deleted, _ = ModelAlias.objects.filter(name=name).delete()
    if deleted:
        logger.info("Removed alias %s", name)


def model_version_retire(*, model_version: ModelVersion) -> ModelVersion:
    """Take a version out of service: it keeps its jobs but can no longer be chosen."""
    with transaction.atomic():
        _rollout_lock()
        version = ModelVersion.objects.get(pk=model_version.pk)
        if version.is_active:
            raise RegistryError(
                f"Model version {version.label} is active; activate another version first."
            )
        ModelAlias.objects.filter(model_version=version).delete()
        version.status = ModelVersion.Status.RETIRED
        version.save(update_fields=["status"])
    logger.info("Retired model version %s (%s)", version.pk, version.label)
    return version


def canary_set(*, percent: int, user=None) -> Rollout:
    """Send `percent` of unpinned jobs to the version named by the candidate alias."""
    if not 0 <= percent <= 100:
        raise RegistryError(f"The canary share must be between 0 and 100 %, not {percent}.")
    with transaction.atomic():
        rollout = _rollout_lock()
        if percent > 0 and not ModelAlias.objects.filter(name=CANDIDATE_ALIAS).exists():
            raise RegistryError(
                "No version has the 'candidate' alias; set it before sending it traffic."
            )
        rollout.canary_percent = percent
        rollout.updated_by = user if user is not None and user.is_authenticated else None
        rollout.save()
    logger.info("Canary share set to %d %%", percent)
    return rollout
