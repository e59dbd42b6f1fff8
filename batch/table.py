"""Reading an OD-pairs table and parsing its departure times.

The table follows the trips-table interface (DESIGN.md): ``origin_lon, origin_lat,
destination_lon, destination_lat``, optional ``departure_time`` (ISO-8601 local time of the
city, or epoch seconds: :mod:`nareta.timeparse`) and optional ``trip_id``; other columns
are carried through.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from nareta.errors import InputError
from nareta.timeparse import parse_departure_times

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


def departure_times(frame: pd.DataFrame, default: dt.datetime | None = None
                    ) -> tuple[list[dt.datetime | None], np.ndarray]:
    """Per row: the parsed departure time (``default`` where the row has none) and whether
    the row's value is invalid, by the one parser (:mod:`nareta.timeparse`)."""
    if DEPARTURE_COLUMN not in frame.columns:
        return [default] * len(frame), np.zeros(len(frame), dtype=bool)
    parsed = parse_departure_times(frame[DEPARTURE_COLUMN])
    times = [default if missing else time
             for time, missing in zip(parsed.times, parsed.missing, strict=True)]
    return times, parsed.invalid


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
