"""Sync protocol v1: push offline mutations, pull changes. JSON by default, MessagePack on request."""

from collections import Counter
from functools import partial
from typing import Any

import anyio
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import ValidationException
from litestar.params import Parameter

from schemas.accounts import Account
from schemas.common import UUID_PATTERN
from schemas.sync import SUPPORTED_PROTOCOLS, PullPage, PushRequest, PushResponse
from server.auth import same_event
from server.errors import BadRequestError, PayloadTooLargeError, UnsupportedProtocolError, handle_http_exception
from server.observability import OTHER, Metrics, closed_label
from server.representation import accepts_gzip, represent, serve
from server.routes.bodies import BODY_OPT, JSON, MSGPACK, BodySpec, BodyValidationError, decode_body
from server.routes.common import (
    CACHE_OPT,
    CONDITIONAL_OPT,
    NO_STORE,
    READ_ERRORS,
    SECURITY,
    AppDatabase,
    errors,
    problem_spec,
)
from server.services.pull import pull
from server.services.push import push
from server.settings import Settings
from server.storage.unit import Store
from sync.mutations import MUTATION_TYPES

PULL_ERRORS = {
    **READ_ERRORS,
    400: problem_spec("Invalid cursor, limit or client id, or an unsupported protocol version"),
    410: problem_spec("The cursor is older than purged deletions: pull again from an empty cursor"),
}
PUSH_ERRORS = {
    **errors(401, 404),
    400: problem_spec("Malformed body, or an unsupported protocol version"),
    413: problem_spec("More bytes or mutations than the server accepts in one push"),
    415: problem_spec("Body neither JSON nor MessagePack"),
}


class _Envelope(msgspec.Struct):
    protocol: Any = None


def _check_protocol(protocol: Any) -> None:
    if isinstance(protocol, bool) or protocol not in SUPPORTED_PROTOCOLS:
        speaks = ", ".join(map(str, SUPPORTED_PROTOCOLS))
        # Said in the wire's terms (JSON), never as a Python value: clients are written in any language.
        asked = "names no protocol" if protocol is None else f"asked for {msgspec.json.encode(protocol).decode()}"
        raise UnsupportedProtocolError(
            f'This server speaks sync protocol {speaks}; the request {asked}. Send "protocol": 1.',
            supported=list(SUPPORTED_PROTOCOLS),
        )


