"""The service over the learned ETA model (the shipped Baltimore model): real uvicorn."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import REPO
from tests.service.conftest import DOWNTOWN, EAST, serve

SHIPPED_MODEL = REPO / "artifacts_shipped" / "eta_baltimore"


@pytest.fixture(scope="module")
def eta_client(bundled_graph_dir, tmp_path_factory) -> Iterator[httpx.Client]:
    log_path = tmp_path_factory.mktemp("eta-server") / "server.log"
    with serve(bundled_graph_dir, log_path, NARETA_MODEL_DIR=str(SHIPPED_MODEL)) as running, \
            httpx.Client(base_url=running.base_url, timeout=60) as client:
        yield client


def test_route_with_the_learned_model(eta_client):
    body = {"origin": {"lon": DOWNTOWN[0], "lat": DOWNTOWN[1]},
            "destination": {"lon": EAST[0], "lat": EAST[1]},
            "departure_time": "2026-11-18T07:30:00"}
    response = eta_client.post("/v1/route", json=body)
    assert response.status_code == 200, response.text
    route = response.json()
    assert route["eta_s"] > 0 and route["distance_m"] > 0
    assert route["geometry"]["type"] == "LineString"
    assert len(route["geometry"]["coordinates"]) >= 2
    eta = eta_client.post("/v1/eta", json=body).json()
    assert eta["eta_s"] == pytest.approx(route["eta_s"], rel=1e-6)


def test_departure_time_changes_the_answer(eta_client):
    def eta(when: str) -> float:
        body = {"origin": {"lon": DOWNTOWN[0], "lat": DOWNTOWN[1]},
                "destination": {"lon": EAST[0], "lat": EAST[1]}, "departure_time": when}
        response = eta_client.post("/v1/eta", json=body)
        assert response.status_code == 200, response.text
        return response.json()["eta_s"]

    assert eta("2026-11-18T06:05:00") != eta("2026-11-18T08:40:00")


def test_osrm_route_and_metrics_name_the_model(eta_client):
    coordinates = f"{DOWNTOWN[0]},{DOWNTOWN[1]};{EAST[0]},{EAST[1]}"
    response = eta_client.get(f"/route/v1/driving/{coordinates}")
    assert response.status_code == 200 and response.json()["code"] == "Ok"
    assert "nar_eta" in eta_client.get("/metrics").text
