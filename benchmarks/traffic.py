"""Live-traffic benchmark (issue 11): ETAs on a day the models have not seen.

Per city, SUMO simulates several weekdays that differ in demand and carry random incidents
(``nareta simulate --days``, which also writes the traffic feed: SUMO edgeData mean speeds
per 5 minutes mapped onto segments). Models train on all days but the last and are tested
on the last day (another demand level, its own incidents), on the last hour of the last
training day (held out of training), and on a random 10 % of the training days' trips
(in distribution, held out of training). Every model answers through the Predictor (the
service's own path), each trip at its departure time with the feed as it stood then
(windows that ended before the departure). Compared on the trips every model answers:

* ``oracle``: each trip's driven route priced with the simulator's own mean speeds of the
  5-minute windows the trip drove through (it knows the future; the floor, not a model);
* ``freeflow``: free-flow times on the turn graph;
* ``freeflow_x_index`` / ``learned_scalar_x_index``: scaled by the city congestion index,
  the median (duration / that model's ETA) over trips that ended in the 15 min before the
  departure (no retraining: the cheapest live signal);
* ``live_scalar``: Dijkstra on the latest observed speed per segment, free flow elsewhere
  (OSRM with a segment speed file);
* ``learned_scalar``: per-segment and per-turn times fitted to the training trips;
* ``nar_shipped`` (with ``--previous-model``): the Baltimore model shipped before this
  benchmark (one simulated day, no feed);
* ``nar_no_feed``: the live-traffic NAR model with the feed withheld (its fallback);
* ``nar_live``: the NAR model with live state;
* ``nar_live_zero_shot`` (Harrisburg): the Baltimore live model on Harrisburg with
  Harrisburg's feed, no retraining (``_restandardised``: its feature standardisation
  refitted on Harrisburg's roads).

    python benchmarks/traffic.py [--cities baltimore harrisburg] [--train-minutes 12]

Simulations and models are cached under ``runs/traffic/`` (keyed by their settings).
Prints a table and writes ``benchmarks/results/traffic.json`` and plots in
``benchmarks/results/traffic_plots/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PROCESSOR = REPO / "artifacts_shipped" / "processor"
CITY_SIMULATION = {
    # demand scale per day (the last day is held out) and seed; 2 h rush profile per day
    "baltimore": {"scales": "0.7,1.0,1.3,1.15", "seed": 100},
    "harrisburg": {"scales": "0.75,1.3,1.05", "seed": 200},
}
SIM_HOURS, SIM_RATE, INCIDENTS = 2.0, 2500.0, 2
INDEX_WINDOW_S = 900.0


def _osm(city: str, args) -> Path:
    for folder in (REPO / "data" / "osm", Path(args.shared_osm)):
        if (folder / f"{city}.osm.pbf").is_file():
            return folder / f"{city}.osm.pbf"
    raise SystemExit(f"{city}.osm.pbf not found in data/osm or {args.shared_osm}")


def simulation_command(city: str, args) -> tuple[Path, list[str], dict]:
    """(folder, the `nareta simulate` command, the settings its cache stamp records)."""
    folder = Path(args.cache_dir) / city
    spec = CITY_SIMULATION[city]
    command = [sys.executable, "-m", "nareta.cli", "simulate", str(_osm(city, args)),
               "--graph", str(folder / "graph"), "--out", str(folder / "trips.parquet"),
               "--hours", str(SIM_HOURS), "--rate", str(SIM_RATE),
               "--days", str(len(spec["scales"].split(","))),
               "--demand-scales", spec["scales"], "--incidents", str(INCIDENTS),
               "--seed", str(spec["seed"]), "--jobs", "2", "--force",
               "--work-dir", str(folder / "work")]
    settings = {"command": [str(Path(c).name) if "/" in c else c for c in command[3:]],
                "version": 1}
    return folder, command, settings


def simulate(city: str, args) -> Path:
    """Ingest and simulate the city's days (cached by settings); returns its folder."""
    folder, command, settings = simulation_command(city, args)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / "simulation.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == settings and \
            (folder / "trips.traffic.parquet").is_file():
        return folder
    if not (folder / "graph" / "manifest.json").is_file():
        subprocess.run([sys.executable, "-m", "nareta.cli", "ingest", str(_osm(city, args)),
                        "--out", str(folder / "graph")], check=True, cwd=REPO)
    print(f"simulating {city} ({' '.join(command[3:])})", flush=True)
    subprocess.run(command, check=True, cwd=REPO)
    stamp.write_text(json.dumps(settings))
    return folder


