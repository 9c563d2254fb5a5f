"""Serving a pull: the latest state of every record the caller may see that changed since a cursor."""

import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Hashable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgspec

from schemas.accounts import Account
from schemas.sync import EntitySummary
from server.errors import BadRequestError, DomainError, GoneError
from server.storage.blob_refs import fetchable_blobs
from server.storage.db import rfc3339
from server.storage.feed_payloads import may_resolve_site, shape
from server.storage.pull_positions import record_pull_position
from server.storage.records import (
    HEAD_COLUMNS,
    client_synced_at,
    last_mutation_id,
    load_heads,
    load_records,
    record_client_sync,
)
from server.storage.sync_feed import feed_head, feed_page_payloads, purged_seq, summary_sums, visible_versions
from server.storage.unit import Store, Tx
from sync.checksum import MASK, record_hash
from sync.cursor import Cursor, CursorError, decode_cursor, encode_cursor
from sync.rules import audiences, feedback_visible, note_visible

__all__ = ["ChangeCache", "EncodedPull", "note_caught_up", "pull", "summarise"]

ENTITY_KINDS = ("event", "site", "visit", "group", "question", "note", "feedback")
# How stale an install's "last synced" time may get before a caught-up pull writes it again: organizers
# read it in minutes, and a write on every pull would cost pulls the single writer's lock.
SYNC_TIME_RESOLUTION = timedelta(minutes=1)


Encoding = Literal["json", "msgpack"]

# Off: every change is shaped here, as before feed rows kept payloads — what the tests compare the
# stored bytes with, and bench.pull_inprocess --ab measures the payloads against.
USE_PAYLOADS = True


