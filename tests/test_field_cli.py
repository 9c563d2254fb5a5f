"""``studyvisit field`` against a real server: mistakes refused when they are made, in the terms of the command line."""

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import LiveServer, Seeded, free_port

from server.cli_field import field

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

MAX_ATTEMPTS = 3


class Field:
    """The field commands of one device, as a terminal runs them; waits between retries are recorded, not slept."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.waits: list[float] = []
        self.runner = CliRunner()

    def __call__(self, *args: str) -> Result:
        options = {"sleep": self.waits.append, "max_attempts": MAX_ATTEMPTS}
        return self.runner.invoke(field, [*args, "--data", str(self.data)], obj={"client_options": options})

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.exit_code == 0, result.output
        return result.output


@pytest.fixture
def device(tmp_path: Path) -> Field:
    return Field(tmp_path / "field")


@pytest.fixture
def synced(device: Field, live_server: LiveServer, seeded: Seeded) -> Field:
    """Nguyễn Thị Hoa's device (group G1), logged in and synced."""
    device.ok("login", "--url", live_server.url, "--token", seeded.accounts["p-nguyen-thi-hoa"].token)
    device.ok("sync")
    return device


def assert_refused(result: Result, message: str) -> None:
    """Exit 1, one line of error naming what the user typed, no traceback."""
    assert result.exit_code == 1, result.output
    assert result.output.strip() == f"Error: {message}", result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["note", "Lovely", "--visit", "d9-nowhere"],
            "--visit d9-nowhere: no such visit in the programme on this device (see `studyvisit field itinerary`; "
            "run `studyvisit field sync` if it was added since)",
            id="unknown-visit",
        ),
        pytest.param(
            ["note", "Lovely", "--visit", "d1-g2-triciclo"],
            "--visit d1-g2-triciclo is not in your group's programme (group G1): write about a visit of "
            "`studyvisit field itinerary`",
            id="another-groups-visit",
        ),
        pytest.param(
            ["note", "Lovely", "--site", "no-such-site"],
            "--site no-such-site: no such site on this device (see `studyvisit field sites`; "
            "run `studyvisit field sync` if it is new)",
            id="unknown-site",
        ),
        pytest.param(
            ["note", "Lovely", "--visit", "d1-g1-casa-quartiere-san-salvario", "--tag", "x" * 65],
            "Expected `str` of length <= 64 - at --tag",
            id="tag-too-long",
        ),
        pytest.param(
            ["feedback", "d1-g2-triciclo", "--rating", "4"],
            "VISIT d1-g2-triciclo is not in your group's programme (group G1): give feedback on a visit of "
            "`studyvisit field itinerary`",
            id="feedback-on-another-groups-visit",
        ),
    ],
)
def test_a_note_or_feedback_the_server_would_reject_is_refused_when_written(
    synced: Field, args: list[str], message: str
) -> None:
    assert_refused(synced(*args), message)
    assert "Unsynced:    0 change(s)" in synced.ok("status")  # nothing queued to be rejected later


def test_a_note_about_a_visit_of_ones_group_is_saved_and_applied(synced: Field) -> None:
    assert "saved on this device" in synced.ok(
        "note", "Time bank: hours", "--visit", "d1-g1-casa-quartiere-san-salvario"
    )
    assert "Sent 1 change(s): 1 applied, 0 already there, 0 rejected" in synced.ok("sync")


def test_a_note_before_the_first_sync_says_to_sync(device: Field, live_server: LiveServer, seeded: Seeded) -> None:
    device.ok("login", "--url", live_server.url, "--token", seeded.accounts["p-nguyen-thi-hoa"].token)
    result = device("note", "Lovely", "--visit", "d1-g1-casa-quartiere-san-salvario")
    assert_refused(
        result,
        "this device has no programme yet: run `studyvisit field sync` first "
        "(then `studyvisit field itinerary` lists the visits for --visit)",
    )


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "studyvisit.example.org", "ftp://example.org"])
def test_a_server_url_without_http_is_refused_at_once(device: Field, url: str) -> None:
    result = device("login", "--url", url, "--token", "sv_x")
    assert result.exit_code == 1, result.output
    assert f"Error: --url {url!r} is not a server URL: give it with http:// or https://" in result.output
    assert device.waits == []  # no retry: no network error could explain it


def test_a_refused_connection_shows_each_retry_and_why(device: Field) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = device("login", "--url", url, "--token", "sv_x")
    assert result.exit_code == 1, result.output
    retries = [line for line in result.output.splitlines() if "trying again in" in line]
    assert len(retries) == len(device.waits) == MAX_ATTEMPTS - 1
    assert retries[0].startswith(f"GET {url}/api/v1/me: ConnectError")
    assert "(attempt 1 of 3); trying again in" in retries[0]
    assert f"after {MAX_ATTEMPTS} attempts" in result.output.splitlines()[-1]


def test_a_404_names_the_url_it_came_from(device: Field, live_server: LiveServer, seeded: Seeded) -> None:
    url = f"{live_server.url}/studyvisit"  # a server URL with a path the server does not have
    result = device("login", "--url", url, "--token", seeded.token("participant"))
    assert result.exit_code == 1, result.output
    assert f"Error: GET {url}/api/v1/me: 404 " in result.output
