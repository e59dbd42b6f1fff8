"""OSRM v1 compatibility: response shape field by field, options and error codes."""

from __future__ import annotations

import math

import pytest

from service import polyline

ROUTE = "/route/v1/driving/-76.61,39.29;-76.55,39.3"
TABLE = "/table/v1/driving/-76.61,39.29;-76.55,39.3;-76.56,39.28"


def test_route_shape(client):
    answer = client.get(ROUTE).json()
    assert answer["code"] == "Ok"
    (route,) = answer["routes"]
    assert set(route) == {"geometry", "legs", "weight_name", "weight", "duration", "distance"}
    assert route["weight"] == route["duration"] > 0 and route["distance"] > 0
    (leg,) = route["legs"]
    assert set(leg) == {"steps", "summary", "weight", "duration", "distance"}
    assert leg["steps"] == [] and leg["duration"] == route["duration"]
    assert len(answer["waypoints"]) == 2
    for waypoint in answer["waypoints"]:
        assert set(waypoint) == {"hint", "distance", "name", "location"}
        assert isinstance(waypoint["name"], str) and len(waypoint["location"]) == 2
    assert any(waypoint["name"] for waypoint in answer["waypoints"])  # OSM street names
    # Default geometry: polyline (precision 5, lat/lon order) starting at the first waypoint.
    start = polyline.decode(route["geometry"])[0]
    assert start == pytest.approx(tuple(answer["waypoints"][0]["location"]), abs=1e-5)


def test_route_matches_native_eta(client):
    native = client.post("/v1/eta", json={"origin": {"lon": -76.61, "lat": 39.29},
                                          "destination": {"lon": -76.55, "lat": 39.3}}).json()
    route = client.get(ROUTE).json()["routes"][0]
    assert route["duration"] == pytest.approx(native["eta_s"], abs=0.06)
    assert route["distance"] == pytest.approx(native["distance_m"], abs=0.06)


@pytest.mark.parametrize("geometries", ["polyline", "polyline6", "geojson"])
def test_geometries_and_overview(client, geometries):
    full = client.get(ROUTE, params={"geometries": geometries, "overview": "full"}).json()
    simple = client.get(ROUTE, params={"geometries": geometries}).json()
    geometry_full = full["routes"][0]["geometry"]
    geometry_simple = simple["routes"][0]["geometry"]
    if geometries == "geojson":
        points_full = geometry_full["coordinates"]
        points_simple = geometry_simple["coordinates"]
        assert geometry_full["type"] == "LineString"
    else:
        precision = 6 if geometries == "polyline6" else 5
        points_full = polyline.decode(geometry_full, precision)
        points_simple = polyline.decode(geometry_simple, precision)
    assert 2 <= len(points_simple) <= len(points_full)
    location = full["waypoints"][-1]["location"]
    assert tuple(points_full[-1]) == pytest.approx(tuple(location), abs=1e-5)
    none = client.get(ROUTE, params={"overview": "false"}).json()
    assert "geometry" not in none["routes"][0]


def test_steps(client):
    answer = client.get(ROUTE, params={"steps": "true", "geometries": "geojson"}).json()
    steps = answer["routes"][0]["legs"][0]["steps"]
    assert steps[0]["maneuver"]["type"] == "depart" and steps[-1]["maneuver"]["type"] == "arrive"
    for step in steps:
        assert {"geometry", "maneuver", "mode", "driving_side", "name", "intersections",
                "weight", "duration", "distance"} <= set(step)
        assert step["mode"] == "driving"
    for before, step in zip(steps[:-2], steps[1:-1], strict=True):
        kind = step["maneuver"]["type"]
        assert kind in ("turn", "new name") and step["maneuver"]["modifier"]
        if kind == "new name":  # no turn: only the street name changed
            assert step["name"] != before["name"] and step["maneuver"]["modifier"] == "straight"
    route = answer["routes"][0]
    assert sum(s["duration"] for s in steps) == pytest.approx(route["duration"], abs=0.5)
    assert sum(s["distance"] for s in steps) == pytest.approx(route["distance"], abs=1.0)


