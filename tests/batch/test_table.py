"""Reading OD tables and their departure times (the parser: tests/nareta/test_timeparse)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from batch.table import departure_times, read_od_table
from nareta.errors import InputError


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
