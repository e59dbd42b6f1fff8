"""OSRM parity of the options: snapping without a limit unless ``radiuses`` says so,
``null`` table cells, fallback_speed / fallback_coordinate / scale_factor, annotations,
skip_waypoints, generate_hints, the ``nearest`` service, and 400 ``InvalidOptions`` for
OSRM options nareta does not implement. All over a real ``nareta serve``."""

from __future__ import annotations

import base64
import struct

import numpy as np
import pytest

from tests.graph_fixtures import road_graph_from_paths
from tests.service.conftest import serve

A, B = "-76.61,39.29", "-76.55,39.3"
ROUTE = f"/route/v1/driving/{A};{B}"
FAR = "-76.3,39.3"  # in the Chesapeake Bay, ~20 km from the bundled city's roads
TABLE = f"/table/v1/driving/{A};{B};-76.56,39.28"


def ok(response) -> dict:
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["code"] == "Ok"
    return answer


def error(response, code: str) -> str:
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["code"] == code, answer
    assert set(answer) == {"code", "message"} and answer["message"]
    return answer["message"]


# ---------------------------------------------------------------------- snapping
def test_far_point_snaps_like_osrm_and_reports_distance(client):
    answer = ok(client.get(f"/route/v1/driving/{A};{FAR}", params={"overview": "false"}))
    far = answer["waypoints"][1]
    assert far["distance"] > 10_000  # snapped anyway, and says how far
    assert answer["routes"][0]["duration"] > 0
    near = ok(client.get(ROUTE))["waypoints"][0]
    assert 100 < near["distance"] < 120  # this point is ~108 m from the nearest road
    # the native API keeps its snap limit (NARETA_MAX_SNAP_DISTANCE_M, default 250 m)
    lon, lat = map(float, FAR.split(","))
    native = client.post("/v1/eta", json={"origin": {"lon": -76.61, "lat": 39.29},
                                          "destination": {"lon": lon, "lat": lat}})
    assert native.status_code == 400 and native.json()["code"] == "NoSegment"


def test_radiuses_limit_snapping_per_coordinate(client):
    message = error(client.get(ROUTE, params={"radiuses": "50;unlimited"}), "NoSegment")
    assert "point 0" in message and "50 m" in message
    assert ok(client.get(ROUTE, params={"radiuses": "150;20"}))
    assert ok(client.get(ROUTE, params={"radiuses": ";"}))  # empty = unlimited
    error(client.get(ROUTE, params={"radiuses": "150;20;3"}), "InvalidOptions")
    error(client.get(ROUTE, params={"radiuses": "-1;20"}), "InvalidQuery")
    error(client.get(ROUTE, params={"radiuses": "abc;20"}), "InvalidQuery")
    error(client.get(f"/route/v1/driving/{A};{FAR}", params={"radiuses": "unlimited;1000"}),
          "NoSegment")


# ---------------------------------------------------------------------- table
def test_table_nulls_where_a_point_has_no_road_within_its_radius(client):
    plain = ok(client.get(TABLE, params={"annotations": "duration,distance"}))
    limited = ok(client.get(TABLE, params={"annotations": "duration,distance",
                                           "radiuses": "50;;"}))
    for name in ("durations", "distances"):
        assert limited[name][0] == [None, None, None]
        assert [row[0] for row in limited[name]] == [None, None, None]
        assert [row[1:] for row in limited[name][1:]] == [row[1:] for row in plain[name][1:]]
    # the waypoint still names the nearest road and how far it is (beyond the radius)
    assert limited["sources"][0]["distance"] > 50 and "hint" not in limited["sources"][0]
    assert "fallback_speed_cells" not in limited


def test_fallback_speed_fills_null_cells(client):
    params = {"annotations": "duration,distance", "radiuses": "50;;", "fallback_speed": "10"}
    answer = ok(client.get(TABLE, params=params))
    cells = answer["fallback_speed_cells"]
    assert sorted(map(tuple, cells)) == sorted({(0, j) for j in range(3)} |
                                               {(i, 0) for i in range(3)})
    distance = answer["distances"][0][1]
    assert distance > 0 and answer["durations"][0][1] == pytest.approx(distance / 10, abs=0.06)
    # from the input coordinate (default) vs from the snapped one: different crow flies
    snapped = ok(client.get(TABLE, params={**params, "fallback_coordinate": "snapped"}))
    assert snapped["distances"][0][1] != distance
    error(client.get(TABLE, params={"fallback_speed": "0"}), "InvalidOptions")
    error(client.get(TABLE, params={"fallback_speed": "fast"}), "InvalidQuery")
    error(client.get(TABLE, params={"fallback_coordinate": "middle"}), "InvalidOptions")


def test_scale_factor_scales_durations_only(client):
    plain = ok(client.get(TABLE, params={"annotations": "duration,distance"}))
    scaled = ok(client.get(TABLE, params={"annotations": "duration,distance",
                                          "scale_factor": "2.5"}))
    for row, scaled_row in zip(plain["durations"], scaled["durations"], strict=True):
        assert scaled_row == pytest.approx([2.5 * value for value in row], abs=0.15)
    assert scaled["distances"] == plain["distances"]
    error(client.get(TABLE, params={"scale_factor": "-1"}), "InvalidOptions")


