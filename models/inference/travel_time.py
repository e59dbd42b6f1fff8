"""The interface between the Predictor and whatever produces travel times.

A :class:`TravelTimeModel` answers, for a batch of origin nodes and a departure time, the
travel time from each origin to every node and the segment by which each node is reached
(a shortest-path tree). The learned ETA model (processor + encoder/decoder) and the
baselines implement it, so the HTTP service and batch scoring use one code path.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
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
    #: for runs that answered only their targets, instead of all of the above (then
    #: ``node_time_s`` is ``[B, 0]``): per origin the answered keys (exact) with their
    #: seconds and metres along the tree, and the (key, parent) pairs proven on the paths
    #: back from them: ``(keys, seconds, metres, path_keys, path_parents)``
    answers: list[tuple[np.ndarray, ...]] | None = None


class TravelTimeModel(Protocol):
    """What the Predictor needs from a model: its answers (the methods) and what it can do
    (the capability attributes, declared by every model rather than guessed by callers)."""

    name: str
    identity: str  # a hash that changes whenever the model's answers could change
    #: "node": trees over junctions, no turn costs; "turn": trees over segments via turns
    graph_mode: str
    #: :meth:`run_from` takes ``targets`` (per origin, the keys the caller reads) and
    #: ``pointers`` and may then stop once those keys are settled, answering only them
    supports_targets: bool
    #: targeted runs are hierarchy queries, a small fraction of a whole-graph run (then a
    #: repeated root never widens to a whole run) and ``durations_to(roots, keys, bucket)``
    #: answers ``[R, K]`` seconds without pointers (duration matrices)
    targets_are_cheap: bool
    #: run keys carry a live traffic state (:class:`models.inference.live.RunKey`) beside
    #: the departure-time bucket
    uses_traffic: bool
    #: the IANA time zone of the model's clock for departures given with an offset (None:
    #: departure times are read as they come)
    timezone: str | None

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

    def run_from(self, origins: np.ndarray, bucket: int, *,
                 targets: list[np.ndarray] | None = None, pointers: bool = True) -> OriginRun:
        """Travel times from each of ``origins`` (node indices; segments in turn mode).
        ``targets`` and ``pointers`` are passed only to models that declare
        ``supports_targets``: with ``pointers=False`` a targeted run may leave out the
        pointers off the paths back from the targets."""
        ...


def _whole(matrix, origins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dijkstra (scipy) from every origin over the whole graph: (times, predecessors)."""
    times, predecessors = dijkstra(matrix, directed=True, indices=origins,
                                   return_predecessors=True)
    return np.atleast_2d(times), np.atleast_2d(predecessors).astype(np.int64)


