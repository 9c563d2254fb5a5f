"""Push: every mutation processed exactly once, concurrent edits merged field by field, losing values kept."""

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
import pytest
from conftest import Seeded
from litestar import Litestar
from litestar.testing import TestClient
from sync_helpers import (
    CLIENT_A,
    CLIENT_B,
    G1_SITE,
    G1_VISIT,
    G2_SITE,
    G2_VISIT,
    PROBLEM,
    feedback_put,
    mutation,
    note_put,
    pull_all,
    push,
    rows,
    scalar,
    site_patch,
    snapshot,
    uid,
)

from schemas.accounts import Account
from schemas.sync import PushRequest
from server.services import push as push_service
from server.storage.accounts import create_account
from server.storage.db import Database

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

Client = TestClient[Litestar]
NOTE = "00000000-0000-4000-8000-000000000001"
NOTE_2 = "00000000-0000-4000-8000-000000000002"
FEEDBACK_A = "00000000-0000-4000-8000-0000000000f1"
FEEDBACK_B = "00000000-0000-4000-8000-0000000000f2"
PLENARY_VISIT = "d1-plenary-opening"
SECOND_HOST = "host-san-salvario-2"


def headers_of(seeded: Seeded, account_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {seeded.accounts[account_id].token}"}


def statuses(result: dict[str, Any]) -> list[str]:
    return [r["status"] for r in result["results"]]


def progress(seeded: Seeded) -> dict[str, Any]:
    """Everything a push may write, without the clients' last-seen times (a re-send may refresh them)."""
    state = snapshot(seeded)
    state["sync_clients"] = [
        tuple(r)
        for r in rows(
            seeded,
            "SELECT account_id, client_id, last_mutation_id FROM sync_clients ORDER BY account_id, client_id",
        )
    ]
    return state


def note_row(seeded: Seeded, note_id: str = NOTE) -> dict[str, Any]:
    [row] = rows(seeded, "SELECT * FROM notes WHERE id = ?", note_id)
    note = dict(row)
    note["tags"] = msgspec.json.decode(note["tags"])
    note["conflicts"] = msgspec.json.decode(note["conflicts"])
    return note


def feedback_rows(seeded: Seeded) -> list[dict[str, Any]]:
    found = []
    for row in rows(seeded, "SELECT * FROM feedback ORDER BY id"):
        feedback = dict(row)
        feedback["answers"] = msgspec.json.decode(feedback["answers"])
        feedback["conflicts"] = msgspec.json.decode(feedback["conflicts"])
        found.append(feedback)
    return found


def site_row(seeded: Seeded, site_id: str = G1_SITE) -> dict[str, Any]:
    [row] = rows(seeded, "SELECT * FROM sites WHERE id = ?", site_id)
    site = dict(row)
    for name in ("description", "themes", "conflicts"):
        site[name] = msgspec.json.decode(site[name])
    return site


@pytest.fixture
def p1(seeded: Seeded) -> dict[str, str]:
    """The first G1 participant's token."""
    return seeded.headers("participant", group="G1")


@pytest.fixture
def second_host(seeded: Seeded, db: Database) -> dict[str, str]:
    """A second host of the San Salvario community house."""
    with db.write() as conn:
        account = create_account(
            conn,
            Account(id=SECOND_HOST, name="Second host", role="host", event_id="turin-sse-2025", site_ids=[G1_SITE]),
        )
    return {"Authorization": f"Bearer {account.token}"}


# --- exactly once -------------------------------------------------------------------------------------


def test_same_batch_sent_twice_is_all_duplicate_and_changes_nothing(
    client: Client, seeded: Seeded, p1: dict[str, str]
) -> None:
    batch = [
        note_put(1, NOTE, body="first"),
        note_put(2, NOTE, body="second", base_version=1),
        feedback_put(3, FEEDBACK_A, rating=4),
    ]
    first = push(client, p1, batch)
    assert statuses(first) == ["applied", "applied", "applied"]
    assert first["last_mutation_id"] == 3
    before = progress(seeded)

    again = push(client, p1, batch)

    assert statuses(again) == ["duplicate"] * 3
    assert again["last_mutation_id"] == 3
    assert all("version" not in r and "error" not in r for r in again["results"])
    assert [r["result"] for r in again["results"]] == first["results"]
    assert progress(seeded) == before


@pytest.mark.parametrize(
    ("setup", "sent", "status"),
    [
        ([], [note_put(1, NOTE, body="kept")], "applied"),
        ([], [note_put(1, NOTE, visit_id="no-such-visit")], "unknown-visit"),
        ([], [feedback_put(1, FEEDBACK_A, visit_id=G2_VISIT, rating=3)], "forbidden"),
        # Another install changes the body after mutation 1; mutation 2, from base 1, conflicts.
        (
            [(CLIENT_A, [note_put(1, NOTE, body="a")]), (CLIENT_B, [note_put(1, NOTE, body="b", base_version=1)])],
            [note_put(1, NOTE, body="a"), note_put(2, NOTE, body="mine", base_version=1)],
            "conflict",
        ),
    ],
    ids=["applied", "unknown-visit", "forbidden", "conflict"],
)
def test_retry_of_a_lost_response_is_duplicate_with_the_original_result(
    client: Client,
    p1: dict[str, str],
    setup: list[tuple[str, list[dict[str, Any]]]],
    sent: list[dict[str, Any]],
    status: str,
) -> None:
    for client_id, batch in setup:
        push(client, p1, batch, client_id=client_id)
    first = push(client, p1, sent)  # its response is lost on the way back

    again = push(client, p1, sent)

    assert statuses(again) == ["duplicate"] * len(sent)
    original = again["results"][-1]["result"]
    assert original == first["results"][-1]
    assert original["status"] == status or original["error"]["type"] == PROBLEM + status
    if status == "conflict":
        assert original["conflicts"] == ["body"]


def test_results_are_kept_for_a_window_and_past_it_a_duplicate_has_no_result(
    client: Client, p1: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(push_service, "RESULT_WINDOW", 3)
    batch = [note_put(1, NOTE, visit_id="no-such-visit")] + [
        note_put(i, f"00000000-0000-4000-8000-{i:012x}", body=str(i)) for i in range(2, 6)
    ]
    push(client, p1, batch)

    again = push(client, p1, batch)

    # Ids 3..5 are the last three: their results are kept; 1 and 2 fell out of the window.
    assert statuses(again) == ["duplicate"] * 5
    assert [r.get("result") for r in again["results"][:2]] == [None, None]
    assert [r["result"]["id"] for r in again["results"][2:]] == [3, 4, 5]


def test_retry_after_a_lost_response_with_new_mutations_appended_applies_only_the_new_ones(
    client: Client, seeded: Seeded, p1: dict[str, str]
) -> None:
    sent = [note_put(1, NOTE, body="one"), note_put(2, NOTE, body="two", base_version=1)]
    push(client, p1, sent)  # the response is lost on the way back

    retry = push(client, p1, [*sent, note_put(3, NOTE, body="three", base_version=2)])

    assert statuses(retry) == ["duplicate", "duplicate", "applied"]
    assert retry["last_mutation_id"] == 3
    note = note_row(seeded)
    assert (note["body"], note["version"]) == ("three", 3)
    assert scalar(seeded, "SELECT COUNT(*) FROM history WHERE entity_id = ?", NOTE) == 2


def test_a_bug_in_one_mutation_rejects_only_it_and_the_batch_goes_on(
    client: Client, seeded: Seeded, p1: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The old behaviour (500, whole batch rolled back) answered every retry the same way: one
    # mutation the server could not apply wedged the device's outbox for good.
    def broken(ctx: Any, _args: Any) -> Any:
        ctx.conn.execute("UPDATE notes SET body = 'half-written' WHERE id = ?", (NOTE,))
        raise RuntimeError("bug in an applier")

    batch = [note_put(1, NOTE, body="one"), feedback_put(2, FEEDBACK_A, rating=5), note_put(3, NOTE_2, body="three")]
    with monkeypatch.context() as patch:
        patch.setitem(push_service.APPLIERS, "feedback.put", broken)
        result = push(client, p1, batch)
    assert statuses(result) == ["applied", "rejected", "applied"]
    assert result["results"][1]["error"]["type"] == PROBLEM + "internal-error"
    assert result["last_mutation_id"] == 3
    assert scalar(seeded, "SELECT body FROM notes WHERE id = ?", NOTE) == "one"  # its savepoint undone
    assert scalar(seeded, "SELECT COUNT(*) FROM feedback") == 0

    assert statuses(push(client, p1, batch)) == ["duplicate", "duplicate", "duplicate"]


def test_a_retry_racing_the_original_request_applies_the_batch_once(seeded: Seeded) -> None:
    # The phone timed out and re-sent while the server was still working on the first request.
    account = seeded.first("participant", group="G1")
    batch = msgspec.convert(
        {
            "client_id": CLIENT_A,
            "protocol": 1,
            "mutations": [note_put(i, f"00000000-0000-4000-8000-{i:012d}") for i in (1, 2, 3)],
        },
        PushRequest,
    )
    barrier = threading.Barrier(2)
    outcomes: list[list[str]] = []
    errors: list[BaseException] = []

    def send() -> None:
        database = seeded.store()
        try:
            barrier.wait()
            outcomes.append([r.status for r in push_service.push(database, account, batch).results])
        except BaseException as exc:  # reported below: a thread's exception would otherwise be lost
            errors.append(exc)
        finally:
            database.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not errors, errors
    assert sorted(outcomes) == [["applied"] * 3, ["duplicate"] * 3]
    assert scalar(seeded, "SELECT COUNT(*) FROM notes") == 3
    assert scalar(seeded, "SELECT last_mutation_id FROM sync_clients") == 3


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        pytest.param([2], ["out_of_order"], id="first-id-skipped"),
        pytest.param([2, 3], ["out_of_order", "out_of_order"], id="all-past-gap"),
        pytest.param([1, 3, 4], ["applied", "out_of_order", "out_of_order"], id="gap-after-first"),
        pytest.param([1, 2, 4, 5], ["applied", "applied", "out_of_order", "out_of_order"], id="gap-in-middle"),
        pytest.param(
            [1, 3, 2], ["applied", "out_of_order", "out_of_order"], id="everything-after-gap-even-the-missing-id"
        ),
    ],
)
def test_mutations_past_a_gap_are_out_of_order_and_not_applied(
    client: Client, seeded: Seeded, p1: dict[str, str], ids: list[int], expected: list[str]
) -> None:
    result = push(client, p1, [note_put(i, f"00000000-0000-4000-8000-{i:012d}", body=f"n{i}") for i in ids])

    assert statuses(result) == expected
    applied = [i for i, s in zip(ids, expected, strict=True) if s == "applied"]
    assert result["last_mutation_id"] == (max(applied) if applied else 0)
    assert scalar(seeded, "SELECT COUNT(*) FROM notes") == len(applied)
    assert all("version" not in r for r, s in zip(result["results"], expected, strict=True) if s == "out_of_order")


def test_out_of_order_mutations_apply_once_the_gap_is_filled(
    client: Client, seeded: Seeded, p1: dict[str, str]
) -> None:
    notes = {i: note_put(i, f"00000000-0000-4000-8000-{i:012d}", body=f"n{i}") for i in (1, 2, 3)}
    assert statuses(push(client, p1, [notes[1], notes[3]])) == ["applied", "out_of_order"]

    resend = push(client, p1, [notes[1], notes[2], notes[3]])

    assert statuses(resend) == ["duplicate", "applied", "applied"]
    assert resend["last_mutation_id"] == 3
    assert scalar(seeded, "SELECT COUNT(*) FROM notes") == 3


def test_rejected_mutation_uses_up_its_id_and_is_not_re_evaluated(
    client: Client, seeded: Seeded, p1: dict[str, str]
) -> None:
    batch = [note_put(1, NOTE, body="a"), feedback_put(2, FEEDBACK_A, visit_id=G2_VISIT, rating=3), note_put(3, NOTE_2)]
    first = push(client, p1, batch)
    assert statuses(first) == ["applied", "rejected", "applied"]
    assert first["results"][1]["error"]["type"] == PROBLEM + "forbidden"
    assert first["last_mutation_id"] == 3

    again = push(client, p1, [batch[1], note_put(4, NOTE, body="b", base_version=1)])
    assert statuses(again) == ["duplicate", "applied"]
    assert scalar(seeded, "SELECT COUNT(*) FROM feedback") == 0


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(("p-nguyen-thi-hoa", CLIENT_A), ("p-nguyen-thi-hoa", CLIENT_B), id="two-devices-of-one-account"),
        pytest.param(("p-nguyen-thi-hoa", CLIENT_A), ("p-aicha-diallo", CLIENT_A), id="one-install-id-two-accounts"),
    ],
)
def test_mutation_ids_count_per_account_and_client(
    client: Client, seeded: Seeded, first: tuple[str, str], second: tuple[str, str]
) -> None:
    one = push(client, headers_of(seeded, first[0]), [note_put(1, NOTE, body="one")], client_id=first[1])
    two = push(client, headers_of(seeded, second[0]), [note_put(1, NOTE_2, body="two")], client_id=second[1])

    assert (statuses(one), statuses(two)) == (["applied"], ["applied"])
    assert (one["last_mutation_id"], two["last_mutation_id"]) == (1, 1)
    progress_rows = rows(seeded, "SELECT account_id, client_id, last_mutation_id FROM sync_clients ORDER BY 1, 2")
    assert sorted(map(tuple, progress_rows)) == sorted([(*first, 1), (*second, 1)])


