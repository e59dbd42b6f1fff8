"""OSM source → RoadGraph artifact: repair, drive filter, largest strongly connected
component, simplification (osmnx), segment and turn features.

The pieces of a simplified segment are tracked (``osmnx.simplify_graph`` with
``track_merged=True`` and list aggregation), so tags that differ along a segment are
resolved explicitly (see :func:`_resolve_pieces`) and turn restrictions, which name OSM
ways, can be matched to the segments that carry those ways.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import osmnx as ox
from pyproj import CRS, Transformer

from data_pipeline.osm_reader import OsmData, read_osm
from data_pipeline.road_graph import (
    CONTROLS,
    HIGHWAY_CLASSES,
    MAJOR_HIGHWAY_CLASSES,
    SEGMENT_FEATURES,
    SURFACES,
    TURN_FEATURES,
    TURN_KINDS,
    RoadGraph,
)
from data_pipeline.tags import is_yes, parse_lanes, parse_maxspeed_kph, parse_oneway
from nareta.artifacts import sha256_file
from nareta.errors import InputError, NoDrivableRoadsError, OfflineError

log = logging.getLogger(__name__)

#: Fallback speeds (km/h) for classes with no tagged segment in the graph.
DEFAULT_SPEED_KPH = {
    "motorway": 100.0,
    "trunk": 80.0,
    "primary": 60.0,
    "secondary": 50.0,
    "tertiary": 45.0,
    "motorway_link": 60.0,
    "trunk_link": 50.0,
    "primary_link": 45.0,
    "secondary_link": 40.0,
    "tertiary_link": 35.0,
    "unclassified": 40.0,
    "residential": 35.0,
    "living_street": 10.0,
    "road": 40.0,
}
#: Fallback lane counts (total, as OSM tags them) by class.
DEFAULT_LANES = {
    "motorway": 2.0,
    "trunk": 2.0,
    "primary": 2.0,
    "secondary": 2.0,
    "tertiary": 2.0,
    "motorway_link": 1.0,
    "trunk_link": 1.0,
    "primary_link": 1.0,
    "secondary_link": 1.0,
    "tertiary_link": 1.0,
    "unclassified": 2.0,
    "residential": 2.0,
    "living_street": 1.0,
    "road": 2.0,
}
_SURFACE_GROUPS = {
    "paved": "paved",
    "asphalt": "asphalt",
    "concrete": "concrete",
    "concrete:plates": "concrete",
    "concrete:lanes": "concrete",
    "sett": "sett",
    "cobblestone": "sett",
    "paving_stones": "sett",
    "unhewn_cobblestone": "sett",
    "bricks": "sett",
    "unpaved": "unpaved",
    "gravel": "unpaved",
    "dirt": "unpaved",
    "compacted": "unpaved",
    "fine_gravel": "unpaved",
    "ground": "unpaved",
    "grass": "unpaved",
    "sand": "unpaved",
    "earth": "unpaved",
    "mud": "unpaved",
}
STRAIGHT_MAX_DEG = 30.0
UTURN_MIN_DEG = 150.0
EARTH_RADIUS_M = 6_371_009.0  # osmnx's value


@dataclass
class IngestResult:
    graph: RoadGraph
    report: dict[str, Any]


# ---------------------------------------------------------------------- entry points

def ingest_osm(
    path: str | os.PathLike[str], *, bbox: tuple[float, float, float, float] | None = None
) -> IngestResult:
    """Build a RoadGraph from an OSM file (``.osm.pbf``, ``.osm``, ``.osm.bz2``), optionally
    clipped to ``bbox`` = ``(west, south, east, north)``.

    Raises
    ------
    OsmFileError
        Missing, empty, corrupt or truncated file.
    NoDrivableRoadsError
        The file holds no road network cars can drive.
    """
    started = time.perf_counter()
    source = Path(path)
    if bbox is not None:
        _check_bbox(bbox)
    osm = read_osm(source, bbox=bbox)
    if not osm.ways:
        where = f" inside bbox {','.join(map(str, bbox))}" if bbox is not None else ""
        raise NoDrivableRoadsError(
            f"{source}: holds no drivable roads{where} (no ways with highway in the car classes)"
        )
    graph, report = build_road_graph(osm, source_name=source.name)
    report["source"] = {
        "path": str(source),
        "sha256": sha256_file(source),
        "bytes": source.stat().st_size,
    }
    report["seconds"] = round(time.perf_counter() - started, 3)
    graph.metadata["ingest_report"] = report
    return IngestResult(graph=graph, report=report)


def ingest_online(
    *, place: str | None = None, bbox: tuple[float, float, float, float] | None, download_dir: Path
) -> IngestResult:
    """Download the drive network of a place name or ``(west, south, east, north)`` box from
    the Overpass API (via osmnx), then ingest it like a file. Needs the internet."""
    if (place is None) == (bbox is None):
        raise InputError("give exactly one of --place or --bbox")
    if bbox is not None:
        _check_bbox(bbox)
    _require_internet("overpass-api.de")
    if place is not None:
        west, south, east, north = ox.geocode_to_gdf(place).total_bounds
    query = (
        f"[out:xml][timeout:180];(way[highway]({south},{west},{north},{east});"
        f"relation[type=restriction]({south},{west},{north},{east}););(._;>;);out body;"
    )
    import urllib.parse
    import urllib.request

    download_dir.mkdir(parents=True, exist_ok=True)
    target = download_dir / "download.osm"
    data = urllib.parse.urlencode({"data": query}).encode()
    with urllib.request.urlopen(
        "https://overpass-api.de/api/interpreter", data=data, timeout=200
    ) as response:
        target.write_bytes(response.read())
    return ingest_osm(target)


def _check_bbox(bbox: tuple[float, float, float, float]) -> None:
    west, south, east, north = bbox
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise InputError(
            f"bbox {','.join(map(str, bbox))}: expected WEST,SOUTH,EAST,NORTH in "
            "degrees with west < east and south < north"
        )


def _require_internet(host: str, *, timeout_s: float = 3.0) -> None:
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
    except OSError as exc:
        raise OfflineError(
            f"--place/--bbox need the internet to reach {host}, which is unreachable "
            f"({exc.__class__.__name__}); ingest a local .osm.pbf/.osm/.osm.bz2 file instead"
        ) from exc


# ---------------------------------------------------------------------- graph
def build_road_graph(osm: OsmData, *, source_name: str = "") -> tuple[RoadGraph, dict[str, Any]]:
    """Repaired OSM ways → simplified, strongly connected RoadGraph with features."""
    report: dict[str, Any] = {"repairs": osm.report.as_dict()}
    graph = _unsimplified_graph(osm)
    report["unsimplified"] = {"nodes": graph.number_of_nodes(), "edges": graph.number_of_edges()}
    graph = ox.truncate.largest_component(graph, strongly=True)
    if graph.number_of_edges() == 0:
        raise NoDrivableRoadsError(f"{source_name}: the drivable roads form no connected network")
    report["largest_scc"] = {"nodes": graph.number_of_nodes(), "edges": graph.number_of_edges()}
    attrs = (
        "osmid",
        "highway",
        "maxspeed_kph",
        "lanes",
        "bridge",
        "tunnel",
        "surface",
        "oneway",
        "reversed",
        "length",
        "name",
    )
    logging.getLogger("osmnx").setLevel(logging.ERROR)
    graph = ox.simplify_graph(
        graph, track_merged=True, edge_attr_aggs={name: list for name in attrs}
    )
    road_graph, conflicts = _to_road_graph(graph, osm)
    report["conflicting_tags_resolved"] = conflicts
    turns_removed, restriction_counts = _apply_restrictions(road_graph, osm)
    report["restrictions"] = restriction_counts
    report["simplified"] = road_graph.summary()
    del turns_removed
    return road_graph, report


def _haversine_m(lon1, lat1, lon2, lat2):
    return ox.distance.great_circle(lat1, lon1, lat2, lon2, earth_radius=EARTH_RADIUS_M)


def _unsimplified_graph(osm: OsmData) -> nx.MultiDiGraph:
    graph = nx.MultiDiGraph(crs="epsg:4326")
    for node, (lon, lat) in osm.node_lonlat.items():
        graph.add_node(node, x=lon, y=lat)
    for way in osm.ways:
        tags = way.tags
        direction = parse_oneway(tags)
        lon = np.array([osm.node_lonlat[n][0] for n in way.nodes])
        lat = np.array([osm.node_lonlat[n][1] for n in way.nodes])
        lengths = _haversine_m(lon[:-1], lat[:-1], lon[1:], lat[1:])
        common = {
            "osmid": way.way_id,
            "highway": tags["highway"],
            "maxspeed_kph": parse_maxspeed_kph(tags.get("maxspeed")) or math.nan,
            "lanes": parse_lanes(tags.get("lanes")) or math.nan,
            "bridge": is_yes(tags.get("bridge")),
            "tunnel": is_yes(tags.get("tunnel")),
            "surface": _SURFACE_GROUPS.get(tags.get("surface", ""), "unknown"),
            "oneway": direction != 0,
            "name": street_name(tags),
        }
        for index, (a, b) in enumerate(zip(way.nodes[:-1], way.nodes[1:], strict=True)):
            length = float(lengths[index])
            if direction >= 0:
                graph.add_edge(a, b, length=length, reversed=False, **common)
            if direction <= 0:
                graph.add_edge(b, a, length=length, reversed=True, **common)
    return graph


def street_name(tags: dict[str, str]) -> str:
    """What a driver reads on the sign: the way's ``name``, else its ``ref``, else ""."""
    return (tags.get("name") or tags.get("ref") or "").strip()


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _resolve_pieces(data: dict[str, Any], conflicts: Counter) -> dict[str, Any]:
    """Resolve the per-piece tags of one simplified segment into one value each.

    highway and surface: the value covering the most length; maxspeed: the speed that gives
    the same free-flow time over the tagged pieces (length / sum(length_i / speed_i));
    lanes: the minimum tagged (the bottleneck); bridge/tunnel: any piece; reversed: the
    majority by length.
    """
    lengths = np.asarray(_as_list(data["length"]), dtype=float)
    resolved: dict[str, Any] = {"length_m": float(lengths.sum())}
    for name in ("highway", "surface"):
        values = _as_list(data[name])
        share: dict[str, float] = defaultdict(float)
        for value, length in zip(values, lengths, strict=True):
            share[value] += length
        if len(share) > 1:
            conflicts[name] += 1
        resolved[name] = max(share.items(), key=lambda item: (item[1], item[0]))[0]
    speeds = np.asarray(_as_list(data["maxspeed_kph"]), dtype=float)
    tagged = ~np.isnan(speeds)
    if tagged.any():
        if len(set(speeds[tagged])) > 1 or not tagged.all():
            conflicts["maxspeed"] += 1
        resolved["maxspeed_kph"] = float(
            lengths[tagged].sum() / (lengths[tagged] / speeds[tagged]).sum()
        )
    else:
        resolved["maxspeed_kph"] = math.nan
    lanes = np.asarray(_as_list(data["lanes"]), dtype=float)
    if (~np.isnan(lanes)).any():
        if len(set(lanes[~np.isnan(lanes)])) > 1:
            conflicts["lanes"] += 1
        resolved["lanes"] = float(np.nanmin(lanes))
    else:
        resolved["lanes"] = math.nan
    resolved["bridge"] = any(_as_list(data["bridge"]))
    resolved["tunnel"] = any(_as_list(data["tunnel"]))
    resolved["oneway"] = any(_as_list(data["oneway"]))
    reversed_flags = np.asarray(_as_list(data["reversed"]), dtype=bool)
    resolved["reversed"] = bool(lengths[reversed_flags].sum() > lengths[~reversed_flags].sum())
    resolved["way_ids"] = [int(way) for way in _as_list(data["osmid"])]
    names: dict[str, float] = defaultdict(float)  # the named piece covering the most length
    for value, length in zip(_as_list(data.get("name", "")), lengths, strict=False):
        if value:
            names[value] += length
    resolved["name"] = max(names.items(), key=lambda item: (item[1], item[0]))[0] if names else ""
    return resolved


