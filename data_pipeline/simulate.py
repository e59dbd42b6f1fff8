"""Ground-truth trips from a SUMO traffic simulation (``nareta simulate``).

Pipeline: read and repair the OSM file with the project's own reader and drive filter →
OSM XML → netconvert → keep only SUMO edges that map onto the RoadGraph → randomTrips
(one call per demand period: validated routes, fringe factor for through traffic, random
departure and arrival positions) → sumo with tripinfo and vehroute output → one row per
completed, non-teleported trip in the trip table, its driven route mapped onto RoadGraph
segment indices.

Simulation second 0 is ``start`` (local clock time of the city). The ``rush`` profile is
an off-peak third, a peak third at ``peak_factor`` times the rate and a shoulder third at
``shoulder_factor`` times the rate; ``flat`` keeps one rate throughout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data_pipeline.sumo_net import (
    SegmentMapper,
    SumoError,
    build_net,
    junction_osm_nodes,
    read_edges,
    read_joins,
    run_tool,
    sumo_env,
    sumo_home,
    write_osm_xml,
)
from nareta.artifacts import check_output_dir, library_versions
from nareta.errors import InputError, NaretaError

MANIFEST_SUFFIX = ".manifest.json"
TRIPS_KIND = "trips"
TRIPS_SCHEMA_VERSION = 1
DEFAULT_START = "2026-11-18T06:00"  # a Wednesday
PROFILES = ("flat", "rush")


class GridlockError(NaretaError):
    """The simulated network jammed: too many vehicles never arrived or were teleported."""


@dataclass(frozen=True)
class DemandPeriod:
    begin_s: float
    end_s: float
    vehicles_per_hour: float


@dataclass
class SimulationConfig:
    """Everything that shapes a simulation; stored in the manifest."""

    hours: float = 3.0
    profile: str = "rush"
    seed: int = 0
    start: str = DEFAULT_START
    #: departures per hour in the off-peak (and throughout for ``flat``)
    rate_per_hour: float = 2500.0
    peak_factor: float = 2.4
    shoulder_factor: float = 1.4
    fringe_factor: float = 5.0
    min_distance_m: float = 500.0
    #: seconds after the last departure that vehicles may still finish
    drain_s: float = 1800.0
    time_to_teleport_s: float = 300.0
    #: drivers re-plan with current travel times every this many seconds (navigation
    #: apps); 0 keeps the route planned at departure on empty-network speeds
    reroute_period_s: float = 120.0
    #: share of inserted vehicles teleported or unfinished above which the run fails
    gridlock_share: float = 0.05

    def periods(self) -> list[DemandPeriod]:
        total = self.hours * 3600.0
        if self.profile == "flat":
            return [DemandPeriod(0.0, total, self.rate_per_hour)]
        third = total / 3.0
        factors = (1.0, self.peak_factor, self.shoulder_factor)
        return [
            DemandPeriod(i * third, (i + 1) * third, self.rate_per_hour * factor)
            for i, factor in enumerate(factors)
        ]


@dataclass
class SimulationReport:
    inserted: int = 0
    loaded: int = 0
    completed: int = 0
    teleported_vehicles: int = 0
    teleports: int = 0
    unfinished: int = 0
    mapped: int = 0
    trips_written: int = 0
    sumo_edges: int = 0
    sumo_edges_mapped: int = 0
    mean_duration_s: float = 0.0
    mean_waiting_s: float = 0.0
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def teleport_share(self) -> float:
        return self.teleported_vehicles / max(self.inserted, 1)

    @property
    def mapping_rate(self) -> float:
        usable = self.completed - self.teleported_vehicles
        return self.mapped / max(usable, 1)


def parse_start(text: str) -> dt.datetime:
    try:
        start = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise InputError(
            f"--start {text!r}: expected ISO-8601 local time such as {DEFAULT_START}"
        ) from exc
    if start.tzinfo is not None:
        raise InputError(f"--start {text!r}: give local clock time without a UTC offset")
    return start


# --------------------------------------------------------------------------- stages
def _random_trips(
    net: Path, period: DemandPeriod, index: int, config: SimulationConfig, work: Path
) -> Path:
    out = work / f"trips_{index}.xml"
    command = [
        sys.executable,
        str(sumo_home() / "tools" / "randomTrips.py"),
        "-n",
        str(net),
        "-o",
        str(out),
        "-r",
        str(work / f"routes_{index}.rou.xml"),
        "-b",
        f"{period.begin_s:.0f}",
        "-e",
        f"{period.end_s:.0f}",
        "--insertion-rate",
        f"{period.vehicles_per_hour:.3f}",
        "--seed",
        str(config.seed * 1000 + index),
        "--prefix",
        f"p{index}_",
        "--fringe-factor",
        str(config.fringe_factor),
        "--min-distance",
        str(config.min_distance_m),
        "--validate",
        "--random-departpos",
        "--random-arrivalpos",
        "--trip-attributes",
        'departLane="best" departSpeed="max"',
    ]
    run_tool(command, what=f"randomTrips (period {index})", log_path=work / f"trips_{index}.log")
    return out


_STEP = re.compile(rb"Step #(\d+(?:\.\d+)?)")


def _run_sumo(
    net: Path, trip_files: list[Path], config: SimulationConfig, work: Path, *, progress: bool
) -> None:
    end_s = config.hours * 3600.0 + config.drain_s
    command = [
        str(sumo_home() / "bin" / "sumo"),
        "-n",
        str(net),
        "-r",
        ",".join(str(path) for path in trip_files),
        "--begin",
        "0",
        "--end",
        f"{end_s:.0f}",
        "--seed",
        str(config.seed),
        "--tripinfo-output",
        str(work / "tripinfo.xml"),
        "--vehroute-output",
        str(work / "vehroute.xml"),
        "--statistic-output",
        str(work / "statistics.xml"),
        "--error-log",
        str(work / "sumo_warnings.log"),
        "--time-to-teleport",
        f"{config.time_to_teleport_s:.0f}",
        "--ignore-route-errors",
        "--routing-algorithm",
        "astar",
        "--step-log.period",
        "60",
        "--duration-log.statistics",
    ]
    if config.reroute_period_s > 0:
        command += [
            "--device.rerouting.probability",
            "1",
            "--device.rerouting.period",
            f"{config.reroute_period_s:.0f}",
            "--device.rerouting.pre-period",
            "0",
            "--device.rerouting.adaptation-interval",
            "10",
            "--device.rerouting.adaptation-steps",
            "18",
        ]
    from tqdm import tqdm

    bar = tqdm(total=int(end_s), unit="sim s", desc="sumo", disable=not progress, mininterval=2.0)
    log = open(work / "sumo.log", "wb")  # noqa: SIM115
    try:
        process = subprocess.Popen(
            command, env=sumo_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert process.stdout is not None
        position = 0
        while chunk := process.stdout.read1(4096):  # type: ignore[attr-defined]
            log.write(chunk)
            steps = _STEP.findall(chunk)
            if steps:
                now = int(float(steps[-1]))
                if now > position:
                    bar.update(now - position)
                    position = now
        code = process.wait()
    finally:
        bar.close()
        log.close()
    if code != 0:
        tail = (work / "sumo.log").read_text(errors="replace").strip().splitlines()[-15:]
        raise SumoError(f"sumo failed (exit {code}):\n" + "\n".join(tail))


def _net_projection(net: Path):
    """Function (x, y) -> (lon, lat) for a SUMO net's coordinates."""
    import pyproj

    location = None
    with open(net, "rb") as handle:
        for _, element in ET.iterparse(handle, events=("end",)):
            if element.tag == "location":
                location = element
                break
    if location is None:
        raise SumoError(f"{net}: no <location> element; not a SUMO net built from OSM")
    offset_x, offset_y = (float(v) for v in location.get("netOffset", "0,0").split(","))
    proj = pyproj.Proj(location.get("projParameter", ""))

    def to_lonlat(x, y):
        return proj(np.asarray(x) - offset_x, np.asarray(y) - offset_y, inverse=True)

    return to_lonlat


