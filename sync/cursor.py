"""Pull cursors: opaque to clients, a position in the server's change feed to the server."""

import base64
import binascii

import msgspec


class CursorError(ValueError):
    """A cursor this server did not issue."""


class Cursor(msgspec.Struct, array_like=True):
    """Format version, the last change sequence number the client has seen, and — while a full
    pull is being paged through — the event's tombstone purge mark when that full pull began
    (-1 otherwise)."""

    v: int
    seq: int
    full_since_purge: int = -1

    @property
    def in_full_pull(self) -> bool:
        return self.full_since_purge >= 0


def encode_cursor(cursor: Cursor) -> str:
    """An opaque, URL-safe cursor."""
    return base64.urlsafe_b64encode(msgspec.msgpack.encode(cursor)).decode().rstrip("=")


def decode_cursor(text: str | None) -> Cursor | None:
    """The cursor a client sent; None for none (a full pull from the start)."""
    if not text:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        cursor = msgspec.msgpack.decode(raw, type=Cursor)
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise CursorError("cursor is not one this server issued") from exc
    if cursor.v != 1 or not 0 <= cursor.seq < 2**63 or not -1 <= cursor.full_since_purge < 2**63:
        raise CursorError("cursor is not one this server issued")
    return cursor
