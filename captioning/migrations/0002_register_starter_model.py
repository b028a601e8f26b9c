"""Register the committed starter checkpoint as the active model version."""

import logging

from django.db import migrations

logger = logging.getLogger(__name__)


def register_starter(apps, schema_editor):
    # Imported here so that loading migrations never imports torch or ml.
    from captioning.inference import STARTER_CHECKPOINT, STARTER_NAME, checkpoint_path
    from ml.checkpoint import CheckpointError, read_checkpoint_metadata

    ModelVersion = apps.get_model("captioning", "ModelVersion")
    if ModelVersion.objects.filter(name=STARTER_NAME).exists():
        return
    try:
        metadata = read_checkpoint_metadata(checkpoint_path(STARTER_CHECKPOINT))
    except CheckpointError as error:
        # A deployment may ship its own checkpoints instead; it registers them with
        # `python manage.py register_model`.
        logger.warning("Not registering the starter model version: %s", error)
        return
    is_active = not ModelVersion.objects.filter(is_active=True).exists()
    ModelVersion.objects.create(
        name=STARTER_NAME,
        checkpoint=STARTER_CHECKPOINT,
        is_active=is_active,
        config=metadata["config"],
        scores=metadata["record"].get("scores") or {},
    )


def unregister_starter(apps, schema_editor):
    from captioning.inference import STARTER_NAME

    ModelVersion = apps.get_model("captioning", "ModelVersion")
    ModelVersion.objects.filter(name=STARTER_NAME, jobs__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("captioning", "0001_initial")]

    operations = [migrations.RunPython(register_starter, unregister_starter)]
