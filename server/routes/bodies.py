"""The one way a request body becomes a value: its media type, its bytes, its structure.

Every body-taking handler declares a ``BodySpec`` in its ``opt`` and reads the body through
``decode_body`` (typed bodies arrive as the ``payload`` dependency): so every body meets the same
limits and gets the same problems. Bytes that are not JSON (or MessagePack), invalid UTF-8 and
nesting deeper than the decoder's recursion limit are a 400 ``bad-request``; a value of the wrong
shape is a 400 ``validation-error``; an undeclared media type is a 415. Nothing is written before.
The same spec is what OpenAPI publishes (``server/openapi.py``), so the document cannot drift from it.
"""

from typing import Any

import msgspec
from litestar import Request

from server.errors import BadRequestError, DomainError, UnsupportedMediaTypeError

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
MSGPACK = "application/msgpack"
OCTET_STREAM = "application/octet-stream"
# Names MessagePack went by before RFC-less registration settled on application/msgpack.
MSGPACK_ALIASES = frozenset({MSGPACK, "application/x-msgpack", "application/vnd.msgpack"})
BODY_OPT = "body"


class MalformedBodyError(BadRequestError):
    """Bytes that are not the declared format (the type clients already know: ``bad-request``)."""


class BodyValidationError(DomainError):
    # The same type Litestar gives query and path values that do not validate: one shape for both.
    slug = "validation-error"
    title = "The request did not validate"


class BodySpec(msgspec.Struct, frozen=True):
    """What a handler accepts as its body, for decoding and for the OpenAPI document.

    ``raw`` bodies are decoded to JSON values only (a merge patch, where null and absent differ, is
    read by its own rules); ``schema`` is then only what OpenAPI shows. ``streamed`` bodies (blob
    bytes) are read by their handler as a stream and are never decoded here.
    """

    schema: Any
    media_types: tuple[str, ...] = (JSON,)
    description: str = ""
    raw: bool = False
    streamed: bool = False


def media_type_of(content_type: str) -> str:
    """``application/json`` of ``Application/JSON; charset=utf-8``."""
    return content_type.split(";", 1)[0].strip().lower()


def decode_body(body: bytes, content_type: str, spec: BodySpec, what: str = "The body") -> Any:
    """The body as ``spec`` says, or a 4xx domain error; a missing Content-Type means the first media type."""
    media = media_type_of(content_type) or spec.media_types[0]
    decoder: Any
    if media in MSGPACK_ALIASES and MSGPACK in spec.media_types:
        decoder, name = msgspec.msgpack.decode, "MessagePack"
    elif media in spec.media_types and media not in MSGPACK_ALIASES:
        decoder, name = msgspec.json.decode, "JSON"
    else:
        raise UnsupportedMediaTypeError(f"Send {' or '.join(spec.media_types)}, not {media!r}.")
    if not body:
        raise MalformedBodyError(f"{what} is empty; this request needs {name}.")
    try:
        if name == "JSON":
            # RFC 8259 §8.1: JSON is UTF-8. msgspec checks only the strings it keeps, so bad bytes in an
            # ignored field would pass unseen; a body that is not UTF-8 is refused whole.
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as bad:
                # Where the body stops being UTF-8, as a byte of the body: the decoder's own position
                # counts within one string, which no client can map back to what it sent.
                at = f"byte {bad.start} of the body (0x{body[bad.start]:02x})"
                raise MalformedBodyError(f"{what} is not valid UTF-8: {at}.") from None
        return decoder(body) if spec.raw else decoder(body, type=spec.schema)
    except msgspec.ValidationError as exc:
        raise BodyValidationError(f"{what} does not match its schema: {exc}.", errors=[str(exc)]) from None
    # msgspec raises UnicodeDecodeError for invalid UTF-8 in a JSON string and RecursionError past
    # the interpreter's recursion limit (about 1,000 levels), neither of which is a DecodeError.
    except UnicodeDecodeError:
        raise MalformedBodyError(f"{what} has a string that is not valid UTF-8.") from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise MalformedBodyError(f"{what} is not valid {name}: {exc}.") from None


def body_spec(request: Request[Any, Any, Any]) -> BodySpec:
    """The spec the request's handler declares."""
    spec = request.route_handler.opt.get(BODY_OPT)
    assert isinstance(spec, BodySpec), f"{request.route_handler} takes a payload but declares no BodySpec"
    return spec


async def provide_payload(request: Request[Any, Any, Any]) -> Any:
    """The decoded body of a handler that takes ``payload`` (Litestar's size limit applies to the read)."""
    spec = body_spec(request)
    return decode_body(await request.body(), request.headers.get("content-type", ""), spec)
