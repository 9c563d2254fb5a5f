"""The ``studyvisit`` command, run as a user runs it: a child process, output read back, tokens tried on the API."""

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import EVENT_ID, make_app
from litestar import Litestar
from litestar.testing import TestClient

from server.fixtures import DEMO_FIXTURE
from server.storage.accounts import list_accounts
from tests.databases import Seeded, empty

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT_KEYS = {"app_url", "id", "name", "role", "event_id", "token", "feed_urls"}
# Names in three scripts, as a participants list from organizers arrives: UTF-8 with a BOM, from a spreadsheet.
PARTICIPANTS_CSV = (
    "\ufeffname,role,group,sites,language,country,organization,id\n"
    "فاطمة الزهراء العمراني,participant,G2,,ar,MA,Cooperative development agency,p-fatima-2\n"
    "Nguyễn Văn An,participant,G1,,vi,VN,Ministry of Labour,\n"
    "김민준,participant,G3,,ko,KR,Public agency for social enterprise,p-kim-2\n"
    "Giulia Rossi,host,,pausa-cafe;triciclo,it,IT,,\n"
)


def studyvisit(
    *args: str | Path, check: bool = True, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m server.cli`` with these arguments in the repository (or ``cwd``), with extra environment variables."""
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", *map(str, args)],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def json_lines(stdout: str) -> list[dict[str, Any]]:
    """Every line of the output, each a JSON object: --json prints nothing else before or between them."""
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def assert_clean_failure(result: subprocess.CompletedProcess[str], *message: str, status: int = 1) -> None:
    """A user error: exit status 1 (2 for a usage error click catches), a message on stderr, no traceback."""
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    for part in message:
        assert part in result.stderr


def where_args(where: Seeded) -> list[str]:
    """The options that name this database: --db for a SQLite file, --database-url for PostgreSQL."""
    return ["--database-url", where.url] if where.url else ["--db", str(where.path)]


def account_ids(where: Seeded) -> set[str]:
    """The ids of the event's accounts, read from the database itself."""
    database = where.store()
    try:
        with database.read() as tx:
            return {a.id for a in list_accounts(tx, EVENT_ID)}
    finally:
        database.close()


def run_demo(where: Seeded) -> list[dict[str, Any]]:
    """``studyvisit demo --json --no-serve`` into this database; the accounts it printed."""
    return json_lines(studyvisit("demo", "--json", "--no-serve", *where_args(where)).stdout)


@pytest.fixture(scope="module")
def demo_db(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> tuple[Seeded, list[dict[str, Any]]]:
    """One demo database for the module (each test adds accounts with ids of its own), on the engine
    the run is on, and its printed accounts."""
    where = empty(tmp_path_factory.mktemp("cli") / "demo.db", request)
    return where, run_demo(where)


@pytest.fixture(scope="module")
def api(demo_db: tuple[Seeded, list[dict[str, Any]]]) -> Iterator[TestClient[Litestar]]:
    with TestClient(app=make_app(demo_db[0])) as client:
        yield client


def me(api: TestClient[Litestar], token: str) -> dict[str, Any]:
    response = api.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.both_backends
def test_demo_prints_one_json_account_per_role_with_only_the_fields_that_are_set(
    demo_db: tuple[Seeded, list[dict[str, Any]]],
) -> None:
    _, accounts = demo_db
    assert [a["role"] for a in accounts] == ["organizer", "host", "participant"]
    organizer, host, participant = accounts
    assert set(organizer) == ACCOUNT_KEYS
    assert (host["id"], set(host) - ACCOUNT_KEYS) == ("host-san-salvario", {"site_ids"})
    assert host["site_ids"] == ["casa-quartiere-san-salvario"]
    assert set(participant) - ACCOUNT_KEYS == {"group"}
    assert participant["group"] == "G1"
    assert participant["name"] == "Nguyễn Thị Hoa"
    assert {a["event_id"] for a in accounts} == {EVENT_ID}
    assert len({a["token"] for a in accounts}) == 3


@pytest.mark.both_backends
def test_demo_tokens_open_the_api_as_their_accounts(
    demo_db: tuple[Seeded, list[dict[str, Any]]], api: TestClient[Litestar]
) -> None:
    for account in demo_db[1]:
        assert me(api, account["token"])["id"] == account["id"]
    participant = demo_db[1][2]
    response = api.get(
        f"/api/v1/events/{EVENT_ID}/itinerary", headers={"Authorization": f"Bearer {participant['token']}"}
    )
    assert response.json()["group_id"] == "G1"


@pytest.mark.both_backends
def test_demo_again_gives_new_tokens_and_retires_the_old_ones(blank: Seeded) -> None:
    first, second = run_demo(blank), run_demo(blank)
    assert [a["id"] for a in second] == [a["id"] for a in first]
    with TestClient(app=make_app(blank)) as api:
        for old, new in zip(first, second, strict=True):
            assert me(api, new["token"])["id"] == new["id"]
            response = api.get("/api/v1/me", headers={"Authorization": f"Bearer {old['token']}"})
            assert response.status_code == 401


@pytest.mark.both_backends
def test_demo_without_json_shows_a_curl_line_with_the_participant_token(blank: Seeded) -> None:
    out = studyvisit("demo", "--no-serve", *where_args(blank)).stdout
    assert "Try: curl -H 'Authorization: Bearer sv_" in out
    assert f"/api/v1/events/{EVENT_ID}/itinerary" in out


@pytest.mark.both_backends
def test_accounts_add_prints_a_working_token(
    demo_db: tuple[Seeded, list[dict[str, Any]]], api: TestClient[Litestar]
) -> None:
    result = studyvisit(
        "accounts", "add", "--json", *where_args(demo_db[0]), "--event", EVENT_ID, "--name", "Amaru Quispe Mamani",
        "--role", "host", "--site", "triciclo", "--site", "pausa-cafe", "--language", "es", "--country", "PE",
    )  # fmt: skip
    [account] = json_lines(result.stdout)
    assert account["id"] == "amaru-quispe-mamani"
    assert sorted(account["site_ids"]) == ["pausa-cafe", "triciclo"]
    found = me(api, account["token"])
    assert (found["name"], found["role"], found["language"]) == ("Amaru Quispe Mamani", "host", "es")
    assert sorted(found["site_ids"]) == ["pausa-cafe", "triciclo"]


@pytest.mark.parametrize(
    ("args", "message", "status"),
    [
        pytest.param(["--id", "org-marta", "--name", "X", "--role", "organizer"], "exists already", 1, id="taken"),
        pytest.param(["--name", "X", "--role", "guest"], "'guest' is not one of", 2, id="unknown-role"),
        pytest.param(["--name", "X", "--role", "participant", "--country", "Italy"], "country", 1, id="bad-country"),
    ],
)
@pytest.mark.both_backends
def test_accounts_add_refuses_bad_input_with_a_message(
    demo_db: tuple[Seeded, list[dict[str, Any]]], args: list[str], message: str, status: int
) -> None:
    result = studyvisit("accounts", "add", *where_args(demo_db[0]), "--event", EVENT_ID, *args, check=False)
    assert_clean_failure(result, message, status=status)


@pytest.mark.both_backends
def test_accounts_add_to_an_unknown_event_is_refused(demo_db: tuple[Seeded, list[dict[str, Any]]]) -> None:
    args = ["--event", "lyon-sse-2026", "--name", "Someone", "--role", "participant"]
    result = studyvisit("accounts", "add", *where_args(demo_db[0]), *args, check=False)
    assert_clean_failure(result, "no event 'lyon-sse-2026'")


@pytest.mark.both_backends
def test_accounts_import_reads_names_in_any_script_and_prints_working_tokens(
    demo_db: tuple[Seeded, list[dict[str, Any]]], api: TestClient[Litestar], tmp_path: Path
) -> None:
    csv_path = tmp_path / "participants.csv"
    csv_path.write_text(PARTICIPANTS_CSV, encoding="utf-8")
    result = studyvisit("accounts", "import", csv_path, "--json", "--event", EVENT_ID, *where_args(demo_db[0]))
    accounts = json_lines(result.stdout)
    assert [a["name"] for a in accounts] == ["فاطمة الزهراء العمراني", "Nguyễn Văn An", "김민준", "Giulia Rossi"]
    assert [a["id"] for a in accounts] == ["p-fatima-2", "nguyen-van-an", "p-kim-2", "giulia-rossi"]
    assert [a.get("group") for a in accounts] == ["G2", "G1", "G3", None]
    assert sorted(accounts[3]["site_ids"]) == ["pausa-cafe", "triciclo"]
    for account in accounts:
        found = me(api, account["token"])
        assert (found["id"], found["name"]) == (account["id"], account["name"])
    assert me(api, accounts[0]["token"])["language"] == "ar"


@pytest.mark.both_backends
def test_accounts_import_gives_distinct_ids_to_names_without_latin_letters(
    demo_db: tuple[Seeded, list[dict[str, Any]]], tmp_path: Path
) -> None:
    csv_path = tmp_path / "participants.csv"
    csv_path.write_text("name,role,group\nفاطمة العمراني,participant,G2\n김민준,participant,G3\n", encoding="utf-8")
    result = studyvisit(
        "accounts", "import", csv_path, "--json", "--event", EVENT_ID, *where_args(demo_db[0]), check=False
    )
    assert result.returncode == 0, result.stderr
    accounts = json_lines(result.stdout)
    assert len({a["id"] for a in accounts}) == 2


@pytest.mark.both_backends
def test_accounts_import_that_fails_half_way_leaves_no_account_without_its_token(
    demo_db: tuple[Seeded, list[dict[str, Any]]], tmp_path: Path
) -> None:
    csv_path = tmp_path / "participants.csv"
    csv_path.write_text(
        "name,role,id\nAna Lima,participant,p-ana\nMarta Bianchi,organizer,org-marta\n", encoding="utf-8"
    )
    result = studyvisit(
        "accounts", "import", csv_path, "--json", "--event", EVENT_ID, *where_args(demo_db[0]), check=False
    )
    assert_clean_failure(result, "exists already")
    printed = {a["id"] for a in json_lines(result.stdout)}
    assert account_ids(demo_db[0]) & {"p-ana"} <= printed


@pytest.mark.both_backends
def test_accounts_import_names_the_bad_line(demo_db: tuple[Seeded, list[dict[str, Any]]], tmp_path: Path) -> None:
    csv_path = tmp_path / "participants.csv"
    csv_path.write_text("name,role\nAna Lima,participant\nBruno,chaperone\n", encoding="utf-8")
    result = studyvisit("accounts", "import", csv_path, "--event", EVENT_ID, *where_args(demo_db[0]), check=False)
    assert_clean_failure(result, f"{csv_path}:3")


def test_db_status_lists_every_migration_pending_then_applied(tmp_path: Path) -> None:
    path = tmp_path / "status.db"
    path.touch()  # an empty database file, as `sqlite3 status.db` leaves it
    before = studyvisit("db", "status", "--db", path).stdout.splitlines()
    assert before
    assert all(line.rstrip().endswith("pending") for line in before)
    assert before[0].split()[0] == "1"
    studyvisit("load-fixtures", DEMO_FIXTURE, "--db", path)
    after = studyvisit("db", "status", "--db", path).stdout.splitlines()
    assert [line.split()[0] for line in after] == [line.split()[0] for line in before]
    assert all(" applied 20" in line for line in after)


def test_db_status_of_a_missing_file_says_so_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    result = studyvisit("db", "status", "--db", path, check=False)
    assert_clean_failure(result, f"no database at {path}", "--db")
    assert not path.exists()


@pytest.mark.parametrize(
    ("command", "reads"),
    [
        pytest.param(["load-fixtures", DEMO_FIXTURE], "Loaded records: 46 added", id="load-fixtures"),
        pytest.param(["db", "status"], "applied 20", id="db-status"),
    ],
)
def test_the_database_path_comes_from_studyvisit_db_path(tmp_path: Path, command: list[Any], reads: str) -> None:
    path = tmp_path / "from-env.db"
    if command[0] == "db":
        studyvisit("load-fixtures", DEMO_FIXTURE, "--db", path)
    result = studyvisit(*command, env={"STUDYVISIT_DB_PATH": str(path)}, cwd=tmp_path)
    assert reads in result.stdout + result.stderr
    assert "pending" not in result.stdout
    assert not (tmp_path / "data").exists()  # the --db default, ./data/studyvisit.db, was not used


def test_version_option_prints_the_package_version() -> None:
    result = studyvisit("--version")
    assert result.stdout.strip() == "studyvisit, version 0.1.0"


def test_demo_on_a_port_in_use_fails_before_printing_tokens_and_names_the_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = studyvisit("demo", "--port", str(port), "--db", tmp_path / "demo.db", check=False)
    assert_clean_failure(result, f"port {port} on 127.0.0.1 is already in use", "--port")
    assert result.stdout == ""
    assert "sv_" not in result.stderr
    assert "Serving on" not in result.stderr
    assert not (tmp_path / "demo.db").exists()  # nothing loaded either: the tokens of a next try stay valid


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--group", "G9"], "no group 'G9' in event 'turin-sse-2025' (--group)", id="unknown-group"),
        pytest.param(
            ["--site", "no-such-site"], "no site 'no-such-site' in event 'turin-sse-2025' (--site)", id="site"
        ),
    ],
)
@pytest.mark.both_backends
def test_accounts_add_naming_an_unknown_group_or_site_is_one_line_of_error(
    demo_db: tuple[Seeded, list[dict[str, Any]]], args: list[str], message: str
) -> None:
    result = studyvisit(
        "accounts", "add", *where_args(demo_db[0]), "--event", EVENT_ID, "--name", "Ana Lima", "--role", "participant",
        *args, check=False,
    )  # fmt: skip
    assert_clean_failure(result, message)
    assert result.stderr.strip() == f"Error: {message}"


