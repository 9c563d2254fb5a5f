"""Constrained aliases shared by every wire type, declared once so they also show up in OpenAPI."""

from datetime import datetime
from typing import Annotated

from msgspec import Meta


def full_match(body: str) -> str:
    """A pattern that matches a whole string and nothing more.

    msgspec and Litestar check patterns with ``re.search``, where ``$`` also matches before a
    trailing newline ("uuid\\n" would pass). The look-ahead closes that gap in Python and changes
    nothing in JSON Schema's ECMA-262 regexes, where ``$`` is already the end of the input.
    """
    return f"^(?:{body})$(?!\\n)"


SLUG_PATTERN = full_match(r"[A-Za-z0-9][A-Za-z0-9_-]{0,79}")
UUID_PATTERN = full_match(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
LANGUAGE_TAG_PATTERN = full_match(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*")
COUNTRY_CODE_PATTERN = full_match(r"[A-Z]{2}")
SHA256_PATTERN = full_match(r"[0-9a-f]{64}")

Latitude = Annotated[float, Meta(ge=-90.0, le=90.0, description="WGS84 latitude in decimal degrees")]
Longitude = Annotated[float, Meta(ge=-180.0, le=180.0, description="WGS84 longitude in decimal degrees")]
Stamp = Annotated[datetime, Meta(tz=True, description="RFC 3339 timestamp with an offset")]
Slug = Annotated[str, Meta(pattern=SLUG_PATTERN, description="Stable identifier: letters, digits, - and _")]
Uuid = Annotated[
    str,
    Meta(
        pattern=UUID_PATTERN,
        description="A UUID in its canonical 8-4-4-4-12 hex form",
    ),
]
# BCP 47, simplified: a 2-3 letter primary language and optional subtags ("en", "pt-BR", "zh-Hant-TW").
LanguageTag = Annotated[str, Meta(pattern=LANGUAGE_TAG_PATTERN, max_length=35, description="BCP 47 language tag")]
CountryCode = Annotated[str, Meta(pattern=COUNTRY_CODE_PATTERN, description="ISO 3166-1 alpha-2 country code")]
ShortText = Annotated[str, Meta(max_length=500)]
LongText = Annotated[str, Meta(max_length=20_000)]
# A text in several languages: language tag -> text.
Translations = dict[LanguageTag, LongText]