def test_table_null_where_no_route(tmp_path):
    """Two streets with no road between them: the cross cells are null, not an error."""
    nodes = {1: (-76.600, 39.300), 2: (-76.590, 39.300), 3: (-76.600, 39.320),
             4: (-76.590, 39.320)}
    graph = road_graph_from_paths(nodes, [((1, 2), 10), ((2, 1), 10), ((3, 4), 20),
                                          ((4, 3), 20)])
    graph.save(tmp_path / "graph")
    import httpx

    with serve(tmp_path / "graph", tmp_path / "server.log") as running:
        url = (f"{running.base_url}/table/v1/driving/-76.598,39.3001;-76.592,39.3001;"
               "-76.595,39.3199")
        answer = ok(httpx.get(url, params={"annotations": "duration,distance"}))
        durations, distances = answer["durations"], answer["distances"]
        assert durations[0][1] > 0 and durations[1][0] > 0 and durations[2][2] == 0
        for i, j in ((0, 2), (1, 2), (2, 0), (2, 1)):
            assert durations[i][j] is None and distances[i][j] is None
        route = httpx.get(url.replace("/table/", "/route/"))
        assert route.status_code == 400 and route.json()["code"] == "NoRoute"


# ---------------------------------------------------------------------- route options
def test_route_annotations_sum_to_the_leg(client):
    answer = ok(client.get(f"/route/v1/driving/{A};-76.56,39.28;{B}",
                           params={"annotations": "true", "overview": "false"}))
    for leg in answer["routes"][0]["legs"]:
        annotation = leg["annotation"]
        assert set(annotation) == {"duration", "distance", "speed", "weight"}
        count = len(annotation["duration"])
        assert count > 3 and all(len(values) == count for values in annotation.values())
        assert sum(annotation["duration"]) == pytest.approx(leg["duration"], abs=0.05 * count)
        assert sum(annotation["distance"]) == pytest.approx(leg["distance"], abs=0.1)
        for speed, distance, duration in zip(annotation["speed"], annotation["distance"],
                                             annotation["duration"], strict=True):
            assert speed == pytest.approx(distance / max(duration, 1e-9), rel=0.1, abs=0.2)
    only = ok(client.get(ROUTE, params={"annotations": "distance,duration"}))
    assert set(only["routes"][0]["legs"][0]["annotation"]) == {"distance", "duration"}
    assert "annotation" not in ok(client.get(ROUTE))["routes"][0]["legs"][0]
    error(client.get(ROUTE, params={"annotations": "nodes"}), "InvalidOptions")
    error(client.get(ROUTE, params={"annotations": "colour"}), "InvalidValue")


def test_skip_waypoints_and_generate_hints(client):
    assert "waypoints" not in ok(client.get(ROUTE, params={"skip_waypoints": "true"}))
    table = ok(client.get(TABLE, params={"skip_waypoints": "true"}))
    assert set(table) == {"code", "durations"}
    nearest = ok(client.get(f"/nearest/v1/driving/{A}", params={"skip_waypoints": "true"}))
    assert set(nearest) == {"code"}
    plain = ok(client.get(ROUTE, params={"generate_hints": "false"}))
    assert all("hint" not in waypoint for waypoint in plain["waypoints"])
    assert all("hint" in waypoint for waypoint in ok(client.get(ROUTE))["waypoints"])
    error(client.get(ROUTE, params={"skip_waypoints": "yes"}), "InvalidValue")


@pytest.mark.parametrize(("url", "params"), [
    (ROUTE, {"bearings": "0,20;"}),
    (ROUTE, {"approaches": "curb;"}),
    (ROUTE, {"exclude": "motorway"}),
    (ROUTE, {"snapping": "any"}),
    (f"/route/v1/driving/{A};-76.56,39.28;{B}", {"continue_straight": "true"}),
    (f"/route/v1/driving/{A};-76.56,39.28;{B}", {"waypoints": "0;2"}),
    (TABLE, {"bearings": "0,20;;"}),
    (TABLE, {"exclude": "toll"}),
    (f"/nearest/v1/driving/{A}", {"bearings": "0,20"}),
])
def test_unimplemented_options_are_refused(client, url, params):
    message = error(client.get(url, params=params), "InvalidOptions")
    assert "not supported by nareta" in message


@pytest.mark.parametrize("params", [
    {"continue_straight": "true"},  # two coordinates: no via point to go straight through
    {"continue_straight": "false"}, {"hints": ";"}, {"bearings": ";"},
    {"approaches": "unrestricted;"}, {"snapping": "default"}, {"waypoints": "0;1"},
    {"alternatives": "2"},
])
def test_neutral_values_of_those_options_are_accepted(client, params):
    assert ok(client.get(ROUTE, params=params))["routes"]


