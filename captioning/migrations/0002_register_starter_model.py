"""Register the committed starter checkpoint as the active model version."""

import logging

from django.db import migrations

logger = logging.getLogger(__name__)


def register_starter(apps, schema_editor):
    # Imported here so that loading migrations never imports torch or ml.
    from captioning.inference import STARTER_CHECKPOINT, STARTER_NAME, checkpoint_fields
    from ml.checkpoint import CheckpointError

    ModelVersion = apps.get_model("captioning", "ModelVersion")
    if ModelVersion.objects.filter(name=STARTER_NAME).exists():
        return
    try:
        fields = checkpoint_fields(STARTER_CHECKPOINT)
    except CheckpointError as error:
        # A deployment may ship its own checkpoints instead; it registers them with
        # `python manage.py model_version_register`.
        logger.warning("Not registering the starter model version: %s", error)
        return
    is_active = not ModelVersion.objects.filter(is_active=True).exists()
    ModelVersion.objects.create(
        name=STARTER_NAME, checkpoint=STARTER_CHECKPOINT, is_active=is_active, **fields
    )


def unregister_starter(apps, schema_editor):
    from captioning.inference import STARTER_NAME

    ModelVersion = apps.get_model("captioning", "ModelVersion")
    ModelVersion.objects.filter(name=STARTER_NAME, jobs__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("captioning", "0001_initial")]

    operations = [migrations.RunPython(register_starter, unregister_starter)]
