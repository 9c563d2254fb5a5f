"""The API against its own OpenAPI document: schemathesis generates requests for every operation.

The app runs in-process over a database with the Turin demo event, and each generated request is
checked for what a client generated from ``/schema/openapi.json`` relies on: never a 5xx, only
documented status codes, the documented content type, and a body that matches the documented schema.

Requests that change data (PATCH, POST, PUT, DELETE) are included: the database is a temporary file of
this module's own. Generation is derandomized and operations run in a fixed order, so a failure replays
the same way; every operation must keep its contract whatever the earlier ones left behind.
"""

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import schemathesis
from conftest import EVENT_ID, Seeded, make_app
from hypothesis import HealthCheck, settings
from litestar import Litestar
from litestar.testing import TestClient
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from server.fixtures import DEMO_FIXTURE, read_fixture
from tests.databases import copy_of

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

DEMO = read_fixture(DEMO_FIXTURE)
# Real ids most of the time, so requests get past the 404 of an unknown record and reach the handlers.
KNOWN_IDS_PROBABILITY = 0.8
KNOWN_IDS = {
    "site_id": [s.id for s in DEMO.sites],
    "visit_id": [v.id for v in DEMO.visits],
    "group_id": [g.id for g in DEMO.groups],
    "question_id": [q.id for q in DEMO.questions],
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# The CI budget keeps this module near half a minute on two cores; a nightly run raises it:
#   STUDYVISIT_FUZZ_EXAMPLES=500 .venv/bin/pytest tests/test_schemathesis.py tests/test_fuzz_inputs.py -p no:randomly
FUZZ_EXAMPLES = int(os.environ.get("STUDYVISIT_FUZZ_EXAMPLES", "8"))
EXAMPLES = settings(
    max_examples=FUZZ_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
HOSTED_SITE = "casa-quartiere-san-salvario"
# What a host does: read the programme, correct their site, see its history and feedback.
HOST_OPERATIONS = [
    "GET /api/v1/events/{event_id}/sites/{site_id}",
    "PATCH /api/v1/events/{event_id}/sites/{site_id}",
    "GET /api/v1/events/{event_id}/sites/{site_id}/history",
    "GET /api/v1/events/{event_id}/sites/{site_id}/visits",
    "GET /api/v1/events/{event_id}/itinerary",
    "GET /api/v1/events/{event_id}/feedback/summary",
    "GET /api/v1/events/{event_id}/schedule.xml",
]
PARTICIPANT_OPERATIONS = [
    "GET /api/v1/me",
    "GET /api/v1/events/{event_id}/itinerary",
    "GET /api/v1/events/{event_id}/sync/pull",
    "POST /api/v1/events/{event_id}/sync/push",
    "PUT /api/v1/events/{event_id}/visits/{visit_id}/feedback",
    "PUT /api/v1/events/{event_id}/blobs/{sha256}",
    "GET /api/v1/events/{event_id}/blobs/{sha256}",
    "GET /api/v1/events/{event_id}/schedule.xml",
]


def published_document() -> dict[str, Any]:
    """``/schema/openapi.json`` as the app serves it (the document does not depend on the data)."""
    # Fetched at import: schemathesis makes each operation a test of its own at collection. Its lazy
    # loader (``schemathesis.pytest.from_fixture``) would avoid this, but it fails on pytest 9.2, where
    # nodes no longer have the ``_nodeid`` attribute it rewrites.
    with tempfile.TemporaryDirectory() as tmp, TestClient(app=make_app(Path(tmp) / "openapi.db")) as client:
        response = client.get("/schema/openapi.json")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]


@schemathesis.serializer("application/msgpack")
def to_msgpack(_: schemathesis.SerializationContext, value: Any) -> bytes:
    """Pushes are documented as JSON and MessagePack; generated MessagePack bodies are the same values.

    A value MessagePack cannot carry (an integer beyond 64 bits) goes as its JSON text, which the server
    must refuse as malformed MessagePack, as it would any other bytes. The serializer never fails: one
    that did would make schemathesis skip the MessagePack cases of the push as unserializable.
    """
    try:
        return msgspec.msgpack.encode(value)
    except (OverflowError, TypeError, ValueError):
        return repr(value).encode("utf-8", "surrogateescape")


DOCUMENT = published_document()
CONFIG = schemathesis.Config.from_dict(
    {
        "dictionaries": {name: {"values": values} for name, values in KNOWN_IDS.items()},
        "parameters": {
            # Another event's id only ever meets the same 404 (the same_event guard); the handlers are the point.
            "event_id": EVENT_ID,
            **{name: {"dictionary": name, "probability": KNOWN_IDS_PROBABILITY} for name in KNOWN_IDS},
        },
        "generation": {"deterministic": True},
        # OPTIONS is left out of the methods the coverage phase tries on every path: it is a 500 on every
        # event path today, which would hide every other finding; test_options_is_never_a_server_error keeps it.
        "phases": {"coverage": {"unexpected-methods": ["put", "post", "delete", "patch", "trace", "query"]}},
    }
)
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, seeded_template: Seeded, request: pytest.FixtureRequest) -> Seeded:
    """The demo event in a database of this module's own (on the engine the run is on), loaded before the app starts."""
    return copy_of(seeded_template, tmp_path_factory.mktemp("schemathesis") / "studyvisit.db", request)


