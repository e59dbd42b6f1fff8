"""The scalar routing models the Predictor serves besides the learned one: free flow on
junctions (``freeflow``) and on the turn graph (``freeflow-turns``), and the live scalar
(``live-scalar``: the latest observed speed per segment, free flow elsewhere). Each is a
:class:`models.inference.travel_time.TravelTimeModel` on :mod:`models.execution.trees`."""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict

import numpy as np

from data_pipeline.road_graph import RoadGraph
from models.execution.trees import NodeTrees, turn_search, whole_trees
from models.inference.travel_time import OriginRun


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

    def _node_trees(self) -> NodeTrees:
        with self._build_lock:
            if self._trees is None:
                self._trees = NodeTrees(self.graph, self._times, hierarchy=True)
            return self._trees

    def run_from(self, origins: np.ndarray, bucket: int, *,
                 targets: list[np.ndarray] | None = None, pointers: bool = True) -> OriginRun:
        return self._node_trees().run(origins, targets, pointers)

    def durations_to(self, roots: np.ndarray, keys: np.ndarray, bucket) -> np.ndarray:
        """``[R, K]`` seconds from each root to each key (the hierarchy's many-to-many)."""
        return self._node_trees().targeted.queries.durations(roots, keys)


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
                self._search = turn_search(self.graph, self._times)
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
        times, predecessors = whole_trees(matrix, origins)
        return OriginRun(origins=origins, node_time_s=times, parent_segment=predecessors)


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
        search = turn_search(self.graph, self.segment_times_s(bucket),
                              super()._search_for(None)[1].hierarchy)
        with self._lock:
            self._searches[bucket] = search
            while len(self._searches) > 8:
                self._searches.popitem(last=False)
        return search
