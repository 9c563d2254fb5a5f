"""Property: devices of every role edit offline and sync through a hostile network, then converge.

Several field clients (two installs of one participant, a second participant, a host, an
organizer) make random offline notes, edits, deletes, shares, feedback and site corrections,
and sync through a transport that drops requests, drops responses after the server committed,
delivers requests twice, replays stale requests late, and kills the client mid-sync. After
everyone syncs on a healthy network:

* every outbox is empty, and no note exists twice;
* every replica equals what a fresh full pull shows that account;
* every value anyone typed is still on the server — current, in a `conflicts` list, or in the
  history of applied changes — unless the user deleted the note while seeing that very value.
"""

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient

from sync.client import FieldClient, SyncError
from tests.conftest import EVENT_ID, make_app
from tests.databases import Seeded, copy_for
from tests.sync_helpers import read

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

VISIT = "d1-g1-casa-quartiere-san-salvario"
FEEDBACK_VISITS = ["d1-g1-casa-quartiere-san-salvario", "d2-g1-barrito"]
SITE = "casa-quartiere-san-salvario"
# Device name -> account id. p1a and p1b are two installs of one participant.
DEVICES = {
    "p1a": "p-nguyen-thi-hoa",
    "p1b": "p-nguyen-thi-hoa",
    "p2": "p-aicha-diallo",
    "host": "host-san-salvario",
    "org": "org-marta",
}
PARTICIPANTS = ["p1a", "p1b", "p2"]
SITE_EDITORS = ["host", "org"]
FAULTS = ["drop_request", "drop_response", "duplicate", "replay_later", "crash_before", "crash_after"]


class SimulatedCrash(BaseException):
    """The app is killed: nothing after this point runs, only what was committed survives."""


class FaultyTransport(httpx.BaseTransport):
    """Forwards to the in-process server, misbehaving as planned."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.plan: list[str] = []
        self.late: list[httpx.Request] = []

    def deliver(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.read()
        return response

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        while self.late:  # a stale copy of an earlier request finally arrives
            self.deliver(self.late.pop(0))
        fault = self.plan.pop(0) if self.plan else None
        if fault == "drop_request":
            raise httpx.ConnectError("dropped before the server", request=request)
        if fault == "crash_before":
            raise SimulatedCrash
        response = self.deliver(request)
        if fault == "drop_response":
            raise httpx.ReadTimeout("response lost after the server committed", request=request)
        if fault == "duplicate":
            response = self.deliver(request)
        if fault == "replay_later":
            self.late.append(request)
        if fault == "crash_after":
            raise SimulatedCrash
        return response


@dataclass
class Device:
    name: str
    path: Path
    faults: FaultyTransport
    http: httpx.Client
    client: FieldClient = field(init=False)
    typed: list[tuple[str, str, str, Any]] = field(default_factory=list)  # entity, id, field, value
    seen_at_delete: dict[str, str] = field(default_factory=dict)  # note id -> body shown when deleted

    def __post_init__(self) -> None:
        self.open()

    def open(self) -> None:
        self.client = FieldClient.resume(self.path, http=self.http, sleep=lambda _: None, max_attempts=3, page_limit=25)

    def restart(self) -> None:
        self.client.replica.close()
        self.open()


@contextmanager
def world(template: Seeded) -> Iterator[tuple[TestClient[Litestar], dict[str, Device], dict[str, str], Seeded]]:
    """A fresh copy of the demo event for one example, on the engine the run is on."""
    with tempfile.TemporaryDirectory() as tmp, copy_for(template, Path(tmp) / "server.db") as where:
        tokens = {a.id: a.token for a in where.accounts.values()}
        with TestClient(app=make_app(where)) as server:
            devices: dict[str, Device] = {}
            for name, account_id in DEVICES.items():
                faults = FaultyTransport(server._transport)
                http = httpx.Client(transport=faults, base_url=str(server.base_url))
                path = Path(tmp) / f"{name}.db"
                setup = FieldClient(str(server.base_url), tokens[account_id], path, http=http, sleep=lambda _: None)
                setup.login()
                setup.sync()
                setup.close()
                devices[name] = Device(name, path, faults, http)
            yield server, devices, tokens, where
            for device in devices.values():
                device.client.close()
                device.http.close()


unique = st.uuids().map(lambda u: f"{u.hex[:8]} ✎ «{u.hex[8:12]}» تعليق")
actions = st.one_of(
    st.tuples(st.just("note"), st.sampled_from([*PARTICIPANTS, "org"]), unique, st.booleans()),
    st.tuples(st.just("edit"), st.sampled_from(PARTICIPANTS), st.integers(0, 5), unique),
    st.tuples(st.just("share"), st.sampled_from(PARTICIPANTS), st.integers(0, 5), st.booleans()),
    st.tuples(st.just("delete"), st.sampled_from(PARTICIPANTS), st.integers(0, 5)),
    st.tuples(
        st.just("feedback"), st.sampled_from(PARTICIPANTS), st.sampled_from(FEEDBACK_VISITS), st.integers(1, 5), unique
    ),
    st.tuples(
        st.just("site"), st.sampled_from(SITE_EDITORS), st.sampled_from(["accessibility", "description.fr"]), unique
    ),
    st.tuples(
        st.just("sync"), st.sampled_from(list(DEVICES)), st.lists(st.sampled_from([*FAULTS, "ok", "ok"]), max_size=4)
    ),
)


def act(devices: dict[str, Device], action: tuple[Any, ...]) -> None:
    kind, name, *rest = action
    device = devices[name]
    client = device.client
    notes = [n for n in client.notes() if n.author_id == DEVICES[name] or n.pending]
    if kind == "note":
        body, share = rest
        note_id = client.add_note(body, visit_id=VISIT, share_with_organizers=share, note_id=str(uuid.uuid4()))
        device.typed.append(("note", note_id, "body", body))
    elif kind in ("edit", "share", "delete") and notes:
        note = notes[rest[0] % len(notes)]
        if kind == "edit":
            client.edit_note(note.id, body=rest[1])
            device.typed.append(("note", note.id, "body", rest[1]))
        elif kind == "share":
            client.edit_note(note.id, share_with_organizers=rest[1])
        else:
            device.seen_at_delete[note.id] = note.body
            client.delete_note(note.id)
    elif kind == "feedback":
        visit_id, rating, comment = rest
        feedback_id = client.put_feedback(visit_id, rating=rating, comment=comment)
        device.typed.append(("feedback", feedback_id, "comment", comment))
    elif kind == "site":
        name_, value = rest
        fields = {"description": {"fr": value}} if name_ == "description.fr" else {name_: value}
        client.patch_site(SITE, **fields)
        device.typed.append(("site", SITE, name_, value))
    elif kind == "sync":
        device.faults.plan = list(rest[0])
        try:
            client.sync()
        except SimulatedCrash:
            device.restart()
        except SyncError:
            pass  # offline for now: the outbox waits
        device.faults.plan = []


def server_state(server: TestClient[Litestar], token: str) -> dict[tuple[str, str], tuple[int, Any]]:
    """Everything a full pull shows this token's account."""
    state: dict[tuple[str, str], tuple[int, Any]] = {}
    cursor = ""
    while True:
        page = server.get(
            f"/api/v1/events/{EVENT_ID}/sync/pull",
            params={"cursor": cursor, "limit": 1000},
            headers={"Authorization": f"Bearer {token}"},
        ).json()
        for change in page["changes"]:
            if change["op"] == "put":
                state[(change["entity"], change["id"])] = (change["version"], change["data"])
        cursor = page["cursor"]
        if not page["has_more"]:
            return state