# --------------------------------------------------------------------------- data
def load_city(folder: Path):
    """(graph, snapped trips frame with a 'day' column, TrafficSnapshot, manifest)."""
    from data_pipeline.road_graph import RoadGraph
    from data_pipeline.traffic import load_feed
    from data_pipeline.trips import read_trips, snap_trips
    from models.inference.live import TrafficSnapshot

    graph = RoadGraph.load(folder / "graph")
    table = snap_trips(read_trips(folder / "trips.parquet"), graph)
    observations, report = load_feed(folder / "trips.traffic.parquet", graph)
    snapshot = TrafficSnapshot(graph, observations, source=str(folder))
    manifest = json.loads((folder / "trips.parquet.manifest.json").read_text())
    return graph, table.frame, snapshot, manifest, report


def splits(frame, *, seed: int = 0, holdout_s: float = 3600.0) -> dict[str, np.ndarray]:
    """Row masks: train, in_distribution, last_hour (of the last training day), held-out
    day (the last day)."""
    day = frame["day"].to_numpy()
    last_day = day.max()
    departure = frame["departure_s"].to_numpy(float)
    before = day == last_day - 1
    cutoff = departure[before].max() - holdout_s
    last_hour = before & (departure > cutoff)
    training_days = (day < last_day) & ~last_hour
    rng = np.random.default_rng(seed)
    in_distribution = training_days & (rng.random(len(frame)) < 0.1)
    return {"train": training_days & ~in_distribution, "in_distribution": in_distribution,
            "last_hour": last_hour, "held_out_day": day == last_day}


# --------------------------------------------------------------------------- models
def train_live(city: str, graph, frame, snapshot, rows, args, seed: int):
    """The NAR model with live traffic features (cached by settings)."""
    from models.eta.model import EtaConfig, EtaModel
    from models.eta.train import TrainConfig, fit_eta

    directory = Path(args.cache_dir) / city / f"nar_live_seed{seed}"
    settings = {"minutes": args.train_minutes, "epochs": args.epochs, "trips": int(rows.sum()),
                "max_trips": args.max_trips, "feed": snapshot.key, "version": 3}
    stamp = directory / "settings.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == settings and not args.retrain:
        model = EtaModel.load(directory, graph)
        return model, model.manifest["training"]
    train_frame = frame[rows].reset_index(drop=True)
    if args.max_trips and len(train_frame) > args.max_trips:
        train_frame = train_frame.sample(n=args.max_trips, random_state=seed).reset_index(
            drop=True)
    config = EtaConfig(traffic=True, turn_time=False)
    model, report = fit_eta(graph, train_frame, PROCESSOR, config=config,
                            train=TrainConfig(seed=seed, epochs=args.epochs,
                                              max_minutes=args.train_minutes,
                                              validation="latest"),
                            progress=not args.no_progress, traffic=snapshot,
                            checkpoint_dir=directory.with_name(directory.name + ".ckpt"))
    model.save(directory, processor_dir=PROCESSOR, seed=seed, force=True,
               extra={"training": report, "benchmark": "benchmarks/traffic.py",
                      "command_line": " ".join(sys.argv)})
    stamp.write_text(json.dumps(settings))
    return EtaModel.load(directory, graph), report


