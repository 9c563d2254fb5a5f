"""Bad input to the sync endpoints: refused with the right problem, never a 500, and nothing written.

A whole request that cannot be used (too large, not decodable, wrong protocol) is refused before any
work; a single mutation that cannot be applied is ``rejected`` in its result and still uses up its id,
so the next one in the outbox is processed.
"""

import base64
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest
from conftest import Seeded, make_app
from litestar import Litestar
from litestar.testing import TestClient
from sync_helpers import (
    CLIENT_A,
    G1_SITE,
    G1_VISIT,
    G2_VISIT,
    MSGPACK,
    PROBLEM,
    PULL_URL,
    PUSH_URL,
    feedback_put,
    mutation,
    note_put,
    push,
    push_raw,
    scalar,
    site_patch,
    snapshot,
    uid,
)

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

Client = TestClient[Litestar]


@pytest.fixture
def client_with(seeded: Seeded) -> Iterator[Callable[..., Client]]:
    """Clients of apps with other settings, over the seeded database."""
    opened: list[Client] = []

    def build(**settings: Any) -> Client:
        client = TestClient(app=make_app(seeded, **settings))
        client.__enter__()
        opened.append(client)
        return client

    yield build
    for client in opened:
        client.__exit__(None, None, None)


def body(**overrides: Any) -> dict[str, Any]:
    """A valid push body with one note, changed by ``overrides``."""
    return {"client_id": CLIENT_A, "protocol": 1, "mutations": [note_put(1, uid(1), body="hi")], **overrides}


def json_bytes(value: Any) -> bytes:
    return msgspec.json.encode(value)


