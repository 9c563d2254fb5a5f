"""The organizers' and hosts' guides: every curl example, in order, against the app over a fresh demo event."""

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import EVENT_ID, Seeded
from doc_examples import read_examples, run
from litestar import Litestar
from litestar.testing import TestClient

Client = TestClient[Litestar]
DOCS = Path(__file__).resolve().parent.parent / "docs"


def since(client: Client, seeded: Seeded) -> str:
    """When the demo programme was loaded: the last time participants read it."""
    items = client.get(f"/api/v1/events/{EVENT_ID}/itinerary", headers=seeded.headers("organizer")).json()["items"]
    return max(str(i["visit"]["updated_at"]) for i in items)


# The variables each guide's "Before you start" exports, and the accounts its text names.
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
        "SINCE": since(client, seeded),
    }


def hosts_variables(client: Client, seeded: Seeded) -> dict[str, str]:
    return {
        "HOST_TOKEN": seeded.token("host", site="casa-quartiere-san-salvario"),
        "ORG_TOKEN": seeded.token("organizer"),
    }


# (guide, fewest examples it must have, its variables): a guide that lost its examples fails.
GUIDES = [
    pytest.param("organizers-feedback.md", 10, feedback_variables, id="organizers-feedback"),
    pytest.param("organizers-itinerary.md", 7, itinerary_variables, id="organizers-itinerary"),
    pytest.param("hosts.md", 6, hosts_variables, id="hosts"),
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
    values = {"BASE": "", **variables(client, seeded)}
    for example in examples:  # in order: each one starts from what the ones before it did
        run(client, example, values)
