"""``nareta evaluate``: score a model or baseline on a trip table.

Writes ``metrics.json`` (overall, by trip length, by departure hour, rejected rows) and
two plots: ``error_vs_length.png`` and ``predicted_vs_true.png``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from models.evaluation.metrics import by_departure_hour, by_trip_length, eta_metrics
from nareta.artifacts import atomic_artifact_dir


def trip_length_m(graph, frame) -> np.ndarray:
    """Driven length when known (``route_length_m``, or the route's segments), else the
    straight-line distance times 1.3 (a typical detour factor)."""
    if "route_length_m" in frame.columns:
        return frame["route_length_m"].to_numpy(float)
    if "route" in frame.columns and frame["route"].notna().all():
        lengths = np.asarray(graph["length_m"], dtype=np.float64)
        return np.array([lengths[np.asarray(r, dtype=np.int64)].sum() for r in frame["route"]])
    lat0 = math.radians(float(frame["origin_lat"].mean()))
    dx = (
        (frame["destination_lon"] - frame["origin_lon"]).to_numpy(float)
        * 111_320.0
        * math.cos(lat0)
    )
    dy = (frame["destination_lat"] - frame["origin_lat"]).to_numpy(float) * 110_574.0
    return 1.3 * np.hypot(dx, dy)


def evaluate_predictions(true_s, predicted_s, length_m, departure_hour) -> dict[str, Any]:
    return {
        "overall": eta_metrics(true_s, predicted_s),
        "by_trip_length": by_trip_length(true_s, predicted_s, length_m),
        "by_departure_hour": by_departure_hour(true_s, predicted_s, departure_hour),
    }


def plot_results(true_s, predicted_s, length_m, out_dir: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    true_s, predicted_s = np.asarray(true_s, float), np.asarray(predicted_s, float)
    ok = np.isfinite(predicted_s)
    figure, axis = plt.subplots(figsize=(5.5, 5))
    axis.scatter(true_s[ok], predicted_s[ok], s=3, alpha=0.3)
    top = float(np.nanmax(np.concatenate([true_s[ok], predicted_s[ok]]))) if ok.any() else 1.0
    axis.plot([0, top], [0, top], color="black", linewidth=1)
    axis.set(xlabel="true duration (s)", ylabel="predicted duration (s)", title=title)
    figure.tight_layout()
    figure.savefig(out_dir / "predicted_vs_true.png", dpi=110)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(6, 4))
    relative = (predicted_s[ok] - true_s[ok]) / true_s[ok]
    axis.scatter(np.asarray(length_m)[ok] / 1000.0, 100 * relative, s=3, alpha=0.3)
    axis.axhline(0, color="black", linewidth=1)
    axis.set(
        xlabel="trip length (km)",
        ylabel="error (% of true duration)",
        title=title,
        ylim=(-100, 200),
    )
    figure.tight_layout()
    figure.savefig(out_dir / "error_vs_length.png", dpi=110)
    plt.close(figure)


class _TravelTimeScorer:
    """A registered travel-time model (e.g. the ETA model) scored trip by trip through the
    :class:`models.inference.predictor.Predictor` (the service's path, :func:`predict_trips`:
    each trip snapped from its coordinates at its departure time, no live feed)."""

    def __init__(self, model, graph, *, max_snap_distance_m: float = 250.0) -> None:
        self.model, self.graph = model, graph
        self.name = model.name
        self.max_snap_distance_m = max_snap_distance_m

    def predict(self, graph, frame) -> np.ndarray:
        from models.inference.predictor import Predictor

        predictor = Predictor(graph, self.model, max_snap_distance_m=self.max_snap_distance_m)
        return predict_trips(predictor, frame, live=False)


def load_scorer(source: str | None, graph, *, max_snap_distance_m: float = 250.0):
    """A name in :data:`nareta.defaults.NAMED_MODELS` (``freeflow``, ``freeflow-turns``), a
    baseline artifact, or any model kind in :mod:`models.inference.registry` (the value is read by
    :func:`nareta.defaults.resolve_model`)."""
    import json

    from models.baselines.learned import KIND, load_baseline
    from nareta.artifacts import MANIFEST_NAME
    from nareta.defaults import NAMED_MODELS, load_travel_time_model, resolve_model

    source = resolve_model(source, graph=graph)
    if source == "freeflow":  # the baseline's own routing (models.baselines.routing)
        return load_baseline(source, graph=graph)
    if source in NAMED_MODELS:
        return _TravelTimeScorer(load_travel_time_model(source, graph), graph,
                                 max_snap_distance_m=max_snap_distance_m)
    manifest_path = Path(source) / MANIFEST_NAME
    try:
        kind = json.loads(manifest_path.read_text()).get("kind")
    except (OSError, ValueError):
        kind = None
    if kind == KIND or kind is None:
        return load_baseline(source, graph=graph)
    from models.inference.registry import load_model

    return _TravelTimeScorer(load_model(source, graph), graph,
                             max_snap_distance_m=max_snap_distance_m)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default=None,
        help="model or baseline artifact directory, 'freeflow' or 'freeflow-turns' (default: "
             "the shipped model if trained on --graph, else freeflow)"
    )
    parser.add_argument("--trips", required=True, type=Path, help="trip table (.parquet/.csv)")
    parser.add_argument("--graph", type=Path, default=None,
                        help="RoadGraph artifact (default: the bundled city, ingested once)")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--max-snap-distance",
        type=float,
        default=200.0,
        help="metres; trips farther from any road are rejected and counted",
    )
    parser.add_argument("--timezone", help="IANA zone for epoch departure times (default UTC)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")


def run(args: argparse.Namespace) -> int:
    from data_pipeline.road_graph import RoadGraph
    from data_pipeline.trips import read_trips, snap_trips
    from nareta.defaults import resolve_artifacts

    graph_dir, model_name = resolve_artifacts(args.graph, args.model)
    graph = RoadGraph.load(graph_dir)
    model = load_scorer(model_name, graph, max_snap_distance_m=args.max_snap_distance)
    table = read_trips(args.trips, timezone=args.timezone)
    table = snap_trips(table, graph, max_snap_distance_m=args.max_snap_distance)
    print(table.summary())
    frame = table.frame
    predicted = model.predict(graph, frame)
    true = frame["duration_s"].to_numpy(float)
    length = trip_length_m(graph, frame)
    result = evaluate_predictions(true, predicted, length, frame["departure_hour"].to_numpy())
    result |= {
        "model": model_name,
        "trips": str(args.trips),
        "graph": str(graph_dir),
        "rows_total": table.total_rows,
        "rows_used": len(frame),
        "rejected": dict(table.rejected),
    }
    with atomic_artifact_dir(args.out, force=args.force) as staging:
        (staging / "metrics.json").write_text(json.dumps(result, indent=2))
        plot_results(true, predicted, length, staging, title=f"{model.name}: {args.trips.name}")
    overall = result["overall"]
    print(
        f"{model.name}: MAPE {overall['mape']:.1%}  median APE {overall['median_ape']:.1%}  "
        f"MAE {overall['mae_s']:.0f} s  RMSE {overall['rmse_s']:.0f} s  "
        f"within ±10% {overall['within_10pct']:.1%}  ±20% {overall['within_20pct']:.1%}  "
        f"({overall['unanswered']} unanswered) -> {args.out}"
    )
    return 0


def predict_trips(predictor, frame, *, live: bool = True) -> np.ndarray:
    """Seconds per trip through :meth:`Predictor.eta_pairs` (the one inference path of the
    service and batch scoring), one call per 5-minute departure window (trips in a window
    share their run key), each trip snapped from its coordinates and departing at its
    ``departure_local``; nan where unanswered. ``live=False`` withholds the traffic feed."""
    from nareta.errors import InputError

    out = np.full(len(frame), np.nan)
    departure = frame["departure_local"]
    slot = (frame["departure_s"].to_numpy(float) // 300).astype(np.int64)
    origins = list(zip(frame["origin_lon"], frame["origin_lat"], strict=True))
    destinations = list(zip(frame["destination_lon"], frame["destination_lat"], strict=True))
    saved = predictor.traffic.snapshot
    if not live:
        predictor.traffic.replace(None)
    try:
        for value in np.unique(slot):
            rows = np.flatnonzero(slot == value)
            when = departure.iloc[rows[0]].to_pydatetime()
            try:
                result = predictor.eta_pairs([origins[i] for i in rows],
                                             [destinations[i] for i in rows], when)
            except InputError:
                continue
            out[rows] = result.durations_s
    finally:
        predictor.traffic.replace(saved)
    return out
