"""The native API over HTTP against a real uvicorn server."""

from __future__ import annotations

import pytest

from tests.service.conftest import DOWNTOWN, EAST, SOUTH_EAST, point


def test_health_and_ready(client):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["ready"] is True and ready["model"] == "freeflow"
    assert ready["nodes"] > 1000


def test_eta_and_route_agree(client):
    body = {"origin": point(DOWNTOWN), "destination": point(EAST)}
    eta = client.post("/v1/eta", json=body).json()
    route = client.post("/v1/route", json=body).json()
    assert 60 < eta["eta_s"] < 3600 and eta["distance_m"] > 1000
    assert route["eta_s"] == pytest.approx(eta["eta_s"], abs=0.01)
    assert route["distance_m"] == pytest.approx(eta["distance_m"], abs=0.01)
    assert sum(route["segment_times_s"]) == pytest.approx(route["eta_s"], rel=1e-3)
    assert len(route["segment_ids"]) == len(route["segment_times_s"])
    line = route["geometry"]
    assert line["type"] == "LineString"
    assert line["coordinates"][0] == route["origin"]["location"]
    assert line["coordinates"][-1] == route["destination"]["location"]
    assert route["fallback_used"] is False and route["fallback_reason"] is None
    assert route["origin"]["distance_m"] < 250


def test_departure_time_forms(client):
    base = {"origin": point(DOWNTOWN), "destination": point(EAST)}
    for value in ("2024-05-01T08:30:00", "2024-05-01T08:30:00+02:00", "2024-05-01T08:30:00Z",
                  1714552200, 1714552200.5):
        response = client.post("/v1/eta", json={**base, "departure_time": value})
        assert response.status_code == 200, (value, response.text)
        assert response.json()["departure_time"].startswith("2024-05-01")


def test_origin_equals_destination(client):
    body = {"origin": point(DOWNTOWN), "destination": point(DOWNTOWN)}
    assert client.post("/v1/eta", json=body).json()["eta_s"] == 0
    route = client.post("/v1/route", json=body).json()
    assert route["eta_s"] == 0 and len(route["geometry"]["coordinates"]) >= 2


def test_matrix_matches_eta(client):
    points = [point(p) for p in (DOWNTOWN, EAST, SOUTH_EAST)]
    matrix = client.post("/v1/matrix", json={"origins": points}).json()
    assert len(matrix["durations_s"]) == 3 and all(len(row) == 3 for row in matrix["durations_s"])
    assert [matrix["durations_s"][i][i] for i in range(3)] == [0, 0, 0]
    eta = client.post("/v1/eta", json={"origin": points[0], "destination": points[2]}).json()
    assert matrix["durations_s"][0][2] == pytest.approx(eta["eta_s"], abs=0.01)
    assert matrix["distances_m"][0][2] == pytest.approx(eta["distance_m"], abs=0.01)
    rectangular = client.post("/v1/matrix", json={"origins": points[:1],
                                                  "destinations": points}).json()
    assert len(rectangular["durations_s"]) == 1 and len(rectangular["durations_s"][0]) == 3


def test_isochrone_grows_with_time(client):
    areas = []
    for seconds in (60, 300):
        answer = client.post("/v1/isochrone", json={"origin": point(DOWNTOWN),
                                                    "max_seconds": seconds}).json()
        assert answer["type"] == "FeatureCollection"
        kinds = {f["properties"]["kind"]: f for f in answer["features"]}
        assert kinds["roads"]["geometry"]["type"] == "MultiLineString"
        assert kinds["area"]["geometry"]["type"] == "Polygon"
        areas.append(answer["reachable_nodes"])
    assert 0 < areas[0] < areas[1]
    convex = client.post("/v1/isochrone", json={"origin": point(DOWNTOWN), "max_seconds": 120,
                                                "area": "none"}).json()
    assert [f["properties"]["kind"] for f in convex["features"]] == ["roads"]


def test_isochrone_and_eta_agree(client):
    """A destination the ETA says is reachable in t seconds is inside the t+1 s isochrone's
    road pieces' reach (its node count includes the destination's nodes)."""
    eta = client.post("/v1/eta", json={"origin": point(DOWNTOWN),
                                       "destination": point(SOUTH_EAST)}).json()["eta_s"]
    before = client.post("/v1/isochrone", json={"origin": point(DOWNTOWN),
                                                "max_seconds": eta * 0.5}).json()
    after = client.post("/v1/isochrone", json={"origin": point(DOWNTOWN),
                                               "max_seconds": eta + 60}).json()
    assert before["reachable_nodes"] < after["reachable_nodes"]


def test_network_geojson(client):
    response = client.get("/v1/network.geojson")
    assert response.headers["content-type"].startswith("application/geo+json")
    network = response.json()
    assert network["type"] == "FeatureCollection" and len(network["bbox"]) == 4
    assert {f["properties"]["highway"] for f in network["features"]} >= {"residential"}


def test_metrics_and_access_log(client, server):
    client.post("/v1/eta", json={"origin": point(DOWNTOWN), "destination": point(EAST)},
                headers={"X-Request-ID": "trace-me-42"})
    text = client.get("/metrics").text
    assert 'nareta_http_requests_total{method="POST",route="/v1/eta",status="200"}' in text
    assert "nareta_http_request_duration_seconds_bucket" in text
    assert 'nareta_model_info{graph_identity="' in text and 'model="freeflow"' in text
    assert "nareta_model_runs_total" in text
    import json

    lines = [json.loads(line) for line in server.log_path.read_text().splitlines()
             if line.startswith("{")]
    traced = [entry for entry in lines if entry.get("request_id") == "trace-me-42"]
    assert traced and traced[0]["route"] == "/v1/eta" and traced[0]["status"] == 200
    assert traced[0]["duration_ms"] > 0


def test_openapi_and_docs(client):
    spec = client.get("/openapi.json").json()
    for path in ("/v1/eta", "/v1/route", "/v1/matrix", "/v1/isochrone",
                 "/route/v1/driving/{coordinates}", "/table/v1/driving/{coordinates}"):
        assert path in spec["paths"]
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "cdn" not in docs.text and "/docs-assets/swagger-ui-bundle.js" in docs.text
    bundle = client.get("/docs-assets/swagger-ui-bundle.js")  # served locally: works offline
    assert bundle.status_code == 200 and len(bundle.content) > 100_000


def test_api_key_and_cors(keyed_server):
    import httpx

    body = {"origin": point(DOWNTOWN), "destination": point(EAST)}
    missing = httpx.post(f"{keyed_server}/v1/eta", json=body)
    assert missing.status_code == 401 and missing.json()["code"] == "Unauthorized"
    assert "X-API-Key" in missing.json()["message"]
    wrong = httpx.get(f"{keyed_server}/route/v1/driving/-76.61,39.29;-76.55,39.3",
                      headers={"X-API-Key": "nope"})
    assert wrong.status_code == 401
    good = httpx.post(f"{keyed_server}/v1/eta", json=body, headers={"X-API-Key": "s3cret"})
    assert good.status_code == 200
    assert httpx.get(f"{keyed_server}/health").status_code == 200  # probes stay open
    preflight = httpx.options(f"{keyed_server}/v1/eta", headers={
        "Origin": "http://maps.example", "Access-Control-Request-Method": "POST"})
    assert preflight.headers["access-control-allow-origin"] == "http://maps.example"
