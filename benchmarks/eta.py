"""ETA-model benchmark (issue 5): the NAR ETA model against the three baselines on simulated
trips of the bundled city (Baltimore) and Harrisburg, on the last hour (time split) and on
held-out zones (area split); plus low data (10% of the training trips), transfer (Baltimore
encoder on Harrisburg, no retraining), the ablation with a random untrained frozen
processor, node vs turn graph mode, and cost (training time, query / matrix latency).

    python benchmarks/eta.py [--cities baltimore harrisburg] [--epochs 3] [--max-minutes 12]

Simulations, graphs and baselines come from benchmarks/baselines.py's cache (same trips,
same splits: run it first or let this script run it). Trained ETA models are cached under
``--cache-dir``. Prints a table, writes ``benchmarks/results/eta.json`` and PNG plots.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
_spec = importlib.util.spec_from_file_location("baselines_benchmark",
                                               REPO / "benchmarks" / "baselines.py")
baselines_benchmark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(baselines_benchmark)

PROCESSOR = REPO / "artifacts_shipped" / "processor"


def _train_or_load(name: str, graph, frame, cache: Path, args, *, graph_mode: str = "turn",
                   random_processor: bool = False):
    """Train an ETA model (cached by name) and return (model, train_seconds, trips)."""
    import torch

    from models.eta.model import EtaConfig, EtaModel
    from models.eta.train import TrainConfig, fit_eta

    directory = cache / name
    processor_dir = PROCESSOR
    if random_processor:
        processor_dir = cache / "random_processor"
        if not (processor_dir / "manifest.json").is_file():
            _write_random_processor(processor_dir, args.seed)
    if (directory / "manifest.json").is_file() and not args.retrain:
        model = EtaModel.load(directory, graph, processor_dir=processor_dir)
        training = model.manifest["training"]
        return model, training["train_seconds"], training["train_trips"]
    torch.manual_seed(args.seed)
    model, report = fit_eta(graph, frame, processor_dir, config=EtaConfig(graph_mode=graph_mode),
                            train=TrainConfig(seed=args.seed, epochs=args.epochs,
                                              max_minutes=args.max_minutes),
                            progress=False)
    model.save(directory, processor_dir=processor_dir, seed=args.seed, force=True,
               extra={"training": report})
    model = EtaModel.load(directory, graph, processor_dir=processor_dir)
    return model, report["train_seconds"], report["train_trips"]


def _write_random_processor(directory: Path, seed: int) -> None:
    """The ablation: a processor of the shipped config with random, untrained weights."""
    import torch

    from models.processor.model import (
        KIND,
        SCHEMA_VERSION,
        WEIGHTS_FILE,
        Processor,
        WeightEncoder,
        config_from_manifest,
        save_weights,
    )
    from nareta.artifacts import atomic_artifact_dir, read_manifest, write_manifest

    shipped = read_manifest(PROCESSOR, kind=KIND, schema_versions=(SCHEMA_VERSION,))
    config = config_from_manifest(shipped)
    torch.manual_seed(seed)
    processor, encoder = Processor(config), WeightEncoder(config.hidden)
    with atomic_artifact_dir(directory, force=True) as staging:
        save_weights(staging / WEIGHTS_FILE, encoder, processor)
        write_manifest(staging, kind=KIND, schema_version=SCHEMA_VERSION, seed=seed,
                       extra={"config": shipped["config"], "note": "random, untrained"})


def _evaluate(model, graph, frame, *, plot_dir: Path | None = None, title: str = "") -> dict:
    from models.evaluation.evaluate import (
        evaluate_predictions,
        plot_results,
        predict_trips,
        trip_length_m,
    )
    from models.inference.predictor import Predictor

    started = time.perf_counter()
    predicted = predict_trips(Predictor(graph, model), frame)  # the service's inference path
    if plot_dir is not None:
        plot_dir.mkdir(parents=True, exist_ok=True)
        plot_results(frame["duration_s"].to_numpy(float), predicted,
                     trip_length_m(graph, frame), plot_dir, title=title)
    metrics = evaluate_predictions(frame["duration_s"].to_numpy(float), predicted,
                                   trip_length_m(graph, frame),
                                   frame["departure_hour"].to_numpy(float))
    metrics["predict_seconds"] = round(time.perf_counter() - started, 1)
    metrics["unanswered"] = int(np.isnan(predicted).sum())
    return metrics


def _latency(model, graph) -> dict:
    from models.inference.predictor import Predictor

    predictor = Predictor(graph, model)
    rng = np.random.default_rng(0)
    picks = rng.choice(len(graph["path_lon"]), size=120, replace=False)
    points = [(float(graph["path_lon"][i]) + 2e-5, float(graph["path_lat"][i])) for i in picks]
    cold = []
    for a, b in zip(points[:20], points[20:40], strict=True):
        started = time.perf_counter()
        predictor.eta(a, b)
        cold.append(time.perf_counter() - started)
    warm = []
    for b in points[40:60]:
        started = time.perf_counter()
        predictor.eta(points[0], b)
        warm.append(time.perf_counter() - started)
    fresh = Predictor(graph, model)
    started = time.perf_counter()
    fresh.matrix(points[:100], points[20:120])
    matrix_s = time.perf_counter() - started
    return {"single_query_cold_p50_ms": round(1000 * float(np.median(cold)), 1),
            "single_query_warm_p50_ms": round(1000 * float(np.median(warm)), 2),
            "matrix_100x100_s": round(matrix_s, 2)}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cities", nargs="+", default=["baltimore", "harrisburg"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-minutes", type=float, default=12.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--skip-extras", action="store_true",
                        help="only the main model per city and split")
    parser.add_argument("--splits", nargs="+", default=["last_hour", "held_out_zones"],
                        choices=["last_hour", "held_out_zones"])
    parser.add_argument("--extras", nargs="+", default=["node", "random", "low"],
                        choices=["node", "random", "low"],
                        help="which Baltimore extras to run (node mode, random processor, "
                             "10%% of the data)")
    parser.add_argument("--cache-dir", type=Path, default=REPO / "runs" / "benchmarks" / "eta")
    parser.add_argument("--baseline-cache", type=Path,
                        default=REPO / "runs" / "benchmarks" / "baselines")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "eta.json")
    return parser.parse_args()


def baltimore_extras(city: str, split: str, graph, train, test, args) -> dict:
    """The ``--extras`` on Baltimore's last hour: node mode, a random processor, and the
    NAR model and the learned scalar on 10% of the training trips."""
    from models.baselines.learned import LearnedScalarBaseline
    from models.evaluation.evaluate import evaluate_predictions, trip_length_m

    extras = {}
    if "node" in args.extras:
        node, s_node, _ = _train_or_load(f"{city}-{split}-node", graph, train.frame,
                                         args.cache_dir / city, args,
                                         graph_mode="node")
        extras["nar_eta_node_mode"] = {**_evaluate(node, graph, test.frame),
                                       "train_seconds": s_node}
    if "random" in args.extras:
        rand, s_rand, _ = _train_or_load(f"{city}-{split}-random", graph,
                                         train.frame, args.cache_dir / city, args,
                                         random_processor=True)
        extras["nar_eta_random_processor"] = {**_evaluate(rand, graph, test.frame),
                                              "train_seconds": s_rand}
    if "low" in args.extras:
        small = train.frame.sample(frac=0.1, random_state=args.seed)
        small = small.reset_index(drop=True)
        low, s_low, n_low = _train_or_load(f"{city}-{split}-turn-10pct", graph,
                                           small, args.cache_dir / city, args)
        extras["nar_eta_10pct"] = {**_evaluate(low, graph, test.frame),
                                   "train_seconds": s_low, "train_trips": n_low}
        scalar = LearnedScalarBaseline.fit(graph, small, log=lambda *_: None)
        predicted = scalar.predict(graph, test.frame)
        extras["learned_scalar_10pct"] = evaluate_predictions(
            test.frame["duration_s"].to_numpy(float), predicted,
            trip_length_m(graph, test.frame),
            test.frame["departure_hour"].to_numpy(float))
    return extras


def run_city(city: str, args, base_args) -> tuple[dict, object, dict]:
    """One city: the baselines (benchmarks/baselines.py), then the NAR model trained (or
    loaded) and evaluated on each split, its cost, and Baltimore's extras. Returns the
    city's result, its graph and the test part of each split."""
    from data_pipeline.road_graph import RoadGraph
    from data_pipeline.trips import read_trips, snap_trips, split_by_area, split_by_time

    graph_dir, trips_path, _ = baselines_benchmark.prepare_city(
        city, baselines_benchmark.CITIES[city], args.baseline_cache, base_args)
    baseline_results = baselines_benchmark.run_city(city, graph_dir, trips_path,
                                                    args.baseline_cache, base_args)
    graph = RoadGraph.load(graph_dir)
    table = snap_trips(read_trips(trips_path), graph)
    splits = {"last_hour": split_by_time(table, holdout_hours=1.0),
              "held_out_zones": split_by_area(table, zone_size_m=1000.0, holdout_share=0.2,
                                              seed=args.seed)}
    city_result: dict = {"splits": {}}
    tests = {}
    splits = {name: value for name, value in splits.items() if name in args.splits}
    for split, (train, test) in splits.items():
        models = dict(baseline_results["splits"][split]["models"])
        model, seconds, trips = _train_or_load(f"{city}-{split}-turn", graph, train.frame,
                                               args.cache_dir / city, args)
        metrics = _evaluate(model, graph, test.frame,
                            plot_dir=args.out.parent / "eta_plots" / f"{city}-{split}",
                            title=f"NAR ETA, {city}, {split}")
        metrics.update(train_seconds=seconds, train_trips=trips)
        models["nar_eta"] = metrics
        city_result["splits"][split] = {"train_trips": len(train), "test_trips": len(test),
                                        "models": models}
        tests[split] = test
        if split == "last_hour":
            city_result["cost"] = {"train_seconds": seconds, "train_trips": trips,
                                   **_latency(model, graph)}
        if city == "baltimore" and split == "last_hour" and not args.skip_extras:
            city_result["extras"] = baltimore_extras(city, split, graph, train, test, args)
    return city_result, graph, tests