def _node_control(tags: dict[str, str] | None) -> tuple[int, bool]:
    if not tags:
        return CONTROLS.index("none"), False
    highway = tags.get("highway", "")
    crossing = highway == "crossing" or "crossing" in tags
    if highway == "traffic_signals" or tags.get("crossing") == "traffic_signals":
        return CONTROLS.index("signal"), crossing
    if highway == "stop":
        return CONTROLS.index("stop"), crossing
    if highway == "give_way":
        return CONTROLS.index("give_way"), crossing
    return CONTROLS.index("none"), crossing


def _utm_epsg(lon: float, lat: float) -> int:
    zone = int((lon + 180) // 6) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


def _to_road_graph(graph: nx.MultiDiGraph, osm: OsmData) -> tuple[RoadGraph, dict[str, int]]:
    nodes = sorted(graph.nodes)
    index = {node: i for i, node in enumerate(nodes)}
    node_lon = np.array([osm.node_lonlat[n][0] for n in nodes])
    node_lat = np.array([osm.node_lonlat[n][1] for n in nodes])
    epsg = _utm_epsg(float(node_lon.mean()), float(node_lat.mean()))
    to_utm = Transformer.from_crs(CRS.from_epsg(4326), CRS.from_epsg(epsg), always_xy=True)
    node_x, node_y = to_utm.transform(node_lon, node_lat)
    controls = {n: _node_control(osm.node_tags.get(n)) for n in osm.node_lonlat}

    conflicts: Counter = Counter()
    columns, path_offsets, path_nodes, path_ways = _segment_columns(graph, index, controls,
                                                                     conflicts)
    path_osm_node = np.asarray(path_nodes, dtype=np.int64)
    path_lon = np.array([osm.node_lonlat[n][0] for n in path_nodes])
    path_lat = np.array([osm.node_lonlat[n][1] for n in path_nodes])
    offsets = np.asarray(path_offsets, dtype=np.int64)
    source = np.asarray(columns["edge_source"], dtype=np.int64)
    target = np.asarray(columns["edge_target"], dtype=np.int64)
    num_nodes, num_edges = len(nodes), len(source)

    arrays: dict[str, np.ndarray] = {
        "node_osm_id": np.asarray(nodes, dtype=np.int64),
        "node_lon": node_lon,
        "node_lat": node_lat,
        "node_x_m": np.asarray(node_x),
        "node_y_m": np.asarray(node_y),
        "node_control": np.array([controls[n][0] for n in nodes], dtype=np.int16),
        "node_crossing": np.array([controls[n][1] for n in nodes], dtype=np.int16),
        "edge_source": source,
        "edge_target": target,
        "path_offsets": offsets,
        "path_osm_node": path_osm_node,
        "path_lon": path_lon,
        "path_lat": path_lat,
        "path_way_id": np.asarray(path_ways, dtype=np.int64),
    }
    highway = [HIGHWAY_CLASSES.index(h) for h in columns["highway"]]
    arrays["highway"] = np.asarray(highway, dtype=np.int16)
    arrays["surface"] = np.asarray([SURFACES.index(s) for s in columns["surface"]], dtype=np.int16)
    for name in (
        "length_m",
        "bridge",
        "tunnel",
        "oneway",
        "reversed",
        "signals_along",
        "stops_along",
        "crossings_along",
        "control_at_end",
        "crossing_at_end",
    ):
        arrays[name] = np.asarray(columns[name])
    arrays["segment_name"] = np.asarray(columns["name"], dtype=str)
    arrays.update(_imputed_speeds_and_lanes(columns, arrays["length_m"]))
    arrays.update(_path_shape(arrays["length_m"], path_lon, path_lat, offsets))

    in_degree = np.bincount(target, minlength=num_nodes)
    out_degree = np.bincount(source, minlength=num_nodes)
    arrays["source_in_degree"] = in_degree[source]
    arrays["source_out_degree"] = out_degree[source]
    arrays["target_in_degree"] = in_degree[target]
    arrays["target_out_degree"] = out_degree[target]

    arrays.update(_turns(arrays, num_nodes, num_edges))
    for name, dtype in {**SEGMENT_FEATURES, **TURN_FEATURES}.items():
        arrays[name] = arrays[name].astype(dtype)
    return RoadGraph(arrays=arrays, crs_epsg=epsg), dict(conflicts)


def _segment_columns(graph: nx.MultiDiGraph, index: dict[int, int], controls: dict,
                     conflicts: Counter) -> tuple[dict[str, list[Any]], list[int], list[int],
                                                  list[int]]:
    """Per segment (edges in node-index order): resolved tags, controls along and at the
    end; and the paths' OSM nodes and ways, with the offsets of each segment's path."""
    edges = sorted(
        graph.edges(keys=True, data=True),
        key=lambda edge: (index[edge[0]], index[edge[1]], edge[2]),
    )
    columns: dict[str, list[Any]] = defaultdict(list)
    path_offsets = [0]
    path_nodes: list[int] = []
    path_ways: list[int] = []
    for u, v, _key, data in edges:
        merged = data.get("merged_edges")
        path = [u] + [b for _, b in merged] if merged else [u, v]
        pieces = _resolve_pieces(data, conflicts)
        way_ids = pieces.pop("way_ids")
        if len(way_ids) != len(path) - 1:  # osmnx keeps one edge per piece
            way_ids = (way_ids * (len(path) - 1))[: len(path) - 1]
        path_nodes.extend(path)
        path_ways.extend([way_ids[0], *way_ids])
        path_offsets.append(len(path_nodes))
        columns["edge_source"].append(index[u])
        columns["edge_target"].append(index[v])
        for name, value in pieces.items():
            columns[name].append(value)
        interior = [controls[n] for n in path[1:-1]]
        columns["signals_along"].append(sum(c == CONTROLS.index("signal") for c, _ in interior))
        columns["stops_along"].append(sum(c == CONTROLS.index("stop") for c, _ in interior))
        columns["crossings_along"].append(sum(crossing for _, crossing in interior))
        end_control, end_crossing = controls[v]
        columns["control_at_end"].append(end_control)
        columns["crossing_at_end"].append(end_crossing)
    return columns, path_offsets, path_nodes, path_ways


def _imputed_speeds_and_lanes(columns: dict[str, list[Any]], length_m: np.ndarray
                              ) -> dict[str, np.ndarray]:
    """Imputation by class: the mean tagged speed of the class in this graph (osmnx's
    rule), else a default table. Lanes: the class default. With the imputed flags and the
    free-flow time."""
    speeds = np.asarray(columns["maxspeed_kph"], dtype=float)
    lanes = np.asarray(columns["lanes"], dtype=float)
    class_names = np.asarray(columns["highway"])
    out = {"maxspeed_imputed": np.isnan(speeds), "lanes_imputed": np.isnan(lanes)}
    for name in set(columns["highway"]):
        of_class = class_names == name
        tagged = speeds[of_class & ~np.isnan(speeds)]
        fill = float(tagged.mean()) if tagged.size else DEFAULT_SPEED_KPH[name]
        speeds[of_class & np.isnan(speeds)] = fill
        lanes[of_class & np.isnan(lanes)] = DEFAULT_LANES[name]
    out.update(maxspeed_kph=speeds, lanes=lanes, free_flow_s=length_m / (speeds / 3.6))
    return out


def _path_shape(length_m: np.ndarray, path_lon: np.ndarray, path_lat: np.ndarray,
                offsets: np.ndarray) -> dict[str, np.ndarray]:
    """Curvature and the bearings of the first and last piece of each segment's path."""
    first, last = offsets[:-1], offsets[1:] - 1
    chord = _haversine_m(path_lon[first], path_lat[first], path_lon[last], path_lat[last])
    return {
        "curvature": np.clip(length_m / np.maximum(chord, 1.0), 1.0, 10.0),
        "bearing_in_deg": ox.bearing.calculate_bearing(
            path_lat[first], path_lon[first], path_lat[first + 1], path_lon[first + 1]),
        "bearing_out_deg": ox.bearing.calculate_bearing(
            path_lat[last - 1], path_lon[last - 1], path_lat[last], path_lon[last]),
    }


def _turns(arrays: dict[str, np.ndarray], num_nodes: int, num_edges: int) -> dict[str, np.ndarray]:
    """Every (segment → next segment) pair at a node, with angle, kind, control and whether
    it crosses or enters a more important major road."""
    source, target = arrays["edge_source"], arrays["edge_target"]
    highway = arrays["highway"]
    offsets, path_nodes = arrays["path_offsets"], arrays["path_osm_node"]
    outgoing: list[list[int]] = [[] for _ in range(num_nodes)]
    incident: list[list[int]] = [[] for _ in range(num_nodes)]
    for edge in range(num_edges):
        outgoing[source[edge]].append(edge)
        incident[source[edge]].append(edge)
        incident[target[edge]].append(edge)
    major_rank = max(HIGHWAY_CLASSES.index(name) for name in MAJOR_HIGHWAY_CLASSES)

    def same_road(a: int, b: int) -> bool:  # b is a's reverse carriageway
        return (
            source[a] == target[b]
            and target[a] == source[b]
            and np.array_equal(
                path_nodes[offsets[a] : offsets[a + 1]],
                path_nodes[offsets[b] : offsets[b + 1]][::-1],
            )
        )

    rows: dict[str, list[Any]] = defaultdict(list)
    for edge_in in range(num_edges):
        junction = target[edge_in]
        for edge_out in outgoing[junction]:
            angle = (
                arrays["bearing_in_deg"][edge_out] - arrays["bearing_out_deg"][edge_in] + 180.0
            ) % 360.0 - 180.0
            if angle == -180.0:
                angle = 180.0
            if same_road(edge_in, edge_out) or abs(angle) >= UTURN_MIN_DEG:
                kind = "uturn"
            elif abs(angle) <= STRAIGHT_MAX_DEG:
                kind = "straight"
            else:
                kind = "right" if angle > 0 else "left"
            from_rank, to_rank = int(highway[edge_in]), int(highway[edge_out])
            enters_major = to_rank <= major_rank < from_rank
            crosses = kind in ("straight", "left") and any(
                int(highway[other]) <= major_rank and int(highway[other]) < from_rank
                for other in incident[junction]
                if other not in (edge_in, edge_out)
                and not same_road(other, edge_in)
                and not same_road(other, edge_out)
            )
            rows["turn_from"].append(edge_in)
            rows["turn_to"].append(edge_out)
            rows["turn_angle_deg"].append(angle)
            rows["turn_kind"].append(TURN_KINDS.index(kind))
            rows["turn_control"].append(int(arrays["node_control"][junction]))
            rows["turn_crosses_major"].append(enters_major or crosses)
    return {
        "turn_from": np.asarray(rows["turn_from"], dtype=np.int64),
        "turn_to": np.asarray(rows["turn_to"], dtype=np.int64),
        "turn_angle_deg": np.asarray(rows["turn_angle_deg"], dtype=float),
        "turn_kind": np.asarray(rows["turn_kind"]),
        "turn_control": np.asarray(rows["turn_control"]),
        "turn_crosses_major": np.asarray(rows["turn_crosses_major"], dtype=bool),
    }


def _apply_restrictions(graph: RoadGraph, osm: OsmData) -> tuple[int, dict[str, int]]:
    """Remove the turns that OSM ``type=restriction`` relations (via a node) forbid.

    A restriction's from-way matches segments that end at the via node with their last piece
    on that way; its to-way matches segments that start there with their first piece on it.
    ``no_*`` removes the matched turns; ``only_*`` removes every other turn out of the
    matched from-segments.
    """
    arrays = graph.arrays
    counts = {
        "read": osm.report.restrictions_read,
        "unsupported_via_way": osm.report.restrictions_unsupported,
        "applied": 0,
        "not_in_graph": 0,
        "turns_removed": 0,
    }
    node_index = {int(n): i for i, n in enumerate(arrays["node_osm_id"])}
    offsets, path_ways = arrays["path_offsets"], arrays["path_way_id"]
    last_way = path_ways[offsets[1:] - 1]
    first_way = path_ways[offsets[:-1] + 1]
    turn_from, turn_to = arrays["turn_from"], arrays["turn_to"]
    keep = np.ones(graph.num_turns, dtype=bool)
    for restriction in osm.restrictions:
        via = node_index.get(restriction.via_node)
        if via is None:
            counts["not_in_graph"] += 1
            continue
        from_segments = np.flatnonzero(
            (arrays["edge_target"] == via) & (last_way == restriction.from_way)
        )
        to_segments = np.flatnonzero(
            (arrays["edge_source"] == via) & (first_way == restriction.to_way)
        )
        if from_segments.size == 0 or to_segments.size == 0:
            counts["not_in_graph"] += 1
            continue
        from_match = np.isin(turn_from, from_segments)
        to_match = np.isin(turn_to, to_segments)
        if restriction.restriction.startswith("no_"):
            removed = from_match & to_match
        else:
            removed = from_match & ~to_match
        counts["turns_removed"] += int((keep & removed).sum())
        keep &= ~removed
        counts["applied"] += 1
    if not keep.all():
        for name in ("turn_from", "turn_to", *TURN_FEATURES):
            arrays[name] = arrays[name][keep]
        graph.validate()
    return int((~keep).sum()), counts
