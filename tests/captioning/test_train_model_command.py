"""manage.py train_model: training with ml.train and registering the result.

Training runs a tiny decoder for one epoch on coco-mini, so a run takes seconds.
"""

import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from captioning.models import ModelVersion

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny_training_args(dataset_dir, tmp_path) -> list[str]:
    coco = dataset_dir / "coco-mini"
    return [
        "--coco-json", str(coco / "captions_train2017.json"),
        "--coco-images", str(coco / "train2017"),
        "--views", "1", "--epochs", "1", "--batch-size", "32", "--min-count", "2",
        "--d-model", "64", "--layers", "1", "--heads", "2", "--ffn-dim", "128",
        "--warmup-steps", "4", "--device", "cpu",
        "--cache-dir", str(tmp_path / "features"), "--logdir", str(tmp_path / "runs"),
    ]


@pytest.mark.django_db
class TrainModelCommandTests:
    def test_trained_checkpoint_becomes_a_ready_active_version(
        self, starter_model_version, tiny_training_args, tmp_path
    ):
        output = StringIO()
        kept = tmp_path / "kept" / "tiny.safetensors"

        call_command(
            "train_model", "tiny", "--activate", "--output", str(kept),
            train_args=tiny_training_args, stdout=output,
        )

        version = ModelVersion.objects.get(name="tiny")
        assert version.number == 1
        assert version.status == "ready", version.status_message
        assert version.is_active
        assert version.decoder == "transformer"
        assert version.training["epochs"] == 1
        assert version.description.startswith("Trained with ml.train --coco-json ")
        assert kept.is_file()
        assert "tiny:1 is now the active version." in output.getvalue()

    def test_flags_are_required(self, db):
        with pytest.raises(CommandError, match="Give the training flags after '--'"):
            call_command("train_model", "tiny")

    def test_output_among_training_flags_is_an_error(self, db, tiny_training_args):
        with pytest.raises(CommandError, match="pass --output before '--'"):
            call_command("train_model", "tiny", train_args=[*tiny_training_args, "--output", "x.safetensors"])

    def test_failed_training_is_an_error_and_registers_nothing(self, db):
        with pytest.raises(CommandError, match="ml.train exited with status 2"):
            call_command("train_model", "tiny", train_args=["--epochs", "1"], stdout=StringIO())
        assert not ModelVersion.objects.filter(name="tiny").exists()

    def test_stopping_early_registers_nothing(self, db, tiny_training_args):
        with pytest.raises(CommandError, match="finished without writing"):
            call_command(
                "train_model", "tiny", train_args=[*tiny_training_args, "--stop-after", "1", "--epochs", "2"],
                stdout=StringIO(),
            )
        assert not ModelVersion.objects.filter(name="tiny").exists()


def test_flags_after_double_dash_reach_ml_train(tmp_path):
    """On the command line, everything after '--' goes to ml.train unchanged."""
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "manage.py"), "train_model", "tiny", "--", "--epochs", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 1
    assert "give training data" in result.stderr
    assert "ml.train exited with status 2" in result.stderr
