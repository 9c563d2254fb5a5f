"""Black-box conformance checks of sync protocol v1 (docs/sync-protocol.md), runnable against any server.

    python -m sync.conformance --url https://studyvisit.example --token PARTICIPANT_TOKEN \
        [--organizer-token TOKEN] [--host-token TOKEN]

Each check speaks HTTP only, as a client written from the document would. The kit needs a
participant's token (an organizer's and a host's add the checks of who sees what). It leaves
the server as it found it, but for tombstones: every note it writes has a fresh random id and
is deleted before the check ends, and it pushes from fresh random ``client_id`` values so that
no real device's mutation ids are touched. It never writes feedback, which cannot be deleted.
"""

import argparse
import sys
import uuid
from collections.abc import Callable, Generator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from schemas.sync import PROTOCOL_VERSION
from sync.checksum import checksum

PROBLEM = "urn:studyvisit:problem:"
CONFLICT_KEYS = frozenset(
    {"field", "value", "client_id", "account_id", "mutation_id", "base_version", "version", "at", "reason"}
)
# Per-mutation error types the document lists (§4.1): a server answering another one is off-spec.
MUTATION_ERRORS = frozenset(
    {
        "unknown-mutation-type", "invalid-mutation", "invalid-base-version", "not-found",
        "forbidden", "unknown-visit", "unknown-site", "unknown-group", "invalid-visit", "visit-exists",
        "invalid-answer", "feedback-closed", "internal-error",
    }
)  # fmt: skip


class CheckFailedError(AssertionError):
    """A check found the server off the protocol."""


class SkippedError(Exception):
    """A check that cannot run with the tokens given."""


def expect(condition: bool, message: str) -> None:
    """Fail the running check with ``message`` unless ``condition`` holds."""
    if not condition:
        raise CheckFailedError(message)


@dataclass
class Outcome:
    """How one check went."""

    name: str
    status: str  # "passed", "failed" or "skipped"
    detail: str = ""


@dataclass
class Session:
    """One account's view of the server: its token, and the requests it sends."""

    http: httpx.Client
    base_url: str
    token: str
    event_id: str = ""
    account_id: str = ""
    role: str = ""

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return self.http.request(method, self.base_url + path, headers=headers, **kwargs)

    def login(self) -> "Session":
        response = self.request("GET", "/api/v1/me")
        expect(response.status_code == 200, f"GET /api/v1/me answered {response.status_code}: {response.text[:200]}")
        me = response.json()
        self.event_id, self.account_id, self.role = me["event_id"], me["id"], me["role"]
        return self

    @property
    def sync_path(self) -> str:
        return f"/api/v1/events/{self.event_id}/sync"

    def push(self, client_id: str, mutations: list[dict[str, Any]], **envelope: Any) -> dict[str, Any]:
        body = {"client_id": client_id, "protocol": PROTOCOL_VERSION, "mutations": mutations, **envelope}
        response = self.request("POST", self.sync_path + "/push", json=body)
        expect(response.status_code == 200, f"push answered {response.status_code}: {response.text[:300]}")
        answer: dict[str, Any] = response.json()
        expect(
            [r["id"] for r in answer["results"]] == [m["id"] for m in mutations],
            f"push results do not follow the batch: {answer['results']}",
        )
        return answer

    def pull_raw(self, **params: Any) -> httpx.Response:
        return self.request("GET", self.sync_path + "/pull", params={"protocol": PROTOCOL_VERSION, **params})

    def pull_all(self, cursor: str = "", limit: int = 500) -> "Replica":
        """Follow ``has_more`` from a cursor to the end, as §5 says; returns what was pulled."""
        replica = Replica()
        for _ in range(10_000):
            response = self.pull_raw(cursor=cursor, limit=limit)
            expect(response.status_code == 200, f"pull answered {response.status_code}: {response.text[:300]}")
            page = response.json()
            replica.apply(page)
            cursor = page["cursor"]
            if not page["has_more"]:
                return replica
        raise CheckFailedError("pull never reached has_more: false")