class _TargetSearch:
    """Dijkstra that stops once given targets are settled (compiled,
    :func:`models.execution.kernels.guide_search`): its cost grows with the trip, not the map, and
    every settled value and predecessor is final. ``parent_of`` maps the reaching edge to
    the tree's parent (node mode: the segment; turn mode: the previous segment)."""

    def __init__(self, sender: np.ndarray, receiver: np.ndarray, weight: np.ndarray,
                 length: np.ndarray, num_keys: int, parent_is_sender: bool, *,
                 coordinates: np.ndarray | None = None, hierarchy=None):
        from models.execution.cch import Hierarchy, ScalarQueries
        from models.execution.executor import Csr

        self.csr = Csr.build(sender, receiver, num_keys)
        self.weight = np.ascontiguousarray(weight, dtype=np.float64)
        self.length = np.ascontiguousarray(np.asarray(length, np.float64)[:, None])
        self.parent_is_sender = parent_is_sender
        #: answers for given targets come from a contraction hierarchy (models.execution.cch)
        #: when one is given (or ``coordinates`` to build it: topology shared across weights)
        if hierarchy is None and coordinates is not None:
            hierarchy = Hierarchy.build(self.csr.sender, self.csr.receiver, num_keys,
                                        coordinates)
        self.hierarchy = hierarchy
        self.queries = None if hierarchy is None else ScalarQueries(
            hierarchy, self.csr, self.weight, self.length[:, 0], parent_is_sender)

    def run(self, origins: np.ndarray, targets: list[np.ndarray], pointers: bool
            ) -> OriginRun:
        from models.execution import kernels

        csr = self.csr
        if not pointers and self.queries is not None:  # hierarchy queries
            answers = [self.queries.answer(root, np.unique(np.append(
                np.asarray(wanted, dtype=np.int64), root)))
                for root, wanted in zip(origins.tolist(), targets, strict=True)]
            empty = np.zeros((len(origins), 0))
            return OriginRun(origins, empty, empty.astype(np.int64), answers=answers)
        if not pointers:  # answers at the targets and the paths back only: no [N] arrays
            answers = []
            for root, wanted in zip(origins.tolist(), targets, strict=True):
                keys = np.unique(np.append(np.asarray(wanted, dtype=np.int64), root))
                dist, settled, via = self._search(root, keys)
                seconds = np.where(settled[keys], dist[keys], np.inf)
                metres = kernels.path_costs(csr.sender, csr.edge_row, self.length, via,
                                            int(root), keys)[:, 0]
                # a target never settled is unreachable (the search ran out): inf, exact
                path_keys, path_parents = kernels.path_parents(
                    csr.sender, csr.edge_row, via, int(root), keys, self.parent_is_sender)
                answers.append((keys, seconds, metres, path_keys, path_parents))
            empty = np.zeros((len(origins), 0))
            return OriginRun(origins, empty, empty.astype(np.int64), answers=answers)
        shape = (len(origins), csr.num_nodes)
        times, parents = np.full(shape, np.inf), np.full(shape, -1, dtype=np.int64)
        settled_all = np.zeros(shape, dtype=bool)
        for b, (root, wanted) in enumerate(zip(origins.tolist(), targets, strict=True)):
            keys = np.unique(np.asarray(wanted, dtype=np.int64))
            dist, settled, via = self._search(root, keys)
            times[b] = np.where(settled, dist, np.inf)
            step = np.maximum(via, 0)
            parents[b] = np.where(settled & (via >= 0), csr.sender[step]
                                  if self.parent_is_sender else csr.edge_row[step], -1)
            settled_all[b] = settled
            settled_all[b, keys] = True  # unsettled targets are unreachable: inf is exact
        return OriginRun(origins, times, parents, exact_time=settled_all,
                         exact_parent=settled_all)

    def _search(self, root: int, keys: np.ndarray):
        from models.execution import kernels

        csr = self.csr
        is_target = np.zeros(csr.num_nodes, dtype=np.bool_)
        is_target[keys] = True
        return kernels.guide_search(csr.indptr, csr.receiver, csr.edge_row, self.weight,
                                    int(root), is_target, int(is_target.sum()))


class _NodeTrees:
    """Shortest-path trees over junctions on fixed per-segment weights."""

    def __init__(self, graph: RoadGraph, weights: np.ndarray, *, hierarchy: bool = False):
        from models.execution.cch import key_coordinates

        self.graph = graph
        self.matrix = graph.to_scipy(weights)
        # (predecessor node, node) -> the lightest segment between them
        source, target = graph["edge_source"], graph["edge_target"]
        order = np.lexsort((weights, target, source))
        keys = source[order] * graph.num_nodes + target[order]
        first = np.concatenate([[True], keys[1:] != keys[:-1]])
        self.lookup_keys, self.lookup_segments = keys[first], order[first]
        self.targeted = _TargetSearch(
            source, target, weights, graph["length_m"], graph.num_nodes,
            parent_is_sender=False,
            coordinates=key_coordinates(graph, False) if hierarchy else None)

    def run(self, origins: np.ndarray, targets: list[np.ndarray] | None = None,
            pointers: bool = True) -> OriginRun:
        origins = np.asarray(origins, dtype=np.int64)
        if targets is not None:
            return self.targeted.run(origins, targets, pointers)
        times, predecessors = _whole(self.matrix, origins)
        num_nodes = self.graph.num_nodes
        nodes = np.broadcast_to(np.arange(num_nodes), predecessors.shape)
        reached = predecessors >= 0
        query = np.where(reached, predecessors * num_nodes + nodes, -1)
        position = np.clip(np.searchsorted(self.lookup_keys, query), 0,
                           len(self.lookup_keys) - 1)
        parent = np.where(reached, self.lookup_segments[position], -1)
        return OriginRun(origins=origins, node_time_s=times,
                         parent_segment=parent.astype(np.int64))


