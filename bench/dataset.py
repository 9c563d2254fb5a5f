"""Synthetic events written straight into a fresh SQLite file, as if every record had been pushed.

The schema is the server's own (``server.storage.db.migrate``); the rows are inserted with
``executemany`` because going through the API would take far longer than the benchmark itself.
Every record gets its change-feed rows exactly as the server writes them (``record_change``):
audience ``all`` for the event, sites, groups, visits and questions; ``acct:<author>`` for each
note, plus ``org`` for a note that is or was shared with the organizers.
"""

import random
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec

from bench import corpus
from server.fixtures import DEMO_FIXTURE, load_fixture, read_fixture
from server.storage.accounts import hash_token
from server.storage.changes import write_payloads
from server.storage.db import Database, migrate

EVENT_ID = "bench-sse-2026"
LOCAL = timezone(timedelta(hours=2), "CEST")
EVENT_START = datetime(2026, 5, 11, tzinfo=LOCAL)
DAY_SLOTS = 9  # visits a group can have in one day, 75 minutes apart from 08:30


@dataclass(frozen=True)
class Scale:
    """How big an event to generate."""

    sites: int
    groups: int
    visits: int
    accounts: int
    notes: int


LARGE = Scale(sites=200, groups=60, visits=2_000, accounts=3_000, notes=100_000)
SMALL = Scale(sites=12, groups=3, visits=36, accounts=80, notes=800)


@dataclass(frozen=True)
class BenchAccount:
    """An account of a generated event, with its bearer token."""

    id: str
    role: str
    group_id: str | None
    token: str


@dataclass
class Dataset:
    """A generated database and what the benchmark needs to drive it."""

    path: Path
    event_id: str
    accounts: list[BenchAccount]
    visits_by_group: dict[str, list[str]]
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def by_role(self, role: str) -> list[BenchAccount]:
        """Accounts with this role, in a stable order."""
        return [a for a in self.accounts if a.role == role]


class ParticipantPool:
    """Hands out participants one at a time, so that no two measurements share an account or a feed."""

    def __init__(self, dataset: Dataset) -> None:
        self._free = dataset.by_role("participant")

    def take(self, count: int) -> list[BenchAccount]:
        """The next ``count`` participants; raises when the event has too few."""
        if count > len(self._free):
            raise RuntimeError(f"the event has {len(self._free)} unused participants, {count} asked for")
        taken, self._free = self._free[:count], self._free[count:]
        return taken


def uuid7(ms: int, rng: random.Random) -> str:
    """A time-ordered UUID (RFC 9562 version 7) for the given Unix time in milliseconds."""
    value = (ms & (2**48 - 1)) << 80 | 0x7 << 76 | rng.getrandbits(12) << 64 | 0b10 << 62 | rng.getrandbits(62)
    return str(uuid.UUID(int=value))


