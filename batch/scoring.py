"""Scoring one partition of OD pairs with a :class:`~models.inference.predictor.Predictor`.

Pure pandas/numpy, no Dask: the Dask job, the one-process benchmark and the tests call the
same :func:`score_frame`. Rows are grouped by (departure-time bucket, origin) and each
group of up to ``origins_per_batch`` distinct origins is one :meth:`Predictor.eta_pairs`
call, i.e. one batched model run. A bad row gets a status and never raises.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from batch.table import coordinates, departure_times
from models.inference.predictor import Predictor
from nareta.errors import InputError, NoRouteError, NoSegmentError

OK = "ok"
INVALID_COORDINATES = "invalid_coordinates"  # NaN, infinite, not a number or out of range
INVALID_DEPARTURE_TIME = "invalid_departure_time"  # neither ISO-8601 nor epoch seconds
NO_SEGMENT = "no_segment"  # origin or destination beyond the snap limit
NO_ROUTE = "no_route"  # both snapped, but no route connects them
STATUSES = (OK, INVALID_COORDINATES, INVALID_DEPARTURE_TIME, NO_SEGMENT, NO_ROUTE)


def install_traffic(predictor: Predictor, traffic: str, *, expected_key: str | None = None):
    """Load the feed at ``traffic`` into ``predictor``; returns (snapshot, report)."""
    if not predictor.uses_traffic:
        raise InputError(f"--traffic {traffic}: the model ({predictor.model.name}) takes no "
                         "live traffic; use a model trained with a feed or 'live-scalar'")
    timezone = getattr(getattr(predictor.model, "config", None), "timezone", None)
    snapshot, report = predictor.traffic.load(predictor.graph, traffic, timezone=timezone)
    if expected_key is not None and snapshot.key != expected_key:
        raise InputError(f"--traffic {traffic}: the feed changed since the job was planned "
                         f"(snapshot {snapshot.key}, planned {expected_key})")
    predictor.set_traffic(snapshot)
    return snapshot, report


def run_groups(predictor: Predictor, times: list, rows: np.ndarray) -> np.ndarray:
    """``[len(rows)]`` int64 ids of the model run each row needs besides its origin: the
    departure-time bucket, or, for a model that takes live traffic, the run key (bucket +
    the traffic state of the departure's window), numbered in (bucket, state) order."""
    if not predictor.uses_traffic:
        bucket_of: dict[object, int] = {}
        out = np.empty(len(rows), dtype=np.int64)
        for position, row in enumerate(rows):
            key = times[row]
            if key not in bucket_of:
                bucket_of[key] = predictor.model.time_bucket(key)
            out[position] = bucket_of[key]
        return out
    key_of: dict[object, object] = {}
    keys = []
    for row in rows:
        moment = times[row]
        if moment not in key_of:
            key_of[moment] = predictor.run_key(moment)[0]
        keys.append(key_of[moment])
    distinct = sorted(set(keys), key=lambda k: (getattr(k, "bucket", k),
                                                getattr(k, "traffic_key", None) or ""))
    number = {key: index for index, key in enumerate(distinct)}
    return np.array([number[key] for key in keys], dtype=np.int64)


def score_frame(predictor: Predictor, frame: pd.DataFrame, *,
                default_departure_time: dt.datetime | None = None,
                origins_per_batch: int = 64) -> pd.DataFrame:
    """Return ``frame`` with ``eta_s``, ``distance_m`` (NaN unless ok) and ``status``; for a
    model that takes live traffic also ``traffic_as_of`` (ISO local time of the newest
    observation used, null where the row fell back to the historical model).

    The rows are answered with an empty run cache of their own
    (:meth:`Predictor.isolated`), so a partition's answers are the same bits whichever
    worker scores it and whatever it scored before."""
    predictor = predictor.isolated()
    count = len(frame)
    values, valid = coordinates(frame)  # [R, 4], [R]
    times, bad_time = departure_times(frame, default_departure_time)
    status = np.full(count, OK, dtype=object)
    status[~valid] = INVALID_COORDINATES
    status[valid & bad_time] = INVALID_DEPARTURE_TIME
    eta_s = np.full(count, np.nan)
    distance_m = np.full(count, np.nan)
    as_of = np.full(count, None, dtype=object)

    rows = np.flatnonzero(valid & ~bad_time)
    if rows.size:
        limit = predictor.max_snap_distance_m
        origin_snap = predictor.snapper.snap(values[rows, 0], values[rows, 1],
                                             max_distance_m=limit)
        destination_snap = predictor.snapper.snap(values[rows, 2], values[rows, 3],
                                                  max_distance_m=limit)
        snapped = origin_snap.found & destination_snap.found
        status[rows[~snapped]] = NO_SEGMENT
        origin_segment = origin_snap.segment[snapped]
        rows = rows[snapped]
        for chunk in _batches(predictor, rows, origin_segment, values, times,
                              origins_per_batch):
            _score_batch(predictor, chunk, values, times, eta_s, distance_m, status, as_of)

    result = frame.copy()
    result["eta_s"] = eta_s
    result["distance_m"] = distance_m
    result["status"] = pd.Series(status, index=frame.index, dtype="string")
    if predictor.uses_traffic:
        result["traffic_as_of"] = pd.Series(as_of, index=frame.index, dtype="string")
    return result


def _batches(predictor: Predictor, rows: np.ndarray, origin_segment: np.ndarray,
             values: np.ndarray, times: list, origins_per_batch: int):
    """Row groups sharing a model run key (:func:`run_groups`), each with at most
    ``origins_per_batch`` distinct origins, ordered so that rows of one origin are together."""
    if not len(rows):
        return
    buckets = run_groups(predictor, times, rows)
    # [R'] sort by bucket, then origin segment, then exact origin point.
    order = np.lexsort((values[rows, 1], values[rows, 0], origin_segment, buckets))
    rows, buckets = rows[order], buckets[order]
    origin = values[rows, :2]
    new_origin = np.ones(len(rows), dtype=bool)
    new_origin[1:] = (origin[1:] != origin[:-1]).any(axis=1) | (buckets[1:] != buckets[:-1])
    new_bucket = np.ones(len(rows), dtype=bool)
    new_bucket[1:] = buckets[1:] != buckets[:-1]
    # Distinct-origin counter that restarts at each bucket: chunk = counter // batch size.
    distinct = np.cumsum(new_origin)
    bucket_start = np.maximum.accumulate(np.where(new_bucket, distinct, 0))
    chunk = (distinct - bucket_start) // max(origins_per_batch, 1)
    boundary = np.flatnonzero(new_bucket | np.r_[True, chunk[1:] != chunk[:-1]])
    yield from np.split(rows, boundary[1:])


def _score_batch(predictor: Predictor, rows: np.ndarray, values: np.ndarray, times: list,
                 eta_s: np.ndarray, distance_m: np.ndarray, status: np.ndarray,
                 as_of: np.ndarray) -> None:
    origins = [(float(x), float(y)) for x, y in values[rows, :2]]
    destinations = [(float(x), float(y)) for x, y in values[rows, 2:]]
    # Every row of a batch shares one run key, so any of its times gives the same runs.
    try:
        result = predictor.eta_pairs(origins, destinations, times[rows[0]])
    except (NoSegmentError, NoRouteError):
        # Cannot happen after pre-snapping with the same snapper; score row by row anyway.
        for row, origin, destination in zip(rows, origins, destinations, strict=True):
            try:
                single = predictor.eta(origin, destination, times[row])
            except NoSegmentError:
                status[row] = NO_SEGMENT
            except NoRouteError:
                status[row] = NO_ROUTE
            else:
                eta_s[row], distance_m[row] = single.eta_s, single.distance_m
                as_of[row] = _as_of(single.traffic)
        return
    as_of[rows] = _as_of(result.traffic)
    eta_s[rows] = result.durations_s
    distance_m[rows] = result.distances_m
    status[rows[np.isnan(result.durations_s)]] = NO_ROUTE


def _as_of(use) -> str | None:
    if use is None or not use.live or use.as_of is None:
        return None
    return use.as_of.isoformat(timespec="seconds")
