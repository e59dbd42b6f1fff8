"""Live traffic state for the models: what the feed says about each segment at a departure.

A :class:`TrafficSnapshot` holds a mapped feed (:class:`data_pipeline.traffic.Observations`);
:meth:`TrafficSnapshot.state_at` gives the per-segment features a model sees for a trip
departing at local time ``t``, using only windows that *ended* at or before ``t`` (no peeking
at the future):

==================  ===========================================================================
feature             meaning
==================  ===========================================================================
log_ratio           log(observed speed / free-flow speed) of the newest window within max age
observed            1 where the segment itself has such a window
age                 minutes since that window ended / max age (1 where none)
smoothed_log_ratio  neighbours' log ratio propagated ``hops`` turns away (where not observed:
                    the mean over observed segments within reach; else the city index)
smoothed            1 where observed or reached by the propagation
trend               log ratio now minus 15 min earlier (the state's drift; 0 where unknown)
city_index          median log ratio over every observed segment (city-wide congestion)
==================  ===========================================================================

:class:`RunKey` is what a model run depends on besides its origin: the departure-time
bucket and the traffic state's key (snapshot content hash + departure window), so caches
keyed by it never serve an answer computed from another snapshot.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from data_pipeline.traffic import Observations

LIVE_FEATURES = ("log_ratio", "observed", "age", "smoothed_log_ratio", "smoothed", "trend",
                 "city_index")
DEFAULT_MAX_AGE_S = 1800.0
TREND_S = 900.0
_LOG_RATIO_RANGE = (-3.0, 1.0)


def no_traffic_features(num_segments: int) -> np.ndarray:
    """``[E, F]`` features of segments the feed says nothing about (all zero, age 1): the
    starting point of every state, and what a model sees with no feed at all."""
    features = np.zeros((num_segments, len(LIVE_FEATURES)), dtype=np.float32)
    features[:, LIVE_FEATURES.index("age")] = 1.0
    return features


@dataclass(frozen=True, eq=False)
class TrafficState:
    """Per-segment live features ``[E, len(LIVE_FEATURES)]`` at one departure window."""

    key: str
    as_of_s: float  # local seconds at which the newest window used ended
    features: np.ndarray  # float32 [E, F]
    observed_share: float

    @property
    def prior_log_factor(self) -> np.ndarray:
        """``[E]`` log(time / free-flow time) the feed alone implies: the segment's own
        ratio, else its neighbours', else the city index (minus, since time ∝ 1/speed)."""
        return -self.features[:, LIVE_FEATURES.index("smoothed_log_ratio")]


@dataclass(frozen=True)
class RunKey:
    """Departure bucket + traffic-state key; hashable (the state itself is not compared)."""

    bucket: int
    traffic_key: str | None = None
    state: TrafficState | None = field(default=None, compare=False, hash=False, repr=False)


def local_seconds(moment, timezone: str | None = None) -> float:
    """Seconds since 1970-01-01 of the city's local clock (naive datetimes are local;
    aware ones are converted to ``timezone``, else UTC)."""
    import datetime as dt

    from nareta.timeparse import to_local_clock

    return (to_local_clock(moment, timezone) - dt.datetime(1970, 1, 1)).total_seconds()


def local_datetime(seconds: float):
    """The naive local datetime of local seconds (inverse of :func:`local_seconds`)."""
    import datetime as dt

    return dt.datetime(1970, 1, 1) + dt.timedelta(seconds=float(seconds))


def key_parts(key) -> tuple[int, TrafficState | None]:
    """(bucket, state) of a plain int bucket or a :class:`RunKey`."""
    if isinstance(key, RunKey):
        return key.bucket, key.state
    return int(key), None


