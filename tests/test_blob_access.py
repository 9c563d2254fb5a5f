"""Content addressing is no capability: knowing a photo's SHA-256 grants neither its bytes nor its existence.

An account holds a blob once it uploaded the bytes in its event; a note's reference gives access only
when its author did, and only to whoever may see that note. To anyone else a stored blob looks exactly
like one nobody uploaded. Real SQLite file, real data directory, the app in-process.
"""

import datetime
import hashlib
import io
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import EVENT_ID, Seeded, make_app
from litestar import Litestar
from litestar.testing import TestClient
from PIL import Image
from sync_helpers import note_put, pull, pull_all, push, scalar, uid

from schemas.accounts import Account
from schemas.places import Event
from server.storage.accounts import create_account
from server.storage.catalog import get_site, put_event, put_site
from server.storage.db import Database, migrate

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

AUTHOR = "p-nguyen-thi-hoa"
OTHER = "p-aicha-diallo"
ORGANIZER = "org-marta"
STRANGER_EVENT = "lyon-sse-2026"
STRANGER = "p-lyon-camille"
# Headers that differ between any two responses, whatever they are about.
VOLATILE = {"date", "x-request-id"}

Client = TestClient[Litestar]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def jpeg(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    """A real JPEG of seeded noise: every seed gives other bytes, hence another blob."""
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), random.Random(seed).randbytes(width * height * 3)).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture
def tokens(seeded: Seeded) -> dict[str, str]:
    """Every account's token, with an account of another event in the same database."""
    db = seeded.store()
    try:
        with db.write() as conn:
            event = Event(
                id=STRANGER_EVENT,
                title="SSE Lyon",
                starts_on=datetime.date(2026, 5, 4),
                ends_on=datetime.date(2026, 5, 8),
                timezone="Europe/Paris",
                venue="Lyon",
            )
            put_event(conn, event)
            site = get_site(conn, EVENT_ID, "triciclo")
            assert site is not None
            put_site(conn, STRANGER_EVENT, site)  # a place for its notes
            stranger = create_account(
                conn, Account(id=STRANGER, name="Camille Lefèvre", role="organizer", event_id=STRANGER_EVENT)
            )
    finally:
        db.close()
    return {**{a.id: a.token for a in seeded.accounts.values()}, STRANGER: stranger.token}


@pytest.fixture
def api(seeded: Seeded, tmp_path: Path, tokens: dict[str, str], blob_store: str) -> Iterator[Client]:
    with TestClient(app=make_app(seeded, data_dir=tmp_path / "data", blob_store=blob_store)) as client:
        yield client


def auth(tokens: dict[str, str], account: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[account]}"}


def blob_url(account: str, digest: str) -> str:
    event = STRANGER_EVENT if account == STRANGER else EVENT_ID
    return f"/api/v1/events/{event}/blobs/{digest}"


def attach(data: bytes) -> dict[str, Any]:
    return {"sha256": sha(data), "media_type": "image/jpeg", "bytes": len(data), "caption": "Cortile, Via Nizza"}


def push_note(api: Client, headers: dict[str, str], note: int, data: bytes, mutation: int = 1, **args: Any) -> Any:
    result = push(
        api, headers, [note_put(mutation, uid(note), body=f"nota {note}", attachments=[attach(data)], **args)]
    )
    assert result["results"][0]["status"] == "applied", result
    return result["results"][0]


def upload(api: Client, account: str, tokens: dict[str, str], data: bytes) -> httpx.Response:
    return api.put(blob_url(account, sha(data)), content=data, headers=auth(tokens, account))


