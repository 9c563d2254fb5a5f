"""The published OpenAPI document: valid, complete, and honest about auth, errors and media types."""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import EVENT_ID, Seeded, make_app
from litestar import Litestar
from litestar.testing import TestClient
from sync_helpers import G1_SITE, G1_VISIT

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


def test_every_operation_behind_the_token_documents_401_and_every_event_operation_404(
    document: dict[str, Any],
) -> None:
    """401 for a missing token; 404 wherever the path names an event (the same_event guard), and only there."""
    lacking = []
    for path, method, operation in operations(document):
        if is_public(path):
            continue
        expected = {"401", "404"} if path.startswith("/api/v1/events/{event_id}") else {"401"}
        if not expected <= set(operation["responses"]) or ("404" in operation["responses"]) != ("404" in expected):
            lacking.append(f"{method.upper()} {path}: {sorted(operation['responses'])}")
    assert lacking == []


def handlers(app: Litestar) -> Iterator[tuple[str, str, Any]]:
    """(method, documented path, handler) of every documented operation."""
    for route in app.routes:
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        for handler in getattr(route, "route_handlers", []):
            if path.startswith("/schema") or not handler.resolve_include_in_schema():
                continue
            for method in set(handler.http_methods) - {"OPTIONS"}:
                yield method.lower(), path, handler


# What may be refused with 403 although no role guard stands before the handler: its service checks the role.
SERVICE_ROLE_CHECKS = {
    ("patch", "/api/v1/events/{event_id}/sites/{site_id}"),  # hosts of the site and organizers
    ("patch", "/api/v1/events/{event_id}/visits/{visit_id}"),
    ("post", "/api/v1/events/{event_id}/visits"),
    ("put", "/api/v1/events/{event_id}/groups/{group_id}/members"),
    ("post", "/api/v1/events/{event_id}/history/{entry_id}/revert"),
    ("get", "/api/v1/events/{event_id}/sites/{site_id}/history"),
    ("get", "/api/v1/events/{event_id}/sites/{site_id}/visits"),  # hosts of the site and organizers
    ("get", "/api/v1/events/{event_id}/visits/{visit_id}/history"),
}
# A 400 for a rule of the record rather than a value's shape.
DOMAIN_400 = {("post", "/api/v1/events/{event_id}/history/{entry_id}/revert")}  # reverted already


def test_403_is_documented_only_where_a_role_is_checked(app: Litestar, document: dict[str, Any]) -> None:
    wrong = []
    for method, path, handler in handlers(app):
        guarded = any(getattr(g, "__name__", "") == "guard" for g in handler.resolve_guards())
        may_refuse = guarded or (method, path) in SERVICE_ROLE_CHECKS
        if ("403" in document["paths"][path][method]["responses"]) != may_refuse:
            wrong.append(f"{method.upper()} {path}")
    assert wrong == []


def test_400_is_documented_only_where_a_value_can_fail(document: dict[str, Any]) -> None:
    """A query, header or body value, or a path value with a pattern: a plain string in the path cannot fail,
    nor can If-None-Match (any value is only compared)."""
    wrong = []
    for path, method, operation in operations(document):
        parameters = operation.get("parameters", [])
        validated = (
            "requestBody" in operation
            or any(p["in"] != "path" and p["name"] != "If-None-Match" for p in parameters)
            or any("pattern" in p.get("schema", {}) for p in parameters if p["in"] == "path")
            or (method, path) in DOMAIN_400
        )
        if ("400" in operation["responses"]) != validated:
            wrong.append(f"{method.upper()} {path}")
    assert wrong == []


# Every body-taking operation, with the media types it accepts and its schema.
REQUEST_BODIES = [
    (
        "patch",
        "/api/v1/events/{event_id}/sites/{site_id}",
        ["application/merge-patch+json", "application/json"],
        "SiteFieldsPatch",
    ),
    (
        "patch",
        "/api/v1/events/{event_id}/visits/{visit_id}",
        ["application/merge-patch+json", "application/json"],
        "VisitFields",
    ),
    ("post", "/api/v1/events/{event_id}/sync/push", ["application/json", "application/msgpack"], "PushRequest"),
    ("post", "/api/v1/events/{event_id}/visits", ["application/json"], "VisitPutArgs"),
    ("put", "/api/v1/events/{event_id}/groups/{group_id}/members", ["application/json"], "GroupMembers"),
    ("put", "/api/v1/events/{event_id}/questions/{question_id}", ["application/json"], "QuestionFields"),
    ("put", "/api/v1/events/{event_id}/visits/{visit_id}/feedback", ["application/json"], "FeedbackFields"),
    ("post", "/api/v1/events/{event_id}/itinerary/reorder", ["application/json"], "ReorderRequest"),
    ("post", "/api/v1/events/{event_id}/itinerary/check", ["application/json"], "ProposedVisitChange"),
    ("put", "/api/v1/events/{event_id}/blobs/{sha256}", ["application/octet-stream"], None),
    ("post", "/api/v1/events/{event_id}/accounts", ["application/json"], "AccountDraft"),
]


