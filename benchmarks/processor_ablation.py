"""The processor ablation (issue 15): does the ETA model exploit a *pretrained* processor?

Four arms with the same encoder, features (segment, turn, live traffic), corridors, loss,
trips and budget; only the frozen processor differs (models.eta.processor_arms):

* ``learned``: the pretrained generalist MPNN (artifacts_shipped/generalist_processor),
  frozen; (a) in the issue;
* ``random``: the same architecture frozen at random weights, a new draw per seed; (b);
* ``tropical``: the exact min-plus layer of the shipped model (16 channels); (c);
* ``none``: no processor, the encoder's scalar times + an exact shortest path; (d).

Trained on the live-traffic benchmark's Baltimore training days (runs/traffic, made by
benchmarks/traffic.py), scored on its held-out day and zero-shot on Harrisburg's held-out
day (the Baltimore-trained models attached to Harrisburg's graph and feed, no retraining).
Every arm is scored on the trips' corridors (models.eta.train.predict_frame), the same way:
the learned arms have no contraction-hierarchy path. Trips are limited to routes of at most
``--max-length-m`` (default 2 km) for every arm: an MPNN step over a corridor costs ~100x a
min-plus step on this CPU, and the learned processor's horizon (issue 15's hop table) is the
question, so the cap is stated in the output. MAPE is the mean over seeds; its 95 % interval
a paired trip bootstrap (benchmarks/fair.py); the seeds' own MAPEs beside it.

    python benchmarks/processor_ablation.py [--seeds 0 1 2] [--max-trips 1000]
        [--eval-trips 500] [--max-length-m 2000] [--train-minutes 10]

Trained arms are cached in ``--models-dir`` (settings-stamped; the learned arm's stamp holds
the generalist's weights checksum), each with its predictions per city (keyed by the stamp,
the trips and the code), so a rerun trains and scores only what changed. Writes
``benchmarks/results/processor_ablation.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
GENERALIST = REPO / "artifacts_shipped" / "generalist_processor"
ARM_LABELS = {"learned": "(a) learned, pretrained, frozen",
              "random": "(b) same architecture, random, frozen",
              "tropical": "(c) exact tropical layer (shipped)",
              "none": "(d) no processor (exact Dijkstra)"}
VERSION = 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=str(REPO / "runs" / "traffic"))
    parser.add_argument("--models-dir", default=str(REPO / "runs" / "ablation"))
    parser.add_argument("--arms", nargs="+", default=["learned", "random", "tropical", "none"],
                        choices=list(ARM_LABELS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-trips", type=int, default=1000)
    parser.add_argument("--max-length-m", type=float, default=2000.0)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-minutes", type=float, default=10.0)
    parser.add_argument("--batch-trips", type=int, default=16)
    parser.add_argument("--eval-trips", type=int, default=500)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-transfer", action="store_true", help="skip Harrisburg")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--name", default="processor_ablation")
    args = parser.parse_args(argv)
    for city in ("baltimore",) + (() if args.no_transfer else ("harrisburg",)):
        if not (Path(args.cache_dir) / city / "trips.traffic.parquet").is_file():
            parser.error(f"{args.cache_dir}/{city} has no simulation with a feed: run "
                         f"benchmarks/traffic.py --cities {city} --train-only first")
    if not (GENERALIST / "manifest.json").is_file():
        parser.error(f"{GENERALIST} is missing")
    return args


def _settings(arm: str, seed: int, args, trips: int, feed: str, processor: str) -> dict:
    settings = {"arm": arm, "seed": seed, "trips": trips, "epochs": args.epochs,
                "minutes": args.train_minutes, "batch_trips": args.batch_trips,
                "max_length_m": args.max_length_m, "feed": feed, "version": VERSION}
    if arm == "learned":  # a retrained generalist invalidates the cached arm
        settings["processor_sha256"] = processor
    return settings


def processor_sha256(manifest: dict) -> str:
    """The pretrained generalist's weights checksum (from its verified manifest)."""
    from models.processor.generalist import WEIGHTS_FILE

    return str(manifest["files"][WEIGHTS_FILE]["sha256"])


def arm_processor(arm: str, seed: int, generalist):
    """The generalist an arm runs: the pretrained one, or (random arm) a draw from ``seed``."""
    from models.eta.processor_arms import random_generalist

    if arm == "random":
        return random_generalist(generalist.config, 1000 + seed)
    return generalist


