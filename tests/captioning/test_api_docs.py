"""The OpenAPI schema at /api/schema/ and the Swagger UI at /api/docs/."""

import re

import pytest
from drf_spectacular.validation import validate_schema

from captioning.api.schema import ERROR_CODES

ENDPOINTS = [
    "/api/v1/captions/",
    "/api/v1/captions/batch/",
    "/api/v1/captions/{job_id}/",
    "/api/v1/captions/{job_id}/image",
    "/api/v1/models/",
    "/api/v1/health/",
]


@pytest.fixture
def openapi(client) -> dict:
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


@pytest.mark.django_db
def test_schema_is_valid_openapi_3(openapi):
    assert openapi["openapi"].startswith("3.")
    validate_schema(openapi)


@pytest.mark.django_db
def test_schema_lists_every_endpoint(openapi):
    assert set(ENDPOINTS) <= set(openapi["paths"])


@pytest.mark.django_db
def test_schema_describes_every_error_code(openapi):
    description = openapi["components"]["schemas"]["ErrorBody"]["properties"]["code"]["description"]
    for code in ERROR_CODES:
        assert f"`{code}`" in description


@pytest.mark.django_db
def test_schema_documents_token_authentication(openapi):
    assert openapi["components"]["securitySchemes"]["tokenAuth"]["type"] == "apiKey"


@pytest.mark.django_db
def test_create_options_are_described(openapi):
    request_schema = openapi["components"]["schemas"]["CaptionJobCreateRequest"]["properties"]
    for field in ["image", "model_version", "beam_size", "max_length", "num_captions", "language", "wait"]:
        assert request_schema[field].get("description"), field


@pytest.mark.django_db
def test_docs_page_loads_its_assets_locally(client):
    """Swagger UI's script and styles come from this site's static files, not a CDN."""
    response = client.get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert not re.search(r"(src|href)=\"https?://", html)
    assets = re.findall(r"(?:src|href)=\"(/static/drf_spectacular_sidecar/[^\"]+)\"", html)
    assert any(asset.endswith("swagger-ui-bundle.js") for asset in assets), assets
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
