"""The trip table: reading CSV / Parquet trip logs, validating them row by row, snapping
origins and destinations to the RoadGraph, and splitting by time and by area.

Schema (see DESIGN.md): ``origin_lon, origin_lat, destination_lon, destination_lat,
departure_time`` (ISO-8601 local time of the city, or epoch seconds; parsed by
:mod:`nareta.timeparse`, as every entry point does), ``duration_s`` for
training data, optional ``trip_id``, optional ``route`` (segment indices).

Bad rows are never dropped silently: every rejected row is counted under its reason in
:attr:`TripTable.rejected`, and a table with no usable row left is refused with the counts.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from nareta.errors import InputError
from nareta.timeparse import parse_departure_times, to_local_clock

COORDINATE_COLUMNS = ("origin_lon", "origin_lat", "destination_lon", "destination_lat")
REQUIRED_COLUMNS = (*COORDINATE_COLUMNS, "departure_time")
#: A trip longer than this is treated as a logging error, not a trip.
DEFAULT_MAX_DURATION_S = 6 * 3600.0
DEFAULT_MIN_DURATION_S = 1.0
DEFAULT_MAX_SNAP_DISTANCE_M = 200.0


class NoUsableTripsError(InputError):
    """Validation left no usable trip."""


@dataclass
class TripTable:
    """Validated trips (``frame``) and the count of rejected rows by reason.

    ``frame`` keeps the input columns and adds ``departure_local`` (naive local clock time),
    ``departure_s`` (seconds since 1970-01-01 of that clock, for ordering and splitting) and
    ``departure_hour`` (fractional hour of day); after :func:`snap_trips` also
    ``origin_segment, origin_twin, origin_fraction, origin_snap_m`` and the same for
    ``destination`` (``twin`` is the other direction of a two-way street, or -1).
    """

    frame: pd.DataFrame
    rejected: Counter = field(default_factory=Counter)
    total_rows: int = 0
    source: str = ""

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def has_routes(self) -> bool:
        return "route" in self.frame.columns

    def summary(self) -> str:
        lines = [f"{self.source or 'trips'}: {len(self.frame)} of {self.total_rows} rows usable"]
        for reason, count in sorted(self.rejected.items(), key=lambda item: -item[1]):
            lines.append(f"  rejected {count:>7}  {reason}")
        return "\n".join(lines)

    def subset(self, mask: np.ndarray) -> TripTable:
        return TripTable(
            self.frame.loc[np.asarray(mask)].reset_index(drop=True),
            Counter(self.rejected),
            self.total_rows,
            self.source,
        )


# --------------------------------------------------------------------------- reading
def read_trip_file(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a CSV or Parquet trip log without validating rows."""
    source = Path(path)
    if not source.is_file():
        raise InputError(f"trips {source}: no such file")
    suffix = source.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(source)
        if suffix in (".csv", ".gz", ".bz2"):
            return pd.read_csv(source, dtype={"trip_id": str, "departure_time": str})
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"trips {source}: cannot be read ({exc})") from exc
    raise InputError(f"trips {source}: unknown file type {suffix!r}; expected .csv or .parquet")


def read_trips(
    path: str | os.PathLike[str],
    *,
    require_duration: bool = True,
    min_duration_s: float = DEFAULT_MIN_DURATION_S,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    timezone: str | None = None,
) -> TripTable:
    """Read and validate a trip log (CSV or Parquet)."""
    frame = read_trip_file(path)
    table = validate_trips(
        frame,
        require_duration=require_duration,
        min_duration_s=min_duration_s,
        max_duration_s=max_duration_s,
        timezone=timezone,
    )
    table.source = str(path)
    return table


def local_departure_times(values: pd.Series, *, timezone: str | None = None) -> pd.Series:
    """Departure times parsed by the one parser (:mod:`nareta.timeparse`) as naive local
    clock times, ``NaT`` where missing or invalid. Epoch values and ISO strings with an
    offset are converted to ``timezone`` (UTC if none) and the zone dropped."""
    return _local_clock(parse_departure_times(values).times, values.index, timezone)


def _local_clock(times: list[dt.datetime | None], index: pd.Index,
                 timezone: str | None) -> pd.Series:
    converted: dict[dt.datetime, dt.datetime] = {}
    clock = []
    for time in times:
        if time is not None and time not in converted:
            converted[time] = to_local_clock(time, timezone)
        clock.append(None if time is None else converted[time])
    return pd.Series(pd.to_datetime(clock), index=index, dtype="datetime64[ns]")