def eta_config():
    from models.eta.model import EtaConfig

    return EtaConfig(traffic=True, turn_time=False)  # the live-traffic benchmark's model


def train_config(arm: str, seed: int, args):
    from models.eta.train import TrainConfig

    # the generalist's value head has ordinary-sized weights (the tropical read-out's are
    # ~4e-3, hence its slow decoder): it learns at the encoder's rate
    scale = 1.0 if arm in ("learned", "random") else TrainConfig.decoder_lr_scale
    return TrainConfig(seed=seed, epochs=args.epochs, max_minutes=args.train_minutes,
                       validation="latest", batch_trips=args.batch_trips,
                       decoder_lr_scale=scale)


def train_arm(arm: str, seed: int, graph, frame, snapshot, generalist, args):
    """Train (or load the cached) ``arm`` for ``seed``: (model, report, cache directory);
    ``generalist`` is ``(processor, weights sha256)``."""
    from safetensors.torch import load_file, save_file
    from traffic import PROCESSOR

    from models.eta.processor_arms import arm_factory
    from models.eta.train import fit_eta
    from models.processor.model import load_pretrained

    directory = Path(args.models_dir) / "baltimore" / f"{arm}_seed{seed}"
    processor, sha = generalist
    settings = _settings(arm, seed, args, len(frame), snapshot.key, sha)
    stamp = directory / "settings.json"
    factory = arm_factory(arm, arm_processor(arm, seed, processor))
    if stamp.is_file() and json.loads(stamp.read_text()) == settings:
        tropical, weight_encoder, manifest = load_pretrained(PROCESSOR)
        model = factory(graph, tropical, weight_encoder, manifest, config=eta_config())
        state = load_file(str(directory / "trainable.safetensors"))
        missing = set(trainable(model)) - set(state)
        if missing:
            raise RuntimeError(f"{directory}: weights lack {sorted(missing)[:3]}")
        model.load_state_dict(state, strict=False)
        return model.eval(), json.loads((directory / "report.json").read_text()), directory
    model, report = fit_eta(graph, frame, PROCESSOR, config=eta_config(),
                            train=train_config(arm, seed, args), progress=False,
                            traffic=snapshot, log=lambda *a: print(*a, flush=True),
                            model_factory=factory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in trainable(model).items()},
              str(directory / "trainable.safetensors"))
    report = {k: v for k, v in report.items() if k != "train_config"}
    (directory / "report.json").write_text(json.dumps(report, default=str))
    for stale in directory.glob("predictions_*.npz"):  # made by an earlier model
        stale.unlink()
    stamp.write_text(json.dumps(settings))  # last: the stamp marks a finished run
    return model.eval(), report, directory


