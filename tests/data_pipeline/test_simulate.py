"""A real, short SUMO run on the Helsinki extract, plus the pieces around it."""

import json

import numpy as np
import pandas as pd
import pytest

from data_pipeline.simulate import (
    GridlockError,
    SimulationConfig,
    SimulationReport,
    _check_gridlock,
    simulate,
)
from data_pipeline.sumo_net import SegmentMapper, junction_osm_nodes
from data_pipeline.trips import read_trips
from nareta.errors import InputError
from tests.conftest import run_cli, shared_extract
from tests.graph_fixtures import road_graph_from_paths

pytest.importorskip("sumo")


@pytest.fixture(scope="module")
def helsinki(tmp_path_factory):
    from data_pipeline.ingest import ingest_osm

    osm = shared_extract("helsinki")
    graph_dir = tmp_path_factory.mktemp("graphs") / "helsinki"
    ingest_osm(osm).graph.save(graph_dir)
    return osm, graph_dir


def test_cli_simulates_maps_routes_and_writes_manifest(helsinki, tmp_path):
    osm, graph_dir = helsinki
    out = tmp_path / "trips.parquet"
    result = run_cli(
        "simulate",
        str(osm),
        "--out",
        str(out),
        "--graph",
        str(graph_dir),
        "--hours",
        "0.05",
        "--profile",
        "rush",
        "--rate",
        "1500",
        "--seed",
        "3",
        "--start",
        "2026-11-18T07:00",
        "--no-progress",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "trips written" in result.stdout and "teleported" in result.stdout
    table = pd.read_parquet(out)
    assert len(table) >= 40
    for column in (
        "origin_lon",
        "origin_lat",
        "destination_lon",
        "destination_lat",
        "departure_time",
        "duration_s",
        "trip_id",
        "route",
    ):
        assert column in table.columns
    assert (table["duration_s"] > 0).all()
    times = pd.to_datetime(table["departure_time"])
    assert times.min() >= pd.Timestamp("2026-11-18T07:00")
    assert times.max() < pd.Timestamp("2026-11-18T07:05")  # insertion may be delayed
    assert table["origin_lon"].between(24.93, 24.96).all()
    assert table["origin_lat"].between(60.16, 60.18).all()

    from data_pipeline.road_graph import RoadGraph

    graph = RoadGraph.load(graph_dir)
    source, target = graph["edge_source"], graph["edge_target"]
    for route in table["route"]:
        route = np.asarray(route)
        assert route.min() >= 0 and route.max() < graph.num_segments
        np.testing.assert_array_equal(target[route[:-1]], source[route[1:]])

    manifest = json.loads((tmp_path / "trips.parquet.manifest.json").read_text())
    assert manifest["seed"] == 3
    assert manifest["library_versions"]["eclipse-sumo"]
    assert manifest["report"]["mapping_rate"] >= 0.95
    assert manifest["report"]["teleport_share"] < 0.05
    assert "--hours" in manifest["command"]
    # the trip table reads back through the validating reader without rejections
    trips = read_trips(out)
    assert len(trips) == len(table) and not trips.rejected

    again = run_cli(
        "simulate",
        str(osm),
        "--out",
        str(out),
        "--graph",
        str(graph_dir),
        "--hours",
        "0.05",
        "--no-progress",
    )
    assert again.returncode == 2 and "already exists" in again.stderr


def test_same_seed_same_trips(helsinki):
    from data_pipeline.road_graph import RoadGraph

    osm, graph_dir = helsinki
    graph = RoadGraph.load(graph_dir)
    config = SimulationConfig(hours=0.03, profile="flat", rate_per_hour=1200, seed=7)
    first, report = simulate(osm, graph, config=config, progress=False, log=lambda *_: None)
    second, _ = simulate(osm, graph, config=config, progress=False, log=lambda *_: None)
    assert report.trips_written == len(first) > 10
    pd.testing.assert_frame_equal(first.drop(columns=["route"]), second.drop(columns=["route"]))


def test_cli_refuses_bad_arguments(helsinki, tmp_path):
    osm, graph_dir = helsinki
    bad_start = run_cli(
        "simulate",
        str(osm),
        "--out",
        str(tmp_path / "t.parquet"),
        "--graph",
        str(graph_dir),
        "--start",
        "tomorrow morning",
    )
    assert bad_start.returncode == 2 and "ISO-8601" in bad_start.stderr
    bad_out = run_cli(
        "simulate", str(osm), "--out", str(tmp_path / "t.csv"), "--graph", str(graph_dir)
    )
    assert bad_out.returncode == 2 and ".parquet" in bad_out.stderr
    missing = run_cli(
        "simulate", str(tmp_path / "nope.osm.pbf"), "--out", str(tmp_path / "t.parquet")
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_gridlock_fails_loudly():
    config = SimulationConfig()
    _check_gridlock(SimulationReport(inserted=1000, teleported_vehicles=10, unfinished=5), config)
    with pytest.raises(GridlockError, match="gridlocked"):
        _check_gridlock(SimulationReport(inserted=1000, teleported_vehicles=80), config)
    with pytest.raises(GridlockError, match="gridlocked"):
        _check_gridlock(SimulationReport(inserted=1000, unfinished=300), config)
    with pytest.raises(GridlockError, match="no vehicle"):
        _check_gridlock(SimulationReport(inserted=0), config)


def test_demand_profiles():
    rush = SimulationConfig(hours=3, profile="rush", rate_per_hour=1000).periods()
    assert [p.vehicles_per_hour for p in rush] == pytest.approx([1000, 2400, 1400])
    assert rush[-1].end_s == 3 * 3600
    flat = SimulationConfig(hours=2, profile="flat", rate_per_hour=1000).periods()
    assert len(flat) == 1 and flat[0].end_s == 7200
    with pytest.raises(InputError):
        simulate("x.osm", None, config=SimulationConfig(profile="weekend"))


def test_mapper_chains_segments_and_closes_joined_junction_gaps():
    # OSM nodes 1-2-3-4-5 on a line; the graph has segments 1->2->3 (one segment through
    # node 2), 3->4 and 4->5. SUMO joined nodes 3 and 4 into one junction.
    lonlat = {i: (i * 0.001, 0.0) for i in range(1, 6)}
    graph = road_graph_from_paths(lonlat, [((1, 2, 3), 10), ((3, 4), 11), ((4, 5), 12)])
    mapper = SegmentMapper(graph)
    joins = {3: [3, 4], 4: [3, 4]}
    assert junction_osm_nodes("cluster_3_4", joins) == [3, 4]
    assert junction_osm_nodes("2", joins) == [2]
    # a SUMO edge between OSM nodes 1 and 2 lies inside the first segment
    assert mapper.map_edge([1], [2]) == (0,)
    # an edge from 1 into the joined junction, then one out of it towards 5
    into = mapper.map_edge([1], junction_osm_nodes("cluster_3_4", joins))
    out_of = mapper.map_edge(junction_osm_nodes("cluster_3_4", joins), [5])
    assert into == (0,) and out_of == (2,)
    assert mapper.join_route([into, out_of]) == [0, 1, 2]  # gap 3->4 closed
    assert mapper.map_edge([5], [1]) == ()  # no way back
    assert mapper.join_route([into, ()]) is None


def test_osm_xml_gives_split_way_pieces_fresh_ids(tmp_path):
    import xml.etree.ElementTree as ET

    from data_pipeline.osm_reader import OsmData, OsmWay, TurnRestriction
    from data_pipeline.sumo_net import write_osm_xml

    data = OsmData(
        node_lonlat={i: (0.001 * i, 0.0) for i in range(1, 6)},
        node_tags={2: {"highway": "traffic_signals"}},
        ways=[
            OsmWay(7, [1, 2], {"highway": "residential"}),
            OsmWay(7, [4, 5], {"highway": "residential"}),  # piece after a clipped gap
            OsmWay(9, [2, 3], {"highway": "primary", "name": "A & B <st>"}),
        ],
        restrictions=[TurnRestriction(1, "no_left_turn", 9, 2, 7)],
    )
    summary = write_osm_xml(data, tmp_path / "drive.osm")
    root = ET.parse(tmp_path / "drive.osm").getroot()
    ids = [way.get("id") for way in root.iter("way")]
    assert len(ids) == len(set(ids)) == 3
    assert summary.way_origin[int(ids[1])] == 7 and ids[1] != "7"
    assert root.find("node[@id='2']/tag").get("v") == "traffic_signals"
    assert summary.restrictions == 0  # from/to way 7 is ambiguous after the split


def test_days_differ_write_a_feed_and_train_a_live_model(helsinki, tmp_path):
    """--days: weekdays with their own demand scale, seed and incident, the SUMO edgeData
    feed beside the trips (every row maps onto the graph), and `nareta train --traffic`
    on it gives a model that takes live traffic."""
    from data_pipeline.road_graph import RoadGraph
    from data_pipeline.traffic import load_feed
    from models.inference.registry import load_model

    osm, graph_dir = helsinki
    out = tmp_path / "days.parquet"
    result = run_cli(
        "simulate", str(osm), "--out", str(out), "--graph", str(graph_dir), "--hours", "0.15",
        "--rate", "1500", "--days", "2", "--demand-scales", "0.6,1.4", "--incidents", "1",
        "--seed", "5", "--start", "2026-11-20T07:00", "--no-progress", timeout=240,
    )
    assert result.returncode == 0, result.stderr
    table = pd.read_parquet(out)
    assert sorted(table["day"].unique()) == [0, 1]
    counts = table["day"].value_counts()
    assert counts[1] > counts[0]  # 1.4x the demand of day 0
    days = pd.to_datetime(table["departure_time"]).dt.date.unique()
    assert [str(d) for d in sorted(days)] == ["2026-11-20", "2026-11-23"]  # Fri, then Mon
    manifest = json.loads((tmp_path / "days.parquet.manifest.json").read_text())
    assert [d["demand_scale"] for d in manifest["days"]] == [0.6, 1.4]
    assert [d["seed"] for d in manifest["days"]] == [5, 6]
    for day in manifest["days"]:
        (incident,) = day["incidents"]
        assert incident["kind"] in ("lane", "road") and incident["segments"]
        assert 20 * 60 <= incident["end_s"] - incident["begin_s"] <= 60 * 60
    feed_path = tmp_path / "days.traffic.parquet"
    feed = pd.read_parquet(feed_path)
    assert {"window_start", "osm_start_node_id", "osm_end_node_id", "speed_kph_mean",
            "sample_count"} <= set(feed.columns)
    assert (feed["speed_kph_mean"] > 0).all() and (feed["speed_kph_mean"] <= 250).all()
    starts = pd.to_datetime(feed["window_start"])
    assert ((starts.dt.minute % 5 == 0) & (starts.dt.second == 0)).all()
    graph = RoadGraph.load(graph_dir)
    observations, report = load_feed(feed_path, graph)
    assert report.used == len(feed) and not report.rejected  # every row maps
    assert len(observations) == len(feed)

    model_dir = tmp_path / "live_model"
    trained = run_cli(
        "train", "--graph", str(graph_dir), "--trips", str(out), "--traffic", str(feed_path),
        "--out", str(model_dir), "--epochs", "1", "--max-minutes", "0.2",
        "--holdout-hours", "0", "--no-progress", timeout=300,
    )
    assert trained.returncode == 0, trained.stderr
    model = load_model(model_dir, graph)
    assert model.uses_traffic and model.config.traffic and not model.config.turn_time
    assert model.manifest["training"]["train_config"]["validation"] == "latest"