async def _read_body(request: Request[Any, Any, Any], limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"A push may carry at most {limit} bytes; this one declares {declared}.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"A push may carry at most {limit} bytes; split the batch.")
        chunks.append(chunk)
    return b"".join(chunks)


PUSH_BODY = BodySpec(PushRequest, (JSON, MSGPACK), description="A batch of offline mutations, in id order")
# The protocol is read first, so that a client of a newer protocol is told so rather than which field failed.
_ENVELOPE_BODY = BodySpec(_Envelope, PUSH_BODY.media_types)


def _decode(body: bytes, content_type: str) -> PushRequest:
    try:
        try:
            batch: PushRequest = decode_body(body, content_type, PUSH_BODY, "The push body")
        except BodyValidationError as exc:
            # Only a body that does not fit is read again, for its protocol alone: a well-formed push is decoded once.
            _check_protocol(decode_body(body, content_type, _ENVELOPE_BODY, "The push body").protocol)
            raise exc from None
    except BodyValidationError as exc:
        # docs/sync-protocol.md names this bad-request, and deployed field clients read it so.
        raise BadRequestError(exc.detail) from None
    _check_protocol(batch.protocol)
    return batch


def _wants_msgpack(request: Request[Any, Any, Any]) -> bool:
    return MSGPACK in request.headers.get("accept", "")


# Sync answers are made for one client and never reused: gzip's fastest level. On a 3 MB pull page it
# takes half the time of level 6 for a body about a quarter larger (bench/RESULTS.md, "Pull").
SYNC_GZIP_LEVEL = 1


def _respond(request: Request[Any, Any, Any], value: Any) -> Response[Any]:
    # Compressed only for a client that asked.
    gzip_wanted = accepts_gzip(request)
    if _wants_msgpack(request):
        body, media_type = msgspec.msgpack.encode(value), MSGPACK
    else:
        body, media_type = msgspec.json.encode(value), "application/json"
    return serve(request, represent(body, media_type, compress=gzip_wanted, level=SYNC_GZIP_LEVEL), NO_STORE)


class SyncController(Controller):
    """Push and pull for offline field apps."""

    path = "/api/v1/events/{event_id:str}/sync"
    guards = [same_event]
    tags = ["sync"]
    # One 400 type for whatever a sync client must fix in its request (docs §3.2, §5): a query
    # parameter that does not validate is `bad-request` like a cursor the server never issued.
    exception_handlers = {ValidationException: partial(handle_http_exception, validation_slug="bad-request")}

    @post(
        "/push",
        summary="Upload offline mutations; each is processed exactly once",
        security=SECURITY,
        responses=PUSH_ERRORS,
        status_code=200,
        # Read here, against the settings' limit, as it streams in (see _read_body).
        request_max_body_size=None,
        opt={BODY_OPT: PUSH_BODY},
    )
    async def push_mutations(
        self, request: Request[Account, Any, Any], state: State, event_id: str
    ) -> Response[PushResponse]:
        settings: Settings = state.settings
        body = await _read_body(request, settings.max_push_bytes)
        batch = _decode(body, request.headers.get("content-type", ""))
        if len(batch.mutations) > settings.max_push_mutations:
            raise PayloadTooLargeError(
                f"A push may carry at most {settings.max_push_mutations} mutations; this one has {len(batch.mutations)}."
            )
        db: Store = state.db
        request.state.client_id = batch.client_id  # for the access log
        result = await anyio.to_thread.run_sync(push, db, request.user, batch)
        metrics: Metrics = state.metrics
        # The type is the client's text: only known mutation types become a label value. Counted per
        # (type, status) of the batch, not per mutation: one increment for a batch of 500 new notes.
        types = {m.id: m.type for m in batch.mutations}
        for (kind, status), count in Counter((types.get(r.id), r.status) for r in result.results).items():
            label = OTHER if kind is None else closed_label(kind, MUTATION_TYPES)
            metrics.mutations.labels(label, status).inc(count)
        return _respond(request, result)

    @get(
        "/pull",
        summary="Changes since a cursor, paginated",
        security=SECURITY,
        responses=PULL_ERRORS,
        sync_to_thread=True,
        opt={CONDITIONAL_OPT: True, CACHE_OPT: NO_STORE},
    )
    def pull_changes(
        self,
        request: Request[Account, Any, Any],
        db: AppDatabase,
        state: State,
        event_id: str,
        cursor: str | None = Parameter(default=None, max_length=200, description="Opaque cursor from the last pull"),
        limit: int | None = Parameter(default=None, ge=1, description="Page size; the server caps it"),
        client_id: str | None = Parameter(default=None, pattern=UUID_PATTERN, description="This install's id"),
        protocol: int = Parameter(default=1, description="Sync protocol version"),
    ) -> Response[PullPage]:  # the published shape; what is sent is a PullResponse
        _check_protocol(protocol)
        settings: Settings = state.settings
        page = min(limit or settings.pull_default_limit, settings.pull_max_limit)
        request.state.client_id = client_id
        encoding = "msgpack" if _wants_msgpack(request) else "json"
        result = pull(db, request.user, cursor, page, client_id, encoding=encoding, cache=state.change_cache)
        response = _respond(request, result)
        metrics: Metrics = state.metrics
        metrics.pull_changes.observe(len(result.changes))
        metrics.pull_bytes.observe(len(response.content) if isinstance(response.content, bytes) else 0)
        return response