@pytest.mark.both_backends
def test_accounts_import_naming_an_unknown_group_names_the_line_and_creates_nobody(
    demo_db: tuple[Seeded, list[dict[str, Any]]], tmp_path: Path
) -> None:
    csv_path = tmp_path / "participants.csv"
    csv_path.write_text(
        "name,role,group,id\nAna Lima,participant,G1,p-ana-g\nBruno,participant,G9,\n", encoding="utf-8"
    )
    result = studyvisit("accounts", "import", csv_path, "--event", EVENT_ID, *where_args(demo_db[0]), check=False)
    assert_clean_failure(result, f"{csv_path}:3: no group 'G9' in event 'turin-sse-2025' (the group column)")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "p-ana-g" not in account_ids(demo_db[0])


@pytest.mark.both_backends
def test_load_fixtures_prints_every_new_account_once(blank: Seeded) -> None:
    accounts = json_lines(studyvisit("load-fixtures", DEMO_FIXTURE, "--json", *where_args(blank)).stdout)
    expected = json.loads(DEMO_FIXTURE.read_text(encoding="utf-8"))["accounts"]
    assert [a["id"] for a in accounts] == [a["id"] for a in expected]
    assert all(a["token"].startswith("sv_") for a in accounts)
    # Loading again updates the programme and leaves accounts, and their tokens, alone.
    assert studyvisit("load-fixtures", DEMO_FIXTURE, "--json", *where_args(blank)).stdout == ""
    with TestClient(app=make_app(blank)) as api:
        assert me(api, accounts[-1]["token"])["id"] == accounts[-1]["id"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param('{"event": {"id": "x"}}', "Object missing required field", id="incomplete"),
        pytest.param(
            "not json",
            "malformed",
            id="not-json",
        ),
    ],
)
@pytest.mark.both_backends
def test_load_fixtures_refuses_a_bad_file_naming_it(tmp_path: Path, blank: Seeded, content: str, message: str) -> None:
    bad = tmp_path / "bad-fixture.json"
    bad.write_text(content, encoding="utf-8")
    result = studyvisit("load-fixtures", bad, *where_args(blank), check=False)
    assert_clean_failure(result, str(bad), message)


