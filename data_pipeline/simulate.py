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
from collections.abc import Sequence
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
from data_pipeline.traffic import write_feed
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
    #: multiplies every period's rate (days that differ: 0.6x .. 1.4x of the profile)
    demand_scale: float = 1.0
    #: random incidents (a lane, or a one-lane road, closed for 20-60 min) per simulated day
    incidents: int = 0
    #: length of the traffic-feed windows (SUMO edgeData mean speeds)
    feed_window_s: float = 300.0

    def periods(self) -> list[DemandPeriod]:
        total = self.hours * 3600.0
        rate = self.rate_per_hour * self.demand_scale
        if self.profile == "flat":
            return [DemandPeriod(0.0, total, rate)]
        third = total / 3.0
        factors = (1.0, self.peak_factor, self.shoulder_factor)
        return [
            DemandPeriod(i * third, (i + 1) * third, rate * factor)
            for i, factor in enumerate(factors)
        ]


@dataclass(frozen=True)
class Incident:
    """A closure SUMO applied (recorded in the manifest)."""

    edge_id: str
    kind: str  # "lane" (one lane of a multi-lane edge) | "road" (the whole edge)
    begin_s: float
    end_s: float
    segments: tuple[int, ...]


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


def _sumo_command(net: Path, trip_files: list[Path], config: SimulationConfig, work: Path,
                  end_s: float, additional: Sequence[Path]) -> list[str]:
    """The sumo command line: outputs in ``work``, seeded, rerouting when configured."""
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
    if additional:
        command += ["-a", ",".join(str(path) for path in additional)]
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
    return command


def _run_sumo(
    net: Path,
    trip_files: list[Path],
    config: SimulationConfig,
    work: Path,
    *,
    progress: bool,
    additional: Sequence[Path] = (),
    position: int = 0,
) -> None:
    end_s = config.hours * 3600.0 + config.drain_s
    command = _sumo_command(net, trip_files, config, work, end_s, additional)
    from tqdm import tqdm

    bar = tqdm(total=int(end_s), unit="sim s", desc=f"sumo {work.name}", disable=not progress,
               mininterval=2.0, position=position)
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


@dataclass
class PreparedNet:
    """The SUMO net of an OSM file, pruned to edges that map onto the RoadGraph."""

    net: Path
    edges: dict[str, Any]
    edge_chains: dict[str, tuple[int, ...]]
    mapper: SegmentMapper
    lanes: dict[str, int]
    predecessors: dict[str, list[str]]


@dataclass
class DayResult:
    """One simulated day: trips, the traffic feed SUMO measured, what happened."""

    trips: Any  # pandas.DataFrame
    feed: Any  # pandas.DataFrame (data_pipeline.traffic feed columns)
    report: SimulationReport
    config: SimulationConfig
    incidents: list[Incident]


def prepare_net(osm_path, graph, work: Path, report: SimulationReport, *, log=print) -> PreparedNet:
    """OSM → netconvert → drop SUMO edges that do not map onto ``graph`` (once per run)."""
    from data_pipeline.osm_reader import read_osm

    clock = time.perf_counter()
    osm_data = read_osm(osm_path)
    write_osm_xml(osm_data, work / "drive.osm")
    raw_net, joins_path = work / "raw.net.xml", work / "joins.xml"
    build_net(work / "drive.osm", raw_net, joins_path=joins_path)
    report.timings_s["netconvert"] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()
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
    lanes, predecessors = _net_topology(net)
    report.timings_s["mapping_net"] = round(time.perf_counter() - clock, 2)
    return PreparedNet(net, edges, edge_chains, mapper, lanes, predecessors)


