"""Photos and documents attached to notes: upload (whole or resumable), fetch, previews; the organizers' zip."""

import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio.to_thread
from litestar import Controller, Request, Response, get, head, put
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import InternalServerException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, Parameter
from litestar.response import Stream

from schemas.accounts import Account
from schemas.common import SHA256_PATTERN
from server.auth import same_event
from server.errors import PROBLEM_MEDIA_TYPE, BadRequestError, problem_response
from server.routes.bodies import BODY_OPT, OCTET_STREAM, BodySpec
from server.routes.common import (
    AUTH_ERRORS,
    CACHE_OPT,
    CONDITIONAL_OPT,
    EVENT_ERRORS,
    NO_STORE,
    READ_ERRORS,
    SECURITY,
    AppDatabase,
    problem_spec,
)
from server.routes.feedback import ORGANIZERS
from server.services.blobs import (
    RangeNotSatisfiableError,
    UploadInterruptedError,
    UploadOffsetError,
    check_size,
    find_blob,
    held_for,
    parse_content_range,
    receive_blob,
    upload_state,
)
from server.services.export import shared_export, zip_chunks
from server.services.previews import PREVIEW_WIDTHS, PreviewFormat, preview
from server.settings import Settings
from server.storage.blob_store import BlobStore
from server.storage.blobs import BlobRow

# Blobs never change: a client keeps what it fetched as long as it likes, but only for its own user.
IMMUTABLE = "private, max-age=31536000, immutable"
SHA256 = Parameter(pattern=SHA256_PATTERN, description="SHA-256 of the blob's bytes: 64 lowercase hex digits")
# Unchecked at run time, like AppDatabase (routes/common.py): Litestar cannot isinstance a Protocol.
if TYPE_CHECKING:
    AppBlobFiles = NamedDependency[BlobStore]
else:
    AppBlobFiles = NamedDependency[Any]
# One range; several (a comma) are served whole, as RFC 9110 allows. 18 digits keep int() cheap.
_RANGE = re.compile(r"^bytes=(?P<first>\d{0,18})-(?P<last>\d{0,18})\Z")
Sha256Path = Annotated[str, SHA256]
CONTENT_RANGE = HeaderParameter(
    name="Content-Range",
    description="bytes A-B/TOTAL: this body is bytes A to B of a resumable upload; A must be the Upload-Offset",
)
# Streamed to disk by receive_blob as it arrives, never decoded; the media type is sniffed from the bytes.
UPLOAD_BODY = BodySpec(
    bytes,
    (OCTET_STREAM,),
    description="The blob's bytes (any Content-Type is accepted: the server sniffs JPEG, PNG, WebP, HEIC or PDF)",
    streamed=True,
)

# Any role may upload and fetch what it can see (services/blobs.py): no 403 here but the export's.
UPLOAD_ERRORS: dict[int, ResponseSpec] = {
    **EVENT_ERRORS,
    200: ResponseSpec(
        BlobRow, description="The caller already held this blob; nothing was read or written", generate_examples=False
    ),
    308: ResponseSpec(
        None,
        description="Part stored, upload incomplete: continue from the Upload-Offset header",
        generate_examples=False,
    ),
    400: problem_spec("Malformed hash or Content-Range, or a body longer than its Content-Range"),
    409: problem_spec(
        "The part does not start at the upload's offset (given in Upload-Offset), or another request is appending to it"
    ),
    413: problem_spec("More bytes than a blob may hold (said by Content-Length or Content-Range before reading)"),
    507: problem_spec(
        "storage-quota-exceeded: the blob would pass the account's or the event's storage quota; nothing was kept"
    ),
    415: problem_spec("The bytes are not JPEG, PNG, WebP, HEIC or PDF"),
    422: problem_spec("blob-hash-mismatch: the bytes' SHA-256 is not the one in the path; nothing was kept"),
}
STATUS_RESPONSES: dict[int, ResponseSpec] = {
    **EVENT_ERRORS,
    400: problem_spec("Malformed hash"),
    200: ResponseSpec(
        None,
        description="Held: Content-Length, Content-Type and ETag as a GET would send them",
        generate_examples=False,
    ),
    # A HEAD answer has no body; documented as the problem a GET would carry, like every error.
    404: problem_spec(
        "Not held by the caller; the Upload-Offset header says how many bytes of its upload the server keeps"
    ),
}
FETCH_RESPONSES: dict[int, ResponseSpec] = {
    **READ_ERRORS,
    206: ResponseSpec(
        bytes,
        description="The requested byte range",
        media_type="application/octet-stream",
        generate_examples=False,
    ),
    304: ResponseSpec(
        None, description="If-None-Match names this blob (or preview): the client has it", generate_examples=False
    ),
    400: problem_spec("Malformed hash, or a preview width the server does not make"),
    404: problem_spec("No such blob among the notes the caller can see"),
    415: problem_spec(
        "not-previewable: a PDF, an image the server cannot decode, or one of more pixels than previews are made of"
    ),
    416: problem_spec("The Range starts past the end of the blob (Content-Range gives its size)"),
    503: problem_spec("preview-busy: every preview render slot stayed taken; try again in a moment"),
}
EXPORT_RESPONSES: dict[int, ResponseSpec] = {**AUTH_ERRORS, 400: problem_spec("No such visit in this event")}