def _point_at(shape: list[tuple[float, float]], offset_m: float) -> tuple[float, float]:
    """Point at ``offset_m`` metres along a polyline (clamped to its ends)."""
    remaining = max(offset_m, 0.0)
    for (x0, y0), (x1, y1) in zip(shape, shape[1:], strict=False):
        piece = math.hypot(x1 - x0, y1 - y0)
        if remaining <= piece and piece > 0:
            share = remaining / piece
            return x0 + share * (x1 - x0), y0 + share * (y1 - y0)
        remaining -= piece
    return shape[-1]


def _lane_edge(lane_id: str) -> str:
    return lane_id.rsplit("_", 1)[0]


def _read_teleported(work: Path) -> tuple[set[str], int]:
    pattern = re.compile(r"Teleporting vehicle '([^']+)'")
    vehicles: set[str] = set()
    count = 0
    path = work / "sumo_warnings.log"
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            match = pattern.search(line)
            if match:
                vehicles.add(match.group(1))
                count += 1
    return vehicles, count


def _read_statistics(work: Path, report: SimulationReport) -> None:
    root = ET.parse(work / "statistics.xml").getroot()
    vehicles = root.find("vehicles")
    if vehicles is not None:
        report.loaded = int(vehicles.get("loaded", "0"))
        report.inserted = int(vehicles.get("inserted", "0"))
        report.unfinished = int(vehicles.get("running", "0")) + int(vehicles.get("waiting", "0"))


