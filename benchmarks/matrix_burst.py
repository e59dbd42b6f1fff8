"""Matrix burst: many large matrices at once against one ``nareta serve`` process.

    python benchmarks/matrix_burst.py [--concurrency 48] [--size 100] [--repo DIR]

Sends ``--concurrency`` ``POST /v1/matrix`` requests of ``--size`` x ``--size`` random
points at once (released together), with the shipped ETA model, and reports the statuses,
the answered requests' latency, the wall time and the server's RSS before and after. The
server is the one in ``--repo`` (default: this checkout; another checkout, e.g. an older
commit exported with ``git archive``, gives the comparison). Prints a table and writes
``benchmarks/results/matrix_burst.json``.

What it shows: without a bound on matrix work in flight, 48 concurrent 100 x 100 matrices
all run at once, each taking tens of seconds and lifting RSS for good; with
``NARETA_MAX_MATRIX_WORK_CELLS`` a few run and the rest are refused at once with 503 and
``Retry-After``. The load generator runs on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def _commit(repo: Path) -> str | None:
    result = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                            text=True)
    return result.stdout.strip() or None if result.returncode == 0 else None


def burst(repo: Path, graph_dir: Path, *, concurrency: int, size: int, seed: int) -> dict:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "NARETA_GRAPH_DIR": str(graph_dir),
           "NARETA_PORT": str(port), "NARETA_ACCESS_LOG": "false", "NARETA_LOG_LEVEL": "warning",
           "NARETA_MAX_MATRIX_SIZE": str(max(size, 100)),
           "NARETA_MODEL_DIR": str(repo / "artifacts_shipped" / "eta_baltimore")}
    server = subprocess.Popen([sys.executable, "-m", "nareta.cli", "serve"], cwd=repo, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None:
                raise RuntimeError("the server exited during start-up")
            try:
                if httpx.get(f"{base_url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not become ready")
            time.sleep(0.5)
        with np.load(graph_dir / "graph.npz") as data:
            lon, lat = data["node_lon"], data["node_lat"]
        rng = np.random.default_rng(seed)
        bodies = [{"origins": [{"lon": float(lon[i]), "lat": float(lat[i])}
                               for i in rng.choice(len(lon), size, replace=False)]}
                  for _ in range(concurrency)]
        rss_start = _rss_mb(server.pid)
        answers: list[tuple[int, float]] = []
        barrier = threading.Barrier(concurrency)

        def post(body: dict) -> None:
            with httpx.Client(base_url=base_url, timeout=900) as http:
                http.get("/health")
                barrier.wait()
                started = time.perf_counter()
                status = http.post("/v1/matrix", json=body).status_code
                answers.append((status, time.perf_counter() - started))

        started = time.perf_counter()
        threads = [threading.Thread(target=post, args=(body,)) for body in bodies]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall_s = time.perf_counter() - started
        ok = [seconds for status, seconds in answers if status == 200]
        refused = [seconds for status, seconds in answers if status != 200]
        return {
            "repo": str(repo), "commit": _commit(repo), "concurrency": concurrency,
            "size": f"{size}x{size}",
            "statuses": {str(s): sum(1 for x, _ in answers if x == s)
                         for s in sorted({x for x, _ in answers})},
            "ok_latency_s": ({"min": round(min(ok), 2), "median": round(float(np.median(ok)), 2),
                              "max": round(max(ok), 2)} if ok else None),
            "refused_latency_max_s": round(max(refused), 2) if refused else None,
            "wall_s": round(wall_s, 1), "rss_start_mb": round(rss_start),
            "rss_end_mb": round(_rss_mb(server.pid)), "load_average": os.getloadavg(),
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repo", type=Path, action="append",
                        help="checkout(s) whose server to run (default: this one)")
    parser.add_argument("--out", type=Path,
                        default=REPO / "benchmarks" / "results" / "matrix_burst.json")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from data_pipeline.ingest import ingest_osm

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        graph_dir = Path(scratch) / "graph"
        ingest_osm(REPO / "data" / "osm" / "baltimore.osm.pbf").graph.save(graph_dir)
        for repo in args.repo or [REPO]:
            row = burst(repo.resolve(), graph_dir, concurrency=args.concurrency, size=args.size,
                        seed=args.seed)
            rows.append(row)
            latency = row["ok_latency_s"] or {}
            print(f"{str(row['commit'])[:10]:10} {row['size']:8} x{row['concurrency']:<3}"
                  f" statuses {row['statuses']}  answered in {latency.get('min')}-"
                  f"{latency.get('max')} s  wall {row['wall_s']} s  RSS "
                  f"{row['rss_start_mb']} -> {row['rss_end_mb']} MB", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": sys.argv, "runs": rows}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