def provide_blob_files(state: State) -> BlobStore:
    """The blob store of this application (its settings choose the data directory or the database)."""
    files: BlobStore = state.blobs
    return files


async def _body(request: Request[Any, Any, Any]) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            yield chunk
    except InternalServerException:
        # Litestar's word for a client that hung up mid-body; what arrived of a part is kept.
        raise UploadInterruptedError("The connection closed before the body was complete.") from None


def _blob_response(blob: BlobRow, status_code: int, location: str | None = None) -> Response[BlobRow]:
    headers = {"Upload-Offset": str(blob.size)}
    if location is not None:
        headers["Location"] = location
    return Response(content=blob, status_code=status_code, headers=headers)


def _incomplete(offset: int) -> Response[Any]:
    # Google's and tus's "resume incomplete": no Location, so no client takes it for a redirect.
    return Response(content=b"", status_code=308, headers={"Upload-Offset": str(offset)})


def _offset_problem(request: Request[Any, Any, Any], exc: UploadOffsetError) -> Response[Any]:
    return problem_response(exc.problem(request.url.path), {"Upload-Offset": str(exc.offset)})


def _etag_matches(header: str | None, etag: str) -> bool:
    if header is None:
        return False
    return header.strip() == "*" or f'"{etag}"' in {tag.strip().removeprefix("W/") for tag in header.split(",")}


