"""In-process query cost of the Predictor (no HTTP): how the processor is executed for
serving, measured per query kind on the bundled city.

    python benchmarks/queries.py [--model artifacts_shipped/eta_baltimore] [--queries 300]

For random OD pairs (graph nodes): a cold ETA (fresh cache: the run stops once the
destination is settled), a cold route, the same with whole-graph runs only (targeting off),
a warm ETA (cached run), a 100x100 matrix cold, and the old torch frontier execution of one
run for reference. Checks that targeted and whole-graph answers agree. Prints a table and
writes ``benchmarks/results/queries.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def percentiles(values: list[float]) -> dict[str, float]:
    ms = np.asarray(values) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "mean_ms": round(float(ms.mean()), 3)}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="artifacts_shipped/eta_baltimore")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results"
                        / "queries.json")
    return parser.parse_args()


def bundled_city_graph():
    """The bundled city's RoadGraph, ingested into a scratch folder and loaded back."""
    import tempfile

    from data_pipeline.ingest import ingest_osm

    with tempfile.TemporaryDirectory() as scratch:
        graph_dir = Path(scratch) / "graph"
        ingest_osm(REPO / "data" / "osm" / "baltimore.osm.pbf").graph.save(graph_dir)
        from data_pipeline.road_graph import RoadGraph

        return RoadGraph.load(graph_dir)


def configured_predictor(graph, model, *, targeted: bool):
    """A fresh Predictor (cold cache); with ``targeted=False`` every run is whole-graph."""
    from models.inference.predictor import Predictor

    predictor = Predictor(graph, model)
    predictor._targeted = predictor._targeted and targeted
    return predictor


def timed(graph, model, pairs, kind: str, *, targeted: bool, cached: bool = False
          ) -> tuple[list, list]:
    """Seconds and ``(eta_s, distance_m)`` answers (NaN without a route) of ``kind``
    (``eta`` / ``route``) per pair: each on a cold cache, or with ``cached`` on one
    predictor warmed with whole runs of every origin."""
    from nareta.errors import NoRouteError

    predictor = configured_predictor(graph, model, targeted=targeted)
    seconds, answers = [], []
    for origin, destination in pairs:
        if not cached:
            # a cold cache for every query
            predictor = configured_predictor(graph, model, targeted=targeted)
        elif not seconds:
            for o, _ in pairs:  # warm the cache with whole runs of every origin
                predictor._trees([leg.key for leg in predictor._starts(
                    predictor.snap([o])[0], predictor.model.segment_times_s(
                        predictor.model.time_bucket(None)))],
                    predictor.model.time_bucket(None), whole=True)
        started = time.perf_counter()
        try:
            result = getattr(predictor, kind)(origin, destination)
            answers.append((result.eta_s, result.distance_m))
        except NoRouteError:
            answers.append((np.nan, np.nan))
        seconds.append(time.perf_counter() - started)
    return seconds, answers


def latency_rows(graph, model, pairs) -> tuple[dict[str, dict], list, list]:
    """Latency percentiles per query kind, and the targeted and whole-graph ETA answers."""
    rows: dict[str, dict] = {}
    eta_cold, eta_answers = timed(graph, model, pairs, "eta", targeted=True)
    rows["eta, cold (search stops at the destination)"] = percentiles(eta_cold)
    eta_whole, whole_answers = timed(graph, model, pairs, "eta", targeted=False)
    rows["eta, cold, whole-graph runs"] = percentiles(eta_whole)
    route_cold, route_answers = timed(graph, model, pairs, "route", targeted=True)
    rows["route, cold (search stops at the destination)"] = percentiles(route_cold)
    route_whole, _ = timed(graph, model, pairs, "route", targeted=False)
    rows["route, cold, whole-graph runs"] = percentiles(route_whole)
    warm, _ = timed(graph, model, pairs, "eta", targeted=True, cached=True)
    rows["eta, warm (cached whole run of the origin)"] = percentiles(warm)
    return rows, eta_answers, whole_answers


