"""``studyvisit field``: the offline field client from a terminal.

Everything but ``login`` and ``sync`` reads and writes the local replica only, so it works
without a network. Tests (or embedders) may pass
``obj={"client_options": {"http": httpx.Client(...), ...}}`` to click: keyword arguments for
every FieldClient the commands open.
"""

import io
import re
import sys
from collections.abc import Callable, Generator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from sync.client import (
    AttentionItem,
    FieldClient,
    NotLoggedInError,
    OfflineError,
    RecordNotFoundError,
    SyncError,
    SyncReport,
)
from sync.transport import check_base_url

DEFAULT_DIR = "~/.studyvisit-field"
REPLICA_FILE = "replica.db"


def _data_dir(value: str | None) -> Path:
    return Path(value or DEFAULT_DIR).expanduser()


def data_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """The ``--data DIR`` option every field command takes."""
    return click.option(
        "--data",
        metavar="DIR",
        envvar="STUDYVISIT_FIELD_DIR",
        default=DEFAULT_DIR,
        show_default=True,
        help="Where the replica lives (or $STUDYVISIT_FIELD_DIR)",
    )(f)


def _utf8_output() -> None:
    """Site and participant names are in many scripts: never let a narrow locale refuse to print them."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.encoding.replace("-", "").lower() != "utf8":
            stream.reconfigure(encoding="utf-8")


def _say_retry(what: str, wait: float) -> None:
    """Progress while the server does not answer: each retry, why, and how long until the next."""
    click.echo(f"{what}; trying again in {wait:.1f} s", err=True)


def _options() -> dict[str, Any]:
    """FieldClient options from click's ``obj`` (``{"client_options": {"http": ..., "sleep": ...}}``)."""
    obj = click.get_current_context().obj
    options = obj.get("client_options") if isinstance(obj, dict) else None
    found: dict[str, Any] = dict(options) if isinstance(options, dict) else {}
    found.setdefault("on_retry", _say_retry)
    return found


# API field names in validation messages, as the options a person typed.
_OPTION_OF_FIELD = {"visit_id": "--visit", "site_id": "--site", "tags": "--tag", "body": "TEXT", "rating": "--rating"}


def _in_option_terms(message: str) -> str:
    """A message about ``$.visit_id`` or ``$.tags[0]`` in the terms of the command line."""
    return re.sub(
        r"`\$\.(\w+)(\[\d+\])?[^`]*`",
        lambda m: _OPTION_OF_FIELD.get(m[1], m[0]),
        message,
    )


def _check_visit(client: FieldClient, visit_id: str, purpose: str, label: str = "--visit") -> None:
    """Refuse now, not at the next sync, a visit this device does not know or that is not the user's."""
    known = {r.id: r for r in client.records("visit")}
    if not known:
        raise click.ClickException(
            "this device has no programme yet: run `studyvisit field sync` first "
            f"(then `studyvisit field itinerary` lists the visits for {label})"
        )
    if visit_id not in known:
        raise click.ClickException(
            f"{label} {visit_id}: no such visit in the programme on this device "
            "(see `studyvisit field itinerary`; run `studyvisit field sync` if it was added since)"
        )
    account = client.account()
    if account is None or account.role != "participant" or account.group_id is None:
        return  # organizers and hosts may write about any visit; a participant without a group sees them all
    if visit_id not in {v.id for v in client.itinerary()}:
        raise click.ClickException(
            f"{label} {visit_id} is not in your group's programme (group {account.group_id}): {purpose} "
            "a visit of `studyvisit field itinerary`"
        )


def _check_site(client: FieldClient, site_id: str) -> None:
    if site_id not in {s.id for s in client.sites()}:
        raise click.ClickException(
            f"--site {site_id}: no such site on this device (see `studyvisit field sites`; "
            "run `studyvisit field sync` if it is new)"
        )


@contextmanager
def opened(data: str | None) -> Generator[FieldClient, None, None]:
    """The field client over the stored replica, with errors turned into one-line messages."""
    path = _data_dir(data) / REPLICA_FILE
    try:
        client = FieldClient.resume(path, **_options())
    except NotLoggedInError:
        raise click.ClickException("not logged in: run `studyvisit field login --url URL --token TOKEN`") from None
    try:
        yield client
    except OfflineError as exc:
        pending = client.status().pending
        raise click.ClickException(
            f"offline, try again later ({pending} change(s) kept on this device): {exc}"
        ) from exc
    except (SyncError, RecordNotFoundError, ValueError, TypeError, OSError) as exc:  # ValueError: msgspec's too
        raise click.ClickException(str(exc)) from exc
    finally:
        client.close()