def _parse_route(value) -> np.ndarray | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            items = json.loads(text) if text.startswith("[") else text.replace(",", " ").split()
            return np.asarray([int(item) for item in items], dtype=np.int64)
        except (ValueError, TypeError):
            return np.asarray([-1], dtype=np.int64)  # rejected as an invalid route
    return np.asarray(value, dtype=np.int64)


def validate_trips(
    frame: pd.DataFrame,
    *,
    require_duration: bool = True,
    min_duration_s: float = DEFAULT_MIN_DURATION_S,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    timezone: str | None = None,
) -> TripTable:
    """Check every row; keep the good ones and count the bad ones by reason.

    Raises
    ------
    InputError
        A required column is missing (then no row can be used).
    NoUsableTripsError
        No row passed validation.
    """
    required = REQUIRED_COLUMNS + (("duration_s",) if require_duration else ())
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise InputError(
            f"trips: missing columns {missing}; a trip table needs {list(required)} "
            f"(found {list(frame.columns)})"
        )
    total = len(frame)
    frame = frame.reset_index(drop=True).copy()
    rows = _Rejections(total)
    _check_coordinates(frame, rows)
    parsed = parse_departure_times(frame["departure_time"])
    rows.reject(parsed.missing, "missing departure_time")
    rows.reject(parsed.invalid, "invalid departure_time (ISO-8601 or epoch seconds, 1970..2100)")
    departure = _local_clock(parsed.times, frame.index, timezone)
    if "duration_s" in frame.columns:
        _check_durations(frame, rows, require_duration=require_duration,
                         min_duration_s=min_duration_s, max_duration_s=max_duration_s)
    if "route" in frame.columns:
        routes = [_parse_route(value) for value in frame["route"]]
        rows.reject(
            np.array([r is not None and len(r) and (r < 0).any() for r in routes], dtype=bool),
            "invalid route (not a list of segment indices)",
        )
        frame["route"] = routes

    keep = ~rows.bad
    clean = frame.loc[keep].reset_index(drop=True)
    local = departure[keep].reset_index(drop=True)
    clean["departure_local"] = local
    clean["departure_s"] = (local - pd.Timestamp("1970-01-01")).dt.total_seconds().to_numpy()
    clean["departure_hour"] = (
        local.dt.hour + local.dt.minute / 60.0 + local.dt.second / 3600.0
    ).to_numpy(float)
    table = TripTable(clean, rows.rejected, total)
    if not len(clean):
        raise NoUsableTripsError("trips: no usable row left\n" + table.summary())
    return table


class _Rejections:
    """Which rows are rejected, each counted once under the first reason that hit it."""

    def __init__(self, total: int) -> None:
        self.rejected: Counter = Counter()
        self.bad = np.zeros(total, dtype=bool)

    def reject(self, mask: np.ndarray, reason: str) -> None:
        new = np.asarray(mask, dtype=bool) & ~self.bad
        if new.any():
            self.rejected[reason] += int(new.sum())
            self.bad[new] = True


def _check_coordinates(frame: pd.DataFrame, rows: _Rejections) -> None:
    """Coordinates as floats (in ``frame``); rejects missing and out-of-range ones."""
    coordinates = {}
    for column in COORDINATE_COLUMNS:
        coordinates[column] = pd.to_numeric(frame[column], errors="coerce").to_numpy(float)
        frame[column] = coordinates[column]
    rows.reject(
        np.any([~np.isfinite(v) for v in coordinates.values()], axis=0),
        "missing or non-numeric coordinate",
    )
    with np.errstate(invalid="ignore"):
        out_of_range = (
            (np.abs(coordinates["origin_lon"]) > 180)
            | (np.abs(coordinates["origin_lat"]) > 90)
            | (np.abs(coordinates["destination_lon"]) > 180)
            | (np.abs(coordinates["destination_lat"]) > 90)
        )
    rows.reject(out_of_range, "coordinate out of range (|lon| > 180 or |lat| > 90)")


