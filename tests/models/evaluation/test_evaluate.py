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
