"""Who may use the API: API keys, browser sessions with CSRF, and per-user jobs."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from captioning.models import CaptionJob

CREATE_URL = "/api/v1/captions/"


def token_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def upload(client, path):
    with open(path, "rb") as file:
        return client.post(CREATE_URL, {"image": file}, format="multipart")


@pytest.fixture
def photo(bad_inputs_dir):
    return bad_inputs_dir / "grayscale.jpg"


@pytest.mark.django_db
def test_anonymous_upload_is_401_by_default(photo):
    response = upload(APIClient(), photo)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Token"
    assert CaptionJob.objects.count() == 0


@pytest.mark.django_db
def test_anonymous_upload_allowed_by_setting(photo, settings):
    """With API_ALLOW_ANONYMOUS the job belongs to no user and its id reads it."""
    settings.API_ALLOW_ANONYMOUS = True
    client = APIClient()

    created = upload(client, photo)
    detail = client.get(created.json()["url"])

    assert created.status_code == 202
    assert CaptionJob.objects.get().user is None
    assert detail.status_code == 200


@pytest.mark.django_db
def test_unknown_api_key_is_401(photo):
    response = upload(token_client("0" * 40), photo)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


@pytest.mark.django_db
def test_job_belongs_to_the_key_owner(photo, api_user, api_token):
    response = upload(token_client(api_token), photo)
    assert response.status_code == 202
    assert CaptionJob.objects.get(id=response.json()["id"]).user == api_user


@pytest.mark.django_db
def test_other_users_job_is_404(photo, api_token):
    """A job id of another user reads as unknown, not as forbidden."""
    created = upload(token_client(api_token), photo).json()
    other = get_user_model().objects.create_user(username="other-app")
    other_key = Token.objects.create(user=other).key

    response = token_client(other_key).get(created["url"])

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
def test_staff_see_every_job(photo, api_token):
    created = upload(token_client(api_token), photo).json()
    staff = get_user_model().objects.create_user(username="operator", is_staff=True)
    staff_key = Token.objects.create(user=staff).key

    response = token_client(staff_key).get(created["url"])

    assert response.status_code == 200
    assert response.json()["id"] == created["id"]


@pytest.mark.django_db
def test_anonymous_cannot_read_a_users_job(photo, api_token, settings):
    settings.API_ALLOW_ANONYMOUS = True
    created = upload(token_client(api_token), photo).json()

    response = APIClient().get(created["url"])

    assert response.status_code == 404


@pytest.mark.django_db
def test_session_upload_needs_csrf_token(photo, api_user):
    """A signed-in browser session authenticates, and DRF still checks CSRF on POST."""
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(api_user)

    response = upload(client, photo)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert "CSRF" in response.json()["error"]["message"]
    assert CaptionJob.objects.count() == 0


@pytest.mark.django_db
def test_session_upload_with_csrf_token(photo, api_user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(api_user)
    client.get("/")
    csrf_token = client.cookies["csrftoken"].value

    with open(photo, "rb") as file:
        response = client.post(
            CREATE_URL, {"image": file}, format="multipart", HTTP_X_CSRFTOKEN=csrf_token
        )

    assert response.status_code == 202, response.content
    assert CaptionJob.objects.get().user == api_user


@pytest.mark.django_db
def test_create_api_key_creates_user_and_prints_key(capsys, photo):
    call_command("create_api_key", "catalogue")
    key = capsys.readouterr().out.strip().splitlines()[-1]

    user = get_user_model().objects.get(username="catalogue")
    assert not user.has_usable_password()
    assert Token.objects.get(user=user).key == key
    assert upload(token_client(key), photo).status_code == 202


@pytest.mark.django_db
def test_create_api_key_keeps_an_existing_key(capsys, api_user, api_token):
    call_command("create_api_key", api_user.username)
    assert capsys.readouterr().out.strip().splitlines()[-1] == api_token
    assert get_user_model().objects.filter(username=api_user.username).count() == 1


@pytest.mark.django_db
def test_create_api_key_rotate_revokes_the_old_key(capsys, api_user, api_token, photo):
    call_command("create_api_key", api_user.username, "--rotate")
    new_key = capsys.readouterr().out.strip().splitlines()[-1]

    assert new_key != api_token
    assert upload(token_client(api_token), photo).status_code == 401
    assert upload(token_client(new_key), photo).status_code == 202