class EncodedPull(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A PullResponse whose changes are already encoded (JSON or MessagePack, as the page will be)."""

    changes: list[msgspec.Raw]
    cursor: str
    has_more: bool
    last_mutation_id: int
    summary: dict[str, EntitySummary] | None = None


class _Segment:
    """Entries bounded by bytes, oldest first out (FIFO: no bookkeeping on a hit, unlike an LRU)."""

    def __init__(self, max_bytes: int) -> None:
        self.entries: OrderedDict[Hashable, tuple[msgspec.Raw, bool]] = OrderedDict()
        self.bytes = 0
        self.max = max_bytes

    def put(self, key: Hashable, entry: tuple[msgspec.Raw, bool], overhead: int) -> None:
        old = self.entries.pop(key, None)
        if old is not None:
            self.bytes -= len(old[0]) + overhead
        self.entries[key] = entry
        self.bytes += len(entry[0]) + overhead
        while self.bytes > self.max and self.entries:
            self.bytes -= len(self.entries.popitem(last=False)[1][0]) + overhead


class ChangeCache:
    """Encoded changes, kept per record version and per everything else a change depends on.

    A change is a function of the record's row and of who asks: the key holds the record's version and
    ``updated_at`` (a record deleted and created again gets a new one), the caller's view of it (what
    ``shape`` asks of the account and of the blobs it may fetch) and the encoding. A later write
    gives the record a new version, so an entry is never stale, whichever server wrote. Bounded by
    bytes: half for the event-wide records that every device's first sync sends, so that an
    organizer's sync of thousands of notes does not push them out.
    """

    # What an entry costs beyond its bytes (key tuple and its strings, Raw object, dict slot), as
    # measured with tracemalloc on the large event.
    ENTRY_OVERHEAD = 700
    _SHARED_KINDS = frozenset({"site", "visit"})

    def __init__(self, max_bytes: int = 8 << 20, max_hashes: int = 10_000) -> None:
        self._shared = _Segment(max_bytes // 2)
        self._personal = _Segment(max_bytes - max_bytes // 2)
        # Each record version's share of the summary's checksum (a pure function of id and version).
        self._hashes: dict[tuple[str, int], int] = {}
        self._max_hashes = max_hashes
        self._lock = threading.Lock()

    def _segment(self, key: Hashable) -> _Segment:
        return self._shared if key[0] in self._SHARED_KINDS else self._personal  # type: ignore[index]

    def get_many(self, keys: list[Hashable]) -> list[tuple[msgspec.Raw, bool] | None]:
        """The entry for each key (the change, and whether a full pull leaves it out), or None."""
        with self._lock:
            return [self._segment(key).entries.get(key) for key in keys]

    def put_many(self, items: list[tuple[Hashable, tuple[msgspec.Raw, bool]]]) -> None:
        """Keep these entries, forgetting the oldest beyond the bound."""
        with self._lock:
            for key, entry in items:
                self._segment(key).put(key, entry, self.ENTRY_OVERHEAD)

    def checksum(self, pairs: list[tuple[str, int]]) -> str:
        """``sync.checksum.checksum`` of these (id, version) pairs, each pair hashed once per cache."""
        hashes = self._hashes
        total = 0
        get = hashes.get
        for pair in pairs:
            value = get(pair)
            if value is None:
                if len(hashes) >= self._max_hashes:
                    hashes.clear()  # rarely: records change far more slowly than they are pulled
                value = hashes[pair] = record_hash(*pair)
            total += value
        return f"{total & MASK:016x}"

    def __len__(self) -> int:
        return len(self._shared.entries) + len(self._personal.entries)


_ENCODERS = {"json": msgspec.json.Encoder(), "msgpack": msgspec.msgpack.Encoder()}


def pull(
    db: Store,
    account: Account,
    cursor: str | None,
    limit: int,
    client_id: str | None,
    *,
    encoding: Encoding = "json",
    cache: ChangeCache | None = None,
) -> EncodedPull:
    """One page of changes after ``cursor``, in one consistent snapshot of the database, encoded as ``encoding``
    (through ``cache`` when given)."""
    try:
        position = decode_cursor(cursor)
    except CursorError as exc:
        raise BadRequestError(f"{exc}; pull again without a cursor.") from None
    event_id = account.event_id
    after = position.seq if position else 0
    listens = audiences(account.id, account.role, account.site_ids)
    with db.read() as tx:
        # Only purges of what this caller was told of can have hidden a deletion from its cursor.
        purge_mark = purged_seq(tx, event_id, listens)
        # A full pull pages through everything once; tombstones purged before it began do not
        # matter to a replica built from nothing, but a purge during it might hide a deletion.
        full = position is None or position.in_full_pull
        if position is not None and (
            position.full_since_purge != purge_mark if position.in_full_pull else after < purge_mark
        ):
            raise GoneError("Deletions since this cursor were purged; pull again from an empty cursor.")
        rows = feed_page_payloads(tx, event_id, listens, after, limit + 1)
        has_more = len(rows) > limit
        rows = rows[:limit]
        cache = ChangeCache(0) if cache is None else cache
        # Payloads are JSON, and kept as the row's audience sees the record: a host's site rows
        # are not (feed_payloads.py), so a host's page is shaped here whole.
        stored = USE_PAYLOADS and encoding == "json" and account.role != "host"
        changes = _changes(tx, account, rows, full=full, encoding=encoding, cache=cache, stored=stored)
        summary = None if has_more else summarise(tx, account, cache, stored=stored)
        last_id = last_mutation_id(tx, account.id, client_id) if client_id else 0
        seen_at = client_synced_at(tx, account.id, client_id) if client_id and not has_more else None
        # Caught up: the cursor moves past changes meant for others too, so that purging their
        # tombstones later never sends this device back to a full pull.
        head = rows[-1][0] if has_more else max(after, feed_head(tx, event_id))
    next_position = Cursor(1, head, purge_mark if full and has_more else -1)
    if client_id and not has_more:
        note_caught_up(db, account, client_id, head, seen_at)
    return EncodedPull(
        changes=changes,
        cursor=encode_cursor(next_position),
        has_more=has_more,
        last_mutation_id=last_id,
        summary=summary,
    )


def note_caught_up(
    db: Store, account: Account, client_id: str, head: int, seen_at: str | None, now: datetime | None = None
) -> None:
    """Record that an install caught up, in one write: how far (for organizers asking who has a change)
    and, at most once per SYNC_TIME_RESOLUTION, when (their "last synced").

    Only a caught-up page counts: a device paging on (a full pull is swapped in whole at its end) does
    not hold the changes yet. Best effort: a busy or unwritable database never fails the pull; the
    device's next pull writes both again.
    """
    moment = now or datetime.now(UTC)
    stale = seen_at is None or seen_at <= rfc3339(moment - SYNC_TIME_RESOLUTION)
    try:
        with db.write() as tx:
            record_pull_position(tx, account.id, client_id, head)
            if stale:
                record_client_sync(tx, account.id, client_id, rfc3339(moment))
    except DomainError:
        pass


def _changes(
    tx: Tx,
    account: Account,
    rows: list[tuple[int, str, str, bytes | None]],
    *,
    full: bool,
    encoding: Encoding,
    cache: ChangeCache,
    stored: bool,
) -> list[msgspec.Raw]:
    """The page's changes, one per record in the order of its first row: each row's stored payload
    where it has one (any of a record's rows: they agree, feed_payloads.py), else shaped here."""
    order: list[tuple[str, str]] = []
    payloads: dict[tuple[str, str], bytes | None] = {}
    for _, entity, entity_id, payload in rows:
        key = (entity, entity_id)
        if key not in payloads:
            order.append(key)
            payloads[key] = payload if stored else None
        elif payloads[key] is None and stored:
            payloads[key] = payload
    shaped = _shaped(tx, account, [key for key in order if payloads[key] is None], encoding=encoding, cache=cache)
    changes: list[msgspec.Raw] = []
    for key in order:
        payload = payloads[key]
        if payload is not None:
            changes.append(msgspec.Raw(payload))  # a stored payload is always a put: never left out
            continue
        raw, full_skips = shaped[key]
        if not (full and full_skips):  # a full pull builds a replica from nothing: nothing to delete
            changes.append(raw)
    return changes


def _shaped(
    tx: Tx, account: Account, order: list[tuple[str, str]], *, encoding: Encoding, cache: ChangeCache
) -> dict[tuple[str, str], tuple[msgspec.Raw, bool]]:
    """Each of these records' change as ``account`` sees it, through ``cache``, with whether a full
    pull leaves it out."""
    if not order:
        return {}
    by_entity: dict[str, list[str]] = defaultdict(list)
    for entity, entity_id in order:
        by_entity[entity].append(entity_id)
    # Records with a head are looked up in the cache by it; the few others (the event, groups,
    # questions: no updated_at, or deleted and created again at the same version) are read whole.
    heads = {e: load_heads(tx, account.event_id, e, ids) for e, ids in by_entity.items() if e in HEAD_COLUMNS}
    attached = {
        head[0]: _attachment_hashes(head[6])
        for head in heads.get("note", {}).values()
        if head[6] not in ("[]", None)  # most notes have no attachment: their JSON is not decoded
    }
    # "available": this account may fetch it (a note it sees, whose author uploaded the bytes).
    held = fetchable_blobs(tx, account, (h for hashes in attached.values() for h in hashes)) if attached else set()
    keyed: dict[tuple[str, str], Hashable] = {}
    for entity, found in heads.items():
        view = _viewer(account, entity, attached, held)
        keyed.update(((entity, i), (entity, *head[:3], view(head), encoding)) for i, head in found.items())
    keys = [keyed.get(pair) for pair in order]
    hits = iter(cache.get_many([k for k in keys if k is not None]))
    entries: list[tuple[msgspec.Raw, bool] | None] = [None if k is None else next(hits) for k in keys]
    missing: dict[str, list[str]] = defaultdict(list)
    for (entity, entity_id), entry in zip(order, entries, strict=True):
        if entry is None:
            missing[entity].append(entity_id)
    if missing:
        records = {entity: load_records(tx, account.event_id, entity, ids) for entity, ids in missing.items()}
        built: list[tuple[Hashable, tuple[msgspec.Raw, bool]]] = []
        encoder = _ENCODERS[encoding]
        for i, ((entity, entity_id), key) in enumerate(zip(order, keys, strict=True)):
            if entries[i] is not None:
                continue
            record = records[entity].get(entity_id)
            change = shape(account, entity, entity_id, record, held)
            entry = (msgspec.Raw(encoder.encode(change)), change.op == "delete" and change.data is None)
            entries[i] = entry
            # Cached only when read in the same state as its head (a write between the two reads is
            # invisible in one snapshot, but the key must name what was encoded all the same).
            if key is not None and record is not None and key[1:4] == _head_of(record):  # type: ignore[index]
                built.append((key, entry))
        cache.put_many(built)
    return dict(zip(order, entries, strict=True))  # type: ignore[arg-type]  # every entry is set by now


def _head_of(record: dict[str, Any]) -> tuple[Any, ...]:
    return (record["id"], record["version"], record["updated_at"])


def _attachment_hashes(stored: str) -> tuple[str, ...]:
    return tuple(a["sha256"] for a in msgspec.json.decode(stored))


def _viewer(
    account: Account, entity: str, attached: dict[str, tuple[str, ...]], held: set[str]
) -> Callable[[tuple[Any, ...]], Hashable]:
    """For one entity kind, what of the caller (and of the blobs it may fetch) ``shape`` reads for a record,
    from the record's head."""
    me = account.id
    if entity == "note":
        # note_visible reads whether the caller wrote the note and whether it is shared: asked once per page.
        visible = {
            (mine, shared): note_visible(
                {"author_id": me if mine else None, "share_with_organizers": shared}, me, account.role
            )
            for mine in (True, False)
            for shared in (True, False)
        }

        def note_view(head: tuple[Any, ...]) -> Hashable:
            mine = head[3] == me
            hashes = attached.get(head[0])
            return visible[mine, bool(head[4])], mine, tuple(h in held for h in hashes) if hashes else ()

        return note_view
    if entity == "feedback":
        sites = frozenset(account.site_ids)

        def feedback_view(head: tuple[Any, ...]) -> Hashable:
            visible = feedback_visible({"author_id": head[3], "site_id": head[4]}, me, account.role, sites)
            return visible, head[3] == me, account.role == "host"

        return feedback_view
    if entity == "site":
        return lambda head: may_resolve_site(account, head[0])
    return lambda head: None


def summarise(tx: Tx, account: Account, cache: ChangeCache, *, stored: bool = False) -> dict[str, EntitySummary]:
    """Per entity kind, how many records the caller may see and their checksum (``stored``: from the
    shares kept with the feed rows, where they are known)."""
    sums = summary_sums(tx, account) if stored else None
    if sums is not None:
        return {entity: EntitySummary(count=n, checksum=f"{share:016x}") for entity, (n, share) in sums.items()}
    return {
        entity: EntitySummary(count=len(pairs), checksum=cache.checksum(pairs))
        for entity, pairs in visible_versions(tx, account).items()
    }
