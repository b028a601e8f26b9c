"""The admin pages for model versions, evaluations and caption jobs."""

from pathlib import Path

import pytest
import torch
from django.core.files.uploadedfile import SimpleUploadedFile

from captioning import registry, selectors
from captioning.models import CaptionJob, Evaluation, ModelAlias, ModelVersion
from captioning.services import job_create

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTER_PATH = REPO_ROOT / "checkpoints" / "starter.safetensors"
VERSIONS_URL = "/admin/captioning/modelversion/"


@pytest.fixture
def job(db, bad_inputs_dir):
    with open(bad_inputs_dir / "grayscale.jpg", "rb") as file:
        return job_create(upload=file, original_filename="grayscale.jpg")


@pytest.mark.django_db
class TestAdmin:
    def test_changelists_load(self, admin_client, job, starter_model_version):
        assert admin_client.get("/admin/captioning/captionjob/").status_code == 200
        assert admin_client.get("/admin/captioning/modelversion/").status_code == 200
        assert admin_client.get("/admin/captioning/evaluation/").status_code == 200

    def test_job_results_are_read_only(self, admin_client, job):
        """The change page shows the job but offers no input for what the worker wrote."""
        response = admin_client.get(f"/admin/captioning/captionjob/{job.id}/change/")
        content = response.content.decode()
        assert response.status_code == 200
        assert 'name="caption"' not in content
        assert 'name="sha256"' not in content
        assert 'name="status"' not in content

    def test_jobs_cannot_be_added_by_hand(self, admin_client):
        assert admin_client.get("/admin/captioning/captionjob/add/").status_code == 403

    def test_job_list_filters_by_status(self, admin_client, job):
        CaptionJob.objects.filter(id=job.id).update(status="failed")
        response = admin_client.get("/admin/captioning/captionjob/?status__exact=failed")
        assert str(job.id) in response.content.decode()

    def test_active_version_cannot_be_deleted(self, admin_client, starter_model_version):
        """Neither the delete page nor the bulk action removes the active version."""
        assert starter_model_version.is_active
        page = admin_client.post(
            f"/admin/captioning/modelversion/{starter_model_version.pk}/delete/", {"post": "yes"}
        )
        action = admin_client.post(
            "/admin/captioning/modelversion/",
            {"action": "delete_selected", "_selected_action": [starter_model_version.pk],
             "post": "yes"},
        )
        assert page.status_code == 403
        # The bulk action stops at the page that lists the activation history protecting it.
        assert action.status_code in (200, 403)
        assert "Cannot delete" in action.content.decode() or action.status_code == 403
        assert ModelVersion.objects.filter(pk=starter_model_version.pk, is_active=True).exists()

    def test_inactive_version_can_be_deleted(self, admin_client, starter_model_version):
        other = ModelVersion.objects.create(name="old", checkpoint=starter_model_version.checkpoint, status="ready")
        response = admin_client.post(f"/admin/captioning/modelversion/{other.pk}/delete/",
                                     {"post": "yes"})
        assert response.status_code == 302
        assert not ModelVersion.objects.filter(pk=other.pk).exists()


def ready_version(name: str = "flickr") -> ModelVersion:
    with open(STARTER_PATH, "rb") as source:
        version = registry.model_version_register(source=source, name=name)
    return registry.model_version_validate(model_version=version)


def checkpoint_upload(path: Path = STARTER_PATH, name: str = "model.safetensors") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, path.read_bytes(), content_type="application/octet-stream")