def main() -> int:
    args = parse_args()
    from provenance import provenance

    stamp = provenance()  # before this run writes its own results files (tracked ones)

    import torch

    from models.eta.model import EtaModel

    torch.set_num_threads(1)
    base_args = argparse.Namespace(hours=3.0, profile="rush", rate=2500.0, seed=args.seed,
                                   reroute_period=120.0, zone_size=1000.0, gnn_epochs=40,
                                   retrain=False)
    report: dict = {"settings": {k: _shown(v) for k, v in vars(args).items()}, "cities": {}}
    graphs, tests = {}, {}
    for city in args.cities:
        city_result, graphs[city], city_tests = run_city(city, args, base_args)
        tests.update({(city, split): test for split, test in city_tests.items()})
        report["cities"][city] = city_result
    if "baltimore" in graphs and "harrisburg" in graphs:
        source = args.cache_dir / "baltimore" / "baltimore-last_hour-turn"
        transferred = EtaModel.load(source, graphs["harrisburg"], allow_other_graph=True)
        report["transfer_baltimore_to_harrisburg_last_hour"] = _evaluate(
            transferred, graphs["harrisburg"], tests[("harrisburg", "last_hour")].frame)
    print_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {**stamp, **report}
    args.out.write_text(json.dumps(report, indent=2, default=float))
    print(f"wrote {args.out}")
    return 0

