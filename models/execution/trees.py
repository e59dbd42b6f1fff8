"""Exact shortest-path trees on fixed scalar weights, the execution under the scalar models
(free flow, live scalar, the learned scalar baseline): scipy's Dijkstra over the whole graph,
or a search that stops once its targets are settled (on the contraction hierarchy when one
is given, :mod:`models.execution.cch`). Junction (node) graphs and the turn (line) graph."""

from __future__ import annotations

import numpy as np
from scipy.sparse.csgraph import dijkstra

from data_pipeline.road_graph import RoadGraph
from models.inference.travel_time import OriginRun


def whole_trees(matrix, origins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dijkstra (scipy) from every origin over the whole graph: (times, predecessors)."""
    times, predecessors = dijkstra(matrix, directed=True, indices=origins,
                                   return_predecessors=True)
    return np.atleast_2d(times), np.atleast_2d(predecessors).astype(np.int64)


class TargetSearch:
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


class NodeTrees:
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
        self.targeted = TargetSearch(
            source, target, weights, graph["length_m"], graph.num_nodes,
            parent_is_sender=False,
            coordinates=key_coordinates(graph, False) if hierarchy else None)

    def run(self, origins: np.ndarray, targets: list[np.ndarray] | None = None,
            pointers: bool = True) -> OriginRun:
        origins = np.asarray(origins, dtype=np.int64)
        if targets is not None:
            return self.targeted.run(origins, targets, pointers)
        times, predecessors = whole_trees(self.matrix, origins)
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
    return NodeTrees(graph, np.asarray(weights, dtype=np.float64)).run(origins)


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
    times, predecessors = whole_trees(line_graph(graph, segment_times, turn_times), origins)
    return OriginRun(origins=origins, node_time_s=times, parent_segment=predecessors)


def turn_search(graph: RoadGraph, segment_times: np.ndarray, hierarchy=None) -> tuple:
    """Whole-tree matrix and targeted search on the turn graph for ``segment_times``
    (its contraction hierarchy built here unless one for this graph is given)."""
    from models.execution.cch import key_coordinates

    turn_from, turn_to = graph["turn_from"], graph["turn_to"]
    return (line_graph(graph, segment_times), TargetSearch(
        turn_from, turn_to, segment_times[turn_to], graph["length_m"][turn_to],
        graph.num_segments, parent_is_sender=True,
        coordinates=None if hierarchy is not None else key_coordinates(graph, True),
        hierarchy=hierarchy))