@pytest.mark.django_db
class TestRegistryPages:
    def test_upload_registers_and_queues_validation(
        self, admin_client, starter_model_version, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks() as callbacks:
            response = admin_client.post(
                f"{VERSIONS_URL}add/",
                {"name": "flickr", "description": "More epochs", "checkpoint_file": checkpoint_upload()},
            )

        version = ModelVersion.objects.get(name="flickr")
        assert response.status_code == 302
        assert response["Location"] == f"{VERSIONS_URL}{version.pk}/change/"
        assert version.status == ModelVersion.Status.VALIDATING
        assert version.description == "More epochs"
        assert len(callbacks) == 1

    def test_validating_page_refreshes(self, admin_client, starter_model_version):
        with open(STARTER_PATH, "rb") as source:
            version = registry.model_version_register(source=source, name="flickr")

        content = admin_client.get(f"{VERSIONS_URL}{version.pk}/change/").content.decode()

        assert 'http-equiv="refresh"' in content
        assert "Validating:" in content

    def test_oversized_upload_names_limit(self, admin_client, settings, starter_model_version):
        settings.MAX_CHECKPOINT_BYTES = 1024

        response = admin_client.post(
            f"{VERSIONS_URL}add/", {"name": "big", "checkpoint_file": checkpoint_upload()}
        )

        assert response.status_code == 200
        assert "checkpoints may be at most 1.0\xa0KB" in response.content.decode()
        assert not ModelVersion.objects.filter(name="big").exists()

    def test_failed_version_shows_reason_without_activate(self, admin_client, starter_model_version, tmp_path):
        path = tmp_path / "model.pt"
        torch.save({"weight": torch.zeros(2)}, path)
        with open(path, "rb") as source:
            version = registry.model_version_register(source=source, name="pickled")
        registry.model_version_validate(model_version=version)

        content = admin_client.get(f"{VERSIONS_URL}{version.pk}/change/").content.decode()

        assert "Validation failed" in content
        assert "refused: this is a pickle" in content
        assert f"{version.pk}/activate/" not in content

    def test_activate_confirms_then_switches(self, admin_client, starter_model_version):
        version = ready_version()
        url = f"{VERSIONS_URL}{version.pk}/activate/"

        page = admin_client.get(url).content.decode()
        response = admin_client.post(url)

        assert "instead of starter:1" in page
        assert response.status_code == 302
        assert selectors.model_version_get_active() == version

    def test_rollback_restores_previous(self, admin_client, starter_model_version):
        version = ready_version()
        registry.model_version_activate(model_version=version)

        listing = admin_client.get(VERSIONS_URL).content.decode()
        page = admin_client.get(f"{VERSIONS_URL}rollback/").content.decode()
        response = admin_client.post(f"{VERSIONS_URL}rollback/")

        assert "Roll back to starter:1" in listing
        assert "replacing flickr:1" in page
        assert response.status_code == 302
        assert selectors.model_version_get_active() == starter_model_version

    def test_rollback_without_history_is_a_message(self, admin_client, starter_model_version):
        response = admin_client.get(f"{VERSIONS_URL}rollback/", follow=True)
        assert "no earlier active version" in response.content.decode()

    def test_alias_set_and_canary_share(self, admin_client, starter_model_version):
        version = ready_version()

        alias = admin_client.post(f"{VERSIONS_URL}{version.pk}/alias/", {"alias": "candidate"})
        canary = admin_client.post(f"{VERSIONS_URL}rollout/", {"canary_percent": "10"})
        listing = admin_client.get(VERSIONS_URL).content.decode()

        assert alias.status_code == 302
        assert canary.status_code == 302
        assert ModelAlias.objects.get(name="candidate").model_version == version
        assert registry.rollout_get().canary_percent == 10
        assert "10 % of unpinned jobs" in listing

    def test_canary_without_candidate_is_a_form_error(self, admin_client, starter_model_version):
        response = admin_client.post(f"{VERSIONS_URL}rollout/", {"canary_percent": "10"})

        assert response.status_code == 200
        assert "set it before sending it traffic" in response.content.decode()
        assert registry.rollout_get().canary_percent == 0

    def test_canary_range_is_checked(self, admin_client, starter_model_version):
        response = admin_client.post(f"{VERSIONS_URL}rollout/", {"canary_percent": "150"})
        assert "less than or equal to 100" in response.content.decode()

    def test_production_alias_is_refused(self, admin_client, starter_model_version):
        version = ready_version()
        response = admin_client.post(
            f"{VERSIONS_URL}{version.pk}/alias/", {"alias": "production"}, follow=True
        )
        assert "always names the active version" in response.content.decode()
        assert not ModelAlias.objects.exists()

    def test_retire_page(self, admin_client, starter_model_version):
        version = ready_version()
        admin_client.post(f"{VERSIONS_URL}{version.pk}/retire/")
        version.refresh_from_db()
        assert version.status == ModelVersion.Status.RETIRED

    def test_evaluate_checks_dataset_path(self, admin_client, settings, starter_model_version, dataset_dir):
        settings.DATASET_ROOT = dataset_dir
        url = f"{VERSIONS_URL}{starter_model_version.pk}/evaluate/"
        form = {
            "dataset_name": "flickr8k-test",
            "format": "captions-csv",
            "annotations": "flickr8k-900/captions.csv",
            "images_dir": "flickr8k-900/images",
            "limit": "10",
            "select_every": "10",
            "select_offset": "0",
        }

        outside = admin_client.post(url, {**form, "annotations": "../../etc/passwd"})
        queued = admin_client.post(url, form)

        assert "outside the dataset folder" in outside.content.decode()
        assert queued.status_code == 302
        evaluation = Evaluation.objects.get()
        assert evaluation.status == Evaluation.Status.QUEUED
        assert evaluation.limit == 10

    def test_registry_pages_need_staff(self, client, django_user_model, starter_model_version):
        user = django_user_model.objects.create_user("viewer", password="pw-12345-long")
        client.force_login(user)

        for url in [f"{VERSIONS_URL}rollback/", f"{VERSIONS_URL}rollout/",
                    f"{VERSIONS_URL}{starter_model_version.pk}/activate/"]:
            response = client.post(url)
            assert response.status_code == 302
            assert "/admin/login/" in response["Location"]
        assert selectors.model_version_get_active() == starter_model_version
