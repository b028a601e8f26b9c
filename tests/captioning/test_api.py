"""The REST API under /api/v1/captions/, through Django's test client.

These tests stop at the queue: the job is created and handed to Celery's in-memory
broker. tests/stack follows an upload through Redis and a real worker.
"""

import hashlib
import uuid

import pytest
from django.core.files.storage import default_storage
from rest_framework.test import APIClient

from captioning.models import CaptionJob

CREATE_URL = "/api/v1/captions/"

# The expected behaviour for every file in the shared bad-inputs folder:
# file name -> (status code, error code or None, text in the error message, or the
# stored format, extension, width and height for accepted files).
ACCEPTED = {
    "exif-orientation-6.jpg": ("JPEG", "jpg", 640, 426),
    "cmyk.jpg": ("JPEG", "jpg", 640, 426),
    "gray16.png": ("PNG", "png", 64, 48),
    "palette-transparent.png": ("PNG", "png", 64, 48),
    "rgba-half-transparent.png": ("PNG", "png", 64, 48),
    "grayscale.jpg": ("JPEG", "jpg", 640, 426),
    "animated-two-palettes.gif": ("GIF", "gif", 64, 48),
    "png-named.txt": ("PNG", "png", 64, 48),
}
REJECTED = {
    "truncated.jpg": ("image_corrupt", "truncated or corrupt"),
    "empty.png": ("empty_file", "empty"),
    "one-pixel.png": ("image_too_small", "32x32"),
    "bomb-15000x15000.png": ("too_many_pixels", "40,000,000 pixels"),
    "gif-header-html.gif": ("unsupported_format", "JPEG, PNG, WebP, GIF, BMP or TIFF"),
}


@pytest.fixture
def api_client(api_token) -> APIClient:
    """A client that sends the API key of `api_user`."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token}")
    return client


def upload(api_client, path, **fields):
    with open(path, "rb") as file:
        return api_client.post(CREATE_URL, {"image": file, **fields}, format="multipart")


def stored_uploads() -> set[str]:
    if not default_storage.exists("uploads"):
        return set()
    return set(default_storage.listdir("uploads")[1])


def test_every_bad_input_has_an_expectation(bad_inputs_dir):
    """A file added to the shared folder without a row here fails this test."""
    files = {path.name for path in bad_inputs_dir.iterdir() if path.name != "README.md"}
    assert files == set(ACCEPTED) | set(REJECTED)


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_accepted_input_is_queued(api_client, bad_inputs_dir, django_capture_on_commit_callbacks, name):
    """Each odd but valid image gets 202, a queued job, and a file named by its content."""
    image_format, extension, width, height = ACCEPTED[name]
    path = bad_inputs_dir / name

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = upload(api_client, path)

    assert response.status_code == 202, response.content
    body = response.json()
    job = CaptionJob.objects.get(id=body["id"])
    assert job.status == "queued"
    assert len(callbacks) == 1
    assert response["Location"] == body["url"]
    assert body["url"].endswith(f"/api/v1/captions/{job.id}/")
    assert job.image.name == f"uploads/{job.id}.{extension}"
    assert (job.format, job.width, job.height) == (image_format, width, height)
    assert body["image"]["width"] == width
    assert body["image"]["height"] == height
    assert job.original_filename == name
    assert job.byte_size == path.stat().st_size
    assert job.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    with default_storage.open(job.image.name, "rb") as stored:
        assert stored.read() == path.read_bytes()


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(REJECTED))
def test_rejected_input_gets_400_and_no_job(api_client, bad_inputs_dir, name):
    """Each bad file gets a 400 in the API's error shape; nothing is stored or queued."""
    code, text = REJECTED[name]
    before = stored_uploads()

    response = upload(api_client, bad_inputs_dir / name)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert text in error["message"]
    assert isinstance(error["details"], dict)
    assert CaptionJob.objects.count() == 0
    assert stored_uploads() == before


@pytest.mark.django_db
def test_byte_limit_comes_from_settings(api_client, bad_inputs_dir, settings):
    settings.MAX_UPLOAD_BYTES = 50_000
    response = upload(api_client, bad_inputs_dir / "cmyk.jpg")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "image_too_large"
    assert response.json()["error"]["details"] == {"byte_size": 170536, "max_bytes": 50_000}


@pytest.mark.django_db
def test_missing_image_field_is_a_field_error(api_client):
    response = api_client.post(CREATE_URL, {}, format="multipart")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert "image" in error["details"]


@pytest.mark.django_db
@pytest.mark.parametrize("fields", [{"beam_size": 0}, {"beam_size": 11}, {"max_length": 0}, {"max_length": 500}])
def test_out_of_range_options_are_rejected(api_client, bad_inputs_dir, fields):
    response = upload(api_client, bad_inputs_dir / "grayscale.jpg", **fields)
    assert response.status_code == 400
    assert list(response.json()["error"]["details"]) == list(fields)
    assert CaptionJob.objects.count() == 0


