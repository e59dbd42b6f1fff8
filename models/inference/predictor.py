"""The one Predictor: a RoadGraph and a travel-time model, loaded once, answering ETA,
route and matrix queries for the HTTP service and the batch jobs alike.

A query point is snapped to the nearest segment (and its reverse twin); the trip starts at
the snapped point, drives the rest of its segment to the segment's end node, follows the
model's shortest-path tree, and ends partway along the destination's segment (OSRM's
"phantom node" scheme). One model run from an origin node answers every destination, so
runs are cached per (origin node, departure-time bucket) in a bounded LRU, concurrent
requests for the same run wait for one computation, and matrices batch their origins.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data_pipeline.road_graph import RoadGraph
from data_pipeline.snap import Snapper
from models.inference.graph_modes import Leg, graph_mode
from models.inference.live import (
    RunKey,
    TrafficSnapshot,
    TrafficStore,
    local_datetime,
    local_seconds,
)
from models.inference.travel_time import OriginRun, TravelTimeModel
from nareta.errors import InputError, NoRouteError, NoSegmentError

Point = tuple[float, float]  # (lon, lat)


@dataclass(frozen=True)
class Waypoint:
    """A query point snapped onto the road network."""

    lon: float  # snapped location
    lat: float
    distance_m: float  # from the query point to the snapped location
    segment: int
    twin: int  # the reverse-direction segment, or -1
    fraction: float  # position along `segment` by length


@dataclass(frozen=True)
class TrafficUse:
    """Which traffic a live-traffic model's answer used: the snapshot and the local clock
    time at which its newest observation ended (``live``), or why it fell back to the
    historical model (no feed, or none recent enough)."""

    live: bool
    reason: str
    as_of: dt.datetime | None = None
    snapshot: str | None = None


@dataclass
class EtaResult:
    eta_s: float
    distance_m: float
    origin: Waypoint
    destination: Waypoint
    departure_time: dt.datetime | None = None
    traffic: TrafficUse | None = None  # None: the model takes no live traffic


@dataclass
class RouteResult(EtaResult):
    segments: list[int] = field(default_factory=list)
    segment_times_s: list[float] = field(default_factory=list)  # first/last are partial
    segment_distances_m: list[float] = field(default_factory=list)  # metres driven on each
    coordinates: list[Point] = field(default_factory=list)
    fallback_used: bool = False
    fallback_reason: str | None = None


@dataclass
class MatrixResult:
    durations_s: np.ndarray  # [O, D]; nan where no route
    distances_m: np.ndarray  # [O, D]; nan where no route
    origins: list[Waypoint]
    destinations: list[Waypoint]
    traffic: TrafficUse | None = None


@dataclass
class IsochroneResult:
    """The road reachable from `origin` within `max_seconds`, as pieces of segments: piece i
    covers `piece_segment[i]` from share `piece_start[i]` to `piece_end[i]` of its length."""

    origin: Waypoint
    max_seconds: float
    node_time_s: np.ndarray  # [N] earliest arrival at each node; inf where unreachable
    piece_segment: np.ndarray  # [K] int64
    piece_start: np.ndarray  # [K] share of the segment's length, in [0, 1]
    piece_end: np.ndarray  # [K]
    departure_time: dt.datetime | None = None
    traffic: TrafficUse | None = None


@dataclass
class PairsResult:
    durations_s: np.ndarray  # [P]; nan where no route
    distances_m: np.ndarray  # [P]; nan where no route
    origins: list[Waypoint]
    destinations: list[Waypoint]
    traffic: TrafficUse | None = None


@dataclass
class _Tree:
    time_s: np.ndarray  # [N]
    parent: np.ndarray  # [N] int32 segment reaching each node, -1 at the root / unreached
    #: [N] float64 metres along the tree; nan where the tree is broken. Exact sums of the
    #: graph's float32 lengths (they fit float64's mantissa), so equal, bit for bit, to a
    #: targeted run's metres along the same path whatever the order of summation
    length_m: np.ndarray
    #: for a search that stopped once its targets were settled: which times / parents are
    #: the whole-graph run's (None: all of them)
    exact_time: np.ndarray | None = None
    exact_parent: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        extra = 0 if self.exact_time is None else 2 * len(self.exact_time)
        return self.time_s.nbytes + self.parent.nbytes + self.length_m.nbytes + extra

    def covers(self, keys: np.ndarray | None) -> bool:
        if self.exact_time is None:
            return True
        return keys is not None and bool(self.exact_time[keys].all())

    def proven(self, key: int) -> bool:
        """Whether ``key``'s pointer is the whole-graph run's."""
        return self.exact_parent is None or bool(self.exact_parent[key])


class _Sparse:
    """Some keys' values of a ``[K]`` array; every other key reads ``default``."""

    __slots__ = ("values", "default", "size")

    def __init__(self, values: dict[int, float], default, size: int):
        self.values, self.default, self.size = values, default, size

    def __getitem__(self, key):
        return self.values.get(int(key), self.default)

    def __len__(self) -> int:
        return self.size


