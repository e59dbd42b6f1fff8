"""Service benchmark: nareta beside osrm-routed, both loaded by ``wrk`` on this machine.

    python benchmarks/service.py [--seconds 5] [--repeats 2] [--concurrency 1,8,32]

Builds osrm-routed from the ``osrm-bindings`` wheel on PyPI (cp312 abi3; its ``osrm/bin``
tools run on their own: osrm-extract with car.lua and osrm-contract on the bundled
``data/osm/baltimore.osm.pbf``; cached under ``runs/osrm``, never committed), starts it
(contraction hierarchies) and ``nareta serve --workers 2`` with the shipped ETA model and
with free flow, then loads each with wrk and a Lua script cycling through the same OD pairs
(random points on random roads of the bundled city): ``GET /route/v1/driving/...?
overview=false`` at each concurrency, the servers and levels interleaved, ``--repeats``
rounds, medians reported. Then a 100x100 ``/table`` on fresh points for each (median of
``--table-sets``, the servers interleaved), nareta's ``GET /health`` at c=8 (the HTTP
stack's ceiling), and a parity check of the two servers' answers. wrk's socket errors are
reported apart from non-2xx answers: osrm-routed closes a keep-alive connection after some
hundreds of requests, which wrk counts as a read error before it reconnects. Prints a table
with p50 / requests/s and ratios to OSRM, and writes ``benchmarks/results/service.json``
(with the git commit and command line).

``--overload`` then loads each nareta server at c=128 and c=1000 (above the
per-process in-flight limit, ``NARETA_MAX_IN_FLIGHT``) with a script that counts 503s:
the shed count, answered (2xx) requests/s and p99, so the load shedding is shown
(``overload`` in the JSON).

Targets (issue 12, learned model, bundled city): p50 at c=1 <= 5x OSRM's; requests/s at c=8
>= 0.25x OSRM's; 100x100 table <= 3x OSRM's. ``--synthetic`` adds nareta (free flow) on a
50k-node perturbed grid with trips of the city's straight-line lengths (target: p50 within
1.5x of the city's). wrk runs on the same machine and takes CPU from the servers.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from osrm_reference import OSRM_WHEEL, prepare_osrm, routed_command  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BUNDLED_OSM = REPO / "data" / "osm" / "baltimore.osm.pbf"
SHIPPED_MODEL = "artifacts_shipped/eta_baltimore"
WRK_MISSING = ("wrk is not installed; this benchmark drives both servers with it. Install it "
               "with `apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk` (macOS).")
TARGETS = {"p50_c1_ratio_max": 5.0, "rps_c8_ratio_min": 0.25, "table_ratio_max": 3.0,
           "synthetic_p50_ratio_max": 1.5}


# ---------------------------------------------------------------------- graphs
def city_graph(out: Path) -> Path:
    from data_pipeline.ingest import ingest_osm

    ingest_osm(BUNDLED_OSM).graph.save(out)
    return out


def synthetic_graph(out: Path, *, nodes: int = 50_000, spacing_m: float = 120.0,
                    seed: int = 0) -> Path:
    """A perturbed grid of about `nodes` junctions with two-way streets, every 6th row and
    column a faster arterial, 8 % of streets removed, as a RoadGraph artifact."""
    from data_pipeline.road_graph import (
        HIGHWAY_CLASSES,
        SEGMENT_FEATURES,
        TURN_FEATURES,
        RoadGraph,
    )

    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(nodes)))
    rows, cols = np.divmod(np.arange(side * side), side)
    x = cols * spacing_m + rng.normal(0, spacing_m * 0.15, side * side)
    y = rows * spacing_m + rng.normal(0, spacing_m * 0.15, side * side)
    lat0, lon0 = 39.0, -76.8
    lat = lat0 + y / 111_320.0
    lon = lon0 + x / (111_320.0 * np.cos(np.radians(lat0)))
    index = np.arange(side * side).reshape(side, side)
    pairs = np.concatenate([
        np.stack([index[:, :-1].ravel(), index[:, 1:].ravel()], axis=1),
        np.stack([index[:-1, :].ravel(), index[1:, :].ravel()], axis=1)])
    arterial = np.concatenate([np.repeat(np.arange(side) % 6 == 0, side - 1),  # rows
                               np.tile(np.arange(side) % 6 == 0, side - 1)])  # columns
    keep = arterial | (rng.random(len(pairs)) > 0.08)
    pairs, arterial = pairs[keep], arterial[keep]
    source = np.concatenate([pairs[:, 0], pairs[:, 1]])
    target = np.concatenate([pairs[:, 1], pairs[:, 0]])
    major = np.concatenate([arterial, arterial])
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = side * side
    _, labels = connected_components(coo_matrix((np.ones(len(source)), (source, target)),
                                                shape=(n, n)), directed=True, connection="strong")
    largest = np.bincount(labels).argmax()
    alive = labels == largest
    renumber = np.cumsum(alive) - 1
    keep_edges = alive[source] & alive[target]
    source, target, major = renumber[source[keep_edges]], renumber[target[keep_edges]], major[
        keep_edges]
    lon, lat, x, y = lon[alive], lat[alive], x[alive], y[alive]
    n, e = int(alive.sum()), len(source)
    length = np.hypot(x[target] - x[source], y[target] - y[source]).astype(np.float32)
    speed = np.where(major, 60.0, 30.0).astype(np.float32)
    bearing = (np.degrees(np.arctan2(x[target] - x[source], y[target] - y[source])) + 360) % 360
    arrays = {
        "node_osm_id": np.arange(1, n + 1, dtype=np.int64),
        "node_lon": lon, "node_lat": lat, "node_x_m": x, "node_y_m": y,
        "node_control": np.zeros(n, np.int16), "node_crossing": np.zeros(n, bool),
        "edge_source": source.astype(np.int64), "edge_target": target.astype(np.int64),
        "turn_from": np.zeros(0, np.int64), "turn_to": np.zeros(0, np.int64),
        "path_offsets": np.arange(0, 2 * e + 1, 2, dtype=np.int64),
        "path_osm_node": np.stack([source + 1, target + 1], axis=1).ravel().astype(np.int64),
        "path_lon": np.stack([lon[source], lon[target]], axis=1).ravel(),
        "path_lat": np.stack([lat[source], lat[target]], axis=1).ravel(),
        "path_way_id": np.repeat(np.arange(e, dtype=np.int64), 2),
    }
    for name, dtype in {**SEGMENT_FEATURES}.items():
        arrays[name] = np.zeros(e, dtype=dtype)
    for name, dtype in TURN_FEATURES.items():
        arrays[name] = np.zeros(0, dtype=dtype)
    arrays.update(
        length_m=length, maxspeed_kph=speed, lanes=np.where(major, 2, 1).astype(np.float32),
        highway=np.where(major, HIGHWAY_CLASSES.index("secondary"),
                         HIGHWAY_CLASSES.index("residential")).astype(np.int16),
        curvature=np.ones(e, np.float32), bearing_in_deg=bearing.astype(np.float32),
        bearing_out_deg=bearing.astype(np.float32),
        free_flow_s=(length / (speed / 3.6)).astype(np.float32))
    RoadGraph(arrays=arrays, crs_epsg=32618, metadata={"synthetic": "perturbed grid"}).save(out)
    return out


# ---------------------------------------------------------------------- OD pairs
def road_points(graph_dir: Path, count: int, rng: np.random.Generator) -> np.ndarray:
    """``[count, 2]`` (lon, lat) points at random positions on random roads (pieces of
    segments, chosen by length), rounded to 6 decimals as clients send them."""
    with np.load(graph_dir / "graph.npz") as data:
        lon, lat, offsets = data["path_lon"], data["path_lat"], data["path_offsets"]
    starts = np.ones(len(lon), dtype=bool)
    starts[offsets[1:] - 1] = False  # a segment's last point starts no piece
    first = np.flatnonzero(starts)  # [Q] pieces: first[i] -> first[i] + 1
    lengths = np.hypot(np.diff(lon)[first] * np.cos(np.radians(lat[first])),
                       np.diff(lat)[first])
    piece = rng.choice(first, size=count, p=lengths / lengths.sum())
    share = rng.random(count)
    points = np.stack([lon[piece] + share * (lon[piece + 1] - lon[piece]),
                       lat[piece] + share * (lat[piece + 1] - lat[piece])], axis=1)
    return np.round(points, 6)


def matched_pairs(graph_dir: Path, lengths_m: np.ndarray, count: int,
                  rng: np.random.Generator) -> np.ndarray:
    """``[count, 2, 2]`` node pairs on another map whose straight-line lengths are drawn
    from ``lengths_m`` (the city's trips, on a bigger map)."""
    from scipy.spatial import cKDTree

    with np.load(graph_dir / "graph.npz") as data:
        lon, lat = data["node_lon"], data["node_lat"]
        xy = np.stack([data["node_x_m"], data["node_y_m"]], 1)
    origins = rng.integers(len(lon), size=count)
    angle = rng.uniform(0, 2 * np.pi, count)
    length = rng.choice(lengths_m, size=count)
    _, destinations = cKDTree(xy).query(
        xy[origins] + length[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1))
    return np.stack([np.stack([lon[origins], lat[origins]], 1),
                     np.stack([lon[destinations], lat[destinations]], 1)], 1).round(6)


def crow_fly_m(pairs: np.ndarray) -> np.ndarray:
    lon, lat = pairs[:, :, 0], pairs[:, :, 1]
    x = np.radians(lon[:, 1] - lon[:, 0]) * np.cos(np.radians(lat.mean(1))) * 6_371_009
    y = np.radians(lat[:, 1] - lat[:, 0]) * 6_371_009
    return np.hypot(x, y)


def route_paths(pairs: np.ndarray) -> list[str]:
    return [f"/route/v1/driving/{a[0]:.6f},{a[1]:.6f};{b[0]:.6f},{b[1]:.6f}?overview=false"
            for a, b in pairs]


# ---------------------------------------------------------------------- servers
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class Server:
    """A server process on a free port, ready once ``probe`` answers."""

    def __init__(self, name: str, command: list[str], *, probe: str,
                 env: dict[str, str] | None = None, log: Path):
        self.name, self.port = name, _free_port()
        command = [part.replace("{port}", str(self.port)) for part in command]
        environment = {**os.environ, **(env or {})}
        environment = {k: v.replace("{port}", str(self.port)) for k, v in environment.items()}
        with open(log, "wb") as out:
            self.process = subprocess.Popen(command, env=environment, cwd=REPO, stdout=out,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} exited during start-up; see {log}")
            try:
                if get(self.port, probe)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{name} not ready after 300 s; see {log}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def nareta(name: str, graph_dir: Path, model: str, workers: int, log: Path,
           extra_env: dict[str, str] | None = None) -> Server:
    env = {"PYTHONPATH": str(REPO), "NARETA_GRAPH_DIR": str(graph_dir),
           "NARETA_MODEL_DIR": str(REPO / model) if model != "freeflow" else model,
           "NARETA_PORT": "{port}", "NARETA_WORKERS": str(workers),
           "NARETA_LOG_LEVEL": "warning", "NARETA_ACCESS_LOG": "false", **(extra_env or {})}
    return Server(name, [sys.executable, "-m", "nareta.cli", "serve"], probe="/ready",
                  env=env, log=log)


def osrm_routed(bin_dir: Path, base: Path, threads: int, log: Path) -> Server:
    return Server("osrm-routed (CH)",
                  routed_command(bin_dir, base, port="{port}", threads=threads),
                  probe="/nearest/v1/driving/-76.61,39.29", log=log)


# ---------------------------------------------------------------------- wrk
LUA = """
local paths = %s
local count = 0
local threads = {}
function setup(thread)
  thread:set("offset", #threads * 389)
  table.insert(threads, thread)
end
function init(args)
  count = offset or 0
end
function request()
  count = count + 1
  return wrk.format("GET", paths[(count %% #paths) + 1])
end
%s
function done(summary, latency, requests)
  local e = summary.errors
  local shed = 0
  for _, thread in ipairs(threads) do shed = shed + (thread:get("shed") or 0) end
  io.write(string.format(
    'WRKJSON {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,' ..
    '"errors":%%d,"non_2xx":%%d,"shed_503":%%d}\\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status, shed))
end
"""
#: counts 503 answers per thread (only in overload runs: a Lua response() callback makes
#: wrk parse every response in Lua, which slows the client)
LUA_COUNT_503 = """
shed = 0
function response(status, headers, body)
  if status == 503 then shed = shed + 1 end
end
"""
#: concurrency levels of ``--overload``: above NARETA_MAX_IN_FLIGHT (64) per process and
#: far above it, where the server must shed (503 + Retry-After) rather than queue
OVERLOAD_LEVELS = (128, 1000)


def wrk_script(paths: list[str], folder: Path, name: str, *, count_503: bool = False
               ) -> Path:
    script = folder / f"{name}.lua"
    script.write_text(LUA % ("{" + ",".join(json.dumps(p) for p in paths) + "}",
                             LUA_COUNT_503 if count_503 else ""))
    return script


def run_wrk(port: int, script: Path, *, concurrency: int, seconds: float) -> dict:
    threads = min(concurrency, 2)
    command = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout", "20s",
               "-s", str(script), f"http://127.0.0.1:{port}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("WRKJSON "))
    raw = json.loads(line.removeprefix("WRKJSON "))
    return {"concurrency": concurrency, "requests": raw["requests"],
            "requests_per_s": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
            "p50_ms": raw["p50_us"] / 1000, "p90_ms": raw["p90_us"] / 1000,
            "p99_ms": raw["p99_us"] / 1000, "errors": raw["errors"], "non_2xx": raw["non_2xx"],
            **({"shed_503": raw["shed_503"], "answered_2xx_per_s": round(
                (raw["requests"] - raw["non_2xx"]) / (raw["duration_us"] / 1e6), 1)}
               if "function response" in script.read_text() else {})}


def table_ms(servers: list[Server], point_sets: list[np.ndarray]) -> dict[str, dict]:
    """Per server, the median milliseconds of one ``/table`` per point set (fresh points
    each time, so no cached run answers it), the servers interleaved per point set."""
    timings: dict[str, list[float]] = {server.name: [] for server in servers}
    for points in point_sets:
        path = "/table/v1/driving/" + ";".join(f"{lon:.6f},{lat:.6f}" for lon, lat in points)
        for server in servers:
            started = time.perf_counter()
            status, body = get(server.port, path)
            timings[server.name].append((time.perf_counter() - started) * 1000)
            if status != 200:
                raise RuntimeError(f"table failed on {server.name}: {body[:300]!r}")
    size = f"{len(point_sets[0])}x{len(point_sets[0])}"
    return {name: {"size": size, "median_ms": round(statistics.median(values), 1),
                   "runs_ms": [round(t, 1) for t in values]}
            for name, values in timings.items()}


def parity(osrm_port: int, nareta_port: int, paths: list[str]) -> dict:
    """The two servers' answers to the same route requests: snapped locations, durations
    and distances (nareta free flow against OSRM's car profile)."""
    moved, duration_ratio, distance_ratio, failures = [], [], [], {}
    for path in paths:
        answers = []
        for port in (osrm_port, nareta_port):
            status, body = get(port, path)
            answers.append(json.loads(body))
        osrm_answer, nareta_answer = answers
        if osrm_answer["code"] != "Ok" or nareta_answer["code"] != "Ok":
            key = f"osrm {osrm_answer['code']} / nareta {nareta_answer['code']}"
            failures[key] = failures.get(key, 0) + 1
            continue
        for a, b in zip(osrm_answer["waypoints"], nareta_answer["waypoints"], strict=True):
            (lon_a, lat_a), (lon_b, lat_b) = a["location"], b["location"]
            moved.append(float(np.hypot((lon_a - lon_b) * np.cos(np.radians(lat_a)),
                                        lat_a - lat_b) * 111_320))
        route_a, route_b = osrm_answer["routes"][0], nareta_answer["routes"][0]
        if route_a["duration"] > 0 and route_a["distance"] > 0:
            duration_ratio.append(route_b["duration"] / route_a["duration"])
            distance_ratio.append(route_b["distance"] / route_a["distance"])
    return {"requests": len(paths), "not_both_ok": failures,
            "waypoints_within_5m_share": round(float(np.mean(np.array(moved) <= 5)), 3),
            "duration_ratio_median": round(float(np.median(duration_ratio)), 3),
            "distance_ratio_median": round(float(np.median(distance_ratio)), 3),
            "distance_ratio_p10_p90": [round(float(q), 3) for q in
                                       np.percentile(distance_ratio, [10, 90])]}


# ---------------------------------------------------------------------- report
def medians(rows: list[dict]) -> dict:
    return {"p50_ms": round(statistics.median(r["p50_ms"] for r in rows), 2),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in rows), 2),
            "requests_per_s": round(statistics.median(r["requests_per_s"] for r in rows), 1),
            "socket_errors": sum(r["errors"] for r in rows),
            "non_2xx": sum(r["non_2xx"] for r in rows)}


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, capture_output=True, text=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def print_table(summary: dict, levels: list[int], baseline: str, table_size: int
                ) -> list[str]:
    header = ("| server | " + " | ".join(f"c={c} p50 / req/s" for c in levels)
              + f" | {table_size}x{table_size} table |")
    lines = [header, "| --- " * (len(levels) + 2) + "|"]
    for name, entry in summary.items():
        cells = []
        for c in levels:
            level = entry["levels"].get(str(c))
            cells.append(f"{level['p50_ms']:.2f} ms / {level['requests_per_s']:,.0f}"
                         if level else "")
        table = entry.get("table_ms")
        lines.append(f"| {name} | " + " | ".join(cells)
                     + f" | {f'{table:.1f} ms' if table else ''} |")
    for name, entry in summary.items():
        if name == baseline or not entry.get("ratios") or "/health" in name:
            continue
        ratios = entry["ratios"]
        cells = []
        for c in levels:
            r = ratios["levels"].get(str(c))
            cells.append(f"p50 {r['p50']:.1f}x / req/s {r['requests_per_s']:.3f}x" if r else "")
        table = ratios.get("table")
        lines.append(f"| {name} ÷ OSRM | " + " | ".join(cells)
                     + f" | {f'{table:.1f}x' if table else ''} |")
    print("\n".join(lines))
    return lines