@pytest.mark.parametrize("option", ["--db", "--database-url"])
def test_purge_uploads_removes_abandoned_partial_uploads_only(tmp_path: Path, option: str) -> None:
    db_path = tmp_path / "studyvisit.db"
    where = str(db_path) if option == "--db" else f"sqlite:///{db_path}"  # either way, the uploads beside the file
    partial = tmp_path / "partial"
    partial.mkdir()
    old, fresh = partial / ("a" * 64), partial / ("b" * 64)
    for path in (old, fresh):
        path.write_bytes(b"\xff\xd8\xff half a photo")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days_ago, two_days_ago))
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "db", "purge-uploads", option, where, "--older-than-hours", "24"],
        capture_output=True,
        cwd=tmp_path / "partial",  # not where ./data/studyvisit.db, --db's default, would put them
        text=True,
        check=True,
    )
    assert "removed 1" in result.stdout
    assert not old.exists()
    assert fresh.exists()


@pytest.mark.parametrize("command", [("serve", "--port", "0"), ("db", "purge-uploads")])
def test_photos_in_the_database_need_postgresql(tmp_path: Path, command: tuple[str, ...]) -> None:
    result = studyvisit(*command, "--db", tmp_path / "x.db", "--blob-store", "database", check=False)
    assert_clean_failure(result, "--blob-store database keeps photos in PostgreSQL: give --database-url too")
    assert not (tmp_path / "x.db").exists()


