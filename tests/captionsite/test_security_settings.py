"""Production security settings, read from the environment by captionsite/settings.py.

`manage.py check --deploy` runs in a subprocess, because the settings module reads
the environment once, at import.
"""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent.parent

SECURITY_VARIABLES = [
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "SECURE_COOKIES",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_SSL_REDIRECT",
    "SECURE_PROXY_SSL_HEADER",
]

PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "captions.example.org",
    "SECURE_COOKIES": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
}


def manage(*arguments: str, environment: dict[str, str]) -> subprocess.CompletedProcess:
    """Run manage.py with the security variables of `environment` and no others."""
    env = {name: value for name, value in os.environ.items() if name not in SECURITY_VARIABLES}
    env.update(environment)
    env["DJANGO_SETTINGS_MODULE"] = "captionsite.settings"
    return subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def check_ids(output: str) -> set[str]:
    return set(re.findall(r"\(([\w.]+\.[WE]\d+)\)", output))


def test_deploy_check_passes_in_production():
    result = manage("check", "--deploy", "--fail-level", "WARNING", environment=PRODUCTION)

    assert result.returncode == 0, result.stdout + result.stderr
    assert check_ids(result.stdout + result.stderr) == set()
    assert "no issues" in result.stdout


def test_deploy_check_lists_insecure_settings():
    """The embedded defaults, with DEBUG off, trip every HTTPS and secret key warning."""
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING", environment={"DEBUG": "0", "ALLOWED_HOSTS": "captions.example.org"}
    )
    found = check_ids(result.stdout + result.stderr)

    assert result.returncode == 1
    assert "captioning.W003" in found  # SECRET_KEY not set
    assert "security.W004" in found  # no HSTS
    assert "security.W008" in found  # no redirect to https
    assert "security.W012" in found  # session cookie without Secure
    assert "security.W016" in found  # CSRF cookie without Secure


def test_deploy_check_flags_debug_and_weak_key():
    environment = {**PRODUCTION, "DEBUG": "1", "SECRET_KEY": "short"}
    result = manage("check", "--deploy", "--fail-level", "WARNING", environment=environment)
    found = check_ids(result.stdout + result.stderr)

    assert result.returncode == 1
    assert "security.W018" in found  # DEBUG on
    assert "security.W009" in found  # weak SECRET_KEY


def test_local_defaults_keep_plain_http_working():
    """Without the variables, cookies work over http://127.0.0.1:8000, where `make run` serves."""
    code = (
        "from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, "
        "s.SECURE_HSTS_SECONDS, s.SECURE_PROXY_SSL_HEADER)"
    )
    result = manage("shell", "-c", code, environment={})

    assert result.returncode == 0, result.stderr
    # Django 5.2's shell prints a line about its automatic imports first.
    assert result.stdout.strip().splitlines()[-1] == "False False False 0 None"


def test_production_values_are_read():
    code = (
        "from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, "
        "s.SECURE_HSTS_SECONDS, s.SECURE_PROXY_SSL_HEADER, s.X_FRAME_OPTIONS, s.SECURE_REFERRER_POLICY)"
    )
    result = manage("shell", "-c", code, environment=PRODUCTION)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        "True True True 31536000 ('HTTP_X_FORWARDED_PROTO', 'https') DENY same-origin"
    )


def test_invalid_proxy_header_stops_start():
    result = manage("check", environment={"SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto: https"})

    assert result.returncode != 0
    assert "SECURE_PROXY_SSL_HEADER" in result.stderr
    assert "not a header name" in result.stderr


# Responses under the production settings


@pytest.fixture
def production_settings(settings):
    settings.DEBUG = False
    settings.SESSION_COOKIE_SECURE = True
    settings.CSRF_COOKIE_SECURE = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    return settings


@pytest.mark.django_db
def test_plain_http_is_redirected_to_https(client, production_settings):
    response = client.get("/")

    assert response.status_code == 301
    assert response["Location"] == "https://testserver/"


@pytest.mark.django_db
def test_health_stays_on_plain_http(client, production_settings):
    response = client.get("/api/v1/health/")

    assert response.status_code in (200, 503)


@pytest.mark.django_db
def test_https_behind_proxy_gets_hsts_and_secure_cookies(client, production_settings):
    response = client.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https")

    assert response.status_code == 200
    assert response["Strict-Transport-Security"] == "max-age=31536000"
    assert response.cookies["csrftoken"]["secure"] is True
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
