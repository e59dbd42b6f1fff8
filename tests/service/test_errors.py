"""Bad input and abuse on the native API: always a 4xx ErrorResponse that says what is
allowed, never a 500."""

from __future__ import annotations

import pytest

from tests.service.conftest import DOWNTOWN, EAST, point

GOOD = {"origin": point(DOWNTOWN), "destination": point(EAST)}


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["code"] == code and answer["message"]
    return answer


def test_malformed_json(client):
    response = client.post("/v1/eta", content=b'{"origin": ', headers={
        "content-type": "application/json"})
    _error(response, 422, "InvalidValue")


@pytest.mark.parametrize("origin", [
    {"lon": "east", "lat": 39.29},
    {"lon": -76.61},
    {"lon": 200, "lat": 39.29},
    {"lon": -76.61, "lat": -91},
    {"lon": -76.61, "lat": 39.29, "alt": 3},
    [-76.61, 39.29],
])
def test_bad_coordinates(client, origin):
    answer = _error(client.post("/v1/eta", json={**GOOD, "origin": origin}), 422,
                    "InvalidValue")
    assert answer["detail"] and answer["detail"][0]["loc"][:2] == ["body", "origin"]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinite_coordinates(client, literal):
    body = b'{"origin": {"lon": ' + literal + b', "lat": 39.29}, ' \
           b'"destination": {"lon": -76.55, "lat": 39.3}}'
    response = client.post("/v1/route", content=body,
                           headers={"content-type": "application/json"})
    _error(response, 422, "InvalidValue")


def test_range_message_says_what_is_allowed(client):
    answer = _error(client.post("/v1/eta", json={**GOOD, "origin": {"lon": 200, "lat": 0}}),
                    422, "InvalidValue")
    assert "180" in answer["message"]


def test_point_beyond_snap_limit(client):
    answer = _error(client.post("/v1/route", json={**GOOD, "destination": point((0.0, 0.0))}),
                    400, "NoSegment")
    assert "point 1" in answer["message"] and "250 m" in answer["message"]


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01T00:00:00", -5, 1e12, "9999-01-01",
                                   True, [2024]])
def test_bad_departure_time(client, value):
    answer = _error(client.post("/v1/eta", json={**GOOD, "departure_time": value}), 422,
                    "InvalidValue")
    assert "departure_time" in answer["message"]


def test_matrix_limits(client):
    too_many = [point(DOWNTOWN)] * 21
    answer = _error(client.post("/v1/matrix", json={"origins": too_many}), 413, "TooBig")
    assert "at most 20" in answer["message"]
    _error(client.post("/v1/matrix", json={"origins": []}), 422, "InvalidValue")
    _error(client.post("/v1/matrix", json={"origins": [point(DOWNTOWN)], "destinations": []}),
           422, "InvalidValue")


def test_isochrone_limits(client):
    answer = _error(client.post("/v1/isochrone", json={"origin": point(DOWNTOWN),
                                                       "max_seconds": 3600}), 413, "TooBig")
    assert "1800" in answer["message"]
    _error(client.post("/v1/isochrone", json={"origin": point(DOWNTOWN), "max_seconds": 0}),
           422, "InvalidValue")
    _error(client.post("/v1/isochrone", json={"origin": point(DOWNTOWN), "max_seconds": 60,
                                              "area": "blob"}), 422, "InvalidValue")


def test_oversized_body(client):
    padding = [point(DOWNTOWN)] * 1000  # > NARETA_MAX_BODY_BYTES=20000
    answer = _error(client.post("/v1/matrix", json={"origins": padding}), 413, "TooBig")
    assert "20000 bytes" in answer["message"]


def test_oversized_chunked_body(client):
    def chunks():
        yield b'{"origins": ['
        for _ in range(2000):
            yield b'{"lon": -76.61, "lat": 39.29},'
        yield b"]}"

    response = client.post("/v1/matrix", content=chunks(),
                           headers={"content-type": "application/json"})
    _error(response, 413, "TooBig")


def test_unknown_path_and_method(client):
    _error(client.get("/v2/eta"), 404, "NotFound")
    _error(client.get("/v1/eta"), 405, "MethodNotAllowed")


def test_no_server_errors_were_logged(client, server):
    assert '"status": 500' not in server.log_path.read_text()
