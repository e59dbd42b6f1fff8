"""Parsing of OSM tag values into numbers, with the conventions real extracts use."""

from __future__ import annotations

import math
import re

MPH_TO_KPH = 1.609344
_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(mph|km/h|kmh|kph|knots)?\s*$", re.IGNORECASE)
#: Implicit zone limits ("DE:urban", "US:...") by their suffix.
_ZONE_SPEEDS_KPH = {
    "urban": 50.0,
    "rural": 90.0,
    "motorway": 130.0,
    "trunk": 100.0,
    "living_street": 7.0,
    "zone30": 30.0,
    "zone20": 20.0,
    "zone:30": 30.0,
}
#: "none" means no limit; driving still has a practical ceiling.
UNLIMITED_KPH = 130.0
WALK_KPH = 7.0


def parse_maxspeed_kph(value: str | None) -> float | None:
    """Parse an OSM ``maxspeed`` value to km/h; ``None`` when absent or not a speed.

    Handles plain km/h (``"50"``), units (``"25 mph"``, ``"50 km/h"``, ``"10 knots"``),
    ``"none"`` (no limit: 130), ``"walk"`` (7), zone values (``"DE:urban"``) and lists
    (``"40;50"``, ``"40|50"``: the mean, as osmnx does). ``"signals"``/``"variable"``
    give ``None`` (impute).
    """
    if value is None:
        return None
    text = value.strip().lower()
    if not text:
        return None
    parts = [part for part in re.split(r"[;|,]", text) if part.strip()]
    if len(parts) > 1:
        speeds = [parse_maxspeed_kph(part) for part in parts]
        known = [speed for speed in speeds if speed is not None]
        return sum(known) / len(known) if known else None
    if text == "none":
        return UNLIMITED_KPH
    if text == "walk":
        return WALK_KPH
    if ":" in text:
        zone = text.split(":", 1)[1]
        return _ZONE_SPEEDS_KPH.get(zone)
    match = _NUMBER.match(text)
    if not match:
        return None
    speed = float(match.group(1))
    unit = (match.group(2) or "").lower()
    if unit == "mph":
        speed *= MPH_TO_KPH
    elif unit == "knots":
        speed *= 1.852
    if not 0 < speed <= 300 or math.isnan(speed):
        return None
    return speed


def parse_lanes(value: str | None) -> float | None:
    """Parse an OSM ``lanes`` value; lists give their minimum (the narrowest point)."""
    if value is None:
        return None
    numbers = []
    for part in re.split(r"[;|,]", value):
        try:
            lanes = float(part.strip())
        except ValueError:
            continue
        if 0 < lanes <= 20:
            numbers.append(lanes)
    return min(numbers) if numbers else None


def parse_oneway(tags: dict[str, str]) -> int:
    """1 = forward only, -1 = against the digitised direction only, 0 = both ways.

    Motorways and roundabouts are one-way unless tagged otherwise (osmnx's convention);
    ``reversible``/``alternating`` are treated as two-way.
    """
    value = tags.get("oneway", "").strip().lower()
    if value in ("yes", "true", "1"):
        return 1
    if value in ("-1", "reverse"):
        return -1
    if value in ("no", "false", "0", "reversible", "alternating"):
        return 0
    if tags.get("highway") == "motorway" or tags.get("junction") in ("roundabout", "circular"):
        return 1
    return 0


def is_yes(value: str | None) -> bool:
    """True for tag values that mean "present" (``yes``, ``viaduct``, ``building_passage``...)."""
    return value is not None and value.strip().lower() not in ("", "no", "false", "0")