def simulate(
    osm_path: str | os.PathLike[str],
    graph,
    *,
    config: SimulationConfig,
    work_dir: Path | None = None,
    progress: bool = True,
    log=print,
) -> tuple[Any, SimulationReport]:
    """Simulate traffic on the OSM file's drive network and return the trip table
    (a ``pandas.DataFrame``) with driven routes as ``graph`` segment indices."""
    import pandas as pd

    from data_pipeline.osm_reader import read_osm

    if config.profile not in PROFILES:
        raise InputError(f"profile {config.profile!r}: expected one of {', '.join(PROFILES)}")
    if not config.hours > 0:
        raise InputError(f"hours {config.hours}: must be > 0")
    start = parse_start(config.start)
    report = SimulationReport()
    owned = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="nareta-sumo-")) if owned else Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        report.timings_s[name] = round(now - clock, 2)
        clock = now

    try:
        osm_data = read_osm(osm_path)
        write_osm_xml(osm_data, work / "drive.osm")
        raw_net, joins_path = work / "raw.net.xml", work / "joins.xml"
        build_net(work / "drive.osm", raw_net, joins_path=joins_path)
        lap("netconvert")

        mapper = SegmentMapper(graph)
        joins = read_joins(joins_path)
        edge_chains = _map_edges(raw_net, joins, mapper)
        unmapped = [edge for edge, chain in edge_chains.items() if not chain]
        net = work / "net.xml"
        build_net(
            work / "drive.osm", net, joins_path=joins_path, remove_edges=unmapped, base_net=raw_net
        )
        edges = read_edges(net)
        report.sumo_edges = len(edge_chains)
        report.sumo_edges_mapped = len(edge_chains) - len(unmapped)
        log(
            f"SUMO net: {len(edge_chains)} edges, {report.sumo_edges_mapped} map onto the "
            f"RoadGraph; simulating on {len(edges)}"
        )
        lap("mapping_net")

        trip_files = [
            _random_trips(net, period, index, config, work)
            for index, period in enumerate(config.periods())
        ]
        lap("demand")
        _run_sumo(net, trip_files, config, work, progress=progress)
        lap("sumo")

        _read_statistics(work, report)
        teleported, report.teleports = _read_teleported(work)
        report.teleported_vehicles = len(teleported)
        table = _trip_table(net, edges, edge_chains, mapper, teleported, start, work, report)
        lap("trip_table")
    finally:
        if owned:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    _check_gridlock(report, config)
    return pd.DataFrame(table), report


