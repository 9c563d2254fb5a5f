"""Hypothesis on what clients send that the OpenAPI document cannot describe: push bodies, blob ranges.

schemathesis (tests/test_schemathesis.py) generates requests from the document; these properties go
below it, at the body decoder every handler shares and at the blob routes' header parsing, with bytes
and headers no schema would produce. Each must end in a value or a 4xx problem, never a 500, and the
blob store must serve exactly the bytes it holds for any Range.

The CI budget is small; STUDYVISIT_FUZZ_EXAMPLES raises it for a nightly run (tests/README.md).
"""

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import EVENT_ID, Seeded, make_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient
from sync_helpers import CLIENT_A, PUSH_URL, note_put, uid

from schemas.sync import PushRequest
from server.errors import DomainError
from server.routes.blobs import byte_range
from server.routes.bodies import JSON, MSGPACK, BodySpec, decode_body
from server.routes.sync import _decode as decode_push  # pyright: ignore[reportPrivateUsage]
from server.services.blobs import parse_content_range
from tests.databases import copy_of

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

FUZZ_EXAMPLES = int(os.environ.get("STUDYVISIT_FUZZ_EXAMPLES", "8"))
# Pure functions are cheap: many more examples than the in-process requests below.
PURE = settings(max_examples=FUZZ_EXAMPLES * 25, deadline=None, database=None, derandomize=True)
REQUESTS = settings(
    max_examples=FUZZ_EXAMPLES * 3,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
MEDIA_TYPES = st.sampled_from(
    [JSON, "application/json; charset=utf-8", MSGPACK, "application/x-msgpack", "", "text/plain", "APPLICATION/JSON"]
)
JSON_VALUES = st.recursive(
    # Within 64 bits: MessagePack has no larger integers (the JSON of a larger one is in push_bodies).
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
BLOBS = f"/api/v1/events/{EVENT_ID}/blobs"
BLOB = bytes(range(256)) * 3 + "Torino, caffè ☕".encode()


def attempt(function: Callable[..., Any], *args: Any) -> tuple[Any, DomainError | None]:
    """What ``function`` returns, or the domain error it raises (anything else fails the test)."""
    try:
        return function(*args), None
    except DomainError as exc:
        return None, exc


# What httpx can put in a header: printable ASCII.
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30)


def push_bodies() -> st.SearchStrategy[bytes]:
    """Valid pushes, pushes with a field replaced by any JSON value, and raw bytes."""
    valid = {"client_id": CLIENT_A, "protocol": 1, "mutations": [note_put(1, uid(1), body="nota")]}
    replaced = st.tuples(st.sampled_from(["client_id", "protocol", "mutations"]), JSON_VALUES).map(
        lambda kv: msgspec.json.encode({**valid, kv[0]: kv[1]})
    )
    huge = st.integers(2**64, 10**30).map(lambda n: msgspec.json.encode({**valid, "protocol": n}))
    mutated_args = JSON_VALUES.map(
        lambda v: msgspec.json.encode({**valid, "mutations": [{"id": 1, "type": "note.put", "args": v}]})
    )
    return st.one_of(st.just(msgspec.json.encode(valid)), replaced, mutated_args, huge, st.binary(max_size=200))


@PURE
@given(body=push_bodies(), content_type=MEDIA_TYPES)
def test_push_decoder_answers_a_push_or_a_4xx_problem(body: bytes, content_type: str) -> None:
    decoded, error = attempt(decode_push, body, content_type)
    if error is None:
        assert isinstance(decoded, PushRequest)
    else:
        assert error.status in (400, 415)
        assert error.problem().type.startswith("urn:studyvisit:problem:")


@PURE
@given(value=JSON_VALUES, raw=st.binary(max_size=64), content_type=MEDIA_TYPES, use_raw=st.booleans())
def test_body_decoder_answers_a_value_or_a_4xx_problem(
    value: Any, raw: bytes, content_type: str, use_raw: bool
) -> None:
    """The decoder of every body-taking handler, with JSON and MessagePack encodings of any value."""
    if use_raw:
        body = raw
    elif content_type.lower().startswith(MSGPACK):
        body = msgspec.msgpack.encode(value)
    else:
        body = msgspec.json.encode(value)
    for spec in (BodySpec(PushRequest, (JSON, MSGPACK)), BodySpec(dict, (JSON,), raw=True)):
        _, error = attempt(decode_body, body, content_type, spec)
        assert error is None or error.status in (400, 415)


@PURE
@given(
    header=st.one_of(
        st.text(max_size=40),
        st.builds(
            "bytes {}-{}/{}".format,
            st.integers(-5, 10**20),
            st.integers(-5, 10**20),
            st.integers(-5, 10**20),
        ),
    )
)
def test_content_range_parses_to_a_part_or_a_400(header: str) -> None:
    part, error = attempt(parse_content_range, header)
    if error is None:
        assert 0 <= part.first <= part.last < part.total
    else:
        assert error.status == 400


@PURE
@given(
    header=st.one_of(
        st.none(),
        st.text(max_size=30),
        st.builds("bytes={}-{}".format, st.integers(0, 10**25) | st.just(""), st.integers(0, 10**25) | st.just("")),
    ),
    size=st.integers(1, 10**6),
)
def test_range_header_is_a_range_inside_the_blob_or_the_whole_or_unsatisfiable(header: str | None, size: int) -> None:
    wanted = byte_range(header, size)
    if isinstance(wanted, tuple):
        first, last = wanted
        assert 0 <= first <= last < size


@pytest.fixture(scope="module")
def blob_world(
    tmp_path_factory: pytest.TempPathFactory, seeded_template: Seeded, request: pytest.FixtureRequest
) -> tuple[Seeded, Path]:
    """The demo event with one blob uploaded, for the request properties (they only read, or fail)."""
    root = tmp_path_factory.mktemp("fuzz-blobs")
    return copy_of(seeded_template, root / "studyvisit.db", request), root / "data"


# A PDF: the server sniffs the media type from the bytes, and keeps only what it recognises.
HELD = b"%PDF-1.4\n" + BLOB
HELD_SHA = hashlib.sha256(HELD).hexdigest()


@pytest.fixture(scope="module")
def blob_client(blob_world: tuple[Seeded, Path]) -> Iterator[TestClient[Litestar]]:
    """The app with HELD uploaded and attached to a participant's note, so that the participant may fetch it."""
    seeded, data_dir = blob_world
    with TestClient(app=make_app(seeded, data_dir=data_dir)) as client:
        headers = seeded.headers("participant", group="G1")
        assert client.put(f"{BLOBS}/{HELD_SHA}", content=HELD, headers=headers).status_code == 201
        attachment = {"sha256": HELD_SHA, "media_type": "application/pdf", "bytes": len(HELD), "caption": ""}
        push = {"client_id": CLIENT_A, "protocol": 1, "mutations": [note_put(1, uid(90), attachments=[attachment])]}
        pushed = client.post(PUSH_URL, json=push, headers=headers)
        assert pushed.json()["results"][0]["status"] == "applied", pushed.text
        yield client


@REQUESTS
@given(
    range_header=st.one_of(
        HEADER_TEXT,
        st.builds("bytes={}-{}".format, st.integers(0, 2000) | st.just(""), st.integers(0, 2000) | st.just("")),
        st.builds("bytes={}-{},{}-{}".format, *[st.integers(0, 1000)] * 4),
    ),
    if_range=st.none() | HEADER_TEXT,
)
def test_blob_fetch_serves_exactly_the_requested_bytes_or_a_4xx(
    blob_client: TestClient[Litestar], blob_world: tuple[Seeded, Path], range_header: str, if_range: str | None
) -> None:
    seeded, _ = blob_world
    digest, data = HELD_SHA, HELD
    headers = seeded.headers("participant", group="G1")
    request_headers = {**headers, "Range": range_header}
    if if_range is not None:
        request_headers["If-Range"] = if_range
    response = blob_client.get(f"{BLOBS}/{digest}", headers=request_headers)
    assert response.status_code in (200, 206, 416), response.text[:300]
    if response.status_code == 200:
        assert response.content == data
    elif response.status_code == 206:
        first, last = map(int, response.headers["content-range"].removeprefix("bytes ").split("/")[0].split("-"))
        assert response.content == data[first : last + 1]
    else:
        assert response.headers["content-range"] == f"bytes */{len(data)}"


@REQUESTS
@given(
    content_range=st.none() | HEADER_TEXT | st.builds("bytes {}-{}/{}".format, *[st.integers(0, 3000)] * 3),
    body=st.binary(max_size=300),
)
def test_blob_upload_of_any_part_is_stored_or_refused_with_a_4xx(
    blob_client: TestClient[Litestar], blob_world: tuple[Seeded, Path], content_range: str | None, body: bytes
) -> None:
    """Any Content-Range with any bytes, under a hash they do not have: never a 500, never a stored blob."""
    seeded, _ = blob_world
    headers = seeded.headers("participant", group="G1")
    if content_range is not None:
        headers["Content-Range"] = content_range
    digest = hashlib.sha256(b"never uploaded " + body).hexdigest()
    response = blob_client.put(f"{BLOBS}/{digest}", content=body, headers=headers)
    assert 300 <= response.status_code < 500, response.text[:300]
    assert response.status_code != 201


@REQUESTS
@given(body=push_bodies(), content_type=MEDIA_TYPES)
def test_push_of_any_body_is_answered_below_500(
    blob_client: TestClient[Litestar], blob_world: tuple[Seeded, Path], body: bytes, content_type: str
) -> None:
    seeded, _ = blob_world
    headers = {**seeded.headers("participant", group="G1"), "Content-Type": content_type}
    response = blob_client.post(PUSH_URL, content=body, headers=headers)
    assert response.status_code < 500, response.text[:300]
