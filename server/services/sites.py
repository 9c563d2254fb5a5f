"""Sites as the read API serves them: one language, optional distance, GeoJSON."""

import re
from typing import Any

from schemas.common import LANGUAGE_TAG_PATTERN
from schemas.places import Site, SiteView
from server.errors import InvalidQueryError
from server.geo import distance_m

_LANGUAGE_TAG = re.compile(LANGUAGE_TAG_PATTERN)
FALLBACK_LANGUAGE = "en"


def parse_language(value: str | None) -> str | None:
    """Validate a ``lang`` query value as a BCP 47 tag; None when absent."""
    if value is None or value == "":
        return None
    if len(value) > 35 or not _LANGUAGE_TAG.match(value):
        raise InvalidQueryError(f"lang must be a BCP 47 language tag such as 'fr' or 'pt-BR', got {value!r}.")
    return value


def choose_language(requested: str | None, available: list[str]) -> str | None:
    """The best available language: the tag, then the tag cut short, then a sibling, then English, then any."""
    if not available:
        return None
    by_lower = {tag.lower(): tag for tag in available}
    if requested:
        subtags = requested.lower().split("-")
        # RFC 4647 §3.4 lookup: zh-Hant-TW tries zh-Hant before zh, so a Traditional reader never gets
        # Simplified text just because it came first.
        for end in range(len(subtags), 0, -1):
            candidate = "-".join(subtags[:end])
            if candidate in by_lower:
                return by_lower[candidate]
        primary = subtags[0]
        for tag in available:
            if tag.lower().split("-")[0] == primary:
                return tag
    return by_lower.get(FALLBACK_LANGUAGE, sorted(available)[0])


def site_view(site: Site, lang: str | None, near: tuple[float, float] | None = None) -> SiteView:
    """A site with its description in the chosen language."""
    fields = {
        f: getattr(site, f) for f in SiteView.__struct_fields__ if f in site.__struct_fields__ and f != "description"
    }
    chosen = choose_language(lang, list(site.description))
    return SiteView(
        **fields,
        description=site.description.get(chosen, "") if chosen else "",
        description_lang=chosen or "",
        languages=sorted(site.description),
        distance_m=round(distance_m(near, (site.lat, site.lon)), 1) if near else None,
    )


def site_views(
    sites: list[Site], lang: str | None, theme: str | None, near: tuple[float, float] | None
) -> list[SiteView]:
    """Sites filtered by theme (case-insensitive, whole theme) and sorted by distance when ``near`` is given."""
    if theme:
        wanted = theme.casefold()
        sites = [s for s in sites if any(t.casefold() == wanted for t in s.themes)]
    views = [site_view(s, lang, near) for s in sites]
    if near:
        views.sort(key=lambda v: (v.distance_m or 0.0, v.id))
    return views


def feature_collection(views: list[SiteView]) -> dict[str, Any]:
    """An RFC 7946 FeatureCollection: positions are [longitude, latitude], WGS84."""
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": v.id,
                "geometry": {"type": "Point", "coordinates": [v.lon, v.lat]},
                "properties": {
                    "name": v.name,
                    "kind": v.kind,
                    "address": v.address,
                    "description": v.description,
                    "description_lang": v.description_lang,
                    "themes": v.themes,
                    "coord_source": v.coord_source,
                    "website": v.website,
                },
            }
            for v in views
        ],
    }
