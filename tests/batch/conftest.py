"""OD tables on the bundled city with one bad row of each kind at a known trip id."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

#: trip_id -> the status its row must get
BAD_ROWS = {
    "nan-origin": "invalid_coordinates",
    "inf-destination": "invalid_coordinates",
    "lat-out-of-range": "invalid_coordinates",
    "lon-out-of-range": "invalid_coordinates",
    "text-coordinate": "invalid_coordinates",
    "bad-departure": "invalid_departure_time",
    "far-origin": "no_segment",
    "far-destination": "no_segment",
}


def make_od_frame(graph, *, count: int = 300, distinct_origins: int = 40,
                  seed: int = 0) -> pd.DataFrame:
    """Points on or near roads (within ~15 m), origins drawn from a small pool so they repeat,
    departure times as ISO text and epoch seconds, and the rows of BAD_ROWS first."""
    rng = np.random.default_rng(seed)
    lon, lat = graph["path_lon"], graph["path_lat"]
    pool = rng.integers(0, len(lon), distinct_origins)
    origin = rng.choice(pool, count)
    destination = rng.integers(0, len(lon), count)
    jitter = rng.normal(0, 1e-4, (count, 2))
    frame = pd.DataFrame({
        "trip_id": [f"trip-{i}" for i in range(count)],
        "origin_lon": lon[origin] + jitter[:, 0],
        "origin_lat": lat[origin],
        "destination_lon": lon[destination],
        "destination_lat": lat[destination] + jitter[:, 1],
        "departure_time": np.where(np.arange(count) % 2 == 0, "2024-05-01T08:30:00",
                                   "1714552200"),
    })
    frame["origin_lon"] = frame["origin_lon"].astype(object)
    updates = {
        "nan-origin": ("origin_lon", np.nan),
        "inf-destination": ("destination_lon", np.inf),
        "lat-out-of-range": ("destination_lat", 95.0),
        "lon-out-of-range": ("origin_lon", -200.0),
        "text-coordinate": ("origin_lon", "west"),
        "bad-departure": ("departure_time", "yesterday at noon"),
        "far-origin": ("origin_lon", -75.0),
        "far-destination": ("destination_lat", 39.6),
    }
    for row, (trip_id, (column, value)) in enumerate(updates.items()):
        frame.loc[row, "trip_id"] = trip_id
        frame.loc[row, column] = value
    return frame


@pytest.fixture(scope="session")
def od_csv(tmp_path_factory, bundled_graph):
    """300 OD pairs as CSV (the text coordinate survives only in CSV)."""
    path = tmp_path_factory.mktemp("od") / "od.csv"
    make_od_frame(bundled_graph).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def od_parquet(tmp_path_factory, bundled_graph):
    """The same pairs as Parquet, minus the text coordinate row (Parquet columns are typed)."""
    frame = make_od_frame(bundled_graph)
    frame = frame[frame["trip_id"] != "text-coordinate"].reset_index(drop=True)
    frame["origin_lon"] = frame["origin_lon"].astype(float)
    path = tmp_path_factory.mktemp("od") / "od.parquet"
    frame.to_parquet(path, index=False)
    return path