@dataclass
class Replica:
    """What a sequence of pull pages brought: the latest change of each record, and the last page."""

    changes: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict[tuple[str, str], dict[str, Any]])
    pages: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])

    def apply(self, page: dict[str, Any]) -> None:
        self.pages.append(page)
        for change in page["changes"]:
            self.changes[change["entity"], change["id"]] = change

    @property
    def cursor(self) -> str:
        return str(self.pages[-1]["cursor"])

    def live(self, entity: str) -> dict[str, dict[str, Any]]:
        return {i: c for (e, i), c in self.changes.items() if e == entity and c["op"] == "put"}

    def data(self, entity: str, record_id: str) -> dict[str, Any]:
        change = self.changes.get((entity, record_id))
        expect(change is not None and change["op"] == "put", f"{entity} {record_id} is not in the pull")
        assert change is not None
        return dict(change["data"])


def note_put(mutation_id: int, note_id: str, **args: Any) -> dict[str, Any]:
    return {"id": mutation_id, "type": "note.put", "args": {"id": note_id, **args}}


def note_delete(mutation_id: int, note_id: str, base_version: int) -> dict[str, Any]:
    return {"id": mutation_id, "type": "note.delete", "args": {"id": note_id, "base_version": base_version}}


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Kit:
    """The sessions a run has, and a place to write notes about."""

    participant: Session
    organizer: Session | None = None
    host: Session | None = None
    site_id: str = ""

    @contextmanager
    def own_notes(self, session: Session | None = None) -> Generator[tuple[str, Callable[[], int]]]:
        """A fresh client id and its next mutation id; every note the block wrote is deleted after it."""
        who = session or self.participant
        client_id, counter = new_id(), iter(range(1, 2**31))
        try:
            yield client_id, lambda: next(counter)
        finally:
            # Clean up through the protocol itself, from a client id of its own.
            mine = who.pull_all().live("note")
            cleaner, batch = new_id(), []
            for note_id, change in mine.items():
                if change["data"].get("body", "").startswith(MARK):
                    batch.append(note_delete(len(batch) + 1, note_id, change["version"]))
            if batch:
                who.push(cleaner, batch)


MARK = "[conformance] "  # every note the kit writes starts so; only such notes are cleaned up
CHECKS: list[tuple[str, Callable[[Kit], None]]] = []


def check(function: Callable[[Kit], None]) -> Callable[[Kit], None]:
    """Register a check under its function name."""
    CHECKS.append((function.__name__, function))
    return function


@check
def push_applies_and_pull_returns_the_note_shape(kit: Kit) -> None:
    with kit.own_notes() as (client_id, next_id):
        note_id, body = new_id(), MARK + "Banca del tempo — بنك الوقت — Ngân hàng thời gian — 시간 은행"
        answer = kit.participant.push(
            client_id,
            [note_put(next_id(), note_id, site_id=kit.site_id, body=body, tags=["time-bank"], lat=45.06, lon=7.68)],
        )
        [result] = answer["results"]
        expect(result["status"] == "applied" and result["version"] == 1, f"create answered {result}")
        expect(answer["last_mutation_id"] == 1, f"last_mutation_id {answer['last_mutation_id']} after one mutation")
        data = kit.participant.pull_all().data("note", note_id)
        expected = {
            "id", "author_id", "visit_id", "site_id", "body", "tags", "lat", "lon", "captured_at",
            "share_with_organizers", "attachments", "version", "conflicts", "updated_at",
        }  # fmt: skip
        expect(expected <= set(data), f"pulled note lacks {sorted(expected - set(data))}")
        expect(data["body"] == body, f"body came back as {data['body']!r}")
        expect(data["author_id"] == kit.participant.account_id, "author_id is not the pushing account")
        expect((data["version"], data["conflicts"], data["attachments"]) == (1, [], []), f"new note pulled as {data}")


@check
def retried_push_is_duplicate_with_the_original_result(kit: Kit) -> None:
    with kit.own_notes() as (client_id, next_id):
        batch = [
            note_put(next_id(), new_id(), site_id=kit.site_id, body=MARK + "kept"),
            note_put(next_id(), new_id(), visit_id="no-such-visit-" + new_id()[:8], body=MARK + "refused"),
        ]
        first = kit.participant.push(client_id, batch)
        expect([r["status"] for r in first["results"]] == ["applied", "rejected"], f"first push: {first['results']}")
        again = kit.participant.push(client_id, batch)
        expect([r["status"] for r in again["results"]] == ["duplicate"] * 2, f"retry: {again['results']}")
        for original, retried in zip(first["results"], again["results"], strict=True):
            expect(retried.get("result") == original, f"duplicate {retried} does not carry the result {original}")


