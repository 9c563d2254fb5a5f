"""The offline field client: record notes and feedback anywhere, sync them with protocol v1 when online.

Reads come from the local replica with queued mutations laid on top, so everything but
``login`` and ``sync`` works without a network. ``sync`` uploads the photos notes attach,
pushes the outbox, then pulls until the server has nothing more, then checks the replica
against the server's checksums.
"""

import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
import msgspec
from msgspec import UNSET, UnsetType

from schemas.accounts import Account
from schemas.itinerary import Visit
from schemas.places import Site
from schemas.sync import (
    PROTOCOL_VERSION,
    EntitySummary,
    Feedback,
    FeedbackPutArgs,
    Mutation,
    Note,
    NoteDeleteArgs,
    NotePutArgs,
    PullResponse,
    PushRequest,
    PushResponse,
    SiteFieldsPatch,
    SitePatchArgs,
)
from sync.blobs import CHUNK_SIZE, MAX_ATTACHMENTS, MAX_PHOTO_BYTES, BlobFile, BlobStore, BlobUploader
from sync.checksum import checksum
from sync.replica import AttentionItem, OutboxEntry, PushTally, Replica, StoredRecord, Upload
from sync.rules import FEEDBACK_DEFAULTS, NOTE_DEFAULTS, edited_fields
from sync.transport import (
    AccountMismatchError,
    AuthenticationError,
    NotLoggedInError,
    OfflineError,
    ProtocolError,
    RequestRejectedError,
    ServerError,
    SyncError,
    Transport,
    decode,
    problem_of,
    raise_for_problem,
)

__all__ = [
    "AccountMismatchError",
    "AttentionItem",
    "AuthenticationError",
    "FieldClient",
    "LocalFeedback",
    "LocalNote",
    "NotLoggedInError",
    "OfflineError",
    "ProtocolError",
    "RecordNotFoundError",
    "RequestRejectedError",
    "ServerError",
    "SyncError",
    "SyncReport",
    "SyncStatus",
    "Upload",
]

T = TypeVar("T")
NOTE_FIELDS = tuple(NOTE_DEFAULTS)
SITE_FIELDS = frozenset(SiteFieldsPatch.__struct_fields__)
# Mutation arguments that steer the server and are no field of the record.
_CONTROL_ARGS = ("base_version", "resolve_conflicts")
_GONE_RETRIES = 3
# A photo's file vanished between copying it and queueing its note (freed by a concurrent sync): copy again.
_COPY_RETRIES = 3
# Store files without an uploads row older than this are leftovers of a crash, not a photo being added.
ORPHAN_GRACE_SECONDS = 3600.0


class RecordNotFoundError(LookupError):
    """The replica (with queued changes) has no such record."""


class _PhotoVanishedError(Exception):
    """A copied photo left the store before its note was queued."""


class LocalNote(Note, kw_only=True):
    """A note as this device shows it; ``pending``: it has changes the server has not confirmed yet."""

    pending: bool = False


class LocalFeedback(Feedback, kw_only=True):
    """Feedback as this device shows it; ``pending``: it has changes the server has not confirmed yet."""

    pending: bool = False


class SyncReport(msgspec.Struct, kw_only=True):
    """What one ``sync()`` did."""

    pushed: int = 0
    applied: int = 0
    duplicate: int = 0
    rejected: int = 0
    conflict: int = 0
    out_of_order: int = 0
    pulled: int = 0
    pages: int = 0
    full_pull: bool = False
    # The replica matched the server's summary after the pull (False when the server sent none).
    verified: bool = False
    mismatched: list[str] = []
    pending: int = 0
    attention: int = 0
    # The server had lost mutations it acknowledged: this device became a new client (§3, "Gaps").
    restarted_client: bool = False
    # Photos: uploaded whole this sync, bytes sent for them, already held by the server (not
    # sent), that could not be uploaded (see attention), and still waiting after this sync.
    uploaded: int = 0
    uploaded_bytes: int = 0
    already_held: int = 0
    upload_failed: int = 0
    uploads_pending: int = 0
    uploads_pending_bytes: int = 0

    def add(self, tally: PushTally) -> None:
        """Count one push response."""
        for status in ("applied", "duplicate", "rejected", "conflict", "out_of_order"):
            setattr(self, status, getattr(self, status) + getattr(tally, status))
        self.pushed = self.applied + self.duplicate + self.rejected + self.conflict