# --- concurrent note edits --------------------------------------------------------------------------

BASE_NOTE = {"body": "base", "tags": ["base"], "share_with_organizers": False}


@pytest.mark.parametrize(
    ("edit_a", "edit_b", "status_b", "final", "conflict"),
    [
        pytest.param({"body": "from A"}, {"body": "from B"}, "conflict", {"body": "from A"}, ("body", "from B"), id="same-field"),
        pytest.param({"body": "from A"}, {"tags": ["from B"]}, "applied", {"body": "from A", "tags": ["from B"]}, None, id="different-fields-merge"),
        pytest.param({"body": "same"}, {"body": "same"}, "applied", {"body": "same"}, None, id="same-value-is-no-conflict"),
        pytest.param({"tags": ["a"]}, {"tags": ["b"]}, "conflict", {"tags": ["a"]}, ("tags", ["b"]), id="same-list-field"),
        pytest.param({"body": "from A"}, {"share_with_organizers": True}, "applied", {"body": "from A", "share_with_organizers": 1}, None, id="body-and-share-merge"),
    ],
)  # fmt: skip
def test_two_devices_editing_one_note_from_the_same_base(
    client: Client,
    seeded: Seeded,
    p1: dict[str, str],
    edit_a: dict[str, Any],
    edit_b: dict[str, Any],
    status_b: str,
    final: dict[str, Any],
    conflict: tuple[str, Any] | None,
) -> None:
    push(client, p1, [note_put(1, NOTE, **BASE_NOTE)], client_id=CLIENT_A)
    a = push(client, p1, [note_put(2, NOTE, **{**BASE_NOTE, **edit_a}, base_version=1)], client_id=CLIENT_A)
    b = push(client, p1, [note_put(1, NOTE, **{**BASE_NOTE, **edit_b}, base_version=1)], client_id=CLIENT_B)

    assert statuses(a) == ["applied"]
    assert statuses(b) == [status_b]
    note = note_row(seeded)
    assert {k: note[k] for k in final} == final
    if conflict is None:
        assert note["conflicts"] == []
        assert "conflicts" not in b["results"][0]
        return
    field, value = conflict
    assert b["results"][0]["conflicts"] == [field]
    assert b["results"][0]["version"] == note["version"] == 3
    [kept] = note["conflicts"]
    assert (kept["field"], kept["value"], kept["client_id"]) == (field, value, CLIENT_B)
    assert datetime.fromisoformat(kept["at"]).tzinfo is not None
    # The author's devices see the losing value in a pull.
    pulled = pull_all(client, p1).data("note", NOTE)
    assert [(c["field"], c["value"], c["client_id"]) for c in pulled["conflicts"]] == [(field, value, CLIENT_B)]


