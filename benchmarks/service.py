"""Service benchmark: bounded load against a real uvicorn (``nareta serve``) on 127.0.0.1.

    python benchmarks/service.py [--seconds 30] [--concurrency 1,8,32] [--skip-synthetic]
    python benchmarks/service.py --concurrency 128,1000 ...   # overload: 503s are shed load

For the bundled city and for a ~50,000-node road-like synthetic graph (a perturbed grid):
latency p50/p99 and requests/s of ``POST /v1/eta`` and the OSRM ``GET /route/v1/driving``
at each concurrency for ``--seconds`` each, random OD pairs of which ``--repeat-share`` start
at one of a few hot origins; a 100x100 ``/table`` (cold, then warm); server RSS at start and
end. Prints a table and writes ``benchmarks/results/service.json``.

Targets (issue 6, 2 cores): concurrency 8: p50 <= 20 ms, p99 <= 100 ms, >= 200 requests/s;
100x100 table <= 1 s; zero errors; RSS growth <= 10 %; synthetic p50 within 2x of the city.
The load generator runs on the same machine and takes CPU from the server.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BUNDLED_OSM = REPO / "data" / "osm" / "baltimore.osm.pbf"
SHIPPED_MODEL = "artifacts_shipped/eta_baltimore"


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


# ---------------------------------------------------------------------- server
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (uvicorn's worker processes)."""
    total = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total += int(line.split()[1]) / 1024
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        for child in children.read_text().split():
            total += _rss_mb(int(child))
    return total


