"""Reading an OD-pairs table and parsing its departure times.

The table follows the trips-table interface (DESIGN.md): ``origin_lon, origin_lat,
destination_lon, destination_lat``, optional ``departure_time`` (ISO-8601 local time of the
city, or epoch seconds) and optional ``trip_id``; other columns are carried through.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pandas as pd

from nareta.errors import InputError

COORDINATE_COLUMNS = ("origin_lon", "origin_lat", "destination_lon", "destination_lat")
DEPARTURE_COLUMN = "departure_time"
#: Columns that scoring adds; an input must not already have them.
OUTPUT_COLUMNS = ("eta_s", "distance_m", "status", "input_row")

_PARQUET_SUFFIXES = (".parquet", ".pq")
_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst")


def read_od_table(path: str | Path) -> pd.DataFrame:
    """Read OD pairs from Parquet (a file or a directory of files) or CSV and check the
    columns; values are validated per row later (bad rows get a status, not an error)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"input {path}: no such file or directory")
    name = path.name.lower()
    try:
        if path.is_dir() or name.endswith(_PARQUET_SUFFIXES):
            frame = pd.read_parquet(path)
        elif name.endswith(_CSV_SUFFIXES):
            frame = pd.read_csv(path)
        else:
            raise InputError(f"input {path}: unknown format; expected a .parquet or .csv file")
    except InputError:
        raise
    except Exception as exc:  # pyarrow / pandas raise many types for unreadable files
        raise InputError(f"input {path}: cannot be read ({type(exc).__name__}: {exc})") from exc
    missing = [column for column in COORDINATE_COLUMNS if column not in frame.columns]
    if missing:
        raise InputError(
            f"input {path}: missing column(s) {', '.join(missing)}; an OD table needs "
            f"{', '.join(COORDINATE_COLUMNS)} and may have {DEPARTURE_COLUMN}, trip_id"
        )
    clashing = [column for column in OUTPUT_COLUMNS if column in frame.columns]
    if clashing:
        raise InputError(f"input {path}: already has output column(s) {', '.join(clashing)}; "
                         "rename or drop them")
    return frame.reset_index(drop=True)


def parse_departure_time(value) -> dt.datetime | None:
    """One departure time: ISO-8601 text (local time of the city, or with an offset) or
    epoch seconds (an instant: returned as an aware UTC datetime). ``None``/NaN/empty means
    "not given". Raises ValueError when the value is neither."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else pd.Timestamp(value).to_pydatetime()
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{value!r} is not a time")
    if isinstance(value, (int, float, np.integer, np.floating)):
        seconds = float(value)
        if math.isnan(seconds):
            return None
        return _from_epoch(seconds)
    text = str(value).strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        return dt.datetime.fromisoformat(text)
    if math.isnan(seconds):
        return None
    return _from_epoch(seconds)


def _from_epoch(seconds: float) -> dt.datetime:
    if not math.isfinite(seconds):
        raise ValueError(f"{seconds} is not a finite number of seconds")
    try:
        return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"{seconds} seconds is out of range") from exc


def departure_times(frame: pd.DataFrame, default: dt.datetime | None = None
                    ) -> tuple[list[dt.datetime | None], np.ndarray]:
    """Per row: the parsed departure time (``default`` where the row has none) and whether
    the row's value is invalid. Distinct values are parsed once."""
    if DEPARTURE_COLUMN not in frame.columns:
        return [default] * len(frame), np.zeros(len(frame), dtype=bool)
    column = frame[DEPARTURE_COLUMN]
    parsed: dict[object, dt.datetime | None] = {}
    invalid_values: set[object] = set()
    values = column.tolist()
    for value in dict.fromkeys(_hashable(v) for v in values):
        try:
            parsed[value] = parse_departure_time(value)
        except (ValueError, TypeError, OverflowError):
            invalid_values.add(value)
    times: list[dt.datetime | None] = []
    invalid = np.zeros(len(values), dtype=bool)
    for row, value in enumerate(values):
        key = _hashable(value)
        if key in invalid_values:
            invalid[row] = True
            times.append(None)
        else:
            time = parsed[key]
            times.append(default if time is None else time)
    return times, invalid


def _hashable(value):
    # NaN != NaN would defeat the dict; every missing value maps to None.
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    try:
        hash(value)
    except TypeError:
        return str(value)
    return value


def coordinates(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``[R, 4]`` float64 coordinates (NaN where a value is not a number) and the mask of
    rows whose four values are finite and within WGS84 ranges."""
    values = np.stack(
        [pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
         for c in COORDINATE_COLUMNS], axis=1)  # [R, 4]
    with np.errstate(invalid="ignore"):
        valid = (np.isfinite(values).all(axis=1)
                 & (np.abs(values[:, [0, 2]]) <= 180).all(axis=1)
                 & (np.abs(values[:, [1, 3]]) <= 90).all(axis=1))
    return values, valid
