"""Pull cursors: opaque to clients, a position in the server's change feed to the server."""

import base64
import binascii

import msgspec


class CursorError(ValueError):
    """A cursor this server did not issue."""


class Cursor(msgspec.Struct, array_like=True):
    """Format version, and the last change sequence number the client has seen."""

    v: int
    seq: int


def encode_cursor(seq: int) -> str:
    """An opaque, URL-safe cursor."""
    return base64.urlsafe_b64encode(msgspec.msgpack.encode(Cursor(1, seq))).decode().rstrip("=")


def decode_cursor(text: str | None) -> int:
    """The sequence number in a cursor; 0 for none (a full pull)."""
    if not text:
        return 0
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        cursor = msgspec.msgpack.decode(raw, type=Cursor)
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise CursorError("cursor is not one this server issued") from exc
    if cursor.v != 1 or not 0 <= cursor.seq < 2**63:
        raise CursorError("cursor is not one this server issued")
    return cursor.seq
