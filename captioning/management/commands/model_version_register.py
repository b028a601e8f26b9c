"""Register a checkpoint file as a model version, optionally making it the active one."""

from django.core.management.base import BaseCommand, CommandError

from captioning import services
from captioning.models import ModelVersion


class Command(BaseCommand):
    help = "Register a caption model checkpoint as a model version."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Unique name of the model version, such as 'flickr-v2'.")
        parser.add_argument(
            "checkpoint",
            help="Checkpoint file; a relative path is resolved against CHECKPOINT_ROOT.",
        )
        parser.add_argument(
            "--activate",
            action="store_true",
            help="Make this version the active one that new jobs use.",
        )

    def handle(self, *args, name, checkpoint, activate, **options):
        from ml.checkpoint import CheckpointError

        if ModelVersion.objects.filter(name=name).exists():
            raise CommandError(f"A model version named {name!r} exists already; choose another name.")
        try:
            version = services.model_version_create(name=name, checkpoint=checkpoint, activate=activate)
        except CheckpointError as error:
            raise CommandError(f"Cannot register {checkpoint}: {error}") from error
        state = "active" if version.is_active else "inactive"
        self.stdout.write(f"Registered model version {version.name} (id {version.pk}, {state}).")