def comparable(response: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body, with what differs in every response left out."""
    headers = {k: v for k, v in response.headers.items() if k not in VOLATILE}
    body = response.content.replace(response.url.path.encode(), b"<path>")
    return response.status_code, headers, body


@pytest.fixture
def participants_photo(api: Client, tokens: dict[str, str]) -> bytes:
    """A photo the author uploaded and attached to a note shared with the organizers."""
    data = jpeg(seed=41)
    push_note(api, auth(tokens, AUTHOR), 1, data, share_with_organizers=True)
    assert upload(api, AUTHOR, tokens, data).status_code == 201
    return data


# --- a reference to somebody else's bytes --------------------------------------------------


@pytest.mark.parametrize("attacker", [OTHER, STRANGER], ids=["other-participant", "account-of-another-event"])
def test_a_note_naming_somebody_elses_photo_gets_neither_its_bytes_nor_its_status(
    api: Client, tokens: dict[str, str], participants_photo: bytes, attacker: str
) -> None:
    digest = sha(participants_photo)
    headers = auth(tokens, attacker)
    if attacker == STRANGER:
        push_url = f"/api/v1/events/{STRANGER_EVENT}/sync/push"
        body = {"client_id": "00000000-0000-4000-8000-00000000000c", "protocol": 1, "mutations": []}
        note = note_put(1, uid(9), body="mine", attachments=[attach(participants_photo)])
        note["args"].pop("visit_id")
        note["args"]["site_id"] = "triciclo"
        body["mutations"] = [note]
        result = api.post(push_url, json=body, headers=headers).json()["results"][0]
    else:
        result = push_note(api, headers, 9, participants_photo)
        assert pull_all(api, headers).data("note", uid(9))["attachments"][0]["status"] == "pending"
    assert result.get("pending_blobs") == [digest], result  # pending until it uploads the bytes itself
    for query in ("", "?w=120"):
        response = api.get(blob_url(attacker, digest) + query, headers=headers)
        assert response.status_code == 404
        assert participants_photo not in response.content


@pytest.mark.parametrize("how", ["unshared", "deleted"])
def test_an_organizers_own_reference_stops_giving_access_once_the_author_unshares_or_deletes(
    api: Client, tokens: dict[str, str], participants_photo: bytes, how: str
) -> None:
    digest = sha(participants_photo)
    organizer, author = auth(tokens, ORGANIZER), auth(tokens, AUTHOR)
    push_note(api, organizer, 20, participants_photo)
    assert api.get(blob_url(ORGANIZER, digest), headers=organizer).status_code == 200  # it sees the shared note
    laptop = pull_all(api, organizer)
    assert laptop.data("note", uid(20))["attachments"][0]["status"] == "available"
    other = pull_all(api, auth(tokens, OTHER))
    if how == "unshared":
        kept = {"body": "nota 1", "attachments": [attach(participants_photo)]}
        change = note_put(2, uid(1), share_with_organizers=False, base_version=2, **kept)
    else:
        change = {"id": 2, "type": "note.delete", "args": {"id": uid(1), "base_version": 2}}
    assert push(api, author, [change])["results"][0]["status"] == "applied"
    for query in ("", "?w=120"):
        assert api.get(blob_url(ORGANIZER, digest) + query, headers=organizer).status_code == 404
    assert pull_all(api, organizer).data("note", uid(20))["attachments"][0]["status"] == "pending"
    # The organizer's device learns it from its next pull: its note got a new version.
    laptop.apply(pull(api, organizer, laptop.cursor))
    assert laptop.data("note", uid(20))["attachments"][0]["status"] == "pending"
    assert api.head(blob_url(ORGANIZER, digest), headers=organizer).status_code == 404
    assert pull(api, auth(tokens, OTHER), other.cursor)["changes"] == []  # nothing of it reaches others
    # The author keeps its photo while its note lives.
    if how == "unshared":
        assert api.get(blob_url(AUTHOR, digest), headers=author).content == participants_photo


def test_uploading_the_bytes_is_the_proof_that_makes_a_reference_available(
    api: Client, tokens: dict[str, str], participants_photo: bytes, seeded: Seeded
) -> None:
    other = auth(tokens, OTHER)
    push_note(api, other, 9, participants_photo)
    before = pull_all(api, other)
    response = upload(api, OTHER, tokens, participants_photo)
    assert response.status_code == 201  # as for bytes nobody uploaded before: the body is read and verified
    replica = pull_all(api, other)
    note = replica.data("note", uid(9))
    assert note["attachments"][0]["status"] == "available"
    assert replica.records[("note", uid(9))]["version"] == before.records[("note", uid(9))]["version"] + 1
    assert api.get(blob_url(OTHER, sha(participants_photo)), headers=other).content == participants_photo
    assert scalar(seeded, "SELECT COUNT(*) FROM blobs") == 1  # stored once


def test_a_strangers_note_gets_no_new_version_when_somebody_else_uploads_the_bytes(
    api: Client, tokens: dict[str, str]
) -> None:
    data = jpeg(seed=42)
    other, author = auth(tokens, OTHER), auth(tokens, AUTHOR)
    push_note(api, other, 9, data)  # names the hash first
    version = pull_all(api, other).records[("note", uid(9))]["version"]
    push_note(api, author, 1, data)
    assert upload(api, AUTHOR, tokens, data).status_code == 201
    # A new version would tell the other participant that somebody holds those bytes.
    replica = pull_all(api, other)
    assert replica.records[("note", uid(9))]["version"] == version
    assert replica.data("note", uid(9))["attachments"][0]["status"] == "pending"


def test_an_organizers_own_reference_becomes_available_when_the_author_shares_the_note(
    api: Client, tokens: dict[str, str]
) -> None:
    data = jpeg(seed=48)
    author, organizer = auth(tokens, AUTHOR), auth(tokens, ORGANIZER)
    push_note(api, author, 1, data)  # private for now
    assert upload(api, AUTHOR, tokens, data).status_code == 201
    assert push_note(api, organizer, 20, data)["pending_blobs"] == [sha(data)]
    laptop = pull_all(api, organizer)
    assert laptop.data("note", uid(20))["attachments"][0]["status"] == "pending"
    kept = {"body": "nota 1", "attachments": [attach(data)]}
    assert push(api, author, [note_put(2, uid(1), share_with_organizers=True, base_version=2, **kept)])
    laptop.apply(pull(api, organizer, laptop.cursor))
    assert laptop.data("note", uid(20))["attachments"][0]["status"] == "available"
    assert api.get(blob_url(ORGANIZER, sha(data)), headers=organizer).content == data


# --- no oracle: a stored blob looks to a stranger exactly like one nobody uploaded -----------


@pytest.mark.parametrize("asker", [OTHER, ORGANIZER, STRANGER], ids=["other-participant", "organizer", "other-event"])
def test_head_tells_who_did_not_upload_a_blob_the_same_as_for_one_nobody_uploaded(
    api: Client, tokens: dict[str, str], asker: str
) -> None:
    data, never = jpeg(seed=43), jpeg(seed=44)
    author = auth(tokens, AUTHOR)
    push_note(api, author, 1, data)  # private: the organizer may not see it either
    assert upload(api, AUTHOR, tokens, data).status_code == 201
    part = {"Content-Range": f"bytes 0-99/{len(data)}"}
    assert api.put(blob_url(AUTHOR, sha(data)), content=data[:100], headers=author | part).status_code == 200
    headers = auth(tokens, asker)
    stored = api.head(blob_url(asker, sha(data)), headers=headers)
    unknown = api.head(blob_url(asker, sha(never)), headers=headers)
    assert comparable(stored) == comparable(unknown)
    assert (stored.status_code, stored.headers["upload-offset"]) == (404, "0")


@pytest.mark.parametrize("asker", [OTHER, STRANGER], ids=["other-participant", "other-event"])
@pytest.mark.parametrize("resumable", [False, True], ids=["whole", "resumable"])
def test_put_of_bytes_stored_for_somebody_else_answers_as_for_new_bytes(
    api: Client, tokens: dict[str, str], asker: str, resumable: bool
) -> None:
    data, fresh = jpeg(seed=45), jpeg(seed=46)
    first = upload(api, AUTHOR, tokens, data)
    assert first.status_code == 201
    headers = auth(tokens, asker)

    def put(payload: bytes) -> httpx.Response:
        url = blob_url(asker, sha(payload))
        if not resumable:
            return api.put(url, content=payload, headers=headers)
        return api.put(url, content=payload[:100], headers=headers | {"Content-Range": f"bytes 0-99/{len(payload)}"})

    # Wrong bytes under a stored hash are read and refused like any: no shortcut tells it is stored.
    junk = bytes(len(data))
    refused = api.put(blob_url(asker, sha(data)), content=junk, headers=headers)
    assert refused.status_code == 422
    stored, new = put(data), put(fresh)
    assert stored.status_code == new.status_code == (308 if resumable else 201)
    assert set(stored.headers) == set(new.headers)
    if not resumable:
        assert stored.json().keys() == new.json().keys()
        # When "it" was created is when this account uploaded it, not when somebody else first did.
        assert stored.json()["created_at"] > first.json()["created_at"]


def test_one_accounts_unfinished_upload_is_its_own(api: Client, tokens: dict[str, str]) -> None:
    data = jpeg(300, 200, seed=47)
    digest = sha(data)
    author, other = auth(tokens, AUTHOR), auth(tokens, OTHER)
    first = {"Content-Range": f"bytes 0-999/{len(data)}"}
    assert api.put(blob_url(AUTHOR, digest), content=data[:1000], headers=author | first).status_code == 308
    assert api.head(blob_url(OTHER, digest), headers=other).headers["upload-offset"] == "0"
    # The other account starts its own upload from 0: neither 409 nor the author's offset.
    assert api.put(blob_url(OTHER, digest), content=data[:1000], headers=other | first).status_code == 308
    rest = {"Content-Range": f"bytes 1000-{len(data) - 1}/{len(data)}"}
    assert api.put(blob_url(AUTHOR, digest), content=data[1000:], headers=author | rest).status_code == 201
    assert api.head(blob_url(OTHER, digest), headers=other).headers["upload-offset"] == "1000"
    assert api.put(blob_url(OTHER, digest), content=data[1000:], headers=other | rest).status_code == 201


# --- upgrading a database whose blobs were uploaded before uploads were recorded -------------


@pytest.mark.sqlite_only  # SQLite's migration 6; PostgreSQL's schema starts with blob owners
def test_upgrading_takes_the_first_note_to_reference_a_blob_as_its_uploaders(
    seeded: Seeded, tmp_path: Path, tokens: dict[str, str]
) -> None:
    shared, bobs = jpeg(seed=50), jpeg(seed=51)
    with TestClient(app=make_app(seeded, data_dir=tmp_path / "data")) as api:
        push_note(api, auth(tokens, AUTHOR), 1, shared)  # first: the photographer
        push_note(api, auth(tokens, OTHER), 2, shared)  # later: someone who learnt the hash
        push_note(api, auth(tokens, OTHER), 3, bobs, mutation=2)
        assert upload(api, AUTHOR, tokens, shared).status_code == 201
        assert upload(api, OTHER, tokens, bobs).status_code == 201
    conn = sqlite3.connect(seeded.path)
    with conn:  # the database as version 5 left it
        conn.execute("DROP TABLE blob_owners")
        conn.execute("DELETE FROM schema_migrations WHERE version = 6")
    conn.close()
    db = Database(seeded.path)
    try:
        assert 6 in migrate(db)
    finally:
        db.close()
    owners = {(r[0], r[1]) for r in sqlite3.connect(seeded.path).execute("SELECT account_id, sha256 FROM blob_owners")}
    assert owners == {(AUTHOR, sha(shared)), (OTHER, sha(bobs))}
