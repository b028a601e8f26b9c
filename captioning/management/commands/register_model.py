"""Register a checkpoint as a new model version, validate it, and optionally activate it."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from captioning import registry
from captioning.models import ModelVersion


class Command(BaseCommand):
    help = (
        "Copy a caption model checkpoint into the registry as the next version of NAME, "
        "validate it (safe loading, complete config, a smoke caption), and optionally "
        "activate it. Exits with status 1 when validation fails."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="The .safetensors checkpoint written by ml.train.")
        parser.add_argument(
            "--name",
            help="Model name; versions of one name are numbered 1, 2, 3. "
            "Default: the file name without its extension.",
        )
        parser.add_argument("--description", default="", help="What changed in this version.")
        parser.add_argument(
            "--activate",
            action="store_true",
            help="Make the version the active one once it is validated.",
        )

    def handle(self, *args, path: Path, name: str | None, description: str, activate: bool, **options):
        if not path.is_file():
            raise CommandError(f"{path}: no such file.")
        try:
            with open(path, "rb") as source:
                version = registry.model_version_register(
                    source=source, name=name or path.stem, description=description
                )
        except registry.RegistryError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"Registered {version.label} (id {version.pk}); validating…")
        version = registry.model_version_validate(model_version=version)
        if version.status != ModelVersion.Status.READY:
            raise CommandError(f"{version.label} failed validation: {version.status_message}")
        self.stdout.write(
            f"{version.label} is ready: {version.encoder} encoder, {version.decoder} decoder, "
            f"{version.parameter_count:,} parameters, {version.vocabulary_size:,} words. "
            f"Smoke caption: {version.smoke_caption!r}"
        )
        if activate:
            try:
                registry.model_version_activate(model_version=version)
            except registry.RegistryError as error:
                raise CommandError(str(error)) from error
            self.stdout.write(f"{version.label} is now the active version.")