def predict(predictor, frame, *, live: bool) -> np.ndarray:
    """Seconds per trip through the Predictor (models.evaluation.evaluate.predict_trips)."""
    from models.evaluation.evaluate import predict_trips

    return predict_trips(predictor, frame, live=live)


def oracle(graph, frame, observations) -> np.ndarray:
    """Each trip's driven route priced with the simulator's mean speed of the 5-minute
    window in which the trip entered each segment (free flow where a window has none);
    partial first / last segments by the snapped positions."""
    length_km = graph["length_m"].astype(np.float64) / 1000.0
    free = graph["free_flow_s"].astype(np.float64)
    window = observations.window_length_s
    table = {(float(w), int(s)): v for w, s, v in zip(
        observations.window_s.tolist(), observations.segment.tolist(),
        observations.speed_kph.tolist(), strict=True)}
    out = np.full(len(frame), np.nan)
    for row, trip in enumerate(frame.itertuples()):
        route = trip.route
        if route is None or len(route) == 0:
            continue
        route = np.asarray(route, dtype=np.int64)
        first = ((1 - trip.origin_fraction) if route[0] == trip.origin_segment
                 else trip.origin_fraction)
        last = (trip.destination_fraction if route[-1] == trip.destination_segment
                else 1 - trip.destination_fraction)
        clock = float(trip.departure_s)
        for index, segment in enumerate(route.tolist()):
            share = 1.0
            if index == 0:
                share = first
            if index == len(route) - 1:
                share = last if len(route) > 1 else max(last - (1 - first), 0.0)
            speed = table.get((np.floor(clock / window) * window, segment))
            seconds = length_km[segment] / speed * 3600.0 if speed else free[segment]
            clock += max(share, 0.0) * seconds
        out[row] = clock - float(trip.departure_s)
    return out


