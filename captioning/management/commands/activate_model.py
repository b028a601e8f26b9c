"""Activate a model version, or roll back to the one active before."""

from django.core.management.base import BaseCommand, CommandError

from captioning import registry, selectors


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
                raise CommandError(f"No model version matches {version!r}.")
            registry.model_version_activate(model_version=target)
        except registry.RegistryError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"{target.label} (id {target.pk}) is now the active version.")
