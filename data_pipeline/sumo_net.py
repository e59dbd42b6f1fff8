"""SUMO road network from the project's own OSM reading, and the map from SUMO edges back
onto RoadGraph segments.

The SUMO net is built from the same repaired, drive-filtered ways the RoadGraph is built
from (:func:`data_pipeline.osm_reader.read_osm`), written as OSM XML for netconvert (which
reads XML only, does not honour ``motor_vehicle=no`` and would open ways our filter
rejects). Way pieces split at clipped gaps get fresh ids; their original way id is kept.

Mapping a SUMO edge onto segments uses OSM node ids, not geometry: SUMO junctions keep the
OSM node id (joined junctions list their members in ``--junctions.join-output``), and every
RoadGraph segment lists the OSM nodes it runs through (``path_osm_node``). A SUMO edge from
junction A to junction B is the shortest chain of segments that leaves an OSM node of A
and reaches an OSM node of B, searched a few segments deep. A driven route is the
concatenation of its edges' chains; gaps left inside joined junctions are closed with the
shortest path between the two ends when it is short.
"""

from __future__ import annotations

import heapq
import math
import os
import subprocess
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from nareta.errors import NaretaError

#: netconvert options, measured on this kind of machine (see shared notes on SUMO).
NETCONVERT_OPTIONS: tuple[str, ...] = (
    "--geometry.remove",
    "--ramps.guess",
    "--junctions.join",
    "--tls.guess-signals",
    "--tls.discard-simple",
    "--tls.join",
    "--remove-edges.isolated",
    "--keep-edges.by-vclass",
    "passenger",
    "--output.original-names",
    "--edges.join",
    "--no-turnarounds.except-deadend",
    "--no-warnings",
    "--osm.elevation",
    "false",
)


class SumoError(NaretaError):
    """A SUMO tool failed or SUMO is not installed."""


def sumo_home() -> Path:
    """SUMO's install folder (``bin/``, ``tools/``, ``data/``) from the eclipse-sumo wheel
    or ``$SUMO_HOME``."""
    try:
        import sumo  # the eclipse-sumo wheel

        return Path(sumo.SUMO_HOME)
    except ImportError:
        home = os.environ.get("SUMO_HOME")
        if home and Path(home, "bin").is_dir():
            return Path(home)
    raise SumoError(
        "SUMO is not installed: pip install 'nareta[sim]' (eclipse-sumo, sumolib) or set SUMO_HOME"
    )


def sumo_env() -> dict[str, str]:
    """Environment for SUMO tools: SUMO_HOME set, PROJ pointed at SUMO's own data."""
    env = dict(os.environ)
    home = sumo_home()
    env["SUMO_HOME"] = str(home)
    proj = home / "data" / "proj"
    if proj.is_dir():
        env.setdefault("PROJ_LIB", str(proj))
        env.setdefault("PROJ_DATA", str(proj))
    return env


def run_tool(command: Sequence[str], *, what: str, log_path: Path | None = None) -> None:
    """Run a SUMO tool; raise :class:`SumoError` with its last output lines on failure."""
    result = subprocess.run(list(command), env=sumo_env(), capture_output=True, text=True)
    if log_path is not None:
        log_path.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise SumoError(f"{what} failed (exit {result.returncode}):\n{tail}")


# --------------------------------------------------------------------------- OSM XML
@dataclass
class OsmXmlSummary:
    nodes: int
    ways: int
    restrictions: int
    #: written way id -> original OSM way id (differs for pieces of split ways)
    way_origin: dict[int, int] = field(default_factory=dict)