# ---------------------------------------------------------------------- main
def parse_args() -> argparse.Namespace:
    """Command-line options, checked (exit 2 naming the bad option)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per server and level")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--pairs", type=int, default=1000, help="OD pairs wrk cycles through")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="NARETA_WORKERS")
    parser.add_argument("--osrm-threads", type=int, default=2, help="osrm-routed -t")
    parser.add_argument("--models", default=f"{SHIPPED_MODEL},freeflow",
                        help="NARETA_MODEL_DIR values to serve (default: shipped model, "
                             "free flow)")
    parser.add_argument("--osrm-cache", type=Path, default=REPO / "runs" / "osrm",
                        help="where the OSRM wheel, its tools and the prepared data live")
    parser.add_argument("--table-size", type=int, default=100)
    parser.add_argument("--table-sets", type=int, default=7,
                        help="tables timed per server, each on fresh points")
    parser.add_argument("--synthetic", action="store_true",
                        help="also nareta free flow on a 50k-node synthetic grid")
    parser.add_argument("--synthetic-nodes", type=int, default=50_000)
    parser.add_argument("--overload", action="store_true",
                        help="also load each nareta server at c=" + " and c=".join(
                            map(str, OVERLOAD_LEVELS)) + " and report 503 (shed) counts, "
                        "answered 2xx/s and p99")
    parser.add_argument("--overload-seconds", type=float, default=None,
                        help="seconds per overload level (default: --seconds)")
    parser.add_argument("--out", type=Path,
                        default=REPO / "benchmarks" / "results" / "service.json")
    args = parser.parse_args()
    for name in ("seconds", "repeats", "pairs", "workers", "table_size", "table_sets"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.overload_seconds is not None and args.overload_seconds <= 0:
        parser.error("--overload-seconds must be positive")
    return args


def run_description(args: argparse.Namespace) -> dict:
    """The results file's opening keys: command, commit, machine, settings, wrk, targets."""
    return {
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "commit": git_commit(),
        "cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg(),
        "seconds_per_level": args.seconds, "repeats": args.repeats, "pairs": args.pairs,
        "workers": args.workers, "osrm": {"wheel": OSRM_WHEEL, "algorithm": "ch",
                                          "profile": "car.lua", "threads": args.osrm_threads},
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split(
            "\n")[0].strip(), "targets": TARGETS}


