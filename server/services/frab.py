"""Being written."""

from typing import Any


def itinerary_ics(*a: Any) -> bytes:
    raise NotImplementedError


def schedule_xml(*a: Any) -> bytes:
    raise NotImplementedError
