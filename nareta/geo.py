"""Distances on the globe (one place for the Earth radius and the formula)."""

from __future__ import annotations

import numpy as np

EARTH_RADIUS_M = 6_371_009.0  # osmnx's value


def haversine_m(lon1, lat1, lon2, lat2):
    """Great-circle distance in metres (arrays broadcast), as ``osmnx.distance.great_circle``."""
    lon1, lat1, lon2, lat2 = (np.radians(np.asarray(v, dtype=np.float64))
                              for v in (lon1, lat1, lon2, lat2))
    h = (np.sin((lat2 - lat1) / 2.0) ** 2
         + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2.0) ** 2)
    return 2.0 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
