"""The whole stack over real HTTP: live server, Redis, a Celery worker process and the
starter model, with photos from the shared datasets.
"""

import json
import re
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from captioning import services
from captioning.models import CaptionJob, ModelVersion

pytestmark = pytest.mark.stack

# An upper bound for one job, loading the model included, on a busy two-core CPU.
# Reaching it fails the test as stuck. It is not a measure of captioning speed.
JOB_DEADLINE_SECONDS = 300
CAPTION_PATTERN = re.compile(r"^[A-Za-z][A-Za-z' -]*[A-Za-z]( ?[.!?])?$")


def auth_headers(token: str | None) -> dict:
    return {"Authorization": f"Token {token}"} if token else {}


def post_image(url: str, path: Path, token: str | None) -> tuple[int, dict, dict]:
    """POST a file as multipart field `image`; return status, headers and JSON body."""
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="image"; filename="{path.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}", **auth_headers(token)},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.load(error)


def get_json(url: str, token: str | None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers=auth_headers(token))
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def wait_until_finished(url: str, token: str, worker) -> dict:
    """Poll a job URL until its status is succeeded or failed."""
    deadline = time.monotonic() + JOB_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        status, body = get_json(url, token)
        assert status == 200, body
        if body["status"] in ("succeeded", "failed"):
            return body
        time.sleep(0.5)
    pytest.fail(
        f"Job {url} was still {body['status']} after {JOB_DEADLINE_SECONDS} s. "
        f"Worker log:\n{worker.log_text()[-5000:]}"
    )


def test_photo_uploaded_by_api_is_captioned(stack_server, celery_worker_process, dataset_dir, api_token):
    """A Flickr8k photo POSTed to the API ends with a caption from the starter model."""
    photo = dataset_dir / "flickr8k-900" / "images" / "1001773457_577c3a7d70.jpg"

    status, headers, created = post_image(f"{stack_server}/api/v1/captions/", photo, api_token)

    assert status == 202, created
    assert headers["Location"] == created["url"]
    assert created["status"] == "queued"
    body = wait_until_finished(created["url"], api_token, celery_worker_process)
    assert body["status"] == "succeeded", body["error_message"]
    assert CAPTION_PATTERN.match(body["caption"]), body["caption"]
    assert body["alternatives"][0]["text"] == body["caption"]
    assert body["model_version"]["name"] == "starter"
    assert body["timings"]["queue_seconds"] >= 0
    assert body["timings"]["model_seconds"] > 0
    assert body["image"]["width"] > 0


def test_rejected_upload_never_reaches_the_worker(stack_server, bad_inputs_dir, api_token):
    status, _, body = post_image(f"{stack_server}/api/v1/captions/", bad_inputs_dir / "truncated.jpg", api_token)
    assert status == 400
    assert body["error"]["code"] == "image_corrupt"
    assert CaptionJob.objects.count() == 0


def test_failed_job_leaves_the_worker_running(stack_server, celery_worker_process, dataset_dir, api_user, api_token):
    """A job whose model cannot load fails with a message; the next job still succeeds."""
    broken = ModelVersion.objects.create(
        name="broken", checkpoint="checkpoints/missing.safetensors", status="ready"
    )
    photo = dataset_dir / "coco-mini" / "train2017" / "000000030752.jpg"
    with open(photo, "rb") as file:
        job = services.job_create(
            upload=file, original_filename=photo.name, user=api_user, model_version=broken
        )
    job_url = f"{stack_server}/api/v1/captions/{job.id}/"

    failed = wait_until_finished(job_url, api_token, celery_worker_process)
    status, _, created = post_image(f"{stack_server}/api/v1/captions/", photo, api_token)
    succeeded = wait_until_finished(created["url"], api_token, celery_worker_process)

    assert failed["status"] == "failed"
    assert "broken:1 could not be loaded" in failed["error_message"]
    assert status == 202
    assert succeeded["status"] == "succeeded", succeeded["error_message"]
    assert celery_worker_process.popen.poll() is None


def test_api_key_is_required_over_http(stack_server, bad_inputs_dir):
    status, headers, body = post_image(f"{stack_server}/api/v1/captions/", bad_inputs_dir / "grayscale.jpg", None)
    assert status == 401
    assert headers["WWW-Authenticate"] == "Token"
    assert body["error"]["code"] == "not_authenticated"
    assert CaptionJob.objects.count() == 0


def test_job_of_another_key_is_404_over_http(stack_server, bad_inputs_dir, api_token):
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    other = get_user_model().objects.create_user(username="other-app")
    other_token = Token.objects.create(user=other).key
    _, _, created = post_image(f"{stack_server}/api/v1/captions/", bad_inputs_dir / "grayscale.jpg", api_token)

    own_status, _ = get_json(created["url"], api_token)
    other_status, other_body = get_json(created["url"], other_token)

    assert own_status == 200
    assert other_status == 404
    assert other_body["error"]["code"] == "not_found"