def stamp(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds, as the server's ``utcnow`` writes it."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def generate(path: Path, scale: Scale, seed: int = 2026) -> Dataset:
    """Write a synthetic event of this scale into a fresh database file at ``path``."""
    started = time.perf_counter()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    database = Database(path)
    migrate(database)
    database.close()
    rng = random.Random(seed)
    conn = sqlite3.connect(path, isolation_level=None)
    # Bulk loading only: the server opens the file with synchronous=FULL as usual afterwards.
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    site_ids = _insert_catalog(conn, rng, scale)
    visits_by_group, visit_sites = _insert_visits(conn, rng, scale, site_ids)
    accounts, languages, host_sites = _insert_accounts(conn, rng, scale, site_ids)
    counts = _insert_notes(conn, rng, scale, accounts, languages, host_sites, visits_by_group, visit_sites)
    conn.execute("UPDATE events SET content_version = ? WHERE id = ?", (scale.sites + scale.visits, EVENT_ID))
    conn.execute("COMMIT")
    counts["changes"] = conn.execute("SELECT COUNT(*) FROM changes").fetchone()[0]
    conn.close()
    # Each feed row's payload, as the server writes it at the commit of the change (migration 11).
    database = Database(path)
    with database.write() as tx:
        rows = [tuple(r) for r in tx.execute("SELECT event_id, entity, entity_id, audience FROM changes")]
        for start in range(0, len(rows), 2000):  # a few thousand records in memory at a time
            write_payloads(tx, rows[start : start + 2000])  # type: ignore[arg-type]  # four text columns
    database.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    counts.update(sites=scale.sites, groups=scale.groups, visits=scale.visits, accounts=scale.accounts)
    return Dataset(
        path=path,
        event_id=EVENT_ID,
        accounts=accounts,
        visits_by_group=visits_by_group,
        counts=counts,
        seconds=time.perf_counter() - started,
    )


def _feed(conn: sqlite3.Connection, rows: Sequence[tuple[str, str, str, str]]) -> None:
    conn.executemany("INSERT INTO changes (event_id, entity, entity_id, audience) VALUES (?, ?, ?, ?)", rows)


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _insert_catalog(conn: sqlite3.Connection, rng: random.Random, scale: Scale) -> list[str]:
    now = stamp(EVENT_START - timedelta(days=30))
    conn.execute(
        "INSERT INTO events (id, title, starts_on, ends_on, timezone, venue, venue_site_id, version, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?)",
        (
            EVENT_ID,
            "Social and solidarity economy: a large synthetic study event",
            EVENT_START.date().isoformat(),
            (EVENT_START + timedelta(days=3)).date().isoformat(),
            "Europe/Rome",
            "ITC-ILO campus, Viale Maestri del Lavoro 10, Torino",
            None,
            now,
        ),
    )
    site_rows = []
    site_ids = []
    for number in range(1, scale.sites + 1):
        name = corpus.site_name(rng, number)
        district = rng.choice(corpus.SITE_WORDS["name"])
        themes = rng.sample(corpus.THEMES, rng.randint(1, 3))
        site_id = f"site-{number:03d}"
        site_ids.append(site_id)
        hours = [{"days": ["mo", "tu", "we", "th", "fr"], "opens": "09:00", "closes": rng.choice(["18:00", "22:00"])}]
        site_rows.append(
            (
                EVENT_ID,
                site_id,
                name,
                rng.choice(corpus.SITE_KINDS),
                _json(corpus.site_description(rng, name, district, themes[0])),
                f"{name} Società Cooperativa Sociale ONLUS" if rng.random() < 0.5 else None,
                f"Via {rng.choice(['Nizza', 'Po', 'Garibaldi', 'Cibrario', 'Baltea'])} {rng.randint(1, 200)}",
                f"101{rng.randint(0, 99):02d}",
                "Torino",
                f"{district}, Circoscrizione {rng.randint(1, 8)}",
                round(45.07 + rng.uniform(-0.04, 0.04), 6),
                round(7.68 + rng.uniform(-0.05, 0.05), 6),
                rng.choice(["sourced", "estimated"]),
                _json(themes),
                "Step-free entrance; lift to the first floor." if rng.random() < 0.5 else "",
                f"info@{site_id}.example.org",
                f"https://{site_id}.example.org",
                _json(hours),
                "Visits by appointment.",
                "Main entrance, by the noticeboard",
                _json([f"Registro imprese, scheda {site_id}"]),
                now,
            )
        )
    conn.executemany(
        "INSERT INTO sites (event_id, id, name, kind, description, official_name, address, postcode, city, district,"
        " lat, lon, coord_source, themes, accessibility, contact, website, opening_hours, opening_hours_note,"
        " meeting_point, sources, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        site_rows,
    )
    groups = [(EVENT_ID, f"G{n:02d}", f"Group {n}: {rng.choice(corpus.THEMES)}") for n in range(1, scale.groups + 1)]
    conn.executemany("INSERT INTO groups (event_id, id, name) VALUES (?, ?, ?)", groups)
    questions = read_fixture(DEMO_FIXTURE).questions
    conn.executemany(
        "INSERT INTO questions (event_id, id, kind, texts, choices, position) VALUES (?, ?, ?, ?, ?, ?)",
        [(EVENT_ID, q.id, q.kind, _json(q.texts), _json(q.choices), q.position) for q in questions],
    )
    _feed(
        conn,
        [(EVENT_ID, "event", EVENT_ID, "all")]
        + [(EVENT_ID, "site", s, "all") for s in site_ids]
        + [(EVENT_ID, "group", g[1], "all") for g in groups]
        + [(EVENT_ID, "question", q.id, "all") for q in questions],
    )
    return site_ids


def _insert_visits(
    conn: sqlite3.Connection, rng: random.Random, scale: Scale, site_ids: list[str]
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Each group gets an even share of the visits, one day after another, 75 minutes apart."""
    visits_by_group: dict[str, list[str]] = {}
    visit_sites: dict[str, str] = {}
    rows = []
    number = 0
    for g in range(scale.groups):
        group_id = f"G{g + 1:02d}"
        count = scale.visits // scale.groups + (1 if g < scale.visits % scale.groups else 0)
        visits_by_group[group_id] = []
        for k in range(count):
            number += 1
            day, slot = divmod(k, DAY_SLOTS)
            starts = EVENT_START + timedelta(days=day, hours=8, minutes=30 + 75 * slot)
            site_id = rng.choice(site_ids)
            meal = slot == 3
            visit_id = f"d{day + 1}-{group_id.lower()}-{slot + 1}"
            visits_by_group[group_id].append(visit_id)
            visit_sites[visit_id] = site_id
            notes = {"en": "Bring your badge.", "fr": "Apportez votre badge."} if rng.random() < 0.2 else {}
            rows.append(
                (
                    EVENT_ID,
                    visit_id,
                    number,
                    "Lunch" if meal else f"Visit {number}: {rng.choice(corpus.THEMES)}",
                    "meal" if meal else "visit",
                    starts.isoformat(),
                    (starts + timedelta(minutes=60)).isoformat(),
                    starts.astimezone(UTC).isoformat(),
                    _json([group_id]),
                    site_id,
                    rng.choice(["walk", "public_transport", "minibus"]),
                    _json(notes),
                    stamp(EVENT_START - timedelta(days=20)),
                )
            )
    conn.executemany(
        "INSERT INTO visits (event_id, id, number, title, kind, starts_at, ends_at, starts_utc, group_ids, site_id,"
        " transport, notes, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    _feed(conn, [(EVENT_ID, "visit", row[1], "all") for row in rows])
    return visits_by_group, visit_sites


def _insert_accounts(
    conn: sqlite3.Connection, rng: random.Random, scale: Scale, site_ids: list[str]
) -> tuple[list[BenchAccount], dict[str, str], dict[str, str]]:
    """About 1 in 150 accounts organizes, 1 in 15 hosts a site, the others take part in a group."""
    organizers = max(2, scale.accounts // 150)
    hosts = min(len(site_ids), max(2, scale.accounts // 15))
    accounts: list[BenchAccount] = []
    languages: dict[str, str] = {}
    host_sites: dict[str, str] = {}
    rows = []
    created = stamp(EVENT_START - timedelta(days=10))
    for n in range(scale.accounts):
        role = "organizer" if n < organizers else "host" if n < organizers + hosts else "participant"
        account_id = f"{role[0]}-{n:05d}"
        group_id = f"G{n % scale.groups + 1:02d}" if role == "participant" else None
        name, language, country = corpus.person(rng)
        token = f"sv_bench_{rng.getrandbits(128):032x}"
        accounts.append(BenchAccount(id=account_id, role=role, group_id=group_id, token=token))
        languages[account_id] = language
        if role == "host":
            host_sites[account_id] = site_ids[(n - organizers) % len(site_ids)]
        organization = rng.choice(corpus.ORGANIZATIONS)
        rows.append(
            (account_id, EVENT_ID, name, role, group_id, language, country, organization, hash_token(token), created)
        )
    conn.executemany(
        "INSERT INTO accounts (id, event_id, name, role, group_id, language, country, organization, token_hash,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.executemany(
        "INSERT INTO account_sites (account_id, event_id, site_id) VALUES (?, ?, ?)",
        [(account_id, EVENT_ID, site_id) for account_id, site_id in host_sites.items()],
    )
    return accounts, languages, host_sites


def _insert_notes(
    conn: sqlite3.Connection,
    rng: random.Random,
    scale: Scale,
    accounts: list[BenchAccount],
    languages: dict[str, str],
    host_sites: dict[str, str],
    visits_by_group: dict[str, list[str]],
    visit_sites: dict[str, str],
) -> dict[str, int]:
    """Notes in time order (so their UUIDv7 ids ascend): mostly participants', a quarter shared, 1% deleted."""
    authors = [a for a in accounts if a.role != "organizer"]
    weights = [1 if a.role == "participant" else 0.2 for a in authors]
    moment = EVENT_START + timedelta(hours=9)
    rows = []
    feed = []
    shared_live = deleted = 0
    for author in rng.choices(authors, weights, k=scale.notes):
        moment += timedelta(milliseconds=rng.randint(1, 4000))
        ms = int(moment.timestamp() * 1000)
        note_id = uuid7(ms, rng)
        if author.group_id is not None:
            visit_id: str | None = rng.choice(visits_by_group[author.group_id])
            site_id = visit_sites[visit_id] if rng.random() < 0.15 else None
        else:
            visit_id, site_id = None, host_sites[author.id]
        shared = rng.random() < 0.25
        is_deleted = rng.random() < 0.01
        version = 2 if is_deleted else rng.choices([1, 2, 3], [90, 8, 2])[0]
        with_place = not is_deleted and rng.random() < 0.3
        rows.append(
            (
                note_id,
                EVENT_ID,
                author.id,
                visit_id,
                site_id,
                "" if is_deleted else corpus.note_body(rng, languages[author.id]),
                "[]" if is_deleted else _json(rng.sample(corpus.TAGS, rng.randint(0, 3))),
                round(45.07 + rng.uniform(-0.04, 0.04), 6) if with_place else None,
                round(7.68 + rng.uniform(-0.05, 0.05), 6) if with_place else None,
                None if is_deleted else (moment - timedelta(seconds=rng.randint(5, 600))).isoformat(),
                int(shared),
                int(is_deleted),
                version,
                stamp(moment),
            )
        )
        feed.append((EVENT_ID, "note", note_id, f"acct:{author.id}"))
        if shared:
            feed.append((EVENT_ID, "note", note_id, "org"))
        shared_live += shared and not is_deleted
        deleted += is_deleted
    conn.executemany(
        "INSERT INTO notes (id, event_id, author_id, visit_id, site_id, body, tags, lat, lon, captured_at,"
        " share_with_organizers, deleted, version, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    _feed(conn, feed)
    return {"notes": scale.notes, "notes_shared_live": shared_live, "notes_deleted": deleted}


def load_turin(path: Path) -> Dataset:
    """The Turin demo event, loaded the way ``studyvisit demo`` loads it, into a fresh file."""
    started = time.perf_counter()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    database = Database(path)
    migrate(database)
    fixture = read_fixture(DEMO_FIXTURE)
    created = load_fixture(database, fixture)
    database.close()
    accounts = [BenchAccount(id=a.id, role=a.role, group_id=a.group_id, token=a.token) for a in created]
    visits_by_group: dict[str, list[str]] = {}
    for visit in fixture.visits:
        for group_id in visit.group_ids:
            visits_by_group.setdefault(group_id, []).append(visit.id)
    return Dataset(
        path=path,
        event_id=fixture.event.id,
        accounts=accounts,
        visits_by_group=visits_by_group,
        counts={"sites": len(fixture.sites), "visits": len(fixture.visits), "accounts": len(created)},
        seconds=time.perf_counter() - started,
    )