def _map_edges(
    net: Path, joins: dict[int, list[int]], mapper: SegmentMapper
) -> dict[str, tuple[int, ...]]:
    chains: dict[str, tuple[int, ...]] = {}
    for edge_id, edge in read_edges(net).items():
        chains[edge_id] = mapper.map_edge(
            junction_osm_nodes(edge.from_junction, joins),
            junction_osm_nodes(edge.to_junction, joins),
            max_length_m=2.0 * edge.length_m + 100.0,
        )
    return chains


def _trip_table(net, edges, edge_chains, mapper, teleported, start, work, report):
    to_lonlat = _net_projection(net)
    routes: dict[str, list[str]] = {}
    for _, element in ET.iterparse(work / "vehroute.xml", events=("end",)):
        if element.tag == "vehicle":
            # with rerouting the vehicle holds a routeDistribution whose last route is the
            # one driven (replaced routes come first)
            driven = list(element.iter("route"))
            if driven:
                routes[element.get("id", "")] = driven[-1].get("edges", "").split()
            element.clear()
    rows: dict[str, list] = {
        name: []
        for name in (
            "trip_id",
            "departure_time",
            "duration_s",
            "route",
            "route_length_m",
            "waiting_time_s",
            "origin_x",
            "origin_y",
            "destination_x",
            "destination_y",
        )
    }
    durations, waits = [], []
    for _, element in ET.iterparse(work / "tripinfo.xml", events=("end",)):
        if element.tag != "tripinfo":
            continue
        vehicle = element.get("id", "")
        attributes = dict(element.attrib)
        element.clear()
        report.completed += 1
        if vehicle in teleported or attributes.get("vaporized"):
            continue
        durations.append(float(attributes["duration"]))
        waits.append(float(attributes.get("waitingTime", "0")))
        edge_ids = routes.get(vehicle)
        if not edge_ids:
            continue
        chains = [edge_chains.get(edge, ()) for edge in edge_ids]
        if chains and all(chains):
            # the trip starts / ends part-way along its first / last SUMO edge: keep only
            # the segments of those edges' chains that it drives
            last = len(chains) - 1
            chains[0] = _trim_chain(
                chains[0],
                float(attributes["departPos"]),
                edges[edge_ids[0]].length_m,
                mapper,
                keep="after",
            )
            chains[last] = _trim_chain(
                chains[last],
                float(attributes["arrivalPos"]),
                edges[edge_ids[last]].length_m,
                mapper,
                keep="before",
                start_at=float(attributes["departPos"]) if last == 0 else None,
            )
        segments = mapper.join_route(chains)
        if segments is None:
            continue
        report.mapped += 1
        depart_edge = edges[_lane_edge(attributes["departLane"])]
        arrival_edge = edges[_lane_edge(attributes["arrivalLane"])]
        ox, oy = _point_at(depart_edge.shape_xy, float(attributes["departPos"]))
        dx, dy = _point_at(arrival_edge.shape_xy, float(attributes["arrivalPos"]))
        depart_s = float(attributes["depart"])
        rows["trip_id"].append(vehicle)
        rows["departure_time"].append(
            (start + dt.timedelta(seconds=depart_s)).isoformat(timespec="seconds")
        )
        rows["duration_s"].append(float(attributes["duration"]))
        rows["route"].append(np.asarray(segments, dtype=np.int32))
        rows["route_length_m"].append(float(attributes.get("routeLength", "nan")))
        rows["waiting_time_s"].append(float(attributes.get("waitingTime", "nan")))
        rows["origin_x"].append(ox)
        rows["origin_y"].append(oy)
        rows["destination_x"].append(dx)
        rows["destination_y"].append(dy)
    report.mean_duration_s = round(float(np.mean(durations)), 1) if durations else 0.0
    report.mean_waiting_s = round(float(np.mean(waits)), 1) if waits else 0.0
    origin_lon, origin_lat = to_lonlat(rows.pop("origin_x"), rows.pop("origin_y"))
    destination_lon, destination_lat = to_lonlat(
        rows.pop("destination_x"), rows.pop("destination_y")
    )
    table = {
        "origin_lon": np.asarray(origin_lon, dtype=np.float64),
        "origin_lat": np.asarray(origin_lat, dtype=np.float64),
        "destination_lon": np.asarray(destination_lon, dtype=np.float64),
        "destination_lat": np.asarray(destination_lat, dtype=np.float64),
        **rows,
    }
    report.trips_written = len(rows["trip_id"])
    return table