@pytest.fixture(scope="module")
def app(world: Seeded) -> Iterator[Litestar]:
    """The app over the seeded database, which schemathesis calls in-process."""
    yield make_app(world)
    # schemathesis keeps an app's lifespan running for the rest of the process; end it to close the database.
    asgi.shutdown_lifespans()


@schema.parametrize()
@EXAMPLES
def test_every_operation_keeps_its_documented_contract_for_an_organizer(
    case: schemathesis.Case, app: Litestar, world: Seeded
) -> None:
    case.call_and_validate(app=app, headers=world.headers("organizer"), checks=CHECKS)


@schema.include(name=PARTICIPANT_OPERATIONS).parametrize()
@EXAMPLES
def test_participant_operations_keep_their_documented_contract_for_a_participant(
    case: schemathesis.Case, app: Litestar, world: Seeded
) -> None:
    case.call_and_validate(app=app, headers=world.headers("participant", group="G1"), checks=CHECKS)


@schema.include(name=HOST_OPERATIONS).parametrize()
@EXAMPLES
def test_host_operations_keep_their_documented_contract_for_a_host(
    case: schemathesis.Case, app: Litestar, world: Seeded
) -> None:
    case.call_and_validate(app=app, headers=world.headers("host", site=HOSTED_SITE), checks=CHECKS)


# --- stateful: sequences of calls along the document's links (server/openapi.py, LINKS) ----------------

# Each role walks the links from a read to an edit with its ETag, from an edit to the history and a revert,
# from a push to a pull and page to page. Short runs in CI; STUDYVISIT_FUZZ_EXAMPLES lengthens them too.
STATEFUL = settings(
    max_examples=max(2, FUZZ_EXAMPLES // 2),
    stateful_step_count=6,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
ROLES = {
    "participant": {"group": "G1"},
    "host": {"site": HOSTED_SITE},
    "organizer": {},
}


@pytest.mark.parametrize("role", list(ROLES))
def test_linked_sequences_keep_their_documented_contract(app: Litestar, world: Seeded, role: str) -> None:
    headers = world.headers(role, **ROLES[role])
    base = schema.as_state_machine()

    class Workflow(base):  # type: ignore[misc, valid-type]
        def call(self, case: schemathesis.Case, **kwargs: Any) -> Any:
            return case.call(app=app, headers=headers, **kwargs)

        def validate_response(self, response: Any, case: schemathesis.Case, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    Workflow.run(settings=STATEFUL)


def test_the_document_links_reads_to_edits_and_pushes_to_pulls() -> None:
    """The links the stateful runs walk are in the published document, each naming a real operation."""
    operation_ids = {
        operation["operationId"]
        for item in DOCUMENT["paths"].values()
        for operation in item.values()
        if "operationId" in operation
    }
    links = {
        name: link
        for item in DOCUMENT["paths"].values()
        for operation in item.values()
        for response in operation.get("responses", {}).values()
        for name, link in response.get("links", {}).items()
    }
    ours = {"EditThisVisit", "EditThisSite", "RevertTheFirstChange", "PullWhatWasPushed", "NextPage"}
    assert ours <= set(links)
    # (schemathesis adds links it infers to this copy of the document, by operationRef)
    assert {links[name]["operationId"] for name in ours} <= operation_ids
    assert links["EditThisVisit"]["parameters"]["header.If-Match"] == "$response.header.ETag"


def test_every_operation_is_generated() -> None:
    """Guards the filters above: an operation silently dropped would never be checked."""
    documented = {
        f"{method.upper()} {path}"
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method != "parameters"
    }
    generated = {result.ok().label for result in schema.get_all_operations()}
    assert generated == documented
    assert set(PARTICIPANT_OPERATIONS) <= documented
    assert set(HOST_OPERATIONS) <= documented


# --- OPTIONS, which the generated run leaves out (see CONFIG) ------------------------------------------

E = f"/api/v1/events/{EVENT_ID}"
# One path per kind of guard: none, authentication only, same_event, same_event plus a role.
OPTIONS_PATHS = ["/health", "/api/v1/me", f"{E}/sites/triciclo", f"{E}/sync/push", f"{E}/feedback.csv"]


@pytest.fixture(scope="module")
def http(world: Seeded) -> Iterator[TestClient[Litestar]]:
    """A second app over the same database, for requests schemathesis does not make."""
    with TestClient(app=make_app(world)) as client:
        yield client


@pytest.mark.parametrize("authorized", [True, False], ids=["with-token", "without-token"])
@pytest.mark.parametrize("path", OPTIONS_PATHS)
def test_options_is_never_a_server_error(
    http: TestClient[Litestar], world: Seeded, path: str, authorized: bool
) -> None:
    """CORS preflights and clients probing ``Allow`` send OPTIONS, with or without a token."""
    response = http.options(path, headers=world.headers("organizer") if authorized else {})
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code < 300:
        assert "GET" in response.headers["allow"] or "POST" in response.headers["allow"]
