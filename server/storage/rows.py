"""Turning rows into Structs and Structs into rows: wire fields match columns, JSON where nested."""

from typing import Any, TypeVar

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

_json_decode = msgspec.json.Decoder().decode
_json_encode = msgspec.json.Encoder().encode


def encode_json(value: Any) -> str:
    """Compact JSON text for a column."""
    return _json_encode(value).decode()


def row_dict(table: str, row: Row) -> dict[str, Any]:
    """A row as a dict, with its JSON columns decoded."""
    json_cols = JSON_COLUMNS[table]
    return {k: (_json_decode(row[k]) if k in json_cols and row[k] is not None else row[k]) for k in row.keys()}  # noqa: SIM118 (Row iterates values)


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
    """An INSERT statement with named parameters for these columns."""
    verb = "INSERT OR REPLACE" if upsert else "INSERT"
    return f"{verb} INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"
