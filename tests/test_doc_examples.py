"""The organizers' and hosts' guides: every curl example, in order, against the app over a fresh demo event."""

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Seeded
from doc_examples import read_examples, read_exports, run
from litestar import Litestar
from litestar.testing import TestClient

Client = TestClient[Litestar]
DOCS = Path(__file__).resolve().parent.parent / "docs"


# The tokens of the accounts each guide's text names: what a reader is given, and the only
# variables a test fills in. Everything else a guide exports (SINCE...) is used as written, so a
# reader pasting the commands over a fresh demo gets exactly the answers shown; BASE is "" as the
# app is in-process (a real server over `studyvisit demo` is tests/test_readme_tour.py).
def feedback_variables(client: Client, seeded: Seeded) -> dict[str, str]:
    return {
        "TOKEN": seeded.accounts["p-nguyen-thi-hoa"].token,
        "HOST_TOKEN": seeded.token("host", site="casa-quartiere-san-salvario"),
        "ORG_TOKEN": seeded.token("organizer"),
    }


def itinerary_variables(client: Client, seeded: Seeded) -> dict[str, str]:
    return {
        "TOKEN": seeded.accounts["p-nguyen-thi-hoa"].token,
        "ORG_TOKEN": seeded.token("organizer"),
    }


def hosts_variables(client: Client, seeded: Seeded) -> dict[str, str]:
    return {
        "HOST_TOKEN": seeded.token("host", site="casa-quartiere-san-salvario"),
        "ORG_TOKEN": seeded.token("organizer"),
    }


def people_variables(client: Client, seeded: Seeded) -> dict[str, str]:
    return {
        "TOKEN": seeded.accounts["p-nguyen-thi-hoa"].token,
        "ORG_TOKEN": seeded.token("organizer"),
    }


def test_the_itinerary_guide_reads_changes_since_the_time_it_exports() -> None:
    # Not a time the test picks: the guide's own, which a reader's shell has.
    assert read_exports(DOCS / "organizers-itinerary.md") == {
        "BASE": "http://127.0.0.1:8000",
        "SINCE": "2025-12-09T18:00:00Z",
    }


# (guide, fewest examples it must have, its variables): a guide that lost its examples fails.
GUIDES = [
    pytest.param("organizers-feedback.md", 10, feedback_variables, id="organizers-feedback"),
    pytest.param("organizers-itinerary.md", 7, itinerary_variables, id="organizers-itinerary"),
    pytest.param("hosts.md", 6, hosts_variables, id="hosts"),
    pytest.param("organizers-people.md", 7, people_variables, id="organizers-people"),
]


@pytest.mark.parametrize(("guide", "minimum", "variables"), GUIDES)
def test_every_example_of_the_guide_answers_as_shown(
    client: Client,
    seeded: Seeded,
    guide: str,
    minimum: int,
    variables: Callable[[Client, Seeded], dict[str, str]],
) -> None:
    examples = read_examples(DOCS / guide)
    assert len(examples) >= minimum
    exported = read_exports(DOCS / guide)
    values = {**exported, "BASE": "", **variables(client, seeded)}
    for example in examples:  # in order: each one starts from what the ones before it did
        run(client, example, values)