@pytest.mark.parametrize(
    ("resolve", "base", "kept"),
    [
        pytest.param(True, 3, 0, id="resolve-at-conflict-version-clears"),
        pytest.param(True, 4, None, id="resolve-past-conflict-version-is-refused-as-newer"),
        pytest.param(True, 2, 1, id="resolve-from-before-the-conflict-keeps-it"),
        pytest.param(False, 3, 1, id="edit-without-resolve-keeps-it"),
    ],
)
def test_resolving_clears_only_conflicts_the_device_had_seen(
    client: Client, seeded: Seeded, p1: dict[str, str], resolve: bool, base: int, kept: int | None
) -> None:
    push(client, p1, [note_put(1, NOTE, body="base"), note_put(2, NOTE, body="from A", base_version=1)])
    push(client, p1, [note_put(1, NOTE, body="from B", base_version=1)], client_id=CLIENT_B)
    assert len(note_row(seeded)["conflicts"]) == 1

    result = push(
        client, p1, [note_put(3, NOTE, body="merged", base_version=base, resolve_conflicts=resolve)], client_id=CLIENT_A
    )

    if kept is None:
        assert statuses(result) == ["rejected"]
        assert result["results"][0]["error"]["type"] == PROBLEM + "invalid-base-version"
        return
    assert statuses(result) == ["applied"]
    assert len(note_row(seeded)["conflicts"]) == kept


