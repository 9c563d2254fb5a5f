"""What changed in the programme since a time, in one sentence each and in the reader's language; reordering a day.

Changes are read from the visits' history and told as net changes: a visit moved twice since
``since`` is one item from its old time to its latest, and a visit moved and moved back is none.
A visit created after ``since`` (version 1, no history yet) is one "new" item.
"""

import re
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import msgspec

from schemas.accounts import Account
from schemas.itinerary import Group, Visit
from schemas.places import Event, Site
from schemas.schedule import ChangeKind, ReorderedVisits, ScheduleChange, ScheduleChanges
from schemas.sync import VisitFields, VisitPatchArgs
from server.errors import BadRequestError, DomainError, InvalidQueryError
from server.services.mutations import Context
from server.services.visits import require_organizer, visit_patch
from server.storage.catalog import get_event, get_visit, list_groups, list_sites, list_visits
from server.storage.records import history_since
from server.storage.unit import Store, Tx

# The fields whose changes a reader of the programme is told about.
TRACKED = ("title", "kind", "starts_at", "ends_at", "status", "site_id", "venue", "meeting_point", "transport")
TRACKED_LISTS = ("group_ids",)
KIND_ORDER: tuple[ChangeKind, ...] = (
    "new",
    "cancelled",
    "restored",
    "moved",
    "ends",
    "place",
    "meeting_point",
    "transport",
    "groups",
)
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})\Z")


