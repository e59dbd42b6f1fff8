"""Batch-scoring benchmark: OD pairs per second on the bundled city, in one process without
Dask (the Predictor directly, via ``score_table(workers=0)``) and on a LocalCluster.

    python benchmarks/batch.py [--pairs 100000] [--distinct-origins 5000] [--workers 2]
                               [--graph DIR] [--out benchmarks/results]

The OD pairs are random points on the road network's geometry moved up to ~15 m off it
(N(0, 1e-4 deg) per axis, so a few land beyond the snap limit only if placed far off);
origins are drawn uniformly from a pool of ``--distinct-origins`` such points (a fleet of
depots / repeat customers: ~20 trips per origin by default), destinations are all distinct,
departure times spread over one day. Both runs are end to end: read the Parquet input,
plan, score, write the Parquet parts; the cluster's start-up is reported separately and
the scaling efficiency uses scoring time without it. Target (issue 7): >= 2,000 OD pairs/s
on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
BUNDLED_OSM = REPO / "data" / "osm" / "baltimore.osm.pbf"
# Run as a script, this file's folder comes first on sys.path and "batch" would name this
# file rather than the package; put the repository there instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(REPO))


def make_pairs(graph, *, pairs: int, distinct_origins: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    lon, lat = graph["path_lon"], graph["path_lat"]
    pool = rng.integers(0, len(lon), distinct_origins)
    origin = rng.choice(pool, pairs)
    destination = rng.integers(0, len(lon), pairs)
    jitter = rng.normal(0.0, 1e-4, (pairs, 4))
    start = np.datetime64("2024-05-01T00:00:00")
    departure = start + rng.integers(0, 86_400, pairs).astype("timedelta64[s]")
    return pd.DataFrame({
        "trip_id": np.arange(pairs),
        "origin_lon": lon[origin] + jitter[origin % len(jitter), 0],  # one jitter per origin
        "origin_lat": lat[origin] + jitter[origin % len(jitter), 1],
        "destination_lon": lon[destination] + jitter[:, 2],
        "destination_lat": lat[destination] + jitter[:, 3],
        "departure_time": np.datetime_as_string(departure),
    })


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--distinct-origins", type=int, default=5_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partition-rows", type=int, default=5_000)
    parser.add_argument("--graph", type=Path, help="RoadGraph (default: ingest the bundled city)")
    parser.add_argument("--model", default=None,
                        help="model artifact (default: free flow); e.g. "
                             "artifacts_shipped/eta_baltimore for the learned ETA model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    return parser.parse_args()


def score_both_ways(args, scratch: Path, graph_dir: Path) -> dict[str, dict]:
    """Score ``scratch/od.parquet`` in one process without Dask, then on a LocalCluster of
    ``--workers`` workers (into ``out-0`` and ``out-<workers>``): timings per run."""
    from batch.score import score_table

    runs = {}
    for label, workers in (("1 process, no Dask", 0),
                           (f"LocalCluster, {args.workers} workers", args.workers)):
        report = score_table(scratch / "od.parquet", scratch / f"out-{workers}",
                             graph_dir=graph_dir, model_dir=args.model, workers=workers,
                             partition_rows=args.partition_rows, progress=False)
        runs[label] = {
            "workers": workers,
            "seconds_end_to_end": round(report.seconds, 2),
            "cluster_start_s": round(report.cluster_start_s, 2),
            "scoring_s": round(report.scoring_s, 2),
            "pairs_per_s_end_to_end": round(args.pairs / report.seconds),
            "pairs_per_s_scoring": round(args.pairs / report.scoring_s),
            "status_counts": report.status_counts,
        }
    return runs


def compare_outputs(scratch: Path, workers: int) -> tuple[bool, float, bool]:
    """Whether the two runs' ETAs are identical, their largest relative difference, and
    whether their statuses are identical."""
    same = pd.read_parquet(scratch / "out-0").sort_values("input_row").reset_index(drop=True)
    other = pd.read_parquet(scratch / f"out-{workers}").sort_values(
        "input_row").reset_index(drop=True)
    a, b = same["eta_s"].to_numpy(), other["eta_s"].to_numpy()
    identical = bool(np.array_equal(a, b, equal_nan=True))
    both = np.isfinite(a) & np.isfinite(b)
    max_relative_difference = float(np.max(np.abs(a[both] - b[both]) / b[both],
                                           initial=0.0))
    same_status = bool((same["status"] == other["status"]).all())
    return identical, max_relative_difference, same_status


def print_summary(args, graph, runs: dict, load_before, efficiency: float, identical: bool,
                  max_relative_difference: float, same_status: bool) -> None:
    print(f"{args.pairs} OD pairs, {args.distinct_origins} distinct origins, "
          f"graph {graph.num_nodes} nodes / {graph.num_segments} segments, "
          f"load average before {load_before[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'mode':<28}{'end-to-end s':>14}{'start-up s':>12}{'scoring s':>11}"
          f"{'pairs/s e2e':>13}{'pairs/s scoring':>17}")
    for label, run in runs.items():
        print(f"{label:<28}{run['seconds_end_to_end']:>14}{run['cluster_start_s']:>12}"
              f"{run['scoring_s']:>11}{run['pairs_per_s_end_to_end']:>13}"
              f"{run['pairs_per_s_scoring']:>17}")
    print(f"scaling efficiency ({args.workers} workers, scoring time): {efficiency:.0%}; "
          f"answers identical: {identical} (max relative difference "
          f"{max_relative_difference:.1e}, statuses identical: {same_status})")


def write_result(args, result: dict) -> None:
    """``result`` with provenance to ``--out``/batch.json (batch_eta.json with a model)."""
    args.out.mkdir(parents=True, exist_ok=True)
    name = "batch.json" if args.model is None else "batch_eta.json"
    import importlib.util  # this folder is off sys.path (see the top), so load it by path

    spec = importlib.util.spec_from_file_location("provenance",
                                                  Path(__file__).parent / "provenance.py")
    provenance = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(provenance)
    result = {**provenance.provenance(), **result}
    (args.out / name).write_text(json.dumps(result, indent=2) + "\n")


def main() -> None:
    args = parse_args()

    from data_pipeline.ingest import ingest_osm
    from data_pipeline.road_graph import RoadGraph

    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        graph_dir = args.graph
        if graph_dir is None:
            graph_dir = scratch / "graph"
            ingest_osm(BUNDLED_OSM).graph.save(graph_dir)
        graph = RoadGraph.load(graph_dir)
        frame = make_pairs(graph, pairs=args.pairs, distinct_origins=args.distinct_origins,
                           seed=args.seed)
        frame.to_parquet(scratch / "od.parquet", index=False)
        load_before = os.getloadavg()
        runs = score_both_ways(args, scratch, graph_dir)
        identical, max_relative_difference, same_status = compare_outputs(scratch, args.workers)

    single, cluster = runs.values()
    efficiency = cluster["pairs_per_s_scoring"] / (args.workers * single["pairs_per_s_scoring"])
    result = {
        "graph": {"nodes": graph.num_nodes, "segments": graph.num_segments},
        "model": args.model or "freeflow",
        "pairs": args.pairs,
        "distinct_origins": args.distinct_origins,
        "partition_rows": args.partition_rows,
        "seed": args.seed,
        "runs": runs,
        "scaling_efficiency": round(efficiency, 2),
        "answers_identical": identical,
        # runs that stop at their destinations vs whole-graph runs (a cached origin) give the
        # same answers up to float summation order
        "answers_max_relative_difference": max_relative_difference,
        "statuses_identical": same_status,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "note": "CPU shared with other jobs; timings are indicative"},
        "target_pairs_per_s": 2000,
    }
    print_summary(args, graph, runs, load_before, efficiency, identical,
                  max_relative_difference, same_status)
    write_result(args, result)

if __name__ == "__main__":
    main()