def dijkstra_tree(graph: RoadGraph, weights: np.ndarray, origins: np.ndarray) -> OriginRun:
    """Exact shortest-path tree by Dijkstra (scipy) on per-segment ``weights``."""
    return _NodeTrees(graph, np.asarray(weights, dtype=np.float64)).run(origins)


class FreeFlowModel:
    """Baseline 1: Dijkstra on length / (imputed) maxspeed, osmnx's ``add_edge_travel_times``."""

    name = "freeflow"
    graph_mode = "node"
    #: run_from can stop once given targets are settled
    supports_targets = True
    targets_are_cheap = True
    uses_traffic = False
    timezone = None

    def __init__(self, graph: RoadGraph):
        self.graph = graph
        self._times = graph["free_flow_s"].astype(np.float64)
        self.identity = f"freeflow:{graph.identity}"
        self._trees = None
        self._build_lock = threading.Lock()

    def time_bucket(self, departure_time: dt.datetime | None) -> int:
        return 0

    def segment_times_s(self, bucket: int) -> np.ndarray:
        return self._times

    def turn_times_s(self, bucket: int) -> None:
        return None

    def _node_trees(self) -> _NodeTrees:
        with self._build_lock:
            if self._trees is None:
                self._trees = _NodeTrees(self.graph, self._times, hierarchy=True)
            return self._trees

    def run_from(self, origins: np.ndarray, bucket: int, *,
                 targets: list[np.ndarray] | None = None, pointers: bool = True) -> OriginRun:
        return self._node_trees().run(origins, targets, pointers)

    def durations_to(self, roots: np.ndarray, keys: np.ndarray, bucket) -> np.ndarray:
        """``[R, K]`` seconds from each root to each key (the hierarchy's many-to-many)."""
        return self._node_trees().targeted.queries.durations(roots, keys)


def line_graph(graph: RoadGraph, segment_times: np.ndarray,
               turn_times: np.ndarray | None = None):
    """``[E, E]`` sparse matrix of the turn (line) graph: one arc per allowed turn ``a -> b``
    weighted ``turn time + time of b``. Parallel turns between the same two segments
    cannot occur (turns are segment pairs)."""
    from scipy.sparse import csr_matrix

    turn_from = np.asarray(graph["turn_from"], dtype=np.int64)
    turn_to = np.asarray(graph["turn_to"], dtype=np.int64)
    weight = np.asarray(segment_times, dtype=np.float64)[turn_to]
    if turn_times is not None:
        weight = weight + np.asarray(turn_times, dtype=np.float64)
    weight = np.maximum(weight, 1e-6)  # scipy treats an explicit 0 as "no arc"
    count = graph.num_segments
    return csr_matrix((weight, (turn_from, turn_to)), shape=(count, count))


def line_dijkstra_tree(graph: RoadGraph, segment_times: np.ndarray,
                       turn_times: np.ndarray | None, origin_segments: np.ndarray) -> OriginRun:
    """Exact shortest-path tree on the turn (line) graph: vertices are segments, arcs are the
    allowed turns ``a -> b`` weighted ``turn time + time of b``; times are to the *end* of
    each segment, parents are previous segments. Honours turn restrictions."""
    origins = np.asarray(origin_segments, dtype=np.int64)
    times, predecessors = _whole(line_graph(graph, segment_times, turn_times), origins)
    return OriginRun(origins=origins, node_time_s=times, parent_segment=predecessors)


