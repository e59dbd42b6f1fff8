"""Read OpenStreetMap files (``.osm.pbf``, ``.osm``, ``.osm.bz2``, ``.osm.gz``) with pyosmium
and repair what real extracts contain before any graph is built.

Repairs (each counted in :class:`OsmRepairReport`):

* ways clipped at the extract edge reference nodes that are not in the file: the missing
  references are dropped and the way is split into its runs of present nodes;
* the same way twice (merged extracts) and ways whose node sequence duplicates another's
  (a street digitised twice): only the first is kept;
* repeated consecutive node references are collapsed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import osmium

from nareta.errors import OsmFileError

#: Highway classes cars use (what osmnx's "drive" network keeps, minus service roads).
DRIVE_HIGHWAYS = frozenset(
    {
        "motorway",
        "trunk",
        "primary",
        "secondary",
        "tertiary",
        "unclassified",
        "residential",
        "motorway_link",
        "trunk_link",
        "primary_link",
        "secondary_link",
        "tertiary_link",
        "living_street",
        "road",
    }
)
_NO_ACCESS = frozenset({"no", "private"})
_WAY_TAGS = (
    "highway",
    "maxspeed",
    "lanes",
    "oneway",
    "junction",
    "bridge",
    "tunnel",
    "surface",
    "name",
    "ref",
)
SUPPORTED_SUFFIXES = (".osm.pbf", ".pbf", ".osm", ".osm.bz2", ".osm.gz", ".xml")


@dataclass
class OsmWay:
    way_id: int
    nodes: list[int]
    tags: dict[str, str]


@dataclass
class TurnRestriction:
    relation_id: int
    restriction: str  # e.g. "no_left_turn", "only_straight_on"
    from_way: int
    via_node: int
    to_way: int


@dataclass
class OsmRepairReport:
    ways_read: int = 0
    drivable_ways: int = 0
    clipped_ways: int = 0
    missing_node_refs_dropped: int = 0
    ways_split: int = 0
    duplicate_ways_dropped: int = 0
    degenerate_ways_dropped: int = 0
    restrictions_read: int = 0
    restrictions_unsupported: int = 0  # via-way restrictions and malformed relations

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class OsmData:
    """Drivable ways (repaired), the coordinates and tags of the nodes they use, and turn
    restrictions."""

    node_lonlat: dict[int, tuple[float, float]]
    node_tags: dict[int, dict[str, str]]
    ways: list[OsmWay]
    restrictions: list[TurnRestriction]
    report: OsmRepairReport = field(default_factory=OsmRepairReport)


def is_drivable(tags: dict[str, str]) -> bool:
    """The project's drive filter: a car-class highway that cars may use."""
    if tags.get("highway") not in DRIVE_HIGHWAYS:
        return False
    if tags.get("area") == "yes":
        return False
    if tags.get("access") in _NO_ACCESS:
        return False
    return tags.get("motor_vehicle") not in _NO_ACCESS and tags.get("motorcar") not in _NO_ACCESS


