"""Departure times: the one parser every entry point uses.

The HTTP API (``service.schemas``), batch scoring (``batch.table``), the trips reader
(``data_pipeline.trips``) and ``nareta eta`` all call :func:`parse_departure_time` (or
:func:`parse_departure_times` for a column), so a value is accepted or refused the same way
everywhere. The rules:

- ISO-8601 text (``datetime.fromisoformat``, ``Z`` allowed): without an offset it is the
  city's local clock time and stays naive; with an offset it is an instant (aware).
- A number, or text that is a number: epoch seconds, an instant (aware, UTC). There is no
  "large numbers are milliseconds" guess: a millisecond epoch is out of range and refused
  with a message that says so.
- ``datetime`` / ``pandas.Timestamp`` / ``numpy.datetime64`` values (a Parquet timestamp
  column) are taken as they are (naive = local).
- Every time must lie in [1970-01-01, 2100-01-01) (epoch seconds in [0, 4102444800)); an
  aware time is checked as an instant, a naive one as a clock reading.
- ``None``, NaN, NaT and blank text mean "not given": the caller decides whether that is
  allowed (batch rows and API bodies fall back to a default, a training trip is refused).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from nareta.errors import DepartureTimeError

#: Accepted range: [EARLIEST, LATEST) as a clock reading, [EPOCH_MIN_S, EPOCH_MAX_S) as epoch s.
EARLIEST = dt.datetime(1970, 1, 1)
LATEST = dt.datetime(2100, 1, 1)
EPOCH_MIN_S = 0.0
EPOCH_MAX_S = 4_102_444_800.0  # 2100-01-01T00:00:00Z
DEPARTURE_TIME_HELP = (
    "an ISO-8601 date-time (the city's local time when it has no offset, e.g. "
    "2024-05-01T08:30, or with one, e.g. 2024-05-01T08:30+02:00) or epoch seconds, from "
    "1970-01-01 up to 2100-01-01"
)


def parse_departure_time(value: object) -> dt.datetime | None:
    """One departure time -> ``datetime`` (naive = local clock, aware = an instant), or
    ``None`` when the value is missing (None, NaN, NaT, blank text).

    Raises
    ------
    DepartureTimeError
        The value is not a time, or lies outside 1970-01-01 .. 2100-01-01.
    """
    if value is None or _is_nat(value):
        return None
    if isinstance(value, dt.datetime):  # pandas.Timestamp is a datetime subclass
        moment = value.to_pydatetime() if hasattr(value, "to_pydatetime") else value
        return _in_range(moment, value)
    if isinstance(value, np.datetime64):
        import pandas as pd

        return _in_range(pd.Timestamp(value).to_pydatetime(), value)
    if isinstance(value, bool | np.bool_):
        raise DepartureTimeError(f"departure_time {value!r} is not a time; it must be "
                                 f"{DEPARTURE_TIME_HELP}")
    if isinstance(value, int | float | np.integer | np.floating):
        seconds = float(value)
        return None if math.isnan(seconds) else _from_epoch(seconds, value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            seconds = float(text)
        except ValueError:
            pass
        else:
            if math.isnan(seconds):
                raise DepartureTimeError(f"departure_time {value!r} is not a time; it must be "
                                         f"{DEPARTURE_TIME_HELP}")
            return _from_epoch(seconds, value)
        try:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise DepartureTimeError(f"departure_time {value!r} is not valid; it must be "
                                     f"{DEPARTURE_TIME_HELP}") from None
        return _in_range(moment, value)
    raise DepartureTimeError(f"departure_time of type {type(value).__name__} is not a time; "
                             f"it must be {DEPARTURE_TIME_HELP}")


def _is_nat(value: object) -> bool:
    # pandas.NaT and numpy NaT without importing pandas for the common cases.
    if isinstance(value, np.datetime64):
        return bool(np.isnat(value))
    return type(value).__name__ == "NaTType"


def _from_epoch(seconds: float, original: object) -> dt.datetime:
    if not (math.isfinite(seconds) and EPOCH_MIN_S <= seconds < EPOCH_MAX_S):
        looks_like_ms = math.isfinite(seconds) and EPOCH_MAX_S <= seconds < EPOCH_MAX_S * 1000
        hint = " (milliseconds? give seconds: divide by 1000)" if looks_like_ms else ""
        raise DepartureTimeError(f"departure_time {original!r} is out of range{hint}; it must "
                                 f"be {DEPARTURE_TIME_HELP}")
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)


def _in_range(moment: dt.datetime, original: object) -> dt.datetime:
    clock = moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment
    if not EARLIEST <= clock < LATEST:
        raise DepartureTimeError(f"departure_time {str(original)!r} is out of range; it must "
                                 f"be {DEPARTURE_TIME_HELP}")
    return moment


def to_local_clock(moment: dt.datetime, timezone: str | None = None) -> dt.datetime:
    """The naive local clock reading of ``moment``: an aware time is converted to
    ``timezone`` (an IANA name; UTC if ``None``) and its zone dropped; a naive one is
    already local."""
    if moment.tzinfo is None:
        return moment
    from zoneinfo import ZoneInfo

    return moment.astimezone(ZoneInfo(timezone) if timezone else dt.UTC).replace(tzinfo=None)


@dataclass
class ParsedTimes:
    """A parsed column: ``times[i]`` (``None`` where missing or invalid), ``missing[i]``,
    ``invalid[i]`` and, per distinct error message, how many rows had it."""

    times: list[dt.datetime | None]
    missing: np.ndarray
    invalid: np.ndarray
    errors: dict[str, int] = field(default_factory=dict)


def parse_departure_times(values: Iterable[object]) -> ParsedTimes:
    """:func:`parse_departure_time` over a column; each distinct value is parsed once."""
    import pandas as pd

    column = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    kind = pd.api.types.infer_dtype(column, skipna=True)
    if kind not in _FACTORIZABLE:
        return _parse_each(column.tolist())
    # one type throughout (no True that would equal 1): factorize by value, NaN/None -> -1
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    parsed: list[dt.datetime | None] = []
    failed: list[str | None] = []
    for value in uniques.tolist() if hasattr(uniques, "tolist") else list(uniques):
        try:
            parsed.append(parse_departure_time(value))
            failed.append(None)
        except DepartureTimeError as exc:
            parsed.append(None)
            failed.append(str(exc))
    parsed.append(None)  # code -1: missing
    failed.append(None)
    times = np.asarray(parsed, dtype=object)[codes].tolist()
    bad_unique = np.array([message is not None for message in failed])
    invalid = bad_unique[codes]
    missing = ~invalid & np.array([time is None for time in parsed])[codes]
    errors: dict[str, int] = {}
    for code, count in zip(*np.unique(codes[invalid], return_counts=True), strict=True):
        errors[failed[code]] = errors.get(failed[code], 0) + int(count)
    return ParsedTimes(times, missing, invalid, errors)


#: ``pandas.api.types.infer_dtype`` kinds whose values can be grouped by equality safely.
_FACTORIZABLE = frozenset({"string", "integer", "floating", "mixed-integer-float", "decimal",
                           "datetime", "datetime64", "date", "empty"})


def _parse_each(values: list[object]) -> ParsedTimes:
    """The per-value path for columns of mixed types (where ``True == 1``)."""
    cache: dict[object, dt.datetime | None | DepartureTimeError] = {}
    times: list[dt.datetime | None] = []
    missing = np.zeros(len(values), dtype=bool)
    invalid = np.zeros(len(values), dtype=bool)
    errors: dict[str, int] = {}
    for row, value in enumerate(values):
        key = _key(value)
        if key not in cache:
            try:
                cache[key] = parse_departure_time(value)
            except DepartureTimeError as exc:
                cache[key] = exc
        result = cache[key]
        if isinstance(result, DepartureTimeError):
            invalid[row] = True
            errors[str(result)] = errors.get(str(result), 0) + 1
            times.append(None)
        else:
            missing[row] = result is None
            times.append(result)
    return ParsedTimes(times, missing, invalid, errors)


def _key(value: object) -> object:
    # NaN != NaN would defeat the cache; unhashable values (lists) key by type and text.
    if isinstance(value, float) and math.isnan(value):
        return "<nan>"
    try:
        hash(value)
    except TypeError:
        return (type(value).__name__, str(value))
    return (type(value).__name__, value)
