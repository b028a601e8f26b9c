"""Requests while the database is down get 503 with a message and Retry-After, never a
bare 500. tests/faults cuts a real database connection; here the database driver's
error is raised where a query would have failed."""

import pytest
from django.db import OperationalError
from django.test import Client

from captioning import selectors


@pytest.fixture
def database_down(monkeypatch):
    def unreachable(**kwargs):
        raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")

    monkeypatch.setattr(selectors, "job_list_visible", unreachable)


@pytest.fixture
def client_keeping_errors(api_user):
    client = Client(raise_request_exception=False)
    client.force_login(api_user)
    return client


@pytest.mark.django_db
def test_api_answers_503_with_retry_after(client_keeping_errors, database_down):
    response = client_keeping_errors.get("/api/v1/captions/")

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json()["error"]["code"] == "database_unavailable"
    assert "not stored" in response.json()["error"]["message"]


@pytest.mark.django_db
def test_page_answers_503_with_message(client_keeping_errors, database_down):
    response = client_keeping_errors.get("/jobs/")

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "The database did not respond" in response.content.decode()


@pytest.mark.django_db
def test_page_message_in_chinese(client_keeping_errors, database_down):
    response = client_keeping_errors.get("/jobs/", HTTP_ACCEPT_LANGUAGE="zh-hans")

    assert response.status_code == 503
    assert "数据库没有响应" in response.content.decode()


@pytest.mark.django_db
def test_other_crash_stays_500(client_keeping_errors, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(selectors, "job_list_visible", broken)

    response = client_keeping_errors.get("/api/v1/captions/")

    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
