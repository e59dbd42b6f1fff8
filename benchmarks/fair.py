"""Fair-baseline tables (issue 14) on the live-traffic benchmark's held-out day (Baltimore).

Every arm answers through the :class:`models.predictor.Predictor` (the service's path), each
trip at its departure time with the feed as it stood then, and is scored on the SAME trips:
those every arm answers (the unanswered count of each arm is shown beside it). Arms:

* ``oracle``: the driven route priced with the simulator's own per-edge mean speeds of the
  5-minute windows the trip drove through (benchmarks/traffic.py; the floor, not a model);
* ``freeflow``: free-flow Dijkstra on the turn graph;
* ``live_scalar``: Dijkstra on the latest observed speed per segment (free flow elsewhere);
* ``learned_scalar``: per-segment / per-turn times fitted to the training trips' driven
  routes, then Dijkstra (models.baselines; no time, no traffic);
* ``learned_scalar_time``: the same with the NAR model's departure-time features
  (models.baselines ``learned_scalar_time``);
* ``learned_scalar_time_live``: the same plus the NAR model's live traffic features: each
  segment's time is multiplied by ``exp(clip(g * prior + theta . live))``, with ``prior`` the
  feed's implied log time factor (what the NAR encoder adds with its gain ``live_gain``) and
  ``live`` the segment's :data:`models.live.LIVE_FEATURES` at the trip's departure; ``g`` and
  ``theta`` fitted on the training trips' driven routes after the timed fit (two stages);
* ``nar_k1``: the NAR model with ``EtaConfig(residual=False)``: the edge latent is then
  ``w a`` (models.processor.WeightEncoder), every one of the processor's channels runs the
  same min-plus recursion on one scalar per turn, and the decoder reads one scaled
  shortest-path time: K=1 in effect (same encoder inputs: segment, turn, time, traffic);
* ``nar_k16``: the shipped configuration (residual per-channel costs, traffic, no time on
  the turn MLP), the reference of every ratio;
* ``nar_k16_full_budget``: the shipped benchmark's own model (``nar_live_seed0``, 12,000
  trips x 2 epochs), one seed, for scale; trained on another (larger) trip sample.

Trained arms run with three seeds (the seed sets the training-trip sample, the
initialisation and the validation split) at a REDUCED budget by default (4,000 training
trips, 1 epoch, 8 min cap per NAR run, one CPU thread), stated in the output. MAPE per
trained arm is the mean over seeds; its 95 % interval is a trip bootstrap (the same
resampled trips for every arm, so ratios are paired); the seed spread is shown beside.

    python benchmarks/fair.py --cache-dir runs/traffic [--models-dir runs/fair] \\
        [--seeds 0 1 2] [--max-trips 4000] [--epochs 1] [--train-minutes 8] [--train-only]

Inputs (simulation, graph, feed) are read from ``<cache-dir>/baltimore`` (made by
benchmarks/traffic.py); trained arms are cached in ``<models-dir>/baltimore/<arm>_seed<s>``
(keyed by their settings). Prints a table and writes ``benchmarks/results/<name>.json``
and ``<name>.png`` (``--name``, default ``fair``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
CITY = "baltimore"
REFERENCE = "nar_k16"
TRAINED_ARMS = ("learned_scalar", "learned_scalar_time_live", "nar_k1", "nar_k16")
ORDER = ("oracle", "freeflow", "live_scalar", "learned_scalar", "learned_scalar_time",
         "learned_scalar_time_live",
         "nar_k1", "nar_k16", "nar_k16_full_budget")
LIVE_LOG_FACTOR_LIMIT = 3.0  # as EtaConfig.max_log_factor


# --------------------------------------------------------------------------- statistics
def common_answered(predictions: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, int]]:
    """Rows every arm answers (finite, positive seconds in every seed) and, per arm, how
    many rows it leaves unanswered. ``predictions[name]`` is ``[N]`` or ``[S, N]``."""
    answered = None
    unanswered = {}
    for name, values in predictions.items():
        values = np.atleast_2d(np.asarray(values, dtype=np.float64))  # [S, N]
        ok = (np.isfinite(values) & (values > 0)).all(axis=0)  # [N]
        unanswered[name] = int((~ok).sum())
        answered = ok if answered is None else answered & ok
    if answered is None:
        raise ValueError("no predictions")
    return answered, unanswered


def paired_bootstrap(true_s: np.ndarray, predictions: dict[str, np.ndarray], *,
                     reference: str | None, draws: int = 1000, seed: int = 0,
                     level: float = 0.95) -> dict[str, dict]:
    """Trip bootstrap of MAPE per arm and of each arm's MAPE over the reference's.

    ``predictions[name]``: ``[N]`` seconds or ``[S, N]`` (seeds); every row must be answered
    (take :func:`common_answered` first). An arm's MAPE is the mean over its seeds of the
    per-seed MAPE (equal to the MAPE of the per-trip seed-mean APE). Every draw resamples the
    same trips for all arms (paired), so the ratio interval reflects trip sampling only; the
    seed spread is reported separately (``seed_mapes``).
    """
    true = np.asarray(true_s, dtype=np.float64)
    if (true <= 0).any() or not np.isfinite(true).all():
        raise ValueError("true durations must be finite and positive")
    ape = {}
    seed_mapes = {}
    bias = {}
    for name, values in predictions.items():
        values = np.atleast_2d(np.asarray(values, dtype=np.float64))  # [S, N]
        if values.shape[1] != len(true):
            raise ValueError(f"{name}: {values.shape[1]} predictions for {len(true)} trips")
        if not (np.isfinite(values) & (values > 0)).all():
            raise ValueError(f"{name} has unanswered trips: bootstrap the common set")
        per_seed = np.abs(values - true) / true  # [S, N]
        seed_mapes[name] = per_seed.mean(axis=1).tolist()
        bias[name] = float(np.median((values - true) / true, axis=1).mean())
        ape[name] = per_seed.mean(axis=0)  # [N] seed-mean APE
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(true), size=(draws, len(true)))  # [B, N], shared by all arms
    tail = 100 * (1 - level) / 2
    samples = {name: a[index].mean(axis=1) for name, a in ape.items()}  # [B]
    out = {}
    for name, a in ape.items():
        row = {"mape": float(a.mean()),
               "mape_ci": [float(np.percentile(samples[name], tail)),
                           float(np.percentile(samples[name], 100 - tail))],
               "median_bias": bias[name],
               "seed_mapes": seed_mapes[name], "seeds": len(seed_mapes[name]),
               "seed_std": float(np.std(seed_mapes[name], ddof=1))
               if len(seed_mapes[name]) > 1 else None}
        if reference is not None and reference in ape:
            ratio = samples[name] / samples[reference]
            row["ratio"] = float(a.mean() / ape[reference].mean())
            row["ratio_ci"] = [float(np.percentile(ratio, tail)),
                               float(np.percentile(ratio, 100 - tail))]
        out[name] = row
    return out


# --------------------------------------------------------------------------- arms
class LiveLearnedScalar:
    """``learned_scalar_time`` with the NAR model's live traffic inputs, a TravelTimeModel
    whose run keys carry the traffic state (:class:`models.live.RunKey`)."""

    graph_mode = "turn"
    uses_traffic = True
    name = "learned_scalar_time_live"

    def __init__(self, base, gain: float, theta: np.ndarray, graph):
        self.base = base
        self.base.segment_times(graph)  # binds the free-flow floor
        self.base.graph = graph
        self.graph = graph
        self.gain = float(gain)
        self.theta = np.asarray(theta, dtype=np.float64)
        self.identity = f"{base.identity}:live:{self.gain:.6g}:" + ",".join(
            f"{v:.6g}" for v in self.theta)
        self.config = base.config

    def time_bucket(self, departure_time) -> int:
        return self.base.time_bucket(departure_time)

    def live_log_factor(self, state) -> np.ndarray:
        """``[E]`` log time factor the feed implies for each segment under this model."""
        if state is None:
            return np.zeros(self.graph.num_segments)
        raw = self.gain * state.prior_log_factor.astype(np.float64) + \
            state.features.astype(np.float64) @ self.theta
        return np.clip(raw, -LIVE_LOG_FACTOR_LIMIT, LIVE_LOG_FACTOR_LIMIT)

    def segment_times_s(self, key) -> np.ndarray:
        from models.inference.live import key_parts

        bucket, state = key_parts(key)
        return self.base.segment_times_s(bucket) * np.exp(self.live_log_factor(state))

    def turn_times_s(self, key) -> np.ndarray:
        return self.base.turn_time_s

    def run_from(self, origins: np.ndarray, key):
        from models.execution.trees import line_dijkstra_tree

        return line_dijkstra_tree(self.graph, self.segment_times_s(key), self.base.turn_time_s,
                                  origins)


def fit_live_terms(base, graph, frame, snapshot, *, steps: int = 300,
                   log=print) -> tuple[float, np.ndarray]:
    """Fit the live gain ``g`` and coefficients ``theta`` of :class:`LiveLearnedScalar` on
    the trips' driven routes (log-MSE, the timed scalar's times held fixed)."""
    import pandas as pd
    import torch

    from models.baselines.learned import _route_design
    from models.inference.live import LIVE_FEATURES

    segments, turns, usable = _route_design(graph, frame, list(frame["route"]))
    rows = np.flatnonzero(usable)
    frame = frame.iloc[rows].reset_index(drop=True)
    design = segments[rows].tocoo()
    turn_seconds = np.asarray(turns[rows] @ base.turn_time_s).ravel()  # [N]
    buckets = [base.time_bucket(d) for d in
               pd.to_datetime(frame["departure_local"]).dt.to_pydatetime()]
    departure = frame["departure_s"].to_numpy(np.float64)
    slots = np.floor(departure / snapshot.window_s).astype(np.int64)
    entry_features = np.zeros((design.nnz, len(LIVE_FEATURES)), dtype=np.float64)
    entry_prior = np.zeros(design.nnz)
    entry_base = np.zeros(design.nnz)
    trip_of_entry = design.row
    for slot in np.unique(slots):
        trips = np.flatnonzero(slots == slot)
        state = snapshot.state_at(float(departure[trips[0]]))
        # every trip departing in one 5-minute window sees the same state
        entries = np.flatnonzero(np.isin(trip_of_entry, trips))
        seg = design.col[entries]
        entry_features[entries] = state.features[seg]
        entry_prior[entries] = state.prior_log_factor[seg]
    for bucket in np.unique(buckets):
        trips = np.flatnonzero(np.asarray(buckets) == bucket)
        entries = np.flatnonzero(np.isin(trip_of_entry, trips))
        entry_base[entries] = base.segment_times_s(int(bucket))[design.col[entries]]
    entry_base *= design.data
    target = torch.from_numpy(np.log(frame["duration_s"].to_numpy(np.float64)))
    x = torch.from_numpy(entry_features)
    prior = torch.from_numpy(entry_prior)
    seconds = torch.from_numpy(entry_base)
    trip = torch.from_numpy(trip_of_entry.astype(np.int64))
    turn_t = torch.from_numpy(turn_seconds)
    gain = torch.nn.Parameter(torch.ones((), dtype=torch.float64))  # starts as the feed says
    theta = torch.nn.Parameter(torch.zeros(len(LIVE_FEATURES), dtype=torch.float64))
    optimiser = torch.optim.Adam([gain, theta], lr=0.02)
    for step in range(steps):
        optimiser.zero_grad()
        factor = (gain * prior + x @ theta).clamp(-LIVE_LOG_FACTOR_LIMIT, LIVE_LOG_FACTOR_LIMIT)
        predicted = torch.zeros(len(frame), dtype=torch.float64).index_add(
            0, trip, seconds * torch.exp(factor)) + turn_t  # [N]
        loss = torch.mean((torch.log(predicted.clamp_min(1e-3)) - target) ** 2)
        loss.backward()
        optimiser.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"live terms step {step}: log-MSE {loss.item():.4f}, gain {gain.item():.3f}")
    return float(gain.detach()), theta.detach().numpy().copy()


def _stamped(directory: Path, settings: dict) -> bool:
    stamp = directory / "settings.json"
    return stamp.is_file() and json.loads(stamp.read_text()) == settings


def train_arm(arm: str, seed: int, graph, train_frame, snapshot, args, log=print):
    """Train (or load the cached) ``arm`` for ``seed``; returns (model, training report)."""
    from models.baselines.learned import (
        LearnedScalarBaseline,
        ScalarConfig,
        load_baseline,
        save_baseline,
    )

    directory = Path(args.models_dir) / CITY / f"{arm}_seed{seed}"
    settings = {"arm": arm, "seed": seed, "trips": len(train_frame), "epochs": args.epochs,
                "minutes": args.train_minutes, "feed": snapshot.key,
                "scalar_epochs": args.scalar_epochs,
                # 2: learned_scalar_time keeps its free-flow floor at every hour
                "version": 1 if arm.startswith("nar") else 2}
    if arm == "learned_scalar":  # no time, no traffic: the classical scalar
        if _stamped(directory, settings):
            base = load_baseline(directory, graph=graph)
            base.segment_times(graph)
            base.graph = graph
            return base, json.loads((directory / "report.json").read_text())
        clock = time.perf_counter()
        base = LearnedScalarBaseline.fit(graph, train_frame, config=ScalarConfig(
            seed=seed, epochs=args.scalar_epochs), log=log)
        report = {"train_seconds": round(time.perf_counter() - clock, 1),
                  "train_trips": len(train_frame)}
        save_baseline(base, directory, graph=graph, force=True,
                      extra={"benchmark": "benchmarks/fair.py"})
        (directory / "report.json").write_text(json.dumps(report))
        (directory / "settings.json").write_text(json.dumps(settings))
        base.segment_times(graph)
        base.graph = graph
        return base, report
    if arm == "learned_scalar_time_live":
        if _stamped(directory, settings):
            base = load_baseline(directory, graph=graph)
            live = json.loads((directory / "live_terms.json").read_text())
            return (LiveLearnedScalar(base, live["gain"], np.array(live["theta"]), graph),
                    live["report"])
        clock = time.perf_counter()
        base = LearnedScalarBaseline.fit(
            graph, train_frame, config=ScalarConfig(seed=seed, time_features=True,
                                                    epochs=args.scalar_epochs), log=log)
        base.segment_times(graph)  # binds the free-flow floor
        base.graph = graph
        gain, theta = fit_live_terms(base, graph, train_frame, snapshot, log=log)
        report = {"train_seconds": round(time.perf_counter() - clock, 1),
                  "train_trips": len(train_frame)}
        save_baseline(base, directory, graph=graph, force=True,
                      extra={"benchmark": "benchmarks/fair.py"})
        (directory / "live_terms.json").write_text(json.dumps(
            {"gain": gain, "theta": theta.tolist(), "report": report}))
        (directory / "settings.json").write_text(json.dumps(settings))
        return LiveLearnedScalar(base, gain, theta, graph), report

    from traffic import PROCESSOR

    from models.eta.model import EtaConfig, EtaModel
    from models.eta.train import TrainConfig, fit_eta

    if _stamped(directory, settings):
        model = EtaModel.load(directory, graph)
        return model, model.manifest["training"]
    config = EtaConfig(traffic=True, turn_time=False, residual=(arm == "nar_k16"))
    model, report = fit_eta(graph, train_frame, PROCESSOR, config=config,
                            train=TrainConfig(seed=seed, epochs=args.epochs,
                                              max_minutes=args.train_minutes,
                                              validation="latest"),
                            progress=False, traffic=snapshot, log=log,
                            checkpoint_dir=directory.with_name(directory.name + ".ckpt"))
    model.save(directory, processor_dir=PROCESSOR, seed=seed, force=True,
               extra={"training": report, "benchmark": "benchmarks/fair.py",
                      "command_line": " ".join(sys.argv)})
    (directory / "settings.json").write_text(json.dumps(settings))
    return EtaModel.load(directory, graph), report


def training_frame(frame, mask: np.ndarray, max_trips: int, seed: int):
    """The seed's training trips: a random ``max_trips`` of the training split (the same
    sample for every arm of one seed)."""
    train = frame[mask].reset_index(drop=True)
    if max_trips and len(train) > max_trips:
        train = train.sample(n=max_trips, random_state=seed).reset_index(drop=True)
    return train


def evaluation_rows(masks: dict[str, np.ndarray], max_eval_trips: int) -> np.ndarray:
    """The held-out-day rows scored: the same random subset benchmarks/traffic.py scores
    (its first draw, seed 0)."""
    rows = np.flatnonzero(masks["held_out_day"])
    if max_eval_trips and len(rows) > max_eval_trips:
        rows = np.sort(np.random.default_rng(0).choice(rows, max_eval_trips, replace=False))
    return rows


# --------------------------------------------------------------------------- report
def _table(rows: dict[str, dict], compared: int) -> str:
    lines = [f"held-out day, {compared} trips every arm answers",
             "| arm | seeds | MAPE [95% CI] | seed MAPEs | ratio to nar_k16 [95% CI] | "
             "median bias | unanswered |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in ORDER:
        if name not in rows:
            continue
        row = rows[name]
        low, high = row["mape_ci"]
        seeds = ", ".join(f"{v:.1%}" for v in row["seed_mapes"]) if row["seeds"] > 1 else "-"
        ratio = (f"{row['ratio']:.3f} [{row['ratio_ci'][0]:.3f}, {row['ratio_ci'][1]:.3f}]"
                 if "ratio" in row else "-")
        lines.append(f"| {name} | {row['seeds']} | {row['mape']:.1%} [{low:.1%}, {high:.1%}] "
                     f"| {seeds} | {ratio} | {row['median_bias']:+.1%} | {row['unanswered']} |")
    return "\n".join(lines)


def _plot(rows: dict[str, dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in ORDER if n in rows]
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    y = np.arange(len(names))
    mape = np.array([rows[n]["mape"] for n in names])
    ci = np.array([rows[n]["mape_ci"] for n in names])
    axes[0].barh(y, mape * 100, color="#9ecae1",
                 xerr=np.abs(ci.T - mape) * 100, capsize=3)
    for i, name in enumerate(names):
        if rows[name]["seeds"] > 1:
            axes[0].scatter(np.array(rows[name]["seed_mapes"]) * 100,
                            [i] * rows[name]["seeds"], color="black", s=10, zorder=3)
    axes[0].set(yticks=y, yticklabels=names, xlabel="MAPE % (bar: seed mean, 95% trip "
                "bootstrap; dots: seeds)", title=title)
    axes[0].invert_yaxis()
    ratio_names = [n for n in names if "ratio" in rows[n]]
    ry = np.arange(len(ratio_names))
    ratio = np.array([rows[n]["ratio"] for n in ratio_names])
    rci = np.array([rows[n]["ratio_ci"] for n in ratio_names])
    axes[1].errorbar(ratio, ry, xerr=np.abs(rci.T - ratio), fmt="o", capsize=3)
    axes[1].axvline(1.0, color="black", linewidth=1)
    axes[1].set(yticks=ry, yticklabels=ratio_names, xlabel=f"MAPE / MAPE({REFERENCE})",
                title="ratio to the NAR K=16 arm (paired trip bootstrap)")
    axes[1].invert_yaxis()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# --------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options, checked (exit 2 naming the problem, also a missing simulation)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", default=str(REPO / "runs" / "traffic"),
                        help="benchmarks/traffic.py's cache: <dir>/baltimore holds the "
                             "simulation, graph and feed (read only)")
    parser.add_argument("--models-dir", default=str(REPO / "runs" / "fair"),
                        help="where the trained arms are cached")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(TRAINED_ARMS), choices=TRAINED_ARMS,
                        help="trained arms (the untrained ones always run)")
    parser.add_argument("--max-trips", type=int, default=4000,
                        help="training trips per seed (a random sample of the training split)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-minutes", type=float, default=8.0,
                        help="wall-clock cap per NAR training")
    parser.add_argument("--scalar-epochs", type=int, default=400,
                        help="full-batch epochs of the learned scalar fit")
    parser.add_argument("--max-eval-trips", type=int, default=4000)
    parser.add_argument("--draws", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--no-full-budget", action="store_true",
                        help="leave out the cached full-budget model (nar_live_seed0)")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--name", default="fair",
                        help="results file stem: <results>/<name>.json and <name>.png")
    args = parser.parse_args(argv)
    if not args.name or "/" in args.name:
        parser.error("--name must be a plain file stem")
    for name in ("--max-trips", "--epochs", "--draws", "--threads"):
        if getattr(args, name[2:].replace("-", "_")) < 1:
            parser.error(f"{name} must be at least 1")
    if not (Path(args.cache_dir) / CITY / "trips.traffic.parquet").is_file():
        parser.error(f"{args.cache_dir}/{CITY} has no simulation with a feed: run "
                     "benchmarks/traffic.py --cities baltimore --train-only first")
    return args


def train_arms(args, graph, frame, masks, snapshot) -> tuple[dict[str, list], dict[str, list]]:
    """Every trained arm for every seed (seed by seed, so a crash keeps whole seeds): the
    models and the training reports (without their history) per arm."""
    models: dict[str, list] = {arm: [] for arm in args.arms}
    reports: dict[str, list] = {arm: [] for arm in args.arms}
    for seed in args.seeds:  # seed by seed, so a crash keeps whole seeds
        train = training_frame(frame, masks["train"], args.max_trips, seed)
        for arm in args.arms:
            clock = time.perf_counter()
            model, report = train_arm(arm, seed, graph, train, snapshot, args,
                                      log=lambda *a: print(*a, flush=True))
            models[arm].append(model)
            reports[arm].append({k: v for k, v in report.items() if k != "history"})
            print(f"{arm} seed {seed}: ready in {time.perf_counter() - clock:.0f} s", flush=True)
    return models, reports


def predict_arms(args, graph, sub, snapshot, folder: Path, models: dict[str, list]
                 ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Live predictions on ``sub`` of the oracle, the untrained arms, the full-budget model
    (if cached) and every trained arm (``[seeds, N]``; the timed scalar of
    ``learned_scalar_time_live`` too), with the seconds each arm took."""
    from traffic import oracle, predict

    from models.baselines.freeflow import FreeFlowTurnModel, LiveScalarModel
    from models.eta.model import EtaModel
    from models.inference.predictor import Predictor

    single = {"freeflow": FreeFlowTurnModel(graph), "live_scalar": LiveScalarModel(graph)}
    if "learned_scalar_time_live" in models:
        single["learned_scalar_time"] = None  # one per seed, below
    full_budget = folder / "nar_live_seed0"
    if not args.no_full_budget and (full_budget / "manifest.json").is_file():
        single["nar_k16_full_budget"] = EtaModel.load(full_budget, graph)
    predictions: dict[str, np.ndarray] = {"oracle": oracle(graph, sub, snapshot.observations)}
    seconds = {}
    for name, model in single.items():
        if model is None:
            continue
        clock = time.perf_counter()
        predictor = Predictor(graph, model)
        predictor.set_traffic(snapshot)
        predictions[name] = predict(predictor, sub, live=True)
        seconds[name] = round(time.perf_counter() - clock, 1)
    for arm, arm_models in models.items():
        values = []
        for model in arm_models:
            clock = time.perf_counter()
            predictor = Predictor(graph, model)
            predictor.set_traffic(snapshot)
            values.append(predict(predictor, sub, live=True))
            if arm == "learned_scalar_time_live":  # its first stage, the timed scalar
                timed = Predictor(graph, model.base)
                predictions.setdefault("learned_scalar_time", [])
                predictions["learned_scalar_time"].append(predict(timed, sub, live=True))
            seconds[arm] = round(seconds.get(arm, 0) + time.perf_counter() - clock, 1)
        predictions[arm] = np.stack(values)
    if "learned_scalar_time" in predictions:
        predictions["learned_scalar_time"] = np.stack(predictions["learned_scalar_time"])
    return predictions, seconds