# --- deletes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("delete_first", [True, False], ids=["delete-then-edit", "edit-then-delete"])
def test_delete_racing_an_edit_stands_and_keeps_the_edit_on_the_tombstone(
    client: Client, seeded: Seeded, p1: dict[str, str], delete_first: bool
) -> None:
    shared = {"share_with_organizers": True}
    push(client, p1, [note_put(1, NOTE, body="base", **shared)], client_id=CLIENT_A)
    organizer = pull_all(client, seeded.headers("organizer"))
    assert NOTE in organizer.ids("note")
    delete = [mutation(2, "note.delete", {"id": NOTE, "base_version": 1})]
    edit = [note_put(1, NOTE, body="typed offline", base_version=1, **shared)]

    if delete_first:
        deleted = push(client, p1, delete, client_id=CLIENT_A)
        edited = push(client, p1, edit, client_id=CLIENT_B)
        assert statuses(deleted) == ["applied"]
        assert statuses(edited) == ["conflict"]
        assert "body" in edited["results"][0]["conflicts"]
    else:
        edited = push(client, p1, edit, client_id=CLIENT_B)
        deleted = push(client, p1, delete, client_id=CLIENT_A)
        assert statuses(edited) == ["applied"]
        # The delete erased an edit it had not seen: a conflict, so the device shows it (§6.2).
        assert statuses(deleted) == ["conflict"]
        assert deleted["results"][0]["conflicts"] == ["body"]

    note = note_row(seeded)
    assert note["deleted"] == 1
    assert note["body"] == ""
    assert ("body", "typed offline") in [(c["field"], c["value"]) for c in note["conflicts"]]

    # The author's devices learn of the delete with what was typed; a first pull shows it too.
    for replica in (pull_all(client, p1), pull_all(client, p1, client_id=CLIENT_B)):
        assert NOTE not in replica.ids("note")
        tombstone = replica.tombstones[("note", NOTE)]
        assert ("body", "typed offline") in [(c["field"], c["value"]) for c in tombstone["data"]["conflicts"]]
    # The organizer, who saw the shared note, gets a delete without any of its content.
    organizer = pull_all(client, seeded.headers("organizer"), organizer)
    assert organizer.tombstones[("note", NOTE)]["data"] is None
    assert NOTE not in organizer.ids("note")


CONFLICT_KEYS = {"field", "value", "client_id", "account_id", "mutation_id", "base_version", "version", "at", "reason"}


def test_a_pulled_concurrent_edit_conflict_carries_every_field_and_its_reason(
    client: Client, p1: dict[str, str]
) -> None:
    push(client, p1, [note_put(1, NOTE, body="base")], client_id=CLIENT_A)
    push(client, p1, [note_put(1, NOTE, body="from B", base_version=1)], client_id=CLIENT_B)
    result = push(client, p1, [note_put(2, NOTE, body="from A", base_version=1)], client_id=CLIENT_A)
    assert statuses(result) == ["conflict"]

    [entry] = pull_all(client, p1).data("note", NOTE)["conflicts"]

    assert set(entry) == CONFLICT_KEYS
    assert (entry["field"], entry["value"], entry["reason"]) == ("body", "from A", "concurrent_edit")
    assert (entry["client_id"], entry["mutation_id"], entry["base_version"]) == (CLIENT_A, 2, 1)


def test_put_after_a_delete_keeps_the_delete_and_the_typed_values(
    client: Client, seeded: Seeded, p1: dict[str, str]
) -> None:
    push(client, p1, [note_put(1, NOTE, body="base"), mutation(2, "note.delete", {"id": NOTE, "base_version": 1})])

    result = push(client, p1, [note_put(3, NOTE, body="revived?", tags=["x"], base_version=2)])

    assert statuses(result) == ["conflict"]
    assert {"body", "tags"} <= set(result["results"][0]["conflicts"])
    note = note_row(seeded)
    assert (note["deleted"], note["body"], note["version"]) == (1, "", 3)
    kept = {c["field"]: c for c in note["conflicts"]}
    assert kept["body"]["value"] == "revived?"
    assert kept["tags"]["value"] == ["x"]
    assert kept["body"]["reason"] == "edited_after_delete"