class FreeFlowTurnModel(FreeFlowModel):
    """Free-flow times on the turn graph: the same segment times, turn restrictions honoured."""

    name = "freeflow-turns"
    graph_mode = "turn"

    def __init__(self, graph: RoadGraph):
        super().__init__(graph)
        self.identity = f"freeflow-turns:{graph.identity}"
        self._search = None

    def _search_for(self, bucket) -> tuple:
        """(line-graph matrix, targeted search) over this model's times (built once)."""
        with self._build_lock:
            if self._search is None:
                self._search = _turn_search(self.graph, self._times)
            return self._search

    def durations_to(self, roots: np.ndarray, keys: np.ndarray, bucket) -> np.ndarray:
        """``[R, K]`` seconds from each root to each key (the hierarchy's many-to-many)."""
        return self._search_for(bucket)[1].queries.durations(roots, keys)

    def run_from(self, origins: np.ndarray, bucket: int, *,
                 targets: list[np.ndarray] | None = None, pointers: bool = True) -> OriginRun:
        matrix, search = self._search_for(bucket)
        origins = np.asarray(origins, dtype=np.int64)
        if targets is not None:
            return search.run(origins, targets, pointers)
        times, predecessors = _whole(matrix, origins)
        return OriginRun(origins=origins, node_time_s=times, parent_segment=predecessors)


def _turn_search(graph: RoadGraph, segment_times: np.ndarray, hierarchy=None) -> tuple:
    """Whole-tree matrix and targeted search on the turn graph for ``segment_times``
    (its contraction hierarchy built here unless one for this graph is given)."""
    from models.execution.cch import key_coordinates

    turn_from, turn_to = graph["turn_from"], graph["turn_to"]
    return (line_graph(graph, segment_times), _TargetSearch(
        turn_from, turn_to, segment_times[turn_to], graph["length_m"][turn_to],
        graph.num_segments, parent_is_sender=True,
        coordinates=None if hierarchy is not None else key_coordinates(graph, True),
        hierarchy=hierarchy))


class LiveScalarModel(FreeFlowTurnModel):
    """Baseline "live scalar": Dijkstra on the turn graph over per-segment times from the
    latest observed speed where the feed has one, free flow elsewhere (what OSRM computes
    with a ``--segment-speed-file``). Run keys carry the traffic state
    (:class:`models.inference.live.RunKey`); without one it is free flow on turns."""

    name = "live-scalar"
    uses_traffic = True

    def __init__(self, graph: RoadGraph):
        super().__init__(graph)
        self.identity = f"live-scalar:{graph.identity}"
        self._searches: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def segment_times_s(self, bucket) -> np.ndarray:
        from models.inference.live import LIVE_FEATURES, key_parts

        _, state = key_parts(bucket)
        if state is None:
            return self._times
        observed = state.features[:, LIVE_FEATURES.index("observed")] > 0
        log_ratio = state.features[:, LIVE_FEATURES.index("log_ratio")].astype(np.float64)
        return np.where(observed, self._times * np.exp(-log_ratio), self._times)

    def _search_for(self, bucket) -> tuple:
        """The turn-graph search over this run key's times (an LRU of 8 keys)."""
        with self._lock:
            search = self._searches.get(bucket)
            if search is not None:
                self._searches.move_to_end(bucket)
                return search
        # every run key's search shares the free-flow search's hierarchy (one topology)
        search = _turn_search(self.graph, self.segment_times_s(bucket),
                              super()._search_for(None)[1].hierarchy)
        with self._lock:
            self._searches[bucket] = search
            while len(self._searches) > 8:
                self._searches.popitem(last=False)
        return search