def start_servers(servers: list[Server], args: argparse.Namespace, bin_dir: Path, base: Path,
                  city: Path, scratch: Path) -> None:
    """Start osrm-routed, then one nareta server per ``--models`` entry, appending each to
    ``servers`` as it starts (so the caller stops whichever started)."""
    servers.append(osrm_routed(bin_dir, base, args.osrm_threads,
                               scratch / "osrm.log"))
    for model in args.models.split(","):
        label = "nareta, free flow" if model == "freeflow" else (
            "nareta, learned model" if model == SHIPPED_MODEL else f"nareta, {model}")
        servers.append(nareta(label, city, model, args.workers,
                              scratch / f"{len(servers)}.log"))


def load_servers(servers: list[Server], script: Path, health: Path, levels: list[int],
                 args: argparse.Namespace) -> tuple[dict[str, dict[str, list[dict]]], list]:
    """Warm up, then ``--repeats`` rounds of wrk on ``/route`` at each concurrency (servers
    and levels interleaved) and ``/health`` at c=8 on the first nareta server each round:
    wrk rows per server and level, and the health rows."""
    runs: dict[str, dict[str, list[dict]]] = {s.name: {} for s in servers}
    health_rows = []
    for _ in range(2):  # warm-up: compile paths, fill OS caches, open connections
        for server in servers:
            run_wrk(server.port, script, concurrency=2, seconds=1)
    for round_index in range(args.repeats):
        for c in levels:
            for server in servers:
                row = run_wrk(server.port, script, concurrency=c, seconds=args.seconds)
                runs[server.name].setdefault(str(c), []).append(row)
                print(f"  round {round_index + 1} c={c:<3} {server.name:24}"
                      f" p50 {row['p50_ms']:8.2f} ms  p99 {row['p99_ms']:8.2f} ms"
                      f"  {row['requests_per_s']:8.1f} req/s"
                      f"  non-2xx {row['non_2xx']}  socket errors {row['errors']}",
                      flush=True)
        health_rows.append(run_wrk(servers[1].port, health, concurrency=8,
                                   seconds=args.seconds))
    return runs, health_rows