def _shown(value) -> str:
    """A setting as recorded: paths inside the repository relative to it."""
    if isinstance(value, Path) and value.resolve().is_relative_to(REPO):
        return str(value.resolve().relative_to(REPO))
    return str(value)


def print_table(report: dict) -> None:
    print(f"{'city':<11} {'split':<15} {'model':<26} {'MAPE':>6} {'medAPE':>7} {'±10%':>6} "
          f"{'±20%':>6} {'train s':>8}")
    for city, result in report["cities"].items():
        for split, split_result in result["splits"].items():
            rows = dict(split_result["models"])
            if split == "last_hour":
                rows.update(result.get("extras", {}))
            for name, metrics in rows.items():
                m = metrics["overall"]
                print(f"{city:<11} {split:<15} {name:<26} {m['mape']:>6.1%} "
                      f"{m['median_ape']:>7.1%} {m['within_10pct']:>6.1%} "
                      f"{m['within_20pct']:>6.1%} {metrics.get('train_seconds', 0):>8}")
        if "cost" in result:
            print(f"{city}: cost {result['cost']}")
    if "transfer_baltimore_to_harrisburg_last_hour" in report:
        m = report["transfer_baltimore_to_harrisburg_last_hour"]["overall"]
        print(f"transfer baltimore -> harrisburg (last hour): MAPE {m['mape']:.1%}")


if __name__ == "__main__":
    raise SystemExit(main())