@check
def rejections_are_listed_problem_types(kit: Kit) -> None:
    with kit.own_notes() as (client_id, next_id):
        batch = [
            {"id": next_id(), "type": "no.such-type", "args": {}},
            note_put(next_id(), new_id(), visit_id="no-such-visit-" + new_id()[:8]),
            note_put(next_id(), new_id(), site_id=kit.site_id, lat=45.0),
            {"id": next_id(), "type": "note.delete", "args": {"id": new_id(), "base_version": 1}},
        ]
        answer = kit.participant.push(client_id, batch)
        types = [(r["status"], r.get("error", {}).get("type", "")) for r in answer["results"]]
        expected = ["unknown-mutation-type", "unknown-visit", "invalid-mutation", "not-found"]
        expect(types == [("rejected", PROBLEM + t) for t in expected], f"rejections: {types}")
        for r in answer["results"]:
            error = r["error"]
            expect(error["type"].removeprefix(PROBLEM) in MUTATION_ERRORS, f"unlisted error type {error['type']}")
            expect(bool(error.get("title")) and bool(error.get("detail")), f"problem without title/detail: {error}")
        expect(answer["last_mutation_id"] == 4, "rejected mutations must use up their ids")


@check
def a_gap_is_out_of_order_and_changes_nothing(kit: Kit) -> None:
    with kit.own_notes() as (client_id, _):
        answer = kit.participant.push(client_id, [note_put(2, new_id(), site_id=kit.site_id, body=MARK + "gap")])
        expect(answer["results"][0]["status"] == "out_of_order", f"id 2 first answered {answer['results']}")
        expect(answer["last_mutation_id"] == 0, f"last_mutation_id {answer['last_mutation_id']} after a gap")


@check
def an_edit_changes_only_what_it_sends(kit: Kit) -> None:
    with kit.own_notes() as (client_id, next_id):
        note_id = new_id()
        fields = {"site_id": kit.site_id, "body": MARK + "Orti urbani", "tags": ["gardens"], "lat": 45.0, "lon": 7.6}
        kit.participant.push(client_id, [note_put(next_id(), note_id, share_with_organizers=True, **fields)])
        edit = note_put(next_id(), note_id, body=MARK + "Orti urbani: 30 parcelle", base_version=1)
        [result] = kit.participant.push(client_id, [edit])["results"]
        expect(result["status"] == "applied" and result["version"] == 2, f"edit answered {result}")
        data = kit.participant.pull_all().data("note", note_id)
        kept = {k: data[k] for k in ("tags", "lat", "lon", "share_with_organizers")}
        expect(kept == {"tags": ["gardens"], "lat": 45.0, "lon": 7.6, "share_with_organizers": True}, f"kept {kept}")
        reset = note_put(next_id(), note_id, tags=None, base_version=2)
        kit.participant.push(client_id, [reset])
        data = kit.participant.pull_all().data("note", note_id)
        expect(data["tags"] == [] and data["body"].endswith("30 parcelle"), f"null did not reset tags only: {data}")


@check
def a_concurrent_edit_conflicts_with_every_field_and_reason(kit: Kit) -> None:
    with kit.own_notes() as (client_a, next_a):
        note_id, client_b = new_id(), new_id()
        kit.participant.push(client_a, [note_put(next_a(), note_id, site_id=kit.site_id, body=MARK + "base")])
        kit.participant.push(client_b, [note_put(1, note_id, body=MARK + "from B", base_version=1)])
        [result] = kit.participant.push(client_a, [note_put(next_a(), note_id, body=MARK + "from A", base_version=1)])[
            "results"
        ]
        expect(result["status"] == "conflict" and result.get("conflicts") == ["body"], f"stale edit: {result}")
        data = kit.participant.pull_all().data("note", note_id)
        [entry] = data["conflicts"]
        expect(frozenset(entry) == CONFLICT_KEYS, f"conflict entry keys {sorted(entry)}")
        expect(entry["reason"] == "concurrent_edit" and entry["value"] == MARK + "from A", f"conflict entry {entry}")
        expect(data["body"] == MARK + "from B", "the first edit to arrive must stand")


