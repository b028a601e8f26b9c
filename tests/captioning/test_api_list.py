"""Listing and deleting caption jobs through the API, with Django's test client."""

import datetime

import pytest
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from captioning import renditions
from captioning.models import CaptionJob

LIST_URL = "/api/v1/captions/"


def key_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


@pytest.fixture
def api_client(api_user) -> APIClient:
    return key_client(api_user)


def job_add(user, *, created_at=None, status="queued", model_version=None, name="uploads/x.jpg") -> CaptionJob:
    """Create a job row directly; listing does not read the stored image."""
    job = CaptionJob.objects.create(
        user=user, image=name, byte_size=1, format="JPEG", width=64, height=64,
        sha256="0" * 64, status=status, model_version=model_version,
    )
    if created_at is not None:
        CaptionJob.objects.filter(pk=job.pk).update(created_at=created_at)
    return job


def listed_ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["results"]]


@pytest.mark.django_db
def test_list_shows_own_jobs_newest_first(api_client, api_user):
    start = timezone.now()
    older = job_add(api_user, created_at=start - datetime.timedelta(minutes=5))
    newer = job_add(api_user, created_at=start)
    job_add(get_user_model().objects.create_user(username="other-app"))

    ids = listed_ids(api_client.get(LIST_URL))

    assert ids == [str(newer.pk), str(older.pk)]


@pytest.mark.django_db
def test_staff_list_every_job(api_user):
    job_add(api_user)
    job_add(None)
    staff = get_user_model().objects.create_user(username="operator", is_staff=True)

    assert len(listed_ids(key_client(staff).get(LIST_URL))) == 2


@pytest.mark.django_db
def test_list_pages_by_cursor_without_count(api_client, api_user):
    """Following `next` visits every job once, and no page runs COUNT(*)."""
    start = timezone.now()
    jobs = [job_add(api_user, created_at=start - datetime.timedelta(seconds=i)) for i in range(7)]

    seen = []
    url = f"{LIST_URL}?page_size=3"
    with CaptureQueriesContext(connection) as queries:
        while url:
            response = api_client.get(url)
            seen += listed_ids(response)
            url = response.json()["next"]

    assert seen == [str(job.pk) for job in jobs]
    assert not [query for query in queries if "COUNT(" in query["sql"].upper()]


@pytest.mark.django_db
def test_list_filters_by_status_and_model_version(api_client, api_user, starter_model_version):
    done = job_add(api_user, status="succeeded", model_version=starter_model_version)
    job_add(api_user, status="queued")

    by_status = listed_ids(api_client.get(LIST_URL, {"status": "succeeded"}))
    by_name = listed_ids(api_client.get(LIST_URL, {"model_version": "starter"}))
    by_id = listed_ids(api_client.get(LIST_URL, {"model_version": starter_model_version.pk}))

    assert by_status == [str(done.pk)]
    assert by_name == [str(done.pk)]
    assert by_id == [str(done.pk)]


@pytest.mark.django_db
def test_list_filters_by_creation_time(api_client, api_user):
    start = timezone.now()
    old = job_add(api_user, created_at=start - datetime.timedelta(days=2))
    new = job_add(api_user, created_at=start)
    boundary = (start - datetime.timedelta(days=1)).isoformat()

    after = listed_ids(api_client.get(LIST_URL, {"created_after": boundary}))
    before = listed_ids(api_client.get(LIST_URL, {"created_before": boundary}))

    assert after == [str(new.pk)]
    assert before == [str(old.pk)]


@pytest.mark.django_db
@pytest.mark.parametrize("params", [{"status": "pending"}, {"created_after": "yesterday"}])
def test_list_rejects_invalid_filters(api_client, params):
    response = api_client.get(LIST_URL, params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert list(response.json()["error"]["details"]) == list(params)


@pytest.mark.django_db
def test_anonymous_list_is_401(settings):
    """Anonymous jobs belong to no one, so no caller may list them, even with anonymous uploads on."""
    settings.API_ALLOW_ANONYMOUS = True
    job_add(None)
    response = APIClient().get(LIST_URL)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.django_db
def test_delete_removes_job_image_and_renditions(api_client, bad_inputs_dir, django_capture_on_commit_callbacks):
    with open(bad_inputs_dir / "grayscale.jpg", "rb") as file:
        created = api_client.post(LIST_URL, {"image": file}, format="multipart").json()
    job = CaptionJob.objects.get(id=created["id"])
    rendition = renditions.rendition_name(job_id=job.pk, size="small")
    with open(bad_inputs_dir / "grayscale.jpg", "rb") as file:
        default_storage.save(rendition, file)

    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.delete(created["url"])

    assert response.status_code == 204
    assert not CaptionJob.objects.filter(pk=job.pk).exists()
    assert not default_storage.exists(job.image.name)
    assert not default_storage.exists(rendition)
    assert api_client.get(created["url"]).status_code == 404


@pytest.mark.django_db
def test_delete_of_running_job_is_409(api_client, api_user):
    job = job_add(api_user, status="running")

    response = api_client.delete(f"{LIST_URL}{job.pk}/")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "job_running"
    assert CaptionJob.objects.filter(pk=job.pk).exists()


@pytest.mark.django_db
def test_delete_of_another_users_job_is_404(api_client):
    job = job_add(get_user_model().objects.create_user(username="other-app"))

    response = api_client.delete(f"{LIST_URL}{job.pk}/")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert CaptionJob.objects.filter(pk=job.pk).exists()


@pytest.mark.django_db
def test_non_ascii_digit_model_version_is_a_name(api_client, api_user, starter_model_version):
    """'¹' passes str.isdigit() but is no id, so it filters by name and matches nothing."""
    job_add(api_user, status="succeeded", model_version=starter_model_version)
    assert listed_ids(api_client.get(LIST_URL, {"model_version": "¹"})) == []


@pytest.mark.django_db
def test_bad_cursor_is_400_naming_cursor(api_client):
    response = api_client.get(LIST_URL, {"cursor": "garbage"})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert "cursor" in response.json()["error"]["details"]


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["0", "-1", "abc", "101"])
def test_page_size_out_of_range_is_400(api_client, value):
    response = api_client.get(LIST_URL, {"page_size": value})

    assert response.status_code == 400
    assert "page_size" in response.json()["error"]["details"]


@pytest.mark.django_db
def test_schema_documents_page_controls(client):
    response = client.get("/api/schema/", {"format": "json"})
    operation = response.json()["paths"]["/api/v1/captions/"]["get"]
    names = {parameter["name"] for parameter in operation["parameters"]}

    assert {"cursor", "page_size", "status", "model_version"} <= names
