"""Batch uploads to /api/v1/captions/batch/, through Django's test client."""

import pytest
from rest_framework.test import APIClient

from captioning.models import CaptionJob

BATCH_URL = "/api/v1/captions/batch/"


@pytest.fixture
def api_client(api_token) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token}")
    return client


def post_batch(client, paths, **fields):
    files = [open(path, "rb") for path in paths]
    try:
        return client.post(BATCH_URL, {"images": files, **fields}, format="multipart")
    finally:
        for file in files:
            file.close()


@pytest.mark.django_db
def test_batch_queues_good_files_and_reports_bad_ones(api_client, api_user, bad_inputs_dir):
    names = ["grayscale.jpg", "truncated.jpg", "gray16.png", "gif-header-html.gif", "cmyk.jpg"]

    response = post_batch(api_client, [bad_inputs_dir / name for name in names])

    assert response.status_code == 207, response.content
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (3, 2)
    assert [result["filename"] for result in body["results"]] == names
    assert [result["index"] for result in body["results"]] == list(range(5))
    assert [result["status"] for result in body["results"]] == [202, 400, 202, 400, 202]
    assert body["results"][1]["error"]["code"] == "image_corrupt"
    assert body["results"][3]["error"]["code"] == "unsupported_format"
    job_ids = {body["results"][i]["job"]["id"] for i in (0, 2, 4)}
    assert set(str(pk) for pk in CaptionJob.objects.values_list("pk", flat=True)) == job_ids
    assert all(job.user == api_user for job in CaptionJob.objects.all())


@pytest.mark.django_db
def test_batch_options_apply_to_every_file(api_client, bad_inputs_dir):
    paths = [bad_inputs_dir / "grayscale.jpg", bad_inputs_dir / "cmyk.jpg"]

    response = post_batch(api_client, paths, beam_size=4, num_captions=2)

    assert response.status_code == 207
    assert [(job.beam_size, job.num_captions) for job in CaptionJob.objects.all()] == [(4, 2), (4, 2)]


@pytest.mark.django_db
def test_batch_over_the_file_limit_is_400(api_client, bad_inputs_dir):
    response = post_batch(api_client, [bad_inputs_dir / "gray16.png"] * 51)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "too_many_files"
    assert error["details"] == {"files": 51, "max_files": 50}
    assert "50" in error["message"]
    assert CaptionJob.objects.count() == 0


@pytest.mark.django_db
def test_batch_without_files_is_400(api_client):
    response = api_client.post(BATCH_URL, {}, format="multipart")
    assert response.status_code == 400
    assert list(response.json()["error"]["details"]) == ["images"]


@pytest.mark.django_db
def test_batch_with_invalid_option_queues_nothing(api_client, bad_inputs_dir):
    response = post_batch(api_client, [bad_inputs_dir / "grayscale.jpg"], beam_size=11)
    assert response.status_code == 400
    assert list(response.json()["error"]["details"]) == ["beam_size"]
    assert CaptionJob.objects.count() == 0


@pytest.mark.django_db
def test_batch_needs_an_api_key(bad_inputs_dir):
    response = post_batch(APIClient(), [bad_inputs_dir / "grayscale.jpg"])
    assert response.status_code == 401
    assert CaptionJob.objects.count() == 0