def _length_m(coordinates: list[list[float]]) -> float:
    """Great-circle length of a lon/lat line (the reference the steps are checked against)."""
    total = 0.0
    for (lon1, lat1), (lon2, lat2) in zip(coordinates[:-1], coordinates[1:], strict=True):
        a = (math.sin(math.radians(lat2 - lat1) / 2) ** 2 + math.cos(math.radians(lat1))
             * math.cos(math.radians(lat2)) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
        total += 2 * 6_371_008.8 * math.asin(math.sqrt(a))
    return total


@pytest.mark.parametrize("coordinates", ["-76.61,39.29;-76.55,39.3", "-76.6010,39.2905;"
                                         "-76.5660,39.2850", "-76.56,39.28;-76.605,39.297"])
def test_step_distances_match_their_geometry(client, coordinates):
    answer = client.get(f"/route/v1/driving/{coordinates}",
                        params={"steps": "true", "geometries": "geojson"}).json()
    (leg,) = answer["routes"][0]["legs"]
    steps = leg["steps"]
    assert sum(s["distance"] for s in steps) == pytest.approx(leg["distance"], abs=1.0)
    for step in steps[:-1]:
        line = step["geometry"]["coordinates"]
        assert step["distance"] == pytest.approx(_length_m(line), rel=0.01, abs=2.0), step
        assert step["maneuver"]["location"] == pytest.approx(line[0], abs=1e-6)
    for before, after in zip(steps[:-2], steps[1:-1], strict=True):  # one ends, one starts
        assert before["geometry"]["coordinates"][-1] == after["geometry"]["coordinates"][0]
    start, end = (tuple(w["location"]) for w in answer["waypoints"])
    assert tuple(steps[0]["geometry"]["coordinates"][0]) == pytest.approx(start, abs=1e-6)
    assert tuple(steps[-2]["geometry"]["coordinates"][-1]) == pytest.approx(end, abs=1e-6)


def test_via_points_make_legs(client):
    answer = client.get("/route/v1/driving/-76.61,39.29;-76.56,39.28;-76.55,39.3.json").json()
    route = answer["routes"][0]
    assert len(route["legs"]) == 2 and len(answer["waypoints"]) == 3
    assert route["duration"] == pytest.approx(sum(leg["duration"] for leg in route["legs"]),
                                              abs=0.2)


def test_polyline_coordinates_in_url(client):
    encoded = polyline.encode([(-76.61, 39.29), (-76.55, 39.3)])
    answer = client.get(f"/route/v1/driving/polyline({encoded})").json()
    plain = client.get(ROUTE).json()
    assert answer["routes"][0]["duration"] == plain["routes"][0]["duration"]


def test_table_shape(client):
    answer = client.get(TABLE).json()
    assert answer["code"] == "Ok"
    assert set(answer) == {"code", "durations", "sources", "destinations"}
    assert len(answer["durations"]) == 3 and answer["durations"][1][1] == 0
    both = client.get(TABLE, params={"annotations": "duration,distance", "sources": "0",
                                     "destinations": "1;2"}).json()
    assert len(both["durations"]) == 1 and len(both["durations"][0]) == 2
    assert len(both["distances"][0]) == 2 and len(both["sources"]) == 1
    assert both["durations"][0][0] == answer["durations"][0][1]
    # durations alone come from the hierarchy's many-to-many; with distances, from the
    # walked trees: the same durations
    full = client.get(TABLE, params={"annotations": "duration,distance"}).json()
    assert full["durations"] == answer["durations"]
    only_distance = client.get(TABLE, params={"annotations": "distance"}).json()
    assert "durations" not in only_distance and "distances" in only_distance


@pytest.mark.parametrize(("url", "code"), [
    ("/route/v1/driving/-76.61,39.29", "InvalidValue"),
    ("/route/v1/driving/abc;def", "InvalidUrl"),
    ("/route/v1/driving/-76.61,39.29,5;-76.55,39.3", "InvalidUrl"),
    ("/route/v1/driving/-76.61,99;-76.55,39.3", "InvalidValue"),
    ("/route/v1/driving/nan,39.29;-76.55,39.3", "InvalidValue"),
    ("/route/v1/driving/-76.61,39.29;0,0?radiuses=;1000", "NoSegment"),
    ("/route/v1/driving/polyline(ab cd)", "InvalidUrl"),
    (ROUTE + "?geometries=wkt", "InvalidValue"),
    (ROUTE + "?overview=maybe", "InvalidOptions"),
    (ROUTE + "?steps=yes", "InvalidValue"),
    ("/route/v1/driving/" + ";".join(["-76.61,39.29"] * 6), "TooBig"),
    (TABLE + "?sources=7", "InvalidValue"),
    (TABLE + "?sources=a", "InvalidQuery"),
    (TABLE + "?annotations=speed", "InvalidValue"),
    ("/table/v1/driving/" + ";".join(["-76.61,39.29"] * 21), "TooBig"),
    ("/route/v1/driving/", "InvalidUrl"),
])
def test_errors(client, url, code):
    response = client.get(url)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["code"] == code and answer["message"]


def test_same_point_route(client):
    answer = client.get("/route/v1/driving/-76.61,39.29;-76.61,39.29?steps=true").json()
    assert answer["code"] == "Ok" and answer["routes"][0]["duration"] == 0


def test_steps_and_summary_carry_osm_street_names(client, bundled_graph):
    """Every step is named after the OSM street of its first segment (``name``, else
    ``ref``), steps split where the name changes, and the leg summary names the two
    streets driven longest, as OSRM does."""
    from data_pipeline.ingest import street_name

    assert street_name({"name": " Wells Avenue "}) == "Wells Avenue"
    assert street_name({"ref": "I 95"}) == "I 95" and street_name({}) == ""
    answer = client.get(ROUTE, params={"steps": "true", "geometries": "geojson"}).json()
    (leg,) = answer["routes"][0]["legs"]
    names = [step["name"] for step in leg["steps"][:-1]]
    assert sum(bool(name) for name in names) >= len(names) // 2
    assert all(a != b or kind == "turn" for a, b, kind in zip(
        names[:-1], names[1:], [s["maneuver"]["type"] for s in leg["steps"][1:-1]],
        strict=True))
    assert leg["summary"] and set(leg["summary"].split(", ")) <= set(names)
    segment_names = bundled_graph["segment_name"]
    assert set(names) - {""} <= set(segment_names.tolist())