def _trim_chain(
    chain: tuple[int, ...],
    position_m: float,
    edge_length_m: float,
    mapper: SegmentMapper,
    *,
    keep: str,
    start_at: float | None = None,
) -> tuple[int, ...]:
    """The part of an edge's segment chain after (``keep="after"``) or up to
    (``keep="before"``) the point ``position_m`` metres along the edge."""
    if len(chain) < 2 or edge_length_m <= 0:
        return chain
    lengths = np.asarray([mapper.segment_length(s) for s in chain])
    ends = np.cumsum(lengths) / lengths.sum() * edge_length_m  # edge offset of segment ends
    index = int(np.searchsorted(ends, min(max(position_m, 0.0), edge_length_m)))
    index = min(index, len(chain) - 1)
    if keep == "after":
        return chain[index:]
    first = 0
    if start_at is not None:  # first and last edge are the same: cut both ends
        first = min(int(np.searchsorted(ends, max(start_at, 0.0))), index)
    return chain[first : index + 1]


def _check_gridlock(report: SimulationReport, config: SimulationConfig) -> None:
    if report.inserted == 0:
        raise GridlockError("no vehicle could be inserted: the demand found no routes")
    unfinished_share = report.unfinished / report.inserted
    if report.teleport_share > config.gridlock_share or unfinished_share > config.gridlock_share:
        raise GridlockError(
            f"the network gridlocked: {report.teleported_vehicles} of {report.inserted} "
            f"vehicles teleported ({report.teleport_share:.1%}) and {report.unfinished} had not "
            f"arrived {config.drain_s:.0f} s after the last departure; lower --rate "
            f"(now {config.rate_per_hour:.0f}/h) or the profile's peak factor"
        )


