"""Node and turn mode as two strategy objects: what differs between a model whose
shortest-path trees run over junctions and one whose trees run over road segments joined
by the allowed turns. The Predictor, the ETA model, training and evaluation ask the mode
(``graph_mode(model.graph_mode)``) instead of comparing mode names.

==============  =====================================  =====================================
..              ``"node"``                             ``"turn"``
==============  =====================================  =====================================
keys            junctions                              segments (time to a segment's *end*)
tree edges      segments                               allowed turns ``a -> b``
start key       the end node of the origin's segment   the origin's segment
end key         the start node of the destination's    the destination's segment, its
                segment, plus the part driven on it    undriven part taken off (negative)
parent pointer  the segment reaching the node          the previous segment
exact tree      Dijkstra over segment times            Dijkstra over the turn (line) graph
==============  =====================================  =====================================

A query point's :class:`Leg` is one way a trip leaves it (start leg) or reaches it (end leg):
a partial segment and the key where it meets a tree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_pipeline.road_graph import RoadGraph
from models.execution.trees import dijkstra_tree, line_dijkstra_tree
from models.inference.travel_time import OriginRun

AT_NODE = 1e-9  # a snapped fraction this close to 0 or 1 stands on the node itself


def driving_directions(segment: int, twin: int, fraction: float) -> list[tuple[int, float]]:
    """(segment, position by length) for each direction a point snapped at ``fraction`` of
    ``segment`` can be driven in: the segment itself and, on a two-way street, its reverse
    ``twin`` (-1 if none), where the same point lies at ``1 - fraction``."""
    directions = [(int(segment), float(fraction))]
    if twin >= 0:
        directions.append((int(twin), 1.0 - float(fraction)))
    return directions


@dataclass(frozen=True)
class Leg:
    """One way to leave an origin or reach a destination, costing `time_s` and `length_m` on
    the partial `segment`. `key` is where it meets a shortest-path tree: a node (node mode)
    or a segment (turn mode, where trees measure time to the *end* of each segment, so an
    end leg's time and length are negative: the unfinished part of the last segment)."""

    key: int
    time_s: float
    length_m: float
    segment: int
    position: float  # position of the query point along `segment`, by length
    #: turn mode, a trip that leaves `segment` and loops back onto it: the segment the
    #: tree reaches before turning back onto `segment` (-1: none)
    via: int = -1


class GraphMode:
    """The questions whose answers differ between node and turn mode. Methods taking a
    ``segment`` accept one index or an array of them."""

    name: str
    #: keys are directed segments: a trip that ends behind its start on the same segment
    #: must leave it and turn back onto it through the tree, and each direction of a
    #: two-way street is a key of its own
    keys_are_segments: bool

    def num_keys(self, graph: RoadGraph) -> int:
        raise NotImplementedError

    def key_xy(self, graph: RoadGraph) -> tuple[np.ndarray, np.ndarray]:
        """``[K]`` projected x and y of every key (metres)."""
        raise NotImplementedError

    def key_edges(self, graph: RoadGraph) -> tuple[np.ndarray, np.ndarray]:
        """(senders, receivers) of the tree edges between keys."""
        raise NotImplementedError

    def start_key(self, graph: RoadGraph, segment):
        """The key whose tree answers a trip that drove to the end of ``segment``."""
        raise NotImplementedError

    def end_key(self, graph: RoadGraph, segment):
        """The key whose tree time, plus :meth:`end_share` of the segment's time, is the
        time to a point on ``segment``."""
        raise NotImplementedError

    def end_share(self, position):
        """The share of the destination segment's time (and length) added to the tree's
        time at :meth:`end_key` for a point at ``position`` along it."""
        raise NotImplementedError

    def previous_key(self, graph: RoadGraph, parent):
        """The key a tree reaches a key from, given the key's parent pointer."""
        raise NotImplementedError

    def step_length_m(self, length_m: np.ndarray, parent: np.ndarray) -> np.ndarray:
        """``[K]`` metres from each key's previous key to it, given ``[K]`` parent
        pointers (any valid index where a key has none) and the segments' lengths."""
        raise NotImplementedError

    def tree_parent(self, sender: np.ndarray, edge_row: np.ndarray) -> np.ndarray:
        """Of the tree edges' sending keys and segment rows, the one that is the parent
        pointer of the key an edge reaches (node: the segment; turn: the previous one)."""
        raise NotImplementedError

    def enters(self, graph: RoadGraph, segment: int, key: int) -> bool:
        """Whether driving ``segment`` leads into ``key``."""
        raise NotImplementedError

    def exact_tree(self, graph: RoadGraph, segment_times: np.ndarray,
                   turn_times: np.ndarray | None, roots: np.ndarray) -> OriginRun:
        """Dijkstra over these times from ``roots``: the route fallback."""
        raise NotImplementedError

    def node_times(self, graph: RoadGraph, key_times: np.ndarray) -> np.ndarray:
        """``[N]`` arrival time at every junction from ``[K]`` arrival times at the keys."""
        raise NotImplementedError

    def standing_start(self, graph: RoadGraph, segment: int, fraction: float) -> Leg | None:
        """An extra, free start leg where keys are junctions and the point stands on one."""
        return None

    def standing_end(self, graph: RoadGraph, segment: int, fraction: float) -> Leg | None:
        """An extra, free end leg where keys are junctions and the point stands on one."""
        return None

    # ------------------------------------------------------------------ shared steps
    def starts(self, graph: RoadGraph, point, times: np.ndarray) -> list[Leg]:
        """The start legs of a snapped ``point`` (segment, twin, fraction) under segment
        ``times``: drive the rest of the segment, in each direction it can be driven."""
        length = graph["length_m"]
        legs = [Leg(int(self.start_key(graph, segment)), (1 - position) * times[segment],
                    (1 - position) * length[segment], segment, position)
                for segment, position in driving_directions(point.segment, point.twin,
                                                            point.fraction)]
        standing = self.standing_start(graph, point.segment, point.fraction)
        return legs if standing is None else [*legs, standing]

    def ends(self, graph: RoadGraph, point, times: np.ndarray) -> list[Leg]:
        """The end legs of a snapped ``point``: reach it along its segment, either way."""
        length = graph["length_m"]
        legs = []
        for segment, position in driving_directions(point.segment, point.twin, point.fraction):
            share = self.end_share(position)
            legs.append(Leg(int(self.end_key(graph, segment)), share * times[segment],
                            share * length[segment], segment, position))
        standing = self.standing_end(graph, point.segment, point.fraction)
        return legs if standing is None else [*legs, standing]

    def follow(self, graph: RoadGraph, parent: np.ndarray, root: int,
               key: int) -> list[int] | None:
        """The segments strictly between the start leg at ``root`` and the end leg at
        ``key`` along the tree's ``parent`` pointers, or None if they break or loop."""
        path: list[int] = []
        current = key
        for _ in range(len(parent) + 1):
            if current == root:
                path.reverse()
                return path[1:] if self.keys_are_segments else path  # drop the root segment
            previous = int(parent[current])
            if previous < 0 or not self.enters(graph, previous, current):
                return None
            path.append(previous)
            current = int(self.previous_key(graph, previous))
        return None


class NodeMode(GraphMode):
    name = "node"
    keys_are_segments = False

    def num_keys(self, graph):
        return graph.num_nodes

    def key_xy(self, graph):
        return graph["node_x_m"], graph["node_y_m"]

    def key_edges(self, graph):
        return graph["edge_source"], graph["edge_target"]

    def start_key(self, graph, segment):
        return graph["edge_target"][segment]

    def end_key(self, graph, segment):
        return graph["edge_source"][segment]

    def end_share(self, position):
        return position

    def previous_key(self, graph, parent):
        return graph["edge_source"][parent]

    def step_length_m(self, length_m, parent):
        return length_m[parent]

    def tree_parent(self, sender, edge_row):
        return edge_row

    def enters(self, graph, segment, key):
        return bool(graph["edge_target"][segment] == key)

    def exact_tree(self, graph, segment_times, turn_times, roots):
        return dijkstra_tree(graph, segment_times, roots)

    def node_times(self, graph, key_times):
        return key_times

    def standing_start(self, graph, segment, fraction):
        if fraction <= AT_NODE:  # on the segment's start node
            return Leg(int(graph["edge_source"][segment]), 0.0, 0.0, -1, 0.0)
        return None

    def standing_end(self, graph, segment, fraction):
        if fraction >= 1 - AT_NODE:  # on the segment's end node
            return Leg(int(graph["edge_target"][segment]), 0.0, 0.0, -1, 1.0)
        return None


class TurnMode(GraphMode):
    name = "turn"
    keys_are_segments = True

    def num_keys(self, graph):
        return graph.num_segments

    def key_xy(self, graph):
        """Segments are located at the midpoint of their end nodes."""
        x, y = graph["node_x_m"], graph["node_y_m"]
        source, target = graph["edge_source"], graph["edge_target"]
        return (x[source] + x[target]) / 2, (y[source] + y[target]) / 2

    def key_edges(self, graph):
        return graph["turn_from"], graph["turn_to"]

    def start_key(self, graph, segment):
        return segment

    def end_key(self, graph, segment):
        return segment

    def end_share(self, position):
        return -(1 - position)

    def previous_key(self, graph, parent):
        return parent

    def step_length_m(self, length_m, parent):
        return length_m  # a key is a segment: its own length, whatever the parent

    def tree_parent(self, sender, edge_row):
        return sender

    def enters(self, graph, segment, key):
        return bool(graph["edge_target"][segment] == graph["edge_source"][key])

    def exact_tree(self, graph, segment_times, turn_times, roots):
        return line_dijkstra_tree(graph, segment_times, turn_times, roots)

    def node_times(self, graph, key_times):
        """Arrival at the end of each segment -> at each node: the earliest."""
        node_time = np.full(graph.num_nodes, np.inf)
        np.minimum.at(node_time, graph["edge_target"], key_times)
        return node_time


NODE = NodeMode()
TURN = TurnMode()
GRAPH_MODES: dict[str, GraphMode] = {mode.name: mode for mode in (NODE, TURN)}


def graph_mode(name: str) -> GraphMode:
    """The mode a model's ``graph_mode`` names; ValueError for any other name."""
    try:
        return GRAPH_MODES[name]
    except (KeyError, TypeError):
        raise ValueError(f"graph_mode must be 'turn' or 'node', not {name!r}") from None
