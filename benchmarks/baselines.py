"""Baseline benchmark: simulate the bundled city (Baltimore) and Harrisburg with SUMO, train
the learned-scalar (without and with the ETA model's departure-time features) and
GNN-regressor baselines on the earlier hours, and report them and free flow on the last
hour (time split) and on held-out zones (area split).

    python benchmarks/baselines.py [--cities baltimore harrisburg] [--hours 3]
        [--cache-dir runs/benchmarks/baselines] [--out benchmarks/results/baselines.json]

Simulations, graphs and trained baselines are cached under ``--cache-dir`` (gitignored),
keyed by their settings, so reruns only evaluate. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_OSM = REPO.parent / "shared" / "osm"
CITIES = {
    "baltimore": REPO / "data" / "osm" / "baltimore.osm.pbf",
    "harrisburg": SHARED_OSM / "harrisburg.osm.pbf",
    "helsinki": SHARED_OSM / "helsinki.osm.pbf",
}
METRICS = ("mape", "median_ape", "mae_s", "rmse_s", "within_10pct", "within_20pct", "bias_s")


def _cli(*args: str) -> None:
    command = [sys.executable, "-m", "nareta.cli", *args]
    print("$", " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True, cwd=REPO)


def prepare_city(name: str, osm: Path, cache: Path, args) -> tuple[Path, Path, dict]:
    """Ingest and simulate (cached); return graph dir, trips file and simulation manifest."""
    graph_dir = cache / name / "graph"
    if not (graph_dir / "manifest.json").is_file():
        _cli("ingest", str(osm), "--out", str(graph_dir), "--force")
    settings = f"{args.hours}:{args.profile}:{args.rate}:{args.seed}:{args.reroute_period}"
    key = hashlib.sha256(settings.encode()).hexdigest()[:10]
    trips = cache / name / f"trips-{key}.parquet"
    manifest_path = trips.with_name(trips.name + ".manifest.json")
    if not manifest_path.is_file():
        _cli(
            "simulate",
            str(osm),
            "--out",
            str(trips),
            "--graph",
            str(graph_dir),
            "--hours",
            str(args.hours),
            "--profile",
            args.profile,
            "--rate",
            str(args.rate),
            "--seed",
            str(args.seed),
            "--reroute-period",
            str(args.reroute_period),
            "--force",
        )
    return graph_dir, trips, json.loads(manifest_path.read_text())


def run_city(name: str, graph_dir: Path, trips_path: Path, cache: Path, args) -> dict:
    import torch

    from data_pipeline.road_graph import RoadGraph
    from data_pipeline.trips import read_trips, snap_trips, split_by_area, split_by_time
    from models.baselines.learned import (
        FreeFlowBaseline,
        GnnConfig,
        GnnRegressorBaseline,
        LearnedScalarBaseline,
        ScalarConfig,
        load_baseline,
        save_baseline,
    )
    from models.evaluation.evaluate import evaluate_predictions, trip_length_m

    torch.set_num_threads(1)
    graph = RoadGraph.load(graph_dir)
    table = snap_trips(read_trips(trips_path), graph)
    splits = {
        "last_hour": split_by_time(table, holdout_hours=1.0),
        "held_out_zones": split_by_area(
            table, zone_size_m=args.zone_size, holdout_share=0.2, seed=args.seed
        ),
    }
    results: dict = {"trips": len(table), "splits": {}}
    for split_name, (train, test) in splits.items():
        split_result: dict = {"train_trips": len(train), "test_trips": len(test), "models": {}}
        frame = test.frame
        true = frame["duration_s"].to_numpy(float)
        length = trip_length_m(graph, frame)
        hour = frame["departure_hour"].to_numpy(float)
        models = {"freeflow": (FreeFlowBaseline(), 0.0)}
        for label, fit in (
            ("learned_scalar", lambda frame=train.frame: LearnedScalarBaseline.fit(graph, frame)),
            (  # the same with the ETA model's departure-time features
                "learned_scalar_time",
                lambda frame=train.frame: LearnedScalarBaseline.fit(
                    graph, frame, config=ScalarConfig(time_features=True)
                ),
            ),
            (
                "gnn_regressor",
                lambda frame=train.frame: GnnRegressorBaseline.fit(
                    graph, frame, config=GnnConfig(epochs=args.gnn_epochs)
                ),
            ),
        ):
            directory = cache / name / "models" / f"{trips_path.stem}-{split_name}-{label}"
            started = time.perf_counter()
            if (directory / "manifest.json").is_file() and not args.retrain:
                model = load_baseline(directory, graph=graph)
                seconds = float(
                    json.loads((directory / "manifest.json").read_text()).get("train_seconds", 0.0)
                )
            else:
                model = fit()
                seconds = time.perf_counter() - started
                save_baseline(
                    model,
                    directory,
                    graph=graph,
                    force=True,
                    extra={
                        "train_seconds": round(seconds, 1),
                        "trips": str(trips_path),
                        "split": split_name,
                    },
                )
            models[label] = (model, seconds)
        for label, (model, seconds) in models.items():
            started = time.perf_counter()
            predicted = model.predict(graph, frame)
            metrics = evaluate_predictions(true, predicted, length, hour)
            metrics["train_seconds"] = round(seconds, 1)
            metrics["predict_seconds"] = round(time.perf_counter() - started, 2)
            split_result["models"][label] = metrics
        results["splits"][split_name] = split_result
    return results


def print_table(report: dict) -> None:
    header = (
        f"{'city':<11} {'split':<15} {'model':<15} {'MAPE':>6} {'medAPE':>7} "
        f"{'MAE s':>6} {'RMSE s':>7} {'±10%':>6} {'±20%':>6} {'bias s':>7}"
    )
    print(header)
    print("-" * len(header))
    for city, result in report["cities"].items():
        for split, split_result in result["splits"].items():
            for model, metrics in split_result["models"].items():
                m = metrics["overall"]
                print(
                    f"{city:<11} {split:<15} {model:<15} {m['mape']:>6.1%} "
                    f"{m['median_ape']:>7.1%} {m['mae_s']:>6.0f} {m['rmse_s']:>7.0f} "
                    f"{m['within_10pct']:>6.1%} {m['within_20pct']:>6.1%} {m['bias_s']:>7.0f}"
                )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cities", nargs="+", default=["baltimore", "harrisburg"], choices=sorted(CITIES)
    )
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--profile", default="rush")
    parser.add_argument("--rate", type=float, default=2500.0)
    parser.add_argument("--reroute-period", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--zone-size", type=float, default=1000.0)
    parser.add_argument("--gnn-epochs", type=int, default=40)
    parser.add_argument("--retrain", action="store_true", help="ignore cached baselines")
    parser.add_argument(
        "--cache-dir", type=Path, default=REPO / "runs" / "benchmarks" / "baselines"
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "baselines.json"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    report: dict = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "cities": {},
        "simulations": {},
    }
    for name in args.cities:
        graph_dir, trips, manifest = prepare_city(name, CITIES[name], args.cache_dir, args)
        report["simulations"][name] = {
            "wall_s": manifest.get("wall_s"),
            "report": manifest.get("report"),
            "command_line": manifest.get("command_line"),
        }
        report["cities"][name] = run_city(name, graph_dir, trips, args.cache_dir, args)
    print_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from provenance import provenance

    report = {**provenance(), **report}
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