# One sentence per kind of change, in each language a reader may get. Phrasings avoid agreeing with
# the visit's grammatical gender ("visite", "déjeuner"...), which a template cannot know.
TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "new": "New: {what}, {when} ({who})",
        "moved": "{who}: {what} moved {old} → {new}",
        "until": " (until {end})",
        "ends": "{who}: {what} now ends at {new} (was {old})",
        "cancelled": "{who}: {what} cancelled",
        "restored": "{who}: {what} is back on, {when}",
        "place": "{who}: {what} now at {place}",
        "meeting_point": "{who}: {what}, meeting point changed to {point}",
        "transport": "{who}: {what}, getting there: {transport}",
        "groups": "{what}, now for: {who} (before: {old_who})",
        "visit_to": "visit to {site}",
        "quoted": "“{title}”",
        "group": "Group {id}",
        "groups_of": "Groups {ids}",
        "all_groups": "All groups",
        "no_group": "No group",
        "list_separator": ", ",
        "transport_walk": "on foot",
        "transport_minibus": "by minibus",
        "transport_public_transport": "by public transport",
        "transport_bike": "by bike",
        "transport_none": "on your own",
    },
    "fr": {
        "new": "Nouveau\u00a0: {what}, {when} ({who})",
        "moved": "{who}\u00a0: {what}, nouvel horaire {old} → {new}",
        "until": " (jusqu’à {end})",
        "ends": "{who}\u00a0: {what} se termine désormais à {new} (au lieu de {old})",
        "cancelled": "{who}\u00a0: {what} n’a plus lieu",
        "restored": "{who}\u00a0: {what} a de nouveau lieu, {when}",
        "place": "{who}\u00a0: {what} a désormais lieu à {place}",
        "meeting_point": "{who}\u00a0: {what}, nouveau point de rendez-vous\u00a0: {point}",
        "transport": "{who}\u00a0: {what}, pour s’y rendre\u00a0: {transport}",
        "groups": "{what}, désormais pour\u00a0: {who} (avant\u00a0: {old_who})",
        "visit_to": "visite chez {site}",
        "quoted": "«\u00a0{title}\u00a0»",
        "group": "Groupe {id}",
        "groups_of": "Groupes {ids}",
        "all_groups": "Tous les groupes",
        "no_group": "Aucun groupe",
        "list_separator": ", ",
        "transport_walk": "à pied",
        "transport_minibus": "en minibus",
        "transport_public_transport": "en transports en commun",
        "transport_bike": "à vélo",
        "transport_none": "par vos propres moyens",
    },
    "es": {
        "new": "Novedad: {what}, {when} ({who})",
        "moved": "{who}: {what}, cambio de horario {old} → {new}",
        "until": " (hasta las {end})",
        "ends": "{who}: {what} termina ahora a las {new} (antes a las {old})",
        "cancelled": "{who}: {what} no se realizará",
        "restored": "{who}: {what} vuelve al programa, {when}",
        "place": "{who}: {what}, ahora en {place}",
        "meeting_point": "{who}: {what}, nuevo punto de encuentro: {point}",
        "transport": "{who}: {what}, cómo llegar: {transport}",
        "groups": "{what}, ahora para: {who} (antes: {old_who})",
        "visit_to": "visita a {site}",
        "quoted": "«{title}»",
        "group": "Grupo {id}",
        "groups_of": "Grupos {ids}",
        "all_groups": "Todos los grupos",
        "no_group": "Ningún grupo",
        "list_separator": ", ",
        "transport_walk": "a pie",
        "transport_minibus": "en minibús",
        "transport_public_transport": "en transporte público",
        "transport_bike": "en bicicleta",
        "transport_none": "por su cuenta",
    },
    "it": {
        "new": "Novità: {what}, {when} ({who})",
        "moved": "{who}: {what}, orario spostato {old} → {new}",
        "until": " (fino alle {end})",
        "ends": "{who}: {what} termina ora alle {new} (invece delle {old})",
        "cancelled": "{who}: {what} non si terrà più",
        "restored": "{who}: {what} si terrà di nuovo, {when}",
        "place": "{who}: {what}, ora presso {place}",
        "meeting_point": "{who}: {what}, nuovo punto d’incontro: {point}",
        "transport": "{who}: {what}, come arrivarci: {transport}",
        "groups": "{what}, ora per: {who} (prima: {old_who})",
        "visit_to": "visita a {site}",
        "quoted": "«{title}»",
        "group": "Gruppo {id}",
        "groups_of": "Gruppi {ids}",
        "all_groups": "Tutti i gruppi",
        "no_group": "Nessun gruppo",
        "list_separator": ", ",
        "transport_walk": "a piedi",
        "transport_minibus": "in minibus",
        "transport_public_transport": "con i mezzi pubblici",
        "transport_bike": "in bicicletta",
        "transport_none": "con mezzi propri",
    },
    # Headline style (verbal nouns: "إلغاء", "تغيير"), which needs no agreement with the visit's gender.
    "ar": {
        "new": "جديد: {what}، {when} ({who})",
        "moved": "{who}: تغيير موعد {what} من {old} إلى {new}",
        "until": " (حتى {end})",
        "ends": "{who}: تغيير وقت انتهاء {what} إلى {new} (بدلاً من {old})",
        "cancelled": "{who}: إلغاء {what}",
        "restored": "{who}: إعادة {what} إلى البرنامج، {when}",
        "place": "{who}: نقل {what} إلى {place}",
        "meeting_point": "{who}: {what}، نقطة التجمّع الجديدة: {point}",
        "transport": "{who}: {what}، وسيلة الوصول: {transport}",
        "groups": "{what}، المجموعات المعنية الآن: {who} (سابقاً: {old_who})",
        "visit_to": "زيارة {site}",
        "quoted": "«{title}»",
        "group": "المجموعة {id}",
        "groups_of": "المجموعات {ids}",
        "all_groups": "جميع المجموعات",
        "no_group": "بدون مجموعة",
        "list_separator": "، ",
        "transport_walk": "سيراً على الأقدام",
        "transport_minibus": "بالحافلة الصغيرة",
        "transport_public_transport": "بالنقل العام",
        "transport_bike": "بالدراجة",
        "transport_none": "بوسائلكم الخاصة",
    },
}
FALLBACK_LANGUAGE = "en"


def pick_language(requested: str | None, account_language: str | None) -> str:
    """The language of the texts: ``lang`` if there are texts in it, else the account's, else English.

    Only the primary subtag counts: ``fr-CA`` reads French, ``pt-BR`` (no texts yet) falls through.
    """
    for tag in (requested, account_language):
        primary = (tag or "").split("-")[0].lower()
        if primary in TEXTS:
            return primary
    return FALLBACK_LANGUAGE