def summarise_servers(servers: list[Server], runs: dict, health_rows: list,
                      table_sets: np.ndarray) -> dict:
    """Per server: median wrk figures per level and the raw runs, then each server's
    ``/table`` time (timed here, interleaved), and the ``/health`` entry."""
    summary: dict = {}
    for server in servers:
        summary[server.name] = {
            "levels": {c: medians(rows) for c, rows in runs[server.name].items()},
            "runs": runs[server.name]}
    for name, table in table_ms(servers, list(table_sets)).items():
        summary[name]["table"] = table
        summary[name]["table_ms"] = table["median_ms"]
        print(f"  table {table['size']} {name:24} {table['median_ms']:.1f} ms "
              f"(runs {table['runs_ms']})", flush=True)
    summary[f"{servers[1].name}: GET /health"] = {
        "levels": {"8": medians(health_rows)}, "runs": {"8": health_rows}}
    return summary


def add_ratios(summary: dict, baseline: str) -> None:
    """Each entry's ``ratios`` to the ``baseline`` (OSRM): p50 and requests/s per level, and
    the table time."""
    for name, entry in summary.items():
        if name == baseline:
            continue
        ratios: dict = {"levels": {}}
        for c, level in entry["levels"].items():
            reference = summary[baseline]["levels"].get(c)
            if reference is None:
                continue
            ratios["levels"][c] = {
                "p50": round(level["p50_ms"] / reference["p50_ms"], 2),
                "requests_per_s": round(level["requests_per_s"]
                                        / reference["requests_per_s"], 3)}
        if entry.get("table_ms"):
            ratios["table"] = round(entry["table_ms"] / summary[baseline]["table_ms"], 2)
        entry["ratios"] = ratios