def test_history_pages_and_delete_over_http(stack_server, celery_worker_process, bad_inputs_dir, api_token):
    """Two uploads page one at a time, newest first; a deleted job then returns 404."""
    urls = [
        post_image(f"{stack_server}/api/v1/captions/", bad_inputs_dir / name, api_token)[2]["url"]
        for name in ("grayscale.jpg", "cmyk.jpg")
    ]

    listed = []
    next_url = f"{stack_server}/api/v1/captions/?page_size=1"
    while next_url:
        status, page = get_json(next_url, api_token)
        assert status == 200, page
        listed += [item["url"] for item in page["results"]]
        next_url = page["next"]
    # A running job cannot be deleted, so the test waits for the worker to finish it.
    wait_until_finished(urls[0], api_token, celery_worker_process)
    request = urllib.request.Request(urls[0], method="DELETE", headers=auth_headers(api_token))
    with urllib.request.urlopen(request, timeout=60) as response:
        delete_status = response.status
    after_status, after_body = get_json(urls[0], api_token)

    assert listed == urls[::-1]
    assert delete_status == 204
    assert after_status == 404
    assert after_body["error"]["code"] == "not_found"


def test_health_is_ok_with_the_stack_running(stack_server):
    status, body = get_json(f"{stack_server}/api/v1/health/", None)
    assert status == 200, body
    assert body["status"] == "ok"
    assert body["checks"]["workers"]["workers"] >= 1


def test_image_is_served_to_its_owner_over_http(stack_server, bad_inputs_dir, api_token):
    path = bad_inputs_dir / "png-named.txt"
    _, _, created = post_image(f"{stack_server}/api/v1/captions/", path, api_token)

    request = urllib.request.Request(created["image"]["url"], headers=auth_headers(api_token))
    with urllib.request.urlopen(request, timeout=60) as response:
        content_type = response.headers["Content-Type"]
        nosniff = response.headers["X-Content-Type-Options"]
        data = response.read()
    anonymous_status, _ = get_json(created["image"]["url"], None)

    assert content_type == "image/png"
    assert nosniff == "nosniff"
    assert data == path.read_bytes()
    assert anonymous_status == 401


def test_wait_returns_the_finished_job_over_http(stack_server, celery_worker_process, dataset_dir, api_token):
    """With the model loaded by a first job, `wait=30` returns 200 and the caption."""
    photo = dataset_dir / "flickr8k-900" / "images" / "1001773457_577c3a7d70.jpg"
    _, _, warm_up = post_image(f"{stack_server}/api/v1/captions/", photo, api_token)
    wait_until_finished(warm_up["url"], api_token, celery_worker_process)

    status, headers, body = post_image(f"{stack_server}/api/v1/captions/?wait=30", photo, api_token)

    assert status == 200, body
    assert body["status"] == "succeeded", body["error_message"]
    assert CAPTION_PATTERN.match(body["caption"]), body["caption"]
    assert headers["Location"] == body["url"]


def post_files(url: str, paths: list[Path], token: str) -> tuple[int, dict]:
    """POST files as repeated multipart field `images`; return status and JSON body."""
    boundary = uuid.uuid4().hex
    body = b""
    for path in paths:
        body += (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="images"; filename="{path.name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode() + path.read_bytes() + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}", **auth_headers(token)},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_batch_of_twenty_with_two_bad_files_over_http(
    stack_server, celery_worker_process, dataset_dir, bad_inputs_dir, api_token
):
    """The 18 photos are captioned; the two bad files fail only their own entries."""
    photos = sorted((dataset_dir / "flickr8k-900" / "images").glob("*.jpg"))[:18]
    paths = photos[:5] + [bad_inputs_dir / "truncated.jpg"] + photos[5:12] + [bad_inputs_dir / "one-pixel.png"] + photos[12:]

    status, body = post_files(f"{stack_server}/api/v1/captions/batch/", paths, api_token)

    assert status == 207, body
    assert (body["accepted"], body["rejected"]) == (18, 2)
    assert body["results"][5]["error"]["code"] == "image_corrupt"
    assert body["results"][13]["error"]["code"] == "image_too_small"
    finished = [
        wait_until_finished(result["job"]["url"], api_token, celery_worker_process)
        for result in body["results"]
        if result["status"] == 202
    ]
    assert [job["status"] for job in finished] == ["succeeded"] * 18


def test_throttled_client_gets_429_over_http(stack_server, api_token, settings):
    settings.API_THROTTLE_RATES = {"anon": "100/min", "user": "2/min"}
    url = f"{stack_server}/api/v1/captions/"

    statuses = [get_json(url, api_token)[0] for _ in range(2)]
    request = urllib.request.Request(url, headers=auth_headers(api_token))
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=60)

    assert statuses == [200, 200]
    assert raised.value.code == 429
    assert int(raised.value.headers["Retry-After"]) > 0
    assert json.load(raised.value)["error"]["code"] == "throttled"


def test_base64_text_in_a_field_gets_413_over_http(stack_server, api_token, settings):
    """An image sent as base64 text, not as a file, is over Django's field limit."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="image"\r\n\r\n'
        + "QUJD" * 5000
        + f"\r\n--{boundary}--\r\n"
    ).encode()
    request = urllib.request.Request(
        f"{stack_server}/api/v1/captions/",
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}", **auth_headers(api_token)},
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=60)

    assert raised.value.code == 413
    error = json.load(raised.value)["error"]
    assert error["code"] == "request_too_large"
    assert "10,000 bytes" in error["message"]
    assert CaptionJob.objects.count() == 0