class SyncStatus(msgspec.Struct, kw_only=True):
    """Where this device stands: what is queued, how far it has pulled, what needs attention."""

    base_url: str | None
    account: Account | None
    client_id: str
    pending: int
    # Processed by the server, shown from the outbox until a pull brings the resulting state.
    unconfirmed: int
    cursor: str | None
    full_pull_in_progress: bool
    last_sync: str | None
    attention: list[AttentionItem]
    # Photos kept on this device that the server does not hold yet, and their size.
    pending_uploads: int = 0
    pending_upload_bytes: int = 0


def local_now() -> datetime:
    """Now, with the device's UTC offset."""
    return datetime.now().astimezone()


class FieldClient:
    """One device's view of one event: a local replica and outbox, synced over HTTP."""

    def __init__(
        self,
        base_url: str,
        token: str,
        path: str | Path,
        *,
        http: httpx.Client | None = None,
        timeout: float = 10.0,
        max_attempts: int = 5,
        batch_size: int = 200,
        page_limit: int = 500,
        sleep: Callable[[float], None] = time.sleep,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = local_now,
        upload_chunk_size: int = CHUNK_SIZE,
        max_photo_bytes: int = MAX_PHOTO_BYTES,
        orphan_grace: float = ORPHAN_GRACE_SECONDS,
        on_retry: Callable[[str, float], None] | None = None,
    ) -> None:
        self.replica = Replica(path)
        # Next to the replica, named after it: two replicas in one directory keep their own photos.
        self.blobs = BlobStore(self.replica.path.with_name(self.replica.path.name + ".blobs"))
        self.base_url = base_url
        self.token = token
        self._owns_http = http is None
        self.http = http if http is not None else httpx.Client(timeout=timeout)
        self.transport = Transport(
            self.http,
            base_url,
            token,
            timeout=timeout,
            max_attempts=max_attempts,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            sleep=sleep,
            rng=rng if rng is not None else random.Random(),
            on_retry=on_retry,
        )
        self.batch_size = max(1, batch_size)
        self.page_limit = max(1, page_limit)
        self.clock = clock
        self.max_photo_bytes = max_photo_bytes
        self.orphan_grace = orphan_grace
        self.uploader = BlobUploader(self.transport, self.blobs, self._blob_path, upload_chunk_size)

    @classmethod
    def resume(cls, path: str | Path, **options: Any) -> Self:
        """Open a replica with the server URL and token stored by an earlier login."""
        replica = Replica(path)
        try:
            base_url, token = replica.get("base_url"), replica.get("token")
        finally:
            replica.close()
        if not base_url or not token:
            raise NotLoggedInError(f"{path}: no server stored; log in first")
        return cls(base_url, token, path, **options)

    def close(self) -> None:
        """Close the replica, and the HTTP client if this object made it."""
        self.replica.close()
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- account --------------------------------------------------------------------------

    def login(self) -> Account:
        """Ask the server whose token this is (GET /api/v1/me); store the account, URL and token."""
        response = self.transport.request("GET", "/api/v1/me")
        raise_for_problem(response)
        account = decode(response, Account)
        encoded = msgspec.json.encode(account).decode()
        stored = self.account()
        if stored is not None and (stored.id, stored.event_id) != (account.id, account.event_id):
            if self.replica.has_unsynced():
                raise AccountMismatchError(
                    f"this device holds unsynced changes of {stored.id}; sync them with its token first"
                )
            self.replica.reset_for_account()
        self.replica.put(account=encoded, base_url=self.base_url, token=self.token)
        return account

    def account(self) -> Account | None:
        """The account stored by the last login, if any."""
        stored = self.replica.get("account")
        return None if stored is None else msgspec.json.decode(stored, type=Account, strict=False)

    def _event_path(self) -> str:
        account = self.account()
        if account is None:
            raise NotLoggedInError("no account stored; log in first")
        return f"/api/v1/events/{account.event_id}/sync"

    def _blob_path(self, sha256: str) -> str:
        account = self.account()
        if account is None:
            raise NotLoggedInError("no account stored; log in first")
        return f"/api/v1/events/{account.event_id}/blobs/{sha256}"

    # --- local changes --------------------------------------------------------------------

    def add_note(
        self,
        body: str,
        *,
        visit_id: str | None = None,
        site_id: str | None = None,
        tags: Iterable[str] = (),
        lat: float | None = None,
        lon: float | None = None,
        share_with_organizers: bool = False,
        note_id: str | None = None,
        photos: Iterable[str | Path] = (),
        captions: Iterable[str] | None = None,
    ) -> str:
        """Queue a new note about a visit or a site, captured now; return its id (ValueError if invalid).

        ``photos`` (JPEG, PNG, WebP, HEIC or PDF files; ``captions`` in the same order) are
        copied into this device's store before this returns, so the originals may be deleted;
        ``sync`` uploads them.
        """
        note_id = note_id or str(uuid.uuid4())
        fields = {
            "id": note_id,
            "visit_id": visit_id,
            "site_id": site_id,
            "body": body,
            "tags": list(tags),
            "lat": lat,
            "lon": lon,
            "captured_at": self.clock(),
            "share_with_organizers": share_with_organizers,
            "attachments": [],
        }
        self._queue_note(fields, photos, captions)
        return note_id

    def edit_note(
        self,
        note_id: str,
        *,
        resolve_conflicts: bool = False,
        photos: Iterable[str | Path] = (),
        captions: Iterable[str] | None = None,
        **changes: Any,
    ) -> None:
        """Queue an edit of the fields in ``changes`` (None resets one), based on the replica's
        version; ``photos`` are added. Only what changes is sent: the server keeps the rest."""
        unknown = set(changes) - set(NOTE_FIELDS)
        if unknown:
            raise TypeError(f"edit_note() got unknown note fields: {', '.join(sorted(unknown))}")
        current = self._local("note", note_id)
        whole = {name: current.get(name) for name in NOTE_FIELDS if name in current} | edited_fields(
            changes, NOTE_DEFAULTS
        )
        fields = changes | {"id": note_id, "base_version": self._version("note", note_id)}
        fields["resolve_conflicts"] = resolve_conflicts
        if photos and "attachments" not in fields:
            fields["attachments"] = whole.get("attachments") or []
        self._queue_note(fields, photos, captions, whole=whole)

    def _queue_note(
        self,
        fields: dict[str, Any],
        photos: Iterable[str | Path],
        captions: Iterable[str] | None,
        *,
        whole: dict[str, Any] | None = None,
    ) -> None:
        """Check a note (``whole``: as it will be, when ``fields`` are only an edit's changes) and its
        photos, copy the photos into the store, then queue the note with them."""
        paths = [Path(p) for p in photos]
        texts = list(captions or ())
        if len(texts) > len(paths):
            raise ValueError(f"{len(texts)} captions for {len(paths)} photos")
        texts += [""] * (len(paths) - len(texts))
        attached = list(fields.get("attachments") or [])
        if len(attached) + len(paths) > MAX_ATTACHMENTS:
            raise ValueError(f"a note holds at most {MAX_ATTACHMENTS} photos")
        # Everything that can be refused is refused before a byte is copied or a row written.
        checked = [self.blobs.check(p, self.max_photo_bytes) for p in paths]
        placeholders = [
            {"sha256": "0" * 64, "media_type": media_type, "bytes": size, "caption": text}
            for (size, media_type), text in zip(checked, texts, strict=True)
        ]
        _check_note(fields if whole is None else whole)
        if "lat" in fields or "lon" in fields:
            fields = {"lat": (whole or fields).get("lat"), "lon": (whole or fields).get("lon")} | fields
        # An edit that adds no photo leaves the attachments out: the server keeps them as they are.
        with_photos = "attachments" in fields or bool(paths)
        _args(fields | ({"attachments": attached + placeholders} if with_photos else {}), NotePutArgs)
        for _ in range(_COPY_RETRIES):
            copied = [self.blobs.add(p) for p in paths]
            new = [
                {"sha256": f.sha256, "media_type": f.media_type, "bytes": f.size, "caption": text}
                for f, text in zip(copied, texts, strict=True)
            ]
            try:
                args = fields | ({"attachments": attached + new} if with_photos else {})
                self._enqueue("note.put", _args(args, NotePutArgs), copied)
                return
            except _PhotoVanishedError:
                continue
        raise SyncError("a photo kept leaving the store while its note was saved; try again")

    def delete_note(self, note_id: str) -> None:
        """Queue the deletion of a note."""
        self._local("note", note_id)
        args = {"id": note_id, "base_version": self._version("note", note_id)}
        self._enqueue("note.delete", _args(args, NoteDeleteArgs))

    def put_feedback(
        self,
        visit_id: str,
        rating: int | UnsetType | None = UNSET,
        answers: Mapping[str, str | int | None] | None = None,
        comment: str | UnsetType | None = UNSET,
        feedback_id: str | None = None,
        *,
        resolve_conflicts: bool = False,
    ) -> str:
        """Queue this participant's feedback on a visit; return its id.

        Only what is given changes (the first time, the rest takes its default): ``rating`` or
        ``comment`` None clears it, an answer None removes it, and everything left out is kept.
        """
        if feedback_id is None:
            own = self._own_feedback(visit_id)
            feedback_id = own.id if own is not None else str(uuid.uuid4())
        fields: dict[str, Any] = {
            "id": feedback_id,
            "visit_id": visit_id,
            "base_version": self._version("feedback", feedback_id),
            "resolve_conflicts": resolve_conflicts,
        }
        if rating is not UNSET:
            fields["rating"] = rating
        if comment is not UNSET:
            fields["comment"] = comment
        if answers:
            fields["answers"] = dict(answers)
        self._enqueue("feedback.put", _args(fields, FeedbackPutArgs))
        return feedback_id

    def patch_site(self, site_id: str, *, resolve_conflicts: bool = False, **fields: Any) -> None:
        """Queue a change to some fields of a site, based on the replica's version."""
        unknown = set(fields) - SITE_FIELDS
        if unknown:
            raise TypeError(f"patch_site() got unknown site fields: {', '.join(sorted(unknown))}")
        record = self.replica.record("site", site_id)
        if record is None:
            raise RecordNotFoundError(f"no site {site_id!r} in the replica")
        args = {
            "site_id": site_id,
            "base_version": record.version,
            "fields": fields,
            "resolve_conflicts": resolve_conflicts,
        }
        self._enqueue("site.patch", _args(args, SitePatchArgs))

    def _enqueue(self, mutation_type: str, args: dict[str, Any], photos: Sequence[BlobFile] = ()) -> None:
        def photos_still_there() -> None:
            if not all(self.blobs.has(f.sha256) for f in photos):
                raise _PhotoVanishedError

        self.replica.enqueue(
            mutation_type,
            args,
            self.clock().isoformat(),
            uploads=[(f.sha256, f.size, f.media_type) for f in photos],
            guard=photos_still_there if photos else None,
        )

    def _version(self, entity: str, record_id: str) -> int:
        record = self.replica.record(entity, record_id)
        return 0 if record is None else record.version

    def _local(self, entity: str, record_id: str) -> dict[str, Any]:
        data, _ = self._overlay(entity).get(record_id, (None, False))
        if data is None:
            raise RecordNotFoundError(f"no {entity} {record_id!r} on this device")
        return data

    def _own_feedback(self, visit_id: str) -> LocalFeedback | None:
        account = self.account()
        me = account.id if account is not None else None
        return next(
            (f for f in self.feedback() if f.visit_id == visit_id and (f.pending or f.author_id == me)),
            None,
        )

    # --- reading --------------------------------------------------------------------------

    def _overlay(self, entity: str) -> dict[str, tuple[dict[str, Any], bool]]:
        """Records of a kind as (data, pending): the replica, then every queued mutation in order."""
        items = {r.id: (_data(r), False) for r in self.replica.records(entity)}
        account = self.account()
        for entry in self.replica.outbox():
            _apply_pending(items, entity, entry, account.id if account is not None else "")
        return items

    def notes(self) -> list[LocalNote]:
        """The notes this device may see, unsynced changes included, by capture time.

        An attachment is ``available`` once the server holds its blob (a pull said so, or this
        device's upload was confirmed), ``pending`` until then.
        """
        overlay = self._overlay("note").values()
        available = {u.sha256 for u in self.replica.uploads("uploaded")}
        for record in self.replica.records("note"):
            available |= {a["sha256"] for a in record.data.get("attachments") or () if a.get("status") == "available"}
        notes: list[LocalNote] = []
        for data, pending in overlay:
            attachments = [
                a | {"status": "available" if a["sha256"] in available else "pending"}
                for a in data.get("attachments") or ()
            ]
            notes.append(_convert(data | {"pending": pending, "attachments": attachments}, LocalNote))
        return sorted(notes, key=lambda n: (n.captured_at or n.updated_at, n.id))

    def photo_path(self, sha256: str) -> Path | None:
        """The device's own copy of an attached photo, while it is kept (until the server holds it)."""
        if self.replica.upload(sha256) is None or not self.blobs.has(sha256):
            return None
        return self.blobs.path(sha256)

    def fetch_photo(self, sha256: str) -> bytes:
        """A photo's bytes: the device's copy while kept, else from the server (online; 404 if not allowed)."""
        path = self.photo_path(sha256)
        if path is not None:
            return path.read_bytes()
        response = self.transport.request("GET", self._blob_path(sha256), headers={"Accept": "*/*"})
        raise_for_problem(response)
        return response.content

    def uploads(self) -> list[Upload]:
        """Photos kept on this device, with their upload state."""
        return self.replica.uploads()

    def feedback(self) -> list[LocalFeedback]:
        """The feedback this device may see, unsynced changes included."""
        items = [_convert(d | {"pending": p}, LocalFeedback) for d, p in self._overlay("feedback").values()]
        return sorted(items, key=lambda f: (f.visit_id, f.id))

    def sites(self) -> list[Site]:
        """The event's sites, unsynced patches included, by name."""
        sites = [_convert(d, Site) for d, _ in self._overlay("site").values()]
        return sorted(sites, key=lambda s: (s.name.casefold(), s.id))

    def itinerary(self, group: str | None = None) -> list[Visit]:
        """Visits of a group (default: the account's; everything for an account without one), by start."""
        if group is None:
            account = self.account()
            group = account.group_id if account is not None else None
        visits = [_convert(_data(r), Visit) for r in self.replica.records("visit")]
        mine = [v for v in visits if group is None or not v.group_ids or group in v.group_ids]
        return sorted(mine, key=lambda v: (v.starts_at, v.number, v.id))

    def records(self, entity: str) -> list[StoredRecord]:
        """Server-confirmed records of any kind (event, group, question, ...), without the overlay."""
        return self.replica.records(entity)

    # --- attention and status -------------------------------------------------------------

    def attention(self, *, include_dismissed: bool = False) -> list[AttentionItem]:
        """Rejected mutations and conflicts the user has not dismissed yet."""
        return self.replica.attention(include_dismissed=include_dismissed)

    def dismiss(self, item_id: int) -> None:
        """Hide an attention item (it comes back if its conflicts change)."""
        if not self.replica.dismiss(item_id):
            raise RecordNotFoundError(f"no attention item {item_id}")

    def status(self) -> SyncStatus:
        """What is queued, how far pulls have got, and what needs attention; no network."""
        full, cursor = self.replica.pull_position()
        uploads, upload_bytes = self.replica.pending_uploads()
        return SyncStatus(
            base_url=self.replica.get("base_url"),
            account=self.account(),
            client_id=self.replica.client_id,
            pending=self.replica.count_outbox(acked=False),
            unconfirmed=self.replica.count_outbox(acked=True),
            cursor=None if full else cursor,
            full_pull_in_progress=full,
            last_sync=self.replica.get("last_sync"),
            attention=self.attention(),
            pending_uploads=uploads,
            pending_upload_bytes=upload_bytes,
        )

    # --- sync -----------------------------------------------------------------------------

    def sync(self) -> SyncReport:
        """Upload photos, push the outbox, pull until up to date, verify checksums; a later call
        finishes an interrupted one.

        Photos go first, so notes usually arrive with them; a photo that cannot be uploaded now
        (network, 5xx) waits for the next sync without holding its note back: the server keeps
        the note with the attachment pending and names it in ``pending_blobs``.
        """
        if self.account() is None:
            self.login()
        report = SyncReport()
        given_up = self._upload(report, self.replica.uploads("pending"))
        # What the server says it lacks for the notes just pushed: uploaded now, if it is kept here.
        missing = self._push(report) - given_up
        lost = self.replica.reopen_uploads(missing)
        self._upload(report, [u for u in self.replica.uploads("pending") if u.sha256 in missing - lost])
        summary = self._pull(report, restart=False)
        mismatched = self._mismatched(summary)
        if mismatched:
            # The replica drifted from what the server says we may see: rebuild it, once per sync.
            summary = self._pull(report, restart=True)
            mismatched = self._mismatched(summary)
        report.verified = summary is not None and not mismatched
        report.mismatched = sorted(mismatched)
        report.pending = self.replica.count_outbox(acked=False)
        self._free_photos()
        report.uploads_pending, report.uploads_pending_bytes = self.replica.pending_uploads()
        report.attention = len(self.attention())
        return report

    def _upload(self, report: SyncReport, uploads: list[Upload]) -> set[str]:
        """Upload photos one by one until one cannot reach the server; the rest wait for the next sync.

        Returns the photos whose upload failed for another reason than the network (see attention):
        not worth trying again in this sync.
        """
        failed: set[str] = set()
        for upload in uploads:
            blob = BlobFile(upload.sha256, upload.size, upload.media_type)
            try:
                result = self.uploader.upload(blob)
            except (OfflineError, ServerError):
                break
            report.uploaded_bytes += result.sent
            if result.outcome in ("uploaded", "held"):
                report.uploaded += result.outcome == "uploaded"
                report.already_held += result.outcome == "held"
                self.replica.set_upload_state(upload.sha256, "uploaded")
                continue
            report.upload_failed += 1
            failed.add(upload.sha256)
            detail: dict[str, Any] = {"reason": result.outcome, "sha256": upload.sha256, "detail": result.detail}
            if result.problem is not None:
                detail["error"] = result.problem
            state = "pending" if result.outcome == "failed" else result.outcome
            self.replica.set_upload_state(upload.sha256, state, detail)
        return failed

    def _free_photos(self) -> None:
        """Delete copies the server holds that no queued mutation needs, and leftovers of crashes."""
        self.replica.free_uploads(self.blobs.remove)
        self.blobs.sweep({u.sha256 for u in self.replica.uploads()}, grace=self.orphan_grace)

    def _push(self, report: SyncReport) -> set[str]:
        """Send unacknowledged mutations in id order, in batches, until none is left; return the
        blobs the server said it lacks for them."""
        path = self._event_path() + "/push"
        size = self.batch_size
        stuck_at: int | None = None
        missing: set[str] = set()
        while batch := self.replica.outbox(acked=False, limit=size):
            request = PushRequest(
                client_id=self.replica.client_id,
                protocol=PROTOCOL_VERSION,
                mutations=[Mutation(id=e.id, type=e.type, args=e.args, client_time=e.client_time) for e in batch],
            )
            self.replica.mark_sent(batch[-1].id)
            response = self.transport.request("POST", path, json=request)
            if response.status_code == 413:
                if size == 1:
                    raise RequestRejectedError(problem_of(response))
                size = max(1, len(batch) // 2)
                continue
            raise_for_problem(response)
            answer = decode(response, PushResponse)
            report.add(self.replica.acknowledge(answer.last_mutation_id, answer.results))
            missing.update(h for r in answer.results for h in r.pending_blobs or ())
            last = answer.last_mutation_id
            if last >= batch[-1].id:
                stuck_at = None
                continue
            # out_of_order, or a server that stopped early: send again from last + 1.
            if last == stuck_at:
                raise ProtocolError(f"server stays at mutation {last} while {batch[0].id} and later are queued")
            stuck_at = last
            first = self.replica.outbox(limit=1)
            if first and first[0].id > last + 1:
                # The server processed up to `last`, but this device dropped last+1.. after the
                # server acknowledged them: the server lost them (a restore). Start over (§3, "Gaps").
                self.replica.start_over_as_new_client()
                report.restarted_client = True
                stuck_at = None
        return missing

    def _pull(self, report: SyncReport, *, restart: bool) -> dict[str, EntitySummary] | None:
        """Pull pages until ``has_more`` is false; return the last page's summary."""
        full, cursor = self.replica.pull_position()
        if restart or (not full and cursor is None):
            self.replica.begin_full_pull()
        path = self._event_path() + "/pull"
        gone = 0
        while True:
            full, cursor = self.replica.pull_position()
            params: dict[str, str | int] = {
                "limit": self.page_limit,
                "client_id": self.replica.client_id,
                "protocol": PROTOCOL_VERSION,
            }
            if cursor:
                params["cursor"] = cursor
            response = self.transport.request("GET", path, params=params)
            if response.status_code == 410:
                # The cursor is older than the server's change log: rebuild from a full pull.
                gone += 1
                if not cursor or gone > _GONE_RETRIES:
                    raise ProtocolError(
                        f"server answered 410 Gone to {'a full pull' if not cursor else 'every cursor'}"
                    )
                self.replica.begin_full_pull()
                continue
            raise_for_problem(response)
            page = decode(response, PullResponse)
            if page.has_more and not page.changes and page.cursor == (cursor or ""):
                raise ProtocolError("server said has_more but sent nothing and kept the cursor")
            self.replica.apply_page(page, full=full)
            report.pages += 1
            report.pulled += len(page.changes)
            report.full_pull = report.full_pull or full
            if not page.has_more:
                return page.summary

    def _mismatched(self, summary: dict[str, EntitySummary] | None) -> set[str]:
        """Entity kinds whose count or checksum differ from the server's summary."""
        if summary is None:
            return set()
        local = self.replica.summary()
        empty = EntitySummary(count=0, checksum=checksum(()))
        return {
            entity for entity in summary.keys() | local.keys() if summary.get(entity, empty) != local.get(entity, empty)
        }


def _check_note(fields: dict[str, Any]) -> None:
    """The note rules of protocol v1 that need no replica: refused now rather than rejected at the next sync."""
    if not fields.get("visit_id") and not fields.get("site_id"):
        raise ValueError("a note is about a visit or a site: give visit_id or site_id")
    if (fields.get("lat") is None) != (fields.get("lon") is None):
        raise ValueError("give lat and lon together, or neither")


def _args(fields: dict[str, Any], kind: type[T]) -> dict[str, Any]:
    """Mutation arguments, validated against their wire type (msgspec.ValidationError, a ValueError)."""
    return msgspec.to_builtins(msgspec.convert(fields, kind))


def _data(record: StoredRecord) -> dict[str, Any]:
    return record.data | {"id": record.id, "version": record.version}


def _convert(data: dict[str, Any], kind: type[T]) -> T:
    try:
        return msgspec.convert(data, kind, strict=False)
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"{kind.__name__} {data.get('id')!r} in the replica: {exc}") from exc


