"""RFC 9457 problem details: the one error shape of the API."""

import msgspec


class Problem(msgspec.Struct, omit_defaults=True):
    """An RFC 9457 problem document, served as ``application/problem+json``."""

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    # Extension members used by some problems (RFC 9457 §3.2).
    errors: list[str] | None = None
    current_version: int | None = None
    supported: list[int] | None = None
    # Quoted by a client reporting a server-side failure; the same id is in the server's log.
    correlation_id: str | None = None
