"""docs/sync-protocol.md against the code: every per-mutation error type and every record field is in it."""

import ast
import re
from pathlib import Path

import msgspec
import pytest

from schemas.feedback import Question
from schemas.itinerary import Group, Visit
from schemas.places import Event
from schemas.sync import Conflict, Feedback, Note, NoteAttachment, SyncedSite
from sync import conformance

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "sync-protocol.md").read_text(encoding="utf-8")
# The exceptions whose first argument becomes the `type` of a rejected mutation's problem.
REJECTIONS = {"MutationRejectedError", "InvalidMutationError"}


def section(title: str) -> str:
    start = DOC.index(title)
    end = DOC.find("\n#", start + len(title))
    return DOC[start : end if end != -1 else len(DOC)]


def first_column_names(text: str) -> set[str]:
    """Every backticked name in the first column of the Markdown tables of ``text``."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`([a-z_.<>-]+)`", line.split("|")[1]))
    return names


def rejection_slugs() -> set[str]:
    slugs: set[str] = set()
    # The modules behind sync's appliers (server.services.appliers) and the checks before them.
    modules = [
        "server/services/mutations.py",
        "server/services/visits.py",
        "server/services/push.py",
        "sync/mutations.py",
    ]
    for path in (ROOT / m for m in modules):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in REJECTIONS:
                first = node.args[0] if node.args else None
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    slugs.add(first.value)
    return slugs


def test_every_error_a_mutation_can_be_rejected_with_is_listed_with_its_meaning() -> None:
    listed = first_column_names(section("### 3.3 Errors of one mutation")) - {"type"}  # the header row

    found = rejection_slugs()

    assert "invalid-answer" in found  # the scan sees the services' rejections
    assert found - listed == set()
    assert listed == conformance.MUTATION_ERRORS  # the kit accepts exactly what the document lists


@pytest.mark.parametrize(
    ("heading", "record"),
    [
        ("**`event`**", Event),
        ("**`site`**", SyncedSite),
        ("**`visit`**", Visit),
        ("**`note`**", Note),
        ("**`feedback`**", Feedback),
    ],
    ids=["event", "site", "visit", "note", "feedback"],
)
def test_every_field_of_a_pulled_record_has_a_row_in_the_records_section(
    heading: str, record: type[msgspec.Struct]
) -> None:
    records = section("### 5.1 Records")
    table = records[records.index(heading) : records.index("\n**", records.index(heading) + len(heading))]
    documented = first_column_names(table)
    if record is Note:  # its place and content fields point at note.put's table
        documented |= first_column_names(section("### `note.put`"))

    assert set(record.__struct_fields__) - documented == set()


@pytest.mark.parametrize("record", [Group, Question, Conflict, NoteAttachment], ids=lambda r: r.__name__)
def test_records_described_in_a_sentence_name_every_field(record: type[msgspec.Struct]) -> None:
    records = section("### 5.1 Records")
    assert [f for f in record.__struct_fields__ if f"`{f}`" not in records and f'"{f}"' not in records] == []
