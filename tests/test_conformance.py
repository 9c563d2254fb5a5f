"""The conformance kit passes against this server, live over HTTP, and fails against a broken one."""

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from conftest import LiveServer, Seeded
from sync_helpers import CLIENT_A, EVENT_ID, G1_SITE, feedback_put, scalar

from sync import conformance

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL


def kit_tokens(seeded: Seeded) -> tuple[str, str, str]:
    """Tokens of a participant, an organizer and a host (of the site the participant's group visits)."""
    return seeded.token("participant", group="G1"), seeded.token("organizer"), seeded.token("host", site=G1_SITE)


def live_counts(seeded: Seeded) -> tuple[int, int]:
    return (
        scalar(seeded, "SELECT COUNT(*) FROM notes WHERE NOT deleted"),
        scalar(seeded, "SELECT COUNT(*) FROM feedback"),
    )


@pytest.fixture
def with_feedback(live_server: LiveServer, seeded: Seeded) -> LiveServer:
    """Feedback on a G1 visit, so that the hosts' check has something to look at."""
    body = {"client_id": CLIENT_A, "protocol": 1, "mutations": [feedback_put(1, conformance.new_id(), rating=4)]}
    url = f"{live_server.url}/api/v1/events/{EVENT_ID}/sync/push"
    response = httpx.post(url, json=body, headers=seeded.headers("participant", group="G1"), timeout=30)
    assert response.json()["results"][0]["status"] == "applied", response.text
    return live_server


def test_the_kit_passes_against_a_live_server_and_leaves_no_live_record(
    with_feedback: LiveServer, seeded: Seeded
) -> None:
    before = live_counts(seeded)

    participant, organizer, host = kit_tokens(seeded)
    outcomes = conformance.run(with_feedback.url, participant, organizer_token=organizer, host_token=host)

    assert [(o.name, o.status, o.detail) for o in outcomes if o.status != "passed"] == []
    assert {o.name for o in outcomes} == {name for name, _ in conformance.CHECKS}
    assert live_counts(seeded) == before


def test_the_kit_command_prints_each_check_and_a_closing_count(live_server: LiveServer, seeded: Seeded) -> None:
    command = [sys.executable, "-m", "sync.conformance", "--url", live_server.url, "--token", kit_tokens(seeded)[0]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == f"{len(conformance.CHECKS) - 2} passed, 0 failed, 2 skipped"
    assert sum(line.startswith("PASSED") for line in lines) == len(conformance.CHECKS) - 2


def strip_results(body: dict[str, Any]) -> dict[str, Any]:
    """A server that answers retries with a bare ``duplicate``, as v1 servers did before results were kept."""
    for result in body.get("results", []):
        result.pop("result", None)
    return body


def drop_reason(body: dict[str, Any]) -> dict[str, Any]:
    """A server whose conflict entries lack their reason."""
    for change in body.get("changes", []):
        for entry in (change.get("data") or {}).get("conflicts", []):
            entry.pop("reason", None)
    return body


class Broken(httpx.BaseTransport):
    """The live server behind a transport that rewrites its JSON answers to break one rule."""

    def __init__(self, rewrite: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.inner = httpx.HTTPTransport()
        self.rewrite = rewrite

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        content = response.read()
        if response.headers.get("content-type", "").startswith("application/json"):
            content = json.dumps(self.rewrite(json.loads(content))).encode()
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-encoding")}
        return httpx.Response(response.status_code, headers=headers, content=content)


@pytest.mark.parametrize(
    ("rewrite", "failing"),
    [
        (strip_results, {"retried_push_is_duplicate_with_the_original_result"}),
        (
            drop_reason,
            {"a_concurrent_edit_conflicts_with_every_field_and_reason", "a_delete_over_an_unseen_edit_is_a_conflict"},
        ),
    ],
    ids=["duplicates-without-results", "conflicts-without-reason"],
)
def test_the_kit_fails_against_a_server_that_breaks_a_rule(
    live_server: LiveServer, seeded: Seeded, rewrite: Callable[[dict[str, Any]], dict[str, Any]], failing: set[str]
) -> None:
    with httpx.Client(transport=Broken(rewrite), timeout=30) as http:
        outcomes = conformance.run(live_server.url, seeded.token("participant", group="G1"), http=http)

    assert {o.name for o in outcomes if o.status == "failed"} == failing
    assert conformance.main(["--url", "http://127.0.0.1:9", "--token", "x"]) == 2  # nothing listens: cannot start