@check
def a_delete_over_an_unseen_edit_is_a_conflict(kit: Kit) -> None:
    with kit.own_notes() as (client_a, next_a):
        note_id, client_b = new_id(), new_id()
        kit.participant.push(client_a, [note_put(next_a(), note_id, site_id=kit.site_id, body=MARK + "base")])
        kit.participant.push(client_b, [note_put(1, note_id, body=MARK + "edited", base_version=1)])
        cursor = kit.participant.pull_all().cursor
        [result] = kit.participant.push(client_a, [note_delete(next_a(), note_id, 1)])["results"]
        expect(result["status"] == "conflict" and result.get("conflicts") == ["body"], f"delete answered {result}")
        change = kit.participant.pull_all(cursor).changes.get(("note", note_id))
        expect(change is not None and change["op"] == "delete", f"the author's pull shows {change}")
        assert change is not None
        entries = (change["data"] or {}).get("conflicts", [])
        expect([e["reason"] for e in entries] == ["edited_before_delete"], f"tombstone conflicts {entries}")


@check
def incremental_pull_brings_changes_and_deletes(kit: Kit) -> None:
    with kit.own_notes() as (client_id, next_id):
        cursor = kit.participant.pull_all().cursor
        note_id = new_id()
        kit.participant.push(client_id, [note_put(next_id(), note_id, site_id=kit.site_id, body=MARK + "new")])
        after = kit.participant.pull_all(cursor)
        expect(("note", note_id) in after.changes, "an incremental pull missed a new note")
        kit.participant.push(client_id, [note_delete(next_id(), note_id, 1)])
        gone = kit.participant.pull_all(after.cursor).changes.get(("note", note_id))
        expect(gone is not None and gone["op"] == "delete" and gone["data"] is None, f"delete pulled as {gone}")


@check
def pages_follow_has_more_and_the_summary_matches(kit: Kit) -> None:
    replica = kit.participant.pull_all(limit=2)
    expect(len(replica.pages) > 1, "limit=2 over the catalog gave one page")
    expect(all(p["has_more"] for p in replica.pages[:-1]), "has_more false before the last page")
    expect(all("summary" not in p or p["summary"] is None for p in replica.pages[:-1]), "summary before the end")
    summary = replica.pages[-1]["summary"]
    for entity, stated in summary.items():
        pairs = [(i, c["version"]) for i, c in replica.live(entity).items()]
        expect(stated == {"count": len(pairs), "checksum": checksum(pairs)}, f"{entity} summary {stated}")


@check
def bad_requests_are_problems_of_the_listed_types(kit: Kit) -> None:
    p = kit.participant
    cases: list[tuple[str, httpx.Response, int, str]] = [
        ("limit=0", p.pull_raw(limit=0), 400, "bad-request"),
        ("a cursor never issued", p.pull_raw(cursor="not-a-cursor!"), 400, "bad-request"),
        ("protocol=2 pull", p.pull_raw(protocol=2), 400, "unsupported-protocol"),
    ]
    push_url = p.sync_path + "/push"
    no_protocol = {"client_id": new_id(), "mutations": []}
    cases.append(("push without protocol", p.request("POST", push_url, json=no_protocol), 400, "unsupported-protocol"))
    over_cap = {"client_id": new_id(), "protocol": PROTOCOL_VERSION, "mutations": [note_delete(2**53, new_id(), 0)]}
    cases.append(("a mutation id over 2**53 - 1", p.request("POST", push_url, json=over_cap), 400, "bad-request"))
    bad_utf8 = b'{"client_id": "\xff", "protocol": 1, "mutations": []}'
    headers = {"Content-Type": "application/json"}
    cases.append(("invalid UTF-8", p.request("POST", push_url, content=bad_utf8, headers=headers), 400, "bad-request"))
    cases.append(("XML", p.request("POST", push_url, content=b"<a/>", headers={"Content-Type": "text/xml"}), 415, ""))
    for what, response, status, slug in cases:
        expect(response.status_code == status, f"{what}: {response.status_code} instead of {status}")
        expect(response.headers.get("content-type", "").startswith("application/problem+json"), f"{what}: no problem")
        problem = response.json()
        expect(not slug or problem["type"] == PROBLEM + slug, f"{what}: type {problem['type']}")
        if slug == "unsupported-protocol":
            expect(problem.get("supported") == [PROTOCOL_VERSION], f"{what}: supported {problem.get('supported')}")
        expect("None" not in (problem.get("detail") or ""), f"{what}: a Python value in {problem.get('detail')!r}")
    expect("15" in cases[5][1].json()["detail"], "invalid UTF-8 must name its byte offset in the body (15)")