def test_deleting_someone_elses_note_is_not_found(client: Client, seeded: Seeded, p1: dict[str, str]) -> None:
    push(client, p1, [note_put(1, NOTE, body="mine", share_with_organizers=True)])
    before = snapshot(seeded)

    for headers in (headers_of(seeded, "p-aicha-diallo"), seeded.headers("organizer")):
        result = push(
            client, headers, [mutation(1, "note.delete", {"id": NOTE, "base_version": 1})], client_id=CLIENT_B
        )
        assert statuses(result) == ["rejected"]
        assert result["results"][0]["error"]["type"] == PROBLEM + "not-found"
        edit = push(client, headers, [note_put(2, NOTE, body="not yours", base_version=1)], client_id=CLIENT_B)
        assert edit["results"][0]["error"]["type"] == PROBLEM + "not-found"

    after = snapshot(seeded)
    assert {t: r for t, r in after.items() if t not in ("sync_clients", "sync_results")} == {
        t: r for t, r in before.items() if t not in ("sync_clients", "sync_results")
    }


# --- feedback from two devices ----------------------------------------------------------------------


def test_second_devices_feedback_merges_into_the_first(client: Client, seeded: Seeded, p1: dict[str, str]) -> None:
    first = push(
        client,
        p1,
        [feedback_put(1, FEEDBACK_A, rating=4, comment="Great", answers={"overall": 4, "relevance": "very"})],
        client_id=CLIENT_A,
    )
    second = push(
        client,
        p1,
        [feedback_put(1, FEEDBACK_B, rating=5, comment="Great", answers={"overall": 4, "takeaway": "Co-ops"})],
        client_id=CLIENT_B,
    )

    assert statuses(first) == ["applied"]
    [merged] = second["results"]
    assert merged["status"] == "conflict"
    assert merged["entity_id"] == FEEDBACK_A
    assert merged["conflicts"] == ["rating"]
    [feedback] = feedback_rows(seeded)
    assert feedback["id"] == FEEDBACK_A
    assert (feedback["rating"], feedback["comment"]) == (4, "Great")
    assert feedback["answers"] == {"overall": 4, "relevance": "very", "takeaway": "Co-ops"}
    assert [(c["field"], c["value"], c["client_id"]) for c in feedback["conflicts"]] == [("rating", 5, CLIENT_B)]

    # The second device's id stays usable: a later edit lands on the first record.
    later = push(
        client,
        p1,
        [feedback_put(2, FEEDBACK_B, rating=4, comment="Great!", answers={"takeaway": "Co-ops"}, base_version=2)],
        client_id=CLIENT_B,
    )
    assert statuses(later) == ["applied"]
    assert later["results"][0]["entity_id"] == FEEDBACK_A
    [feedback] = feedback_rows(seeded)
    assert (feedback["id"], feedback["comment"], feedback["version"]) == (FEEDBACK_A, "Great!", 3)

    # Both devices pull one record, under the first id, with the conflict for its author to resolve.
    replica = pull_all(client, p1)
    assert replica.ids("feedback") == {FEEDBACK_A}
    assert [c["field"] for c in replica.data("feedback", FEEDBACK_A)["conflicts"]] == ["rating"]

    resolved = push(
        client,
        p1,
        [feedback_put(3, FEEDBACK_B, rating=5, comment="Great!", base_version=3, resolve_conflicts=True)],
        client_id=CLIENT_B,
    )
    assert statuses(resolved) == ["applied"]
    [feedback] = feedback_rows(seeded)
    assert (feedback["rating"], feedback["conflicts"]) == (5, [])


@pytest.mark.parametrize(
    ("who", "visit_id"),
    [
        pytest.param({"role": "participant", "group": "G1"}, G2_VISIT, id="participant-other-groups-visit"),
        pytest.param({"role": "participant", "group": "G3"}, G1_VISIT, id="g3-participant-g1-visit"),
        pytest.param({"role": "host", "site": G1_SITE}, G1_VISIT, id="host-of-the-site"),
        pytest.param({"role": "organizer"}, G1_VISIT, id="organizer"),
    ],
)
def test_feedback_only_from_participants_on_their_own_groups_visits(
    client: Client, seeded: Seeded, who: dict[str, str], visit_id: str
) -> None:
    kwargs = {k: v for k, v in who.items() if k != "role"}
    before = snapshot(seeded)

    result = push(
        client, seeded.headers(who["role"], **kwargs), [feedback_put(1, FEEDBACK_A, visit_id=visit_id, rating=5)]
    )

    [rejected] = result["results"]
    assert rejected["status"] == "rejected"
    assert rejected["error"]["type"] == PROBLEM + "forbidden"
    assert rejected["error"]["status"] == 403
    assert result["last_mutation_id"] == 1
    after = snapshot(seeded)
    assert {t: r for t, r in after.items() if t not in ("sync_clients", "sync_results")} == {
        t: r for t, r in before.items() if t not in ("sync_clients", "sync_results")
    }


@pytest.mark.parametrize("visit_id", [G1_VISIT, PLENARY_VISIT])
def test_participant_gives_feedback_on_a_visit_of_their_group(
    client: Client, seeded: Seeded, p1: dict[str, str], visit_id: str
) -> None:
    result = push(client, p1, [feedback_put(1, FEEDBACK_A, visit_id=visit_id, rating=5, answers={"relevance": "very"})])
    assert statuses(result) == ["applied"]
    [feedback] = feedback_rows(seeded)
    assert (feedback["visit_id"], feedback["rating"], feedback["author_id"]) == (visit_id, 5, "p-nguyen-thi-hoa")


# --- site edits -----------------------------------------------------------------------------------------


def host(site: str) -> Callable[[Seeded], dict[str, str]]:
    return lambda seeded: seeded.headers("host", site=site)


def role(name: str, **kwargs: str) -> Callable[[Seeded], dict[str, str]]:
    return lambda seeded: seeded.headers(name, **kwargs)