@dataclass
class _PartialTree:
    """The answers of a run that stopped once its targets were settled: times and metres
    of the keys it answered, and the proven pointers on the paths back from them. Small,
    so the LRU holds many; answers for new targets of the same root merge in."""

    time_s: _Sparse
    parent: _Sparse
    length_m: _Sparse

    @property
    def nbytes(self) -> int:  # dict entries, roughly
        return 100 * (len(self.time_s.values) * 2 + len(self.parent.values)) + 400

    def covers(self, keys: np.ndarray | None) -> bool:
        return keys is not None and all(int(k) in self.time_s.values for k in keys)

    def proven(self, key: int) -> bool:
        return int(key) in self.parent.values

    def merged(self, other: _PartialTree) -> _PartialTree:
        size = self.time_s.size
        return _PartialTree(
            _Sparse({**self.time_s.values, **other.time_s.values}, np.inf, size),
            _Sparse({**self.parent.values, **other.parent.values}, -1, size),
            _Sparse({**self.length_m.values, **other.length_m.values}, np.nan, size))


class Predictor:
    """Answers ETA / route / matrix queries over one graph and one model.

    Parameters
    ----------
    graph, model
        The road graph and a :class:`~models.inference.travel_time.TravelTimeModel` built on it.
    max_snap_distance_m
        Points farther than this from every road raise :class:`NoSegmentError`.
    cache_runs, cache_mb
        The LRU of (origin key, run key) runs keeps at most this many runs and this many
        megabytes of them. A run key is the departure-time bucket, plus, for models that
        take live traffic, the traffic state's key (snapshot hash + departure window).
    traffic
        A :class:`models.inference.live.TrafficStore`; empty by default (historical answers).
    """

    def __init__(self, graph: RoadGraph, model: TravelTimeModel, *,
                 max_snap_distance_m: float = 250.0, cache_runs: int = 512,
                 cache_mb: float = 32.0, traffic: TrafficStore | None = None):
        self.graph = graph
        self.model = model
        #: the live traffic snapshot (models that take live traffic use it; runs are
        #: cached per (origin, RunKey): a new snapshot never serves a stale answer)
        self.traffic = traffic or TrafficStore()
        self.max_snap_distance_m = max_snap_distance_m
        self.snapper = Snapper(graph)
        #: node or turn mode (:mod:`models.inference.graph_modes`)
        self.graph_mode = graph_mode(model.graph_mode)
        self._cache: OrderedDict[tuple[int, int], _Tree] = OrderedDict()
        self._cache_runs = cache_runs
        self._cache_bytes = int(cache_mb * 2**20)
        self._cached_bytes = 0
        keys = self.graph_mode.num_keys(graph)
        # whole-graph trees (time f8, parent i4, metres f8) cheap enough to cache many of
        # (a model whose targeted runs are hierarchy queries never widens: those cost a
        # small fraction of a whole run; answers for a repeated root merge instead)
        self._whole_fits = (keys * 20 * 32 <= self._cache_bytes
                            and not model.targets_are_cheap)
        # beyond this many target keys a search stopping at them costs about a whole run
        self._many_targets = max(32, keys // 50)
        self._lock = threading.Lock()
        self._in_flight: dict[tuple[int, int], threading.Event] = {}
        # models that can stop a run once the keys a query needs are settled
        self._targeted = bool(model.supports_targets)
        self.stats = {"runs": 0, "cache_hits": 0, "run_seconds": 0.0, "targeted_runs": 0,
                      "widened_runs": 0}
        self.ready = True

    def isolated(self) -> Predictor:
        """This Predictor (graph, model, snapper, traffic) with an empty run cache and
        statistics of its own: its answers depend only on the queries asked of it, not on
        what other callers left in the cache (whether a root's tree came from a targeted
        or a whole-graph run, which can differ in the last bit of a learned model's
        seconds). Batch scoring answers each partition with one, so runs are
        bit-reproducible however partitions land on workers."""
        clone = copy.copy(self)
        clone._cache = OrderedDict()
        clone._cached_bytes = 0
        clone._lock = threading.Lock()
        clone._in_flight = {}
        clone.stats = dict.fromkeys(self.stats, 0)
        clone.stats["run_seconds"] = 0.0
        return clone

    @classmethod
    def load(cls, graph_dir: str | Path, model_dir: str | Path | None = None,
             **options) -> Predictor:
        """Load a RoadGraph and a model artifact (``None`` or ``"freeflow"``: the free-flow
        baseline; ``"freeflow-turns"``: the same on the turn graph, honouring turn
        restrictions). The model's manifest must name this graph, else ArtifactError."""
        from nareta.defaults import load_travel_time_model

        graph = RoadGraph.load(graph_dir)
        model = load_travel_time_model(model_dir or "freeflow", graph)
        return cls(graph, model, **options)

    # ------------------------------------------------------------------ traffic
    @property
    def uses_traffic(self) -> bool:
        return bool(self.model.uses_traffic)

    def set_traffic(self, snapshot: TrafficSnapshot | None) -> None:
        """Replace the live snapshot (atomically; cached runs of the old one are never
        reused since run keys name the snapshot)."""
        if snapshot is not None and snapshot.graph.identity != self.graph.identity:
            raise InputError("the traffic snapshot was mapped onto another road graph")
        self.traffic.replace(snapshot)

    def run_key(self, departure_time: dt.datetime | None):
        """(run key, TrafficUse or None) for a departure. Without a departure time a live
        model departs at the snapshot's newest observation ("now" on the feed's clock)."""
        if not self.uses_traffic:
            return self.model.time_bucket(departure_time), None
        snapshot = self.traffic.snapshot
        if departure_time is None and snapshot is not None and np.isfinite(snapshot.as_of_s):
            departure_time = local_datetime(snapshot.as_of_s)
        bucket = self.model.time_bucket(departure_time)
        if departure_time is None:
            return bucket, TrafficUse(False, "no traffic feed loaded")
        t = local_seconds(departure_time, self.model.timezone)
        state, reason = self.traffic.state_for(t)
        if state is None:
            return bucket, TrafficUse(False, reason)
        use = TrafficUse(True, "live", local_datetime(state.as_of_s), snapshot.key)
        return RunKey(bucket, state.key, state), use

    # ------------------------------------------------------------------ snapping
    def snap(self, points: list[Point | Waypoint], *,
             max_distance_m: float | list[float] | None = None,
             missing_ok: bool = False) -> list[Waypoint]:
        """Snap points; raises NoSegmentError naming the first point too far from a road.
        A point that is a :class:`Waypoint` already is kept as it is (callers that snap
        with their own limits pass the waypoints on). ``max_distance_m``: one limit or one
        per point (``inf``: none); default the predictor's. ``missing_ok``: return a point
        too far from every road as a Waypoint with ``segment == -1`` instead of raising."""
        if not points:
            return []
        if all(isinstance(point, Waypoint) for point in points):
            return list(points)
        limit = self.max_snap_distance_m if max_distance_m is None else max_distance_m
        if any(isinstance(point, Waypoint) for point in points):
            todo = [i for i, point in enumerate(points) if not isinstance(point, Waypoint)]
            limits = np.broadcast_to(np.asarray(limit, dtype=np.float64), (len(points),))
            snapped = self.snap([points[i] for i in todo], max_distance_m=limits[todo].tolist(),
                                missing_ok=missing_ok)
            out = list(points)
            for i, point in zip(todo, snapped, strict=True):
                out[i] = point
            return out
        array = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        snaps = self.snapper.snap(array[:, 0], array[:, 1],
                                  max_distance_m=np.asarray(limit, dtype=np.float64))
        missing = np.flatnonzero(~snaps.found)
        if missing.size and not missing_ok:
            index = int(missing[0])
            limit_m = float(np.broadcast_to(limit, (len(array),))[index])
            where = (f"{snaps.distance_m[index]:.0f} m from the nearest road"
                     if np.isfinite(snaps.distance_m[index]) else "off the map")
            raise NoSegmentError(
                f"point {index} ({array[index, 0]:.6f}, {array[index, 1]:.6f}) is {where}; "
                f"the limit is {limit_m:.0f} m", index=index)
        return [Waypoint(float(snaps.lon[i]), float(snaps.lat[i]), float(snaps.distance_m[i]),
                         int(snaps.segment[i]), int(snaps.twin[i]), float(snaps.fraction[i]))
                for i in range(len(array))]

    def _starts(self, point: Waypoint, times: np.ndarray) -> list[Leg]:
        return self.graph_mode.starts(self.graph, point, times)

    def _ends(self, point: Waypoint, times: np.ndarray) -> list[Leg]:
        return self.graph_mode.ends(self.graph, point, times)

    # ------------------------------------------------------------------ model runs
    def _trees(self, nodes: list[int], bucket: int,
               targets: np.ndarray | dict[int, np.ndarray] | None = None,
               *, whole: bool = False) -> dict[int, _Tree | _PartialTree]:
        """Shortest-path trees from each root (a node, or a segment in turn mode): cached,
        coalesced, missing ones batched into one model run. ``targets``: the keys the
        caller reads (None: all; a dict: per root); a model that supports it searches only
        as far as they need and answers only them (times, metres, and the pointers on the
        paths back). A root asked again for keys its cached run did not answer gets a
        whole-graph run where whole trees are small next to the cache (likely a hot
        origin), else another targeted run merged into the cached answers; ``whole`` asks
        for whole-graph runs."""
        wanted = list(dict.fromkeys(nodes))
        if targets is not None and not isinstance(targets, dict):
            shared = np.unique(np.asarray(targets, dtype=np.int64))
            targets = {node: shared for node in wanted}
        result: dict[int, _Tree | _PartialTree] = {}
        partial_cached: dict[int, _PartialTree] = {}
        mine: list[int] = []
        widen: list[bool] = []
        waits: list[tuple[int, threading.Event]] = []
        with self._lock:
            for node in wanted:
                key = (node, bucket)
                cached = self._cache.get(key)
                need = None if whole or targets is None else targets[node]
                if cached is not None and cached.covers(need):
                    self._cache.move_to_end(key)
                    result[node] = cached
                    self.stats["cache_hits"] += 1
                elif key in self._in_flight:
                    waits.append((node, self._in_flight[key]))
                else:
                    self._in_flight[key] = threading.Event()
                    mine.append(node)
                    # a root asked again for keys its run did not answer: a whole run if
                    # whole trees are small next to the cache, else another targeted run
                    # whose answers merge into the cached ones
                    # many targets (a matrix over the map) also make a whole run cheaper
                    widen.append(whole or (cached is not None and self._whole_fits)
                                 or (need is not None and len(need) > self._many_targets))
                    if isinstance(cached, _PartialTree):
                        partial_cached[node] = cached
        try:
            if mine:
                started = time.perf_counter()
                trees = self._run(mine, widen, bucket, targets)
                with self._lock:
                    self.stats["runs"] += len(mine)
                    self.stats["run_seconds"] += time.perf_counter() - started
                    for node, tree in zip(mine, trees, strict=True):
                        if isinstance(tree, _PartialTree) and node in partial_cached:
                            tree = partial_cached[node].merged(tree)
                        self._store((node, bucket), tree)
                        result[node] = tree
        finally:
            with self._lock:
                for node in mine:
                    self._in_flight.pop((node, bucket)).set()
        for node, event in waits:
            event.wait()
            with self._lock:
                tree = self._cache.get((node, bucket))
            need = None if whole or targets is None else targets[node]
            if tree is None or not tree.covers(need):
                tree = self._trees([node], bucket, None if need is None else {node: need},
                                   whole=whole)[node]
            result[node] = tree
        return result

    def _run(self, roots: list[int], widen: list[bool], bucket: int,
             targets: dict[int, np.ndarray] | None) -> list[_Tree | _PartialTree]:
        roots_array = np.asarray(roots, dtype=np.int64)
        with self._lock:
            self.stats["widened_runs"] += sum(widen)
        if not self._targeted or targets is None or all(widen):
            return self._to_trees(self.model.run_from(roots_array, bucket))
        targeted = [i for i, w in enumerate(widen) if not w]
        whole = [i for i, w in enumerate(widen) if w]
        trees: list[_Tree | None] = [None] * len(roots)
        run = self.model.run_from(roots_array[targeted], bucket,
                                  targets=[targets[roots[i]] for i in targeted], pointers=False)
        for i, tree in zip(targeted, self._to_trees(run), strict=True):
            trees[i] = tree
            if not tree.covers(targets[roots[i]]):  # stopped short of a proof: whole run
                whole.append(i)
        if whole:
            for i, tree in zip(whole, self._to_trees(
                    self.model.run_from(roots_array[whole], bucket)), strict=True):
                trees[i] = tree
        with self._lock:
            self.stats["targeted_runs"] += len(targeted)
            self.stats["widened_runs"] += len(whole) - sum(widen)
        return trees

    def _store(self, key: tuple[int, int], tree: _Tree) -> None:
        """Insert into the LRU (lock held), evicting the oldest beyond either bound."""
        old = self._cache.pop(key, None)
        if old is not None:
            self._cached_bytes -= old.nbytes
        self._cache[key] = tree
        self._cached_bytes += tree.nbytes
        while len(self._cache) > 1 and (len(self._cache) > self._cache_runs
                                        or self._cached_bytes > self._cache_bytes):
            _, evicted = self._cache.popitem(last=False)
            self._cached_bytes -= evicted.nbytes

    def _to_trees(self, run: OriginRun) -> list[_Tree | _PartialTree]:
        if run.answers is not None:  # sparse answers: keys, seconds, metres, path pointers
            size = self.graph_mode.num_keys(self.graph)
            return [_PartialTree(
                _Sparse(dict(zip(keys.tolist(), seconds.tolist(), strict=True)), np.inf, size),
                _Sparse(dict(zip(path_keys.tolist(), parents.tolist(), strict=True)), -1,
                        size),
                _Sparse(dict(zip(keys.tolist(), metres.tolist(), strict=True)), np.nan, size))
                for keys, seconds, metres, path_keys, parents in run.answers]
        length = self.graph["length_m"].astype(np.float64)
        keys = run.node_time_s.shape[1]
        trees = []
        for b, root in enumerate(run.origins):
            parent = run.parent_segment[b]
            has_parent = parent >= 0
            safe = np.maximum(parent, 0)
            # Metres along the tree by pointer doubling: ancestor and length to it.
            ancestor = np.where(has_parent, self.graph_mode.previous_key(self.graph, safe),
                                np.arange(keys))
            metres = np.where(has_parent, self.graph_mode.step_length_m(length, safe), 0.0)
            ancestor[root] = root
            metres[root] = 0.0
            limited = run.exact_time is not None and not run.exact_time[b].all()
            # a limited run: the whole path's pointers must be the whole-graph run's too
            proven = run.exact_parent[b].copy() if limited else None
            for _ in range(int(np.ceil(np.log2(max(keys, 2)))) + 1):
                metres = metres + metres[ancestor]
                if proven is not None:
                    proven = proven & proven[ancestor]
                ancestor = ancestor[ancestor]
            broken = (ancestor != root) | ~np.isfinite(run.node_time_s[b])
            exact_time = run.exact_time[b] & proven if limited else None
            exact_parent = run.exact_parent[b].copy() if limited else None
            trees.append(_Tree(time_s=run.node_time_s[b].astype(np.float64),
                               parent=parent.astype(np.int32),
                               length_m=np.where(broken, np.nan, metres),
                               exact_time=exact_time, exact_parent=exact_parent))
        return trees

    def _exact_tree(self, root: int, times: np.ndarray, bucket: int) -> _Tree:
        """Dijkstra over the model's own segment (and turn) times: the route fallback."""
        run = self.graph_mode.exact_tree(self.graph, times, self.model.turn_times_s(bucket),
                                         np.array([root]))
        return self._to_trees(run)[0]

    # ------------------------------------------------------------------ queries
    def _best(self, origin: Waypoint, destination: Waypoint, bucket: int,
              trees: dict[int, _Tree], times: np.ndarray, *,
              starts: list[Leg] | None = None, ends: list[Leg] | None = None):
        """The cheapest (start leg, end leg) combination, or a direct ride on one segment.
        ``starts`` / ``ends``: the origin's and destination's legs, if the caller has them
        (a matrix builds each point's legs once, not once per cell)."""
        best = (np.inf, np.nan, None, None)
        starts = self._starts(origin, times) if starts is None else starts
        ends = self._ends(destination, times) if ends is None else ends
        for start in starts:
            for end in ends:
                if start.segment == end.segment >= 0 and start.position <= end.position:
                    share = end.position - start.position
                    total = share * times[start.segment]
                    if total < best[0]:
                        metres = share * float(self.graph["length_m"][start.segment])
                        best = (total, metres, start, end)
                    continue
                tree = trees[start.key]
                if self.graph_mode.keys_are_segments and start.key == end.key:
                    # leave the segment and come back onto it: the best turn into it
                    loop = self._loop(tree, end.segment, bucket, times)
                    if loop is not None:
                        turn_back, via, via_metres = loop
                        total = start.time_s + turn_back + end.time_s
                        if total < best[0]:
                            metres = float(start.length_m) + via_metres + float(end.length_m)
                            best = (total, metres, start, dataclasses.replace(end, via=via))
                    continue
                total = start.time_s + tree.time_s[end.key] + end.time_s
                if total < best[0]:
                    # in float64 whichever tree answers (a whole tree's np.float64 or a
                    # targeted one's Python float: NumPy 2 keeps float32 + float in float32)
                    metres = (float(start.length_m) + float(tree.length_m[end.key])
                              + float(end.length_m))
                    best = (total, metres, start, end)
        total, metres, start, end = best
        if np.isfinite(total) and not np.isfinite(metres):
            # the model's pointers break on the way: the metres of route()'s fallback
            best = (total, self._fallback_metres(start, end, times, bucket), start, end)
        return best

    def _fallback_metres(self, start: Leg, end: Leg, times: np.ndarray, bucket) -> float:
        """Metres from ``start`` to ``end`` along Dijkstra over the model's own times (the
        route's fallback when the model's predecessor pointers do not form a path)."""
        key = end.via if end.via >= 0 else end.key
        tree = self._exact_tree(start.key, times, bucket)
        metres = float(start.length_m) + float(tree.length_m[key]) + float(end.length_m)
        if end.via >= 0:
            metres += float(self.graph["length_m"][end.segment])
        return metres

    def eta(self, origin: Point, destination: Point,
            departure_time: dt.datetime | None = None) -> EtaResult:
        origin_point, destination_point = self.snap([origin, destination])
        bucket, traffic = self.run_key(departure_time)
        times = self.model.segment_times_s(bucket)
        roots = [leg.key for leg in self._starts(origin_point, times)]
        trees = self._trees(roots, bucket,
                            self._end_keys([destination_point], times, set(roots)))
        total, metres, _, _ = self._best(origin_point, destination_point, bucket, trees, times)
        if not np.isfinite(total):
            raise NoRouteError("no route connects the origin to the destination")
        return EtaResult(float(total), float(metres), origin_point, destination_point,
                         departure_time, traffic)

    def route(self, origin: Point, destination: Point,
              departure_time: dt.datetime | None = None, *,
              geometry: bool = True) -> RouteResult:
        """The route as segments with per-segment times, its geometry (left empty with
        ``geometry=False``), and whether the Dijkstra fallback was needed (when the model's
        pointers do not form a path)."""
        origin_point, destination_point = self.snap([origin, destination])
        bucket, traffic = self.run_key(departure_time)
        times = self.model.segment_times_s(bucket)
        roots = [leg.key for leg in self._starts(origin_point, times)]
        trees = self._trees(roots, bucket,
                            self._end_keys([destination_point], times, set(roots)))
        total, metres, start, end = self._best(origin_point, destination_point, bucket, trees,
                                               times)
        if start is None:
            raise NoRouteError("no route connects the origin to the destination")
        if not self._path_exact(trees[start.key], start.key,
                                end.via if end.via >= 0 else end.key):
            # the search stopped before every pointer on the way was settled: whole run
            trees = self._trees(roots, bucket, whole=True)
            total, metres, start, end = self._best(origin_point, destination_point, bucket,
                                                   trees, times)
        fallback_reason = None
        if start.segment == end.segment >= 0 and start.position <= end.position:
            middle: list[int] = []
        else:
            # around and back onto the same segment: follow the tree to the turn back
            key = end.via if end.via >= 0 else end.key
            middle = self._follow(trees[start.key].parent, start.key, key)
            if middle is None:
                fallback_reason = ("the model's predecessor pointers do not form a path; "
                                   "routed by Dijkstra over the model's segment times")
                tree = self._exact_tree(start.key, times, bucket)
                middle = self._follow(tree.parent, start.key, key)
                if middle is None:
                    raise NoRouteError("no route connects the origin to the destination")
                metres = self._fallback_metres(start, end, times, bucket)
            if end.via >= 0:
                middle = [*middle, end.via]
        segments, partial = self._assemble(start, end, middle)
        raw = np.array([times[s] * share for s, share in zip(segments, partial, strict=True)])
        # Per-segment times are the model's segment times, scaled to sum to its ETA.
        scaled = raw * (total / raw.sum()) if raw.sum() > 0 else raw
        return RouteResult(
            eta_s=float(total), distance_m=float(metres), origin=origin_point,
            destination=destination_point, departure_time=departure_time,
            segments=segments, segment_times_s=[float(x) for x in scaled],
            segment_distances_m=[float(self.graph["length_m"][s] * share)
                                 for s, share in zip(segments, partial, strict=True)],
            coordinates=self._geometry(segments, start, end, origin_point, destination_point)
            if geometry else [],
            fallback_used=fallback_reason is not None, fallback_reason=fallback_reason,
            traffic=traffic,
        )

    def _end_keys(self, points: list[Waypoint], times: np.ndarray,
                  starts: set[int] | None = None) -> np.ndarray:
        """Keys a query's trees must answer: the destinations' end keys and, in turn mode,
        the segments turning into them (a trip may loop back onto its own segment: only
        end keys among ``starts``, the roots' keys, when the caller gives them)."""
        keys = [leg.key for p in points for leg in self._ends(p, times)]
        if self.graph_mode.keys_are_segments:  # the segments turning into them
            into = self._turns_into()
            keys += [int(into[1][t]) for key in list(keys)
                     if starts is None or key in starts
                     for t in range(into[0][key], into[0][key + 1])]
        return np.array(keys, dtype=np.int64)

    def _turns_into(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(offsets [E+1], turn senders, turn ids), grouped by the segment turned into."""
        if not hasattr(self, "_into"):
            turn_to = self.graph["turn_to"]
            order = np.argsort(turn_to, kind="stable")
            offsets = np.concatenate([[0], np.cumsum(np.bincount(
                turn_to, minlength=self.graph.num_segments))])
            self._into = (offsets, self.graph["turn_from"][order], order)
        return self._into

    def _loop(self, tree: _Tree, segment: int, bucket: int, times: np.ndarray):
        """(seconds to the end of ``segment`` again, the segment turned from, metres to
        it) along ``tree`` and the cheapest turn back onto ``segment``; None if none."""
        offsets, senders, turn_ids = self._turns_into()
        turn_times = self.model.turn_times_s(bucket)
        best = None
        for i in range(offsets[segment], offsets[segment + 1]):
            via = int(senders[i])
            if via == segment or not np.isfinite(tree.time_s[via]):
                continue
            extra = 0.0 if turn_times is None else float(turn_times[turn_ids[i]])
            total = float(tree.time_s[via]) + extra + float(times[segment])
            if best is None or total < best[0]:
                metres = float(tree.length_m[via]) + float(self.graph["length_m"][segment])
                best = (total, via, metres)
        return best

    def _path_exact(self, tree: _Tree | _PartialTree, root: int, key: int) -> bool:
        """Whether every pointer from ``key`` back to ``root`` is the whole-graph run's."""
        if isinstance(tree, _Tree) and tree.exact_parent is None:
            return True
        current = key
        for _ in range(len(tree.parent) + 1):
            if current == root:
                return True
            if not tree.proven(current):
                return False
            previous = int(tree.parent[current])
            if previous < 0:
                return True  # unreached or broken: the fallback handles it
            current = int(self.graph_mode.previous_key(self.graph, previous))
        return False

    def _follow(self, parent: np.ndarray, root: int, key: int) -> list[int] | None:
        return self.graph_mode.follow(self.graph, parent, root, key)

    @staticmethod
    def _assemble(start: Leg, end: Leg, middle: list[int]) -> tuple[list[int], list[float]]:
        """Segments and the share of each driven; legs standing on a node add nothing."""
        if start.segment == end.segment >= 0 and not middle and start.position <= end.position:
            return [start.segment], [end.position - start.position]
        segments = [start.segment, *middle, end.segment]
        shares = [1 - start.position, *([1.0] * len(middle)), end.position]
        kept = [(s, share) for s, share in zip(segments, shares, strict=True) if s >= 0]
        return [s for s, _ in kept], [share for _, share in kept]

    def _geometry(self, segments: list[int], start: Leg, end: Leg, origin: Waypoint,
                  destination: Waypoint) -> list[Point]:
        lon, lat = self.graph["path_lon"], self.graph["path_lat"]
        coordinates: list[Point] = [(origin.lon, origin.lat)]
        for index, segment in enumerate(segments):
            piece = self.graph.segment_path(segment)
            points = list(zip(lon[piece].tolist(), lat[piece].tolist(), strict=True))
            if index == 0 or index == len(segments) - 1:
                # Keep only the points between the snapped position(s) on partial segments.
                cumulative = np.concatenate([[0.0], np.cumsum(np.hypot(
                    np.diff(lon[piece]) * np.cos(np.radians(lat[piece][:-1])),
                    np.diff(lat[piece])))])
                share = cumulative / max(cumulative[-1], 1e-12)
                first = index == 0 and segment == start.segment
                last = index == len(segments) - 1 and segment == end.segment
                low = start.position if first else 0.0
                high = end.position if last else 1.0
                points = [p for p, s in zip(points, share, strict=True) if low < s < high]
            coordinates.extend(points)
        coordinates.append((destination.lon, destination.lat))
        return coordinates

    def isochrone(self, origin: Point, max_seconds: float,
                  departure_time: dt.datetime | None = None) -> IsochroneResult:
        """Everything reachable within `max_seconds`: one model run from the origin's start
        nodes gives the arrival time at every node; each segment is then driven as far as
        the time left at its start node allows."""
        if not (np.isfinite(max_seconds) and max_seconds > 0):
            raise InputError(f"max_seconds must be a positive number, got {max_seconds}")
        (point,) = self.snap([origin])
        bucket, traffic = self.run_key(departure_time)
        times = self.model.segment_times_s(bucket)
        starts = self._starts(point, times)
        trees = self._trees([leg.key for leg in starts], bucket, whole=True)
        arrival = np.min([leg.time_s + trees[leg.key].time_s for leg in starts], axis=0)
        node_time = self.graph_mode.node_times(self.graph, arrival)
        with np.errstate(invalid="ignore"):
            left = max_seconds - node_time[self.graph["edge_source"]]  # [E]
            reach = np.clip(np.nan_to_num(left / times, nan=0.0, neginf=0.0), 0.0, 1.0)
        segments = np.flatnonzero(reach > 0)
        starts_share = np.zeros(len(segments))
        ends_share = reach[segments]
        # The origin's own segment(s), driven from the snapped position onwards.
        own = [(leg.segment, leg.position,
                min(1.0, leg.position + max_seconds / max(times[leg.segment], 1e-9)))
               for leg in starts if leg.segment >= 0]
        return IsochroneResult(
            origin=point, max_seconds=float(max_seconds), node_time_s=node_time,
            piece_segment=np.concatenate([segments, [s for s, _, _ in own]]).astype(np.int64),
            piece_start=np.concatenate([starts_share, [a for _, a, _ in own]]),
            piece_end=np.concatenate([ends_share, [b for _, _, b in own]]),
            departure_time=departure_time, traffic=traffic,
        )

    def matrix(self, origins: list[Point], destinations: list[Point],
               departure_time: dt.datetime | None = None, *,
               distances: bool = True) -> MatrixResult:
        """Durations and distances for every (origin, destination) pair; one model run per
        distinct origin node, all of them in one batch. ``distances=False``: durations
        only (distances nan), by the model's many-to-many where it has one."""
        if not origins or not destinations:
            raise InputError("a matrix needs at least one origin and one destination")
        snapped = self.snap([*origins, *destinations])
        origin_points, destination_points = snapped[: len(origins)], snapped[len(origins):]
        bucket, traffic = self.run_key(departure_time)
        times = self.model.segment_times_s(bucket)
        start_nodes = [leg.key for p in origin_points for leg in self._starts(p, times)]
        if not distances and self.model.targets_are_cheap:
            end_keys = self._end_keys(destination_points, times, set(start_nodes))
            trees = self._duration_trees(start_nodes, end_keys, bucket)
            durations, _ = self._cells(origin_points, destination_points, bucket, trees, times)
            return MatrixResult(durations, np.full_like(durations, np.nan), origin_points,
                                destination_points, traffic)
        trees = self._trees(start_nodes, bucket, self._end_keys(destination_points, times))
        durations, metres = self._cells(origin_points, destination_points, bucket, trees,
                                        times)
        return MatrixResult(durations, metres, origin_points, destination_points, traffic)

    def _duration_trees(self, roots: list[int], keys: np.ndarray, bucket) -> dict[int, _Tree]:
        """Trees that know only the times at ``keys`` (many-to-many, not cached): enough for
        :meth:`_cells`' durations; their metres read 0."""
        roots_array = np.unique(np.asarray(roots, dtype=np.int64))
        keys = np.unique(keys)
        started = time.perf_counter()
        seconds = self.model.durations_to(roots_array, keys, bucket)
        with self._lock:
            self.stats["runs"] += len(roots_array)
            self.stats["run_seconds"] += time.perf_counter() - started
        size = self.graph_mode.num_keys(self.graph)
        parent = np.full(size, -1, dtype=np.int32)
        metres = np.zeros(size)
        trees = {}
        for row, root in enumerate(roots_array.tolist()):
            time_s = np.full(size, np.inf)
            time_s[keys] = seconds[row]
            trees[root] = _Tree(time_s=time_s, parent=parent, length_m=metres)
        return trees

    def _cells(self, origin_points: list[Waypoint], destination_points: list[Waypoint],
               bucket: int, trees: dict[int, _Tree | _PartialTree], times: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        """``[O, D]`` durations and distances (nan where no route): what :meth:`_best`
        answers for every cell, one origin at a time across all destinations. The same
        sums in the same order and dtypes (float64 seconds and metres), the first
        cheapest (start, end) leg pair as ``_best`` picks it; cells ``_best`` treats
        specially (start and end on one segment: a direct ride or a loop; an end on a
        node; metres lost where the model's pointers break) are answered by ``_best``
        itself.
        ``tests/models/inference/test_predictor_matrix.py`` checks bit-equality with the per-cell
        loop."""
        count = len(destination_points)
        durations = np.full((len(origin_points), count), np.nan)
        distances = np.full_like(durations, np.nan)
        ends = [self._ends(p, times) for p in destination_points]
        if times.dtype != np.float64 or not ends:
            for i, origin_point in enumerate(origin_points):
                starts = self._starts(origin_point, times)
                for j, destination_point in enumerate(destination_points):
                    self._cell(durations, distances, i, j, origin_point, destination_point,
                               bucket, trees, times, starts, ends[j])
            return durations, distances
        width = max(len(legs) for legs in ends)
        end_key = np.zeros((count, width), dtype=np.int64)
        end_time = np.full((count, width), np.inf)  # padding is never the cheapest
        end_length = np.zeros((count, width))
        on_segment: dict[int, list[int]] = {}  # segment -> destinations with an end on it
        at_node = []  # destinations with an end leg standing on a node
        for j, legs in enumerate(ends):
            for column, leg in enumerate(legs):
                end_key[j, column], end_time[j, column] = leg.key, leg.time_s
                end_length[j, column] = leg.length_m
                if leg.segment >= 0:
                    on_segment.setdefault(leg.segment, []).append(j)
                else:
                    at_node.append(j)
        keys = end_key.ravel().tolist()
        rows = np.arange(count)
        for i, origin_point in enumerate(origin_points):
            starts = self._starts(origin_point, times)
            total = np.empty((count, len(starts), width))  # [D, S, W]
            metres = np.empty((count, len(starts), width))
            for index, start in enumerate(starts):
                tree = trees[start.key]
                if isinstance(tree, _Tree):
                    tree_time, tree_length = tree.time_s[end_key], tree.length_m[end_key]
                else:
                    tree_time = np.array([tree.time_s[k] for k in keys]).reshape(count, width)
                    tree_length = np.array([tree.length_m[k] for k in keys],
                                           dtype=np.float64).reshape(count, width)
                total[:, index] = (start.time_s + tree_time) + end_time
                metres[:, index] = (float(start.length_m) + tree_length) + end_length
            flat = total.reshape(count, -1)  # start-major, as _best loops
            flat = np.where(np.isnan(flat), np.inf, flat)
            best = np.argmin(flat, axis=1)
            cheapest = flat[rows, best]
            found = np.isfinite(cheapest)
            durations[i, found] = cheapest[found]
            distances[i, found] = metres.reshape(count, -1)[rows, best][found]
            special = {j for start in starts if start.segment >= 0
                       for j in on_segment.get(start.segment, ())}
            if any(start.segment < 0 for start in starts):
                special.update(at_node)
            special.update(np.flatnonzero(found & ~np.isfinite(distances[i])).tolist())
            for j in special:
                durations[i, j] = distances[i, j] = np.nan
                self._cell(durations, distances, i, j, origin_point, destination_points[j],
                           bucket, trees, times, starts, ends[j])
        return durations, distances

    def _cell(self, durations: np.ndarray, distances: np.ndarray, i: int, j: int,
              origin: Waypoint, destination: Waypoint, bucket: int, trees: dict,
              times: np.ndarray, starts: list[Leg], ends: list[Leg]) -> None:
        total, metres, _, _ = self._best(origin, destination, bucket, trees, times,
                                         starts=starts, ends=ends)
        if np.isfinite(total):
            durations[i, j], distances[i, j] = total, metres

    def eta_pairs(self, origins: list[Point], destinations: list[Point],
                  departure_time: dt.datetime | None = None) -> PairsResult:
        """ETA and distance of each pair ``(origins[i], destinations[i])``, exactly as
        :meth:`eta` answers it, but with one model run per distinct origin node, all of
        them in one batch (batch scoring's path). nan where no route connects a pair;
        raises NoSegmentError like :meth:`matrix` (callers pre-filter unsnappable points).
        """
        if len(origins) != len(destinations):
            raise InputError(f"eta_pairs needs as many origins ({len(origins)}) as "
                             f"destinations ({len(destinations)})")
        snapped = self.snap([*origins, *destinations])
        origin_points, destination_points = snapped[: len(origins)], snapped[len(origins):]
        bucket, traffic = self.run_key(departure_time)
        times = self.model.segment_times_s(bucket)
        wanted: dict[int, list[np.ndarray]] = {}
        for origin_point, destination_point in zip(origin_points, destination_points,
                                                   strict=True):
            starts = [leg.key for leg in self._starts(origin_point, times)]
            ends = self._end_keys([destination_point], times, set(starts))
            for key in starts:
                wanted.setdefault(key, []).append(ends)
        trees = self._trees(list(wanted), bucket,
                            {root: np.unique(np.concatenate(keys))
                             for root, keys in wanted.items()})
        durations = np.full(len(origins), np.nan)
        distances = np.full_like(durations, np.nan)
        for i, (origin_point, destination_point) in enumerate(
                zip(origin_points, destination_points, strict=True)):
            total, metres, _, _ = self._best(origin_point, destination_point, bucket, trees,
                                             times)
            if np.isfinite(total):
                durations[i], distances[i] = total, metres
        return PairsResult(durations, distances, origin_points, destination_points, traffic)
