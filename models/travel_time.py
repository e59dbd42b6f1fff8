"""The interface between the Predictor and whatever produces travel times.

A :class:`TravelTimeModel` answers, for a batch of origin nodes and a departure time, the
travel time from each origin to every node and the segment by which each node is reached
(a shortest-path tree). The learned ETA model (processor + encoder/decoder) and the
baselines implement it, so the HTTP service and batch scoring use one code path.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.sparse.csgraph import dijkstra

from data_pipeline.road_graph import RoadGraph


@dataclass(frozen=True)
class OriginRun:
    """Travel times from a batch of origins to every node (node mode) or to the end of every
    segment (turn mode, where origins are segments too)."""

    origins: np.ndarray  # [B] int64 origin node (turn mode: segment) indices
    node_time_s: np.ndarray  # [B, K] float64 seconds from origin; inf where unreachable
    parent_segment: np.ndarray  # [B, K] int64 segment reaching each node (turn mode: the
    # previous segment); -1 at the origin and where unreached
    #: [B, K] bool, for runs restricted to a corridor: which times (and which parents) are
    #: proven equal to the whole graph's (models.corridor); None: all of them
    exact_time: np.ndarray | None = None
    exact_parent: np.ndarray | None = None
    #: [B, K] metres along each tree, for runs that only answered their targets (no
    #: parents: metres were measured by following the pointers); None: from parents
    length_m: np.ndarray | None = None


class TravelTimeModel(Protocol):
    """What the Predictor needs from a model."""

    name: str
    identity: str  # a hash that changes whenever the model's answers could change
    #: "node": trees over junctions, no turn costs; "turn": trees over segments via turns
    graph_mode: str

    def time_bucket(self, departure_time: dt.datetime | None) -> int:
        """The departure-time bucket the model distinguishes (0 if it ignores time)."""
        ...

    def segment_times_s(self, bucket: int) -> np.ndarray:
        """``[E]`` positive seconds per segment (used for partial segments at the ends of a
        trip and for the Dijkstra fallback)."""
        ...

    def turn_times_s(self, bucket: int) -> np.ndarray | None:
        """``[T]`` seconds per turn (turn mode), or None."""
        ...

    def run_from(self, origins: np.ndarray, bucket: int) -> OriginRun:
        """Travel times from each of ``origins`` (node indices; segments in turn mode)."""
        ...


class _Search:
    """Dijkstra (scipy) over a fixed sparse matrix, whole-graph or only as far as settling
    given targets needs (the search limit grows 4x until they are settled: every value it
    returns is exact; what it leaves at inf is farther than the limit)."""

    def __init__(self, matrix, key_xy: np.ndarray, rate_s_per_m: float):
        self.matrix = matrix
        self.key_xy = key_xy
        self.rate = rate_s_per_m

    def run(self, origins: np.ndarray, targets: list[np.ndarray] | None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        origins = np.asarray(origins, dtype=np.int64)
        if targets is None:
            times, predecessors = dijkstra(self.matrix, directed=True, indices=origins,
                                           return_predecessors=True)
            return np.atleast_2d(times), np.atleast_2d(predecessors).astype(np.int64), None
        times = np.empty((len(origins), self.matrix.shape[0]))
        predecessors = np.empty(times.shape, dtype=np.int64)
        for b, (origin, wanted) in enumerate(zip(origins, targets, strict=True)):
            wanted = np.asarray(wanted, dtype=np.int64)
            span = float(np.hypot(*(self.key_xy[wanted] - self.key_xy[origin]).T).max(
                initial=0.0))
            limit = self.rate * (1.5 * span + 500.0)
            for _ in range(4):
                row, pred = dijkstra(self.matrix, directed=True, indices=int(origin),
                                     return_predecessors=True, limit=limit)
                if np.isfinite(row[wanted]).all():
                    break
                limit *= 4
            else:
                row, pred = dijkstra(self.matrix, directed=True, indices=int(origin),
                                     return_predecessors=True)
            times[b], predecessors[b] = row, pred
        return times, predecessors, np.isfinite(times)


def _rate(times: np.ndarray, length: np.ndarray) -> float:
    """Seconds per metre of a typical (75th percentile) segment."""
    moving = length > 1.0
    return float(np.quantile(times[moving] / length[moving], 0.75)) if moving.any() else 1.0


class _NodeTrees:
    """Shortest-path trees over junctions on fixed per-segment weights."""

    def __init__(self, graph: RoadGraph, weights: np.ndarray):
        self.graph = graph
        xy = np.stack([graph["node_x_m"], graph["node_y_m"]], 1).astype(np.float64)
        self.search = _Search(graph.to_scipy(weights), xy,
                              _rate(weights, graph["length_m"].astype(np.float64)))
        # (predecessor node, node) -> the lightest segment between them
        source, target = graph["edge_source"], graph["edge_target"]
        order = np.lexsort((weights, target, source))
        keys = source[order] * graph.num_nodes + target[order]
        first = np.concatenate([[True], keys[1:] != keys[:-1]])
        self.lookup_keys, self.lookup_segments = keys[first], order[first]

    def run(self, origins: np.ndarray, targets: list[np.ndarray] | None = None,
            pointers: bool = True) -> OriginRun:
        origins = np.asarray(origins, dtype=np.int64)
        times, predecessors, exact = self.search.run(origins, targets)
        num_nodes = self.graph.num_nodes
        if not pointers and targets is not None:  # walk back from the targets only
            return self._answer_targets(origins, times, predecessors, targets)
        nodes = np.broadcast_to(np.arange(num_nodes), predecessors.shape)
        reached = predecessors >= 0
        query = np.where(reached, predecessors * num_nodes + nodes, -1)
        position = np.clip(np.searchsorted(self.lookup_keys, query), 0,
                           len(self.lookup_keys) - 1)
        parent = np.where(reached, self.lookup_segments[position], -1)
        return OriginRun(origins=origins, node_time_s=times,
                         parent_segment=parent.astype(np.int64), exact_time=exact,
                         exact_parent=exact)

    def _answer_targets(self, origins, times, predecessors, targets) -> OriginRun:
        from models import kernels

        length = self.graph["length_m"].astype(np.float64)
        lengths = np.full(times.shape, np.nan)
        exact = np.zeros(times.shape, dtype=bool)
        parents = np.full(times.shape, -1, dtype=np.int64)
        for b, (root, wanted) in enumerate(zip(origins.tolist(), targets, strict=True)):
            keys = np.unique(np.asarray(wanted, dtype=np.int64))
            metres, _ = kernels.walk_predecessors(
                np.ascontiguousarray(predecessors[b], np.int64), self.lookup_keys,
                self.lookup_segments, length, int(root), keys, parents[b])
            lengths[b, keys], lengths[b, root] = metres, 0.0
            exact[b, keys] = exact[b, root] = True  # Dijkstra settles its targets exactly
        return OriginRun(origins=origins, node_time_s=times, parent_segment=parents,
                         exact_time=exact, exact_parent=exact | (parents >= 0),
                         length_m=lengths)


def dijkstra_tree(graph: RoadGraph, weights: np.ndarray, origins: np.ndarray) -> OriginRun:
    """Exact shortest-path tree by Dijkstra (scipy) on per-segment ``weights``."""
    return _NodeTrees(graph, np.asarray(weights, dtype=np.float64)).run(origins)


def _answer_line_targets(origins: np.ndarray, times: np.ndarray, predecessors: np.ndarray,
                         length: np.ndarray, targets: list[np.ndarray]) -> OriginRun:
    """Turn mode: an OriginRun answering ``targets`` with metres walked back along the
    predecessor segments (no whole-tree pass; see models.kernels.walk_parents)."""
    from models import kernels

    lengths = np.full(times.shape, np.nan)
    exact = np.zeros(times.shape, dtype=bool)
    for b, (root, wanted) in enumerate(zip(origins.tolist(), targets, strict=True)):
        keys = np.unique(np.asarray(wanted, dtype=np.int64))
        metres, _ = kernels.walk_parents(np.ascontiguousarray(predecessors[b], np.int64),
                                         length, int(root), keys)
        lengths[b, keys], lengths[b, root] = metres, 0.0
        exact[b, keys] = exact[b, root] = True  # Dijkstra settles its targets exactly
    # a predecessor is only set on a settled segment: final
    return OriginRun(origins=origins, node_time_s=times, parent_segment=predecessors,
                     exact_time=exact, exact_parent=exact | (predecessors >= 0),
                     length_m=lengths)


class FreeFlowModel:
    """Baseline 1: Dijkstra on length / (imputed) maxspeed, osmnx's ``add_edge_travel_times``."""

    name = "freeflow"
    graph_mode = "node"
    #: run_from can stop once given targets are settled
    supports_targets = True

    def __init__(self, graph: RoadGraph):
        self.graph = graph
        self._times = graph["free_flow_s"].astype(np.float64)
        self.identity = f"freeflow:{graph.identity}"
        self._trees = None

    def time_bucket(self, departure_time: dt.datetime | None) -> int:
        return 0

    def segment_times_s(self, bucket: int) -> np.ndarray:
        return self._times

    def turn_times_s(self, bucket: int) -> None:
        return None

    def run_from(self, origins: np.ndarray, bucket: int, *,
                 targets: list[np.ndarray] | None = None, pointers: bool = True) -> OriginRun:
        if self._trees is None:
            self._trees = _NodeTrees(self.graph, self._times)
        return self._trees.run(origins, targets, pointers)