def assert_problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    """The response is a problem document of this status and type, with a human-readable detail."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"] == PROBLEM + slug, problem
    assert problem["status"] == status
    assert problem.get("detail"), problem
    return problem  # type: ignore[no-any-return]


# --- whole requests refused ---------------------------------------------------------------------------

MUTATION_ID_OVER_MAX = 2**53
DEPTH = 100_000
# Nesting deeper than the decoder's recursion limit, inside args (which accept any JSON value).
DEEP_JSON = json_bytes(body(mutations=[note_put(1, uid(1), body="x")])).replace(
    b'"body":"x"', b'"deep":' + b"[" * DEPTH + b"]" * DEPTH
)
DEEP_MSGPACK = msgspec.msgpack.encode(body(mutations=[note_put(1, uid(1), deep=0)])).replace(
    b"\xa4deep\x00", b"\xa4deep" + b"\x91" * DEPTH + b"\x00"
)

REFUSED_BODIES = [
    pytest.param(b'{"client_id": "\xff\xfe", "protocol": 1, "mutations": []}', "application/json", 400, "bad-request", id="invalid-utf8-in-string"),
    pytest.param(b"\xff\xfe{}", "application/json", 400, "bad-request", id="invalid-utf8-leading"),
    pytest.param(b'{"client_id": "' + CLIENT_A.encode() + b'", "protocol": 1, "mutations": [', "application/json", 400, "bad-request", id="malformed-json"),
    pytest.param(b"", "application/json", 400, "bad-request", id="empty-body"),
    pytest.param(b"[1, 2, 3]", "application/json", 400, "bad-request", id="json-array-not-object"),
    pytest.param(b'"push"', "application/json", 400, "bad-request", id="json-string-not-object"),
    pytest.param(json_bytes({"protocol": 1, "mutations": []}), "application/json", 400, "bad-request", id="missing-client-id"),
    pytest.param(json_bytes(body(client_id="device-1")), "application/json", 400, "bad-request", id="client-id-not-uuid"),
    pytest.param(json_bytes(body(client_id=None)), "application/json", 400, "bad-request", id="client-id-null"),
    pytest.param(json_bytes(body(mutations=None)), "application/json", 400, "bad-request", id="mutations-null"),
    pytest.param(json_bytes(body(mutations={"id": 1})), "application/json", 400, "bad-request", id="mutations-object"),
    pytest.param(json_bytes(body(mutations=[note_put(0, uid(1))])), "application/json", 400, "bad-request", id="mutation-id-zero"),
    pytest.param(json_bytes(body(mutations=[note_put(-3, uid(1))])), "application/json", 400, "bad-request", id="mutation-id-negative"),
    pytest.param(json_bytes(body(mutations=[note_put(MUTATION_ID_OVER_MAX, uid(1))])), "application/json", 400, "bad-request", id="mutation-id-over-2**53"),
    pytest.param(json_bytes(body(mutations=[{"id": "1", "type": "note.put", "args": {}}])), "application/json", 400, "bad-request", id="mutation-id-string"),
    pytest.param(json_bytes(body(mutations=[{"id": 1, "type": "note.put"}])), "application/json", 400, "bad-request", id="mutation-without-args"),
    pytest.param(json_bytes(body(mutations=[{"id": 1, "type": "note.put", "args": []}])), "application/json", 400, "bad-request", id="mutation-args-array"),
    pytest.param(json_bytes(body(mutations=[note_put(1, uid(1)), 7])), "application/json", 400, "bad-request", id="mutation-not-object"),
    pytest.param(DEEP_JSON, "application/json", 400, "bad-request", id="json-nested-100k-deep"),
    pytest.param(DEEP_MSGPACK, MSGPACK, 400, "bad-request", id="msgpack-nested-100k-deep"),
    pytest.param(json_bytes(body(protocol=2)), "application/json", 400, "unsupported-protocol", id="protocol-2"),
    pytest.param(json_bytes({"protocol": 2, "client_id": "nope", "mutations": "nope"}), "application/json", 400, "unsupported-protocol", id="protocol-2-rest-malformed"),
    pytest.param(json_bytes({"protocol": 2, "mutations": [{"id": 0}]}), "application/json", 400, "unsupported-protocol", id="protocol-2-bad-mutations"),
    pytest.param(json_bytes(body(protocol=0)), "application/json", 400, "unsupported-protocol", id="protocol-0"),
    pytest.param(json_bytes(body(protocol="1")), "application/json", 400, "unsupported-protocol", id="protocol-string"),
    pytest.param(json_bytes(body(protocol=True)), "application/json", 400, "unsupported-protocol", id="protocol-true"),
    pytest.param(json_bytes(body(protocol=1.5)), "application/json", 400, "unsupported-protocol", id="protocol-float"),
    pytest.param(json_bytes({"client_id": CLIENT_A, "mutations": []}), "application/json", 400, "unsupported-protocol", id="protocol-missing"),
    pytest.param(json_bytes(body()), "text/plain", 415, "unsupported-media-type", id="text-plain"),
    pytest.param(json_bytes(body()), "application/x-www-form-urlencoded", 415, "unsupported-media-type", id="form-encoded"),
    pytest.param(msgspec.msgpack.encode(body())[:-3], MSGPACK, 400, "bad-request", id="msgpack-truncated"),
    pytest.param(msgspec.msgpack.encode([1, 2]), MSGPACK, 400, "bad-request", id="msgpack-array"),
    pytest.param(b"\x83\xa9client_id\xa2\xff\xfe\xa8protocol\x01\xa9mutations\x90", MSGPACK, 400, "bad-request", id="msgpack-invalid-utf8"),
    pytest.param(msgspec.msgpack.encode(body(protocol=2, client_id=7)), MSGPACK, 400, "unsupported-protocol", id="msgpack-protocol-2"),
    pytest.param(json_bytes(body()), MSGPACK, 400, "bad-request", id="json-sent-as-msgpack"),
]  # fmt: skip


@pytest.mark.parametrize(("content", "content_type", "status", "slug"), REFUSED_BODIES)
def test_unusable_push_body_is_refused_and_writes_nothing(
    client: Client, seeded: Seeded, content: bytes, content_type: str, status: int, slug: str
) -> None:
    before = snapshot(seeded)
    response = push_raw(client, seeded.headers("participant", group="G1"), content, content_type)
    problem = assert_problem(response, status, slug)
    if slug == "unsupported-protocol":
        assert problem["supported"] == [1]
    assert snapshot(seeded) == before


@pytest.mark.parametrize(
    ("protocol", "said"),
    [(2, "asked for 2"), (None, "names no protocol"), ("1", 'asked for "1"'), (True, "asked for true")],
    ids=["two", "missing", "string", "bool"],
)
def test_unsupported_protocol_is_described_in_json_terms(
    client: Client, seeded: Seeded, protocol: Any, said: str
) -> None:
    envelope = body(protocol=protocol)
    if protocol is None:
        del envelope["protocol"]
    response = push_raw(client, seeded.headers("participant", group="G1"), json_bytes(envelope))
    problem = assert_problem(response, 400, "unsupported-protocol")
    assert said in problem["detail"]
    assert "None" not in problem["detail"]
    assert "True" not in problem["detail"]
    assert problem["supported"] == [1]


@pytest.mark.parametrize(
    ("content", "offset"),
    [
        (b'{"client_id": "\xff\xfe", "protocol": 1, "mutations": []}', 15),
        (b'{"protocol": 1, "mutations": [], "client_id": "ab\xc3\x28"}', 49),
        (b"\xff\xfe{}", 0),
    ],
    ids=["in-first-string", "in-last-string", "leading"],
)
def test_invalid_utf8_names_the_byte_of_the_body(client: Client, seeded: Seeded, content: bytes, offset: int) -> None:
    response = push_raw(client, seeded.headers("participant", group="G1"), content)
    problem = assert_problem(response, 400, "bad-request")
    assert f"byte {offset} of the body (0x{content[offset]:02x})" in problem["detail"]


# --- size limits ------------------------------------------------------------------------------------


def test_body_over_a_small_byte_limit_is_refused_with_the_limit_in_the_message(
    client_with: Callable[..., Client], seeded: Seeded
) -> None:
    small = client_with(max_push_bytes=300)
    content = json_bytes(body(mutations=[note_put(1, uid(1), body="x" * 400)]))
    before = snapshot(seeded)
    response = push_raw(small, seeded.headers("participant", group="G1"), content)
    problem = assert_problem(response, 413, "payload-too-large")
    assert "300" in problem["detail"]
    assert snapshot(seeded) == before


def test_streamed_body_without_content_length_is_cut_off_at_the_byte_limit(
    client_with: Callable[..., Client], seeded: Seeded
) -> None:
    small = client_with(max_push_bytes=300)
    content = json_bytes(body(mutations=[note_put(1, uid(1), body="x" * 4000)]))
    chunks = iter([content[i : i + 100] for i in range(0, len(content), 100)])
    before = snapshot(seeded)
    response = small.post(
        PUSH_URL,
        content=chunks,
        headers={**seeded.headers("participant", group="G1"), "Content-Type": "application/json"},
    )
    assert "content-length" not in {k.lower() for k in response.request.headers}
    problem = assert_problem(response, 413, "payload-too-large")
    assert "300" in problem["detail"]
    assert snapshot(seeded) == before


def test_body_just_under_the_byte_limit_is_accepted(client_with: Callable[..., Client], seeded: Seeded) -> None:
    content = json_bytes(body(mutations=[note_put(1, uid(1), body="x" * 100)]))
    exact = client_with(max_push_bytes=len(content))
    response = push_raw(exact, seeded.headers("participant", group="G1"), content)
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["status"] == "applied"


def test_content_length_over_the_default_mebibyte_is_refused(client: Client, seeded: Seeded) -> None:
    # A note body fits the 20,000-character limit many times over; the push itself is too big.
    content = json_bytes(body(mutations=[note_put(1, uid(1), body="x" * (1024 * 1024))]))
    assert len(content) > 1024 * 1024
    before = snapshot(seeded)
    response = push_raw(client, seeded.headers("participant", group="G1"), content)
    problem = assert_problem(response, 413, "payload-too-large")
    assert str(1024 * 1024) in problem["detail"]
    assert snapshot(seeded) == before


@pytest.mark.parametrize(("limit", "count"), [(3, 4), (1, 2), (1000, 1001)])
def test_more_mutations_than_the_limit_are_refused(
    client_with: Callable[..., Client], seeded: Seeded, limit: int, count: int
) -> None:
    app = client_with(max_push_mutations=limit)
    mutations = [note_put(i, uid(i), body="n") for i in range(1, count + 1)]
    before = snapshot(seeded)
    response = push_raw(app, seeded.headers("participant", group="G1"), json_bytes(body(mutations=mutations)))
    problem = assert_problem(response, 413, "payload-too-large")
    assert str(limit) in problem["detail"]
    assert snapshot(seeded) == before


def test_exactly_the_mutation_limit_is_accepted(client_with: Callable[..., Client], seeded: Seeded) -> None:
    app = client_with(max_push_mutations=3)
    mutations = [note_put(i, uid(i), body="n") for i in range(1, 4)]
    result = push(app, seeded.headers("participant", group="G1"), mutations)
    assert [r["status"] for r in result["results"]] == ["applied"] * 3


# --- single mutations rejected ----------------------------------------------------------------------


REJECTED_MUTATIONS = [
    pytest.param(mutation(1, "note.frobnicate", {"id": uid(1)}), "unknown-mutation-type", 422, id="unknown-type"),
    pytest.param(mutation(1, "", {}), "unknown-mutation-type", 422, id="empty-type"),
    pytest.param(mutation(1, "NOTE.PUT", {"id": uid(1), "visit_id": G1_VISIT}), "unknown-mutation-type", 422, id="type-wrong-case"),
    pytest.param(note_put(1, "not-a-uuid"), "invalid-mutation", 422, id="note-id-not-uuid"),
    pytest.param(note_put(1, uid(1)[:-1]), "invalid-mutation", 422, id="note-id-short-uuid"),
    pytest.param(note_put(1, uid(1), lat=91.0, lon=7.6), "invalid-mutation", 422, id="lat-91"),
    pytest.param(note_put(1, uid(1), lat=-90.5, lon=7.6), "invalid-mutation", 422, id="lat-minus-90.5"),
    pytest.param(note_put(1, uid(1), lat=45.0, lon=181.0), "invalid-mutation", 422, id="lon-181"),
    pytest.param(note_put(1, uid(1), lat=45.0, lon=-180.01), "invalid-mutation", 422, id="lon-minus-180.01"),
    pytest.param(note_put(1, uid(1), lat=45.0), "invalid-mutation", 422, id="lat-without-lon"),
    pytest.param(note_put(1, uid(1), body="x" * 100_000), "invalid-mutation", 422, id="body-100k-chars"),
    pytest.param(note_put(1, uid(1), tags=["t"] * 33), "invalid-mutation", 422, id="tags-33"),
    pytest.param(note_put(1, uid(1), tags=[""]), "invalid-mutation", 422, id="tag-empty"),
    pytest.param(note_put(1, uid(1), captured_at="2025-12-10T10:00:00"), "invalid-mutation", 422, id="captured-at-no-offset"),
    pytest.param(mutation(1, "note.put", {"id": uid(1)}), "invalid-mutation", 422, id="note-without-place"),
    pytest.param(note_put(1, uid(1), visit_id="no-such-visit"), "unknown-visit", 422, id="note-unknown-visit"),
    pytest.param(note_put(1, uid(1), site_id="no-such-site"), "unknown-site", 422, id="note-unknown-site"),
    pytest.param(note_put(1, uid(1), visit_id="../etc"), "invalid-mutation", 422, id="note-visit-not-slug"),
    pytest.param(mutation(1, "note.delete", {"id": uid(1)}), "not-found", 404, id="delete-missing-note"),
    pytest.param(note_put(1, uid(1), base_version=-1), "invalid-mutation", 422, id="note-base-version-negative"),
    pytest.param(feedback_put(1, uid(1), rating=7), "invalid-mutation", 422, id="rating-7"),
    pytest.param(feedback_put(1, uid(1), rating=0), "invalid-mutation", 422, id="rating-0"),
    pytest.param(feedback_put(1, uid(1), rating="5"), "invalid-mutation", 422, id="rating-string"),
    pytest.param(feedback_put(1, uid(1), answers={"overall": 7}), "invalid-mutation", 422, id="answer-rating-7"),
    pytest.param(feedback_put(1, uid(1), answers={"nope": "x"}), "invalid-answer", 422, id="answer-unknown-question"),
    pytest.param(feedback_put(1, uid(1), answers={"relevance": "extremely"}), "invalid-answer", 422, id="answer-choice-not-offered"),
    pytest.param(feedback_put(1, uid(1), answers={"relevance": 3}), "invalid-answer", 422, id="answer-number-to-choice"),
    pytest.param(feedback_put(1, uid(1), answers={"overall": "great"}), "invalid-answer", 422, id="answer-text-to-rating"),
    pytest.param(feedback_put(1, uid(1), answers={"takeaway": 4}), "invalid-answer", 422, id="answer-number-to-text"),
    pytest.param(feedback_put(1, uid(1), visit_id="no-such-visit"), "unknown-visit", 422, id="feedback-unknown-visit"),
    pytest.param(feedback_put(1, uid(1), visit_id=G2_VISIT), "forbidden", 403, id="feedback-other-group"),
    pytest.param(feedback_put(1, uid(1), comment="x" * 10_001), "invalid-mutation", 422, id="comment-too-long"),
    pytest.param(feedback_put(1, uid(1), comment="x" * 100_000), "invalid-mutation", 422, id="comment-100k-chars"),
    pytest.param(feedback_put(1, uid(1), answers={"takeaway": "x" * 100_000}), "invalid-mutation", 422, id="answer-100k-chars"),
    pytest.param(site_patch(1, G1_SITE, 1, accessibility="Step-free"), "forbidden", 403, id="participant-site-patch"),
    pytest.param(site_patch(1, "no-such-site", 1, accessibility="x"), "unknown-site", 404, id="patch-unknown-site"),
    pytest.param(site_patch(1, G1_SITE, 1, lat=91.0), "invalid-mutation", 422, id="site-lat-91"),
    pytest.param(mutation(1, "site.patch", {"site_id": G1_SITE, "fields": {}}), "invalid-mutation", 422, id="site-patch-without-base"),
]  # fmt: skip


@pytest.mark.parametrize(("bad", "slug", "status"), REJECTED_MUTATIONS)
def test_invalid_mutation_is_rejected_uses_up_its_id_and_writes_nothing(
    client: Client, seeded: Seeded, bad: dict[str, Any], slug: str, status: int
) -> None:
    headers = seeded.headers("participant", group="G1")
    before = snapshot(seeded)

    result = push(client, headers, [bad])
    assert result["last_mutation_id"] == 1
    [rejected] = result["results"]
    assert rejected["status"] == "rejected"
    assert rejected["error"]["type"] == PROBLEM + slug
    assert rejected["error"]["status"] == status
    assert rejected["error"]["detail"]
    assert "version" not in rejected

    # Nothing but the client's progress (its last id, the result kept for retries) changed.
    progress = ("sync_clients", "sync_results")
    after = snapshot(seeded)
    assert {t: rows for t, rows in after.items() if t not in progress} == {
        t: rows for t, rows in before.items() if t not in progress
    }
    assert scalar(seeded, "SELECT last_mutation_id FROM sync_clients WHERE client_id = ?", CLIENT_A) == 1

    # The id is used up: resending it is a duplicate that repeats the rejection, and the next id is processed.
    again = push(client, headers, [bad, note_put(2, uid(99), body="after the rejected one")])
    assert [r["status"] for r in again["results"]] == ["duplicate", "applied"]
    assert again["results"][0]["result"] == rejected
    assert again["last_mutation_id"] == 2


def test_rejected_mutation_in_the_middle_of_a_batch_does_not_stop_the_rest(client: Client, seeded: Seeded) -> None:
    headers = seeded.headers("participant", group="G1")
    result = push(
        client,
        headers,
        [
            note_put(1, uid(1), body="first"),
            feedback_put(2, uid(2), rating=7),
            note_put(3, uid(3), lat=45.0),
            note_put(4, uid(4), body="fourth"),
        ],
    )
    assert [r["status"] for r in result["results"]] == ["applied", "rejected", "rejected", "applied"]
    assert result["last_mutation_id"] == 4
    assert scalar(seeded, "SELECT COUNT(*) FROM notes") == 2
    assert scalar(seeded, "SELECT COUNT(*) FROM feedback") == 0


@pytest.mark.parametrize(
    "client_time",
    ["2025-12-10T10:00:00+01:00", "2025-12-10T09:00:00Z", "2000-01-01T00:00:00Z", "2025-12-10T10:00:00.123456-05:00"],
)
def test_plausible_client_time_is_accepted(client: Client, seeded: Seeded, client_time: str) -> None:
    result = push(
        client,
        seeded.headers("participant", group="G1"),
        [mutation(1, "note.put", {"id": uid(1), "visit_id": G1_VISIT}, client_time)],
    )
    assert result["results"][0]["status"] == "applied", result


# --- pull ---------------------------------------------------------------------------------------------


def cursor_of(value: Any) -> str:
    """A cursor with arbitrary contents, encoded as the server encodes its own."""
    return base64.urlsafe_b64encode(msgspec.msgpack.encode(value)).decode().rstrip("=")


BAD_PULLS = [
    pytest.param({"protocol": "2"}, "unsupported-protocol", id="protocol-2"),
    pytest.param({"protocol": "2", "cursor": "garbage!"}, "unsupported-protocol", id="protocol-2-bad-cursor"),
    pytest.param({"protocol": "0"}, "unsupported-protocol", id="protocol-0"),
    pytest.param({"protocol": "one"}, "bad-request", id="protocol-not-int"),
    pytest.param({"cursor": "garbage!"}, "bad-request", id="cursor-garbage"),
    pytest.param({"cursor": "AAAA"}, "bad-request", id="cursor-not-msgpack"),
    pytest.param({"cursor": "%%%"}, "bad-request", id="cursor-not-base64"),
    pytest.param({"cursor": cursor_of([2, 5])}, "bad-request", id="cursor-other-format-version"),
    pytest.param({"cursor": cursor_of([1, -1])}, "bad-request", id="cursor-negative-seq"),
    pytest.param({"cursor": cursor_of([1, "5"])}, "bad-request", id="cursor-seq-string"),
    pytest.param({"cursor": cursor_of({"v": 1, "seq": 5})}, "bad-request", id="cursor-map"),
    pytest.param({"cursor": cursor_of([1, 2**63])}, "bad-request", id="cursor-seq-over-int64"),
    pytest.param({"cursor": "A" * 201}, "bad-request", id="cursor-too-long"),
    pytest.param({"limit": "0"}, "bad-request", id="limit-0"),
    pytest.param({"limit": "-5"}, "bad-request", id="limit-negative"),
    pytest.param({"limit": "ten"}, "bad-request", id="limit-not-int"),
    pytest.param({"client_id": "device-1"}, "bad-request", id="client-id-not-uuid"),
    pytest.param({"client_id": CLIENT_A + "0"}, "bad-request", id="client-id-too-long"),
]


@pytest.mark.parametrize(("params", "slug"), BAD_PULLS)
def test_bad_pull_query_is_refused_with_400(client: Client, seeded: Seeded, params: dict[str, str], slug: str) -> None:
    before = snapshot(seeded)
    response = client.get(PULL_URL, params=params, headers=seeded.headers("participant", group="G1"))
    problem = assert_problem(response, 400, slug)
    if slug == "unsupported-protocol":
        assert problem["supported"] == [1]
    assert snapshot(seeded) == before


# --- authentication and event boundaries --------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "headers", "status", "slug"),
    [
        ("POST", PUSH_URL, {}, 401, "unauthorized"),
        ("GET", PULL_URL, {}, 401, "unauthorized"),
        ("POST", PUSH_URL, {"Authorization": "Bearer nope"}, 401, "unauthorized"),
        ("POST", PUSH_URL.replace("turin-sse-2025", "other-event"), None, 404, "not-found"),
        ("GET", PULL_URL.replace("turin-sse-2025", "other-event"), None, 404, "not-found"),
    ],
)
def test_push_and_pull_need_a_token_of_this_event(
    client: Client, seeded: Seeded, method: str, url: str, headers: dict[str, str] | None, status: int, slug: str
) -> None:
    headers = seeded.headers("participant", group="G1") if headers is None else headers
    before = snapshot(seeded)
    response = client.request(
        method, url, content=json_bytes(body()), headers={**headers, "Content-Type": "application/json"}
    )
    assert_problem(response, status, slug)
    assert snapshot(seeded) == before


# --- MessagePack ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", [MSGPACK, "application/x-msgpack", "application/vnd.msgpack", "application/msgpack; charset=binary"]
)
def test_msgpack_push_is_accepted_and_answered_in_msgpack(client: Client, seeded: Seeded, content_type: str) -> None:
    headers = {**seeded.headers("participant", group="G1"), "Content-Type": content_type, "Accept": MSGPACK}
    response = client.post(PUSH_URL, content=msgspec.msgpack.encode(body()), headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(MSGPACK)
    decoded = msgspec.msgpack.decode(response.content)
    assert decoded == {"last_mutation_id": 1, "results": [{"id": 1, "status": "applied", "version": 1}]}


def test_msgpack_push_without_accept_gets_json(client: Client, seeded: Seeded) -> None:
    headers = {**seeded.headers("participant", group="G1"), "Content-Type": MSGPACK}
    response = client.post(PUSH_URL, content=msgspec.msgpack.encode(body()), headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["results"][0]["status"] == "applied"


def test_json_push_without_content_type_is_read_as_json(client: Client, seeded: Seeded) -> None:
    response = client.post(PUSH_URL, content=json_bytes(body()), headers=seeded.headers("participant", group="G1"))
    assert response.status_code == 200, response.text


def test_unknown_fields_from_newer_clients_are_ignored(client: Client, seeded: Seeded) -> None:
    extra = body(device={"os": "android"}, mutations=[{**note_put(1, uid(1), body="x"), "priority": 3}])
    extra["mutations"][0]["args"]["mood"] = "happy"
    response = push_raw(client, seeded.headers("participant", group="G1"), json_bytes(extra))
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["status"] == "applied"


# --- the whole set ---------------------------------------------------------------------------------


def test_no_bad_input_causes_a_server_error(client: Client, seeded: Seeded) -> None:
    # One sweep over every case above in one app, so that a 5xx cannot hide behind a status mismatch.
    headers = seeded.headers("participant", group="G1")
    statuses: dict[str, int] = {}
    for case in REFUSED_BODIES:
        content, content_type, _, _ = case.values
        statuses[f"push {case.id}"] = push_raw(client, headers, content, content_type).status_code  # type: ignore[arg-type]
    for case in BAD_PULLS:
        (params, _) = case.values
        statuses[f"pull {case.id}"] = client.get(PULL_URL, params=params, headers=headers).status_code  # type: ignore[arg-type]
    for n, case in enumerate(REJECTED_MUTATIONS, start=1):
        bad = {**case.values[0], "id": n}  # type: ignore[dict-item]
        statuses[f"mutation {case.id}"] = push_raw(client, headers, json_bytes(body(mutations=[bad]))).status_code
    errors = {name: status for name, status in statuses.items() if status >= 500}
    assert not errors, errors


def test_the_largest_mutation_id_is_accepted(client: Client, seeded: Seeded) -> None:
    # 2**53 - 1 is the cap (docs §3): every JSON implementation holds it exactly.
    result = push_raw(
        client, seeded.headers("participant", group="G1"), json_bytes(body(mutations=[note_put(2**53 - 1, uid(1))]))
    )
    assert result.status_code == 200, result.text
    assert result.json()["results"][0]["status"] == "out_of_order"  # a gap from 0, but a valid id
