"""Distances and walking estimates, with geopy doing the geodesy."""

import math

from geopy.distance import geodesic

from server.errors import InvalidQueryError

# People walk about 4.5 km/h in a city, and streets are rarely straight: the route is
# typically 1.3 times the straight line (a common detour factor for European city grids).
WALKING_SPEED_M_PER_MIN = 75.0
DETOUR_FACTOR = 1.3


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Geodesic distance in metres on the WGS84 ellipsoid."""
    return float(geodesic(a, b).meters)


def walking_estimate(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, int]:
    """Walking distance (metres, along streets, estimated) and whole minutes from a to b."""
    walk = distance_m(a, b) * DETOUR_FACTOR
    return round(walk, 1), math.ceil(walk / WALKING_SPEED_M_PER_MIN)


# A minibus or a tram through Turin averages about 20 km/h measured along the straight line between
# two places (traffic, stops and detours included); boarding, waiting and parking add about 10 min.
TRANSIT_SPEED_M_PER_MIN = 20_000 / 60
TRANSIT_OVERHEAD_MIN = 10


def transit_minutes(straight_m: float) -> int:
    """Whole minutes a minibus or public-transport ride over this straight-line distance takes, waiting included."""
    return math.ceil(straight_m / TRANSIT_SPEED_M_PER_MIN) + TRANSIT_OVERHEAD_MIN


def parse_point(text: str) -> tuple[float, float]:
    """Parse ``LAT,LON``; refuse anything that is not a point on the globe."""
    parts = text.split(",")
    if len(parts) != 2:
        raise InvalidQueryError(f"near must be 'LAT,LON' in decimal degrees, got {text!r}.")
    try:
        lat, lon = float(parts[0]), float(parts[1])
    except ValueError:
        raise InvalidQueryError(f"near must be two decimal numbers 'LAT,LON', got {text!r}.") from None
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise InvalidQueryError(f"near must be finite numbers, got {text!r}.")
    if not -90 <= lat <= 90:
        raise InvalidQueryError(f"near: latitude {lat} is outside -90..90.")
    if not -180 <= lon <= 180:
        raise InvalidQueryError(f"near: longitude {lon} is outside -180..180.")
    return lat, lon