def _check_durations(frame: pd.DataFrame, rows: _Rejections, *, require_duration: bool,
                     min_duration_s: float, max_duration_s: float) -> None:
    """Durations as floats (in ``frame``); where required, rejects missing, negative, too
    short and absurd ones."""
    duration = pd.to_numeric(frame["duration_s"], errors="coerce").to_numpy(float)
    frame["duration_s"] = duration
    if not require_duration:
        return
    rows.reject(~np.isfinite(duration), "missing or non-numeric duration_s")
    with np.errstate(invalid="ignore"):
        rows.reject(duration < 0, "negative duration_s")
        rows.reject(duration < min_duration_s, f"duration_s below {min_duration_s:g} s")
        rows.reject(duration > max_duration_s, f"absurd duration_s (above {max_duration_s:g} s)")


# --------------------------------------------------------------------------- snapping
def snap_trips(
    table: TripTable,
    graph,
    *,
    max_snap_distance_m: float = DEFAULT_MAX_SNAP_DISTANCE_M,
) -> TripTable:
    """Snap origins and destinations to the nearest segment of ``graph``; rows whose origin
    or destination lies farther than ``max_snap_distance_m`` from any road are rejected,
    as are routes naming segments the graph does not have."""
    from data_pipeline.snap import Snapper

    snapper = Snapper(graph)
    frame = table.frame.copy()
    rejected = Counter(table.rejected)
    bad = np.zeros(len(frame), dtype=bool)
    for end in ("origin", "destination"):
        snaps = snapper.snap(
            frame[f"{end}_lon"].to_numpy(float),
            frame[f"{end}_lat"].to_numpy(float),
            max_distance_m=max_snap_distance_m,
        )
        far = ~snaps.found
        new = far & ~bad
        if new.any():
            rejected[f"{end} farther than {max_snap_distance_m:g} m from the road network"] += int(
                new.sum()
            )
        bad |= far
        frame[f"{end}_segment"] = snaps.segment
        frame[f"{end}_twin"] = snaps.twin
        frame[f"{end}_fraction"] = snaps.fraction
        frame[f"{end}_snap_m"] = snaps.distance_m
    if "route" in frame.columns:
        count = graph.num_segments
        outside = (
            np.array(
                [r is not None and len(r) > 0 and int(r.max()) >= count for r in frame["route"]],
                dtype=bool,
            )
            & ~bad
        )
        if outside.any():
            rejected[f"route names segments outside the graph ({count} segments)"] += int(
                outside.sum()
            )
        bad |= outside
    result = TripTable(
        frame.loc[~bad].reset_index(drop=True), rejected, table.total_rows, table.source
    )
    if not len(result):
        raise NoUsableTripsError("trips: no usable row left after snapping\n" + result.summary())
    return result


# --------------------------------------------------------------------------- splits
def split_by_time(table: TripTable, *, holdout_hours: float = 1.0) -> tuple[TripTable, TripTable]:
    """Train on everything before the last ``holdout_hours`` of departures, test on them."""
    departure = table.frame["departure_s"].to_numpy(float)
    cutoff = departure.max() - holdout_hours * 3600.0
    test = departure > cutoff
    return table.subset(~test), table.subset(test)


def zone_ids(lon: np.ndarray, lat: np.ndarray, *, zone_size_m: float) -> np.ndarray:
    """Square zones of ``zone_size_m`` on a local equirectangular projection, as int64 ids."""
    lat0 = np.radians(np.nanmean(lat))
    x = np.asarray(lon) * 111_320.0 * np.cos(lat0)
    y = np.asarray(lat) * 110_574.0
    column = np.floor(x / zone_size_m).astype(np.int64)
    row = np.floor(y / zone_size_m).astype(np.int64)
    return row * 1_000_003 + column


def split_by_area(
    table: TripTable,
    *,
    zone_size_m: float = 1000.0,
    holdout_share: float = 0.2,
    seed: int = 0,
) -> tuple[TripTable, TripTable]:
    """Hold out a random ``holdout_share`` of square zones: test trips start or end in a
    held-out zone, training trips touch none (trips are never in both)."""
    frame = table.frame
    lat_all = np.concatenate([frame["origin_lat"], frame["destination_lat"]])
    lon_all = np.concatenate([frame["origin_lon"], frame["destination_lon"]])
    zones = zone_ids(lon_all, lat_all, zone_size_m=zone_size_m)
    unique = np.unique(zones)
    rng = np.random.default_rng(seed)
    count = max(1, int(round(holdout_share * len(unique))))
    held = rng.choice(unique, size=min(count, len(unique)), replace=False)
    n = len(frame)
    touches = np.isin(zones[:n], held) | np.isin(zones[n:], held)
    return table.subset(~touches), table.subset(touches)