@click.group()
def field() -> None:
    """Offline field client: itinerary, sites, notes and feedback without a network; sync when online."""
    _utf8_output()


@field.command()
@click.option("--url", required=True, help="The server, e.g. https://studyvisit.example.org")
@click.option("--token", required=True, envvar="STUDYVISIT_FIELD_TOKEN", help="Your bearer token")
@data_option
def login(url: str, token: str, data: str | None) -> None:
    """Check the token with the server and store it with the server URL."""
    try:
        check_base_url(url)
    except SyncError as exc:
        raise click.ClickException(f"--url {exc}") from None
    path = _data_dir(data) / REPLICA_FILE
    with FieldClient(url, token, path, **_options()) as client:
        try:
            account = client.login()
        except SyncError as exc:
            raise click.ClickException(str(exc)) from exc
    group = f", group {account.group_id}" if account.group_id else ""
    click.echo(f"Logged in as {account.name} ({account.role}{group}) for event {account.event_id}.")
    click.echo("Run `studyvisit field sync` to download the event.")


@field.command()
@click.option("--group", help="Another group's itinerary (default: yours)")
@data_option
def itinerary(group: str | None, data: str | None) -> None:
    """Your group's visits, by day."""
    with opened(data) as client:
        sites = {s.id: s.name for s in client.sites()}
        visits = client.itinerary(group)
    if not visits:
        click.echo("No visits on this device yet: run `studyvisit field sync` when online.")
    day = ""
    for visit in visits:
        if visit.starts_at.strftime("%a %d %b %Y") != day:
            day = visit.starts_at.strftime("%a %d %b %Y")
            click.echo(day)
        place = sites.get(visit.site_id or "", visit.venue)
        where = f" · {place}" if place else ""
        status = f"  [{visit.status}]" if visit.status != "scheduled" else ""
        times = f"{visit.starts_at:%H:%M}–{visit.ends_at:%H:%M}"
        click.echo(f"  {times}  {visit.title}{where}{status}  ({visit.id})")


@field.command()
@data_option
def sites(data: str | None) -> None:
    """The event's sites."""
    with opened(data) as client:
        found = client.sites()
    for site in found:
        address = ", ".join(p for p in (site.address, site.city) if p)
        click.echo(f"{site.name} ({site.id})" + (f"\n    {address}" if address else ""))


@field.command()
@click.argument("text")
@click.option("--visit", help="The visit the note is about")
@click.option("--site", help="The site the note is about")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable)")
@click.option("--share", is_flag=True, help="Share the note with the organizers")
@click.option(
    "--photo",
    "photos",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Attach a photo or PDF (repeatable; JPEG, PNG, WebP, HEIC or PDF)",
)
@click.option("--caption", "captions", multiple=True, help="A caption for each --photo, in the same order")
@data_option
def note(
    text: str,
    visit: str | None,
    site: str | None,
    tags: tuple[str, ...],
    share: bool,
    photos: tuple[Path, ...],
    captions: tuple[str, ...],
    data: str | None,
) -> None:
    """Write a note on this device; the next sync sends it, and uploads its photos."""
    if not visit and not site:
        raise click.ClickException("a note is about a visit or a site: give --visit VISIT or --site SITE")
    with opened(data) as client:
        if visit:
            _check_visit(client, visit, "write about")
        if site:
            _check_site(client, site)
        try:
            note_id = client.add_note(
                text,
                visit_id=visit,
                site_id=site,
                tags=tags,
                share_with_organizers=share,
                photos=photos,
                captions=captions,
            )
        except (ValueError, TypeError) as exc:  # msgspec's validation errors are ValueErrors
            raise click.ClickException(_in_option_terms(str(exc))) from None
    kept = f" with {len(photos)} photo(s), copied to this device (the originals may be deleted)" if photos else ""
    click.echo(f"Note {note_id} saved on this device{kept}.")


@field.command()
@data_option
def notes(data: str | None) -> None:
    """Your notes, unsynced ones marked with *."""
    with opened(data) as client:
        found = client.notes()
    for n in found:
        about = " ".join(x for x in (n.visit_id, n.site_id) if x)
        tags = " ".join(f"#{t}" for t in n.tags)
        mark = "*" if n.pending else " "
        click.echo(f"{mark} {n.captured_at or ''} {about} {tags}".rstrip() + f"\n    {n.body}")
        for a in n.attachments:
            caption = f" “{a.caption}”" if a.caption else ""
            state = "uploaded" if a.status == "available" else "waiting to upload"
            click.echo(f"    [{a.media_type} {human_bytes(a.bytes)}, {state}] {a.sha256[:12]}{caption}")