@pytest.mark.parametrize(
    ("actor", "fields", "slug"),
    [
        pytest.param(host(G1_SITE), {"accessibility": "Step-free entrance on Via Morgari"}, None, id="host-accessibility"),
        pytest.param(host(G1_SITE), {"description": {"fr": "Une maison de quartier."}}, None, id="host-description-fr"),
        pytest.param(host(G1_SITE), {"meeting_point": "Courtyard", "contact": "+39 011"}, None, id="host-two-fields"),
        pytest.param(host(G2_SITE), {"accessibility": "Ramp"}, "forbidden", id="host-of-another-site"),
        pytest.param(host(G1_SITE), {"name": "Casa Nuova"}, "forbidden", id="host-touching-name"),
        pytest.param(host(G1_SITE), {"accessibility": "Ramp", "official_name": "X"}, "forbidden", id="host-mixing-an-organizer-field"),
        pytest.param(host(G1_SITE), {"themes": ["welfare"]}, "forbidden", id="host-touching-themes"),
        pytest.param(role("organizer"), {"name": "Casa del Quartiere di San Salvario"}, None, id="organizer-name"),
        pytest.param(role("organizer"), {"accessibility": "Lift to the first floor"}, None, id="organizer-host-field"),
        pytest.param(role("participant", group="G1"), {"accessibility": "Ramp"}, "forbidden", id="participant"),
    ],
)  # fmt: skip
def test_who_may_patch_which_site_fields(
    client: Client, seeded: Seeded, actor: Callable[[Seeded], dict[str, str]], fields: dict[str, Any], slug: str | None
) -> None:
    before = site_row(seeded)

    result = push(client, actor(seeded), [site_patch(1, G1_SITE, 1, **fields)])

    [outcome] = result["results"]
    after = site_row(seeded)
    if slug is not None:
        assert outcome["status"] == "rejected"
        assert outcome["error"]["type"] == PROBLEM + slug
        assert outcome["error"]["status"] == 403
        assert after == before
        return
    assert outcome["status"] == "applied"
    assert outcome["version"] == after["version"] == 2
    for name, value in fields.items():
        if name == "description":
            assert after["description"] == {**before["description"], **value}
        else:
            assert after[name] == value


def test_organizer_may_not_set_a_site_kind_that_sites_cannot_have(client: Client, seeded: Seeded) -> None:
    # A kind outside SiteKind would be stored, then fail the read shape on every pull and site listing.
    result = push(client, seeded.headers("organizer"), [site_patch(1, G1_SITE, 1, kind="spaceship")])

    assert statuses(result) == ["rejected"]
    assert result["results"][0]["error"]["type"] == PROBLEM + "invalid-mutation"
    response = client.get("/api/v1/events/turin-sse-2025/sync/pull", headers=seeded.headers("participant", group="G1"))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("fields_1", "fields_2", "status_2", "description"),
    [
        pytest.param({"fr": "Texte A"}, {"it": "Testo B"}, "applied", {"fr": "Texte A", "it": "Testo B"}, id="different-languages-merge"),
        pytest.param({"fr": "Texte A"}, {"fr": "Texte B"}, "conflict", {"fr": "Texte A"}, id="same-language-conflicts"),
    ],
)  # fmt: skip
def test_two_hosts_editing_the_description_from_the_same_base(
    client: Client,
    seeded: Seeded,
    second_host: dict[str, str],
    fields_1: dict[str, str],
    fields_2: dict[str, str],
    status_2: str,
    description: dict[str, str],
) -> None:
    original = site_row(seeded)["description"]
    one = push(client, seeded.headers("host", site=G1_SITE), [site_patch(1, G1_SITE, 1, description=fields_1)])
    two = push(client, second_host, [site_patch(1, G1_SITE, 1, description=fields_2)], client_id=CLIENT_B)

    assert statuses(one) == ["applied"]
    assert statuses(two) == [status_2]
    site = site_row(seeded)
    assert site["description"] == {**original, **description}
    assert site["version"] == 3
    if status_2 == "applied":
        assert site["conflicts"] == []
        return
    assert two["results"][0]["conflicts"] == ["description.fr"]
    [kept] = site["conflicts"]
    assert (kept["field"], kept["value"], kept["account_id"]) == ("description.fr", "Texte B", SECOND_HOST)

    # The site's hosts and the organizers see the conflict; participants and other hosts do not.
    for headers, sees in [
        (seeded.headers("host", site=G1_SITE), True),
        (second_host, True),
        (seeded.headers("organizer"), True),
        (seeded.headers("participant", group="G1"), False),
        (seeded.headers("host", site=G2_SITE), False),
    ]:
        pulled = pull_all(client, headers).data("site", G1_SITE)
        assert pulled["description"]["fr"] == "Texte A"
        assert [c["value"] for c in pulled["conflicts"]] == (["Texte B"] if sees else [])


def test_two_accounts_on_one_install_id_still_conflict(
    client: Client, seeded: Seeded, second_host: dict[str, str]
) -> None:
    # A shared tablet keeps its install id when the next host signs in: client ids are scoped to
    # an account (as mutation ids are), so one person's edit must not count as the other's own.
    push(client, seeded.headers("host", site=G1_SITE), [site_patch(1, G1_SITE, 1, accessibility="Ramp")])

    result = push(client, second_host, [site_patch(1, G1_SITE, 1, accessibility="Steps")], client_id=CLIENT_A)

    assert statuses(result) == ["conflict"]
    site = site_row(seeded)
    assert site["accessibility"] == "Ramp"
    assert [(c["value"], c["account_id"]) for c in site["conflicts"]] == [("Steps", SECOND_HOST)]


