"""Throttling and request-size limits of the API, through Django's test client."""

import pytest
from rest_framework.test import APIClient

from captioning.api.throttling import client_address

LIST_URL = "/api/v1/captions/"
CREATE_URL = "/api/v1/captions/"


class FakeRequest:
    def __init__(self, **meta):
        self.META = meta


@pytest.fixture
def api_client(api_token) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token}")
    return client


@pytest.mark.django_db
def test_user_over_rate_gets_429_with_retry_after(api_client, settings):
    settings.API_THROTTLE_RATES = {"anon": "100/min", "user": "2/min"}

    statuses = [api_client.get(LIST_URL).status_code for _ in range(3)]
    response = api_client.get(LIST_URL)

    assert statuses == [200, 200, 429]
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    error = response.json()["error"]
    assert error["code"] == "throttled"
    assert error["details"]["retry_after_seconds"] == int(response["Retry-After"])


@pytest.mark.django_db
def test_each_user_has_their_own_count(api_client, settings):
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    settings.API_THROTTLE_RATES = {"anon": "100/min", "user": "1/min"}
    other = get_user_model().objects.create_user(username="other-app")
    other_client = APIClient()
    other_client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=other).key}")

    assert api_client.get(LIST_URL).status_code == 200
    assert api_client.get(LIST_URL).status_code == 429
    assert other_client.get(LIST_URL).status_code == 200


@pytest.mark.django_db
def test_rotating_forwarded_for_does_not_reset_anonymous_count(settings):
    """Without trusted proxies X-Forwarded-For is ignored, so a forged one changes nothing."""
    settings.API_ALLOW_ANONYMOUS = True
    settings.API_THROTTLE_RATES = {"anon": "2/min", "user": "100/min"}
    client = APIClient()

    statuses = [
        client.get("/api/v1/models/", HTTP_X_FORWARDED_FOR=f"203.0.113.{number}").status_code
        for number in range(3)
    ]

    assert statuses == [200, 200, 429]


@pytest.mark.django_db
def test_health_is_not_throttled(client, settings):
    settings.API_THROTTLE_RATES = {"anon": "1/min", "user": "1/min"}
    statuses = {client.get("/api/v1/health/").status_code for _ in range(3)}
    assert 429 not in statuses


@pytest.mark.parametrize(
    ("proxy_count", "forwarded_for", "expected"),
    [
        (0, "198.51.100.7", "192.0.2.1"),
        (1, "198.51.100.7", "198.51.100.7"),
        (1, "10.9.9.9, 198.51.100.7", "198.51.100.7"),
        (2, "10.9.9.9, 198.51.100.7, 192.0.2.50", "198.51.100.7"),
        (3, "198.51.100.7", "198.51.100.7"),
        (1, None, "192.0.2.1"),
    ],
)
def test_client_address_trusts_only_configured_proxies(settings, proxy_count, forwarded_for, expected):
    settings.TRUSTED_PROXY_COUNT = proxy_count
    meta = {"REMOTE_ADDR": "192.0.2.1"}
    if forwarded_for is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded_for
    assert client_address(FakeRequest(**meta)) == expected


@pytest.mark.django_db
def test_body_over_request_limit_is_413(api_client, bad_inputs_dir, settings):
    settings.API_MAX_REQUEST_BYTES = 10_000
    with open(bad_inputs_dir / "grayscale.jpg", "rb") as file:
        response = api_client.post(CREATE_URL, {"image": file}, format="multipart")

    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "request_too_large"
    assert "10,000 bytes" in error["message"]


@pytest.mark.django_db
def test_base64_text_field_over_limit_is_413(api_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = api_client.post(CREATE_URL, {"image": "A" * 5000}, format="multipart")

    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "request_too_large"
    assert "1,000 bytes" in error["message"]
    assert error["details"] == {"max_field_bytes": 1000}


@pytest.mark.django_db
def test_too_many_files_for_django_is_400(api_client, bad_inputs_dir, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 3
    files = [open(bad_inputs_dir / "gray16.png", "rb") for _ in range(4)]
    try:
        response = api_client.post("/api/v1/captions/batch/", {"images": files}, format="multipart")
    finally:
        for file in files:
            file.close()

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "too_many_fields"
