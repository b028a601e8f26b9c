"""Evaluations: scoring model versions on datasets under DATASET_ROOT.

They run in the test process with the real starter checkpoint on the CPU, on a few
images each, so that each test takes seconds.
"""

import shutil

import pytest

from captioning import evaluations, tasks
from captioning.models import Evaluation, ModelVersion

SCORE_KEYS = {"bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider", "images"}


@pytest.fixture
def dataset_root(settings, dataset_dir):
    settings.DATASET_ROOT = dataset_dir
    return dataset_dir


@pytest.fixture
def own_dataset_root(settings, tmp_path, dataset_dir):
    """A DATASET_ROOT with one good photo, for datasets that the tests write."""
    root = tmp_path / "datasets"
    (root / "images").mkdir(parents=True)
    shutil.copy(dataset_dir / "flickr8k-900/images/1001773457_577c3a7d70.jpg", root / "images/good.jpg")
    settings.DATASET_ROOT = root
    return root


def coco_evaluation(model_version, **options) -> Evaluation:
    return evaluations.evaluation_create(
        model_version=model_version,
        dataset_name=options.pop("dataset_name", "coco-mini"),
        format="coco-json",
        annotations="coco-mini/captions_train2017.json",
        images_dir="coco-mini/train2017",
        **options,
    )


def csv_evaluation(model_version, root, rows) -> Evaluation:
    (root / "captions.csv").write_text(
        "image,caption\n" + "".join(f"{image},{caption}\n" for image, caption in rows)
    )
    return evaluations.evaluation_create(
        model_version=model_version,
        dataset_name="own",
        format="captions-csv",
        annotations="captions.csv",
        images_dir="images",
    )


# Running


@pytest.mark.django_db
class TestEvaluationRun:
    def test_scores_are_stored_on_evaluation_and_version(self, dataset_root, starter_model_version):
        evaluation = coco_evaluation(starter_model_version, limit=3)
        progress = []

        evaluations.evaluation_run(
            evaluation_id=evaluation.pk, progress=lambda done, total: progress.append((done, total))
        )

        evaluation.refresh_from_db()
        assert evaluation.status == "succeeded", evaluation.error_message
        assert set(evaluation.scores) == SCORE_KEYS
        assert evaluation.scores["images"] == 3
        assert 0 < evaluation.scores["cider"] < 10
        assert evaluation.images_done == evaluation.images_total == 3
        assert progress == [(3, 3)]
        assert evaluation.started_at <= evaluation.finished_at
        starter_model_version.refresh_from_db()
        assert starter_model_version.scores["coco-mini"] == evaluation.scores

    def test_samples_pair_captions_with_references(self, dataset_root, starter_model_version):
        evaluation = coco_evaluation(starter_model_version, limit=2)

        evaluations.evaluation_run(evaluation_id=evaluation.pk)

        evaluation.refresh_from_db()
        names = sorted(path.name for path in (dataset_root / "coco-mini/train2017").iterdir())
        assert [sample["image"] for sample in evaluation.samples] == names[:2]
        for sample in evaluation.samples:
            assert sample["caption"].strip()
            assert len(sample["references"]) == 5

    def test_selection_scores_the_held_out_split(self, dataset_root, starter_model_version):
        """select_every 10 at offset 0 scores images 0, 10, 20... in name order."""
        names = sorted(path.name for path in (dataset_root / "flickr8k-900/images").iterdir())
        evaluation = evaluations.evaluation_create(
            model_version=starter_model_version,
            dataset_name="flickr8k-test",
            format="captions-csv",
            annotations="flickr8k-900/captions.csv",
            images_dir="flickr8k-900/images",
            select_every=10,
            select_offset=0,
            limit=2,
        )

        evaluations.evaluation_run(evaluation_id=evaluation.pk)

        evaluation.refresh_from_db()
        assert evaluation.status == "succeeded", evaluation.error_message
        assert [sample["image"] for sample in evaluation.samples] == [names[0], names[10]]

    def test_scores_of_other_datasets_are_kept(self, dataset_root, starter_model_version):
        starter_model_version.scores = {"validation": {"cider": 0.45}}
        starter_model_version.save(update_fields=["scores"])
        evaluation = coco_evaluation(starter_model_version, limit=1)

        evaluations.evaluation_run(evaluation_id=evaluation.pk)

        starter_model_version.refresh_from_db()
        assert set(starter_model_version.scores) == {"validation", "coco-mini"}
        assert starter_model_version.scores["validation"] == {"cider": 0.45}

    def test_missing_image_fails_the_evaluation(self, own_dataset_root, starter_model_version):
        evaluation = csv_evaluation(
            starter_model_version, own_dataset_root, [("good.jpg", "a dog"), ("gone.jpg", "a cat")]
        )

        evaluations.evaluation_run(evaluation_id=evaluation.pk)

        evaluation.refresh_from_db()
        assert evaluation.status == "failed"
        assert "gone.jpg" in evaluation.error_message
        assert evaluation.finished_at is not None
        starter_model_version.refresh_from_db()
        assert "own" not in starter_model_version.scores

    def test_undecodable_image_fails_the_evaluation(
        self, own_dataset_root, bad_inputs_dir, starter_model_version
    ):
        shutil.copy(bad_inputs_dir / "empty.png", own_dataset_root / "images/empty.png")
        evaluation = csv_evaluation(
            starter_model_version, own_dataset_root, [("good.jpg", "a dog"), ("empty.png", "a cat")]
        )

        evaluations.evaluation_run(evaluation_id=evaluation.pk)

        evaluation.refresh_from_db()
        assert evaluation.status == "failed"
        assert "empty.png" in evaluation.error_message

    def test_unloadable_model_version_fails_the_evaluation(self, dataset_root, db):
        version = ModelVersion.objects.create(
            name="gone", checkpoint="checkpoints/does-not-exist.safetensors", status="ready"
        )
        evaluation = coco_evaluation(version, limit=1)

        evaluations.evaluation_run(evaluation_id=evaluation.pk)

        evaluation.refresh_from_db()
        assert evaluation.status == "failed"
        assert "gone:1 could not be loaded" in evaluation.error_message

    def test_finished_evaluation_is_left_unchanged(self, dataset_root, starter_model_version):
        evaluation = coco_evaluation(starter_model_version, limit=1)
        Evaluation.objects.filter(pk=evaluation.pk).update(status="failed", error_message="earlier")

        result = evaluations.evaluation_run(evaluation_id=evaluation.pk)

        assert result.status == "failed"
        assert result.error_message == "earlier"
        assert result.images_total is None

    def test_redelivered_running_evaluation_fails(self, dataset_root, starter_model_version):
        evaluation = coco_evaluation(starter_model_version, limit=1)
        Evaluation.objects.filter(pk=evaluation.pk).update(status="running")

        result = evaluations.evaluation_run(evaluation_id=evaluation.pk, redelivered=True)

        assert result.status == "failed"
        assert "stopped before it finished" in result.error_message

    def test_running_evaluation_is_left_to_its_worker(self, dataset_root, starter_model_version):
        evaluation = coco_evaluation(starter_model_version, limit=1)
        Evaluation.objects.filter(pk=evaluation.pk).update(status="running")

        result = evaluations.evaluation_run(evaluation_id=evaluation.pk)

        assert result.status == "running"
        assert result.images_total is None

    def test_unknown_evaluation_is_skipped(self):
        assert evaluations.evaluation_run(evaluation_id=987654) is None