def index_scaled(frame, predicted: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``predicted`` × the median (duration / predicted) over trips of the same day that
    ended in the 15 min before each trip's departure (1 where none ended)."""
    departure = frame["departure_s"].to_numpy(float)
    duration = frame["duration_s"].to_numpy(float)
    day = frame["day"].to_numpy()
    end = departure + duration
    ratio = duration / predicted
    out = np.full(len(frame), np.nan)
    for row in np.flatnonzero(rows):
        recent = ((day == day[row]) & (end <= departure[row])
                  & (end > departure[row] - INDEX_WINDOW_S) & np.isfinite(ratio))
        factor = float(np.median(ratio[recent])) if recent.any() else 1.0
        out[row] = predicted[row] * factor
    return out


def metrics(true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    ape = np.abs(predicted - true) / true
    signed = (predicted - true) / true
    return {"mape": float(ape.mean()), "median_ape": float(np.median(ape)),
            "within_10pct": float((ape <= 0.1).mean()), "within_20pct": float((ape <= 0.2).mean()),
            "bias_pct": float(100 * np.median(signed)), "mean_bias_s": float(
                np.mean(predicted - true)), "trips": int(len(true))}


def bootstrap_mape(true, predicted, *, draws: int = 500, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    ape = np.abs(predicted - true) / true
    samples = [ape[rng.integers(0, len(ape), len(ape))].mean() for _ in range(draws)]
    return [float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))]


# --------------------------------------------------------------------------- one city
def evaluate_city(city: str, args, live_models: dict) -> dict:
    """Simulate (or load) ``city``, train its live NAR model, then evaluate every arm on the
    held-out day, the last hour and in-distribution trips (``{}`` with ``--train-only``)."""
    folder = simulate(city, args)
    graph, frame, snapshot, manifest, feed_report = load_city(folder)
    masks = splits(frame, seed=args.seed, holdout_s=getattr(args, "holdout_s", 3600.0))
    print(f"{city}: {len(frame)} trips over {frame['day'].nunique()} days; "
          + ", ".join(f"{k} {int(v.sum())}" for k, v in masks.items())
          + f"; feed {feed_report.used} rows", flush=True)
    started = time.perf_counter()
    model, training = train_live(city, graph, frame, snapshot, masks["train"], args, args.seed)
    live_models[city] = model
    if args.train_only:
        return {}
    train_seconds = training.get("train_seconds")
    predictors, scalar_seconds = city_predictors(city, graph, frame, masks, model, args)
    for predictor in predictors.values():
        predictor.set_traffic(snapshot)

    evaluated = bound_evaluation(frame, masks, args)
    sub = frame[evaluated].reset_index(drop=True)
    sub_masks = {name: mask[evaluated] for name, mask in masks.items() if name != "train"}
    predictions, timings = predict_arms(graph, sub, snapshot, predictors)
    true = sub["duration_s"].to_numpy(float)
    results = split_metrics(true, predictions, sub_masks)
    _plots(city, sub, true, predictions, sub_masks["held_out_day"], args)
    return {
        "trips": int(len(frame)), "days": manifest.get("days"), "feed": feed_report.to_json(),
        "splits": results, "train_seconds": train_seconds,
        "training": {k: v for k, v in training.items() if k != "history"},
        "training_history": training.get("history"),
        "learned_scalar_fit_seconds": round(scalar_seconds, 1),
        "prediction_seconds": timings, "wall_seconds": round(time.perf_counter() - started, 1),
    }


def city_predictors(city: str, graph, frame, masks, model, args) -> tuple[dict, float]:
    """A Predictor per arm: free flow, live scalar, the live NAR model, the learned scalar
    (fitted here on the training split; its fit seconds returned too), the shipped model
    on Baltimore when comparable, and Baltimore's model zero-shot on other cities."""
    from models.baselines.freeflow import FreeFlowTurnModel, LiveScalarModel
    from models.baselines.learned import LearnedScalarBaseline
    from models.eta.model import EtaModel, FeatureScaler
    from models.inference.predictor import Predictor

    predictors = {
        "freeflow": Predictor(graph, FreeFlowTurnModel(graph)),
        "live_scalar": Predictor(graph, LiveScalarModel(graph)),
        "nar_live": Predictor(graph, model),
    }

    clock = time.perf_counter()
    scalar = LearnedScalarBaseline.fit(graph, frame[masks["train"]].reset_index(drop=True),
                                       log=lambda *_: None)
    scalar.graph = graph
    predictors["learned_scalar"] = Predictor(graph, scalar)
    scalar_seconds = time.perf_counter() - clock
    previous = Path(args.previous_model) if args.previous_model else None
    if city == "baltimore" and previous is not None and previous.is_dir():
        try:
            predictors["nar_shipped"] = Predictor(graph, EtaModel.load(previous, graph))
        except Exception as exc:  # noqa: BLE001 - another graph build: report, go on
            print(f"shipped model not comparable: {exc}")
    baltimore_model = Path(args.cache_dir) / "baltimore" / f"nar_live_seed{args.seed}"
    if city != "baltimore" and (baltimore_model / "manifest.json").is_file():
        transfer = EtaModel.load(baltimore_model, graph, allow_other_graph=True)
        predictors["nar_live_zero_shot"] = Predictor(graph, transfer)
        # the same, its feature standardisation refitted on this city's roads
        restandardised = EtaModel.load(baltimore_model, graph, allow_other_graph=True)
        restandardised.scaler = FeatureScaler.fit(graph)
        restandardised.attach(graph)
        predictors["nar_live_zero_shot_restandardised"] = Predictor(graph, restandardised)
    return predictors, scalar_seconds


def bound_evaluation(frame, masks: dict[str, np.ndarray], args) -> np.ndarray:
    """Cap each evaluated split at ``--max-eval-trips`` random trips (``masks`` updated in
    place); the mask of trips any evaluated split keeps."""
    rng = np.random.default_rng(args.seed)
    for split in ("held_out_day", "last_hour", "in_distribution"):  # bounded evaluation cost
        rows = np.flatnonzero(masks[split])
        if args.max_eval_trips and len(rows) > args.max_eval_trips:
            keep = np.zeros(len(frame), dtype=bool)
            keep[rng.choice(rows, args.max_eval_trips, replace=False)] = True
            masks[split] = keep
    return masks["held_out_day"] | masks["last_hour"] | masks["in_distribution"]


def predict_arms(graph, sub, snapshot, predictors: dict) -> tuple[dict[str, np.ndarray], dict]:
    """Each predictor's live predictions on ``sub`` (timed), the NAR model without the
    feed, free flow and learned scalar scaled by the recent-trips index, and the oracle."""
    predictions: dict[str, np.ndarray] = {}
    timings = {}
    for name, predictor in predictors.items():
        clock = time.perf_counter()
        predictions[name] = predict(predictor, sub, live=True)
        timings[name] = round(time.perf_counter() - clock, 1)
        print(f"  {name}: {timings[name]} s", flush=True)
    predictions["nar_no_feed"] = predict(predictors["nar_live"], sub, live=False)
    everything = np.ones(len(sub), dtype=bool)
    predictions["freeflow_x_index"] = index_scaled(sub, predictions["freeflow"], everything)
    predictions["learned_scalar_x_index"] = index_scaled(sub, predictions["learned_scalar"],
                                                         everything)
    predictions["oracle"] = oracle(graph, sub, snapshot.observations)
    return predictions, timings


def split_metrics(true: np.ndarray, predictions: dict[str, np.ndarray],
                  sub_masks: dict[str, np.ndarray]) -> dict:
    """Per split: metrics of every arm on the trips all arms answer, with a bootstrap MAPE
    interval and each arm's unanswered count."""
    results = {}
    for split, mask in sub_masks.items():
        answered = mask.copy()
        for values in predictions.values():
            answered &= np.isfinite(values) & (values > 0)
        rows = {}
        for name, values in predictions.items():
            row = metrics(true[answered], values[answered])
            row["mape_95ci"] = bootstrap_mape(true[answered], values[answered])
            row["unanswered"] = int((mask & ~(np.isfinite(values) & (values > 0))).sum())
            rows[name] = row
        results[split] = {"trips": int(mask.sum()), "compared": int(answered.sum()),
                          "models": rows}
    return results

def _plots(city, frame, true, predictions, mask, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(args.results) / "traffic_plots"
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n in ("oracle", "freeflow", "live_scalar", "learned_scalar", "nar_no_feed",
                         "nar_live", "nar_live_zero_shot") if n in predictions]
    figure, axes = plt.subplots(1, 2, figsize=(12, 5))
    limit = np.percentile(true[mask], 99)
    for name in ("live_scalar", "nar_live"):
        values = predictions[name][mask]
        axes[0].scatter(true[mask], values, s=3, alpha=0.3, label=name)
    axes[0].plot([0, limit], [0, limit], color="black", linewidth=1)
    axes[0].set(xlim=(0, limit), ylim=(0, limit), xlabel="true duration (s)",
                ylabel="predicted (s)", title=f"{city}: held-out day")
    axes[0].legend()
    hour = ((frame["departure_s"].to_numpy(float) % 86400) / 3600.0)[mask]
    bins = np.arange(np.floor(hour.min() * 4) / 4, hour.max() + 0.25, 0.25)
    for name in names:
        values = predictions[name][mask]
        ape = np.abs(values - true[mask]) / true[mask]
        index = np.digitize(hour, bins)
        curve = [np.nanmean(ape[index == i]) if (index == i).any() else np.nan
                 for i in range(1, len(bins))]
        axes[1].plot(bins[:-1], curve, label=name)
    axes[1].set(xlabel="departure hour", ylabel="MAPE", title="held-out day, by 15 min")
    axes[1].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / f"{city}_held_out_day.png", dpi=110)
    plt.close(figure)


