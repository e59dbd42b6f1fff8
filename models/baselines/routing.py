"""Shortest travel times on a RoadGraph with per-segment and per-turn costs.

Routing runs on the *line graph*: one vertex per segment, one arc per allowed turn
``a -> b`` weighted ``turn_time_s[a->b] + segment_time_s[b]``, so turn costs and turn
restrictions (turns the RoadGraph does not list) are honoured. A trip snapped to origin
segment ``o`` at fraction ``f_o`` and destination segment ``d`` at ``f_d`` takes::

    (1 - f_o) * t[o] + line_distance(o, d) - (1 - f_d) * t[d]        (o != d, or f_d < f_o)
    (f_d - f_o) * t[o]                                              (o == d, f_d >= f_o)
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.csgraph import dijkstra

from models.execution.trees import line_graph


def reverse_twins(graph) -> np.ndarray:
    """For each segment, the segment running the same OSM path the other way (-1 if none,
    e.g. one-way streets). A point snapped to a two-way street may leave in either
    direction, as routing engines' "phantom nodes" do. See ``RoadGraph.reverse_twins``."""
    return graph.reverse_twins()


def trip_times(
    graph,
    origin_segment: np.ndarray,
    origin_fraction: np.ndarray,
    destination_segment: np.ndarray,
    destination_fraction: np.ndarray,
    segment_time_s: np.ndarray,
    turn_time_s: np.ndarray | None = None,
    *,
    chunk: int = 256,
    both_directions: bool = True,
) -> np.ndarray:
    """Shortest travel time of every trip (``inf`` when unreachable), one Dijkstra per
    distinct origin segment, ``chunk`` origins at a time. With ``both_directions`` an end
    snapped onto a two-way street may use either direction (the faster is taken)."""
    if both_directions:
        twins = reverse_twins(graph)
        origin_segment = np.asarray(origin_segment, dtype=np.int64)
        destination_segment = np.asarray(destination_segment, dtype=np.int64)
        origin_fraction = np.asarray(origin_fraction, dtype=np.float64)
        destination_fraction = np.asarray(destination_fraction, dtype=np.float64)
        best = np.full(origin_segment.shape, np.inf)
        for flip_origin in (False, True):
            for flip_destination in (False, True):
                o, fo = origin_segment, origin_fraction
                d, fd = destination_segment, destination_fraction
                valid = np.ones(o.shape, dtype=bool)
                if flip_origin:
                    valid &= twins[o] >= 0
                    o, fo = np.where(valid, twins[o], o), 1 - fo
                if flip_destination:
                    valid &= twins[d] >= 0
                    d, fd = np.where(valid, twins[d], d), 1 - fd
                if not valid.any():
                    continue
                times = np.full(o.shape, np.inf)
                times[valid] = trip_times(
                    graph,
                    o[valid],
                    fo[valid],
                    d[valid],
                    fd[valid],
                    segment_time_s,
                    turn_time_s,
                    chunk=chunk,
                    both_directions=False,
                )
                best = np.minimum(best, times)
        return best
    origin_segment = np.asarray(origin_segment, dtype=np.int64)
    destination_segment = np.asarray(destination_segment, dtype=np.int64)
    origin_fraction = np.clip(np.asarray(origin_fraction, dtype=np.float64), 0, 1)
    destination_fraction = np.clip(np.asarray(destination_fraction, dtype=np.float64), 0, 1)
    time = np.asarray(segment_time_s, dtype=np.float64)
    matrix = line_graph(graph, time, turn_time_s)
    incoming = matrix.tocsc()
    result = np.full(origin_segment.shape, np.inf)
    unique, inverse = np.unique(origin_segment, return_inverse=True)
    for start in range(0, len(unique), chunk):
        sources = unique[start : start + chunk]
        distances = dijkstra(matrix, indices=sources)  # [K, E]
        rows = np.flatnonzero((inverse >= start) & (inverse < start + len(sources)))
        local = inverse[rows] - start
        result[rows] = distances[local, destination_segment[rows]]
        # destination behind the origin on the same segment: drive a loop back onto it
        behind = rows[
            (origin_segment[rows] == destination_segment[rows])
            & (destination_fraction[rows] < origin_fraction[rows])
        ]
        for row in behind:
            segment = origin_segment[row]
            column = incoming[:, segment]
            predecessors, weights = column.indices, column.data
            loop = distances[inverse[row] - start, predecessors] + weights
            result[row] = loop.min() if len(loop) else np.inf
    o, d = origin_segment, destination_segment
    result = (1 - origin_fraction) * time[o] + result - (1 - destination_fraction) * time[d]
    same = (o == d) & (destination_fraction >= origin_fraction)
    result[same] = (destination_fraction[same] - origin_fraction[same]) * time[o[same]]
    return result


def shortest_routes(
    graph,
    origin_segment: np.ndarray,
    destination_segment: np.ndarray,
    segment_time_s: np.ndarray,
    turn_time_s: np.ndarray | None = None,
) -> list[np.ndarray | None]:
    """Segment sequence of each shortest route (``None`` when unreachable)."""
    matrix = line_graph(graph, segment_time_s, turn_time_s)
    routes: list[np.ndarray | None] = [None] * len(origin_segment)
    origin_segment = np.asarray(origin_segment)
    for source in np.unique(origin_segment):
        _, predecessors = dijkstra(matrix, indices=int(source), return_predecessors=True)
        for index in np.flatnonzero(origin_segment == source):
            target = int(destination_segment[index])
            path = [target]
            while path[-1] != source and path[-1] >= 0:
                path.append(int(predecessors[path[-1]]))
            if path[-1] == source:
                routes[index] = np.asarray(path[::-1], dtype=np.int64)
    return routes
