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