def byte_range(header: str | None, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """The one range of a ``Range: bytes=...`` header, clamped to the blob (RFC 9110 §14.1.2).

    None means "send it all": no header, a malformed one, or several ranges (which a server may ignore).
    """
    match = _RANGE.match(header.strip()) if header is not None else None
    if match is None or not (match["first"] or match["last"]):
        return None
    if not match["first"]:  # bytes=-N: the last N bytes
        suffix = int(match["last"])
        return "unsatisfiable" if suffix == 0 else (max(0, size - suffix), size - 1)
    first = int(match["first"])
    last = int(match["last"]) if match["last"] else None
    if last is not None and last < first:
        return None  # invalid: ignored
    if first >= size:
        return "unsatisfiable"
    return first, size - 1 if last is None else min(last, size - 1)


def _accepts_webp(request: Request[Any, Any, Any]) -> bool:
    for part in request.headers.get("accept", "").split(","):
        media, _, params = part.strip().partition(";")
        if media.strip().lower() == "image/webp":
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


class BlobController(Controller):
    """Content-addressed photos and documents of notes, and the organizers' export of shared ones."""

    path = "/api/v1/events/{event_id:str}"
    guards = [same_event]
    tags = ["blobs"]
    dependencies = {"files": Provide(provide_blob_files, sync_to_thread=False)}

    @head(
        "/blobs/{sha256:str}",
        summary="Whether the server holds a blob, else how much of an upload it keeps",
        description="200 with Content-Length when held; 404 with Upload-Offset (0 when nothing) when not.",
        security=SECURITY,
        responses=STATUS_RESPONSES,
        sync_to_thread=True,
    )
    def blob_status(
        self,
        request: Request[Account, Any, Any],
        db: AppDatabase,
        files: AppBlobFiles,
        event_id: str,
        sha256: Sha256Path,
    ) -> Response[None]:
        state = upload_state(db, files, request.user, sha256)
        if state.blob is None:
            # Also when the server stores these bytes for another account: the same answer, nothing leaks.
            # The media type a GET's problem would have (documented so); a HEAD answer carries no body.
            headers = {"Upload-Offset": str(state.offset)}
            return Response(content=None, status_code=404, headers=headers, media_type=PROBLEM_MEDIA_TYPE)
        headers = {
            "Content-Length": str(state.blob.size),
            "Content-Type": state.blob.media_type,
            "ETag": f'"{sha256}"',
            "Accept-Ranges": "bytes",
            "Upload-Offset": str(state.blob.size),
        }
        return Response(content=None, status_code=200, headers=headers)

    @put(
        "/blobs/{sha256:str}",
        summary="Upload a blob whole, or one part of a resumable upload (Content-Range)",
        description=(
            "The body is the blob's bytes (any Content-Type). With `Content-Range: bytes A-B/TOTAL` it is one"
            " part: A must be the server's Upload-Offset; 308 until the last part, then 201."
        ),
        security=SECURITY,
        responses=UPLOAD_ERRORS,
        status_code=201,
        request_max_body_size=None,
        opt={BODY_OPT: UPLOAD_BODY},
    )
    async def upload_blob(
        self,
        request: Request[Account, Any, Any],
        state: State,
        files: AppBlobFiles,
        event_id: str,
        sha256: Sha256Path,
        content_range: Annotated[str | None, CONTENT_RANGE] = None,
    ) -> Response[BlobRow]:
        settings: Settings = state.settings
        db: AppDatabase = state.db
        held = await anyio.to_thread.run_sync(held_for, db, request.user, sha256)
        if held is not None:
            return _blob_response(held, 200)  # uploading what the account holds costs nothing
        # Bytes stored for another account are read and verified like any: uploading them is the proof.
        header = content_range
        part = parse_content_range(header) if header is not None else None
        declared = request.headers.get("content-length", "")
        if declared.isdigit():
            check_size(int(declared), settings.max_blob_bytes, "request's Content-Length")
            if part is not None and int(declared) > part.length:
                raise BadRequestError(f"Content-Length {declared} is longer than Content-Range {header!r}.")
        length = int(declared) if declared.isdigit() and part is None else None
        try:
            outcome = await receive_blob(db, files, request.user, sha256, _body(request), part, settings, length)
        except UploadOffsetError as exc:
            return _offset_problem(request, exc)
        if outcome.status == "incomplete":
            return _incomplete(outcome.offset)
        assert outcome.blob is not None
        if outcome.status == "held":
            return _blob_response(outcome.blob, 200)
        return _blob_response(outcome.blob, 201, location=request.url.path)

    @get(
        "/blobs/{sha256:str}",
        summary="A blob's bytes (byte ranges allowed), or a preview of a photo (?w=)",
        media_type="application/octet-stream",
        security=SECURITY,
        responses=FETCH_RESPONSES,
        sync_to_thread=True,
        opt={CONDITIONAL_OPT: True, CACHE_OPT: IMMUTABLE},
    )
    def fetch_blob(
        self,
        request: Request[Account, Any, Any],
        db: AppDatabase,
        files: AppBlobFiles,
        event_id: str,
        sha256: Sha256Path,
        w: int | None = Parameter(
            default=None,
            description=f"Preview width in pixels, one of {', '.join(map(str, PREVIEW_WIDTHS))}: an upright JPEG"
            " (WebP when Accept names image/webp) without any EXIF",
        ),
    ) -> Response[Any]:
        blob = find_blob(db, request.user, sha256)
        if w is not None:
            return self._preview(request, files, blob, w)
        etag = sha256
        headers = {"ETag": f'"{etag}"', "Cache-Control": IMMUTABLE, "Accept-Ranges": "bytes"}
        if _etag_matches(request.headers.get("if-none-match"), etag):
            return Response(content=b"", status_code=304, headers=headers)
        wanted: tuple[int, int] | Literal["unsatisfiable"] | None = None
        if_range = request.headers.get("if-range")
        if if_range is None or if_range.strip() == f'"{etag}"':
            wanted = byte_range(request.headers.get("range"), blob.size)
        if wanted == "unsatisfiable":
            problem = RangeNotSatisfiableError(f"The blob has {blob.size} bytes.").problem(request.url.path)
            return problem_response(problem, {"Content-Range": f"bytes */{blob.size}"})
        first, last = wanted or (0, blob.size - 1)
        # In the headers: Litestar would let the route's documented media type win over a Stream's own.
        headers["Content-Type"] = blob.media_type
        headers["Content-Length"] = str(last - first + 1)
        if wanted is None:
            return Stream(files.read_range(sha256, first, last), headers=headers)
        headers["Content-Range"] = f"bytes {first}-{last}/{blob.size}"
        return Stream(files.read_range(sha256, first, last), status_code=206, headers=headers)

    @staticmethod
    def _preview(request: Request[Account, Any, Any], files: BlobStore, blob: BlobRow, width: int) -> Response[bytes]:
        fmt: PreviewFormat = "webp" if _accepts_webp(request) else "jpeg"
        made = preview(files, blob, width, fmt)
        headers = {"ETag": f'"{made.etag}"', "Cache-Control": IMMUTABLE, "Vary": "Accept"}
        if _etag_matches(request.headers.get("if-none-match"), made.etag):
            return Response(content=b"", status_code=304, headers=headers)
        return Response(content=made.body, media_type=made.media_type, headers=headers)

    @get(
        "/export.zip",
        summary="Shared notes of a visit with their photos, as a zip with a CSV index (organizers)",
        media_type="application/zip",
        guards=ORGANIZERS,
        security=SECURITY,
        responses=EXPORT_RESPONSES,
        sync_to_thread=True,
        opt={CACHE_OPT: NO_STORE},
    )
    def export_zip(
        self,
        request: Request[Account, Any, Any],
        db: AppDatabase,
        files: AppBlobFiles,
        event_id: str,
        visit: str | None = Parameter(default=None, description="Only notes on this visit (all visits when absent)"),
    ) -> Stream:
        export = shared_export(db, files, request.user, visit)
        headers = {"Content-Disposition": f'attachment; filename="{export.filename}"', "Cache-Control": NO_STORE}
        return Stream(zip_chunks(files, export), media_type="application/zip", headers=headers)
