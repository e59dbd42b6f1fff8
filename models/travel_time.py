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


def dijkstra_tree(graph: RoadGraph, weights: np.ndarray, origins: np.ndarray) -> OriginRun:
    """Exact shortest-path tree by Dijkstra (scipy) on per-segment ``weights``."""
    matrix = graph.to_scipy(weights)
    origins = np.asarray(origins, dtype=np.int64)
    times, predecessors = dijkstra(matrix, directed=True, indices=origins,
                                   return_predecessors=True)
    times = np.atleast_2d(times)
    predecessors = np.atleast_2d(predecessors).astype(np.int64)  # int32: key overflow
    # Map (predecessor node, node) to the lightest segment between them.
    source, target = graph["edge_source"], graph["edge_target"]
    order = np.lexsort((weights, target, source))
    keys = source[order] * graph.num_nodes + target[order]
    first = np.concatenate([[True], keys[1:] != keys[:-1]])
    lookup_keys, lookup_segments = keys[first], order[first]
    nodes = np.broadcast_to(np.arange(graph.num_nodes), predecessors.shape)
    reached = predecessors >= 0
    query = np.where(reached, predecessors * graph.num_nodes + nodes, -1)
    position = np.searchsorted(lookup_keys, query)
    position = np.clip(position, 0, len(lookup_keys) - 1)
    parent = np.where(reached, lookup_segments[position], -1)
    return OriginRun(origins=origins, node_time_s=times, parent_segment=parent.astype(np.int64))


class FreeFlowModel:
    """Baseline 1: Dijkstra on length / (imputed) maxspeed, osmnx's ``add_edge_travel_times``."""

    name = "freeflow"
    graph_mode = "node"

    def __init__(self, graph: RoadGraph):
        self.graph = graph
        self._times = graph["free_flow_s"].astype(np.float64)
        self.identity = f"freeflow:{graph.identity}"

    def time_bucket(self, departure_time: dt.datetime | None) -> int:
        return 0

    def segment_times_s(self, bucket: int) -> np.ndarray:
        return self._times

    def turn_times_s(self, bucket: int) -> None:
        return None

    def run_from(self, origins: np.ndarray, bucket: int) -> OriginRun:
        return dijkstra_tree(self.graph, self._times, origins)


def line_dijkstra_tree(graph: RoadGraph, segment_times: np.ndarray,
                       turn_times: np.ndarray | None, origin_segments: np.ndarray) -> OriginRun:
    """Exact shortest-path tree on the turn (line) graph: vertices are segments, arcs are the
    allowed turns ``a -> b`` weighted ``turn time + time of b``; times are to the *end* of
    each segment, parents are previous segments. Honours turn restrictions."""
    from scipy.sparse import csr_matrix

    turn_from, turn_to = graph["turn_from"], graph["turn_to"]
    weight = np.asarray(segment_times, dtype=np.float64)[turn_to]
    if turn_times is not None:
        weight = weight + np.asarray(turn_times, dtype=np.float64)
    weight = np.maximum(weight, 1e-6)  # scipy treats an explicit 0 as "no arc"
    count = graph.num_segments
    matrix = csr_matrix((weight, (turn_from, turn_to)), shape=(count, count))
    origins = np.asarray(origin_segments, dtype=np.int64)
    times, predecessors = dijkstra(matrix, directed=True, indices=origins,
                                   return_predecessors=True)
    return OriginRun(origins=origins, node_time_s=np.atleast_2d(times),
                     parent_segment=np.atleast_2d(predecessors).astype(np.int64))


class FreeFlowTurnModel(FreeFlowModel):
    """Free-flow times on the turn graph: the same segment times, turn restrictions honoured."""

    name = "freeflow-turns"
    graph_mode = "turn"

    def __init__(self, graph: RoadGraph):
        super().__init__(graph)
        self.identity = f"freeflow-turns:{graph.identity}"

    def run_from(self, origins: np.ndarray, bucket: int) -> OriginRun:
        return line_dijkstra_tree(self.graph, self._times, None, origins)