def _net_topology(net: Path) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Lane count per normal edge and the edges with a connection into each edge."""
    lanes: dict[str, int] = {}
    predecessors: dict[str, list[str]] = {}
    for _, element in ET.iterparse(net, events=("end",)):
        if element.tag == "edge" and element.get("function") in (None, "normal"):
            lanes[element.get("id", "")] = len(element.findall("lane"))
        elif element.tag == "connection":
            source, target = element.get("from", ""), element.get("to", "")
            if not source.startswith(":") and not target.startswith(":"):
                bucket = predecessors.setdefault(target, [])
                if source not in bucket:
                    bucket.append(source)
        if element.tag in ("edge", "connection"):
            element.clear()
    return lanes, predecessors


def draw_incidents(prepared: PreparedNet, config: SimulationConfig) -> list[Incident]:
    """``config.incidents`` random closures of 20-60 min starting in the first 70 % of the
    day, on mapped edges of at least 80 m that other edges lead into. A multi-lane edge
    loses one lane, a one-lane edge is closed."""
    if config.incidents <= 0:
        return []
    rng = np.random.default_rng(config.seed * 7919 + 17)
    candidates = sorted(
        edge_id
        for edge_id, edge in prepared.edges.items()
        if edge.length_m >= 80.0 and prepared.predecessors.get(edge_id)
        and prepared.edge_chains.get(edge_id)
    )
    if not candidates:
        return []
    horizon = config.hours * 3600.0
    incidents = []
    for edge_id in rng.choice(candidates, size=min(config.incidents, len(candidates)),
                              replace=False).tolist():
        begin = float(rng.uniform(0.1, 0.7) * horizon)
        duration = float(rng.uniform(20.0, 60.0) * 60.0)
        kind = "lane" if prepared.lanes.get(edge_id, 1) >= 2 else "road"
        incidents.append(Incident(edge_id, kind, round(begin), round(begin + duration),
                                  tuple(int(s) for s in prepared.edge_chains[edge_id])))
    return incidents


def _incident_file(incidents: list[Incident], prepared: PreparedNet, work: Path) -> Path:
    """SUMO rerouters: the closure applies on the edge, drivers approaching it re-plan."""
    lines = ["<additional>"]
    for index, incident in enumerate(incidents):
        watched = [incident.edge_id, *prepared.predecessors.get(incident.edge_id, [])]
        lines.append(f'  <rerouter id="incident{index}" edges="{" ".join(watched)}">')
        lines.append(f'    <interval begin="{incident.begin_s:.0f}" end="{incident.end_s:.0f}">')
        if incident.kind == "lane":
            lines.append(f'      <closingLaneReroute id="{incident.edge_id}_0"/>')
        else:
            lines.append(f'      <closingReroute id="{incident.edge_id}"/>')
        lines.append("    </interval>")
        lines.append("  </rerouter>")
    lines.append("</additional>")
    path = work / "incidents.add.xml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _edge_data_file(config: SimulationConfig, work: Path) -> Path:
    path = work / "edgedata.add.xml"
    path.write_text(
        "<additional>\n"
        f'  <edgeData id="feed" file="edgedata.xml" '
        f'period="{config.feed_window_s:.0f}" excludeEmpty="true"/>\n'
        "</additional>\n"
    )
    return path


def simulate_day(
    prepared: PreparedNet,
    config: SimulationConfig,
    work: Path,
    *,
    progress: bool = True,
    position: int = 0,
) -> DayResult:
    """Demand, SUMO and the trip table + traffic feed of one day (``config``'s seed,
    demand scale and incidents) on a prepared net."""
    import pandas as pd

    start = parse_start(config.start)
    report = SimulationReport()
    work.mkdir(parents=True, exist_ok=True)
    clock = time.perf_counter()
    trip_files = [
        _random_trips(prepared.net, period, index, config, work)
        for index, period in enumerate(config.periods())
    ]
    report.timings_s["demand"] = round(time.perf_counter() - clock, 2)
    incidents = draw_incidents(prepared, config)
    additional = [_edge_data_file(config, work)]
    if incidents:
        additional.append(_incident_file(incidents, prepared, work))
    clock = time.perf_counter()
    _run_sumo(prepared.net, trip_files, config, work, progress=progress,
              additional=additional, position=position)
    report.timings_s["sumo"] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()
    _read_statistics(work, report)
    teleported, report.teleports = _read_teleported(work)
    report.teleported_vehicles = len(teleported)
    table = _trip_table(prepared.net, prepared.edges, prepared.edge_chains, prepared.mapper,
                        teleported, start, work, report)
    feed = edge_data_feed(work / "edgedata.xml", prepared, start, config.feed_window_s)
    report.timings_s["trip_table"] = round(time.perf_counter() - clock, 2)
    return DayResult(pd.DataFrame(table), feed, report, config, incidents)


def simulate(
    osm_path: str | os.PathLike[str],
    graph,
    *,
    config: SimulationConfig,
    work_dir: Path | None = None,
    progress: bool = True,
    log=print,
) -> tuple[Any, SimulationReport]:
    """Simulate one day of traffic on the OSM file's drive network and return the trip
    table (a ``pandas.DataFrame``) with driven routes as ``graph`` segment indices."""
    result = simulate_days(osm_path, graph, configs=[config], work_dir=work_dir,
                           progress=progress, log=log)[0]
    return result.trips, result.report


def simulate_days(
    osm_path: str | os.PathLike[str],
    graph,
    *,
    configs: list[SimulationConfig],
    work_dir: Path | None = None,
    progress: bool = True,
    log=print,
    jobs: int | None = None,
) -> list[DayResult]:
    """Several days on one prepared net; the days' SUMO processes run in parallel
    (``jobs`` at a time, default one per CPU). Each day fails on its own gridlock."""
    from concurrent.futures import ThreadPoolExecutor

    for config in configs:
        if config.profile not in PROFILES:
            raise InputError(f"profile {config.profile!r}: expected one of {', '.join(PROFILES)}")
        if not config.hours > 0:
            raise InputError(f"hours {config.hours}: must be > 0")
        if not config.demand_scale > 0:
            raise InputError(f"demand scale {config.demand_scale}: must be > 0")
        parse_start(config.start)
    owned = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="nareta-sumo-")) if owned else Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        net_report = SimulationReport()
        prepared = prepare_net(osm_path, graph, work, net_report, log=log)
        workers = max(1, min(len(configs), jobs or os.cpu_count() or 1))

        def one(item: tuple[int, SimulationConfig]) -> DayResult:
            index, config = item
            day_work = work if len(configs) == 1 else work / f"day{index}"
            return simulate_day(prepared, config, day_work, progress=progress,
                                position=index % workers)

        # SUMO and randomTrips are processes of their own: threads keep them busy in parallel
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(one, enumerate(configs)))
    finally:
        if owned:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    for result in results:
        result.report.sumo_edges = net_report.sumo_edges
        result.report.sumo_edges_mapped = net_report.sumo_edges_mapped
        result.report.timings_s = {**net_report.timings_s, **result.report.timings_s}
        _check_gridlock(result.report, result.config)
    return results


def edge_data_feed(path: Path, prepared: PreparedNet, start: dt.datetime,
                   window_s: float, *, min_sampled_s: float = 5.0):
    """SUMO edgeData mean speeds → traffic-feed rows, one per (window, RoadGraph segment).

    A SUMO edge maps onto a chain of segments and a segment may be covered by several
    SUMO edges: a segment's speed is the length-weighted harmonic mean of the SUMO edges
    on it (the speed that gives their summed travel time). Speeds below 1 km/h (a queue
    that did not move in the window) are kept at 1 km/h."""
    import pandas as pd

    from data_pipeline.traffic import segment_feed_rows

    length: dict[tuple[float, int], float] = {}
    seconds: dict[tuple[float, int], float] = {}
    samples: dict[tuple[float, int], float] = {}
    if path.is_file():
        begin = 0.0
        for _, element in ET.iterparse(path, events=("start", "end")):
            if element.tag == "interval" and element.get("begin") is not None:
                begin = float(element.get("begin", "0"))
            if element.tag != "edge" or element.get("speed") is None:
                continue
            sampled = float(element.get("sampledSeconds", "0"))
            chain = prepared.edge_chains.get(element.get("id", ""))
            edge = prepared.edges.get(element.get("id", ""))
            if sampled < min_sampled_s or not chain or edge is None:
                continue
            speed_kph = max(float(element.get("speed", "0")) * 3.6, 1.0)
            travel = float(element.get("traveltime", "0") or 0.0)
            count = sampled / travel if travel > 0 else float(element.get("left", "0"))
            weight = max(edge.length_m, 1.0)
            for segment in chain:
                key = (begin, int(segment))
                length[key] = length.get(key, 0.0) + weight
                seconds[key] = seconds.get(key, 0.0) + weight / speed_kph
                samples[key] = samples.get(key, 0.0) + count
    keys = sorted(length)
    windows = [start + dt.timedelta(seconds=begin) for begin, _ in keys]
    segments = np.array([segment for _, segment in keys], dtype=np.int64)
    speeds = np.array([length[key] / seconds[key] for key in keys], dtype=np.float64)
    counts = np.array([max(1, round(samples[key])) for key in keys], dtype=np.int64)
    frame = segment_feed_rows(prepared.mapper.graph, segments, speeds, windows, counts)
    return pd.DataFrame(frame)


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


def _driven_routes(work: Path) -> dict[str, list[str]]:
    """SUMO edge ids each vehicle drove (``vehroute.xml``)."""
    routes: dict[str, list[str]] = {}
    for _, element in ET.iterparse(work / "vehroute.xml", events=("end",)):
        if element.tag == "vehicle":
            # with rerouting the vehicle holds a routeDistribution whose last route is the
            # one driven (replaced routes come first)
            driven = list(element.iter("route"))
            if driven:
                routes[element.get("id", "")] = driven[-1].get("edges", "").split()
            element.clear()
    return routes


def _route_segments(edge_ids: list[str], attributes: dict[str, str], edges, edge_chains,
                    mapper: SegmentMapper) -> list[int] | None:
    """The RoadGraph segments of a trip's SUMO route, trimmed to where it departs and
    arrives on its first and last edge; None where it does not map."""
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
    return mapper.join_route(chains)


def _trip_table(net, edges, edge_chains, mapper, teleported, start, work, report):
    to_lonlat = _net_projection(net)
    routes = _driven_routes(work)
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
        segments = _route_segments(edge_ids, attributes, edges, edge_chains, mapper)
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
        "--days", type=int, default=1,
        help="simulate this many weekdays (day i starts i weekdays after --start, seed + i)",
    )
    parser.add_argument(
        "--demand-scales",
        help="comma-separated demand scale per day (e.g. 0.6,1.0,1.4); default 1.0 for one "
        "day, else drawn uniformly in 0.6..1.4 from the seed",
    )
    parser.add_argument(
        "--incidents", type=int, default=None,
        help="random closures (a lane or a one-lane road, 20-60 min) per day "
        "(default 0 for one day, 1 for several)",
    )
    parser.add_argument(
        "--jobs", type=int, default=None, help="days simulated at once (default: CPU count)"
    )
    parser.add_argument(
        "--work-dir", type=Path, help="keep SUMO's intermediate files here (default: temporary)"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    parser.add_argument("--no-progress", action="store_true")


def feed_path_for(trips_path: Path) -> Path:
    """Where ``nareta simulate`` writes the traffic feed of a trips file."""
    return trips_path.with_name(trips_path.stem + ".traffic.parquet")


def day_configs(args: argparse.Namespace) -> list[SimulationConfig]:
    """One SimulationConfig per simulated day (consecutive weekdays from --start)."""
    if args.days < 1:
        raise InputError(f"--days {args.days}: must be at least 1")
    if args.demand_scales:
        try:
            scales = [float(v) for v in args.demand_scales.split(",")]
        except ValueError as exc:
            raise InputError(f"--demand-scales {args.demand_scales!r}: expected numbers "
                             "separated by commas") from exc
        if len(scales) != args.days or not all(v > 0 for v in scales):
            raise InputError(f"--demand-scales: give {args.days} positive value(s)")
    elif args.days == 1:
        scales = [1.0]
    else:
        rng = np.random.default_rng(args.seed)
        scales = np.round(rng.uniform(0.6, 1.4, size=args.days), 3).tolist()
    incidents = args.incidents if args.incidents is not None else (0 if args.days == 1 else 1)
    first = parse_start(args.start)
    day, configs = first, []
    for index in range(args.days):
        configs.append(SimulationConfig(
            hours=args.hours, profile=args.profile, seed=args.seed + index,
            start=day.isoformat(timespec="minutes"), rate_per_hour=args.rate,
            peak_factor=args.peak_factor, reroute_period_s=args.reroute_period,
            demand_scale=scales[index], incidents=incidents))
        day += dt.timedelta(days=1)
        while day.weekday() >= 5:
            day += dt.timedelta(days=1)
    return configs


def _clock(config: SimulationConfig, seconds: float) -> str:
    moment = parse_start(config.start) + dt.timedelta(seconds=seconds)
    return moment.isoformat(timespec="seconds")


def _report_json(report: SimulationReport) -> dict[str, Any]:
    return {**asdict(report), "teleport_share": round(report.teleport_share, 5),
            "mapping_rate": round(report.mapping_rate, 5)}


def _total_report(reports: list[SimulationReport]) -> SimulationReport:
    total = SimulationReport()
    for report in reports:
        for name in ("inserted", "loaded", "completed", "teleported_vehicles", "teleports",
                     "unfinished", "mapped", "trips_written"):
            setattr(total, name, getattr(total, name) + getattr(report, name))
    weight = max(sum(r.trips_written for r in reports), 1)
    total.mean_duration_s = round(sum(r.mean_duration_s * r.trips_written
                                      for r in reports) / weight, 1)
    total.mean_waiting_s = round(sum(r.mean_waiting_s * r.trips_written
                                     for r in reports) / weight, 1)
    total.sumo_edges, total.sumo_edges_mapped = reports[0].sumo_edges, reports[0].sumo_edges_mapped
    total.timings_s = dict(reports[0].timings_s)
    return total


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

    osm_file = check_osm_path(args.osm_file)
    out: Path = args.out
    if out.suffix != ".parquet":
        raise InputError(f"--out {out}: expected a .parquet file")
    if out.exists() and not args.force:
        from nareta.errors import OutputExistsError

        raise OutputExistsError(f"output {out}: already exists; pass --force to replace it")
    check_output_dir(out.with_name(out.name + ".probe"), force=True)
    configs = day_configs(args)
    log = print if not args.no_progress else (lambda *a, **k: None)
    started = time.perf_counter()
    graph = _load_or_build_graph(osm_file, args.graph, log)
    graph_dir = args.graph
    if graph_dir is None:  # routes name this graph's segments: keep it beside the trips
        graph_dir = out.with_name(out.stem + ".graph")
        graph.save(graph_dir, force=args.force, seed=0)
        graph = RoadGraph.load(graph_dir)
        log(f"RoadGraph written to {graph_dir}")
    days = simulate_days(
        osm_file,
        graph,
        configs=configs,
        work_dir=args.work_dir,
        progress=not args.no_progress,
        log=log,
        jobs=args.jobs,
    )
    import pandas as pd

    tables = []
    for index, day in enumerate(days):
        table = day.trips
        table.insert(len(table.columns), "day", np.int32(index))
        if len(days) > 1:
            table["trip_id"] = [f"d{index}_{trip}" for trip in table["trip_id"]]
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    feed = pd.concat([day.feed for day in days], ignore_index=True)
    report = _total_report([day.report for day in days])
    config = configs[0]
    feed_path = feed_path_for(out)
    manifest = _trips_manifest(osm_file, graph, graph_dir, config, report, days, feed_path,
                               wall_s=round(time.perf_counter() - started, 1))
    write_feed(feed, feed_path, metadata={"kind": "traffic_feed", "trips": out.name,
                                          "seed": config.seed,
                                          "command_line": manifest["command_line"]})
    write_trips(table, out, manifest=manifest, force=args.force)
    print(f"{len(feed)} traffic-feed rows written to {feed_path}")
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


def _trips_manifest(osm_file: Path, graph, graph_dir: Path, config: SimulationConfig,
                    report, days, feed_path: Path, *, wall_s: float) -> dict:
    """The trips table's manifest: source, graph, settings, per-day reports, the feed."""
    from nareta.artifacts import sha256_file

    graph_manifest = getattr(graph, "manifest", None)
    return {
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
        "report": _report_json(report),
        "days": [
            {
                "day": index,
                "start": day.config.start,
                "seed": day.config.seed,
                "demand_scale": day.config.demand_scale,
                "incidents": [
                    {**asdict(incident), "begin": _clock(day.config, incident.begin_s),
                     "end": _clock(day.config, incident.end_s)}
                    for incident in day.incidents
                ],
                "report": _report_json(day.report),
                "feed_rows": len(day.feed),
            }
            for index, day in enumerate(days)
        ],
        "traffic_feed": feed_path.name,
        "route_kind": "segment",
        "wall_s": wall_s,
    }
