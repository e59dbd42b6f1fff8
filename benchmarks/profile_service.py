"""Where a served route query spends its time: py-spy samples one ``nareta serve`` worker
while wrk drives it with the service benchmark's OD pairs.

    python benchmarks/profile_service.py [--model artifacts_shipped/eta_baltimore]
        [--seconds 20] [--concurrency 1]

Needs ``wrk`` and ``py-spy`` (``pip install py-spy``; sampling another process needs
ptrace rights, e.g. root). Prints the functions with the largest share of busy samples
(inclusive and self) and writes them, with the wrk figures, to
``benchmarks/results/service_profile_<model>.json`` (the raw collapsed stacks go to
``runs/``, ready for flamegraph.pl or speedscope).
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _service_benchmark():
    """benchmarks/service.py, loaded by path (its module name would shadow the package)."""
    spec = importlib.util.spec_from_file_location(
        "service_benchmark", Path(__file__).resolve().parent / "service.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _service_benchmark()

#: Stacks of threads waiting for work, not doing any: left out of the shares (a stack
#: ending in the event loop's runner is uvloop waiting in C; in anyio's worker, the
#: thread waiting for its next job).
IDLE = ("wait (threading", "select (selectors", "_worker (concurrent", "_run_once")
IDLE_LEAVES = ("Runner.run (asyncio/runners.py)", "WorkerThread.run (anyio/_backends/_asyncio.py)")
BUSY = ("predictor", "routes/", "starlette", "fastapi", "uvicorn/protocols")


def _frame(frame: str) -> str:
    """``function (file:line)`` -> ``function (file)``."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.split(':')[0]})" if where else name


def summarise(collapsed: Path, top: int) -> dict:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    busy = 0
    for line in collapsed.read_text().splitlines():
        if not line.strip():
            continue
        stack, count_text = line.rsplit(" ", 1)
        count = int(count_text)
        frames = [_frame(frame) for frame in stack.split(";")]
        if frames[-1] in IDLE_LEAVES or (any(k in stack for k in IDLE)
                                         and not any(k in stack for k in BUSY)):
            continue
        busy += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count

    def shares(counter: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / busy, 1)) for name, n in counter.most_common(top)]

    return {"busy_samples": busy, "inclusive_pct": shares(inclusive), "self_pct": shares(own)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=bench.SHIPPED_MODEL, help="NARETA_MODEL_DIR")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if shutil.which("wrk") is None:
        print(bench.WRK_MISSING, file=sys.stderr)
        return 2
    if not Path(py_spy).exists():
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    label = "freeflow" if args.model == "freeflow" else Path(args.model).name
    out = args.out or bench.REPO / "benchmarks" / "results" / f"service_profile_{label}.json"
    raw = bench.REPO / "runs" / f"service_profile_{label}.collapsed.txt"
    raw.parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        city = bench.city_graph(scratch / "city")
        rng = np.random.default_rng(args.seed)
        pairs = bench.road_points(city, 2 * args.pairs, rng).reshape(args.pairs, 2, 2)
        script = bench.wrk_script(bench.route_paths(pairs), scratch, "city")
        server = bench.nareta(label, city, args.model, 1, scratch / "server.log")
        try:
            bench.run_wrk(server.port, script, concurrency=args.concurrency, seconds=3)
            load = subprocess.Popen(
                ["wrk", "-t1", f"-c{args.concurrency}", f"-d{args.seconds + 4:g}s", "-s",
                 str(script), f"http://127.0.0.1:{server.port}"],
                stdout=subprocess.PIPE, text=True)
            time.sleep(1)
            subprocess.run([py_spy, "record", "-p", str(server.process.pid), "-d",
                            f"{args.seconds:g}", "-r", "200", "--format", "raw", "--nonblocking",
                            "-o", str(raw)], check=True, capture_output=True)
            output, _ = load.communicate()
        finally:
            server.stop()
    line = next(line for line in output.splitlines() if line.startswith("WRKJSON "))
    wrk = json.loads(line.removeprefix("WRKJSON "))
    result = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
              "commit": bench.git_commit(), "model": args.model,
              "concurrency": args.concurrency, "workers": 1,
              "request": "GET /route/v1/driving/...?overview=false",
              "wrk": {"requests_per_s": round(wrk["requests"] / (wrk["duration_us"] / 1e6), 1),
                      "p50_ms": wrk["p50_us"] / 1000, "p99_ms": wrk["p99_us"] / 1000},
              **summarise(raw, args.top)}
    print(f"{label}: {result['wrk']['requests_per_s']} req/s, p50 {result['wrk']['p50_ms']} ms"
          f" (1 worker, c={args.concurrency}); share of {result['busy_samples']} busy samples")
    for title in ("inclusive_pct", "self_pct"):
        print(f"-- {title}")
        for name, share in result[title]:
            print(f"{share:6.1f} %  {name}")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out} (stacks: {raw})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
