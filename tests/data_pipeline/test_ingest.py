"""Ingest on a hand-checked network, the clipped fixture and every shared extract."""

from __future__ import annotations

import bz2
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.sparse.csgraph import connected_components

from data_pipeline.ingest import ingest_osm
from data_pipeline.road_graph import CONTROLS, HIGHWAY_CLASSES, TURN_KINDS, RoadGraph
from nareta.errors import ArtifactError, NoDrivableRoadsError
from tests.conftest import SHARED_EXTRACTS, shared_extract

# A 7-node network (lon/lat offsets of 0.001 degree) with a signal inside a way, a stop at a
# junction, a one-way, a duplicate way, a footway, a clipped way and a no-left-turn.
#
#   6 ----- 4          way 100: 1-2-3 residential, maxspeed "30 mph"; 2 = signals, 3 = stop
#   |       |          way 101: 3-4 primary, lanes "2;3"
#   1 --2-- 3          way 103: 4-6-1 residential (way 105 duplicates it)
#   |       ^          way 102: 5->3 residential, oneway
#   7 ----- 5          way 104: 1-7-5 residential; way 106: 2-4 footway;
#                      way 107: 6-999 (999 missing: clipped); relation: no_left_turn 100->3->101
TINY_OSM = """<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6" generator="test">
  <node id="1" lat="60.170" lon="24.940"/>
  <node id="2" lat="60.170" lon="24.941"><tag k="highway" v="traffic_signals"/></node>
  <node id="3" lat="60.170" lon="24.942"><tag k="highway" v="stop"/></node>
  <node id="4" lat="60.171" lon="24.942"/>
  <node id="5" lat="60.169" lon="24.942"/>
  <node id="6" lat="60.171" lon="24.940"/>
  <node id="7" lat="60.169" lon="24.940"/>
  <way id="100"><nd ref="1"/><nd ref="2"/><nd ref="3"/>
    <tag k="highway" v="residential"/><tag k="maxspeed" v="30 mph"/></way>
  <way id="101"><nd ref="3"/><nd ref="4"/><tag k="highway" v="primary"/><tag k="lanes" v="2;3"/></way>
  <way id="103"><nd ref="4"/><nd ref="6"/><nd ref="1"/><tag k="highway" v="residential"/></way>
  <way id="105"><nd ref="4"/><nd ref="6"/><nd ref="1"/><tag k="highway" v="residential"/></way>
  <way id="102"><nd ref="5"/><nd ref="3"/><tag k="highway" v="residential"/><tag k="oneway" v="yes"/></way>
  <way id="104"><nd ref="1"/><nd ref="7"/><nd ref="5"/><tag k="highway" v="residential"/></way>
  <way id="106"><nd ref="2"/><nd ref="4"/><tag k="highway" v="footway"/></way>
  <way id="107"><nd ref="6"/><nd ref="999"/><tag k="highway" v="residential"/></way>
  <relation id="200">
    <member type="way" ref="100" role="from"/><member type="node" ref="3" role="via"/>
    <member type="way" ref="101" role="to"/>
    <tag k="type" v="restriction"/><tag k="restriction" v="no_left_turn"/></relation>
</osm>
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[RoadGraph, dict]:
    path = tmp_path_factory.mktemp("tiny") / "tiny.osm"
    path.write_text(TINY_OSM)
    result = ingest_osm(path)
    return result.graph, result.report


def _segment(graph: RoadGraph, osm_path: list[int]) -> int:
    for segment in range(graph.num_segments):
        if graph["path_osm_node"][graph.segment_path(segment)].tolist() == osm_path:
            return segment
    raise AssertionError(f"no segment along OSM nodes {osm_path}")


def test_tiny_topology(tiny):
    graph, report = tiny
    assert graph["node_osm_id"].tolist() == [1, 3, 5]  # 2, 4, 6, 7 are interstitial
    assert graph.num_segments == 7
    assert report["repairs"]["duplicate_ways_dropped"] == 1
    assert report["repairs"]["clipped_ways"] == 1
    assert report["repairs"]["missing_node_refs_dropped"] == 1
    assert report["repairs"]["degenerate_ways_dropped"] == 1
    assert 106 not in graph["path_way_id"]  # the footway is not drivable
    with pytest.raises(AssertionError):
        _segment(graph, [3, 5])  # one-way 5 -> 3 only


def test_tiny_segment_features(tiny):
    graph, _ = tiny
    east = _segment(graph, [1, 2, 3])
    assert graph["signals_along"][east] == 1
    assert graph["control_at_end"][east] == CONTROLS.index("stop")
    assert math.isclose(graph["maxspeed_kph"][east], 30 * 1.609344, rel_tol=1e-5)
    assert not graph["maxspeed_imputed"][east]
    assert math.isclose(graph["length_m"][east], 110.6, abs_tol=0.5)
    assert math.isclose(graph["bearing_out_deg"][east], 90.0, abs_tol=0.5)
    assert graph["curvature"][east] == pytest.approx(1.0, abs=1e-4)
    assert math.isclose(
        graph["free_flow_s"][east], graph["length_m"][east] / (30 * 1.609344 / 3.6), rel_tol=1e-5
    )
    # 3 -> 4 -> 6 -> 1: 111 m of primary, 222 m of residential: residential wins, lanes come
    # from the tagged piece (min of "2;3"), the speed is imputed from tagged residential.
    loop = _segment(graph, [3, 4, 6, 1])
    assert HIGHWAY_CLASSES[graph["highway"][loop]] == "residential"
    assert graph["lanes"][loop] == 2 and not graph["lanes_imputed"][loop]
    assert graph["maxspeed_imputed"][loop]
    assert math.isclose(graph["maxspeed_kph"][loop], 30 * 1.609344, rel_tol=1e-5)
    assert graph["curvature"][loop] > 2.5  # a U-shaped path between nodes 111 m apart
    one_way = _segment(graph, [5, 3])
    assert graph["oneway"][one_way] and not graph["oneway"][east]
    assert graph["target_in_degree"][one_way] == 3  # node 3: from 1 (x2) and from 5


def test_tiny_turns_and_restriction(tiny):
    graph, report = tiny
    east = _segment(graph, [1, 2, 3])
    north_loop = _segment(graph, [3, 4, 6, 1])
    back_west = _segment(graph, [3, 2, 1])
    from_east = graph["turn_to"][graph["turn_from"] == east].tolist()
    assert north_loop not in from_east  # no_left_turn 100 -> 101 at node 3
    assert from_east == [back_west]
    uturn = np.flatnonzero((graph["turn_from"] == east) & (graph["turn_to"] == back_west))[0]
    assert TURN_KINDS[graph["turn_kind"][uturn]] == "uturn"
    assert report["restrictions"]["applied"] == 1
    one_way = _segment(graph, [5, 3])
    kinds = {
        int(to): TURN_KINDS[kind]
        for to, kind in zip(
            graph["turn_to"][graph["turn_from"] == one_way],
            graph["turn_kind"][graph["turn_from"] == one_way],
            strict=True,
        )
    }
    assert kinds == {north_loop: "straight", back_west: "left"}
    left = np.flatnonzero((graph["turn_from"] == one_way) & (graph["turn_to"] == back_west))[0]
    assert graph["turn_angle_deg"][left] == pytest.approx(-90.0, abs=0.5)
    assert graph["turn_control"][left] == CONTROLS.index("stop")


def _check_graph_invariants(graph: RoadGraph) -> None:
    n_components, _ = connected_components(graph.to_scipy(), directed=True, connection="strong")
    assert n_components == 1
    assert (graph["length_m"] > 0).all()
    assert ((graph["maxspeed_kph"] >= 5) & (graph["maxspeed_kph"] <= 140)).all()
    assert (graph["free_flow_s"] > 0).all() and np.isfinite(graph["free_flow_s"]).all()
    assert (graph["curvature"] >= 1).all()
    for name in ("bearing_in_deg", "bearing_out_deg"):
        assert ((graph[name] >= 0) & (graph[name] < 360)).all()
    assert (
        graph["edge_target"][graph["turn_from"]] == graph["edge_source"][graph["turn_to"]]
    ).all()
    offsets = graph["path_offsets"]
    assert (np.diff(offsets) >= 2).all()
    node_ids = graph["node_osm_id"]
    assert (graph["path_osm_node"][offsets[:-1]] == node_ids[graph["edge_source"]]).all()
    assert (graph["path_osm_node"][offsets[1:] - 1] == node_ids[graph["edge_target"]]).all()
    assert (np.abs(graph["turn_angle_deg"]) <= 180).all()


def test_clipped_extract_is_repaired(clipped_osm):
    import osmnx as ox

    with pytest.raises(ValueError, match="missing nodes"):
        ox.graph_from_xml(clipped_osm)  # what the repair is for
    result = ingest_osm(clipped_osm)
    assert result.report["repairs"]["clipped_ways"] > 0
    _check_graph_invariants(result.graph)


def test_bz2_reads_like_xml(clipped_osm, tmp_path):
    compressed = tmp_path / "clipped.osm.bz2"
    compressed.write_bytes(bz2.compress(clipped_osm.read_bytes()))
    plain, packed = ingest_osm(clipped_osm).graph, ingest_osm(compressed).graph
    assert plain.num_segments == packed.num_segments
    np.testing.assert_array_equal(plain["length_m"], packed["length_m"])


def test_bbox_clips_a_file(clipped_osm):
    whole = ingest_osm(clipped_osm).graph
    part = ingest_osm(clipped_osm, bbox=(24.938, 60.165, 24.943, 60.171)).graph
    assert 0 < part.num_nodes < whole.num_nodes
    assert (part["node_lon"] <= 24.943).all()


@pytest.mark.parametrize("name", SHARED_EXTRACTS)
def test_shared_extracts(name, tmp_path):
    result = ingest_osm(shared_extract(name))
    graph = result.graph
    _check_graph_invariants(graph)
    assert graph.num_nodes > 100 and graph.num_turns > graph.num_segments
    assert 0 < graph["maxspeed_imputed"].mean() < 1
    graph.save(tmp_path / name)
    loaded = RoadGraph.load(tmp_path / name)
    assert loaded.num_segments == graph.num_segments
    np.testing.assert_array_equal(loaded["free_flow_s"], graph["free_flow_s"])
    data = loaded.to_pyg()
    assert tuple(data.edge_index.shape) == (2, graph.num_segments)
    assert data.edge_attr.shape[0] == graph.num_segments
    assert tuple(data.turn_index.shape) == (2, graph.num_turns)


def test_artifact_verification(tiny, tmp_path):
    graph, _ = tiny
    out = graph.save(tmp_path / "graph")
    manifest = RoadGraph.load(out).manifest
    assert manifest["kind"] == "road_graph" and "numpy" in manifest["library_versions"]
    with open(out / "graph.npz", "r+b") as handle:  # flip one byte
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ArtifactError, match="checksum"):
        RoadGraph.load(out)
    with pytest.raises(ArtifactError, match="no manifest.json"):
        RoadGraph.load(tmp_path)


def test_no_drivable_roads(tmp_path):
    path = tmp_path / "paths.osm"
    path.write_text(
        TINY_OSM.replace('v="residential"', 'v="footway"').replace('v="primary"', 'v="cycleway"')
    )
    with pytest.raises(NoDrivableRoadsError, match="no drivable roads"):
        ingest_osm(path)


def test_artifact_files_are_readable(tiny, tmp_path):
    graph, _ = tiny
    out = graph.save(tmp_path / "graph")
    assert Path(out).stat().st_mode & 0o055  # not left private by mkdtemp


def test_identity_is_stable_across_ingests(clipped_osm, tmp_path):
    first, second = ingest_osm(clipped_osm).graph, ingest_osm(clipped_osm).graph
    assert first.identity == second.identity
    first.save(tmp_path / "graph")
    assert RoadGraph.load(tmp_path / "graph").identity == second.identity
    second.arrays["free_flow_s"] = second.arrays["free_flow_s"] * 2
    second._identity = None
    assert second.identity != first.identity


def test_street_names_are_kept_but_not_part_of_the_identity(clipped_osm, tmp_path):
    """Ingest keeps each segment's OSM street name (display only): a graph without names
    (ingested before they existed) is the same graph to a trained model; a names array of
    the wrong length is rejected."""
    from nareta.errors import ArtifactError

    graph = ingest_osm(clipped_osm).graph
    names = graph["segment_name"]
    assert names.shape == (graph.num_segments,) and (names != "").mean() > 0.5
    assert graph.street_name(int(np.flatnonzero(names != "")[0])) != ""
    graph.save(tmp_path / "graph")
    again = RoadGraph.load(tmp_path / "graph")
    assert again["segment_name"].tolist() == names.tolist()
    unnamed = RoadGraph(arrays={k: v for k, v in graph.arrays.items() if k != "segment_name"},
                        crs_epsg=graph.crs_epsg)
    assert unnamed.identity == graph.identity and unnamed.street_name(0) == ""
    with pytest.raises(ArtifactError, match="segment_name"):
        RoadGraph(arrays={**graph.arrays, "segment_name": names[:-1]}, crs_epsg=graph.crs_epsg)