@pytest.mark.both_backends
def test_load_fixtures_with_an_account_of_an_unknown_group_names_it_and_loads_nothing(
    tmp_path: Path, blank: Seeded
) -> None:
    doc = json.loads(DEMO_FIXTURE.read_text(encoding="utf-8"))
    doc["accounts"][-1]["group_id"] = "G9"
    bad = tmp_path / "bad-group.json"
    bad.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    result = studyvisit("load-fixtures", bad, *where_args(blank), check=False)
    account = doc["accounts"][-1]["id"]
    assert_clean_failure(result, f"{bad}: account '{account}' names group 'G9' that event '{EVENT_ID}' does not have")
    assert result.stdout == ""  # no token of an account that was not kept
    assert account_ids(blank) == set()


def url_of(where: Seeded) -> str:
    """The database as a `--database-url`: the PostgreSQL URL, or the SQLite file as sqlite:////abs/path."""
    return where.url or f"sqlite:///{where.path.resolve()}"


def decoy_env(tmp_path: Path) -> dict[str, str]:
    """A STUDYVISIT_DB_PATH the command must not use: --database-url on its command line wins."""
    return {"STUDYVISIT_DB_PATH": str(tmp_path / "decoy" / "ignored.db")}


def status(where: Seeded, token: str) -> int:
    with TestClient(app=make_app(where)) as api:
        return api.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code