def agreement(eta_answers: list, whole_answers: list) -> dict:
    """Whether targeted and whole-graph answers agree: same pairs without a route, largest
    relative ETA and distance differences."""
    a, b = np.array(eta_answers), np.array(whole_answers)
    finite = np.isfinite(a[:, 0]) & np.isfinite(b[:, 0])
    return {
        "same_no_route": bool((np.isnan(a[:, 0]) == np.isnan(b[:, 0])).all()),
        "max_relative_eta_difference": float(np.max(np.abs(a[finite, 0] - b[finite, 0])
                                                    / b[finite, 0], initial=0)),
        "max_relative_distance_difference": float(np.max(
            np.abs(a[finite, 1] - b[finite, 1]) / np.maximum(b[finite, 1], 1e-9), initial=0)),
    }


def matrix_seconds(graph, model, points) -> list[float]:
    """Seconds of one cold ``points x points`` matrix, targeted then whole-graph runs."""
    seconds = []
    for targeted in (True, False):
        predictor = configured_predictor(graph, model, targeted=targeted)
        started = time.perf_counter()
        predictor.matrix(points, points)
        seconds.append(time.perf_counter() - started)
    return seconds


def torch_run_seconds(graph, model, rng: np.random.Generator) -> list[float]:
    """Seconds of five whole-graph runs by the torch frontier (empty without one)."""
    torch_run = []
    keys = rng.choice(model.num_keys if hasattr(model, "num_keys") else graph.num_nodes, 5)
    if hasattr(model, "run_from_torch"):
        bucket = model.time_bucket(None)
        for key in keys:
            started = time.perf_counter()
            model.run_from_torch(np.array([key]), bucket)
            torch_run.append(time.perf_counter() - started)
    return torch_run


def report(args, graph, pairs, rows: dict, matrix: list[float], torch_run: list[float],
           agreed: dict) -> None:
    """Print the table and write ``--out`` (with provenance)."""
    result = {
        "model": args.model, "graph": {"nodes": graph.num_nodes,
                                       "segments": graph.num_segments},
        "queries": len(pairs), "seed": args.seed, "cpus": os.cpu_count(),
        "load_average": os.getloadavg(), "latency": rows,
        "matrix_100x100_cold_s": {"targeted": round(matrix[0], 3),
                                  "whole_graph_runs": round(matrix[1], 3)},
        "torch_frontier_one_run_ms": (round(float(np.median(torch_run)) * 1000, 1)
                                      if torch_run else None),
        "agreement_targeted_vs_whole": agreed,
    }
    print(f"{args.model} on Baltimore ({graph.num_nodes} nodes, {graph.num_segments} "
          f"segments), {len(pairs)} random OD pairs, one thread")
    print(f"{'query':<48}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}")
    for label, row in rows.items():
        print(f"{label:<48}{row['p50_ms']:>9}{row['p99_ms']:>9}{row['mean_ms']:>9}")
    print(f"100x100 matrix, cold: {matrix[0]:.3f} s (whole-graph runs "
          f"{matrix[1]:.3f} s)")
    if torch_run:
        print(f"one whole-graph run by the torch frontier (training's executor): "
              f"{result['torch_frontier_one_run_ms']} ms")
    print(f"targeted vs whole-graph answers: {agreed}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from provenance import provenance

    result = {**provenance(), **result}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


def main() -> int:
    args = parse_args()
    import torch

    from models.inference.predictor import Predictor
    from models.inference.registry import load_model

    torch.set_num_threads(1)
    graph = bundled_city_graph()
    model = load_model(REPO / args.model, graph)
    rng = np.random.default_rng(args.seed)
    lon, lat = graph["node_lon"], graph["node_lat"]
    pairs = [((float(lon[a]), float(lat[a])), (float(lon[b]), float(lat[b])))
             for a, b in rng.choice(graph.num_nodes, (args.queries, 2)) if a != b]
    Predictor(graph, model).route(*pairs[0])  # compile the kernels, build the plans
    rows, eta_answers, whole_answers = latency_rows(graph, model, pairs)
    agreed = agreement(eta_answers, whole_answers)
    points = [origin for origin, _ in pairs[:100]]
    matrix = matrix_seconds(graph, model, points)
    torch_run = torch_run_seconds(graph, model, rng)
    report(args, graph, pairs, rows, matrix, torch_run, agreed)
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