class TrafficSnapshot:
    """A mapped feed on one graph, answering :meth:`state_at` (cached per window)."""

    def __init__(self, graph, observations: Observations, *, hops: int = 3,
                 max_age_s: float = DEFAULT_MAX_AGE_S, source: str = ""):
        import scipy.sparse as sp

        self.graph = graph
        self.observations = observations
        self.hops, self.max_age_s, self.source = hops, max_age_s, source
        length_km = graph["length_m"].astype(np.float64) / 1000.0
        free_hours = np.maximum(graph["free_flow_s"].astype(np.float64), 1e-3) / 3600.0
        self.free_kph = length_km / free_hours
        order = np.argsort(observations.window_s, kind="stable")
        self._window = observations.window_s[order]
        self._end = self._window + observations.window_length_s
        self._segment = observations.segment[order]
        ratio = observations.speed_kph[order] / self.free_kph[self._segment]
        self._log_ratio = np.clip(np.log(ratio), *_LOG_RATIO_RANGE)
        n = graph.num_segments
        a, b = graph["turn_from"].astype(np.int64), graph["turn_to"].astype(np.int64)
        adjacency = sp.coo_matrix((np.ones(2 * len(a)), (np.r_[a, b], np.r_[b, a])),
                                  shape=(n, n)).tocsr()
        adjacency.data[:] = 1.0
        self._adjacency = adjacency
        self.key = observations.key
        self._states: dict[tuple[float, float, int], TrafficState] = {}
        self._lock = threading.Lock()

    @property
    def as_of_s(self) -> float:
        return self.observations.as_of_s

    @property
    def window_s(self) -> float:
        return self.observations.window_length_s

    def _latest(self, t: float, max_age_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Newest window per segment ended in (t - max_age, t]: (segments, log ratio, age)."""
        stop = np.searchsorted(self._end, t, side="right")  # windows are sorted by start
        chosen = np.flatnonzero(self._end[:stop] > t - max_age_s)
        if not len(chosen):
            return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
        segments = self._segment[chosen]
        # the last occurrence of each segment is its newest window (sorted by time)
        reverse_unique, first = np.unique(segments[::-1], return_index=True)
        picked = chosen[len(chosen) - 1 - first]
        return reverse_unique, self._log_ratio[picked], t - self._end[picked]

    def state_at(self, t: float, *, coverage: float = 1.0, seed: int = 0) -> TrafficState:
        """Features for a departure at local seconds ``t``; ``coverage`` < 1 hides a random
        share of the observed segments (training: teach the smoothing and the flags)."""
        slot = float(np.floor(t / self.window_s) * self.window_s)
        cache_key = (slot, coverage, seed if coverage < 1.0 else 0)
        with self._lock:
            state = self._states.get(cache_key)
        if state is not None:
            return state
        n = self.graph.num_segments
        segments, log_ratio, age = self._latest(slot, self.max_age_s)
        if coverage < 1.0 and len(segments):
            keep = np.random.default_rng(seed).random(len(segments)) < coverage
            segments, log_ratio, age = segments[keep], log_ratio[keep], age[keep]
        features = no_traffic_features(n)
        observed = np.zeros(n, dtype=bool)
        observed[segments] = True
        value = np.zeros(n)
        value[segments] = log_ratio
        features[segments, 0] = log_ratio
        features[:, 1] = observed
        features[segments, 2] = np.clip(age / self.max_age_s, 0.0, 1.0)
        city = float(np.median(log_ratio)) if len(log_ratio) else 0.0
        smoothed, reached = value.copy(), observed.copy()
        known = observed.astype(np.float64)
        for _ in range(self.hops):
            total = self._adjacency @ (smoothed * known)
            count = self._adjacency @ known
            fill = ~reached & (count > 0)
            smoothed[fill] = total[fill] / count[fill]
            reached = reached | fill
            known = reached.astype(np.float64)
        smoothed[~reached] = city
        features[:, 3] = smoothed
        features[:, 4] = reached
        earlier, earlier_ratio, _ = self._latest(slot - TREND_S, self.max_age_s)
        past = np.full(n, np.nan)
        past[earlier] = earlier_ratio
        trend = np.where(observed & np.isfinite(past), value - np.nan_to_num(past), 0.0)
        features[:, 5] = trend
        features[:, 6] = city
        state = TrafficState(key=f"{self.key}:{slot:.0f}:{coverage:g}:{cache_key[2]}",
                             as_of_s=float(slot - age.min()) if len(age) else -np.inf,
                             features=features, observed_share=float(observed.mean()))
        with self._lock:
            if len(self._states) > 512:
                self._states.clear()
            self._states[cache_key] = state
        return state


class TrafficStore:
    """The serving side's current snapshot (replaced atomically; readers never block long).

    ``state_for(t)`` returns the state for a departure at local seconds ``t``, or ``None``
    (with the reason) when there is no snapshot or its newest window ended more than
    ``max_age_s`` before ``t``: the caller then falls back to the historical model."""

    def __init__(self, *, max_age_s: float = DEFAULT_MAX_AGE_S):
        self.max_age_s = max_age_s
        self._snapshot: TrafficSnapshot | None = None
        self._lock = threading.Lock()

    @property
    def snapshot(self) -> TrafficSnapshot | None:
        return self._snapshot

    def load(self, graph, source, *, timezone: str | None = None) -> tuple[TrafficSnapshot, Any]:
        """Read, validate and map a feed (a path or a DataFrame of rows) into a snapshot
        with this store's max age; returns it with the feed report (not yet installed)."""
        from data_pipeline.traffic import load_feed

        observations, report = load_feed(source, graph, timezone=timezone)
        return TrafficSnapshot(graph, observations, max_age_s=self.max_age_s,
                               source=str(source) if not hasattr(source, "columns") else
                               "rows"), report

    def replace(self, snapshot: TrafficSnapshot | None) -> None:
        with self._lock:
            self._snapshot = snapshot

    def state_for(self, t: float) -> tuple[TrafficState | None, str]:
        snapshot = self._snapshot
        if snapshot is None:
            return None, "no traffic feed loaded"
        state = snapshot.state_at(t)
        if not np.isfinite(state.as_of_s) or state.observed_share == 0.0:
            return None, (f"no traffic observation ended in the {self.max_age_s / 60:.0f} min "
                          "before the departure")
        return state, "live"
