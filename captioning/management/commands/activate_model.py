"""Activate a model version, or roll back to the one active before."""

from django.core.management.base import BaseCommand, CommandError

from captioning import registry, selectors
from captioning.models import ModelVersion


class Command(BaseCommand):
    help = (
        "Make a ready model version the active one, named by id, alias, NAME:NUMBER or "
        "NAME (its newest ready version); or, with --rollback, re-activate the version "
        "that was active before the last activation. Workers follow without a restart."
    )

    def add_arguments(self, parser):
        parser.add_argument("version", nargs="?", help="Id, alias, NAME:NUMBER or NAME.")
        parser.add_argument(
            "--rollback",
            action="store_true",
            help="Re-activate the previous active version; repeat to go further back.",
        )

    def handle(self, *args, version: str | None, rollback: bool, **options):
        if rollback == (version is not None):
            raise CommandError("Name one version to activate, or pass --rollback alone.")
        try:
            if rollback:
                target = registry.model_version_rollback()
                self.stdout.write(f"Rolled back: {target.label} (id {target.pk}) is active again.")
                return
            target = selectors.model_version_resolve(version)
            if target is None:
                raise CommandError(self.no_match_message(version))
            registry.model_version_activate(model_version=target)
        except registry.RegistryError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"{target.label} (id {target.pk}) is now the active version.")

    @staticmethod
    def no_match_message(reference: str) -> str:
        """Explain a reference that names no version, listing a name's versions if it has any."""
        versions = ModelVersion.objects.filter(name=reference).order_by("number")
        if not versions:
            return f"No model version matches {reference!r}."
        listed = ", ".join(f"{version.label} ({version.status})" for version in versions)
        return (
            f"{reference!r} has no ready version to activate: {listed}. "
            "Name one with NAME:NUMBER, or register a checkpoint that passes validation."
        )