class ReorderRefusedError(DomainError):
    """The visits named cannot swap their times (they are on different days)."""

    status: ClassVar[int] = 422
    slug: ClassVar[str] = "invalid-reorder"
    title: ClassVar[str] = "These visits cannot be reordered"


def stamp(value: datetime) -> str:
    """A time as the history stores it: RFC 3339 in UTC with microseconds and 'Z', so text order is time order."""
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_since(text: str | None) -> datetime:
    """Read ``since``: an RFC 3339 date-time with an offset; anything else is an invalid query."""
    if not text:
        raise InvalidQueryError("since is required: an RFC 3339 time such as 2025-12-10T12:00:00Z.")
    # Echo at most a line of what was sent: a problem document must not grow with the request.
    shown = repr(text) if len(text) <= 64 else f"{text[:40]!r}… ({len(text)} characters)"
    # RFC 3339 allows lower-case t and z; an unencoded "+" of the offset arrives as a space in a query.
    candidate = re.sub(r" (\d{2}:\d{2})\Z", r"+\1", text).upper()
    if len(text) > 64 or not _RFC3339.match(candidate):
        raise InvalidQueryError(
            f"since must be an RFC 3339 time with an offset, such as 2025-12-10T12:00:00Z: {shown}."
        )
    try:
        stamp = datetime.fromisoformat(candidate)
        stamp.astimezone(UTC)  # years 1 and 9999 with an offset fall off the calendar in UTC
    except (ValueError, OverflowError):
        raise InvalidQueryError(f"since is not a valid date and time: {shown}.") from None
    return stamp


def list_changes(db: Store, account: Account, event_id: str, since: str | None, lang: str | None) -> ScheduleChanges:
    """The changes to the part of the programme the caller follows, after ``since``, oldest first."""
    after = parse_since(since)
    language = pick_language(lang, account.language)
    with db.read() as tx:
        told, newest = told_changes(tx, event_id, stamp(after), language)
    items = [item for item, visit, before in told if follows(account, visit, before)]
    return ScheduleChanges(event_id=event_id, since=stamp(after), next_since=newest, lang=language, changes=items)


ToldChange = tuple[ScheduleChange, Visit, dict[str, Any] | None]


def told_changes(tx: Tx, event_id: str, since: str, language: str) -> tuple[list[ToldChange], str]:
    """Every change after ``since`` in sentences of ``language``, oldest first, each with its visit and the
    visit's tracked values at ``since`` (None: created since), whose readers ``follows`` tells; and the
    newest change time read."""
    event = get_event(tx, event_id)
    teller = Teller(event, list_sites(tx, event_id), list_groups(tx, event_id), language)
    changes, newest = _net_changes(tx, event_id, since)
    told = [(item, visit, before) for visit, before, at in changes for item in teller.tell(visit, before, at)]
    numbers = {visit.id: visit.number for visit, _, _ in changes}
    told.sort(key=lambda t: (t[0].at, numbers[t[0].visit_id], KIND_ORDER.index(t[0].kind)))
    return told, newest


def _net_changes(
    tx: Tx, event_id: str, since: str
) -> tuple[list[tuple[Visit, dict[str, Any] | None, dict[str, str]]], str]:
    """Each visit changed after ``since`` with its tracked values as they were then (None: created since)
    and the time each field last changed; and the newest change time read."""
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in history_since(tx, event_id, "visit", since):
        rows[row["entity_id"]].append(row)
    newest = since
    found: list[tuple[Visit, dict[str, Any] | None, dict[str, str]]] = []
    for visit in list_visits(tx, event_id):
        if visit.id in rows:
            before = _tracked(msgspec.to_builtins(visit))
            changed_at: dict[str, str] = {}
            for row in reversed(rows[visit.id]):  # newest first: undo each change in turn
                for name, change in row["changes"].items():
                    if name in before:
                        before[name] = change["old"]
                        changed_at.setdefault(name, row["at"])
                newest = max(newest, row["at"])
            found.append((visit, _tracked(before), changed_at))
        elif visit.version == 1 and visit.updated_at is not None and stamp(visit.updated_at) > since:
            found.append((visit, None, {"created": stamp(visit.updated_at)}))
            newest = max(newest, stamp(visit.updated_at))
    return found, newest


