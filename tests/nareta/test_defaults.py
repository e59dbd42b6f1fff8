"""Defaults on a fresh clone: the bundled city (ingested once into the cache, verified by its
manifest), the shipped model that matches it, and one reading of ``--model`` everywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import numpy as np
import pandas as pd
import pytest

from data_pipeline.road_graph import RoadGraph
from nareta.artifacts import MANIFEST_NAME, sha256_file
from nareta.defaults import (
    BUNDLED_OSM,
    SHIPPED_MODEL,
    bundled_graph_dir,
    load_travel_time_model,
    resolve_model,
)
from nareta.errors import ArtifactError
from tests.conftest import REPO, run_cli
from tests.service.conftest import free_port, wait_ready

ORIGIN, DESTINATION = "-76.6010,39.2905", "-76.5660,39.2850"


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> dict[str, str]:
    """A cache directory of this module's own, and an environment without any artifact
    settings, as on a fresh machine."""
    env = {"NARETA_CACHE_DIR": str(tmp_path_factory.mktemp("cache")), "NARETA_GRAPH_DIR": "",
           "NARETA_MODEL_DIR": ""}
    return env


def test_bundled_graph_is_ingested_once_and_verified(cache, monkeypatch):
    monkeypatch.setenv("NARETA_CACHE_DIR", cache["NARETA_CACHE_DIR"])
    first = bundled_graph_dir(quiet=True)
    manifest = json.loads((first / MANIFEST_NAME).read_text())
    assert manifest["source"]["sha256"] == sha256_file(BUNDLED_OSM)
    built = (first / "graph.npz").stat().st_mtime_ns
    assert bundled_graph_dir(quiet=True) == first
    assert (first / "graph.npz").stat().st_mtime_ns == built  # verified, not rebuilt
    # a cache that no longer matches its manifest is rebuilt
    with open(first / "graph.npz", "r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert bundled_graph_dir(quiet=True) == first
    RoadGraph.load(first)  # verifies every checksum again


def test_resolve_model(bundled_graph, clipped_osm, tmp_path):
    from data_pipeline.ingest import ingest_osm

    assert resolve_model(None, graph=bundled_graph) == str(SHIPPED_MODEL)
    other = ingest_osm(clipped_osm).graph
    assert resolve_model(None, graph=other) == "freeflow"  # shipped model is Baltimore's
    assert resolve_model(None) == "freeflow"
    for name in ("freeflow", "freeflow-turns"):
        assert resolve_model(name) == name
        assert load_travel_time_model(name, bundled_graph).name == name
    assert resolve_model(os.path.relpath(SHIPPED_MODEL)) == str(SHIPPED_MODEL)
    with pytest.raises(ArtifactError, match="freeflow, freeflow-turns"):
        resolve_model("free-flow")
    with pytest.raises(ArtifactError, match="no manifest.json"):
        resolve_model(tmp_path)


def test_eta_with_no_graph_or_model(cache):
    result = run_cli("eta", f"--origin={ORIGIN}", f"--destination={DESTINATION}",
                     "--departure-time", "2026-11-18T08:15", env=cache)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["model"] == "nar_eta" and answer["eta_s"] > 0
    assert "no --model given: using" in result.stderr and "eta_baltimore" in result.stderr


def test_eta_route_prints_the_route_and_takes_epoch_times(cache):
    # 08:15 in Baltimore: the shipped model's time buckets are local
    iso = run_cli("eta", f"--origin={ORIGIN}", f"--destination={DESTINATION}",
                  "--departure-time", "2026-11-18T08:15:00-05:00", "--route", env=cache)
    epoch = run_cli("eta", f"--origin={ORIGIN}", f"--destination={DESTINATION}",
                    "--departure-time", "1795007700", "--route", env=cache)
    assert iso.returncode == 0 and epoch.returncode == 0, iso.stderr + epoch.stderr
    route, again = json.loads(iso.stdout), json.loads(epoch.stdout)
    assert again["departure_time"] == "2026-11-18T13:15:00+00:00"
    assert route["eta_s"] == again["eta_s"]  # the same instant, as the API reads it
    assert route["segments"] == again["segments"]
    legs = route["segments"]
    assert len(legs) > 5 and route["coordinates"][0] != route["coordinates"][-1]
    assert sum(leg["distance_m"] for leg in legs) == pytest.approx(route["distance_m"], abs=1)
    assert sum(leg["time_s"] for leg in legs) == pytest.approx(route["eta_s"], abs=1)
    bad = run_cli("eta", "--model", "freeflow", f"--origin={ORIGIN}",
                  f"--destination={DESTINATION}", "--departure-time", "soon", env=cache)
    assert bad.returncode == 2 and "epoch seconds" in bad.stderr


def test_score_with_no_graph_or_model_and_with_freeflow_turns(cache, bundled_graph, tmp_path):
    lon, lat = bundled_graph["path_lon"], bundled_graph["path_lat"]
    rows = np.random.default_rng(1).integers(0, len(lon), (12, 2))
    pd.DataFrame({"origin_lon": lon[rows[:, 0]], "origin_lat": lat[rows[:, 0]],
                  "destination_lon": lon[rows[:, 1]], "destination_lat": lat[rows[:, 1]]}
                 ).to_csv(tmp_path / "od.csv", index=False)
    for name, model in (("default", None), ("turns", "freeflow-turns")):
        args = ["score", "--input", str(tmp_path / "od.csv"), "--output",
                str(tmp_path / name), "--workers", "0", "--quiet"]
        result = run_cli(*args, *(["--model", model] if model else []), env=cache)
        assert result.returncode == 0, result.stderr
        manifest = json.loads((tmp_path / name / "_manifest.json").read_text())
        assert manifest["model"] == (model or str(SHIPPED_MODEL))
        assert manifest["status_counts"] == {"ok": 12}


def test_evaluate_with_no_graph_or_model(cache, bundled_graph, tmp_path):
    lon, lat = bundled_graph["path_lon"], bundled_graph["path_lat"]
    pairs = np.random.default_rng(2).integers(0, len(lon), (10, 2))
    trips = pd.DataFrame({"origin_lon": lon[pairs[:, 0]], "origin_lat": lat[pairs[:, 0]],
                          "destination_lon": lon[pairs[:, 1]],
                          "destination_lat": lat[pairs[:, 1]],
                          "departure_time": "2026-11-18T07:10:00", "duration_s": 300.0})
    trips.to_csv(tmp_path / "trips.csv", index=False)
    result = run_cli("evaluate", "--trips", str(tmp_path / "trips.csv"), "--out",
                     str(tmp_path / "eval"), env=cache)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["model"] == str(SHIPPED_MODEL)
    assert RoadGraph.load(metrics["graph"]).identity == bundled_graph.identity
    assert metrics["overall"]["count"] == 10
    turns = run_cli("evaluate", "--model", "freeflow-turns", "--trips",
                    str(tmp_path / "trips.csv"), "--out", str(tmp_path / "turns"), env=cache)
    assert turns.returncode == 0, turns.stderr
    assert "freeflow-turns: MAPE" in turns.stdout


def test_serve_with_no_arguments_serves_the_bundled_city_with_the_shipped_model(cache,
                                                                                tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), **cache, "NARETA_PORT": str(port)}
    for name in ("NARETA_GRAPH_DIR", "NARETA_MODEL_DIR"):
        env.pop(name)
    with open(tmp_path / "serve.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "nareta.cli", "serve"], cwd=REPO,
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://127.0.0.1:{port}", process)
        ready = httpx.get(f"http://127.0.0.1:{port}/ready").json()
    finally:
        process.terminate()
        process.wait(timeout=15)
    shipped = json.loads((SHIPPED_MODEL / MANIFEST_NAME).read_text())
    assert ready["model"] == "nar_eta"
    assert ready["graph_identity"] == shipped["graph_identity"]