@pytest.mark.django_db
def test_options_are_stored_on_the_job(api_client, bad_inputs_dir):
    response = upload(api_client, bad_inputs_dir / "grayscale.jpg", beam_size=2, max_length=12)
    assert response.status_code == 202
    job = CaptionJob.objects.get(id=response.json()["id"])
    assert (job.beam_size, job.max_length) == (2, 12)


@pytest.mark.django_db
def test_detail_of_a_queued_job(api_client, bad_inputs_dir):
    """A queued job reports its status and image, with no caption or timings yet."""
    created = upload(api_client, bad_inputs_dir / "exif-orientation-6.jpg").json()

    response = api_client.get(created["url"])

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == created["id"]
    assert body["status"] == "queued"
    assert body["caption"] == ""
    assert body["alternatives"] == []
    assert body["model_version"] is None
    assert body["image"]["format"] == "JPEG"
    assert body["image"]["original_filename"] == "exif-orientation-6.jpg"
    assert body["image"]["url"].endswith(f"/api/v1/captions/{created['id']}/image")
    assert body["timings"]["created_at"]
    assert body["timings"]["started_at"] is None
    assert body["timings"]["queue_seconds"] is None


@pytest.mark.django_db
def test_detail_of_a_finished_job(api_client, bad_inputs_dir, starter_model_version):
    created = upload(api_client, bad_inputs_dir / "grayscale.jpg").json()
    job = CaptionJob.objects.get(id=created["id"])
    job.status = "succeeded"
    job.caption = "a dog runs on the grass"
    job.alternatives = [{"text": "a dog runs on the grass", "log_prob": -3.5, "confidence": 0.6, "truncated": False}]
    job.model_version = starter_model_version
    job.started_at = job.created_at
    job.finished_at = job.created_at
    job.model_seconds = 0.25
    job.save()

    body = api_client.get(created["url"]).json()

    assert body["caption"] == "a dog runs on the grass"
    assert body["alternatives"][0]["confidence"] == 0.6
    assert body["truncated"] is False
    assert body["model_version"] == {
        "id": starter_model_version.pk, "name": "starter", "number": 1, "label": "starter:1"
    }
    assert body["timings"]["queue_seconds"] == 0
    assert body["timings"]["model_seconds"] == 0.25


@pytest.mark.django_db
@pytest.mark.parametrize("job_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_unknown_job_is_404_in_error_shape(api_client, job_id):
    response = api_client.get(f"{CREATE_URL}{job_id}/")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "not_found"
    assert job_id in error["message"]


@pytest.mark.django_db
def test_stored_upload_is_served_as_its_format(api_client, bad_inputs_dir):
    """The PNG uploaded as .txt comes back from the job's image URL as image/png."""
    path = bad_inputs_dir / "png-named.txt"
    created = upload(api_client, path).json()

    response = api_client.get(created["image"]["url"])

    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"".join(response.streaming_content) == path.read_bytes()


@pytest.mark.django_db
def test_image_of_another_users_job_is_404(api_client, bad_inputs_dir):
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    created = upload(api_client, bad_inputs_dir / "grayscale.jpg").json()
    other = get_user_model().objects.create_user(username="other-app")
    other_client = APIClient()
    other_client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=other).key}")

    response = other_client.get(created["image"]["url"])

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
def test_image_missing_from_storage_is_404(api_client, bad_inputs_dir):
    created = upload(api_client, bad_inputs_dir / "grayscale.jpg").json()
    default_storage.delete(CaptionJob.objects.get(id=created["id"]).image.name)

    response = api_client.get(created["image"]["url"])

    assert response.status_code == 404
    assert "no longer stored" in response.json()["error"]["message"]


@pytest.mark.django_db
def test_models_lists_versions_with_active_flag(api_client, starter_model_version):
    response = api_client.get("/api/v1/models/")

    assert response.status_code == 200
    [version] = response.json()["results"]
    assert version["id"] == starter_model_version.pk
    assert version["name"] == "starter"
    assert version["is_active"] is True
    assert version["scores"] == starter_model_version.scores
    assert version["created_at"]


@pytest.mark.django_db
def test_health_without_workers_is_503(client):
    """Under the tests' in-memory broker no worker replies, so health reports 503."""
    response = client.get("/api/v1/health/")

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "unavailable"
    assert error["details"]["database"] == {"ok": True}
    assert error["details"]["workers"]["ok"] is False
    assert "workers" in error["message"]