def _tracked(values: dict[str, Any]) -> dict[str, Any]:
    """The tracked fields of a visit's values, times as aware datetimes so offsets do not count as changes."""
    state = {name: values.get(name) for name in (*TRACKED, *TRACKED_LISTS)}
    for name in ("starts_at", "ends_at"):
        value = state[name]
        if isinstance(value, str):
            state[name] = datetime.fromisoformat(value)
    state["group_ids"] = list(state["group_ids"] or [])
    return state


def follows(account: Account, visit: Visit, before: dict[str, Any] | None) -> bool:
    """Whether the caller reads this visit: organizers all, hosts their sites', participants their group's."""
    was = before or {"site_id": visit.site_id, "group_ids": visit.group_ids}
    if account.role == "host":
        return bool({visit.site_id, was["site_id"]} & set(account.site_ids))
    if account.role == "participant" and account.group_id is not None:
        return account.group_id in {*visit.group_ids, *was["group_ids"]}
    # Organizers, and participants not yet in a group (whose itinerary is the whole programme).
    return True


class Teller:
    """Puts a visit's changes into sentences of one language, with times in the event's zone."""

    def __init__(self, event: Event, sites: list[Site], groups: list[Group], lang: str) -> None:
        self.event = event
        self.zone = ZoneInfo(event.timezone)
        self.sites = {s.id: s for s in sites}
        self.groups = {g.id: g for g in groups}
        self.lang = lang
        self.t = TEXTS[lang]

    def tell(self, visit: Visit, before: dict[str, Any] | None, changed_at: dict[str, str]) -> list[ScheduleChange]:
        """The items of one visit: "new", or one per kind of change between ``before`` and now."""
        now = _tracked(msgspec.to_builtins(visit))
        group_ids = [*visit.group_ids, *(g for g in (before or {}).get("group_ids", []) if g not in visit.group_ids)]

        def item(kind: ChangeKind, at: str, **values: str) -> ScheduleChange:
            text = self.t[kind].format(**values)
            return ScheduleChange(at=at, visit_id=visit.id, group_ids=group_ids, kind=kind, text=text, lang=self.lang)

        def at(*names: str) -> str:
            return max(changed_at[n] for n in names if n in changed_at)

        who = self.who(now["group_ids"])
        if before is None:
            return [item("new", changed_at["created"], what=self.what(now), who=who, when=self.when(now))]
        was_cancelled, is_cancelled = before["status"] == "cancelled", now["status"] == "cancelled"
        if is_cancelled:
            return [] if was_cancelled else [item("cancelled", at("status"), who=who, what=self.what(before))]
        what = self.what(before)
        items: list[ScheduleChange] = []
        if was_cancelled:
            items.append(item("restored", at("status"), who=who, what=what, when=self.when(now)))
        elif now["starts_at"] != before["starts_at"]:
            old, new = self.times(before["starts_at"], now["starts_at"])
            text_end = ""
            if now["ends_at"] - now["starts_at"] != before["ends_at"] - before["starts_at"]:
                text_end = self.t["until"].format(end=self.clock(now["ends_at"], now["starts_at"]))
            items.append(item("moved", at("starts_at", "ends_at"), who=who, what=what, old=old, new=new + text_end))
        elif now["ends_at"] != before["ends_at"]:
            old, new = self.times(before["ends_at"], now["ends_at"])
            items.append(item("ends", at("ends_at"), who=who, what=what, old=old, new=new))
        if self.place(now) != self.place(before):
            items.append(item("place", at("site_id", "venue"), who=who, what=what, place=self.place(now)))
        if now["meeting_point"] != before["meeting_point"]:
            point = now["meeting_point"] or self.place(now)
            items.append(item("meeting_point", at("meeting_point"), who=who, what=what, point=point))
        if now["transport"] != before["transport"]:
            transport = self.t["transport_" + now["transport"]]
            items.append(item("transport", at("transport"), who=who, what=what, transport=transport))
        if set(now["group_ids"]) != set(before["group_ids"]):
            old_who = self.who(before["group_ids"])
            items.append(item("groups", at("group_ids"), who=who, what=what, old_who=old_who))
        return items

    def who(self, group_ids: list[str]) -> str:
        """Whom a visit is for: a group's name, several groups' ids, or all groups."""
        if not group_ids:
            return self.t["no_group"]
        if len(self.groups) > 1 and set(group_ids) >= set(self.groups):
            return self.t["all_groups"]
        if len(group_ids) == 1:
            group = self.groups.get(group_ids[0])
            if group is not None and group.name and group.name != group.id:
                return group.name
            return self.t["group"].format(id=group_ids[0])
        return self.t["groups_of"].format(ids=self.t["list_separator"].join(group_ids))

    def what(self, state: dict[str, Any]) -> str:
        """A visit as readers know it: "visit to <site>" for site visits, else its title."""
        site = self.sites.get(state["site_id"] or "")
        if state["kind"] == "visit" and site is not None:
            return self.t["visit_to"].format(site=site.name)
        return self.t["quoted"].format(title=state["title"])

    def place(self, state: dict[str, Any]) -> str:
        """Where a visit happens: its site (else the event's venue) and the room or venue text."""
        site = self.sites.get(state["site_id"] or self.event.venue_site_id or "")
        parts = [p for p in (site.name if site else "", state["venue"]) if p]
        return ", ".join(parts) or self.event.venue

    def when(self, state: dict[str, Any]) -> str:
        """A visit's date and times: ``2025-12-10 14:30-15:45`` (with an en dash)."""
        starts = state["starts_at"].astimezone(self.zone)
        return f"{starts:%Y-%m-%d %H:%M}–{self.clock(state['ends_at'], state['starts_at'])}"

    def times(self, old: datetime, new: datetime) -> tuple[str, str]:
        """Two times as a reader compares them: clock times, with dates when the day changes too."""
        old_local, new_local = old.astimezone(self.zone), new.astimezone(self.zone)
        if old_local.date() == new_local.date():
            return f"{old_local:%H:%M}", f"{new_local:%H:%M}"
        return f"{old_local:%Y-%m-%d %H:%M}", f"{new_local:%Y-%m-%d %H:%M}"

    def clock(self, value: datetime, day_of: datetime) -> str:
        """A local clock time, with its date when it is not on the day of ``day_of``."""
        local = value.astimezone(self.zone)
        same_day = local.date() == day_of.astimezone(self.zone).date()
        return f"{local:%H:%M}" if same_day else f"{local:%Y-%m-%d %H:%M}"


