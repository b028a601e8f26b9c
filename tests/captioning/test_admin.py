"""The admin pages for model versions and caption jobs."""

import pytest

from captioning.models import CaptionJob, ModelVersion
from captioning.services import job_create


@pytest.fixture
def job(db, bad_inputs_dir):
    with open(bad_inputs_dir / "grayscale.jpg", "rb") as file:
        return job_create(upload=file, original_filename="grayscale.jpg")


@pytest.mark.django_db
class TestAdmin:
    def test_changelists_load(self, admin_client, job, starter_model_version):
        assert admin_client.get("/admin/captioning/captionjob/").status_code == 200
        assert admin_client.get("/admin/captioning/modelversion/").status_code == 200

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

    def test_invalid_checkpoint_is_a_form_error(self, admin_client, starter_model_version):
        response = admin_client.post(
            "/admin/captioning/modelversion/add/",
            {"name": "typo", "checkpoint": "checkpoints/nope.safetensors"},
        )
        assert response.status_code == 200
        assert "Not a usable checkpoint" in response.content.decode()
        assert not ModelVersion.objects.filter(name="typo").exists()

    def test_added_version_reads_its_checkpoint(self, admin_client, starter_model_version):
        response = admin_client.post(
            "/admin/captioning/modelversion/add/",
            {"name": "copy", "checkpoint": starter_model_version.checkpoint},
        )
        added = ModelVersion.objects.get(name="copy")
        assert response.status_code == 302
        assert added.config == starter_model_version.config
        assert not added.is_active

    def test_activate_action_switches_version(self, admin_client, starter_model_version):
        other = ModelVersion.objects.create(name="other", checkpoint=starter_model_version.checkpoint)
        response = admin_client.post(
            "/admin/captioning/modelversion/",
            {"action": "activate", "_selected_action": [other.pk]},
        )
        assert response.status_code == 302
        assert list(ModelVersion.objects.filter(is_active=True)) == [other]

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
        assert action.status_code == 403
        assert ModelVersion.objects.filter(pk=starter_model_version.pk, is_active=True).exists()

    def test_inactive_version_can_be_deleted(self, admin_client, starter_model_version):
        other = ModelVersion.objects.create(name="old", checkpoint=starter_model_version.checkpoint)
        response = admin_client.post(f"/admin/captioning/modelversion/{other.pk}/delete/",
                                     {"post": "yes"})
        assert response.status_code == 302
        assert not ModelVersion.objects.filter(pk=other.pk).exists()