def write_osm_xml(osm_data, path: str | os.PathLike[str]) -> OsmXmlSummary:
    """Write repaired drivable ways (an :class:`~data_pipeline.osm_reader.OsmData`) as OSM
    XML for netconvert. Pieces of a way split at a clipped gap get fresh, unused ids."""
    next_id = max((way.way_id for way in osm_data.ways), default=0) + 1
    used_ids: set[int] = set()
    way_origin: dict[int, int] = {}
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="nareta">']
    for node_id in sorted(osm_data.node_lonlat):
        lon, lat = osm_data.node_lonlat[node_id]
        tags = osm_data.node_tags.get(node_id, {})
        head = f'<node id="{node_id}" version="1" lat="{lat:.7f}" lon="{lon:.7f}"'
        if tags:
            lines.append(head + ">")
            lines.extend(f"  <tag k={quoteattr(k)} v={quoteattr(v)}/>" for k, v in tags.items())
            lines.append("</node>")
        else:
            lines.append(head + "/>")
    ways_by_origin: dict[int, list[int]] = defaultdict(list)
    for way in osm_data.ways:
        way_id = way.way_id
        if way_id in used_ids:
            way_id, next_id = next_id, next_id + 1
        used_ids.add(way_id)
        way_origin[way_id] = way.way_id
        ways_by_origin[way.way_id].append(way_id)
        lines.append(f'<way id="{way_id}" version="1">')
        lines.extend(f'  <nd ref="{ref}"/>' for ref in way.nodes)
        lines.extend(f"  <tag k={quoteattr(k)} v={quoteattr(v)}/>" for k, v in way.tags.items())
        lines.append("</way>")
    restrictions = 0
    for restriction in osm_data.restrictions:
        from_ids = ways_by_origin.get(restriction.from_way)
        to_ids = ways_by_origin.get(restriction.to_way)
        if not from_ids or not to_ids or len(from_ids) > 1 or len(to_ids) > 1:
            continue
        restrictions += 1
        lines.append(f'<relation id="{restriction.relation_id}" version="1">')
        lines.append(f'  <member type="way" ref="{from_ids[0]}" role="from"/>')
        lines.append(f'  <member type="node" ref="{restriction.via_node}" role="via"/>')
        lines.append(f'  <member type="way" ref="{to_ids[0]}" role="to"/>')
        lines.append('  <tag k="type" v="restriction"/>')
        lines.append(f'  <tag k="restriction" v={quoteattr(restriction.restriction)}/>')
        lines.append("</relation>")
    lines.append("</osm>")
    Path(path).write_text("\n".join(lines) + "\n")
    return OsmXmlSummary(
        nodes=len(osm_data.node_lonlat),
        ways=len(osm_data.ways),
        restrictions=restrictions,
        way_origin=way_origin,
    )


def build_net(
    osm_xml: Path,
    net_path: Path,
    *,
    joins_path: Path,
    remove_edges: Iterable[str] = (),
    base_net: Path | None = None,
) -> None:
    """netconvert an OSM XML file (or prune ``remove_edges`` from ``base_net``)."""
    binary = str(sumo_home() / "bin" / "netconvert")
    if base_net is None:
        command = [
            binary,
            "--osm-files",
            str(osm_xml),
            *NETCONVERT_OPTIONS,
            "--junctions.join-output",
            str(joins_path),
            "-o",
            str(net_path),
        ]
    else:
        removal = net_path.with_suffix(".removed.txt")
        removal.write_text("\n".join(remove_edges) + "\n")
        command = [
            binary,
            "--sumo-net-file",
            str(base_net),
            "--remove-edges.input-file",
            str(removal),
            "--remove-edges.isolated",
            "--no-warnings",
            "-o",
            str(net_path),
        ]
    run_tool(command, what="netconvert", log_path=net_path.with_suffix(".log"))


# --------------------------------------------------------------------------- net reading
@dataclass
class SumoEdge:
    edge_id: str
    from_junction: str
    to_junction: str
    length_m: float
    shape_xy: list[tuple[float, float]]


def read_joins(joins_path: Path | None) -> dict[int, list[int]]:
    """OSM node id -> OSM node ids of the joined junction it belongs to
    (``--junctions.join-output``)."""
    if joins_path is None or not joins_path.is_file():
        return {}
    joins: dict[int, list[int]] = {}
    for element in ET.parse(joins_path).getroot().iter("join"):
        members = [int(node) for node in element.get("nodes", "").split() if node.isdigit()]
        for member in members:
            joins[member] = members
    return joins


def read_edges(net_path: Path) -> dict[str, SumoEdge]:
    """Normal (non-internal) edges of a SUMO net with their first lane's shape."""
    edges: dict[str, SumoEdge] = {}
    for _, element in ET.iterparse(net_path, events=("end",)):
        if element.tag != "edge":
            continue
        if element.get("function") not in (None, "normal"):
            element.clear()
            continue
        lane = element.find("lane")
        if lane is None:
            element.clear()
            continue
        shape = [
            tuple(float(v) for v in point.split(",")[:2]) for point in lane.get("shape", "").split()
        ]
        edges[element.get("id", "")] = SumoEdge(
            element.get("id", ""),
            element.get("from", ""),
            element.get("to", ""),
            float(lane.get("length", "0")),
            shape,
        )  # type: ignore[arg-type]
        element.clear()
    return edges


def junction_osm_nodes(junction_id: str, joins: dict[int, list[int]]) -> list[int]:
    """OSM node ids a SUMO junction stands for. Joined junctions are named
    ``cluster_<id>_<id>...`` (long names end in ``_#<n>more``); their full member list
    comes from the join output."""
    if junction_id.isdigit():
        return [int(junction_id)]
    named = [int(part) for part in junction_id.split("_") if part.isdigit()]
    for node in named:
        if node in joins:
            return joins[node]
    return named