def _table(results: dict) -> str:
    order = ("oracle", "freeflow", "freeflow_x_index", "live_scalar", "learned_scalar",
             "learned_scalar_x_index", "nar_shipped", "nar_no_feed", "nar_live",
             "nar_live_zero_shot", "nar_live_zero_shot_restandardised")
    lines = ["| city | split | compared | model | MAPE [95% CI] | median APE | within 10% | "
             "within 20% | median bias | unanswered |", "|" + " --- |" * 10]
    for city, report in results.items():
        for split, block in report["splits"].items():
            for name in order:
                if name not in block["models"]:
                    continue
                row = block["models"][name]
                low, high = row["mape_95ci"]
                lines.append(
                    f"| {city} | {split} | {block['compared']} | {name} | "
                    f"{row['mape']:.1%} [{low:.1%}, {high:.1%}] | {row['median_ape']:.1%} | "
                    f"{row['within_10pct']:.1%} | {row['within_20pct']:.1%} | "
                    f"{row['bias_pct']:+.1f}% | {row['unanswered']} |")
    return "\n".join(lines)


def _targets(results: dict) -> list[str]:
    lines = []
    for city, report in results.items():
        held = report["splits"]["held_out_day"]["models"]
        ind = report["splits"]["in_distribution"]["models"]
        nar = held["nar_live"]["mape"]
        lines.append(f"{city}: NAR live {nar:.1%} vs free flow {held['freeflow']['mape']:.1%} "
                     f"(ratio {nar / held['freeflow']['mape']:.2f}, target <= 0.5); vs live "
                     f"scalar {held['live_scalar']['mape']:.1%} (ratio "
                     f"{nar / held['live_scalar']['mape']:.2f}, target <= 0.8); vs its own "
                     f"in-distribution {ind['nar_live']['mape']:.1%} (ratio "
                     f"{nar / ind['nar_live']['mape']:.2f}, target <= 1.1); oracle "
                     f"{held['oracle']['mape']:.1%}")
        if "nar_live_zero_shot" in held:
            zero = held["nar_live_zero_shot"]["mape"]
            lines.append(f"{city} zero-shot (Baltimore live model): {zero:.1%} vs free flow "
                         f"{held['freeflow']['mape']:.1%} and live scalar "
                         f"{held['live_scalar']['mape']:.1%} (target: better than both)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cities", nargs="+", default=["baltimore", "harrisburg"],
                        choices=sorted(CITY_SIMULATION))
    parser.add_argument("--train-minutes", type=float, default=12.0)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--max-trips", type=int, default=12000,
                        help="train on at most this many trips (random subset)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-eval-trips", type=int, default=4000,
                        help="score at most this many trips per split (random, seeded)")
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--previous-model", default=None,
                        help="an earlier Baltimore EtaModel (no live traffic) to compare, e.g. "
                             "the one shipped before this benchmark: `git show d0402de:"
                             "artifacts_shipped/eta_baltimore/{eta.safetensors,manifest.json}`")
    parser.add_argument("--cache-dir", default=str(REPO / "runs" / "traffic"))
    parser.add_argument("--shared-osm", default=str(REPO.parent / "shared" / "osm"))
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--train-only", action="store_true",
                        help="only simulate and train (cached), no evaluation")
    args = parser.parse_args(argv)
    live_models: dict = {}
    results = {}
    for city in args.cities:
        results[city] = evaluate_city(city, args, live_models)
    if args.train_only:
        return 0
    table = _table(results)
    print(table)
    targets = _targets(results)
    print("\n".join(targets))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    out = Path(args.results) / "traffic.json"
    out.write_text(json.dumps({
        "command": " ".join(["python", "benchmarks/traffic.py", *(argv or sys.argv[1:])]),
        "git_commit": commit, "created_utc": dt.datetime.now(dt.UTC).isoformat(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("cache_dir", "results",
                                                                       "shared_osm")},
        "simulation": {"hours": SIM_HOURS, "rate": SIM_RATE, "incidents_per_day": INCIDENTS,
                       **CITY_SIMULATION},
        "table": table, "targets": targets, "cities": results}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