@pytest.mark.both_backends
def test_load_fixtures_and_db_status_take_database_url(blank: Seeded, tmp_path: Path) -> None:
    env = decoy_env(tmp_path)
    loaded = studyvisit("load-fixtures", DEMO_FIXTURE, "--json", "--database-url", url_of(blank), env=env)
    accounts = json_lines(loaded.stdout)
    assert "Loaded records: 46 added" in loaded.stderr
    assert status(blank, accounts[0]["token"]) == 200
    listed = studyvisit("db", "status", "--database-url", url_of(blank), env=env).stdout.splitlines()
    assert listed
    assert all(" applied 20" in line for line in listed)
    assert not (tmp_path / "decoy").exists()


@pytest.mark.both_backends
def test_accounts_commands_take_database_url(seeded: Seeded, tmp_path: Path) -> None:
    url, env = url_of(seeded), decoy_env(tmp_path)
    added = studyvisit(
        "accounts", "add", "--json", "--database-url", url, "--event", EVENT_ID, "--name", "Amaru Quispe Mamani",
        "--role", "participant", "--group", "G2", env=env,
    )  # fmt: skip
    [amaru] = json_lines(added.stdout)
    assert status(seeded, amaru["token"]) == 200

    csv_path = tmp_path / "participants.csv"
    csv_path.write_text(PARTICIPANTS_CSV, encoding="utf-8")
    imported = json_lines(
        studyvisit("accounts", "import", csv_path, "--json", "--event", EVENT_ID, "--database-url", url, env=env).stdout
    )
    assert [status(seeded, a["token"]) for a in imported] == [200] * 4

    participant = seeded.first("participant")
    [rotated] = json_lines(
        studyvisit("accounts", "rotate", participant.id, "--json", "--database-url", url, env=env).stdout
    )
    assert (status(seeded, participant.token), status(seeded, rotated["token"])) == (401, 200)

    studyvisit("accounts", "expire", amaru["id"], "2020-01-01", "--database-url", url, env=env)
    assert status(seeded, amaru["token"]) == 401
    studyvisit("accounts", "retire", imported[0]["id"], "--database-url", url, env=env)
    assert status(seeded, imported[0]["token"]) == 401
    assert not (tmp_path / "decoy").exists()


@pytest.mark.both_backends
def test_db_purge_commands_take_database_url(seeded: Seeded, tmp_path: Path) -> None:
    url, env = url_of(seeded), decoy_env(tmp_path)
    purged = studyvisit("db", "purge-tombstones", "--database-url", url, env=env)
    assert purged.stdout.startswith("purged 0 tombstone(s)")
    blobs = tmp_path / "blobs-dir"
    abandoned = blobs / "partial" / ("a" * 64)
    abandoned.parent.mkdir(parents=True)
    abandoned.write_bytes(b"\xff\xd8\xff half a photo")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(abandoned, (two_days_ago, two_days_ago))
    uploads = studyvisit("db", "purge-uploads", "--database-url", url, "--data-dir", blobs, env=env)
    assert "removed 1 abandoned upload file(s)" in uploads.stdout
    assert not abandoned.exists()
    assert not (tmp_path / "decoy").exists()


@pytest.mark.parametrize(
    "command", [["load-fixtures", DEMO_FIXTURE], ["accounts", "retire", "p-ana"], ["db", "status"]]
)
@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param("mysql://root@localhost/studyvisit", "--database-url", id="unknown-scheme"),
        pytest.param("postgresql://postgres@127.0.0.1:1/nowhere", "127.0.0.1", id="unreachable"),
    ],
)
def test_a_bad_database_url_is_one_clean_error(command: list[Any], url: str, message: str, tmp_path: Path) -> None:
    result = studyvisit(*command, "--database-url", url, check=False, cwd=tmp_path)
    assert_clean_failure(result, message, status=2 if "mysql" in url else 1)
    assert not (tmp_path / "data").exists()
