"""Loading the demo or a fixture again over a database in use: versions only grow, edits are never silently lost."""

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import EVENT_ID, make_app
from litestar import Litestar
from litestar.testing import TestClient
from sync_helpers import pull_all
from test_cli import assert_clean_failure, json_lines, studyvisit

from server.fixtures import DEMO_FIXTURE

Client = TestClient[Litestar]
SITE = "casa-quartiere-san-salvario"
VISIT = "d1-g2-triciclo"
E = f"/api/v1/events/{EVENT_ID}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def patch(api: Client, token: str, url: str, body: dict[str, Any]) -> dict[str, Any]:
    etag = api.get(url, headers=bearer(token)).headers["etag"]
    response = api.patch(
        url, json=body, headers={**bearer(token), "If-Match": etag, "Content-Type": "application/merge-patch+json"}
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def get(api: Client, token: str, url: str) -> Any:
    response = api.get(url, headers=bearer(token))
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def edited(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A demo database in use: the host corrected their site and an organizer moved a visit."""
    path = tmp_path / "demo.db"
    tokens = {
        a["role"]: a["token"] for a in json_lines(studyvisit("demo", "--json", "--no-serve", "--db", path).stdout)
    }
    with TestClient(app=make_app(path)) as api:
        patch(api, tokens["host"], f"{E}/sites/{SITE}", {"accessibility": "Step-free entrance from the back courtyard"})
        patch(
            api,
            tokens["organizer"],
            f"{E}/visits/{VISIT}",
            {"starts_at": "2025-12-10T15:30:00+01:00", "ends_at": "2025-12-10T16:45:00+01:00"},
        )
    return path, tokens


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["demo", "--json", "--no-serve"], id="demo"),
        pytest.param(["load-fixtures", DEMO_FIXTURE, "--json"], id="load-fixtures"),
    ],
)
def test_loading_again_over_edited_records_is_refused_naming_them_and_changes_nothing(
    edited: tuple[Path, dict[str, str]], command: list[Any]
) -> None:
    path, tokens = edited
    result = studyvisit(*command, "--db", path, check=False)
    assert_clean_failure(result, "2 record(s) were edited since they were loaded", f"site {SITE}", f"visit {VISIT}")
    assert "--force" in result.stderr
    assert result.stdout == ""  # no token printed: nothing was done
    with TestClient(app=make_app(path)) as api:
        site = get(api, tokens["host"], f"{E}/sites/{SITE}")
        visit = get(api, tokens["organizer"], f"{E}/visits/{VISIT}")
        assert me_ok(api, tokens["participant"])  # the demo did not rotate the tokens either
    assert (site["version"], site["accessibility"]) == (2, "Step-free entrance from the back courtyard")
    assert (visit["version"], visit["starts_at"]) == (2, "2025-12-10T15:30:00+01:00")


def me_ok(api: Client, token: str) -> bool:
    return api.get("/api/v1/me", headers=bearer(token)).status_code == 200


def test_forced_reload_overwrites_as_new_versions_with_history_and_reaches_synced_devices(
    edited: tuple[Path, dict[str, str]],
) -> None:
    path, tokens = edited
    with TestClient(app=make_app(path)) as api:
        device = pull_all(api, bearer(tokens["organizer"]))
    assert device.data("site", SITE)["version"] == 2
    result = studyvisit("load-fixtures", DEMO_FIXTURE, "--db", path, "--force")
    assert "2 edited record(s) overwritten" in result.stderr
    with TestClient(app=make_app(path)) as api:
        site = get(api, tokens["host"], f"{E}/sites/{SITE}")
        visit = get(api, tokens["organizer"], f"{E}/visits/{VISIT}")
        site_history = get(api, tokens["organizer"], f"{E}/sites/{SITE}/history")
        visit_history = get(api, tokens["organizer"], f"{E}/visits/{VISIT}/history")
        device = pull_all(api, bearer(tokens["organizer"]), device)
    # Monotonic: the fixture's values come back as version 3, never as version 1.
    assert (site["version"], site["accessibility"]) == (3, "")
    assert (visit["version"], visit["starts_at"]) == (3, "2025-12-10T14:30:00+01:00")
    assert [e["version"] for e in site_history] == [3, 2]
    assert site_history[0]["changes"]["accessibility"] == {
        "old": "Step-free entrance from the back courtyard",
        "new": "",
    }
    assert [e["version"] for e in visit_history] == [3, 2]
    # A device that synced before the reload is told: it converges instead of keeping version 2.
    assert device.data("site", SITE)["version"] == 3
    assert device.data("site", SITE)["accessibility"] == ""
    assert device.data("visit", VISIT)["starts_at"] == "2025-12-10T14:30:00+01:00"


def test_loading_an_unchanged_fixture_again_changes_no_version_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "loaded.db"
    first = studyvisit("load-fixtures", DEMO_FIXTURE, "--db", path)
    # 1 event, 18 sites, 3 groups, 21 visits, 3 questions
    assert "Loaded records: 46 added, 0 updated, 0 unchanged; 12 new account(s)." in first.stderr
    again = studyvisit("load-fixtures", DEMO_FIXTURE, "--db", path)
    assert again.stdout == ""
    assert "0 added, 0 updated, 46 unchanged; no new accounts (existing tokens kept)" in again.stderr
    with TestClient(app=make_app(path)) as api:
        token = json_lines(studyvisit("demo", "--json", "--no-serve", "--db", path).stdout)[0]["token"]
        items = get(api, token, f"{E}/itinerary")["items"]
    assert {i["visit"]["version"] for i in items} == {1}


def test_a_changed_fixture_file_updates_records_nobody_edited_as_new_versions(
    edited: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    path, tokens = edited
    doc = json.loads(DEMO_FIXTURE.read_text(encoding="utf-8"))
    visit = next(v for v in doc["visits"] if v["id"] == "d2-g1-barrito")
    visit["meeting_point"] = "Side gate, Via Nizza"
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    # The edited site and visit are as in the new file except for the edits: still refused without --force.
    refused = studyvisit("load-fixtures", changed, "--db", path, check=False)
    assert_clean_failure(refused, "2 record(s) were edited")
    # Undo the edits' reason to refuse by loading with --force once, then change only the file.
    studyvisit("load-fixtures", DEMO_FIXTURE, "--db", path, "--force")
    result = studyvisit("load-fixtures", changed, "--db", path)
    assert "0 added, 1 updated, 45 unchanged" in result.stderr
    with TestClient(app=make_app(path)) as api:
        found = get(api, tokens["organizer"], f"{E}/visits/d2-g1-barrito")
        changes = get(api, tokens["organizer"], f"{E}/changes?since=2025-12-01T00:00:00Z&lang=en")["changes"]
    assert (found["version"], found["meeting_point"]) == (2, "Side gate, Via Nizza")
    assert any(c["visit_id"] == "d2-g1-barrito" and c["kind"] == "meeting_point" for c in changes)