@field.command()
@click.argument("visit")
@click.option("--rating", type=click.IntRange(1, 5), required=True)
@click.option("--comment", default="")
@data_option
def feedback(visit: str, rating: int, comment: str, data: str | None) -> None:
    """Rate a visit (1-5), replacing your earlier feedback on it."""
    with opened(data) as client:
        account = client.account()
        if account is not None and account.role != "participant":
            raise click.ClickException(f"only participants give feedback on visits; you are a {account.role}")
        _check_visit(client, visit, "give feedback on", "VISIT")
        feedback_id = client.put_feedback(visit, rating=rating, comment=comment)
    click.echo(f"Feedback {feedback_id} on {visit} saved on this device.")


@field.command()
@data_option
def sync(data: str | None) -> None:
    """Send your changes and download the latest event data."""
    with opened(data) as client:
        report = client.sync()
    click.echo(describe_report(report))


@field.command()
@data_option
def status(data: str | None) -> None:
    """Unsynced changes, last sync, and what needs your attention."""
    with opened(data) as client:
        state = client.status()
    account = state.account
    click.echo(f"Server:      {state.base_url}")
    if account is not None:
        click.echo(f"Account:     {account.name} ({account.role}) for event {account.event_id}")
    click.echo(
        f"Unsynced:    {state.pending} change(s)"
        + (f", {state.unconfirmed} awaiting download" * bool(state.unconfirmed))
    )
    if state.pending_uploads:
        click.echo(
            f"Photos:      {state.pending_uploads} waiting to upload ({human_bytes(state.pending_upload_bytes)})"
        )
    click.echo(f"Last sync:   {state.last_sync or 'never'}")
    click.echo(f"Attention:   {len(state.attention)} item(s)")
    for item in state.attention:
        click.echo(f"  #{item.id} {describe_attention(item)}")


@field.command()
@click.argument("item_id", type=int)
@data_option
def dismiss(item_id: int, data: str | None) -> None:
    """Hide an attention item shown by `status`."""
    with opened(data) as client:
        client.dismiss(item_id)
    click.echo(f"Dismissed #{item_id}.")


def describe_report(report: SyncReport) -> str:
    """One sync in a few human lines."""
    lines = [
        f"Sent {report.pushed} change(s): {report.applied} applied, {report.duplicate} already there, "
        f"{report.rejected} rejected, {report.conflict} in conflict.",
        f"Received {report.pulled} update(s) in {report.pages} page(s)"
        + (" (full download)." if report.full_pull else "."),
        "Data verified against the server." if report.verified else "Data could not be verified against the server.",
    ]
    if report.uploaded or report.already_held or report.uploads_pending:
        held = f", {report.already_held} already on the server" if report.already_held else ""
        waiting = (
            f", {report.uploads_pending} waiting ({human_bytes(report.uploads_pending_bytes)}) for the next sync"
            if report.uploads_pending
            else ""
        )
        lines.append(f"Uploaded {report.uploaded} photo(s) ({human_bytes(report.uploaded_bytes)}){held}{waiting}.")
    if report.attention:
        lines.append(f"{report.attention} item(s) need your attention: see `studyvisit field status`.")
    return "\n".join(lines)


def human_bytes(size: int) -> str:
    """A size as people read it (binary units)."""
    amount = float(size)
    for unit in ("B", "KiB", "MiB"):
        if amount < 1024 or unit == "MiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


_UPLOAD_REASONS = {
    "corrupt": "the copy on this device is damaged; attach the photo again from the original",
    "refused": "the server refused it",
    "failed": "the upload failed; it is tried again at the next sync",
    "missing": "the server lacks it and this device no longer holds it",
}


def describe_attention(item: AttentionItem) -> str:
    """One attention item in a line."""
    what = f"{item.entity} {item.entity_id}" if item.entity else (item.mutation_type or "change")
    detail = item.detail
    if item.kind == "upload":
        reason = _UPLOAD_REASONS.get(str(detail.get("reason")), "it could not be uploaded")
        extra = f" ({detail['detail']})" if detail.get("detail") else ""
        return f"photo {str(item.entity_id)[:12]}: {reason}{extra}"
    if item.kind == "rejected":
        error = detail.get("error") or {}
        reason = error.get("detail") or error.get("title") or "no reason given"
        return f"rejected {item.mutation_type} of {what}: {reason}"
    if item.mutation_id is not None:
        fields = ", ".join(detail.get("conflicts") or []) or "some fields"
        return f"conflict on {what}: your {fields} lost to a concurrent edit (kept on the record)"
    values = "; ".join(f"{c.get('field')}={c.get('value')!r}" for c in detail.get("conflicts", []))
    gone = " (deleted)" if detail.get("op") == "delete" else ""
    return f"conflict on {what}{gone}: values that lost: {values}"
