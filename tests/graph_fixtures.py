"""Small RoadGraphs built by hand for tests (no OSM ingest needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from data_pipeline.road_graph import SEGMENT_FEATURES, TURN_FEATURES, RoadGraph

_EARTH_M_PER_DEG = 111_320.0


def road_graph_from_paths(
    node_lonlat: dict[int, tuple[float, float]],
    paths: Sequence[tuple[Sequence[int], int]],
    *,
    speed_kph: float | Sequence[float] = 36.0,
) -> RoadGraph:
    """A RoadGraph whose segments follow the given OSM node paths.

    ``paths`` holds ``(osm_node_path, way_id)`` per directed segment; segment ends become
    graph nodes. Features not derivable from geometry get neutral defaults.
    """
    osm_ids = sorted({path[0] for path, _ in paths} | {path[-1] for path, _ in paths})
    index = {osm: i for i, osm in enumerate(osm_ids)}
    lon = np.array([node_lonlat[o][0] for o in osm_ids])
    lat = np.array([node_lonlat[o][1] for o in osm_ids])
    lat0 = float(np.mean(lat))

    def xy(lon_, lat_):
        return (
            np.asarray(lon_) * _EARTH_M_PER_DEG * math.cos(math.radians(lat0)),
            np.asarray(lat_) * _EARTH_M_PER_DEG,
        )

    e = len(paths)
    speeds = np.broadcast_to(np.asarray(speed_kph, dtype=np.float32), (e,))
    arrays: dict[str, np.ndarray] = {
        name: np.zeros(e, dtype=dtype) for name, dtype in SEGMENT_FEATURES.items()
    }
    offsets = [0]
    path_nodes, path_ways = [], []
    lengths = []
    for path, way in paths:
        px, py = xy([node_lonlat[o][0] for o in path], [node_lonlat[o][1] for o in path])
        lengths.append(float(np.hypot(np.diff(px), np.diff(py)).sum()))
        path_nodes.extend(path)
        path_ways.extend([way] * len(path))
        offsets.append(len(path_nodes))
    arrays["length_m"] = np.asarray(lengths, dtype=np.float32)
    arrays["maxspeed_kph"] = speeds.astype(np.float32).copy()
    arrays["highway"][:] = 11  # residential
    arrays["lanes"][:] = 1.0
    arrays["curvature"][:] = 1.0
    arrays["free_flow_s"] = (arrays["length_m"] / (arrays["maxspeed_kph"] / 3.6)).astype(np.float32)
    source = np.array([index[p[0]] for p, _ in paths], dtype=np.int64)
    target = np.array([index[p[-1]] for p, _ in paths], dtype=np.int64)
    turn_from, turn_to = [], []
    outgoing: dict[int, list[int]] = {}
    for b in range(e):
        outgoing.setdefault(int(source[b]), []).append(b)
    for a in range(e):
        for b in outgoing.get(int(target[a]), []):
            turn_from.append(a)
            turn_to.append(b)
    t = len(turn_from)
    turns = {name: np.zeros(t, dtype=dtype) for name, dtype in TURN_FEATURES.items()}
    node_x, node_y = xy(lon, lat)
    all_lonlat = [node_lonlat[o] for o in path_nodes]
    arrays.update(
        node_osm_id=np.array(osm_ids, dtype=np.int64),
        node_lon=lon,
        node_lat=lat,
        node_x_m=node_x,
        node_y_m=node_y,
        node_control=np.zeros(len(osm_ids), dtype=np.int16),
        node_crossing=np.zeros(len(osm_ids), dtype=bool),
        edge_source=source,
        edge_target=target,
        path_offsets=np.array(offsets, dtype=np.int64),
        path_osm_node=np.array(path_nodes, dtype=np.int64),
        path_lon=np.array([p[0] for p in all_lonlat]),
        path_lat=np.array([p[1] for p in all_lonlat]),
        path_way_id=np.array(path_ways, dtype=np.int64),
        turn_from=np.array(turn_from, dtype=np.int64),
        turn_to=np.array(turn_to, dtype=np.int64),
        **turns,
    )
    return RoadGraph(arrays=arrays, crs_epsg=3857)


def raw_road_graph(osm_data) -> RoadGraph:
    """Unsimplified RoadGraph of an :class:`OsmData`: one segment per OSM way piece and
    direction (oneway respected)."""
    paths = []
    for way in osm_data.ways:
        oneway = (
            way.tags.get("oneway") in ("yes", "1", "true")
            or way.tags.get("junction") == "roundabout"
            or way.tags.get("highway") == "motorway"
        )
        reverse = way.tags.get("oneway") == "-1"
        for a, b in zip(way.nodes, way.nodes[1:], strict=False):
            if not reverse:
                paths.append(((a, b), way.way_id))
            if not oneway or reverse:
                paths.append(((b, a), way.way_id))
    return road_graph_from_paths(osm_data.node_lonlat, paths)


def longest_free_flow_trip(graph: RoadGraph):
    """(origin, destination, free-flow ETA s): from the first piece of one of the first
    ten segments to the first piece of any segment, the pair with the longest free-flow
    time on the turn graph (a trip a few segments long on a small graph)."""
    from models.baselines.freeflow import FreeFlowTurnModel
    from models.inference.predictor import Predictor

    base = Predictor(graph, FreeFlowTurnModel(graph))
    offsets, lon, lat = graph["path_offsets"], graph["path_lon"], graph["path_lat"]
    points = [((lon[offsets[s]] + lon[offsets[s] + 1]) / 2,
               (lat[offsets[s]] + lat[offsets[s] + 1]) / 2) for s in range(graph.num_segments)]
    durations = base.matrix(points[:10], points).durations_s
    i, j = np.unravel_index(np.nanargmax(np.where(np.isfinite(durations), durations, -1)),
                            durations.shape)
    return points[i], points[j], base.eta(points[i], points[j]).eta_s