def write_trips(table, out: Path, *, manifest: dict[str, Any], force: bool) -> Path:
    """Write the trip table as Parquet (manifest in its metadata and beside it), atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if out.exists() and not force:
        from nareta.errors import OutputExistsError

        raise OutputExistsError(f"output {out}: already exists; pass --force to replace it")
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    arrow = arrow.replace_schema_metadata(
        {**(arrow.schema.metadata or {}), b"nareta": json.dumps(manifest).encode()}
    )
    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    manifest_staging = out.with_name(f".{out.name}{MANIFEST_SUFFIX}.tmp-{os.getpid()}")
    try:
        pq.write_table(arrow, staging)
        manifest_staging.write_text(json.dumps(manifest, indent=2, sort_keys=True))
        os.replace(staging, out)
        os.replace(manifest_staging, out.with_name(out.name + MANIFEST_SUFFIX))
    finally:
        for path in (staging, manifest_staging):
            if path.exists():
                path.unlink()
    return out


# --------------------------------------------------------------------------- CLI
def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("osm_file", help="OSM extract (.osm.pbf, .osm, .osm.bz2)")
    parser.add_argument("--out", required=True, type=Path, help="trip table (.parquet)")
    parser.add_argument(
        "--graph",
        type=Path,
        help="RoadGraph artifact built from the same OSM file; routes are "
        "written as its segment indices (if omitted, one is built and "
        "written beside --out as <name>.graph/)",
    )
    parser.add_argument("--hours", type=float, default=3.0, help="simulated hours of demand")
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default="rush",
        help="flat rate, or off-peak / peak / shoulder thirds",
    )
    parser.add_argument(
        "--rate", type=float, default=2500.0, help="departures per hour (off-peak for rush)"
    )
    parser.add_argument("--peak-factor", type=float, default=2.4)
    parser.add_argument(
        "--reroute-period",
        type=float,
        default=120.0,
        help="seconds between drivers' re-planning on current travel times "
        "(0 = keep the route chosen at departure)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--start", default=DEFAULT_START, help="local clock time of simulation second 0 (ISO-8601)"
    )
    parser.add_argument(
        "--work-dir", type=Path, help="keep SUMO's intermediate files here (default: temporary)"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    parser.add_argument("--no-progress", action="store_true")


def _load_or_build_graph(osm_file: Path, graph_dir: Path | None, log):
    from data_pipeline.road_graph import RoadGraph

    if graph_dir is not None:
        return RoadGraph.load(graph_dir)
    try:
        from data_pipeline.ingest import ingest_osm
    except ImportError as exc:
        raise InputError("pass --graph ROADGRAPH_DIR (built with `nareta ingest`)") from exc
    log(f"building the RoadGraph from {osm_file} (pass --graph to reuse one)")
    return ingest_osm(osm_file).graph


def run(args: argparse.Namespace) -> int:
    from data_pipeline.osm_reader import check_osm_path
    from data_pipeline.road_graph import RoadGraph
    from nareta.artifacts import sha256_file

    osm_file = check_osm_path(args.osm_file)
    out: Path = args.out
    if out.suffix != ".parquet":
        raise InputError(f"--out {out}: expected a .parquet file")
    if out.exists() and not args.force:
        from nareta.errors import OutputExistsError

        raise OutputExistsError(f"output {out}: already exists; pass --force to replace it")
    check_output_dir(out.with_name(out.name + ".probe"), force=True)
    config = SimulationConfig(
        hours=args.hours,
        profile=args.profile,
        seed=args.seed,
        start=args.start,
        rate_per_hour=args.rate,
        peak_factor=args.peak_factor,
        reroute_period_s=args.reroute_period,
    )
    parse_start(config.start)
    log = print if not args.no_progress else (lambda *a, **k: None)
    started = time.perf_counter()
    graph = _load_or_build_graph(osm_file, args.graph, log)
    graph_dir = args.graph
    if graph_dir is None:  # routes name this graph's segments: keep it beside the trips
        graph_dir = out.with_name(out.stem + ".graph")
        graph.save(graph_dir, force=args.force, seed=0)
        graph = RoadGraph.load(graph_dir)
        log(f"RoadGraph written to {graph_dir}")
    table, report = simulate(
        osm_file,
        graph,
        config=config,
        work_dir=args.work_dir,
        progress=not args.no_progress,
        log=log,
    )
    graph_manifest = getattr(graph, "manifest", None)
    manifest = {
        "kind": TRIPS_KIND,
        "schema_version": TRIPS_SCHEMA_VERSION,
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seed": config.seed,
        "command": ["nareta", "simulate", *sys.argv[2:]]
        if sys.argv[1:2] == ["simulate"]
        else sys.argv,
        "command_line": shlex.join(sys.argv),
        "library_versions": library_versions(),
        "source_osm": {"path": str(osm_file), "sha256": sha256_file(osm_file)},
        "graph": {
            "path": str(graph_dir),
            "files": graph_manifest.get("files") if graph_manifest else None,
        },
        "config": asdict(config),
        "report": {
            **asdict(report),
            "teleport_share": round(report.teleport_share, 5),
            "mapping_rate": round(report.mapping_rate, 5),
        },
        "route_kind": "segment",
        "wall_s": round(time.perf_counter() - started, 1),
    }
    write_trips(table, out, manifest=manifest, force=args.force)
    print(
        f"{report.trips_written} trips written to {out} "
        f"({report.completed} completed of {report.inserted} inserted; "
        f"teleported {report.teleported_vehicles} = {report.teleport_share:.2%}; "
        f"routes mapped {report.mapping_rate:.1%}; mean duration {report.mean_duration_s} s, "
        f"mean waiting {report.mean_waiting_s} s; {manifest['wall_s']} s)"
    )
    if report.teleport_share > 0.01:
        print(
            f"warning: {report.teleport_share:.1%} of vehicles were teleported (jams); "
            "consider a lower --rate",
            file=sys.stderr,
        )
    return 0