def _line_matrix(graph: RoadGraph, segment_times: np.ndarray, turn_times: np.ndarray | None):
    from scipy.sparse import csr_matrix

    turn_from, turn_to = graph["turn_from"], graph["turn_to"]
    weight = np.asarray(segment_times, dtype=np.float64)[turn_to]
    if turn_times is not None:
        weight = weight + np.asarray(turn_times, dtype=np.float64)
    weight = np.maximum(weight, 1e-6)  # scipy treats an explicit 0 as "no arc"
    count = graph.num_segments
    return csr_matrix((weight, (turn_from, turn_to)), shape=(count, count))


def _line_search(graph: RoadGraph, segment_times: np.ndarray,
                 turn_times: np.ndarray | None) -> _Search:
    x, y = graph["node_x_m"], graph["node_y_m"]
    target = graph["edge_target"]  # a segment key sits at its end node
    return _Search(_line_matrix(graph, segment_times, turn_times),
                   np.stack([x[target], y[target]], 1).astype(np.float64),
                   _rate(np.asarray(segment_times, dtype=np.float64),
                         graph["length_m"].astype(np.float64)))


def line_dijkstra_tree(graph: RoadGraph, segment_times: np.ndarray,
                       turn_times: np.ndarray | None, origin_segments: np.ndarray) -> OriginRun:
    """Exact shortest-path tree on the turn (line) graph: vertices are segments, arcs are the
    allowed turns ``a -> b`` weighted ``turn time + time of b``; times are to the *end* of
    each segment, parents are previous segments. Honours turn restrictions."""
    origins = np.asarray(origin_segments, dtype=np.int64)
    times, predecessors, _ = _line_search(graph, segment_times, turn_times).run(origins, None)
    return OriginRun(origins=origins, node_time_s=times, parent_segment=predecessors)


class FreeFlowTurnModel(FreeFlowModel):
    """Free-flow times on the turn graph: the same segment times, turn restrictions honoured."""

    name = "freeflow-turns"
    graph_mode = "turn"

    def __init__(self, graph: RoadGraph):
        super().__init__(graph)
        self.identity = f"freeflow-turns:{graph.identity}"
        self._search = None

    def run_from(self, origins: np.ndarray, bucket: int, *,
                 targets: list[np.ndarray] | None = None, pointers: bool = True) -> OriginRun:
        if self._search is None:
            self._search = _line_search(self.graph, self._times, None)
        origins = np.asarray(origins, dtype=np.int64)
        times, predecessors, exact = self._search.run(origins, targets)
        if not pointers and targets is not None:  # entering segment b drives all of it
            return _answer_line_targets(origins, times, predecessors,
                                        self.graph["length_m"].astype(np.float64), targets)
        return OriginRun(origins=origins, node_time_s=times, parent_segment=predecessors,
                         exact_time=exact, exact_parent=exact)