def _apply_pending(
    items: dict[str, tuple[dict[str, Any], bool]], entity: str, entry: OutboxEntry, account_id: str
) -> None:
    """Lay one queued mutation over the records of ``entity`` (Replicache-style optimistic state)."""
    args = entry.args
    if entry.type in ("note.put", "feedback.put") and entry.type.startswith(entity):
        record_id = args["id"]
        defaults = NOTE_DEFAULTS if entity == "note" else FEEDBACK_DEFAULTS
        # As the server does: a create fills in defaults, an edit changes what it sent (null: default).
        base: dict[str, Any] = (
            items[record_id][0] if record_id in items else {"author_id": account_id, "version": 0, **defaults}
        )
        sent = {k: v for k, v in args.items() if k in defaults}
        data = base | {k: v for k, v in args.items() if k not in _CONTROL_ARGS and k != "answers"}
        data |= edited_fields(sent, defaults)
        if "answers" in args:
            answers: dict[str, Any] = {**(base.get("answers") or {}), **args["answers"]}
            data["answers"] = {q: a for q, a in answers.items() if a is not None}
        if args.get("resolve_conflicts"):
            data["conflicts"] = []
        data["updated_at"] = entry.client_time
        items[record_id] = (data, True)
    elif entry.type == "note.delete" and entity == "note":
        items.pop(args["id"], None)
    elif entry.type == "site.patch" and entity == "site" and args["site_id"] in items:
        site, fields = items[args["site_id"]][0], dict(args["fields"])
        if isinstance(fields.get("description"), dict) and isinstance(site.get("description"), dict):
            # Each language is its own field: a patch of one leaves the others as they were.
            fields["description"] = site["description"] | fields["description"]
        items[args["site_id"]] = (site | fields, True)
