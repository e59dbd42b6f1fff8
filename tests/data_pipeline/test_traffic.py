"""The traffic feed: mapping rows onto segments, validation, probe feeds, the CLI.

Hand-built graphs put nodes on one meridian, so piece lengths are exact multiples of each
other and the length-weighted harmonic means below can be checked by hand.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from data_pipeline.traffic import (
    FeedError,
    load_feed,
    map_feed,
    probe_feed,
    read_feed_files,
    segment_feed_rows,
    validate_feed,
    write_feed,
)
from tests.conftest import run_cli
from tests.graph_fixtures import road_graph_from_paths

LON = 24.9
#: OSM node -> (lon, lat): 1 -> 2 is 0.001 deg of latitude, 2 -> 3 twice that
NODES = {1: (LON, 60.000), 2: (LON, 60.001), 3: (LON, 60.003), 4: (LON, 60.004),
         5: (LON + 0.001, 60.0005), 6: (LON, 60.005)}


@pytest.fixture(scope="module")
def graph():
    """Segment 0: 1-2-3 (way 10), 1: 3-4 (way 11), 2: 1-5-2 (way 20, parallel to the first
    piece of segment 0), 3: 4-6 (way 12)."""
    return road_graph_from_paths(NODES, [((1, 2, 3), 10), ((3, 4), 11), ((1, 5, 2), 20),
                                         ((4, 6), 12)])


def rows(*items, window="2026-11-18T08:00:00"):
    """Feed rows from (start, end, speed[, way])."""
    out = []
    for item in items:
        start, end, speed = item[:3]
        row = {"window_start": window, "osm_start_node_id": start, "osm_end_node_id": end,
               "speed_kph_mean": speed}
        if len(item) > 3:
            row["osm_way_id"] = item[3]
        out.append(row)
    return pd.DataFrame(out)


def mapped(graph, frame, **options):
    valid, report = validate_feed(frame, **options)
    return map_feed(graph, valid, report)


def test_whole_segment_and_one_piece_map_onto_the_segment(graph):
    observations, report = mapped(graph, rows((1, 3, 40.0), (3, 4, 25.0)))
    assert report.used == 2 and not report.rejected
    assert observations.segment.tolist() == [0, 1]
    assert observations.speed_kph.tolist() == pytest.approx([40.0, 25.0])
    # one OSM node pair inside a longer segment
    observations, _ = mapped(graph, rows((2, 3, 33.0)))
    assert observations.segment.tolist() == [0]
    assert observations.speed_kph.tolist() == pytest.approx([33.0])


def test_two_pieces_of_one_segment_combine_by_length_weighted_harmonic_mean(graph):
    # pieces of 1 and 2 length units at 30 and 60 km/h: 3 units in 1/30 + 2/60 = 1/15 h
    # -> 45 km/h (the arithmetic mean would say 50, the unweighted harmonic mean 40)
    observations, report = mapped(graph, rows((1, 2, 30.0, 10), (2, 3, 60.0)))
    assert report.used == 2
    assert observations.segment.tolist() == [0]
    assert observations.speed_kph[0] == pytest.approx(45.0, rel=1e-6)
    # samples add up
    assert observations.samples.tolist() == [2.0]


def test_parallel_ways_are_told_apart_by_way_id(graph):
    # 1 -> 2 is the first piece of segment 0 (way 10) and the whole of segment 2 (way 20)
    plain, _ = mapped(graph, rows((1, 2, 20.0)))
    assert plain.segment.tolist() == [0]  # without a way: the shortest run (the direct piece)
    on_way_20, _ = mapped(graph, rows((1, 2, 20.0, 20)))
    assert on_way_20.segment.tolist() == [2]
    on_way_10, _ = mapped(graph, rows((1, 2, 20.0, 10)))
    assert on_way_10.segment.tolist() == [0]


def test_rows_matching_nothing_are_counted(graph):
    # 3 -> 1 runs against segment 0; 1 -> 4 spans two segments; 77 is no node of the graph
    observations, report = mapped(graph, rows((1, 3, 30.0), (3, 1, 30.0), (1, 4, 30.0),
                                              (77, 78, 30.0)))
    assert report.used == 1 and len(observations) == 1
    assert report.rejected == {"node pair matches no segment of this road graph": 3}


def test_bad_rows_are_counted_by_reason(graph):
    frame = rows((1, 3, 30.0), (1, 3, -5.0), (1, 3, 0.0), (1, 3, float("nan")), (1, 3, 251.0),
                 (3, 4, 20.0), (3, 4, 20.0), (6, 4, 20.0))
    frame.loc[len(frame)] = {"window_start": "yesterday", "osm_start_node_id": 1,
                             "osm_end_node_id": 3, "speed_kph_mean": 10.0}
    frame = frame.astype(object)
    frame.loc[len(frame)] = {"window_start": "2026-11-18T08:00:00", "osm_start_node_id": "x",
                             "osm_end_node_id": 3, "speed_kph_mean": 10.0}
    frame.loc[len(frame)] = {"window_start": "2026-11-18T09:00:00", "osm_start_node_id": 1,
                             "osm_end_node_id": 3, "speed_kph_mean": 10.0}
    now = (pd.Timestamp("2026-11-18T08:30:00") - pd.Timestamp(0)).total_seconds()
    observations, report = mapped(graph, frame, now_s=now)
    assert report.rows == 11
    assert report.used == 2  # (1, 3) and one (3, 4)
    assert report.rejected == {
        "speed_kph_mean missing, NaN, zero or negative": 3,
        "speed_kph_mean above 250 km/h": 1,
        "duplicate row (same window, nodes and way)": 1,
        "node pair matches no segment of this road graph": 1,
        "window_start not ISO-8601 or epoch seconds in 1970..2100": 1,
        "node id missing or not an integer": 1,
        "window in the future": 1,
    }
    assert sum(report.rejected.values()) + report.used == report.rows


def test_epoch_seconds_and_offsets_are_the_citys_local_clock(graph):
    # 06:00 UTC is 08:00 in Helsinki in November (UTC+2)
    epoch = pd.Timestamp("2026-11-18T06:00:00Z").timestamp()
    frame = pd.concat([rows((1, 3, 30.0), window=epoch),
                       rows((3, 4, 30.0), window="2026-11-18T07:00:00+01:00"),
                       rows((4, 6, 30.0))])
    observations, _ = mapped(graph, frame, timezone="Europe/Helsinki")
    local = (pd.Timestamp("2026-11-18T08:00:00") - pd.Timestamp(0)).total_seconds()
    assert observations.window_s.tolist() == [local] * 3


def test_nothing_usable_raises_with_the_counts(graph):
    with pytest.raises(FeedError, match="no usable row") as error:
        load_feed(rows((77, 78, 30.0), (1, 3, -1.0)), graph)
    assert "node pair matches no segment" in str(error.value)
    assert "zero or negative" in str(error.value)
    with pytest.raises(FeedError, match="missing column"):
        load_feed(pd.DataFrame({"window_start": [], "speed_kph_mean": []}), graph)
    with pytest.raises(FeedError, match="missing column"):
        load_feed(pd.DataFrame(), graph)


def test_feed_files_round_trip_and_clear_errors(graph, tmp_path):
    frame = pd.DataFrame(segment_feed_rows(graph, np.array([0, 1]), np.array([30.0, 20.0]),
                                           [pd.Timestamp("2026-11-18T08:00")] * 2,
                                           np.array([3, 4])))
    write_feed(frame, tmp_path / "a.parquet", metadata={"kind": "test"})
    frame.to_csv(tmp_path / "b.csv", index=False)
    both = read_feed_files(tmp_path)
    assert len(both) == 4
    observations, report = load_feed(tmp_path, graph)
    assert report.rejected == {"duplicate row (same window, nodes and way)": 2}
    assert sorted(observations.segment.tolist()) == [0, 1]
    with pytest.raises(FeedError, match="no such file"):
        read_feed_files(tmp_path / "missing.parquet")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(FeedError, match="cannot be read"):
        read_feed_files(tmp_path / "bad.parquet")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FeedError, match="holds no .parquet"):
        read_feed_files(empty)


def test_probe_feed_spreads_each_trip_over_its_route(graph):
    free_flow = graph["free_flow_s"].astype(float)
    length = graph["length_m"].astype(float)
    # trip 1: segments 0, 1 at half the free-flow speed, entering segment 1 in the next window
    # trip 2: segment 1 only, at the free-flow speed, in that same window
    start = pd.Timestamp("2026-11-18T08:04:50")
    duration = 2 * (free_flow[0] + free_flow[1])
    trips = pd.DataFrame({"departure_time": [start, pd.Timestamp("2026-11-18T08:06:00")],
                          "duration_s": [duration, free_flow[1]],
                          "route": [np.array([0, 1]), np.array([1])]})
    feed = probe_feed(graph, trips)
    free_kph = length / free_flow * 3.6
    assert len(feed) == 2
    first = feed.iloc[0]
    assert (first.window_start, first.osm_start_node_id, first.osm_end_node_id) == (
        "2026-11-18T08:00:00", 1, 3)
    assert first.speed_kph_mean == pytest.approx(free_kph[0] / 2, abs=1e-3)
    # segment 1 in 08:05: the two trips' times add up (harmonic mean by samples)
    later = feed[feed.window_start == "2026-11-18T08:05:00"]
    assert later.osm_start_node_id.tolist() == [3] and later.sample_count.tolist() == [2]
    expected = 2 * length[1] / (2 * free_flow[1] + free_flow[1]) * 3.6
    assert later.speed_kph_mean.iloc[0] == pytest.approx(expected, abs=1e-3)
    # the feed maps back onto the segments it came from
    observations, report = load_feed(feed, graph)
    assert report.used == 2 and observations.segment.tolist() == [0, 1]
    with pytest.raises(FeedError, match="route"):
        probe_feed(graph, trips.drop(columns="route"))


# --------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def clipped(tmp_path_factory, clipped_osm):
    """The clipped Helsinki graph, a feed of whole segments and a probe-trip table."""
    from data_pipeline.ingest import ingest_osm

    root = tmp_path_factory.mktemp("traffic-cli")
    graph = ingest_osm(clipped_osm).graph
    graph.save(root / "graph")
    segments = np.arange(graph.num_segments)
    frame = pd.DataFrame(segment_feed_rows(
        graph, segments, np.full(len(segments), 20.0),
        [pd.Timestamp("2026-11-18T08:00")] * len(segments), np.ones(len(segments))))
    write_feed(frame, root / "feed.parquet")
    trips = pd.DataFrame({
        "origin_lon": graph["path_lon"][:5], "origin_lat": graph["path_lat"][:5],
        "destination_lon": graph["path_lon"][5:10], "destination_lat": graph["path_lat"][5:10],
        "departure_time": "2026-11-18T08:01:00", "duration_s": 120.0,
        "route": [[0], [1, 2], [3], [4], [5]]})
    trips.to_parquet(root / "trips.parquet")
    return root, graph


def test_cli_check_reports_and_refuses_an_unusable_feed(clipped, tmp_path):
    root, graph = clipped
    result = run_cli("traffic", "check", str(root / "feed.parquet"), "--graph",
                     str(root / "graph"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["used"] == report["rows"] == graph.num_segments
    assert report["observed_segments"] == graph.num_segments
    assert report["as_of"] == "2026-11-18T08:05:00"
    # a feed for another graph: every node pair is unknown here
    other = pd.read_parquet(root / "feed.parquet")
    other["osm_start_node_id"] += 10**11
    other.to_csv(tmp_path / "other.csv", index=False)
    result = run_cli("traffic", "check", str(tmp_path / "other.csv"), "--graph",
                     str(root / "graph"))
    assert result.returncode == 2
    assert "no usable row" in result.stderr and "another city" in result.stderr
    # windows after --now
    result = run_cli("traffic", "check", str(root / "feed.parquet"), "--graph",
                     str(root / "graph"), "--now", "2026-11-18T07:00:00")
    assert result.returncode == 2 and "window in the future" in result.stderr
    result = run_cli("traffic", "check", str(tmp_path / "nothing.parquet"), "--graph",
                     str(root / "graph"))
    assert result.returncode == 2 and "no such file" in result.stderr


def test_cli_from_trips_writes_a_probe_feed(clipped, tmp_path):
    root, graph = clipped
    out = tmp_path / "probe.parquet"
    result = run_cli("traffic", "from-trips", str(root / "trips.parquet"), "--graph",
                     str(root / "graph"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    feed = pd.read_parquet(out)
    assert len(feed) == 6  # segments 0..5, all in the 08:00 window
    observations, report = load_feed(out, graph)
    assert sorted(observations.segment.tolist()) == [0, 1, 2, 3, 4, 5]
    result = run_cli("traffic", "from-trips", str(root / "trips.parquet"), "--graph",
                     str(root / "graph"), "--out", str(out))
    assert result.returncode == 2 and "--force" in result.stderr
    trips = pd.read_parquet(root / "trips.parquet")
    trips["route"] = [[graph.num_segments + 5]] * len(trips)
    trips.to_parquet(tmp_path / "foreign.parquet")
    result = run_cli("traffic", "from-trips", str(tmp_path / "foreign.parquet"), "--graph",
                     str(root / "graph"), "--out", str(tmp_path / "x.parquet"))
    assert result.returncode == 2 and "another road graph" in result.stderr


def test_whole_segment_rows_of_every_segment_map_back_onto_it(bundled_graph):
    """simulate's feed rows (segment_feed_rows): on the bundled city every segment's row
    maps onto that segment, parallel segments sharing both end nodes and the way included
    (those are named by a piece only they have)."""
    import datetime as dt

    segments = np.arange(bundled_graph.num_segments)
    rows = pd.DataFrame(segment_feed_rows(
        bundled_graph, segments, np.full(len(segments), 30.0),
        [dt.datetime(2026, 11, 18, 7, 0)] * len(segments), np.ones(len(segments))))
    valid, report = validate_feed(rows)
    observations, report = map_feed(bundled_graph, valid, report)
    assert report.used == len(segments) and not report.rejected
    np.testing.assert_array_equal(np.sort(observations.segment), segments)
    np.testing.assert_allclose(observations.speed_kph, 30.0)
