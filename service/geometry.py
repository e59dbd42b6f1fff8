"""Geometry for responses: segment pieces as polylines, isochrone hulls, the network layer."""

from __future__ import annotations

import json

import numpy as np
import shapely

from data_pipeline.road_graph import HIGHWAY_CLASSES, RoadGraph
from models.inference.predictor import IsochroneResult

Coordinates = list[tuple[float, float]]


def _round(points: np.ndarray) -> Coordinates:
    return [(round(float(lon), 6), round(float(lat), 6)) for lon, lat in points]


def without_repeats(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Drop consecutive duplicate points (segments share their end nodes); keep at least
    two points so a zero-length route is still a valid LineString."""
    kept = [point for index, point in enumerate(points) if index == 0 or point != points[index - 1]]
    return kept if len(kept) >= 2 else [points[0], points[-1]]


def segment_piece(graph: RoadGraph, segment: int, start: float = 0.0,
                  end: float = 1.0) -> np.ndarray:
    """``[K, 2]`` (lon, lat) of `segment` between shares `start` and `end` of its length
    (measured on the local equirectangular plane, as the Predictor does)."""
    piece = graph.segment_path(segment)
    lon, lat = graph["path_lon"][piece], graph["path_lat"][piece]
    points = np.stack([lon, lat], axis=1).astype(np.float64)  # [P, 2]
    if start <= 0.0 and end >= 1.0:
        return points
    steps = np.hypot(np.diff(lon) * np.cos(np.radians(lat[:-1])), np.diff(lat))
    cumulative = np.concatenate([[0.0], np.cumsum(steps)])
    share = cumulative / max(float(cumulative[-1]), 1e-12)

    def at(position: float) -> np.ndarray:
        return np.array([np.interp(position, share, lon), np.interp(position, share, lat)])

    inside = points[(share > start) & (share < end)]
    return np.vstack([at(start), inside, at(end)])


def isochrone_features(graph: RoadGraph, result: IsochroneResult,
                       area: str) -> list[dict]:
    """GeoJSON features: the reachable road pieces and (optionally) a hull polygon."""
    lines = [segment_piece(graph, int(s), float(a), float(b))
             for s, a, b in zip(result.piece_segment, result.piece_start, result.piece_end,
                                strict=True) if b > a]
    features = [{"type": "Feature",
                 "geometry": {"type": "MultiLineString",
                              "coordinates": [_round(line) for line in lines]},
                 "properties": {"kind": "roads", "max_seconds": result.max_seconds}}]
    if area != "none" and lines:
        points = shapely.multipoints(np.vstack(lines))
        hull = (shapely.concave_hull(points, ratio=0.2) if area == "concave"
                else shapely.convex_hull(points))
        if isinstance(hull, shapely.Polygon) and not hull.is_empty:
            rings = [hull.exterior, *hull.interiors]
            features.append({"type": "Feature",
                             "geometry": {"type": "Polygon",
                                          "coordinates": [_round(np.asarray(ring.coords))
                                                          for ring in rings]},
                             "properties": {"kind": "area", "hull": area}})
    return features


def network_geojson(graph: RoadGraph) -> bytes:
    """The road network as a GeoJSON FeatureCollection, one MultiLineString per highway
    class, each road drawn once (a segment and its reverse twin share a line)."""
    source, target = graph["edge_source"], graph["edge_target"]
    highway = graph["highway"]
    seen: set[tuple[int, int, int]] = set()
    by_class: dict[int, list[Coordinates]] = {}
    for segment in range(graph.num_segments):
        piece = graph.segment_path(segment)
        key_forward = (int(source[segment]), int(target[segment]), piece.stop - piece.start)
        key_reverse = (key_forward[1], key_forward[0], key_forward[2])
        if key_reverse in seen:
            continue
        seen.add(key_forward)
        points = np.stack([graph["path_lon"][piece], graph["path_lat"][piece]], axis=1)
        by_class.setdefault(int(highway[segment]), []).append(_round(points))
    features = [{"type": "Feature",
                 "geometry": {"type": "MultiLineString", "coordinates": lines},
                 "properties": {"highway": HIGHWAY_CLASSES[index], "rank": index}}
                for index, lines in sorted(by_class.items(), reverse=True)]
    lon, lat = graph["node_lon"], graph["node_lat"]
    collection = {"type": "FeatureCollection",
                  "bbox": [float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())],
                  "features": features}
    return json.dumps(collection, separators=(",", ":")).encode()
