"""A client generated from the published OpenAPI document works against a live server.

openapi-python-client generates a package from ``/schema/openapi.json`` into a temporary folder; the
test imports it and, over real HTTP, moves a visit (organizer, with If-Match), corrects a site (its
host), pushes a note and pulls it back (a participant). A request body missing from the document, a
media type it does not name or a response schema that does not match the server would break here.
"""

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from conftest import EVENT_ID, LiveServer, Seeded
from sync_helpers import CLIENT_A, G1_SITE, G1_VISIT, note_put, uid

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

PACKAGE = "studyvisit_generated_client"
ROME = ZoneInfo("Europe/Rome")


@pytest.fixture
def generated(live_server: LiveServer, tmp_path: Path) -> Iterator[ModuleType]:
    """The generated package, importable for this test only."""
    document = tmp_path / "openapi.json"
    document.write_bytes(httpx.get(live_server.url + "/schema/openapi.json").raise_for_status().content)
    bin_dir = Path(sys.executable).parent  # the generator formats its output with the ruff of the test extras
    command = [str(bin_dir / "openapi-python-client"), "generate", "--path", str(document), "--meta", "none"]
    subprocess.run(
        [*command, "--output-path", str(tmp_path / PACKAGE)],
        check=True,
        capture_output=True,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
        timeout=120,
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def module(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{name}")


def client_for(generated: ModuleType, server: LiveServer, token: str) -> Any:
    return generated.AuthenticatedClient(base_url=server.url, token=token, raise_on_unexpected_status=True)


def test_generated_client_moves_a_visit_corrects_a_site_and_pushes_and_pulls_a_note(
    generated: ModuleType, live_server: LiveServer, seeded: Seeded
) -> None:
    models = module("models")
    unset = module("types").UNSET

    # An organizer moves a visit half an hour later, with the ETag of what they read.
    organizer = client_for(generated, live_server, seeded.token("organizer"))
    get_visit = module("api.itinerary.api_v1_events_event_id_visits_visit_id_get_get_visit")
    patch_visit = module("api.itinerary.api_v1_events_event_id_visits_visit_id_patch_visit")
    read = get_visit.sync_detailed(event_id=EVENT_ID, visit_id=G1_VISIT, client=organizer)
    assert read.status_code == 200
    visit = read.parsed
    starts, ends = visit.starts_at + timedelta(minutes=30), visit.ends_at + timedelta(minutes=30)
    moved = patch_visit.sync_detailed(
        event_id=EVENT_ID,
        visit_id=G1_VISIT,
        client=organizer,
        body=models.VisitFields(starts_at=starts, ends_at=ends),
        if_match=read.headers["etag"],
    )
    assert moved.status_code == 200, moved.content
    assert moved.parsed.starts_at == starts
    assert moved.parsed.version == visit.version + 1
    again = get_visit.sync_detailed(event_id=EVENT_ID, visit_id=G1_VISIT, client=organizer).parsed
    assert again.starts_at.astimezone(ROME) == starts.astimezone(ROME)

    # The site's host corrects its contact, in words with accents; a stale If-Match is refused.
    host = client_for(generated, live_server, seeded.token("host", site=G1_SITE))
    get_site = module("api.sites.api_v1_events_event_id_sites_site_id_get_get_site")
    patch_site = module("api.sites.api_v1_events_event_id_sites_site_id_patch_site")
    site_etag = get_site.sync_detailed(event_id=EVENT_ID, site_id=G1_SITE, client=host).headers["etag"]
    contact = "Accoglienza: Niccolò Bùrzio, lun-ven 9-18"
    corrected = patch_site.sync_detailed(
        event_id=EVENT_ID,
        site_id=G1_SITE,
        client=host,
        body=models.SiteFieldsPatch(contact=contact),
        if_match=site_etag,
    )
    assert corrected.status_code == 200, corrected.content
    assert corrected.parsed.contact == contact
    host_lenient = generated.AuthenticatedClient(base_url=live_server.url, token=seeded.token("host", site=G1_SITE))
    stale = patch_site.sync_detailed(
        event_id=EVENT_ID,
        site_id=G1_SITE,
        client=host_lenient,
        body=models.SiteFieldsPatch(contact="x"),
        if_match=site_etag,
    )
    assert stale.status_code == 412
    assert isinstance(stale.parsed, models.Problem)
    assert stale.parsed.type_ == "urn:studyvisit:problem:stale-version"

    # A participant pushes a note written offline and pulls it back.
    author = seeded.first("participant", group="G1")
    participant = client_for(generated, live_server, author.token)
    push = module("api.sync.api_v1_events_event_id_sync_push_push_mutations")
    pull = module("api.sync.api_v1_events_event_id_sync_pull_pull_changes")
    note_id = uid(7)
    body_text = "Cooperativa di comunità: أهلاً — Nguyễn Thị Hà, 김민준"
    sent = note_put(1, note_id, body=body_text)
    mutation = models.Mutation(id=sent["id"], type_=sent["type"], args=models.MutationArgs.from_dict(sent["args"]))
    pushed = push.sync_detailed(
        event_id=EVENT_ID,
        client=participant,
        body=models.PushRequest(client_id=CLIENT_A, protocol=1, mutations=[mutation]),
    )
    assert pushed.status_code == 200, pushed.content
    assert [(r.id, r.status) for r in pushed.parsed.results] == [(1, "applied")]
    changes: list[Any] = []
    cursor: Any = unset
    for _ in range(50):  # pages until the server says there is no more
        page = pull.sync_detailed(event_id=EVENT_ID, client=participant, cursor=cursor, client_id=CLIENT_A).parsed
        changes += page.changes
        if not page.has_more:
            break
        cursor = page.cursor
    notes = [c for c in changes if c.entity == "note" and c.id == note_id]
    assert len(notes) == 1
    # The pull page is typed per entity in OpenAPI: the generated client hands back a Note model.
    assert isinstance(notes[0].data, models.Note)
    assert (notes[0].data.body, notes[0].data.author_id) == (body_text, author.id)