@check
def organizers_see_shared_notes_and_lose_unshared_ones(kit: Kit) -> None:
    if kit.organizer is None:
        raise SkippedError("no --organizer-token")
    organizer = kit.organizer
    with kit.own_notes() as (client_id, next_id):
        cursor = organizer.pull_all().cursor
        shared, private = new_id(), new_id()
        kit.participant.push(
            client_id,
            [
                note_put(next_id(), shared, site_id=kit.site_id, body=MARK + "shared", share_with_organizers=True),
                note_put(next_id(), private, site_id=kit.site_id, body=MARK + "private"),
            ],
        )
        seen = organizer.pull_all(cursor)
        expect(seen.data("note", shared)["conflicts"] == [], "organizers see a shared note without its conflicts")
        expect(("note", private) not in seen.changes, "a private note reached an organizer")
        kit.participant.push(client_id, [note_put(next_id(), shared, share_with_organizers=False, base_version=1)])
        unshared = organizer.pull_all(seen.cursor).changes.get(("note", shared))
        expect(unshared is not None and unshared["op"] == "delete", f"unsharing reached the organizer as {unshared}")
        assert unshared is not None
        expect(unshared["data"] is None, "a delete for an unshared note must carry none of its content")


@check
def hosts_see_feedback_without_its_author(kit: Kit) -> None:
    if kit.host is None:
        raise SkippedError("no --host-token")
    feedback = kit.host.pull_all().live("feedback")
    if not feedback:
        raise SkippedError("no feedback on this host's sites yet")
    for feedback_id, change in feedback.items():
        expect("author_id" not in change["data"], f"feedback {feedback_id} shows a host its author_id key")


def run(
    base_url: str,
    token: str,
    *,
    organizer_token: str | None = None,
    host_token: str | None = None,
    http: httpx.Client | None = None,
) -> list[Outcome]:
    """Run every check against the server at ``base_url``; returns how each went."""
    client = http or httpx.Client(timeout=30)
    base = base_url.rstrip("/")
    try:
        participant = Session(client, base, token).login()
        kit = Kit(
            participant=participant,
            organizer=Session(client, base, organizer_token).login() if organizer_token else None,
            host=Session(client, base, host_token).login() if host_token else None,
        )
        sites = sorted(participant.pull_all().live("site"))
        expect(bool(sites), "the event has no site to write notes about")
        kit.site_id = sites[0]
        outcomes: list[Outcome] = []
        for name, function in CHECKS:
            try:
                function(kit)
            except SkippedError as exc:
                outcomes.append(Outcome(name, "skipped", str(exc)))
            except Exception as exc:  # whatever a server makes a check trip on is its failure
                outcomes.append(Outcome(name, "failed", f"{type(exc).__name__}: {exc}"))
            else:
                outcomes.append(Outcome(name, "passed"))
        return outcomes
    finally:
        if http is None:
            client.close()


def main(argv: list[str] | None = None) -> int:
    """Command line: run the checks, print one line each and a closing count; exit 1 on any failure."""
    parser = argparse.ArgumentParser(prog="python -m sync.conformance", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", required=True, help="the server's base URL, e.g. https://studyvisit.example")
    parser.add_argument("--token", required=True, help="a participant's bearer token")
    parser.add_argument("--organizer-token", help="an organizer's token, for the checks of what organizers see")
    parser.add_argument("--host-token", help="a host's token, for the checks of what hosts see")
    args = parser.parse_args(argv)
    try:
        outcomes = run(args.url, args.token, organizer_token=args.organizer_token, host_token=args.host_token)
    except (CheckFailedError, httpx.HTTPError) as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    for outcome in outcomes:
        print(f"{outcome.status.upper():8} {outcome.name}" + (f": {outcome.detail}" if outcome.detail else ""))
    failed = sum(o.status == "failed" for o in outcomes)
    skipped = sum(o.status == "skipped" for o in outcomes)
    print(f"{sum(o.status == 'passed' for o in outcomes)} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