@pytest.mark.django_db
def test_task_runs_the_evaluation(dataset_root, starter_model_version):
    evaluation = coco_evaluation(starter_model_version, limit=1)

    tasks.evaluation_run.apply(args=[evaluation.pk])

    evaluation.refresh_from_db()
    assert evaluation.status == "succeeded", evaluation.error_message


# Creating


@pytest.mark.django_db
class TestEvaluationCreate:
    @pytest.mark.parametrize("annotations", ["../captions.json", "/etc/passwd", "coco-mini/../../x.json"])
    def test_path_outside_dataset_root_is_rejected(self, dataset_root, starter_model_version, annotations):
        with pytest.raises(evaluations.EvaluationError, match="outside the dataset folder"):
            evaluations.evaluation_create(
                model_version=starter_model_version,
                dataset_name="escape",
                format="coco-json",
                annotations=annotations,
                images_dir="coco-mini/train2017",
            )
        assert not Evaluation.objects.exists()

    def test_symbolic_link_out_of_dataset_root_is_rejected(
        self, own_dataset_root, tmp_path, starter_model_version
    ):
        outside = tmp_path / "outside.csv"
        outside.write_text("image,caption\ngood.jpg,a dog\n")
        (own_dataset_root / "link.csv").symlink_to(outside)

        with pytest.raises(evaluations.EvaluationError, match="outside the dataset folder"):
            evaluations.evaluation_create(
                model_version=starter_model_version,
                dataset_name="link",
                format="captions-csv",
                annotations="link.csv",
                images_dir="images",
            )

    def test_missing_annotations_file_is_rejected(self, dataset_root, starter_model_version):
        with pytest.raises(evaluations.EvaluationError, match="does not exist"):
            evaluations.evaluation_create(
                model_version=starter_model_version,
                dataset_name="missing",
                format="coco-json",
                annotations="coco-mini/nothing.json",
                images_dir="coco-mini/train2017",
            )

    @pytest.mark.parametrize("status", ["validating", "failed"])
    def test_unvalidated_version_is_rejected(self, dataset_root, starter_model_version, status):
        version = ModelVersion.objects.create(name="new", checkpoint="x.safetensors", status=status)

        with pytest.raises(evaluations.EvaluationError, match="only a validated version"):
            coco_evaluation(version)

    @pytest.mark.parametrize(
        "options, message",
        [
            ({"dataset_name": "no spaces"}, "not a valid dataset name"),
            ({"dataset_name": ""}, "not a valid dataset name"),
            ({"limit": 0}, "at least 1 image"),
            ({"select_every": 1}, "not a split"),
            ({"select_every": 10, "select_offset": 10}, "not a split"),
            ({"select_offset": 3}, "needs select_every"),
        ],
    )
    def test_invalid_option_is_rejected(self, dataset_root, starter_model_version, options, message):
        with pytest.raises(evaluations.EvaluationError, match=message):
            coco_evaluation(starter_model_version, **options)

    def test_unknown_format_is_rejected(self, dataset_root, starter_model_version):
        with pytest.raises(evaluations.EvaluationError, match="coco-json, captions-csv"):
            evaluations.evaluation_create(
                model_version=starter_model_version,
                dataset_name="x",
                format="tsv",
                annotations="coco-mini/captions_train2017.json",
                images_dir="coco-mini/train2017",
            )
