"""Google's encoded polyline algorithm (what OSRM's ``polyline`` / ``polyline6`` return).

Points are given and returned as ``(lon, lat)``; the encoding stores latitude first, as
Google and OSRM do. Precision 5 is ``polyline``, precision 6 is ``polyline6``.
"""

from __future__ import annotations

from collections.abc import Iterable


def _encode_value(value: int, out: list[str]) -> None:
    value = ~(value << 1) if value < 0 else value << 1
    while value >= 0x20:
        out.append(chr((0x20 | (value & 0x1F)) + 63))
        value >>= 5
    out.append(chr(value + 63))


def encode(points: Iterable[tuple[float, float]], precision: int = 5) -> str:
    """Encode ``(lon, lat)`` points."""
    factor = 10**precision
    out: list[str] = []
    previous_lat = previous_lon = 0
    for lon, lat in points:
        lat_i, lon_i = round(lat * factor), round(lon * factor)
        _encode_value(lat_i - previous_lat, out)
        _encode_value(lon_i - previous_lon, out)
        previous_lat, previous_lon = lat_i, lon_i
    return "".join(out)


def decode(text: str, precision: int = 5) -> list[tuple[float, float]]:
    """Decode to ``(lon, lat)`` points; ValueError on a malformed string."""
    factor = 10**precision
    values: list[int] = []
    shift = result = 0
    for char in text:
        byte = ord(char) - 63
        if not 0 <= byte < 64:
            raise ValueError(f"character {char!r} cannot occur in an encoded polyline")
        result |= (byte & 0x1F) << shift
        shift += 5
        if byte < 0x20:
            values.append(~(result >> 1) if result & 1 else result >> 1)
            shift = result = 0
    if shift or len(values) % 2:
        raise ValueError("the encoded polyline is truncated")
    points = []
    lat = lon = 0
    for index in range(0, len(values), 2):
        lat += values[index]
        lon += values[index + 1]
        points.append((lon / factor, lat / factor))
    return points
