"""The one departure-time parser: what it accepts, what it refuses and what it says."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from nareta.errors import DepartureTimeError, InputError
from nareta.timeparse import (
    parse_departure_time,
    parse_departure_times,
    to_local_clock,
)

UTC_0830 = dt.datetime(2024, 5, 1, 8, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(("value", "expected"), [
    ("2024-05-01T08:30:00", dt.datetime(2024, 5, 1, 8, 30)),
    ("2024-05-01 08:30", dt.datetime(2024, 5, 1, 8, 30)),
    ("  2024-05-01T08:30  ", dt.datetime(2024, 5, 1, 8, 30)),
    ("2024-05-01T08:30:00+02:00",
     dt.datetime(2024, 5, 1, 8, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))),
    ("2024-05-01T08:30:00Z", UTC_0830),
    (1714552200, UTC_0830), (1714552200.0, UTC_0830), ("1714552200", UTC_0830),
    (np.int64(1714552200), UTC_0830), (np.float32(0), dt.datetime(1970, 1, 1, tzinfo=dt.UTC)),
    (pd.Timestamp("2024-05-01 08:30"), dt.datetime(2024, 5, 1, 8, 30)),
    (np.datetime64("2024-05-01T08:30"), dt.datetime(2024, 5, 1, 8, 30)),
    (dt.datetime(2099, 12, 31, 23, 59), dt.datetime(2099, 12, 31, 23, 59)),
    (None, None), (float("nan"), None), ("", None), ("   ", None), (pd.NaT, None),
    (np.datetime64("NaT"), None),
])
def test_accepted(value, expected):
    assert parse_departure_time(value) == expected


@pytest.mark.parametrize(("value", "says"), [
    ("yesterday", "is not valid"), ("2024-13-01T00:00", "is not valid"),
    ("May 1 2024", "is not valid"), ("2024/05/01 08:30", "is not valid"),
    (float("inf"), "out of range"), ("inf", "out of range"), ("nan", "not a time"),
    (1e300, "out of range"), (-5, "out of range"), (4_102_444_800, "out of range"),
    ("9999-01-01", "out of range"), ("1969-12-31T23:59", "out of range"),
    ("1970-01-01T00:30+01:00", "out of range"),  # 1969-12-31T23:30Z as an instant
    (dt.datetime(2100, 1, 1), "out of range"),
    (True, "not a time"), ([2024], "not a time"), ({"t": 1}, "not a time"),
])
def test_refused_with_what_is_allowed(value, says):
    with pytest.raises(DepartureTimeError, match=says) as caught:
        parse_departure_time(value)
    message = str(caught.value)
    assert message.startswith("departure_time") and "ISO-8601" in message
    assert "1970-01-01" in message and "2100-01-01" in message
    assert isinstance(caught.value, InputError) and isinstance(caught.value, ValueError)


def test_milliseconds_are_refused_not_guessed():
    with pytest.raises(DepartureTimeError, match="milliseconds"):
        parse_departure_time(1714552200000)
    with pytest.raises(DepartureTimeError, match="milliseconds"):
        parse_departure_time("1714552200000")


def test_column_parses_each_distinct_value_once_and_counts_errors():
    parsed = parse_departure_times(["2024-05-01T08:30", None, "soon", np.nan, "soon",
                                    1714552200, [1]])
    assert parsed.times[0] == dt.datetime(2024, 5, 1, 8, 30)
    assert parsed.times[5] == UTC_0830
    assert parsed.missing.tolist() == [False, True, False, True, False, False, False]
    assert parsed.invalid.tolist() == [False, False, True, False, True, False, True]
    assert sorted(parsed.errors.values()) == [1, 2]


def test_local_clock():
    assert to_local_clock(UTC_0830) == dt.datetime(2024, 5, 1, 8, 30)
    assert to_local_clock(UTC_0830, "America/New_York") == dt.datetime(2024, 5, 1, 4, 30)
    naive = dt.datetime(2024, 5, 1, 8, 30)
    assert to_local_clock(naive, "America/New_York") == naive


@pytest.mark.parametrize("column", [
    pd.Series(["2024-05-01T08:30", None, "soon", "soon", "1714552200", ""]),  # text
    pd.Series(["2024-05-01T08:30", None, "soon", "soon", "1714552200", ""], dtype="string"),
])
def test_typed_columns_take_the_same_rules(column):
    parsed = parse_departure_times(column)
    assert parsed.times[0] == dt.datetime(2024, 5, 1, 8, 30) and parsed.times[4] == UTC_0830
    assert parsed.missing.tolist() == [False, True, False, False, False, True]
    assert parsed.invalid.tolist() == [False, False, True, True, False, False]
    assert list(parsed.errors.values()) == [2]


def test_numeric_and_datetime_columns():
    numbers = parse_departure_times(pd.Series([1714552200.0, np.nan, 1714552200000.0, -1.0]))
    assert numbers.times[0] == UTC_0830
    assert numbers.missing.tolist() == [False, True, False, False]
    assert numbers.invalid.tolist() == [False, False, True, True]
    stamps = parse_departure_times(pd.Series(pd.to_datetime(["2024-05-01 08:30", None,
                                                             "2150-01-01 00:00"])))
    assert stamps.times[0] == dt.datetime(2024, 5, 1, 8, 30)
    assert stamps.missing.tolist() == [False, True, False]
    assert stamps.invalid.tolist() == [False, False, True]
    # a bool among numbers is not the number 1
    mixed = parse_departure_times([True, 1])
    assert mixed.invalid.tolist() == [True, False]
