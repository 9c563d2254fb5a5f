"""Property: any mutation whose arguments the schema decodes is answered (applied, conflict or a
clear rejection), never a 500 nor an internal error, and never holds up the mutation after it.

Arguments are drawn from the wire types themselves (msgspec's own description of each Struct:
patterns, bounds, literals, optional fields), with ids biased towards records that exist in the
seeded event so that edits, merges and permission checks are reached, not only "unknown id".
Times range over every offset and the edges of the calendar, where UTC conversion overflows.
"""

import contextlib
import itertools
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.common import SLUG_PATTERN, UUID_PATTERN
from sync.mutations import MUTATION_TYPES
from tests.conftest import Seeded
from tests.sync_helpers import PROBLEM, Client, note_put, push, rows, uid

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40) | st.sampled_from(
    ["Ciao", "ملاحظة", "Nguyễn Thị Hoa", "김민준", "Europe/Rome", ""]
)
OFFSETS = st.one_of(
    st.just(timedelta(0)),
    st.sampled_from([timedelta(hours=1), timedelta(hours=-12), timedelta(hours=14), timedelta(hours=7)]),
    st.timedeltas(min_value=timedelta(hours=-23, minutes=59), max_value=timedelta(hours=23, minutes=59)).map(
        lambda d: timedelta(minutes=d // timedelta(minutes=1))
    ),
)
STAMPS = st.builds(
    lambda moment, offset: moment.replace(tzinfo=timezone(offset)).isoformat(),
    st.one_of(
        st.datetimes(min_value=datetime(2025, 12, 1), max_value=datetime(2025, 12, 20)),
        st.datetimes(),  # year 1 to 9999: an offset can push the UTC instant off the calendar
        st.sampled_from([datetime(1, 1, 1, 0, 30), datetime(9999, 12, 31, 23, 0)]),  # and does, here
    ),
    OFFSETS,
)


def real_ids(seeded: Seeded) -> dict[str, list[str]]:
    return {
        table: [row[0] for row in rows(seeded, f"SELECT id FROM {table} ORDER BY id LIMIT 12")]
        for table in ("visits", "sites", "groups", "questions")
    }


def strategy(info: Any, ids: list[str]) -> st.SearchStrategy[Any]:
    """Builtin values (as on the wire) that decode to this msgspec type."""
    if isinstance(info, mi.Metadata):
        return strategy(info.type, ids)
    if isinstance(info, mi.StrType):
        if info.pattern == SLUG_PATTERN:
            return st.sampled_from(ids) | st.from_regex(info.pattern, fullmatch=True)
        if info.pattern == UUID_PATTERN:
            return st.sampled_from([uid(n) for n in (1, 2, 3)]) | st.uuids().map(str)
        if info.pattern is not None:
            return st.from_regex(info.pattern, fullmatch=True).filter(lambda s: len(s) <= (info.max_length or 64))
        low, limit = info.min_length or 0, min(info.max_length or 40, 40)
        return TEXT.filter(lambda s: low <= len(s) <= limit) | st.just("x" * (info.max_length or 100))
    if isinstance(info, mi.BoolType):
        return st.booleans()
    if isinstance(info, mi.IntType):
        low = info.ge if info.ge is not None else -(2**53)
        high = info.le if info.le is not None else 2**53
        return st.integers(low, min(high, low + 3)) | st.integers(low, high)
    if isinstance(info, mi.FloatType):
        return st.floats(info.ge, info.le, allow_nan=False, allow_infinity=False)
    if isinstance(info, mi.DateTimeType):
        return STAMPS
    if isinstance(info, mi.NoneType):
        return st.none()
    if isinstance(info, mi.LiteralType):
        return st.sampled_from(info.values)
    if isinstance(info, mi.UnionType):
        return st.one_of([strategy(t, ids) for t in info.types])  # UNSET is stripped by type_info
    if isinstance(info, mi.ListType):
        low = info.min_length or 0
        return st.lists(strategy(info.item_type, ids), min_size=low, max_size=max(low, min(info.max_length or 4, 4)))
    if isinstance(info, mi.DictType):
        return st.dictionaries(
            strategy(info.key_type, ids), strategy(info.value_type, ids), max_size=min(info.max_length or 3, 3)
        )
    if isinstance(info, mi.StructType):
        required = {f.encode_name: strategy(f.type, ids) for f in info.fields if f.required}
        optional = {f.encode_name: strategy(f.type, ids) for f in info.fields if not f.required}
        return st.fixed_dictionaries(required, optional=optional)
    if isinstance(info, mi.AnyType):
        return TEXT | st.integers() | st.none()
    raise NotImplementedError(info)


CLIENTS = itertools.count(2**64)
ROLES = {
    "note.put": ["participant", "organizer", "host"],
    "note.delete": ["participant", "organizer"],
    "feedback.put": ["participant", "host"],
    "site.patch": ["host", "organizer", "participant"],
    "visit.put": ["organizer", "participant"],
    "visit.patch": ["organizer", "host"],
}


@pytest.mark.parametrize("mutation_type", sorted(MUTATION_TYPES))
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_decodable_mutation_is_answered_without_an_error_of_the_server_and_the_next_one_applies(
    client: Client, seeded: Seeded, mutation_type: str, data: st.DataObject
) -> None:
    found = real_ids(seeded)
    ids = [i for table in found.values() for i in table]
    args_type = MUTATION_TYPES[mutation_type]
    args = data.draw(strategy(mi.type_info(args_type), ids), label="args")
    if "starts_at" in args and data.draw(st.booleans(), label="ordered"):
        # Reach past "a visit must end after it starts": an end some minutes after the start.
        starts = datetime.fromisoformat(args["starts_at"])
        with contextlib.suppress(OverflowError):
            args["ends_at"] = (starts + timedelta(minutes=data.draw(st.integers(1, 600)))).isoformat()
    msgspec.convert(args, args_type)  # the schema decodes it: this is the population of the property
    role = data.draw(st.sampled_from(ROLES[mutation_type]), label="role")
    headers = seeded.headers(role, group="G1") if role == "participant" else seeded.headers(role)
    client_id = str(uuid.UUID(int=next(CLIENTS)))  # a new install each time: its first mutation is id 1
    follower = note_put(2, str(uuid.uuid5(uuid.NAMESPACE_URL, client_id)), body="after it")
    if role == "host":
        follower["args"] = {**follower["args"], "visit_id": None, "site_id": found["sites"][0]}
    mutation: dict[str, Any] = {"id": 1, "type": mutation_type, "args": args}
    # Any device clock, however wrong (or not a time at all): display only, never a reason to refuse.
    client_time = data.draw(st.none() | STAMPS | TEXT, label="client_time")
    if client_time is not None:
        mutation["client_time"] = client_time
    result = push(client, headers, [mutation, follower], client_id=client_id)
    first, second = result["results"]
    assert first["status"] in ("applied", "conflict", "rejected"), first
    if first["status"] == "rejected":
        assert first["error"]["type"] != PROBLEM + "internal-error", first
        assert first["error"]["status"] < 500, first
        assert "client-time" not in first["error"]["type"], first  # the device clock is never the reason
    assert second["status"] == "applied", second
    assert result["last_mutation_id"] == 2