def test_hints_of_an_earlier_answer_are_accepted(client):
    """Clients (Leaflet Routing Machine) send the waypoints' hints back with the next
    request; the answer is the one without them. Hints nareta did not issue are refused."""
    first = ok(client.get(ROUTE))
    hints = ";".join(waypoint["hint"] for waypoint in first["waypoints"])
    again = ok(client.get(ROUTE, params={"hints": hints}))
    assert again == first
    table = ok(client.get(TABLE, params={"hints": hints + ";"}))
    assert table["durations"] == ok(client.get(TABLE))["durations"]
    no_such_segment = base64.urlsafe_b64encode(struct.pack("<if", 10**9, 0.5)).decode()
    for bad in ("abc;def", f"{no_such_segment};", hints):  # garbage, bad segment, 2 for 3
        url = TABLE if bad == hints else ROUTE
        error(client.get(url, params={"hints": bad}), "InvalidOptions")


def test_unknown_and_repeated_options_are_invalid_queries(client):
    assert "'colour'" in error(client.get(ROUTE, params={"colour": "red"}), "InvalidQuery")
    error(client.get(ROUTE + "?steps=true&steps=false"), "InvalidQuery")
    error(client.get(TABLE, params={"steps": "true"}), "InvalidQuery")


# ---------------------------------------------------------------------- nearest
def test_nearest(client):
    answer = ok(client.get(f"/nearest/v1/driving/{A}", params={"number": "3"}))
    waypoints = answer["waypoints"]
    assert len(waypoints) == 3
    distances = [waypoint["distance"] for waypoint in waypoints]
    assert distances == sorted(distances) and len({tuple(w["location"]) for w in waypoints}) == 3
    for waypoint in waypoints:
        assert set(waypoint) == {"nodes", "hint", "distance", "name", "location"}
        assert len(waypoint["nodes"]) == 2 and all(node > 0 for node in waypoint["nodes"])
    # the nearest road is where a route from this point starts
    route = ok(client.get(ROUTE))
    assert waypoints[0]["location"] == route["waypoints"][0]["location"]
    assert waypoints[0]["distance"] == route["waypoints"][0]["distance"]
    one = ok(client.get(f"/nearest/v1/driving/{A}.json"))
    assert one["waypoints"] == waypoints[:1]


def test_nearest_matches_brute_force(client, bundled_graph):
    """``number`` large enough to need a wider search than the first candidates: the same
    roads, in the same order, as the exact distance to every road piece gives."""
    from pyproj import Transformer

    from data_pipeline.snap import Snapper

    answer = ok(client.get(f"/nearest/v1/driving/{B}", params={"number": "60"}))
    snapper = Snapper(bundled_graph)
    x, y = Transformer.from_crs(4326, bundled_graph.crs_epsg, always_xy=True).transform(
        *map(float, B.split(",")))
    dx, dy = snapper.bx - snapper.ax, snapper.by - snapper.ay
    t = np.clip(((x - snapper.ax) * dx + (y - snapper.ay) * dy)
                / np.maximum(dx * dx + dy * dy, 1e-12), 0, 1)
    distance = np.hypot(x - snapper.ax - t * dx, y - snapper.ay - t * dy)  # [pieces]
    per_road = np.full(bundled_graph.num_segments, np.inf)
    np.minimum.at(per_road, snapper.piece_segment, distance)
    expected = np.sort(per_road[np.isfinite(per_road)])[:60]
    got = [waypoint["distance"] for waypoint in answer["waypoints"]]
    assert got == pytest.approx(expected.tolist(), abs=1e-3)
    assert len({waypoint["hint"] for waypoint in answer["waypoints"]}) == 60


@pytest.mark.parametrize(("url", "code"), [
    (f"/nearest/v1/driving/{A}?number=0", "InvalidOptions"),
    (f"/nearest/v1/driving/{A}?number=x", "InvalidOptions"),
    (f"/nearest/v1/driving/{A};{B}", "InvalidOptions"),
    (f"/nearest/v1/driving/{A}?radiuses=5", "NoSegment"),
    (f"/nearest/v1/driving/{A}?steps=true", "InvalidQuery"),
    ("/nearest/v1/driving/abc", "InvalidUrl"),
])
def test_nearest_errors(client, url, code):
    error(client.get(url), code)


# ---------------------------------------------------------------------- an OSRM client
def test_routingpy_client_unmodified(server):
    """routingpy's OSRM client, pointed at nareta, parses its answers."""
    from routingpy import OSRM

    client = OSRM(base_url=server.base_url, timeout=30)
    locations = [[-76.61, 39.29], [-76.56, 39.28], [-76.55, 39.3]]
    direction = client.directions(locations, profile="driving", geometries="geojson",
                                  overview="full")
    assert direction.duration > 0 and direction.distance > 0
    assert direction.geometry[0] == pytest.approx([-76.608993, 39.290573], abs=1e-5)
    matrix = client.matrix(locations, profile="driving")
    assert len(matrix.durations) == 3 and matrix.durations[1][1] == 0
    assert matrix.distances[0][2] > 0
    far = client.matrix([[-76.61, 39.29], [-76.3, 39.3]], profile="driving", radiuses=[100, 100])
    assert far.durations == [[None, None], [None, None]]
