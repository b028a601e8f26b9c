"""Train a checkpoint with ml.train and register it as the next version of a model."""

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Run ml.train with the flags after '--', then register the checkpoint it writes as "
        "the next version of NAME and validate it, as register_model does. Example: "
        "manage.py train_model flickr --activate -- --captions-csv FILE --images DIR. "
        "'python -m ml.train --help' lists the training flags. Exits with status 1 when "
        "training or validation fails."
    )
    # call_command passes the training flags as train_args=[...] instead of after "--".
    stealth_options = ("train_args",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.train_args: list[str] = []

    def run_from_argv(self, argv):
        # argparse cannot pass another program's flags through, so split them off first.
        if "--" in argv:
            split = argv.index("--")
            argv, self.train_args = argv[:split], argv[split + 1 :]
        super().run_from_argv(argv)

    def add_arguments(self, parser):
        parser.add_argument("name", help="Model name; the checkpoint becomes its next version.")
        parser.add_argument(
            "--output",
            type=Path,
            help="Keep the checkpoint here, with ml.train's resume state beside it. "
            "Default: a temporary folder, removed once the registry has its own copy.",
        )
        parser.add_argument(
            "--description",
            help="What changed in this version. Default: the training flags.",
        )
        parser.add_argument(
            "--activate",
            action="store_true",
            help="Make the version the active one once it is validated.",
        )

    def handle(self, *args, name: str, output: Path | None, description: str | None, activate: bool, **options):
        train_args = list(options.get("train_args") or self.train_args)
        if not train_args:
            raise CommandError(
                "Give the training flags after '--', such as "
                "'-- --captions-csv FILE --images DIR'; see 'python -m ml.train --help'."
            )
        if any(arg == "--output" or arg.startswith("--output=") for arg in train_args):
            raise CommandError(
                "train_model chooses ml.train's --output; pass --output before '--' instead."
            )
        if description is None:
            description = f"Trained with ml.train {shlex.join(train_args)}"

        with tempfile.TemporaryDirectory(prefix="train-model-") as scratch:
            checkpoint = output or Path(scratch) / f"{name}.safetensors"
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            self._train(train_args, checkpoint)
            if not checkpoint.is_file():
                raise CommandError(
                    f"ml.train finished without writing {checkpoint}; with --stop-after it stops "
                    "early, so pass --output to keep its resume state and continue with --resume."
                )
            call_command(
                "register_model",
                str(checkpoint),
                name=name,
                description=description,
                activate=activate,
                stdout=self.stdout,
                stderr=self.stderr,
            )

    def _train(self, train_args: list[str], checkpoint: Path) -> None:
        """Run ml.train in a child process, its log going straight to this terminal.

        A child process keeps ml.train's global torch and logging settings out of this one.
        """
        command = [sys.executable, "-m", "ml.train", *train_args, "--output", str(checkpoint)]
        environment = dict(os.environ)
        # ml is importable from any working folder, so relative data paths keep their meaning.
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(settings.BASE_DIR), environment.get("PYTHONPATH")])
        )
        self.stdout.write(f"Training: {shlex.join(command[1:])}")
        self.stdout.flush()
        status = subprocess.run(command, env=environment).returncode
        if status != 0:
            raise CommandError(f"ml.train exited with status {status}; its messages are above.")
