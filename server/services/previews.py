"""Downsized copies of photos for phones: upright, small, and carrying nothing of the original's metadata.

A photo straight from a phone is several megabytes and may carry where it was taken (GPS EXIF).
A preview is decoded with Pillow, turned upright by its EXIF orientation, shrunk to a width from
a fixed list, and re-encoded from bare pixels, so no EXIF, GPS or maker note survives. Each
(blob, width, format) is made once and kept by the blob store (on disk, or in the database): blobs never change, so neither do previews.
"""

import io
import threading
from typing import BinaryIO, Literal

import msgspec
from PIL import Image, ImageOps, UnidentifiedImageError

from server.errors import DomainError, InvalidQueryError, UnsupportedMediaTypeError
from server.storage.blob_store import BlobStore
from server.storage.blobs import BlobRow

# A fixed list keeps the cache bounded: at most this many previews per photo and format.
PREVIEW_WIDTHS = (120, 240, 320, 480, 640, 960, 1280, 1600)
# Pillow decodes these; HEIC only when a HEIF plugin is registered (otherwise 415, like PDFs).
PREVIEWABLE = frozenset({"image/jpeg", "image/png", "image/webp", "image/heic"})
# Decoded pixels a preview is made from at most (after JPEG's draft scaling): 4 bytes each as RGBA,
# so one render holds about 100 MB of pixels however small the file that declared them.
MAX_SOURCE_PIXELS = 25_000_000
# Pillow's own guard judges the size before draft scaling (refusing big JPEGs that would decode
# small) and only warns below twice its limit; the check above replaces it.
Image.MAX_IMAGE_PIXELS = None
# Renders at once, per process: each holds up to the pixels above, so memory stays bounded under load.
MAX_CONCURRENT_RENDERS = 2
RENDER_WAIT_S = 30.0
_renders = threading.BoundedSemaphore(MAX_CONCURRENT_RENDERS)
JPEG_QUALITY = 82
WEBP_QUALITY = 80
PreviewFormat = Literal["jpeg", "webp"]
_FORMATS: dict[PreviewFormat, tuple[str, str, str]] = {
    "jpeg": ("JPEG", "jpg", "image/jpeg"),
    "webp": ("WEBP", "webp", "image/webp"),
}


class NotPreviewableError(UnsupportedMediaTypeError):
    slug = "not-previewable"
    title = "This attachment has no preview"


class PreviewBusyError(DomainError):
    status = 503
    slug = "preview-busy"
    title = "The server is making other previews"


class Preview(msgspec.Struct, frozen=True):
    """A preview's bytes, media type and strong ETag."""

    body: bytes
    media_type: str
    etag: str


def check_width(width: int) -> int:
    """A width previews are made at, or 400."""
    if width not in PREVIEW_WIDTHS:
        raise InvalidQueryError(f"w: previews are {', '.join(map(str, PREVIEW_WIDTHS))} pixels wide, not {width}.")
    return width


def preview(files: BlobStore, blob: BlobRow, width: int, fmt: PreviewFormat) -> Preview:
    """The preview of a photo at this width, made on first request and kept by the blob store after."""
    check_width(width)
    pillow_format, extension, media_type = _FORMATS[fmt]
    etag = f"{blob.sha256}-w{width}.{extension}"
    if blob.media_type not in PREVIEWABLE:
        raise NotPreviewableError(f"A {blob.media_type} attachment has no preview; fetch it without ?w=.")
    body = files.read_preview(blob.sha256, width, extension)
    if body is None:
        if not _renders.acquire(timeout=RENDER_WAIT_S):
            raise PreviewBusyError("Too many previews are being made at once; try again in a moment.")
        try:
            with files.open_blob(blob.sha256) as source:
                body = render_preview(source, width, pillow_format)
        finally:
            _renders.release()
        files.save_preview(blob.sha256, width, extension, body)
    return Preview(body=body, media_type=media_type, etag=etag)


def render_preview(source: BinaryIO, width: int, pillow_format: str) -> bytes:
    """Encode an upright copy at most ``width`` pixels wide, from pixels alone (no metadata)."""
    try:
        with Image.open(source) as image:
            # JPEG decodes at 1/2, 1/4 or 1/8 scale when asked: a 12 MP photo becomes a preview several
            # times faster. Both sides are kept at least ``width``, whichever way the photo is turned.
            image.draft("RGB", (width, width))
            # Only the header is read so far: refuse what would decode to too many pixels before a
            # byte of them is allocated (a 700 KB PNG can declare 13,300 x 13,300: 2 GB decoded).
            if image.width * image.height > MAX_SOURCE_PIXELS:
                raise NotPreviewableError(
                    f"This image has {image.width} x {image.height} pixels; previews are made of images of"
                    f" at most {MAX_SOURCE_PIXELS // 1_000_000} megapixels. Fetch it without ?w=."
                )
            # In place: the default returns a copy even when nothing turns, doubling the peak.
            ImageOps.exif_transpose(image, in_place=True)
            upright = image
            icc_profile = upright.info.get("icc_profile")
            if upright.width > width:
                height = max(1, round(upright.height * width / upright.width))
                upright = upright.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
            pixels = _bare_pixels(upright, keep_alpha=pillow_format == "WEBP")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise NotPreviewableError(f"This attachment cannot be decoded as an image ({type(exc).__name__}).") from None
    out = io.BytesIO()
    options: dict[str, object] = {"quality": JPEG_QUALITY if pillow_format == "JPEG" else WEBP_QUALITY}
    if isinstance(icc_profile, bytes):
        options["icc_profile"] = icc_profile  # colours, not a privacy matter
    pixels.save(out, pillow_format, **options)
    return out.getvalue()


def _bare_pixels(image: Image.Image, *, keep_alpha: bool) -> Image.Image:
    # A new image from the pixels alone has an empty ``info``: no EXIF (and so no GPS), no XMP, no
    # comment can reach the encoder, whatever a Pillow version would otherwise carry over.
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La")
    if has_alpha and not keep_alpha:
        white = Image.new("RGB", image.size, (255, 255, 255))
        white.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        image = white
    elif has_alpha:
        image = image.convert("RGBA")
    elif image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    return Image.frombytes(image.mode, image.size, image.tobytes())