def check_osm_path(path: str | os.PathLike[str]) -> Path:
    """Validate an OSM source path before reading it."""
    source = Path(path)
    if not source.exists():
        raise OsmFileError(f"{source}: no such file")
    if not source.is_file():
        raise OsmFileError(f"{source}: not a regular file")
    if not source.name.lower().endswith(SUPPORTED_SUFFIXES):
        raise OsmFileError(
            f"{source}: unknown file type; expected one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if source.stat().st_size == 0:
        raise OsmFileError(f"{source}: file is empty")
    return source


def read_osm(
    path: str | os.PathLike[str], *, bbox: tuple[float, float, float, float] | None = None
) -> OsmData:
    """Read drivable ways, their nodes and turn restrictions from an OSM file, repaired.

    ``bbox`` = ``(west, south, east, north)`` clips the file: nodes outside it are treated
    like nodes missing from the extract (the ways through them are cut there).

    Raises
    ------
    OsmFileError
        The file is missing, empty, of an unknown type, corrupt or truncated.
    """
    source = check_osm_path(path)
    report = OsmRepairReport()
    lonlat: dict[int, tuple[float, float]] = {}
    node_tags: dict[int, dict[str, str]] = {}
    raw_ways: list[tuple[int, list[int], dict[str, str]]] = []
    restrictions: list[TurnRestriction] = []
    entities = osmium.osm.NODE | osmium.osm.WAY | osmium.osm.RELATION
    try:
        for obj in osmium.FileProcessor(str(source), entities):
            if obj.is_node():
                location = obj.location
                if location.valid() and (
                    bbox is None
                    or (bbox[0] <= location.lon <= bbox[2] and bbox[1] <= location.lat <= bbox[3])
                ):
                    lonlat[obj.id] = (location.lon, location.lat)
                    if len(obj.tags):
                        tags = {
                            tag.k: tag.v
                            for tag in obj.tags
                            if tag.k in ("highway", "crossing", "railway")
                        }
                        if tags:
                            node_tags[obj.id] = tags
            elif obj.is_way():
                report.ways_read += 1
                tags = dict(obj.tags)
                if is_drivable(tags):
                    raw_ways.append(
                        (
                            obj.id,
                            [ref.ref for ref in obj.nodes],
                            {k: tags[k] for k in _WAY_TAGS if k in tags},
                        )
                    )
            elif obj.is_relation():
                _read_restriction(obj, restrictions, report)
    except RuntimeError as exc:
        raise OsmFileError(f"{source}: cannot read as OSM data ({exc})") from exc
    if not lonlat and not raw_ways and bbox is None:
        raise OsmFileError(f"{source}: holds no OSM nodes or ways (corrupt or not OSM data)")

    ways = _repair_ways(raw_ways, lonlat, report)
    used = {node for way in ways for node in way.nodes}
    return OsmData(
        node_lonlat={node: lonlat[node] for node in used},
        node_tags={node: tags for node, tags in node_tags.items() if node in used},
        ways=ways,
        restrictions=restrictions,
        report=report,
    )


def _read_restriction(obj, restrictions: list[TurnRestriction], report: OsmRepairReport) -> None:
    tags = obj.tags
    if tags.get("type") != "restriction":
        return
    kind = tags.get("restriction") or tags.get("restriction:motorcar")
    if not kind:
        return
    report.restrictions_read += 1
    members = {"from": [], "via": [], "to": []}
    for member in obj.members:
        if member.role in members:
            members[member.role].append((member.type, member.ref))
    valid = (
        len(members["from"]) == 1
        and members["from"][0][0] == "w"
        and len(members["to"]) == 1
        and members["to"][0][0] == "w"
        and len(members["via"]) == 1
        and members["via"][0][0] == "n"
    )
    if not valid or not (kind.startswith("no_") or kind.startswith("only_")):
        report.restrictions_unsupported += 1
        return
    restrictions.append(
        TurnRestriction(
            obj.id, kind, members["from"][0][1], members["via"][0][1], members["to"][0][1]
        )
    )


def _repair_ways(
    raw_ways: list[tuple[int, list[int], dict[str, str]]],
    lonlat: dict[int, tuple[float, float]],
    report: OsmRepairReport,
) -> list[OsmWay]:
    ways: list[OsmWay] = []
    seen_ids: set[int] = set()
    seen_sequences: set[tuple[int, ...]] = set()
    for way_id, refs, tags in raw_ways:
        if way_id in seen_ids:
            report.duplicate_ways_dropped += 1
            continue
        seen_ids.add(way_id)
        report.drivable_ways += 1
        runs: list[list[int]] = []
        current: list[int] = []
        missing = 0
        for ref in refs:
            if ref not in lonlat:
                missing += 1
                if current:
                    runs.append(current)
                current = []
            elif not current or current[-1] != ref:
                current.append(ref)
        if current:
            runs.append(current)
        if missing:
            report.clipped_ways += 1
            report.missing_node_refs_dropped += missing
        runs = [run for run in runs if len(run) >= 2]
        if not runs:
            report.degenerate_ways_dropped += 1
            continue
        if len(runs) > 1:
            report.ways_split += 1
        for run in runs:
            key = tuple(run)
            if key in seen_sequences:
                report.duplicate_ways_dropped += 1
                continue
            seen_sequences.add(key)
            ways.append(OsmWay(way_id, run, tags))
    return ways
