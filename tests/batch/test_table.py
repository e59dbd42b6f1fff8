"""Reading OD tables and parsing departure times."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from batch.table import departure_times, parse_departure_time, read_od_table
from nareta.errors import InputError


@pytest.mark.parametrize(("value", "expected"), [
    ("2024-05-01T08:30:00", dt.datetime(2024, 5, 1, 8, 30)),
    ("2024-05-01 08:30", dt.datetime(2024, 5, 1, 8, 30)),
    ("2024-05-01T08:30:00+02:00",
     dt.datetime(2024, 5, 1, 8, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))),
    ("2024-05-01T06:30:00Z", dt.datetime(2024, 5, 1, 6, 30, tzinfo=dt.UTC)),
    (1714552200, dt.datetime(2024, 5, 1, 8, 30, tzinfo=dt.UTC)),
    (1714552200.0, dt.datetime(2024, 5, 1, 8, 30, tzinfo=dt.UTC)),
    ("1714552200", dt.datetime(2024, 5, 1, 8, 30, tzinfo=dt.UTC)),
    (pd.Timestamp("2024-05-01 08:30"), dt.datetime(2024, 5, 1, 8, 30)),
    (None, None), (float("nan"), None), ("", None), (pd.NaT, None),
])
def test_parse_departure_time(value, expected):
    assert parse_departure_time(value) == expected


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01T00:00", float("inf"), 1e300, True])
def test_parse_departure_time_rejects(value):
    with pytest.raises(ValueError):
        parse_departure_time(value)


def test_departure_times_default_and_invalid():
    default = dt.datetime(2024, 1, 1, 9)
    frame = pd.DataFrame({"departure_time": ["2024-05-01T08:30", None, "soon", np.nan]})
    times, invalid = departure_times(frame, default)
    assert times == [dt.datetime(2024, 5, 1, 8, 30), default, None, default]
    assert invalid.tolist() == [False, False, True, False]
    times, invalid = departure_times(frame.drop(columns="departure_time"), default)
    assert times == [default] * 4 and not invalid.any()


def test_missing_columns_named(tmp_path):
    path = tmp_path / "od.csv"
    pd.DataFrame({"origin_lon": [1.0], "origin_lat": [2.0], "dest_lon": [3.0]}).to_csv(path)
    with pytest.raises(InputError, match="missing column.*destination_lon, destination_lat"):
        read_od_table(path)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("od.parquet", b"not parquet at all", "cannot be read"),
    ("od.txt", b"origin_lon\n1", "unknown format"),
    ("missing.csv", None, "no such file"),
])
def test_unreadable_input(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_od_table(path)


def test_output_columns_in_input_refused(tmp_path):
    path = tmp_path / "od.csv"
    pd.DataFrame({c: [0.0] for c in ("origin_lon", "origin_lat", "destination_lon",
                                      "destination_lat", "status")}).to_csv(path, index=False)
    with pytest.raises(InputError, match="already has output column"):
        read_od_table(path)
