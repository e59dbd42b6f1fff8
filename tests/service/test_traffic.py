"""Live traffic over HTTP, against real servers on the clipped Helsinki graph: the feed file
loaded at start-up and reloaded when it changes, POST / GET / DELETE /v1/traffic, what each
answer says about the traffic it used, fallback, and bad feeds (4xx with counts, never 500).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time

import httpx
import numpy as np
import pandas as pd
import pytest

from data_pipeline.traffic import segment_feed_rows, write_feed
from models.inference.live import TrafficStore
from models.inference.predictor import Predictor
from tests.conftest import REPO
from tests.graph_fixtures import longest_free_flow_trip
from tests.service.conftest import free_port, serve

WINDOW = "2026-11-18T08:00"
NOW = "2026-11-18T08:10:00"
DEPARTURE = "2026-11-18T08:12:00"


@pytest.fixture(scope="module")
def city(tmp_path_factory, clipped_osm):
    """(graph directory, graph, origin, destination) on the clipped Helsinki extract."""
    from data_pipeline.ingest import ingest_osm

    root = tmp_path_factory.mktemp("traffic-service")
    graph = ingest_osm(clipped_osm).graph
    graph.save(root / "graph")
    origin, destination, _ = longest_free_flow_trip(graph)
    return root / "graph", graph, origin, destination


def feed_rows(graph, factor: float, windows=(WINDOW, "2026-11-18T08:05")) -> pd.DataFrame:
    """Whole-segment rows for every segment at ``factor`` x its free-flow speed."""
    free_kph = graph["length_m"] / graph["free_flow_s"] * 3.6
    segments = np.tile(np.arange(graph.num_segments), len(windows))
    stamps = [pd.Timestamp(w) for w in windows for _ in range(graph.num_segments)]
    return pd.DataFrame(segment_feed_rows(graph, segments, free_kph[segments] * factor, stamps,
                                          np.full(len(segments), 3)))


def json_rows(frame: pd.DataFrame) -> list[dict]:
    return frame.to_dict(orient="records")


def expected_eta(graph_dir, feed, origin, destination, departure) -> float:
    """The same query answered in this process with the same feed."""
    predictor = Predictor.load(graph_dir, "live-scalar", traffic=TrafficStore())
    if feed is not None:
        snapshot, _ = predictor.traffic.load(predictor.graph, feed)
        predictor.set_traffic(snapshot)
    when = None if departure is None else dt.datetime.fromisoformat(departure)
    return predictor.eta(origin, destination, when).eta_s


def pt(lon_lat) -> dict:
    return {"lon": float(lon_lat[0]), "lat": float(lon_lat[1])}


@pytest.fixture(scope="module")
def live(city, tmp_path_factory):
    """A live-scalar server without a feed file (the tests post theirs)."""
    graph_dir = city[0]
    log = tmp_path_factory.mktemp("traffic-live") / "server.log"
    with serve(graph_dir, log, NARETA_MODEL_DIR="live-scalar", NARETA_MAX_TRAFFIC_ROWS="200",
               NARETA_TRAFFIC_MAX_AGE_S="1800") as running, \
            httpx.Client(base_url=running.base_url, timeout=30) as client:
        yield client


def post(client, frame_or_rows, **body) -> httpx.Response:
    rows = frame_or_rows if isinstance(frame_or_rows, list) else json_rows(frame_or_rows)
    # json.dumps writes NaN (as Python's and the server's JSON readers accept it)
    return client.post("/v1/traffic", content=json.dumps({"rows": rows, **body}),
                       headers={"content-type": "application/json"})


# --------------------------------------------------------------------------- file feed
def test_feed_file_at_start_up_and_reloaded_when_it_changes(city, tmp_path):
    graph_dir, graph, origin, destination = city
    feeds = tmp_path / "feeds"
    feeds.mkdir()
    write_feed(feed_rows(graph, 0.5), feeds / "now.parquet")
    with serve(graph_dir, tmp_path / "server.log", NARETA_MODEL_DIR="live-scalar",
               NARETA_TRAFFIC_PATH=str(feeds), NARETA_TRAFFIC_RELOAD_S="0.5") as running, \
            httpx.Client(base_url=running.base_url, timeout=30) as client:
        status = client.get("/v1/traffic").json()
        snapshot = status["snapshot"]
        assert status["model_uses_traffic"] and status["max_age_s"] == 1800
        assert snapshot["source"] == f"file {feeds}"
        assert snapshot["as_of"] == NOW and snapshot["first_window"] == WINDOW + ":00"
        assert snapshot["rows"] == 2 * graph.num_segments and snapshot["windows"] == 2
        assert snapshot["observed_segments"] == graph.num_segments
        assert snapshot["report"] == {"rows": 2 * graph.num_segments,
                                      "used": 2 * graph.num_segments, "rejected": {}}
        assert status["now"] == {"live": True, "reason": "live", "as_of": NOW,
                                 "snapshot": snapshot["key"]}
        query = {"origin": pt(origin), "destination": pt(destination)}
        answer = client.post("/v1/eta", json=query).json()
        assert answer["traffic_as_of"] == NOW  # no departure time: the feed's 'now'
        assert answer["eta_s"] == pytest.approx(
            expected_eta(graph_dir, feeds, origin, destination, None), abs=0.01)

        # a new file (written aside, then renamed in) replaces the snapshot
        write_feed(feed_rows(graph, 0.25, windows=("2026-11-18T08:10",)),
                   feeds / "later.parquet")
        deadline = time.monotonic() + 30
        while client.get("/v1/traffic").json()["snapshot"]["key"] == snapshot["key"]:
            assert time.monotonic() < deadline, "the changed feed was not reloaded"
            time.sleep(0.3)
        reloaded = client.get("/v1/traffic").json()["snapshot"]
        assert reloaded["as_of"] == "2026-11-18T08:15:00" and reloaded["windows"] == 3
        slower = client.post("/v1/eta", json=query).json()
        assert slower["traffic_as_of"] == "2026-11-18T08:15:00"
        assert slower["eta_s"] == pytest.approx(2 * answer["eta_s"], rel=1e-3)

        # an unreadable file is logged and the current snapshot kept
        (feeds / "broken.parquet").write_bytes(b"not parquet")
        time.sleep(2.0)
        assert client.get("/v1/traffic").json()["snapshot"]["key"] == reloaded["key"]
        assert client.post("/v1/eta", json=query).json()["eta_s"] == slower["eta_s"]
    assert "was not loaded" in (tmp_path / "server.log").read_text()


# --------------------------------------------------------------------------- answers
def test_answers_say_which_traffic_they_used(live, city):
    graph_dir, graph, origin, destination = city
    assert live.delete("/v1/traffic").json()["snapshot"] is None
    query = {"origin": pt(origin), "destination": pt(destination), "departure_time": DEPARTURE}
    historical = live.post("/v1/eta", json=query).json()
    assert historical["traffic_as_of"] is None
    assert historical["traffic"] == {"live": False, "reason": "no traffic feed loaded",
                                     "as_of": None, "snapshot": None}
    assert historical["eta_s"] == pytest.approx(
        expected_eta(graph_dir, None, origin, destination, DEPARTURE), abs=0.01)

    posted = post(live, feed_rows(graph, 0.5), now=NOW)
    assert posted.status_code == 200, posted.text
    body = posted.json()
    key = body["snapshot"]["key"]
    assert body["report"] == {"rows": 2 * graph.num_segments, "used": 2 * graph.num_segments,
                              "rejected": {}}
    assert body["mode"] == "replace" and body["feed_now"] == NOW
    assert body["snapshot"]["source"] == "POST /v1/traffic"
    traffic = {"live": True, "reason": "live", "as_of": NOW, "snapshot": key}
    answer = live.post("/v1/eta", json=query).json()
    assert answer["traffic"] == traffic and answer["traffic_as_of"] == NOW
    assert answer["eta_s"] == pytest.approx(2 * historical["eta_s"], rel=1e-3)
    for path, extra in (("/v1/route", {}), ("/v1/isochrone", {"max_seconds": 60})):
        body = {k: v for k, v in query.items() if extra == {} or k != "destination"}
        reply = live.post(path, json={**body, **extra}).json()
        assert reply["traffic"] == traffic and reply["traffic_as_of"] == NOW, path
    matrix = live.post("/v1/matrix", json={"origins": [pt(origin), pt(destination)],
                                           "departure_time": DEPARTURE}).json()
    assert matrix["traffic"] == traffic
    assert matrix["durations_s"][0][1] == pytest.approx(answer["eta_s"], abs=0.01)

    # long after the newest observation: the historical answer, and why
    late = live.post("/v1/eta", json={**query, "departure_time": "2026-11-18T10:00"}).json()
    assert late["traffic_as_of"] is None and late["traffic"]["live"] is False
    assert "30 min" in late["traffic"]["reason"]
    assert late["eta_s"] == pytest.approx(historical["eta_s"], abs=0.01)


def test_a_new_snapshot_never_serves_a_stale_answer(live, city):
    _, graph, origin, destination = city
    query = {"origin": pt(origin), "destination": pt(destination), "departure_time": DEPARTURE}

    def runs() -> float:
        text = live.get("/metrics").text
        return float(next(line.split()[-1] for line in text.splitlines()
                          if line.startswith("nareta_model_runs_total")))

    first = post(live, feed_rows(graph, 0.5), now=NOW).json()["snapshot"]["key"]
    fast = live.post("/v1/eta", json=query).json()
    before = runs()
    assert live.post("/v1/eta", json=query).json()["eta_s"] == fast["eta_s"]
    assert runs() == before  # cached
    second = post(live, feed_rows(graph, 0.25), now=NOW).json()["snapshot"]["key"]
    assert second != first
    slow = live.post("/v1/eta", json=query).json()
    assert slow["traffic"]["snapshot"] == second
    assert slow["eta_s"] == pytest.approx(2 * fast["eta_s"], rel=1e-3)
    assert runs() > before  # a new run for the new snapshot
    # back to the first feed: the first answer again
    assert post(live, feed_rows(graph, 0.5), now=NOW).json()["snapshot"]["key"] == first
    assert live.post("/v1/eta", json=query).json()["eta_s"] == fast["eta_s"]


def test_osrm_answers_keep_their_body_and_name_the_snapshot_in_headers(live, city):
    _, graph, origin, destination = city
    post(live, feed_rows(graph, 0.5), now=NOW)
    coordinates = f"{origin[0]},{origin[1]};{destination[0]},{destination[1]}"
    route = live.get(f"/route/v1/driving/{coordinates}")
    assert route.status_code == 200
    assert route.headers["X-Nareta-Traffic"] == "live"
    assert route.headers["X-Nareta-Traffic-As-Of"] == NOW
    assert set(route.json()) == {"code", "routes", "waypoints"}
    table = live.get(f"/table/v1/driving/{coordinates}")
    assert table.headers["X-Nareta-Traffic"] == "live"
    assert set(table.json()) == {"code", "durations", "sources", "destinations"}
    live.delete("/v1/traffic")
    route = live.get(f"/route/v1/driving/{coordinates}")
    assert route.headers["X-Nareta-Traffic"] == "historical; no traffic feed loaded"
    assert "X-Nareta-Traffic-As-Of" not in route.headers


def test_merge_mode_keeps_earlier_windows(live, city):
    _, graph, _, _ = city
    n = graph.num_segments
    post(live, feed_rows(graph, 0.5, windows=(WINDOW,)), now=NOW)
    merged = post(live, feed_rows(graph, 0.5, windows=("2026-11-18T08:05",)), now=NOW,
                  mode="merge").json()["snapshot"]
    assert (merged["rows"], merged["windows"], merged["as_of"]) == (2 * n, 2, NOW)
    again = post(live, feed_rows(graph, 0.8, windows=("2026-11-18T08:05",)), now=NOW,
                 mode="merge").json()["snapshot"]
    assert again["rows"] == 2 * n and again["key"] != merged["key"]  # newer rows win
    replaced = post(live, feed_rows(graph, 0.5, windows=("2026-11-18T08:05",)),
                    now=NOW).json()["snapshot"]
    assert (replaced["rows"], replaced["windows"]) == (n, 1)


# --------------------------------------------------------------------------- bad feeds
def test_bad_rows_are_counted_and_the_rest_used(live, city):
    _, graph, _, _ = city
    good = json_rows(feed_rows(graph, 0.5, windows=(WINDOW,)))[:10]
    good[1]["speed_kph_stddev"] = 4.0  # other columns are ignored, as in feed files
    row = good[0]
    bad = [{**row, "osm_start_node_id": 1}, {**row, "speed_kph_mean": -3},
           {**row, "speed_kph_mean": 0}, {**row, "speed_kph_mean": float("nan")},
           {**row, "speed_kph_mean": 300}, {**row, "window_start": "soon"},
           {**row, "window_start": "2026-11-18T09:00"}, dict(row),
           {k: v for k, v in row.items() if k != "osm_end_node_id"}]
    reply = post(live, good + bad, now=NOW)
    assert reply.status_code == 200, reply.text
    report = reply.json()["report"]
    assert report == {"rows": 19, "used": 10, "rejected": {
        "node pair matches no segment of this road graph": 1,
        "speed_kph_mean missing, NaN, zero or negative": 3,
        "speed_kph_mean above 250 km/h": 1,
        "window_start not ISO-8601 or epoch seconds in 1970..2100": 1,
        "window in the future": 1,
        "duplicate row (same window, nodes and way)": 1,
        "node id missing or not an integer": 1}}
    assert reply.json()["snapshot"]["observed_segments"] == 10


def test_nothing_usable_is_a_4xx_with_counts(live, city):
    _, graph, _, _ = city
    key = post(live, feed_rows(graph, 0.5), now=NOW).json()["snapshot"]["key"]
    rows = json_rows(feed_rows(graph, 0.5, windows=(WINDOW,)))
    # a feed for another city: no node pair on this graph
    foreign = [{**r, "osm_start_node_id": r["osm_start_node_id"] + 10**11} for r in rows]
    reply = post(live, foreign, now=NOW)
    assert reply.status_code == 400
    assert reply.json()["report"] == {"rows": len(rows), "used": 0, "rejected": {
        "node pair matches no segment of this road graph": len(rows)}}
    assert "another city" in reply.json()["message"]
    # every window in the future of the wall clock (no 'now' given)
    future = [{**r, "window_start": "2099-01-01T08:00:00"} for r in rows]
    reply = post(live, future)
    assert reply.status_code == 400
    assert reply.json()["report"]["rejected"] == {"window in the future": len(rows)}
    # ... and of a replay's 'now'
    reply = post(live, rows, now="2026-11-18T07:00:00")
    assert reply.status_code == 400 and reply.json()["code"] == "InvalidValue"
    for body, status in (({"rows": []}, 400),
                         ({"rows": [{"speed_kph_mean": 30}]}, 400),
                         ({"rows": [{"speed": 30}]}, 400),  # other keys: ignored
                         ({"rows": "all of them"}, 422),
                         ({"rows": rows, "mode": "append"}, 422),
                         ({"rows": rows, "now": "teatime"}, 422),
                         ({"rows": rows * 3}, 413)):
        reply = live.post("/v1/traffic", json=body)
        assert reply.status_code == status, (body if len(str(body)) < 200 else status,
                                             reply.text)
        assert reply.json()["code"] in ("InvalidValue", "TooBig")
    assert "missing column" in live.post("/v1/traffic", json={
        "rows": [{"speed_kph_mean": 30}]}).json()["message"]
    assert "NARETA_MAX_TRAFFIC_ROWS" in live.post("/v1/traffic",
                                                  json={"rows": rows * 3}).json()["message"]
    # none of these touched the snapshot
    assert live.get("/v1/traffic").json()["snapshot"]["key"] == key


# --------------------------------------------------------------------------- no traffic
def test_a_model_without_live_traffic(city, tmp_path):
    graph_dir, graph, origin, destination = city
    with serve(graph_dir, tmp_path / "server.log") as running, \
            httpx.Client(base_url=running.base_url, timeout=30) as client:
        status = client.get("/v1/traffic").json()
        assert status == {"model_uses_traffic": False, "max_age_s": 1800.0, "snapshot": None,
                          "now": None}
        reply = post(client, feed_rows(graph, 0.5))
        assert reply.status_code == 409 and reply.json()["code"] == "NoTrafficModel"
        answer = client.post("/v1/eta", json={"origin": pt(origin),
                                              "destination": pt(destination)}).json()
        assert answer["traffic"] is None and answer["traffic_as_of"] is None
        coordinates = f"{origin[0]},{origin[1]};{destination[0]},{destination[1]}"
        assert "X-Nareta-Traffic" not in client.get(f"/route/v1/driving/{coordinates}").headers


def _serve_exit(graph_dir, log, **settings) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "NARETA_GRAPH_DIR": str(graph_dir),
           "NARETA_PORT": str(free_port()), **settings}
    with open(log, "wb") as out:
        process = subprocess.run([sys.executable, "-m", "nareta.cli", "serve"], cwd=REPO,
                                 env=env, stdout=out, stderr=subprocess.STDOUT, timeout=120)
    return process.returncode, log.read_text()


def test_serve_refuses_a_feed_it_cannot_use(city, tmp_path):
    graph_dir, graph, _, _ = city
    write_feed(feed_rows(graph, 0.5), tmp_path / "feed.parquet")
    code, log = _serve_exit(graph_dir, tmp_path / "a.log",
                            NARETA_TRAFFIC_PATH=str(tmp_path / "feed.parquet"))
    assert code != 0 and "takes no live traffic" in log
    code, log = _serve_exit(graph_dir, tmp_path / "b.log", NARETA_MODEL_DIR="live-scalar",
                            NARETA_TRAFFIC_PATH=str(tmp_path / "missing.parquet"))
    assert code == 2 and "no such traffic feed" in log
    foreign = feed_rows(graph, 0.5)
    foreign["osm_start_node_id"] += 10**11
    write_feed(foreign, tmp_path / "foreign.parquet")
    code, log = _serve_exit(graph_dir, tmp_path / "c.log", NARETA_MODEL_DIR="live-scalar",
                            NARETA_TRAFFIC_PATH=str(tmp_path / "foreign.parquet"))
    assert code != 0 and "no usable row" in log


def test_traffic_routes_need_the_api_key(keyed_server):
    for method in ("GET", "POST", "DELETE"):
        reply = httpx.request(method, f"{keyed_server}/v1/traffic",
                              json={"rows": []} if method == "POST" else None)
        assert reply.status_code == 401, method
    reply = httpx.get(f"{keyed_server}/v1/traffic", headers={"X-API-Key": "s3cret"})
    assert reply.status_code == 200 and reply.json()["model_uses_traffic"] is False


def test_a_learned_model_with_live_inputs(city, tmp_path):
    """An (untrained) EtaModel that takes live traffic, saved and served: the feed changes
    its answer; with the feed expired it gives its historical answer again."""
    import torch

    from models.eta.model import EtaConfig, EtaModel
    from models.processor.model import load_pretrained

    graph_dir, graph, origin, destination = city
    shipped = REPO / "artifacts_shipped" / "processor"
    torch.manual_seed(0)
    processor, weight_encoder, manifest = load_pretrained(shipped)
    EtaModel(graph, processor, weight_encoder, manifest, config=EtaConfig(traffic=True)).save(
        tmp_path / "model", processor_dir=shipped, seed=0)
    with serve(graph_dir, tmp_path / "server.log", NARETA_MODEL_DIR=str(tmp_path / "model")
               ) as running, httpx.Client(base_url=running.base_url, timeout=60) as client:
        query = {"origin": pt(origin), "destination": pt(destination),
                 "departure_time": DEPARTURE}
        historical = client.post("/v1/eta", json=query).json()
        assert historical["model"] == "nar_eta" and historical["traffic"]["live"] is False
        assert post(client, feed_rows(graph, 0.3), now=NOW).status_code == 200
        live = client.post("/v1/eta", json=query).json()
        assert live["traffic_as_of"] == NOW
        assert live["eta_s"] > 1.5 * historical["eta_s"]  # the feed's prior, gain 1
        later = {**query, "departure_time": "2026-11-18T11:00"}
        expired = client.post("/v1/eta", json=later).json()
        assert expired["traffic"]["live"] is False
        client.delete("/v1/traffic")
        assert client.post("/v1/eta", json=later).json()["eta_s"] == expired["eta_s"]
