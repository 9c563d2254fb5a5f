"""The published OpenAPI document: valid, complete, and honest about auth, errors and media types."""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_app
from litestar import Litestar
from litestar.testing import TestClient

from server.auth import PUBLIC_PATHS

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
PROBLEM = "application/problem+json"
BEARER = [{"BearerToken": []}]
# Parameters of the read API, each of which must be documented with a description.
READ_QUERY_PARAMETERS = [
    ("/api/v1/events/{event_id}/sites", "lang"),
    ("/api/v1/events/{event_id}/sites", "theme"),
    ("/api/v1/events/{event_id}/sites", "near"),
    ("/api/v1/events/{event_id}/sites/{site_id}", "lang"),
    ("/api/v1/events/{event_id}/sites.geojson", "lang"),
    ("/api/v1/events/{event_id}/itinerary", "group"),
    ("/api/v1/events/{event_id}/itinerary.ics", "group"),
]
READ_MEDIA_TYPES = [
    ("/api/v1/me", "application/json"),
    ("/api/v1/events/{event_id}", "application/json"),
    ("/api/v1/events/{event_id}/sites", "application/json"),
    ("/api/v1/events/{event_id}/sites/{site_id}", "application/json"),
    ("/api/v1/events/{event_id}/sites.geojson", "application/geo+json"),
    ("/api/v1/events/{event_id}/visits/{visit_id}", "application/json"),
    ("/api/v1/events/{event_id}/itinerary", "application/json"),
    ("/api/v1/events/{event_id}/itinerary.ics", "text/calendar"),
    ("/api/v1/events/{event_id}/schedule.xml", "application/xml"),
]


def _app(path: Path) -> Litestar:
    return make_app(path / "openapi.db")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Litestar:
    return _app(tmp_path_factory.mktemp("openapi"))


@pytest.fixture(scope="module")
def document(app: Litestar) -> Iterator[dict[str, Any]]:
    """The document as a client downloads it, without a token."""
    with TestClient(app=app) as client:
        response = client.get("/schema/openapi.json")
        assert response.status_code == 200
        yield response.json()


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def is_public(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in PUBLIC_PATHS)


def test_document_validates_as_openapi(document: dict[str, Any]) -> None:
    validator = pytest.importorskip("openapi_spec_validator", reason="openapi-spec-validator is a test extra")
    validator.validate(document)
    assert document["openapi"].startswith("3.1")


def test_document_is_the_same_on_every_start(document: dict[str, Any], tmp_path: Path) -> None:
    """A document that changes while the API does not would churn every generated client and diff."""
    with TestClient(app=_app(tmp_path)) as client:
        assert client.get("/schema/openapi.json").json() == document


def test_every_route_of_the_app_is_documented(app: Litestar, document: dict[str, Any]) -> None:
    """Every handler, except the document itself and those that opt out with ``include_in_schema=False``."""
    missing = []
    for route in app.routes:
        if route.path.startswith("/schema"):
            continue
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        for handler in getattr(route, "route_handlers", []):
            if not handler.resolve_include_in_schema():
                continue
            for method in set(handler.http_methods) - {"OPTIONS", "HEAD"}:
                if method.lower() not in document["paths"].get(path, {}):
                    missing.append(f"{method} {path}")
    assert missing == []


def test_bearer_token_scheme_is_declared(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["BearerToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")


def test_every_operation_behind_the_token_lists_the_bearer_scheme(document: dict[str, Any]) -> None:
    wrong = [
        f"{method.upper()} {path}: {operation.get('security')}"
        for path, method, operation in operations(document)
        if not is_public(path) and operation.get("security") != BEARER
    ]
    assert wrong == []


def test_public_operations_ask_for_no_token(document: dict[str, Any]) -> None:
    public = [(path, operation) for path, _, operation in operations(document) if is_public(path)]
    assert [path for path, _ in public] == ["/health", "/health/ready"]
    assert all(not operation.get("security") for _, operation in public)


def test_every_operation_behind_the_token_documents_401_and_404(document: dict[str, Any]) -> None:
    lacking = [
        f"{method.upper()} {path}"
        for path, method, operation in operations(document)
        if not is_public(path) and not {"401", "404"} <= set(operation["responses"])
    ]
    assert lacking == []


def test_every_error_response_is_documented_as_a_problem_document(document: dict[str, Any]) -> None:
    wrong = []
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            content = response.get("content", {})
            schema = content.get(PROBLEM, {}).get("schema", {})
            if set(content) != {PROBLEM} or schema.get("$ref") != "#/components/schemas/Problem":
                wrong.append(f"{method.upper()} {path} {status}: {sorted(content)}")
    assert wrong == []


def test_problem_schema_has_the_rfc9457_members(document: dict[str, Any]) -> None:
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "instance"} <= set(problem["properties"])
    assert set(problem["required"]) == {"type", "title", "status"}


@pytest.mark.parametrize(("path", "media_type"), READ_MEDIA_TYPES)
def test_read_endpoint_documents_its_media_type(document: dict[str, Any], path: str, media_type: str) -> None:
    get = document["paths"][path]["get"]
    assert list(get["responses"]["200"]["content"]) == [media_type]
    assert get["summary"]


@pytest.mark.parametrize(("path", "name"), READ_QUERY_PARAMETERS)
def test_read_query_parameter_is_documented_as_optional_with_a_description(
    document: dict[str, Any], path: str, name: str
) -> None:
    parameters = {p["name"]: p for p in document["paths"][path]["get"]["parameters"] if p["in"] == "query"}
    assert parameters[name]["required"] is False
    assert parameters[name]["description"]


@pytest.mark.parametrize(("path", "_"), [row for row in READ_MEDIA_TYPES if "{event_id}" in row[0]])
def test_read_endpoint_with_a_query_documents_400(document: dict[str, Any], path: str, _: str) -> None:
    get = document["paths"][path]["get"]
    if any(p["in"] == "query" for p in get.get("parameters", [])):
        assert "400" in get["responses"]
