import json

import numpy as np
import pandas as pd

from tests.conftest import run_cli
from tests.models.baselines.test_baselines import grid_graph


def test_evaluate_cli_writes_metrics_and_plots(tmp_path):
    graph = grid_graph(3)
    graph.save(tmp_path / "graph")
    lon, lat = graph["path_lon"], graph["path_lat"]
    rng = np.random.default_rng(0)
    rows = []
    for index in range(30):
        a, b = rng.choice(len(lon), size=2, replace=False)
        rows.append(
            {
                "origin_lon": lon[a] + 1e-5,
                "origin_lat": lat[a],
                "destination_lon": lon[b],
                "destination_lat": lat[b] + 1e-5,
                "departure_time": f"2026-11-18T0{6 + index % 3}:10:00",
                "duration_s": 30.0 + index,
            }
        )
    rows.append({**rows[0], "origin_lat": 5.0})  # far from every road
    rows.append({**rows[0], "duration_s": -3})
    pd.DataFrame(rows).to_csv(tmp_path / "trips.csv", index=False)
    result = run_cli(
        "evaluate",
        "--model",
        "freeflow",
        "--trips",
        str(tmp_path / "trips.csv"),
        "--graph",
        str(tmp_path / "graph"),
        "--out",
        str(tmp_path / "eval"),
    )
    assert result.returncode == 0, result.stderr
    assert "MAPE" in result.stdout
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["rows_total"] == 32 and metrics["rows_used"] == 30
    assert sum(metrics["rejected"].values()) == 2
    assert metrics["overall"]["count"] == 30
    assert set(metrics["by_departure_hour"]) == {"06h", "07h", "08h"}
    assert (tmp_path / "eval" / "predicted_vs_true.png").stat().st_size > 1000
    assert (tmp_path / "eval" / "error_vs_length.png").stat().st_size > 1000

    again = run_cli(
        "evaluate",
        "--model",
        str(tmp_path / "graph"),
        "--trips",
        str(tmp_path / "trips.csv"),
        "--graph",
        str(tmp_path / "graph"),
        "--out",
        str(tmp_path / "eval2"),
    )
    assert again.returncode == 2 and "is not a travel-time model" in again.stderr


def test_predict_trips_answers_as_the_predictor_does(bundled_graph):
    """The evaluation path is the service's: each trip's ETA equals Predictor.eta at its
    departure (grouped by 5-minute window, one eta_pairs call each)."""
    from pathlib import Path

    from models.evaluation.evaluate import predict_trips
    from models.inference.predictor import Predictor
    from models.inference.registry import load_model

    shipped = Path(__file__).resolve().parents[3] / "artifacts_shipped" / "eta_baltimore"
    model = load_model(shipped, bundled_graph)
    predictor = Predictor(bundled_graph, model)
    rng = np.random.default_rng(7)
    nodes = rng.choice(bundled_graph.num_nodes, (8, 2), replace=False)
    lon, lat = bundled_graph["node_lon"], bundled_graph["node_lat"]
    local = pd.Timestamp("2026-11-23 07:00") + pd.to_timedelta(
        rng.integers(0, 3600, 8), unit="s")
    frame = pd.DataFrame({
        "origin_lon": lon[nodes[:, 0]], "origin_lat": lat[nodes[:, 0]],
        "destination_lon": lon[nodes[:, 1]], "destination_lat": lat[nodes[:, 1]],
        "departure_local": local,
        "departure_s": (local - pd.Timestamp("1970-01-01")).total_seconds().to_numpy(),
    })
    got = predict_trips(predictor, frame)
    for i, row in frame.iterrows():
        want = predictor.eta((row.origin_lon, row.origin_lat),
                             (row.destination_lon, row.destination_lat),
                             row.departure_local.to_pydatetime())
        assert got[i] == want.eta_s


def test_evaluate_scores_travel_time_models_through_the_predictor(tmp_path, bundled_graph):
    """``nareta evaluate --model <travel-time model>`` scores each trip as the service answers
    it: its metrics equal those of Predictor.eta per trip (the trips' own coordinates and
    departure times), including trips whose coordinates sit on a two-way street."""
    from models.evaluation.evaluate import evaluate_predictions, load_scorer, trip_length_m
    from models.inference.predictor import Predictor
    from nareta.defaults import load_travel_time_model

    rng = np.random.default_rng(11)
    picks = rng.choice(len(bundled_graph["path_lon"]), (12, 2), replace=False)
    lon, lat = bundled_graph["path_lon"], bundled_graph["path_lat"]
    rows = [{"origin_lon": lon[a] + 2e-5, "origin_lat": lat[a],
             "destination_lon": lon[b], "destination_lat": lat[b] - 2e-5,
             "departure_time": f"2026-11-18T08:{10 + i:02d}:00", "duration_s": 200.0 + 10 * i}
            for i, (a, b) in enumerate(picks)]
    pd.DataFrame(rows).to_csv(tmp_path / "trips.csv", index=False)
    bundled_graph.save(tmp_path / "graph")
    result = run_cli("evaluate", "--model", "freeflow-turns", "--trips",
                     str(tmp_path / "trips.csv"), "--graph", str(tmp_path / "graph"),
                     "--out", str(tmp_path / "eval"))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())

    from data_pipeline.trips import read_trips, snap_trips

    frame = snap_trips(read_trips(tmp_path / "trips.csv"), bundled_graph).frame
    predictor = Predictor(bundled_graph, load_travel_time_model("freeflow-turns", bundled_graph))
    want = np.array([predictor.eta((r.origin_lon, r.origin_lat),
                                   (r.destination_lon, r.destination_lat),
                                   r.departure_local.to_pydatetime()).eta_s
                     for r in frame.itertuples()])
    got = load_scorer("freeflow-turns", bundled_graph).predict(bundled_graph, frame)
    np.testing.assert_array_equal(got, want)
    expected = evaluate_predictions(frame["duration_s"].to_numpy(float), want,
                                    trip_length_m(bundled_graph, frame),
                                    frame["departure_hour"].to_numpy())
    assert metrics["overall"]["mape"] == expected["overall"]["mape"]
    assert metrics["overall"]["count"] == len(frame) == 12