def test_a_devices_own_earlier_edit_it_has_not_pulled_back_is_no_conflict(
    client: Client, seeded: Seeded, p1: dict[str, str]
) -> None:
    # Offline, the device edits twice from the version it last pulled; the second edit is not a
    # concurrent one.
    push(client, p1, [note_put(1, NOTE, body="base")])
    result = push(
        client, p1, [note_put(2, NOTE, body="draft", base_version=1), note_put(3, NOTE, body="final", base_version=1)]
    )

    assert statuses(result) == ["applied", "applied"]
    note = note_row(seeded)
    assert (note["body"], note["conflicts"]) == ("final", [])


def test_site_patch_from_base_zero_does_not_silently_overwrite_a_concurrent_edit(
    client: Client, seeded: Seeded, second_host: dict[str, str]
) -> None:
    # changed_since(base 0) has no defaults for sites and would report nothing changed: a base-0 patch
    # must be refused or conflict, never win silently.
    push(client, seeded.headers("host", site=G1_SITE), [site_patch(1, G1_SITE, 1, accessibility="Ramp")])

    result = push(client, second_host, [site_patch(1, G1_SITE, 0, accessibility="Steps")], client_id=CLIENT_B)

    assert statuses(result) in (["conflict"], ["rejected"])
    assert site_row(seeded)["accessibility"] == "Ramp"


def test_host_resolves_a_site_conflict(client: Client, seeded: Seeded, second_host: dict[str, str]) -> None:
    push(client, seeded.headers("host", site=G1_SITE), [site_patch(1, G1_SITE, 1, accessibility="Ramp")])
    push(client, second_host, [site_patch(1, G1_SITE, 1, accessibility="Steps")], client_id=CLIENT_B)
    assert len(site_row(seeded)["conflicts"]) == 1

    result = push(
        client,
        second_host,
        [mutation(2, "site.patch", {"site_id": G1_SITE, "base_version": 3, "fields": {"accessibility": "Ramp at the back"}, "resolve_conflicts": True})],
        client_id=CLIENT_B,
    )  # fmt: skip

    assert statuses(result) == ["applied"]
    site = site_row(seeded)
    assert (site["accessibility"], site["conflicts"], site["version"]) == ("Ramp at the back", [], 4)


@pytest.mark.parametrize(
    ("dlat", "flagged"),
    [
        pytest.param(0.01, True, id="about-1100m-flagged"),
        pytest.param(0.006, True, id="about-670m-flagged"),
        pytest.param(0.001, False, id="about-110m-not-flagged"),
    ],
)
def test_moving_a_site_far_writes_a_flagged_history_row(
    client: Client, seeded: Seeded, dlat: float, flagged: bool
) -> None:
    site = site_row(seeded)

    result = push(
        client,
        seeded.headers("host", site=G1_SITE),
        [site_patch(1, G1_SITE, 1, lat=site["lat"] + dlat, lon=site["lon"])],
    )

    assert statuses(result) == ["applied"]
    [entry] = rows(seeded, "SELECT * FROM history WHERE entity = 'site' AND entity_id = ?", G1_SITE)
    assert entry["account_id"] == "host-san-salvario"
    assert entry["client_id"] == CLIENT_A
    assert entry["version"] == 2
    assert msgspec.json.decode(entry["changes"])["lat"] == [site["lat"], site["lat"] + dlat]
    if flagged:
        assert entry["flagged"]
        assert "m" in entry["flagged"]
    else:
        assert entry["flagged"] is None


def test_site_patch_from_a_base_newer_than_the_site_is_rejected(client: Client, seeded: Seeded) -> None:
    result = push(client, seeded.headers("host", site=G1_SITE), [site_patch(1, G1_SITE, 9, accessibility="Ramp")])
    assert result["results"][0]["error"]["type"] == PROBLEM + "invalid-base-version"
    assert site_row(seeded)["version"] == 1


# --- edits say what they change -------------------------------------------------------------------------

FULL_NOTE = {
    "body": "Cooperativa di comunità: 40 soci", "tags": ["coop"], "lat": 45.06, "lon": 7.68,
    "captured_at": "2025-12-10T15:02:11+01:00", "share_with_organizers": True,
}  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ({"body": "Cooperativa di comunità: 42 soci"}, {"body": "Cooperativa di comunità: 42 soci"}),
        ({"tags": ["coop", "housing"]}, {"tags": ["coop", "housing"]}),
        ({"share_with_organizers": False}, {"share_with_organizers": 0}),
        ({"tags": None, "body": None}, {"tags": [], "body": ""}),
        ({"lat": None, "lon": None}, {"lat": None, "lon": None}),
        ({"captured_at": None}, {"captured_at": None}),
    ],
    ids=["body-only", "tags-only", "unshare-explicitly", "null-resets", "null-position", "null-captured-at"],
)
def test_a_note_edit_changes_only_the_fields_it_sends(
    client: Client, seeded: Seeded, p1: dict[str, str], edit: dict[str, Any], expected: dict[str, Any]
) -> None:
    push(client, p1, [note_put(1, NOTE, **FULL_NOTE)])
    before = note_row(seeded)

    result = push(client, p1, [mutation(2, "note.put", {"id": NOTE, "base_version": 1, **edit})])

    assert statuses(result) == ["applied"]
    after = note_row(seeded)
    untouched = {"visit_id", "body", "tags", "lat", "lon", "captured_at", "share_with_organizers"}
    assert {k: after[k] for k in untouched - set(expected)} == {k: before[k] for k in untouched - set(expected)}
    assert {k: after[k] for k in expected} == expected
    assert after["version"] == 2