def write_results(args, stamp: dict, *, sub, answered: np.ndarray, reference: str | None,
                  rows_out: dict, reports: dict, seconds: dict, started: float) -> None:
    """Print the table and the budget line, plot, and write ``<results>/<name>.json``."""
    table = _table(rows_out, int(answered.sum()))
    budget = (f"reduced budget: {args.max_trips} training trips per seed, {args.epochs} "
              f"epoch(s), NAR runs capped at {args.train_minutes:g} min on {args.threads} "
              f"thread(s); seeds {args.seeds}; the full-budget row is the shipped benchmark's "
              "model (12,000 trips x 2 epochs, 1 seed)")
    print(table)
    print(budget)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    _plot(rows_out, results / f"{args.name}.png",
          f"{CITY} held-out day ({int(answered.sum())} trips, all arms answer)")
    out = results / f"{args.name}.json"
    out.write_text(json.dumps({
        **stamp,
        "city": CITY, "split": "held_out_day", "evaluated_trips": len(sub),
        "compared_trips": int(answered.sum()), "reference": reference,
        "seeds": args.seeds, "budget": budget,
        "settings": {k: v for k, v in vars(args).items()
                     if k not in ("cache_dir", "models_dir", "results")},
        "bootstrap": {"draws": args.draws, "level": 0.95, "unit": "trip (paired across arms)"},
        "table": table, "arms": rows_out, "training": reports,
        "prediction_seconds": seconds, "wall_seconds": round(time.perf_counter() - started, 1),
        "threads": args.threads, "nproc": os.cpu_count(),
        "mape_definition": "mean |predicted - true| / true; trained arms: mean over seeds",
    }, indent=2, default=lambda v: None if isinstance(v, float) and math.isnan(v) else v))
    print(f"wrote {out} and {results / f'{args.name}.png'}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    from provenance import provenance

    stamp = provenance(argv)  # the commit and tree this run starts from (it may run an hour)

    import torch

    torch.set_num_threads(args.threads)
    from traffic import load_city, splits

    started = time.perf_counter()
    folder = Path(args.cache_dir) / CITY
    graph, frame, snapshot, _, _ = load_city(folder)
    masks = splits(frame, seed=0)
    print(f"{CITY}: {len(frame)} trips; train {int(masks['train'].sum())}, held-out day "
          f"{int(masks['held_out_day'].sum())}", flush=True)
    models, reports = train_arms(args, graph, frame, masks, snapshot)
    if args.train_only:
        return 0

    rows = evaluation_rows(masks, args.max_eval_trips)
    sub = frame.iloc[rows].reset_index(drop=True)
    true = sub["duration_s"].to_numpy(float)
    predictions, seconds = predict_arms(args, graph, sub, snapshot, folder, models)
    answered, unanswered = common_answered(predictions)
    reference = REFERENCE if REFERENCE in predictions else None
    rows_out = paired_bootstrap(true[answered], {k: np.atleast_2d(v)[:, answered]
                                                 for k, v in predictions.items()},
                                reference=reference, draws=args.draws)
    for name, row in rows_out.items():
        row["unanswered"] = unanswered[name]
    write_results(args, stamp, sub=sub, answered=answered, reference=reference,
                  rows_out=rows_out, reports=reports, seconds=seconds, started=started)
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
