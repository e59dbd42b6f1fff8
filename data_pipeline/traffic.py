"""The live traffic feed: observed speeds per road segment and time window.

Format (the convention of Uber Movement Speeds; Parquet or CSV, a file or a directory of
them), one row per segment and time window:

==================  ========  ===============================================================
column              required  meaning
==================  ========  ===============================================================
window_start        yes       ISO-8601 local time of the city, or epoch seconds
osm_way_id          no        OSM way of the piece (disambiguates parallel ways)
osm_start_node_id   yes       OSM node where the observed piece starts
osm_end_node_id     yes       OSM node where it ends (in the direction of travel)
speed_kph_mean      yes       mean speed over the window, km/h (0 < speed <= 250)
sample_count        no        number of probe observations behind the mean
==================  ========  ===============================================================

A RoadGraph segment runs through several OSM nodes (``path_osm_node``). A row maps onto
the segment whose node path holds its start node followed by its end node (a whole
segment, one OSM node pair of it, or any run of its nodes); several rows on pieces of one
segment in one window combine by the length-weighted harmonic mean (the speed that gives
their summed travel time). Rows that match no segment, or that fail validation, are
counted by reason in :class:`FeedReport`, never dropped silently.

Times are kept as *local seconds*: seconds since 1970-01-01 of the city's local clock (the
convention of ``data_pipeline.trips``). Windows are ``window_s`` long (default 300 s); a
query departing at ``t`` sees only windows that ended at or before ``t``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nareta.errors import InputError

FEED_COLUMNS = ("window_start", "osm_way_id", "osm_start_node_id", "osm_end_node_id",
                "speed_kph_mean", "sample_count")
REQUIRED_COLUMNS = ("window_start", "osm_start_node_id", "osm_end_node_id", "speed_kph_mean")
MAX_SPEED_KPH = 250.0
DEFAULT_WINDOW_S = 300.0


class FeedError(InputError):
    """A traffic feed is unreadable, or validation left no usable row."""


@dataclass
class FeedReport:
    """Counts of what happened to a feed's rows (rejected by reason, unmatched)."""

    rows: int = 0
    used: int = 0
    rejected: Counter = field(default_factory=Counter)

    def reject(self, reason: str, count: int) -> None:
        if count:
            self.rejected[reason] += int(count)

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "used": self.used, "rejected": dict(self.rejected)}

    def summary(self) -> str:
        lines = [f"traffic feed: {self.used} of {self.rows} rows used"]
        for reason, count in sorted(self.rejected.items(), key=lambda item: -item[1]):
            lines.append(f"  rejected {count:>7}  {reason}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- writing
def segment_feed_rows(graph, segments: np.ndarray, speeds_kph: np.ndarray, windows,
                      counts: np.ndarray) -> dict[str, Any]:
    """Feed columns for whole-segment observations: a segment's first and last OSM node,
    or, where another segment shares both and the way (parallel segments), the node pair
    of a piece that only this segment has (its speed is the segment's)."""
    first_node, last_node, way = _segment_keys(graph)
    segments = np.asarray(segments, dtype=np.int64)
    return {
        "window_start": [w.isoformat(timespec="seconds") for w in windows],
        "osm_way_id": way[segments],
        "osm_start_node_id": first_node[segments],
        "osm_end_node_id": last_node[segments],
        "speed_kph_mean": np.round(np.asarray(speeds_kph, dtype=np.float64), 3),
        "sample_count": np.asarray(counts, dtype=np.int64),
    }


def _segment_keys(graph) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per segment (start node, end node, way) that identifies it in a feed row."""
    cached = getattr(graph, "_feed_keys", None)
    if cached is not None:
        return cached
    offsets = graph["path_offsets"]
    nodes, ways = graph["path_osm_node"], graph["path_way_id"]
    first, last = offsets[:-1], offsets[1:] - 1
    start = nodes[first].astype(np.int64)
    end = nodes[last].astype(np.int64)
    way = ways[np.minimum(first + 1, last)].astype(np.int64)
    pieces: dict[tuple[int, int, int], list[int]] = {}
    for segment in range(graph.num_segments):
        for index in range(int(first[segment]), int(last[segment])):
            key = (int(nodes[index]), int(nodes[index + 1]), int(ways[index + 1]))
            pieces.setdefault(key, []).append(segment)
    seen: dict[tuple[int, int, int], int] = {}
    for segment in range(graph.num_segments):
        key = (int(start[segment]), int(end[segment]), int(way[segment]))
        seen[key] = seen.get(key, 0) + 1
    for segment in range(graph.num_segments):
        if seen[(int(start[segment]), int(end[segment]), int(way[segment]))] == 1:
            continue
        for index in range(int(first[segment]), int(last[segment])):
            key = (int(nodes[index]), int(nodes[index + 1]), int(ways[index + 1]))
            if pieces[key] == [segment]:
                start[segment], end[segment], way[segment] = key
                break
    graph._feed_keys = (start, end, way)
    return graph._feed_keys


def write_feed(frame: pd.DataFrame, out: str | os.PathLike[str], *,
               metadata: dict[str, Any] | None = None) -> Path:
    """Write a feed as Parquet, atomically (temp name + rename), metadata in the schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    if metadata:
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), b"nareta": json.dumps(metadata).encode()})
    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(table, staging)
        os.replace(staging, out)
    finally:
        if staging.exists():
            staging.unlink()
    return out


