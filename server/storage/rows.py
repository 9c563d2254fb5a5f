"""Turning rows into Structs and Structs into rows: wire fields match columns, JSON where nested."""

from collections.abc import Iterable
from typing import Any, TypeVar, cast

import msgspec

from server.storage.unit import Row

T = TypeVar("T")

# Columns that hold JSON, per table.
JSON_COLUMNS: dict[str, frozenset[str]] = {
    "sites": frozenset({"description", "themes", "opening_hours", "sources", "conflicts"}),
    "visits": frozenset({"group_ids", "notes", "conflicts"}),
    "questions": frozenset({"texts", "choices"}),
    "notes": frozenset({"tags", "conflicts", "attachments"}),
    "feedback": frozenset({"answers", "conflicts"}),
    "events": frozenset(),
    "groups": frozenset(),
}

# Columns that hold a flag, per table: PostgreSQL's boolean takes no integer, so writes pass bools.
BOOL_COLUMNS: dict[str, frozenset[str]] = {
    "visits": frozenset({"feedback_closed"}),
    "notes": frozenset({"share_with_organizers", "deleted", "clock_skewed"}),
    "feedback": frozenset({"clock_skewed"}),
    "sites": frozenset(),
    "questions": frozenset(),
    "events": frozenset(),
    "groups": frozenset(),
}

_json_decode = msgspec.json.Decoder().decode
_json_encode = msgspec.json.Encoder().encode


def encode_json(value: Any) -> str:
    """Compact JSON text for a column."""
    return _json_encode(value).decode()


def column_value(table: str, column: str, value: Any) -> Any:
    """A value as its column stores it: JSON columns as JSON text, flags as bools."""
    if column in JSON_COLUMNS[table]:
        return encode_json(value)
    if column in BOOL_COLUMNS[table] and value is not None:
        return bool(value)
    return value


def row_dict(table: str, row: Row) -> dict[str, Any]:
    """A row as a dict, with its JSON columns decoded."""
    values = cast(Iterable[Any], row)  # a row iterates over its values, as a tuple does
    data = dict(zip(row.keys(), values, strict=True))
    for name in JSON_COLUMNS[table]:
        value = data.get(name)
        if value is not None:
            data[name] = _json_decode(value)
    return data


def to_struct(table: str, row: Row, type_: type[T]) -> T:
    """A row as the Struct of the same shape; extra columns are ignored."""
    return msgspec.convert(row_dict(table, row), type_, strict=False)


def to_row(table: str, value: msgspec.Struct, **extra: Any) -> dict[str, Any]:
    """A Struct as column values, JSON-encoding nested fields."""
    json_cols = JSON_COLUMNS[table]
    data: dict[str, Any] = msgspec.to_builtins(value)
    data.update(extra)
    return {k: (encode_json(v) if k in json_cols else v) for k, v in data.items()}


def insert_sql(table: str, columns: list[str], *, upsert: bool = False) -> str:
    """An INSERT statement with a `?` parameter for each of these columns, in their order.

    `upsert`: on a conflict of the primary key (`id`, or `event_id, id`), the new values replace the row's.
    """
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    if not upsert:
        return sql
    key = [c for c in ("event_id", "id") if c in columns and (c == "id" or table != "events")]
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    return f"{sql} ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