def reorder_visits(db: Store, account: Account, visit_ids: list[str]) -> ReorderedVisits:
    """Give one day's visits the day's existing start times, earliest first, in the order named.

    Each visit keeps its duration; each move is a visit.patch, so it is versioned, in the history
    and in the sync feed, and the whole reorder is one transaction.
    """
    if len(set(visit_ids)) != len(visit_ids):
        raise BadRequestError("visit_ids: name each visit once.")
    with db.write() as tx:
        ctx = Context(tx, account, None, None)
        require_organizer(ctx)
        event = get_event(tx, account.event_id)
        zone = ZoneInfo(event.timezone)
        visits = [get_visit(tx, account.event_id, visit_id) for visit_id in visit_ids]
        days = sorted({v.starts_at.astimezone(zone).date().isoformat() for v in visits})
        if len(days) > 1:
            raise ReorderRefusedError(f"Only visits of one day swap times; these are on {', '.join(days)}.")
        slots = sorted(v.starts_at.astimezone(zone) for v in visits)
        for visit, starts in zip(visits, slots, strict=True):
            if starts == visit.starts_at:
                continue
            ends = starts + (visit.ends_at - visit.starts_at)
            fields = VisitFields(starts_at=starts, ends_at=ends)
            visit_patch(ctx, VisitPatchArgs(visit_id=visit.id, base_version=visit.version, fields=fields))
        reordered = [get_visit(tx, account.event_id, visit_id) for visit_id in visit_ids]
    return ReorderedVisits(visits=reordered)
