"""Pages a person meets when a request goes wrong, and the remembered language."""

import pytest
from django.test import Client


@pytest.mark.django_db
def test_failed_csrf_check_shows_site_page():
    client = Client(enforce_csrf_checks=True)

    response = client.post("/", {})

    assert response.status_code == 403
    content = response.content.decode()
    assert "The form expired" in content
    assert "DEBUG" not in content


@pytest.mark.django_db
def test_failed_csrf_check_in_chinese():
    client = Client(enforce_csrf_checks=True, HTTP_ACCEPT_LANGUAGE="zh-hans")

    response = client.post("/", {})

    assert "表单已过期" in response.content.decode()


@pytest.mark.django_db
def test_language_choice_outlives_browser_session(client):
    response = client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/"})

    cookie = response.cookies["django_language"]
    assert cookie.value == "zh-hans"
    assert int(cookie["max-age"]) >= 30 * 24 * 3600


@pytest.mark.django_db
def test_malformed_form_post_shows_site_page(client):
    response = client.generic("POST", "/", b"--x\r\n", content_type="multipart/form-data; boundary=")

    assert response.status_code == 400
    assert "could not read this request" in response.content.decode()