@pytest.mark.parametrize(("method", "path", "media_types", "component"), REQUEST_BODIES)
def test_request_body_is_documented_with_its_schema_and_media_types(
    document: dict[str, Any], method: str, path: str, media_types: list[str], component: str | None
) -> None:
    body = document["paths"][path][method]["requestBody"]
    assert body["required"] is True
    assert list(body["content"]) == media_types
    for media in body["content"].values():
        if component is None:
            assert media["schema"] == {"type": "string", "format": "binary"}
        else:
            assert media["schema"] == {"$ref": f"#/components/schemas/{component}"}
            assert document["components"]["schemas"][component]["type"] == "object"


def test_only_the_operations_that_read_a_body_document_one(document: dict[str, Any]) -> None:
    """Revert, close/open feedback and the rest take no body; a documented one would make clients send it."""
    with_body = {(method, path) for path, method, operation in operations(document) if "requestBody" in operation}
    assert with_body == {(method, path) for method, path, _, _ in REQUEST_BODIES}


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("patch", "/api/v1/events/{event_id}/sites/{site_id}", "If-Match"),
        ("patch", "/api/v1/events/{event_id}/visits/{visit_id}", "If-Match"),
        ("put", "/api/v1/events/{event_id}/blobs/{sha256}", "Content-Range"),
        ("get", "/api/v1/events/{event_id}/sites", "If-None-Match"),
        ("get", "/api/v1/events/{event_id}/sync/pull", "If-None-Match"),
        ("get", "/api/v1/events/{event_id}/blobs/{sha256}", "If-None-Match"),
    ],
)
def test_request_header_is_a_declared_parameter(document: dict[str, Any], method: str, path: str, name: str) -> None:
    (parameter,) = [p for p in document["paths"][path][method]["parameters"] if p["name"] == name]
    assert parameter["in"] == "header"
    assert parameter["required"] is False
    assert parameter["description"]


def test_every_conditional_get_documents_its_304(document: dict[str, Any]) -> None:
    wrong = [
        f"{method.upper()} {path}"
        for path, method, operation in operations(document)
        if any(p["name"] == "If-None-Match" for p in operation.get("parameters", []))
        and "304" not in operation["responses"]
    ]
    assert wrong == []


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


# --- Cache-Control, as documented and as sent -------------------------------------------------------


def test_every_get_behind_the_token_documents_its_cache_control(document: dict[str, Any]) -> None:
    lacking = [
        f"GET {path}"
        for path, method, operation in operations(document)
        if method == "get"
        and not is_public(path)
        and not operation["responses"]["200"].get("headers", {}).get("Cache-Control", {}).get("schema", {}).get("const")
    ]
    assert lacking == []


def test_every_get_sends_the_cache_control_it_documents(document: dict[str, Any], seeded: Seeded) -> None:
    """Each GET of the API (blobs aside: tests/test_blobs.py uploads one) as an organizer, against its 200's header."""
    ids = {"event_id": EVENT_ID, "site_id": G1_SITE, "visit_id": G1_VISIT}
    since = {"since": "2025-12-01T00:00:00Z"}
    query = {"/api/v1/events/{event_id}/changes": since, "/api/v1/events/{event_id}/changes/delivery": since}
    checked = []
    with TestClient(app=make_app(seeded)) as client:
        for path, method, operation in operations(document):
            if method != "get" or is_public(path) or "{sha256}" in path:
                continue
            response = client.get(path.format(**ids), params=query.get(path), headers=seeded.headers("organizer"))
            assert response.status_code == 200, (path, response.text[:200])
            documented = operation["responses"]["200"]["headers"]["Cache-Control"]["schema"]["const"]
            checked.append((path, response.headers["cache-control"] == documented))
    assert len(checked) >= 18
    assert [path for path, same in checked if not same] == []


# --- the documentation page ---------------------------------------------------------------------------

ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".svg": "image/svg+xml"}


@pytest.mark.parametrize("page", ["/schema", "/schema/redoc"])
def test_docs_page_loads_only_same_origin_assets_that_the_server_serves(app: Litestar, page: str) -> None:
    """The page must work on an intranet: every script, stylesheet and icon from this server, none from a CDN."""
    with TestClient(app=app) as client:
        response = client.get(page)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        html = response.text
        # Only the page's own markup: the document inlined into it quotes https:// URLs as data.
        markup = html[: html.index("Redoc.init(")]
        references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", markup)
        assert references, "the page references no script"
        assert "https://" not in markup
        assert "http://" not in markup
        assert "//" not in "".join(references)
        assert [r for r in references if not r.startswith("/schema/")] == []
        for reference in references:
            asset = client.get(reference)
            assert asset.status_code == 200, reference
            expected = ASSET_TYPES[Path(reference).suffix]
            assert asset.headers["content-type"].split(";")[0] == expected, reference
            assert len(asset.content) > 100_000  # the whole bundle, not an error page


def test_docs_page_inlines_the_completed_document(app: Litestar, document: dict[str, Any]) -> None:
    """Redoc shows what openapi.json says, request bodies included."""
    with TestClient(app=app) as client:
        html = client.get("/schema").text
    assert '"requestBody"' in html
    assert html.count('"requestBody"') == sum("requestBody" in op for _, _, op in operations(document))