def targets_met(summary: dict) -> dict | None:
    """Whether the learned model's ratios meet :data:`TARGETS` (None without it)."""
    learned = summary.get("nareta, learned model", {}).get("ratios")
    if not learned:
        return None
    return {
        "p50_c1": learned["levels"].get("1", {}).get("p50", np.inf)
        <= TARGETS["p50_c1_ratio_max"],
        "rps_c8": learned["levels"].get("8", {}).get("requests_per_s", 0)
        >= TARGETS["rps_c8_ratio_min"],
        "table": learned.get("table", np.inf) <= TARGETS["table_ratio_max"]}


def report(results: dict, summary: dict, levels: list[int], baseline: str,
           args: argparse.Namespace) -> None:
    """Print the tables, targets and parity, and write ``results`` to ``--out``."""
    results["servers"] = summary
    results["load_average_at_end"] = os.getloadavg()
    print()
    results["table_markdown"] = print_table(summary, levels, baseline, args.table_size)
    if "overload" in results:
        results["overload_markdown"] = print_overload(results["overload"])
    if "targets_met" in results:
        print("targets (learned model):", results["targets_met"])
    if "parity_free_flow_vs_osrm" in results:
        print("parity (free flow vs OSRM):", results["parity_free_flow_vs_osrm"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(f"wrote {args.out}")


def main() -> int:
    args = parse_args()
    if shutil.which("wrk") is None:
        print(WRK_MISSING, file=sys.stderr)
        return 2
    levels = [int(c) for c in args.concurrency.split(",")]
    rng = np.random.default_rng(args.seed)
    results = run_description(args)
    servers: list[Server] = []
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        try:
            print("preparing osrm-routed (osrm-extract + osrm-contract, cached)", flush=True)
            bin_dir, base = prepare_osrm(args.osrm_cache, BUNDLED_OSM)
            city = city_graph(scratch / "city")
            points = road_points(city, 2 * args.pairs + args.table_sets * args.table_size,
                                 rng)
            pairs = points[: 2 * args.pairs].reshape(args.pairs, 2, 2)
            table_sets = points[2 * args.pairs:].reshape(args.table_sets, args.table_size, 2)
            results["median_trip_crow_fly_m"] = round(float(np.median(crow_fly_m(pairs))))
            paths = route_paths(pairs)
            script = wrk_script(paths, scratch, "city")
            health = wrk_script(["/health"], scratch, "health")
            print("starting servers", flush=True)
            start_servers(servers, args, bin_dir, base, city, scratch)
            runs, health_rows = load_servers(servers, script, health, levels, args)
            summary = summarise_servers(servers, runs, health_rows, table_sets)
            free_flow = next((s for s in servers if s.name == "nareta, free flow"), None)
            if free_flow is not None:
                results["parity_free_flow_vs_osrm"] = parity(servers[0].port, free_flow.port,
                                                             paths[:200])
            if args.overload:  # last: an overloaded server must not colour the rest
                results["overload"] = overload(
                    [s for s in servers if s.name.startswith("nareta")],
                    wrk_script(paths, scratch, "city_503", count_503=True),
                    seconds=args.overload_seconds or args.seconds)
        finally:
            for server in servers:
                server.stop()
        baseline = servers[0].name
        add_ratios(summary, baseline)
        met = targets_met(summary)
        if met is not None:
            results["targets_met"] = met
        if args.synthetic:
            results["synthetic"] = bench_synthetic(args, scratch, city, pairs, levels)
    report(results, summary, levels, baseline, args)
    return 0

def overload(servers: list[Server], script: Path, *, seconds: float) -> dict:
    """Each nareta server at the :data:`OVERLOAD_LEVELS` with a script that counts 503s:
    requests/s, answered (2xx) per second, 503 (shed) count, other non-2xx, socket errors,
    p50 / p99 over every answer (shed ones included)."""
    out: dict = {"levels": list(OVERLOAD_LEVELS), "seconds": seconds,
                 "max_in_flight_per_process": os.environ.get("NARETA_MAX_IN_FLIGHT", "64"),
                 "servers": {}}
    for c in OVERLOAD_LEVELS:
        for server in servers:
            row = run_wrk(server.port, script, concurrency=c, seconds=seconds)
            row["other_non_2xx"] = row["non_2xx"] - row["shed_503"]
            out["servers"].setdefault(server.name, {})[str(c)] = row
            print(f"  overload c={c:<4} {server.name:24} p50 {row['p50_ms']:8.2f} ms"
                  f"  p99 {row['p99_ms']:8.2f} ms  {row['answered_2xx_per_s']:8.1f} 2xx/s"
                  f"  503 {row['shed_503']}  other non-2xx {row['other_non_2xx']}"
                  f"  socket errors {row['errors']}", flush=True)
    return out


def print_overload(block: dict) -> list[str]:
    lines = ["| server | concurrency | requests | 503 shed | answered 2xx/s | p50 ms | p99 ms | "
             "other non-2xx | socket errors |", "| --- " * 9 + "|"]
    for name, levels in block["servers"].items():
        for c, row in levels.items():
            lines.append(f"| {name} | {c} | {row['requests']} | {row['shed_503']} | "
                         f"{row['answered_2xx_per_s']:,.1f} | {row['p50_ms']:.1f} | "
                         f"{row['p99_ms']:.1f} | {row['other_non_2xx']} | {row['errors']} |")
    print("\n".join(lines))
    return lines


def bench_synthetic(args, scratch: Path, city: Path, city_pairs: np.ndarray,
                    levels: list[int]) -> dict:
    """nareta free flow on the synthetic grid beside the same on the city, interleaved."""
    started = time.perf_counter()
    grid = synthetic_graph(scratch / "synthetic", nodes=args.synthetic_nodes)
    print(f"synthetic grid built in {time.perf_counter() - started:.1f} s", flush=True)
    rng = np.random.default_rng(args.seed + 1)
    pairs = matched_pairs(grid, crow_fly_m(city_pairs), args.pairs, rng)
    scripts = {"city": wrk_script(route_paths(city_pairs), scratch, "city_again"),
               "synthetic": wrk_script(route_paths(pairs), scratch, "synthetic")}
    servers = {"city": nareta("city", city, "freeflow", args.workers, scratch / "c.log"),
               "synthetic": nareta("synthetic", grid, "freeflow", args.workers,
                                   scratch / "s.log", {"NARETA_CACHE_RUNS": "128"})}
    runs: dict[str, dict[str, list[dict]]] = {"city": {}, "synthetic": {}}
    try:
        for _ in range(args.repeats):
            for c in levels:
                for name, server in servers.items():
                    row = run_wrk(server.port, scripts[name], concurrency=c,
                                  seconds=args.seconds)
                    runs[name].setdefault(str(c), []).append(row)
                    print(f"  synthetic check c={c:<3} {name:10} p50 {row['p50_ms']:8.2f} ms"
                          f"  {row['requests_per_s']:8.1f} req/s", flush=True)
    finally:
        for server in servers.values():
            server.stop()
    out: dict = {"nodes": args.synthetic_nodes, "model": "freeflow", "levels": {}}
    for c in map(str, levels):
        city_level, grid_level = medians(runs["city"][c]), medians(runs["synthetic"][c])
        out["levels"][c] = {"city": city_level, "synthetic": grid_level,
                            "p50_ratio": round(grid_level["p50_ms"] / city_level["p50_ms"], 2)}
    return out


if __name__ == "__main__":
    raise SystemExit(main())