# --------------------------------------------------------------------------- mapping
class SegmentMapper:
    """Maps SUMO edges and routes onto the segments of a RoadGraph by OSM node ids."""

    def __init__(self, graph, *, max_depth: int = 60, gap_limit_m: float = 250.0) -> None:
        self.graph = graph
        self.max_depth = max_depth
        self.gap_limit_m = gap_limit_m
        offsets = graph["path_offsets"]
        osm_nodes = graph["path_osm_node"]
        self._positions: dict[int, list[tuple[int, int]]] = defaultdict(list)
        self._paths: list[np.ndarray] = []
        for segment in range(graph.num_segments):
            path = osm_nodes[offsets[segment] : offsets[segment + 1]]
            self._paths.append(path)
            for position, node in enumerate(path[:-1].tolist()):
                self._positions[node].append((segment, position))
        self._out: list[list[int]] = [[] for _ in range(graph.num_nodes)]
        for segment, source in enumerate(graph["edge_source"].tolist()):
            self._out[source].append(segment)
        self._length = graph["length_m"].astype(np.float64)
        self._gap_cache: dict[tuple[int, int], tuple[int, ...] | None] = {}
        self._length_csr = None

    def map_edge(
        self, from_nodes: Sequence[int], to_nodes: Sequence[int], *, max_length_m: float = math.inf
    ) -> tuple[int, ...]:
        """Shortest chain of segments from an OSM node in ``from_nodes`` to one in
        ``to_nodes``; ``()`` when none is found within ``max_depth`` segments and
        ``max_length_m`` metres of whole segments before the last."""
        targets = set(to_nodes)
        # entries: (length so far, tie-break, chain of segments, start position in the last)
        entries: list[tuple[float, int, tuple[int, ...], int]] = []
        counter = 0
        for node in from_nodes:
            for segment, position in self._positions.get(node, ()):
                entries.append((0.0, counter, (segment,), position))
                counter += 1
        heapq.heapify(entries)
        settled: set[int] = set()
        while entries:
            cost, _, chain, position = heapq.heappop(entries)
            segment = chain[-1]
            path = self._paths[segment]
            hits = [index for index, node in enumerate(path.tolist()) if node in targets]
            hits = [index for index in hits if index > position]
            if hits:
                return chain
            if segment in settled or len(chain) >= self.max_depth or cost > max_length_m:
                continue
            settled.add(segment)
            next_cost = cost + float(self._length[segment])
            for following in self._out[int(self.graph["edge_target"][segment])]:
                if following not in chain:
                    counter += 1
                    heapq.heappush(entries, (next_cost, counter, (*chain, following), 0))
        return ()

    def segment_length(self, segment: int) -> float:
        return float(self._length[segment])

    def _gap(self, from_node: int, to_node: int) -> tuple[int, ...] | None:
        """Segments of the shortest path between two graph nodes if shorter than the limit."""
        key = (from_node, to_node)
        if key in self._gap_cache:
            return self._gap_cache[key]
        from scipy.sparse.csgraph import dijkstra

        if self._length_csr is None:
            self._length_csr = self.graph.to_scipy(self._length)
        distances, predecessors = dijkstra(
            self._length_csr, indices=from_node, limit=self.gap_limit_m, return_predecessors=True
        )
        result: tuple[int, ...] | None = None
        if np.isfinite(distances[to_node]):
            nodes = [to_node]
            while nodes[-1] != from_node:
                nodes.append(int(predecessors[nodes[-1]]))
            nodes.reverse()
            result = tuple(
                self._segment_between(a, b) for a, b in zip(nodes, nodes[1:], strict=False)
            )
        self._gap_cache[key] = result
        return result

    def _segment_between(self, source: int, target: int) -> int:
        candidates = [s for s in self._out[source] if int(self.graph["edge_target"][s]) == target]
        return min(candidates, key=lambda s: self._length[s])

    def join_route(self, chains: Iterable[tuple[int, ...]]) -> list[int] | None:
        """Concatenate per-edge chains into one connected segment route, closing short gaps;
        ``None`` when a chain is missing or a gap cannot be closed."""
        source, target = self.graph["edge_source"], self.graph["edge_target"]
        route: list[int] = []
        for chain in chains:
            if not chain:
                return None
            for segment in chain:
                if route and route[-1] == segment:
                    continue
                if route and int(target[route[-1]]) != int(source[segment]):
                    gap = self._gap(int(target[route[-1]]), int(source[segment]))
                    if gap is None:
                        return None
                    route.extend(gap)
                route.append(segment)
        return route