@pytest.mark.django_db
def test_health_with_broker_down_is_503(client):
    from captionsite.localredis import free_port
    from tests.conftest import celery_broker_use

    celery_broker_use(f"redis://127.0.0.1:{free_port()}/0")
    try:
        response = client.get("/api/v1/health/")
    finally:
        celery_broker_use("memory://")

    assert response.status_code == 503
    details = response.json()["error"]["details"]
    assert details["broker"]["ok"] is False
    assert details["workers"]["ok"] is False


@pytest.mark.django_db
def test_broker_outage_still_answers_202(api_client, bad_inputs_dir, django_capture_on_commit_callbacks):
    """With Redis down the upload is still accepted, and its job stays queued in the database."""
    from captionsite.localredis import free_port
    from tests.conftest import celery_broker_use

    celery_broker_use(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            response = upload(api_client, bad_inputs_dir / "grayscale.jpg")
    finally:
        celery_broker_use("memory://")

    assert response.status_code == 202
    assert len(callbacks) == 1
    assert CaptionJob.objects.get(id=response.json()["id"]).status == "queued"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "fields",
    [
        {"max_length": 4},
        {"max_length": 51},
        {"num_captions": 0},
        {"num_captions": 6},
        {"language": "fr"},
        {"wait": -1},
        {"wait": 31},
        {"model_version": "no-such-model"},
        {"model_version": "999999"},
    ],
)
def test_invalid_create_option_is_rejected(api_client, bad_inputs_dir, fields):
    response = upload(api_client, bad_inputs_dir / "grayscale.jpg", **fields)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid"
    assert list(response.json()["error"]["details"]) == list(fields)
    assert CaptionJob.objects.count() == 0


@pytest.mark.django_db
def test_more_captions_than_beams_is_rejected(api_client, bad_inputs_dir):
    response = upload(api_client, bad_inputs_dir / "grayscale.jpg", beam_size=2, num_captions=3)

    assert response.status_code == 400, response.content
    assert "keeps at most 2 captions" in response.json()["error"]["details"]["num_captions"][0]
    assert CaptionJob.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("by", ["id", "name"])
def test_model_version_option_pins_the_job(api_client, bad_inputs_dir, starter_model_version, by):
    value = starter_model_version.pk if by == "id" else starter_model_version.name
    response = upload(api_client, bad_inputs_dir / "grayscale.jpg", model_version=value)
    assert response.status_code == 202, response.content
    assert CaptionJob.objects.get(id=response.json()["id"]).model_version == starter_model_version


@pytest.mark.django_db
def test_num_captions_and_language_are_accepted(api_client, bad_inputs_dir):
    response = upload(api_client, bad_inputs_dir / "grayscale.jpg", num_captions=5, language="en")
    assert response.status_code == 202, response.content
    assert CaptionJob.objects.get(id=response.json()["id"]).num_captions == 5


@pytest.mark.django_db
def test_wait_for_an_unfinished_job_returns_202(api_client, bad_inputs_dir):
    """The in-memory broker runs nothing, so the job is still queued when the wait ends."""
    response = upload(api_client, bad_inputs_dir / "grayscale.jpg", wait=1)
    assert response.status_code == 202
    assert response.json()["status"] == "queued"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_wait_for_a_finished_job_returns_200(api_client, bad_inputs_dir, starter_model_version):
    """With Celery running tasks in this process, the job is done before the wait starts.

    The test is transactional so that the job is enqueued, and run, on commit.
    """
    from captionsite.celery import app

    app.conf.task_always_eager = True
    try:
        with open(bad_inputs_dir / "grayscale.jpg", "rb") as file:
            response = api_client.post(
                f"{CREATE_URL}?wait=5", {"image": file, "num_captions": 2}, format="multipart"
            )
    finally:
        app.conf.task_always_eager = False

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "succeeded", body["error_message"]
    assert body["caption"]
    assert len(body["alternatives"]) == 2
    assert response["Location"] == body["url"]


@pytest.mark.django_db
def test_unknown_api_path_is_404_in_error_shape(api_client):
    response = api_client.get("/api/v1/no-such-endpoint/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "not_found"
    assert "/api/v1/no-such-endpoint/" in error["message"]


@pytest.mark.django_db
def test_unknown_page_keeps_the_html_404(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.django_db
def test_wrong_method_is_405_in_error_shape(api_client):
    response = api_client.put(CREATE_URL, {})
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_server_error_under_api_is_json(rf):
    """Django's 500 handler returns the error shape for API paths, not the HTML page."""
    from captioning.api.errors import server_error

    response = server_error(rf.get("/api/v1/captions/"))

    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert b'"internal_error"' in response.content


@pytest.mark.django_db
def test_non_ascii_digit_model_version_is_rejected(api_client, bad_inputs_dir):
    response = upload(api_client, bad_inputs_dir / "grayscale.jpg", model_version="¹")
    assert response.status_code == 400
    assert list(response.json()["error"]["details"]) == ["model_version"]