# --------------------------------------------------------------------------- reading
def read_feed_files(source: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a feed file (``.parquet`` / ``.csv``) or every such file in a directory."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.suffix in (".parquet", ".csv") and not p.name.startswith("."))
        if not files:
            raise FeedError(f"traffic feed {path}: the directory holds no .parquet or .csv file")
        return pd.concat([read_feed_files(p) for p in files], ignore_index=True)
    if not path.is_file():
        raise FeedError(f"traffic feed {path}: no such file or directory")
    try:
        if path.suffix == ".csv":
            return pd.read_csv(path)
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
        raise FeedError(f"traffic feed {path}: cannot be read ({exc})") from exc
    raise FeedError(f"traffic feed {path}: expected a .parquet or .csv file")


def _local_seconds(values: pd.Series, timezone: str | None) -> np.ndarray:
    """window_start → local seconds (NaN where not a time), by the project's one time
    parser (:mod:`nareta.timeparse`, as departure times): ISO-8601 (naive = local clock;
    with an offset → the city's clock) or epoch seconds in 1970..2100."""
    from data_pipeline.trips import local_departure_times

    clock = local_departure_times(values.reset_index(drop=True), timezone=timezone)
    seconds = clock.to_numpy().astype("datetime64[ns]").astype(np.int64) / 1e9
    return np.where(clock.isna().to_numpy(), np.nan, seconds)


def validate_feed(frame: pd.DataFrame, *, timezone: str | None = None,
                  now_s: float | None = None) -> tuple[pd.DataFrame, FeedReport]:
    """Check every row; return the usable ones with ``window_s`` (local seconds) added.
    Rejected rows are counted by reason; ``now_s`` (local seconds) rejects windows that
    start in the future."""
    report = FeedReport(rows=len(frame))
    missing = [name for name in REQUIRED_COLUMNS if name not in frame.columns]
    if missing:
        raise FeedError(f"traffic feed: missing column(s) {', '.join(missing)}; expected "
                        f"{', '.join(REQUIRED_COLUMNS)} (+ optional osm_way_id, sample_count)")
    frame = frame.reset_index(drop=True)
    window = _local_seconds(frame["window_start"], timezone)
    start = pd.to_numeric(frame["osm_start_node_id"], errors="coerce").to_numpy(np.float64)
    end = pd.to_numeric(frame["osm_end_node_id"], errors="coerce").to_numpy(np.float64)
    speed = pd.to_numeric(frame["speed_kph_mean"], errors="coerce").to_numpy(np.float64)
    samples = (pd.to_numeric(frame["sample_count"], errors="coerce").to_numpy(np.float64)
               if "sample_count" in frame.columns else np.ones(len(frame)))
    way = (pd.to_numeric(frame["osm_way_id"], errors="coerce").to_numpy(np.float64)
           if "osm_way_id" in frame.columns else np.full(len(frame), np.nan))
    keep = np.ones(len(frame), dtype=bool)
    checks = [
        ("window_start not ISO-8601 or epoch seconds in 1970..2100", ~np.isfinite(window)),
        ("node id missing or not an integer",
         ~np.isfinite(start) | ~np.isfinite(end) | (start != np.round(start))
         | (end != np.round(end))),
        ("speed_kph_mean missing, NaN, zero or negative", ~(speed > 0)),
        (f"speed_kph_mean above {MAX_SPEED_KPH:.0f} km/h", speed > MAX_SPEED_KPH),
        ("sample_count negative or NaN", ~(samples >= 0)),
    ]
    if now_s is not None:
        checks.append(("window in the future", np.nan_to_num(window, nan=-np.inf) > now_s))
    for reason, bad in checks:
        bad = bad & keep
        report.reject(reason, int(bad.sum()))
        keep &= ~bad
    out = pd.DataFrame({"window_s": window, "osm_start_node_id": start, "osm_end_node_id": end,
                        "osm_way_id": way, "speed_kph_mean": speed,
                        "sample_count": np.maximum(np.nan_to_num(samples, nan=1.0), 0.0)})[keep]
    key = ["window_s", "osm_start_node_id", "osm_end_node_id", "osm_way_id"]
    duplicated = out.duplicated(subset=key, keep="last").to_numpy()
    report.reject("duplicate row (same window, nodes and way)", int(duplicated.sum()))
    out = out[~duplicated]
    out = out.astype({"osm_start_node_id": np.int64, "osm_end_node_id": np.int64})
    return out.reset_index(drop=True), report


# --------------------------------------------------------------------------- mapping
class FeedMapper:
    """OSM node pairs → RoadGraph segments (and the length of the matched piece)."""

    def __init__(self, graph) -> None:
        self.graph = graph
        offsets = graph["path_offsets"]
        nodes = graph["path_osm_node"]
        lon, lat = graph["path_lon"], graph["path_lat"]
        from nareta.geo import haversine_m

        piece = haversine_m(lon[:-1], lat[:-1], lon[1:], lat[1:])  # [P-1]
        self._cumulative = np.concatenate([[0.0], np.cumsum(piece)])
        self._offsets = offsets
        self._ways = graph["path_way_id"]
        positions: dict[int, list[int]] = {}
        for segment in range(graph.num_segments):
            for index in range(int(offsets[segment]), int(offsets[segment + 1]) - 1):
                positions.setdefault(int(nodes[index]), []).append(index)
        self._positions = positions
        self._segment_of = np.repeat(np.arange(graph.num_segments),
                                     np.diff(offsets)).astype(np.int64)
        self._nodes = nodes

    def match(self, start: int, end: int, way: float) -> tuple[int, float] | None:
        """(segment, piece length m) of the shortest run start → end inside one segment,
        preferring pieces on ``way`` when given."""
        best: tuple[float, int, float] | None = None
        for index in self._positions.get(int(start), ()):
            segment = int(self._segment_of[index])
            stop = int(self._offsets[segment + 1])
            following = self._nodes[index + 1:stop]
            hits = np.flatnonzero(following == end)
            if not len(hits):
                continue
            last = index + 1 + int(hits[0])
            length = float(self._cumulative[last] - self._cumulative[index])
            off_way = (np.isfinite(way) and int(way) not in
                       set(self._ways[index + 1:last + 1].tolist()))
            rank = (float(off_way), length)
            if best is None or rank < best[:2]:
                best = (*rank, segment)  # type: ignore[assignment]
                best_length = length
        if best is None:
            return None
        return int(best[2]), max(best_length, 0.1)


@dataclass
class Observations:
    """Validated feed rows mapped onto segments: one entry per (window, segment)."""

    window_s: np.ndarray  # [M] local seconds of the window start
    segment: np.ndarray  # [M]
    speed_kph: np.ndarray  # [M] harmonic mean of the pieces seen
    samples: np.ndarray  # [M]
    window_length_s: float = DEFAULT_WINDOW_S

    def __len__(self) -> int:
        return len(self.segment)

    @property
    def key(self) -> str:
        digest = hashlib.sha256()
        for array in (self.window_s, self.segment, self.speed_kph, self.samples):
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update(str(self.window_length_s).encode())
        return digest.hexdigest()[:16]

    @property
    def as_of_s(self) -> float:
        """Local seconds at which the newest window ended (``-inf`` when empty)."""
        return float(self.window_s.max() + self.window_length_s) if len(self) else -np.inf

    @staticmethod
    def concat(parts: list[Observations]) -> Observations:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Observations(np.zeros(0), np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
        return Observations(np.concatenate([p.window_s for p in parts]),
                            np.concatenate([p.segment for p in parts]),
                            np.concatenate([p.speed_kph for p in parts]),
                            np.concatenate([p.samples for p in parts]),
                            parts[0].window_length_s)


def map_feed(graph, frame: pd.DataFrame, report: FeedReport | None = None, *,
             window_length_s: float = DEFAULT_WINDOW_S) -> tuple[Observations, FeedReport]:
    """Map validated rows (:func:`validate_feed`) onto ``graph``'s segments."""
    report = report or FeedReport(rows=len(frame))
    mapper = FeedMapper(graph)
    cache: dict[tuple[int, int, float], tuple[int, float] | None] = {}
    segments = np.full(len(frame), -1, dtype=np.int64)
    lengths = np.zeros(len(frame))
    columns = zip(frame["osm_start_node_id"].tolist(), frame["osm_end_node_id"].tolist(),
                  frame["osm_way_id"].tolist(), strict=True)
    for row, (start, end, way) in enumerate(columns):
        key = (start, end, way if np.isfinite(way) else -1.0)
        if key not in cache:
            cache[key] = mapper.match(start, end, way)
        hit = cache[key]
        if hit is not None:
            segments[row], lengths[row] = hit
    unmatched = segments < 0
    report.reject("node pair matches no segment of this road graph", int(unmatched.sum()))
    if unmatched.all() and len(frame):
        report.used = 0
        return Observations.concat([]), report
    mapped = pd.DataFrame({
        "window_s": frame["window_s"].to_numpy()[~unmatched], "segment": segments[~unmatched],
        "length": lengths[~unmatched],
        "time": lengths[~unmatched] / frame["speed_kph_mean"].to_numpy()[~unmatched],
        "samples": frame["sample_count"].to_numpy()[~unmatched]})
    grouped = mapped.groupby(["window_s", "segment"], sort=True).sum()
    report.used = int((~unmatched).sum())
    observations = Observations(
        grouped.index.get_level_values(0).to_numpy(np.float64),
        grouped.index.get_level_values(1).to_numpy(np.int64),
        (grouped["length"] / grouped["time"]).to_numpy(np.float64),
        grouped["samples"].to_numpy(np.float64), window_length_s)
    return observations, report


def load_feed(source, graph, *, timezone: str | None = None, now_s: float | None = None,
              window_length_s: float = DEFAULT_WINDOW_S) -> tuple[Observations, FeedReport]:
    """Read (a path, or a DataFrame of rows), validate and map a feed; refuse one that
    leaves no usable row."""
    frame = source if isinstance(source, pd.DataFrame) else read_feed_files(source)
    valid, report = validate_feed(frame, timezone=timezone, now_s=now_s)
    observations, report = map_feed(graph, valid, report, window_length_s=window_length_s)
    if not len(observations):
        where = "" if isinstance(source, pd.DataFrame) else f" {source}"
        raise FeedError(f"traffic feed{where}: no usable row\n{report.summary()}")
    return observations, report


# --------------------------------------------------------------------------- probes
def probe_feed(graph, trips: pd.DataFrame, *, window_s: float = DEFAULT_WINDOW_S
               ) -> pd.DataFrame:
    """A feed derived from probe trips that carry a driven ``route`` (segment indices)
    and ``duration_s``: each trip's time is spread over its route in proportion to
    free-flow time (the trip's speed ratio applied to every segment), each segment
    placed in the window in which the trip drove it; per (window, segment) the speeds of
    all trips combine by the harmonic mean."""
    if "route" not in trips.columns or "duration_s" not in trips.columns:
        raise FeedError("probe trips need 'route' (segment indices) and 'duration_s'")
    free_flow = graph["free_flow_s"].astype(np.float64)
    length = graph["length_m"].astype(np.float64)
    departure = pd.to_datetime(trips["departure_time"]).astype("datetime64[ns]")
    depart_s = departure.to_numpy().astype("datetime64[ns]").astype(np.int64) / 1e9
    rows_segment, rows_window, rows_time, rows_length = [], [], [], []
    for route, duration, start in zip(trips["route"].tolist(), trips["duration_s"].tolist(),
                                      depart_s.tolist(), strict=True):
        route = np.asarray(route, dtype=np.int64)
        if not len(route) or not duration > 0:
            continue
        free = free_flow[route]
        scale = duration / max(free.sum(), 1e-6)
        entered = start + np.concatenate([[0.0], np.cumsum(free * scale)[:-1]])
        rows_segment.append(route)
        rows_window.append(np.floor(entered / window_s) * window_s)
        rows_time.append(free * scale)
        rows_length.append(length[route])
    if not rows_segment:
        raise FeedError("no probe trip with a route and a positive duration")
    frame = pd.DataFrame({"segment": np.concatenate(rows_segment),
                          "window": np.concatenate(rows_window),
                          "time": np.concatenate(rows_time),
                          "length": np.concatenate(rows_length), "samples": 1})
    grouped = frame.groupby(["window", "segment"], sort=True).sum()
    speeds = (grouped["length"] / 1000.0) / (grouped["time"] / 3600.0)
    windows = pd.to_datetime(grouped.index.get_level_values(0).to_numpy(), unit="s")
    return pd.DataFrame(segment_feed_rows(
        graph, grouped.index.get_level_values(1).to_numpy(np.int64),
        np.clip(speeds.to_numpy(), 1.0, MAX_SPEED_KPH), windows.to_pydatetime(),
        grouped["samples"].to_numpy(np.int64)))
