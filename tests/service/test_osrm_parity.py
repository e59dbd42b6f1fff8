"""nareta beside osrm-routed: the same requests, through the same unmodified OSRM client
(routingpy) and over plain HTTP, answered with the same fields and close values.

osrm-routed is built from the ``osrm-bindings`` wheel on PyPI (``benchmarks/
osrm_reference.py``: pip download, then osrm-extract + osrm-contract on the bundled
``.osm.pbf``, cached under ``runs/osrm``; ~10 s the first time). Skipped, saying why, where
the wheel cannot be fetched (no network) or its tools cannot run (not x86-64 Linux).
"""

from __future__ import annotations

import importlib.util
import platform
import subprocess
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from tests.conftest import BUNDLED_OSM, REPO
from tests.service.conftest import free_port

# OD pairs across the bundled city (lon, lat); points on and off the roads.
PAIRS = [((-76.61, 39.29), (-76.55, 39.30)), ((-76.60, 39.31), (-76.57, 39.27)),
         ((-76.62, 39.28), (-76.59, 39.30)), ((-76.565, 39.285), (-76.61, 39.305)),
         ((-76.58, 39.29), (-76.60, 39.28)), ((-76.555, 39.295), (-76.575, 39.31))]


def _reference():
    spec = importlib.util.spec_from_file_location(
        "osrm_reference", REPO / "benchmarks" / "osrm_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def osrm_url(tmp_path_factory) -> Iterator[str]:
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the osrm-bindings wheel's tools run on x86-64 Linux only")
    reference = _reference()
    try:
        bin_dir, base = reference.prepare_osrm(REPO / "runs" / "osrm", BUNDLED_OSM,
                                               quiet=True)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"could not build osrm-routed from {reference.OSRM_WHEEL}: {exc} "
                    "(no network for pip download?)")
    port = free_port()
    log = tmp_path_factory.mktemp("osrm") / "osrm-routed.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(reference.routed_command(bin_dir, base, port=port,
                                                            threads=1),
                                   stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_osrm(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def _wait_osrm(url: str, process: subprocess.Popen) -> None:
    import time

    for _ in range(300):
        if process.poll() is not None:
            raise RuntimeError(f"osrm-routed exited with {process.returncode}")
        try:
            httpx.get(f"{url}/nearest/v1/driving/-76.61,39.29", timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("osrm-routed did not start")


def _keys(answer: dict) -> dict:
    """The nested field names of an OSRM answer (values left out)."""
    if isinstance(answer, dict):
        return {key: _keys(value) for key, value in answer.items()}
    if isinstance(answer, list) and answer and isinstance(answer[0], dict):
        return _keys(answer[0])
    return {}


def _both(osrm_url: str, nareta_url: str, path: str, **params) -> tuple[dict, dict]:
    answers = []
    for url in (osrm_url, nareta_url):
        response = httpx.get(url + path, params=params, timeout=30)
        assert response.status_code == 200, (url, response.text)
        answers.append(response.json())
    return answers[0], answers[1]


def _metres(a, b) -> float:
    return float(np.hypot((a[0] - b[0]) * np.cos(np.radians(a[1])), a[1] - b[1]) * 111_320)


def test_routingpy_answers_match_osrm(osrm_url, server):
    """One client, both servers: mostly the same snapped waypoints, and where both snap
    alike, distances within a few percent (the graphs come from the same OSM data, but
    nareta keeps the drivable network's largest strongly connected part of the clipped
    extract, so a point whose nearest road is outside it snaps elsewhere; nareta's free
    flow and car.lua's speeds differ, so durations are compared loosely)."""
    from routingpy import OSRM

    clients = [OSRM(base_url=url, timeout=30) for url in (osrm_url, server.base_url)]
    same, distance_ratios, duration_ratios = [], [], []
    for origin, destination in PAIRS:
        osrm, nareta = (client.directions([list(origin), list(destination)],
                                          profile="driving", geometries="geojson",
                                          overview="full") for client in clients)
        ends = [_metres(osrm.geometry[i], nareta.geometry[i]) < 5 for i in (0, -1)]
        same.extend(ends)
        if all(ends):
            distance_ratios.append(nareta.distance / osrm.distance)
            duration_ratios.append(nareta.duration / osrm.duration)
    assert np.mean(same) >= 0.75, same
    assert 0.95 <= float(np.median(distance_ratios)) <= 1.05, distance_ratios
    assert 0.6 <= float(np.median(duration_ratios)) <= 1.4, duration_ratios
    points = [list(p) for pair in PAIRS[:3] for p in pair]
    osrm_matrix, nareta_matrix = (client.matrix(points, profile="driving")
                                  for client in clients)
    ratio = np.array(nareta_matrix.distances, dtype=float) / np.maximum(
        np.array(osrm_matrix.distances, dtype=float), 1.0)
    off_diagonal = ratio[~np.eye(len(points), dtype=bool)]
    assert 0.9 <= float(np.median(off_diagonal)) <= 1.1


@pytest.mark.parametrize(("path", "params"), [
    ("/route/v1/driving/-76.61,39.29;-76.55,39.3", {"overview": "false"}),
    ("/route/v1/driving/-76.61,39.29;-76.55,39.3", {"overview": "full", "geometries": "geojson"}),
    ("/route/v1/driving/-76.61,39.29;-76.55,39.3",
     {"overview": "false", "annotations": "duration,distance"}),
    ("/route/v1/driving/-76.61,39.29;-76.56,39.28;-76.55,39.3",
     {"skip_waypoints": "true", "generate_hints": "false"}),
    ("/table/v1/driving/-76.61,39.29;-76.55,39.3;-76.56,39.28", {}),
    ("/table/v1/driving/-76.61,39.29;-76.55,39.3;-76.56,39.28",
     {"annotations": "duration,distance", "fallback_speed": "10", "scale_factor": "2"}),
    ("/table/v1/driving/-76.61,39.29;-76.55,39.3", {"skip_waypoints": "true"}),
    ("/table/v1/driving/-76.61,39.29;-76.55,39.3;-76.3,39.3", {"sources": "0;2"}),
    ("/nearest/v1/driving/-76.55,39.3", {"number": "3"}),
])
def test_same_fields_as_osrm(osrm_url, server, path, params):
    """The same field names, nested, on the same request (nareta leaves out only what it
    cannot know: street ``name``s are empty, as OSRM gives unnamed roads)."""
    osrm, nareta = _both(osrm_url, server.base_url, path, **params)
    osrm_keys, nareta_keys = _keys(osrm), _keys(nareta)
    if "routes" in osrm_keys:
        osrm_keys["routes"]["legs"].get("annotation", {}).pop("metadata", None)
    assert nareta_keys == osrm_keys
    if "durations" in osrm:
        assert np.shape(nareta["durations"]) == np.shape(osrm["durations"])
        assert (np.array(nareta["durations"]) == None).sum() == (  # noqa: E711
            np.array(osrm["durations"]) == None).sum()  # noqa: E711


def test_far_point_snaps_on_both(osrm_url, server):
    """A point ~20 km from the roads: both servers snap it and report how far it was."""
    osrm, nareta = _both(osrm_url, server.base_url,
                         "/route/v1/driving/-76.61,39.29;-76.3,39.3", overview="false")
    far_osrm, far_nareta = osrm["waypoints"][1], nareta["waypoints"][1]
    assert _metres(far_osrm["location"], far_nareta["location"]) < 50
    assert far_nareta["distance"] == pytest.approx(far_osrm["distance"], rel=0.01)


def test_unsupported_option_differs_knowingly(osrm_url, server):
    """Where OSRM honours an option nareta does not implement, nareta refuses it rather
    than answering as if it had applied it."""
    path = "/route/v1/driving/-76.61,39.29;-76.55,39.3"
    assert httpx.get(osrm_url + path, params={"bearings": "0,20;"}).json()["code"] == "Ok"
    refused = httpx.get(server.base_url + path, params={"bearings": "0,20;"})
    assert refused.status_code == 400 and refused.json()["code"] == "InvalidOptions"