class Server:
    def __init__(self, graph_dir: Path, env: dict[str, str] | None = None):
        self.port = _free_port()
        environment = {**os.environ, "PYTHONPATH": str(REPO), "NARETA_GRAPH_DIR": str(graph_dir),
                       "NARETA_PORT": str(self.port), "NARETA_LOG_LEVEL": "warning",
                       **(env or {})}
        self.process = subprocess.Popen([sys.executable, "-m", "nareta.cli", "serve"],
                                        env=environment, cwd=REPO,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("server exited during start-up")
            try:
                if request(self.port, "GET", "/ready")[0] == 200:
                    return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("server not ready")

    def rss_mb(self) -> float:
        return _rss_mb(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def request(port: int, method: str, path: str, body: bytes | None = None,
            connection: http.client.HTTPConnection | None = None,
            retry_after: list | None = None) -> tuple[int, bytes]:
    own = connection is None
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"content-type": "application/json"} if body is not None else {}
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    data = response.read()
    if retry_after is not None:
        retry_after[:] = [response.getheader("retry-after")]
    if own:
        connection.close()
    return response.status, data


# ---------------------------------------------------------------------- load
class Workload:
    """Random OD pairs near the graph's nodes; `repeat_share` of origins are hot ones.

    With ``trip_lengths_m`` (straight-line OD distances, e.g. another city's workload), each
    destination is the node nearest to a point at a length drawn from them, in a random
    direction from the origin: trips of the same length on a bigger map."""

    def __init__(self, graph_dir: Path, *, repeat_share: float, hot_origins: int, seed: int,
                 trip_lengths_m: np.ndarray | None = None):
        from scipy.spatial import cKDTree

        with np.load(graph_dir / "graph.npz") as data:
            self.lon, self.lat = data["node_lon"], data["node_lat"]
            self.xy = np.stack([data["node_x_m"], data["node_y_m"]], 1)
        self.tree = cKDTree(self.xy)
        self.random = random.Random(seed)
        self.repeat_share = repeat_share
        self.trip_lengths_m = trip_lengths_m
        self.hot = [self.random.randrange(len(self.lon)) for _ in range(hot_origins)]
        self.hot_points = {node: self._point(node) for node in self.hot}  # the same point

    def _point(self, node: int | None = None) -> tuple[float, float]:
        node = self.random.randrange(len(self.lon)) if node is None else node
        return (round(float(self.lon[node]) + self.random.uniform(-2e-4, 2e-4), 6),
                round(float(self.lat[node]) + self.random.uniform(-2e-4, 2e-4), 6))

    def _nodes(self) -> tuple[int, int]:
        origin = (self.random.choice(self.hot) if self.random.random() < self.repeat_share
                  else self.random.randrange(len(self.lon)))
        if self.trip_lengths_m is None:
            return origin, self.random.randrange(len(self.lon))
        length = float(self.random.choice(self.trip_lengths_m))
        angle = self.random.uniform(0, 2 * np.pi)
        _, node = self.tree.query(self.xy[origin]
                                  + length * np.array([np.cos(angle), np.sin(angle)]))
        return origin, int(node)

    def pair(self):
        origin, destination = self._nodes()
        start = self.hot_points.get(origin) or self._point(origin)
        return start, self._point(destination)

    def trip_lengths(self, count: int = 2000) -> np.ndarray:
        """Straight-line lengths of this workload's trips (metres, between their nodes)."""
        pairs = [self._nodes() for _ in range(count)]
        return np.array([float(np.hypot(*(self.xy[a] - self.xy[b]))) for a, b in pairs])


def eta_request(origin, destination) -> tuple[str, str, bytes]:
    body = {"origin": {"lon": origin[0], "lat": origin[1]},
            "destination": {"lon": destination[0], "lat": destination[1]}}
    return "POST", "/v1/eta", json.dumps(body).encode()


def osrm_request(origin, destination) -> tuple[str, str, None]:
    return ("GET", f"/route/v1/driving/{origin[0]},{origin[1]};{destination[0]},"
            f"{destination[1]}?overview=simplified", None)


def run_load(port: int, workload: Workload, build, *, concurrency: int,
             seconds: float, honour_retry_after: bool = True) -> dict:
    latencies: list[float] = []
    answered: list[bool] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    requests = [build(*workload.pair()) for _ in range(50_000)]
    counter = iter(range(10**9))
    stop_at = time.perf_counter() + seconds

    def worker() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, my_ok, my_errors, retry_after = [], [], {}, [None]
        while time.perf_counter() < stop_at:
            method, path, body = requests[next(counter) % len(requests)]
            started = time.perf_counter()
            try:
                status, data = request(port, method, path, body, connection, retry_after)
            except OSError as exc:
                status = type(exc).__name__
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            mine.append(time.perf_counter() - started)
            my_ok.append(status == 200)
            if status != 200:
                code = f"{status}:{json.loads(data).get('code')}" if isinstance(
                    status, int) else status
                my_errors[code] = my_errors.get(code, 0) + 1
            if status == 503 and retry_after[0] and honour_retry_after:  # wait as told
                time.sleep(min(float(retry_after[0]), max(0.0, stop_at - time.perf_counter())))
        with lock:
            latencies.extend(mine)
            answered.extend(my_ok)
            for key, value in my_errors.items():
                errors[key] = errors.get(key, 0) + value

    began = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    values = np.array(latencies) * 1000
    ok = values[np.array(answered, dtype=bool)]
    return {"concurrency": concurrency, "requests": len(values),
            "requests_per_s": round(len(values) / elapsed, 1),
            "p50_ms": round(float(np.percentile(values, 50)), 2),
            "p99_ms": round(float(np.percentile(values, 99)), 2),
            # answered (200) requests only: what load shedding protects (503s return at once)
            "ok_per_s": round(len(ok) / elapsed, 1),
            "ok_p99_ms": round(float(np.percentile(ok, 99)), 2) if len(ok) else None,
            "errors": sum(errors.values()), "error_kinds": errors}


def table_seconds(port: int, workload: Workload, size: int = 100) -> dict:
    points = [workload._point() for _ in range(size)]  # random nodes, anywhere on the map
    path = "/table/v1/driving/" + ";".join(f"{lon},{lat}" for lon, lat in points)
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        status, data = request(port, "GET", path)
        timings.append(time.perf_counter() - started)
        if status != 200:
            raise RuntimeError(f"table failed: {data[:300]!r}")
    return {"size": f"{size}x{size}", "cold_s": round(timings[0], 3),
            "warm_s": round(float(np.median(timings[1:])), 3)}


def bench_graph(name: str, graph_dir: Path, args, env: dict[str, str] | None = None,
                trip_lengths_m: np.ndarray | None = None) -> dict:
    env = {"NARETA_WORKERS": str(args.workers), **(env or {})}
    server = Server(graph_dir, env)
    try:
        workload = Workload(graph_dir, repeat_share=args.repeat_share,
                            hot_origins=args.hot_origins, seed=args.seed,
                            trip_lengths_m=trip_lengths_m)
        rss_start = server.rss_mb()
        model = (env or {}).get("NARETA_MODEL_DIR", "freeflow")
        result: dict = {"graph": name, "model": model, "nodes": len(workload.lon),
                        "rss_start_mb": rss_start, "load": [],
                        "median_trip_m": round(float(np.median(workload.trip_lengths(500))))}
        for endpoint, build in (("POST /v1/eta", eta_request),
                                ("GET /route/v1/driving", osrm_request)):
            for concurrency in args.concurrency:
                row = run_load(server.port, workload, build, concurrency=concurrency,
                               seconds=args.seconds,
                               honour_retry_after=not args.ignore_retry_after)
                row["endpoint"] = endpoint
                result["load"].append(row)
                print(f"  {name:9} {model[-14:]:14} {endpoint:22} c={concurrency:<3}"
                      f" p50 {row['p50_ms']:7.2f} ms"
                      f"  p99 {row['p99_ms']:7.2f} ms  {row['requests_per_s']:7.1f} req/s"
                      f"  errors {row['errors']} {row['error_kinds'] or ''}"
                      f"  ok p99 {row['ok_p99_ms']} ms", flush=True)
        if not args.skip_table:
            result["table"] = table_seconds(server.port, workload)
            print(f"  {name:9} table 100x100: cold {result['table']['cold_s']} s, warm "
                  f"{result['table']['warm_s']} s", flush=True)
        result["rss_end_mb"] = server.rss_mb()
        status, body = request(server.port, "GET", "/metrics")
        result["server_metrics"] = {
            line.split()[0]: float(line.split()[1]) for line in body.decode().splitlines()
            if line.startswith(("nareta_model_", "nareta_http_shed", "nareta_http_body_timeouts"))
            and not line.startswith("nareta_model_info")}
        result["rss_growth_pct"] = round(100 * (result["rss_end_mb"] / rss_start - 1), 1)
        print(f"  {name:9} RSS {rss_start:.0f} -> {result['rss_end_mb']:.0f} MB "
              f"({result['rss_growth_pct']:+.1f} %)", flush=True)
        return result
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="per endpoint and level")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--repeat-share", type=float, default=0.5,
                        help="share of queries from a hot origin")
    parser.add_argument("--hot-origins", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2,
                        help="NARETA_WORKERS: server processes (default 2, one per core)")
    parser.add_argument("--city-models", default=f"{SHIPPED_MODEL},freeflow",
                        help="comma-separated NARETA_MODEL_DIR values served on the city "
                             "(default: the shipped ETA model and free flow)")
    parser.add_argument("--ignore-retry-after", action="store_true",
                        help="clients resend at once after a 503 (default: they wait the "
                             "Retry-After seconds, as a polite client does)")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--skip-table", action="store_true")
    parser.add_argument("--synthetic-nodes", type=int, default=50_000)
    parser.add_argument("--synthetic-cache-runs", type=int, default=128,
                        help="NARETA_CACHE_RUNS for the synthetic graph (runs are 50k nodes)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results"
                        / "service.json")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    results = {"seconds_per_level": args.seconds, "repeat_share": args.repeat_share,
               "clients_honour_retry_after": not args.ignore_retry_after,
               "cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg(),
               "graphs": []}
    with tempfile.TemporaryDirectory() as scratch:
        print("city (bundled Baltimore extract)", flush=True)
        city = city_graph(Path(scratch) / "city")
        for model in args.city_models.split(","):
            env = {"NARETA_MODEL_DIR": str(REPO / model) if model != "freeflow" else model}
            results["graphs"].append(bench_graph("city", city, args, env))
        lengths = Workload(city, repeat_share=args.repeat_share, hot_origins=args.hot_origins,
                           seed=args.seed).trip_lengths()
        if not args.skip_synthetic:
            started = time.perf_counter()
            graph_dir = synthetic_graph(Path(scratch) / "synthetic", nodes=args.synthetic_nodes)
            print(f"synthetic perturbed grid (built in {time.perf_counter() - started:.1f} s)",
                  flush=True)
            results["graphs"].append(bench_graph(
                "synthetic", graph_dir, args,
                {"NARETA_CACHE_RUNS": str(args.synthetic_cache_runs),
                 "NARETA_MODEL_DIR": "freeflow"}, trip_lengths_m=lengths))
    results["load_average_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