def recorded_values(where: Seeded, entity: str, record_id: str, name: str) -> list[Any]:
    """Every value a field of a record has had on the server: current, conflicts, history."""
    table = {"note": "notes", "feedback": "feedback", "site": "sites"}[entity]
    rows = read(where, f"SELECT * FROM {table} WHERE id = ?", record_id)
    if not rows:  # a second device's feedback merged into the first: follow the alias
        alias = read(where, "SELECT feedback_id FROM feedback_aliases WHERE alias_id = ?", record_id)
        assert alias, f"{entity} {record_id} vanished"
        return recorded_values(where, entity, alias[0][0], name)
    [row] = rows
    current = msgspec.json.decode(row["description"]).get(name.split(".")[1]) if "." in name else row[name]
    values = [current]
    values += [c["value"] for c in msgspec.json.decode(row["conflicts"]) if c["field"] == name]
    for (changes,) in read(where, "SELECT changes FROM history WHERE entity = ? AND entity_id = ?", entity, row["id"]):
        old_new = msgspec.json.decode(changes).get(name)
        if old_new:
            values += old_new
    return values


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(script=st.lists(actions, min_size=5, max_size=30))
def test_devices_converge_and_lose_nothing_through_a_hostile_network(
    seeded_template: Seeded, script: list[tuple[Any, ...]]
) -> None:
    with world(seeded_template) as (server, devices, tokens, where):
        for action in script:
            act(devices, action)
        for _ in range(2):  # heal: everyone syncs on a good network, twice so all see all
            for device in devices.values():
                device.client.sync()

        for device in devices.values():
            assert device.client.status().pending == 0, device.name
            expected = server_state(server, tokens[DEVICES[device.name]])
            replica = {
                (r.entity, r.id): (r.version, r.data)
                for e in ("event", "site", "visit", "group", "question", "note", "feedback")
                for r in device.client.records(e)
            }
            assert replica == expected, device.name

        for device in devices.values():
            # A device's earlier values of a field may be replaced by its own later edit before they
            # ever leave it; what must survive is the last thing each device typed in each field.
            last_typed = {(e, r, n): v for e, r, n, v in device.typed}
            for (entity, record_id, name), value in last_typed.items():
                if entity == "note" and device.seen_at_delete.get(record_id) == value:
                    continue  # the user deleted the note while looking at this text
                found = recorded_values(where, entity, record_id, name)
                deleted_by_someone = entity == "note" and any(record_id in d.seen_at_delete for d in devices.values())
                if deleted_by_someone and value not in found:
                    # Deleted by another install of the same person: only what that install had not seen is kept.
                    seen = {d.seen_at_delete.get(record_id) for d in devices.values()}
                    assert value in seen, (device.name, entity, record_id, value)
                    continue
                assert value in found, (device.name, entity, record_id, name, value, found)

        ids = [r[0] for r in read(where, "SELECT id FROM notes")]
        assert len(ids) == len(set(ids))
