"""One departure-time rule for every entry point: the same value is accepted or refused
alike by the HTTP API (a real server), batch scoring, the trips reader and ``nareta eta``."""

from __future__ import annotations

import pandas as pd
import pytest

from batch.score import score_table
from data_pipeline.trips import read_trips
from tests.conftest import run_cli
from tests.service.conftest import DOWNTOWN, EAST, point

#: CSV cell text -> accepted?
VALUES = {
    "2024-05-01T08:30:00": True, "2024-05-01 08:30": True, "2024-05-01T08:30:00+02:00": True,
    "2024-05-01T06:30:00Z": True, "1714552200": True, "1714552200.5": True, "0": True,
    "2099-12-31T23:59:59": True,
    "1714552200000": False,  # milliseconds: refused everywhere, never guessed
    "-5": False, "4102444800": False, "9999-01-01": False, "1969-12-31T23:59": False,
    "yesterday": False, "2024-13-01T00:00": False, "May 1 2024": False, "inf": False,
}


@pytest.fixture(scope="module")
def od_csv(tmp_path_factory):
    rows = [{"trip_id": f"t{i}", "origin_lon": DOWNTOWN[0], "origin_lat": DOWNTOWN[1],
             "destination_lon": EAST[0], "destination_lat": EAST[1], "departure_time": value,
             "duration_s": 600.0} for i, value in enumerate(VALUES)]
    path = tmp_path_factory.mktemp("times") / "od.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_api_batch_and_trips_agree(client, od_csv, bundled_graph_dir, tmp_path):
    base = {"origin": point(DOWNTOWN), "destination": point(EAST)}
    api = {}
    for value in VALUES:
        response = client.post("/v1/eta", json={**base, "departure_time": value})
        assert response.status_code in (200, 422), response.text
        api[value] = response.status_code == 200
        if not api[value]:
            assert "departure_time" in response.json()["message"]
    # numbers in JSON follow the same rule as their text
    for number, accepted in ((1714552200, True), (1714552200.5, True), (1714552200000, False),
                             (-5, False)):
        status = client.post("/v1/eta", json={**base, "departure_time": number}).status_code
        assert status == (200 if accepted else 422), number

    report = score_table(od_csv, tmp_path / "scores", graph_dir=bundled_graph_dir, workers=0,
                         progress=False)
    scores = pd.read_parquet(report.output).sort_values("input_row")
    batch = dict(zip(VALUES, scores["status"] != "invalid_departure_time", strict=True))

    kept = set(read_trips(od_csv).frame["trip_id"])
    trips = {value: f"t{i}" in kept for i, value in enumerate(VALUES)}

    assert api == VALUES
    assert batch == VALUES
    assert trips == VALUES


def test_cli_refuses_like_the_others(bundled_graph_dir):
    result = run_cli("eta", "--graph", str(bundled_graph_dir), "--origin=-76.61,39.29",
                     "--destination=-76.55,39.30", "--departure-time", "1714552200000")
    assert result.returncode == 2
    assert "milliseconds" in result.stderr and "Traceback" not in result.stderr