def test_an_edit_without_share_with_organizers_keeps_the_note_shared(
    client: Client, seeded: Seeded, p1: dict[str, str]
) -> None:
    push(client, p1, [note_put(1, NOTE, body="shared", share_with_organizers=True)])

    push(client, p1, [mutation(2, "note.put", {"id": NOTE, "base_version": 1, "body": "shared, edited"})])

    organizer = pull_all(client, seeded.headers("organizer"))
    assert organizer.data("note", NOTE)["body"] == "shared, edited"


def test_an_edit_sending_only_lat_is_rejected(client: Client, p1: dict[str, str]) -> None:
    push(client, p1, [note_put(1, NOTE, **FULL_NOTE)])
    result = push(client, p1, [mutation(2, "note.put", {"id": NOTE, "base_version": 1, "lat": 45.1})])
    assert result["results"][0]["error"]["type"] == PROBLEM + "invalid-mutation"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            {"comment": "Più chiaro adesso"},
            {
                "rating": 4,
                "comment": "Più chiaro adesso",
                "answers": {"relevance": "very", "takeaway": "Banca del tempo"},
            },
        ),
        ({"answers": {"takeaway": None}}, {"rating": 4, "comment": "Bene", "answers": {"relevance": "very"}}),
        (
            {"answers": {"overall": 5}},
            {
                "rating": 4,
                "comment": "Bene",
                "answers": {"relevance": "very", "takeaway": "Banca del tempo", "overall": 5},
            },
        ),
        (
            {"rating": None, "comment": None},
            {"rating": None, "comment": "", "answers": {"relevance": "very", "takeaway": "Banca del tempo"}},
        ),
    ],
    ids=["comment-keeps-rating", "answer-removed", "answer-added", "null-clears"],
)
def test_a_feedback_edit_changes_only_the_fields_it_sends(
    client: Client, seeded: Seeded, p1: dict[str, str], edit: dict[str, Any], expected: dict[str, Any]
) -> None:
    answers = {"relevance": "very", "takeaway": "Banca del tempo"}
    push(client, p1, [feedback_put(1, FEEDBACK_A, rating=4, comment="Bene", answers=answers)])

    result = push(client, p1, [feedback_put(2, FEEDBACK_A, base_version=1, **edit)])

    assert statuses(result) == ["applied"]
    [row] = feedback_rows(seeded)
    assert {k: row[k] for k in expected} == expected


@pytest.mark.parametrize(
    ("answers", "question"),
    [
        ({"overall": 7}, "overall"),
        ({"takeaway": "x" * 5_001}, "takeaway"),
        ({"relevance": "extremely"}, "relevance"),
        ({"nope": "x"}, "nope"),
    ],
    ids=["rating-out-of-range", "text-too-long", "choice-not-offered", "unknown-question"],
)
def test_an_invalid_answer_is_rejected_naming_its_question(
    client: Client, p1: dict[str, str], answers: dict[str, Any], question: str
) -> None:
    result = push(client, p1, [feedback_put(1, FEEDBACK_A, answers={"relevance": "very", **answers})])

    [rejected] = result["results"]
    assert rejected["status"] == "rejected"
    assert f"'{question}'" in rejected["error"]["detail"] or f'"{question}"' in rejected["error"]["detail"]


@pytest.mark.parametrize(
    ("edit", "status"),
    [({"body": "typed after the delete"}, "conflict"), ({"body": ""}, "applied"), ({}, "applied")],
    ids=["typed", "default-value", "nothing"],
)
def test_conflicts_appear_on_a_result_exactly_when_its_status_is_conflict(
    client: Client, p1: dict[str, str], edit: dict[str, Any], status: str
) -> None:
    push(client, p1, [note_put(1, NOTE, body="base"), mutation(2, "note.delete", {"id": NOTE, "base_version": 1})])

    [result] = push(client, p1, [mutation(3, "note.put", {"id": NOTE, "base_version": 2, **edit})])["results"]

    assert result["status"] == status
    assert ("conflicts" in result) == (status == "conflict")


def test_a_batch_checks_each_note_against_what_the_batch_itself_did_before_it(client: Client, seeded: Seeded) -> None:
    # A batch's notes are checked against lookups read once for the batch; what earlier mutations of
    # the same batch changed must still count: a visit it created, a note it wrote or deleted.
    org = seeded.headers("organizer")
    visit = {
        "id": "d9-new-visit",
        "title": "Added on the day",
        "starts_at": "2025-12-11T15:00:00+01:00",
        "ends_at": "2025-12-11T16:00:00+01:00",
        "group_ids": [],
    }
    batch = [
        note_put(1, uid(1), visit_id="d9-new-visit"),  # no such visit yet
        mutation(2, "visit.put", visit),
        note_put(3, uid(3), visit_id="d9-new-visit"),  # now there is
        note_put(4, uid(4), body="first"),
        note_put(5, uid(4), body="second", base_version=1),  # the note this batch just wrote
        mutation(6, "note.delete", {"id": uid(4), "base_version": 2}),
        note_put(7, uid(4), body="after the delete", base_version=3),
    ]
    result = push(client, org, batch)
    assert statuses(result) == ["rejected", "applied", "applied", "applied", "applied", "applied", "conflict"]
    assert result["results"][0]["error"]["type"] == PROBLEM + "unknown-visit"
    assert [r.get("version") for r in result["results"][3:6]] == [1, 2, 3]
    assert scalar(seeded, "SELECT visit_id FROM notes WHERE id = ?", uid(3)) == "d9-new-visit"
    assert scalar(seeded, "SELECT COUNT(*) FROM notes WHERE id = ?", uid(1)) == 0
    assert bool(scalar(seeded, "SELECT deleted FROM notes WHERE id = ?", uid(4)))  # the delete stands
