"""manage.py evaluate_model: scoring a model version from the command line."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from captioning.models import Evaluation

COCO_ARGS = ["--coco-json", "coco-mini/captions_train2017.json", "--images", "coco-mini/train2017"]


@pytest.fixture
def dataset_root(settings, dataset_dir):
    settings.DATASET_ROOT = dataset_dir
    return dataset_dir


@pytest.mark.django_db
class EvaluateModelCommandTests:
    def test_last_line_is_the_scores_as_json(self, dataset_root, starter_model_version):
        output = StringIO()

        call_command("evaluate_model", "starter", "coco-sample", *COCO_ARGS, "--limit", "2", stdout=output)

        scores = json.loads(output.getvalue().splitlines()[-1])
        assert scores["images"] == 2
        assert scores["cider"] >= 0
        starter_model_version.refresh_from_db()
        assert starter_model_version.scores["coco-sample"] == scores
        evaluation = Evaluation.objects.get()
        assert evaluation.status == "succeeded"
        assert "captioned 2/2 images" in output.getvalue()

    def test_split_flags_reach_the_evaluation(self, dataset_root, starter_model_version):
        call_command(
            "evaluate_model", "production", "flickr8k-test",
            "--captions-csv", "flickr8k-900/captions.csv", "--images", "flickr8k-900/images",
            "--select-every", "10", "--select-offset", "5", "--limit", "1",
            stdout=StringIO(),
        )

        evaluation = Evaluation.objects.get()
        assert evaluation.format == "captions-csv"
        assert (evaluation.select_every, evaluation.select_offset, evaluation.limit) == (10, 5, 1)
        assert evaluation.images_total == 1

    def test_queue_enqueues_instead_of_running(
        self, dataset_root, starter_model_version, django_capture_on_commit_callbacks
    ):
        output = StringIO()

        with django_capture_on_commit_callbacks() as callbacks:
            call_command("evaluate_model", "starter:1", "coco-mini", *COCO_ARGS, "--queue", stdout=output)

        evaluation = Evaluation.objects.get()
        assert evaluation.status == "queued"
        assert len(callbacks) == 1
        assert f"Queued evaluation {evaluation.pk}" in output.getvalue()

    def test_unknown_version_is_an_error(self, dataset_root, db):
        with pytest.raises(CommandError, match="No model version matches 'nothing'"):
            call_command("evaluate_model", "nothing", "coco-mini", *COCO_ARGS)

    def test_path_outside_dataset_root_is_an_error(self, dataset_root, starter_model_version):
        with pytest.raises(CommandError, match="outside the dataset folder"):
            call_command(
                "evaluate_model", "starter", "escape", "--coco-json", "/etc/passwd", "--images", "coco-mini"
            )
        assert not Evaluation.objects.exists()

    def test_failed_evaluation_is_an_error(self, settings, tmp_path, starter_model_version):
        (tmp_path / "images").mkdir()
        (tmp_path / "captions.csv").write_text("image,caption\nmissing.jpg,a dog\n")
        settings.DATASET_ROOT = tmp_path

        with pytest.raises(CommandError, match="failed: .*missing.jpg"):
            call_command(
                "evaluate_model", "starter", "own", "--captions-csv", "captions.csv", "--images", "images",
                stdout=StringIO(),
            )
        assert Evaluation.objects.get().status == "failed"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "options, expected",
    [
        ([], "coco-mini"),
        (["--limit", "1"], "coco-mini-first1"),
        (["--select-every", "10", "--select-offset", "5", "--limit", "1"], "coco-mini-every10-5-first1"),
    ],
)
def test_default_dataset_name_names_the_selection(dataset_root, starter_model_version, options, expected):
    # With --queue the evaluation is only created, because the test transaction never
    # commits and so never sends it to a worker.
    call_command("evaluate_model", "starter", *COCO_ARGS, *options, "--queue", stdout=StringIO())

    assert Evaluation.objects.get().dataset_name == expected
