"""A deleted note leaves none of what was typed readable on the server, its audit trail included."""

import pytest
from conftest import Seeded
from litestar import Litestar
from litestar.testing import TestClient
from sync_helpers import note_put, push, rows, uid

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

AUTHOR = "p-nguyen-thi-hoa"
SECRET = "Mật khẩu của tôi: 시크릿 — سر"


@pytest.mark.parametrize("edits", [0, 1, 3], ids=["never-edited", "edited-once", "edited-three-times"])
def test_deleting_a_note_removes_its_text_from_the_history_too(
    client: TestClient[Litestar], seeded: Seeded, edits: int
) -> None:
    headers = {"Authorization": f"Bearer {seeded.accounts[AUTHOR].token}"}
    mutations = [note_put(1, uid(1), body=f"{SECRET} v0", tags=["rome"], lat=45.06, lon=7.68)]
    mutations += [note_put(2 + n, uid(1), body=f"{SECRET} v{n + 1}", base_version=1 + n) for n in range(edits)]
    push(client, headers, mutations)
    before = [r["changes"] for r in rows(seeded, "SELECT changes FROM history WHERE entity_id = ?", uid(1))]
    assert len(before) == edits
    assert all(SECRET in changes for changes in before)

    delete = {"id": 2 + edits, "type": "note.delete", "args": {"id": uid(1), "base_version": 1 + edits}}
    assert push(client, headers, [delete])["results"][0]["status"] == "applied"

    after = rows(seeded, "SELECT changes, account_id FROM history WHERE entity_id = ?", uid(1))
    assert [r["account_id"] for r in after] == [AUTHOR] * edits  # who changed it, and when, stays
    assert not any(SECRET in r["changes"] or "45.06" in r["changes"] for r in after)
    note = rows(seeded, "SELECT body, tags, lat, deleted FROM notes WHERE id = ?", uid(1))[0]
    assert (note["body"], note["tags"], note["lat"], note["deleted"]) == ("", "[]", None, 1)