def trainable(model) -> dict:
    """Every parameter training moves (encoder, read-out, offsets), by name."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def short_trips(graph, frame, mask: np.ndarray, max_length_m: float) -> np.ndarray:
    from models.evaluation.evaluate import trip_length_m

    return mask & (trip_length_m(graph, frame) <= max_length_m)


def sample(frame, mask: np.ndarray, count: int, seed: int):
    rows = np.flatnonzero(mask)
    if count and len(rows) > count:
        rows = np.sort(np.random.default_rng(seed).choice(rows, count, replace=False))
    return frame.iloc[rows].reset_index(drop=True)


def cached_predictions(directory: Path, city: str, key: str, predict) -> np.ndarray:
    """One trained model's predictions on a city's sample: read from ``directory`` when
    made for the same model, sample and code (``key``), else computed and stored."""
    import os

    path = directory / f"predictions_{city}.npz"
    if path.is_file():
        with np.load(path) as stored:
            if str(stored["key"]) == key:
                return stored["values"]
    values = np.asarray(predict(), dtype=float)
    tmp = directory / f".predictions_{city}.tmp.npz"
    np.savez(tmp, values=values, key=np.array(key))
    os.replace(tmp, path)
    return values


def sample_key(sub, directory: Path, city: str, feed: str, args) -> str:
    """What a cached prediction depends on: the model's stamp, the trips, the city's live
    feed (``feed``: its key), the code."""
    import hashlib

    import pandas as pd

    digest = hashlib.sha256()
    digest.update((directory / "settings.json").read_bytes())
    scalars = sub[[c for c in sub.columns if sub[c].dtype != object]]  # routes are arrays
    digest.update(pd.util.hash_pandas_object(scalars, index=False).to_numpy().tobytes())
    digest.update(json.dumps([list(map(int, r)) for r in sub["route"]]).encode())
    digest.update(json.dumps([city, feed, args.batch_trips, VERSION]).encode())
    return digest.hexdigest()


def score(models: dict[str, list], graph, sub, snapshot, args, *, city: str,
          dirs: dict[str, list[Path]], transfer: bool = False) -> tuple[dict, dict]:
    """Paired bootstrap rows of every arm on ``sub`` (models attached to ``graph``,
    ``transfer``: zero-shot, offsets zeroed), and seconds per arm. Each model's
    predictions are cached beside it (``dirs``), so a rerun scores only retrained arms."""
    import torch
    from fair import common_answered, paired_bootstrap

    from models.eta.processor_arms import move_to_graph
    from models.eta.train import predict_frame

    predictions, seconds = {}, {}
    for arm, arm_models in models.items():
        clock, values = time.perf_counter(), []
        for model, directory in zip(arm_models, dirs[arm], strict=True):
            def predict(model=model):
                if transfer:
                    move_to_graph(model, graph)
                with torch.no_grad():
                    return predict_frame(model, sub, traffic=snapshot,
                                         batch_trips=args.batch_trips)

            key = sample_key(sub, directory, city, snapshot.key, args)
            values.append(cached_predictions(directory, city, key, predict))
        predictions[arm] = np.stack(values)
        seconds[arm] = round(time.perf_counter() - clock, 1)
        print(f"scored {arm} on {len(sub)} trips in {seconds[arm]} s", flush=True)
    true = sub["duration_s"].to_numpy(float)
    answered, unanswered = common_answered(predictions)
    arrays = {k: v[:, answered] for k, v in predictions.items()}
    rows = paired_bootstrap(true[answered], arrays, reference="tropical"
                            if "tropical" in arrays else None, draws=args.draws)
    if "learned" in arrays and "random" in arrays:  # (a) over (b), paired
        versus = paired_bootstrap(true[answered], {k: arrays[k] for k in ("learned", "random")},
                                  reference="random", draws=args.draws)["learned"]
        rows["learned"]["ratio_to_random"] = versus["ratio"]
        rows["learned"]["ratio_to_random_ci"] = versus["ratio_ci"]
    for name, row in rows.items():
        row["unanswered"] = unanswered[name]
        row["compared_trips"] = int(answered.sum())
    return rows, seconds


def table(title: str, rows: dict) -> str:
    lines = [title, "| arm | MAPE [95% CI] | seed MAPEs | ratio to (c) [95% CI] | "
             "median bias | unanswered |", "| --- | --- | --- | --- | --- | --- |"]
    for arm, label in ARM_LABELS.items():
        if arm not in rows:
            continue
        row = rows[arm]
        low, high = row["mape_ci"]
        ratio = (f"{row['ratio']:.3f} [{row['ratio_ci'][0]:.3f}, {row['ratio_ci'][1]:.3f}]"
                 if "ratio" in row else "-")
        seeds = ", ".join(f"{v:.1%}" for v in row["seed_mapes"])
        lines.append(f"| {label} | {row['mape']:.1%} [{low:.1%}, {high:.1%}] | {seeds} | "
                     f"{ratio} | {row['median_bias']:+.1%} | {row['unanswered']} |")
    if "ratio_to_random" in rows.get("learned", {}):
        low, high = rows["learned"]["ratio_to_random_ci"]
        lines.append(f"(a)/(b) MAPE ratio {rows['learned']['ratio_to_random']:.3f} "
                     f"[{low:.3f}, {high:.3f}] (target: <= 0.9 beyond the seed spread)")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cities = list(results)
    figure, axes = plt.subplots(1, len(cities), figsize=(6 * len(cities), 3.8), squeeze=False)
    for ax, city in zip(axes[0], cities, strict=True):
        rows = results[city]
        arms = [a for a in ARM_LABELS if a in rows]
        y = np.arange(len(arms))
        mape = np.array([rows[a]["mape"] for a in arms]) * 100
        ci = np.array([rows[a]["mape_ci"] for a in arms]).T * 100
        ax.barh(y, mape, xerr=np.abs(ci - mape), capsize=3, color="#9ecae1")
        for i, arm in enumerate(arms):
            ax.scatter(np.array(rows[arm]["seed_mapes"]) * 100, [i] * len(rows[arm]["seed_mapes"]),
                       color="black", s=10, zorder=3)
        ax.set(yticks=y, yticklabels=[ARM_LABELS[a] for a in arms], xlabel="MAPE % (bar: seed "
               "mean, 95% trip bootstrap; dots: seeds)", title=city)
        ax.invert_yaxis()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def train_all(args, graph, frame, masks, snapshot, generalist):
    """Every arm for every seed (seed by seed): models and reports per arm."""
    models = {arm: [] for arm in args.arms}
    reports = {arm: [] for arm in args.arms}
    dirs = {arm: [] for arm in args.arms}
    train_mask = short_trips(graph, frame, masks["train"], args.max_length_m)
    for seed in args.seeds:
        train = sample(frame, train_mask, args.max_trips, seed)
        for arm in args.arms:
            clock = time.perf_counter()
            model, report, directory = train_arm(arm, seed, graph, train, snapshot,
                                                 generalist, args)
            models[arm].append(model)
            dirs[arm].append(directory)
            reports[arm].append({k: v for k, v in report.items() if k != "history"})
            print(f"{arm} seed {seed}: ready in {time.perf_counter() - clock:.0f} s "
                  f"(best validation MAPE {report['best_validation_mape']:.3f}, untrained "
                  f"{report['initial_validation']['mape']:.3f})", flush=True)
    return models, reports, dirs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from provenance import provenance

    stamp = provenance(argv)
    import torch

    torch.set_num_threads(args.threads)
    from traffic import load_city, splits

    from models.eta.processor_arms import processor_gap, random_generalist
    from models.processor import generalist as generalist_module

    started = time.perf_counter()
    generalist, manifest = generalist_module.load(GENERALIST)
    graph, frame, snapshot, _, _ = load_city(Path(args.cache_dir) / "baltimore")
    masks = splits(frame, seed=0)
    models, reports, dirs = train_all(args, graph, frame, masks, snapshot,
                                      (generalist, processor_sha256(manifest)))
    if args.train_only:
        return 0
    gaps = {seed: processor_gap(generalist, random_generalist(generalist.config, 1000 + seed))
            for seed in args.seeds}
    held = short_trips(graph, frame, masks["held_out_day"], args.max_length_m)
    results, seconds = {}, {}
    results["baltimore"], seconds["baltimore"] = score(
        models, graph, sample(frame, held, args.eval_trips, 0), snapshot, args,
        city="baltimore", dirs=dirs)
    if not args.no_transfer:
        h_graph, h_frame, h_snapshot, _, _ = load_city(Path(args.cache_dir) / "harrisburg")
        h_held = short_trips(h_graph, h_frame, splits(h_frame, seed=0)["held_out_day"],
                             args.max_length_m)
        results["harrisburg"], seconds["harrisburg"] = score(
            models, h_graph, sample(h_frame, h_held, args.eval_trips, 0), h_snapshot, args,
            city="harrisburg", dirs=dirs, transfer=True)
    write(args, stamp, results, seconds, reports, gaps, started)
    return 0


def write(args, stamp, results, seconds, reports, gaps, started) -> None:
    titles = {"baltimore": "Baltimore held-out day (trained on Baltimore's training days)",
              "harrisburg": "Harrisburg held-out day, zero-shot (Baltimore-trained, no "
                            "retraining)"}
    budget = (f"budget per arm and seed: {args.max_trips} training trips with routes <= "
              f"{args.max_length_m:g} m, {args.epochs} epoch(s), capped at "
              f"{args.train_minutes:g} min on {args.threads} thread(s); seeds {args.seeds}; "
              f"{args.eval_trips} evaluation trips per city (routes <= {args.max_length_m:g} m)")
    text = "\n\n".join(table(titles[c], rows) for c, rows in results.items())
    print(text)
    print(budget)
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    plot(results, out / f"{args.name}.png")
    (out / f"{args.name}.json").write_text(json.dumps({
        **stamp, "arms": ARM_LABELS, "budget": budget, "table": text, "results": results,
        "settings": {k: v for k, v in vars(args).items() if k not in ("results",)},
        "training": reports, "prediction_seconds": seconds,
        "random_vs_learned_processor": {str(k): v for k, v in gaps.items()},
        "bootstrap": {"draws": args.draws, "level": 0.95, "unit": "trip (paired across arms)"},
        "wall_seconds": round(time.perf_counter() - started, 1)}, indent=2, default=str))
    print(f"wrote {out / (args.name + '.json')} and {out / (args.name + '.png')}")


if __name__ == "__main__":
    raise SystemExit(main())
