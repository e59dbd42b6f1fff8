"""The Predictor on a hand-checked network and on the bundled city (free-flow model)."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest

from data_pipeline.ingest import ingest_osm
from models.baselines.freeflow import FreeFlowModel
from models.inference.predictor import Predictor
from models.inference.travel_time import OriginRun
from nareta.errors import NoSegmentError
from tests.data_pipeline.test_ingest import TINY_OSM


@pytest.fixture(scope="module")
def tiny_predictor(tmp_path_factory) -> Predictor:
    path = tmp_path_factory.mktemp("pred") / "tiny.osm"
    path.write_text(TINY_OSM)
    graph = ingest_osm(path).graph
    return Predictor(graph, FreeFlowModel(graph), max_snap_distance_m=50)


def _segment(graph, osm_path):
    for s in range(graph.num_segments):
        if graph["path_osm_node"][graph.segment_path(s)].tolist() == osm_path:
            return s
    raise AssertionError(osm_path)


def test_eta_on_one_segment(tiny_predictor):
    graph = tiny_predictor.graph
    east = _segment(graph, [1, 2, 3])
    # From 1/4 to 3/4 of way 100, on the road itself: half the segment's free-flow time.
    result = tiny_predictor.eta((24.9405, 60.170), (24.9415, 60.170))
    assert result.eta_s == pytest.approx(0.5 * graph["free_flow_s"][east], rel=1e-3)
    assert result.distance_m == pytest.approx(0.5 * graph["length_m"][east], rel=1e-3)


def test_route_through_a_junction(tiny_predictor):
    graph = tiny_predictor.graph
    # Mid-way 100 to mid-way 102 (the one-way 5 -> 3, driven only northwards): the car must
    # drive west to node 1, south via 7 to 5, then north up the one-way.
    route = tiny_predictor.route((24.941, 60.170), (24.942, 60.1695))
    west, down, up = (_segment(graph, p) for p in ([3, 2, 1], [1, 7, 5], [5, 3]))
    assert route.segments == [west, down, up]
    expected = (0.5 * graph["free_flow_s"][west] + graph["free_flow_s"][down]
                + 0.5 * graph["free_flow_s"][up])
    assert route.eta_s == pytest.approx(expected, rel=1e-3)
    assert sum(route.segment_times_s) == pytest.approx(route.eta_s, rel=1e-6)
    assert not route.fallback_used
    assert route.coordinates[0] == pytest.approx((24.941, 60.170), abs=1e-6)
    assert route.coordinates[-1] == pytest.approx((24.942, 60.1695), abs=1e-6)


def test_far_point_is_no_segment(tiny_predictor):
    with pytest.raises(NoSegmentError, match="point 1") as info:
        tiny_predictor.eta((24.941, 60.170), (25.5, 60.5))
    assert info.value.index == 1


class _BrokenPointers(FreeFlowModel):
    """Free-flow times, but every pointer is wrong: exercises the route fallback."""

    supports_targets = False  # its run_from answers whole runs only

    def run_from(self, origins, bucket):
        run = super().run_from(origins, bucket)
        return OriginRun(run.origins, run.node_time_s, np.full_like(run.parent_segment, -1))


def test_route_falls_back_to_dijkstra(tiny_predictor):
    graph = tiny_predictor.graph
    broken = Predictor(graph, _BrokenPointers(graph), max_snap_distance_m=50)
    good = tiny_predictor.route((24.941, 60.170), (24.942, 60.1695))
    route = broken.route((24.941, 60.170), (24.942, 60.1695))
    assert route.fallback_used and "pointers" in route.fallback_reason
    assert route.segments == good.segments
    # ETAs, pairs and matrices report the fallback's metres too, never nan
    a, b = (24.941, 60.170), (24.942, 60.1695)
    assert broken.eta(a, b).distance_m == pytest.approx(good.distance_m, rel=1e-12)
    assert route.distance_m == pytest.approx(good.distance_m, rel=1e-12)
    pairs = broken.eta_pairs([a, b], [b, a])
    expected = [good.distance_m, tiny_predictor.eta(b, a).distance_m]
    np.testing.assert_allclose(pairs.distances_m, expected, rtol=1e-12)
    np.testing.assert_allclose(broken.matrix([a], [b]).distances_m, [[good.distance_m]],
                               rtol=1e-12)


def test_matches_networkx_on_bundled_city(bundled_graph):
    predictor = Predictor(bundled_graph, FreeFlowModel(bundled_graph))
    rng = np.random.default_rng(7)
    nodes = rng.choice(bundled_graph.num_nodes, size=12, replace=False)
    points = [(float(bundled_graph["node_lon"][n]), float(bundled_graph["node_lat"][n]))
              for n in nodes]
    matrix = predictor.matrix(points, points)
    digraph = nx.DiGraph()
    for s, t, w in zip(bundled_graph["edge_source"], bundled_graph["edge_target"],
                       bundled_graph["free_flow_s"], strict=True):
        if not digraph.has_edge(s, t) or digraph[s][t]["weight"] > w:
            digraph.add_edge(int(s), int(t), weight=float(w))
    for i, a in enumerate(nodes):
        lengths = nx.single_source_dijkstra_path_length(digraph, int(a))
        for j, b in enumerate(nodes):
            assert matrix.durations_s[i, j] == pytest.approx(lengths[int(b)], rel=1e-4, abs=0.05)
    route = predictor.route(points[0], points[1])
    source, target = bundled_graph["edge_source"], bundled_graph["edge_target"]
    assert all(target[a] == source[b] for a, b in itertools.pairwise(route.segments))
    assert route.eta_s == pytest.approx(matrix.durations_s[0, 1], rel=1e-6)
    assert route.distance_m == pytest.approx(matrix.distances_m[0, 1], rel=1e-6)


def test_turn_mode_honours_restriction(tiny_predictor):
    from models.baselines.freeflow import FreeFlowTurnModel

    graph = tiny_predictor.graph
    turns = Predictor(graph, FreeFlowTurnModel(graph), max_snap_distance_m=50)
    # From mid-way 100 heading east to mid-way 103 (the north loop): node mode turns left at
    # node 3 (forbidden); turn mode must go back west to node 1 and take the loop from there.
    origin, destination = (24.9412, 60.170), (24.941, 60.171)
    node_route = tiny_predictor.route(origin, destination)
    turn_route = turns.route(origin, destination)
    east, loop_from_3 = _segment(graph, [1, 2, 3]), _segment(graph, [3, 4, 6, 1])
    loop_from_1 = _segment(graph, [1, 6, 4, 3])
    assert node_route.segments[:2] == [east, loop_from_3]
    assert turn_route.segments[0] != east or turn_route.segments[1] != loop_from_3
    assert loop_from_1 in turn_route.segments
    assert turn_route.eta_s > node_route.eta_s
    assert sum(turn_route.segment_times_s) == pytest.approx(turn_route.eta_s, rel=1e-6)
    assert not turn_route.fallback_used


def test_turn_mode_agrees_where_no_restriction_binds(bundled_graph):
    from models.baselines.freeflow import FreeFlowTurnModel

    node = Predictor(bundled_graph, FreeFlowModel(bundled_graph))
    turn = Predictor(bundled_graph, FreeFlowTurnModel(bundled_graph))
    rng = np.random.default_rng(3)
    index = rng.choice(len(bundled_graph["path_lon"]), size=10, replace=False)
    points = [(float(bundled_graph["path_lon"][i]) + 1e-5, float(bundled_graph["path_lat"][i]))
              for i in index]
    node_matrix = node.matrix(points, points).durations_s
    turn_matrix = turn.matrix(points, points).durations_s
    off_diagonal = ~np.eye(len(points), dtype=bool)
    # Restrictions and the lack of U-turn-in-place can only make turn-mode trips longer.
    assert (turn_matrix[off_diagonal] >= node_matrix[off_diagonal] - 1e-6).all()
    assert np.median(turn_matrix[off_diagonal] / node_matrix[off_diagonal]) < 1.05
    route = turn.route(points[0], points[1])
    source, target = bundled_graph["edge_source"], bundled_graph["edge_target"]
    assert all(target[a] == source[b] for a, b in itertools.pairwise(route.segments))
    assert route.eta_s == pytest.approx(turn_matrix[0, 1], rel=1e-6)


def test_isochrone_reaches_exactly_what_the_eta_allows(tiny_predictor):
    graph = tiny_predictor.graph
    origin = (24.941, 60.170)
    full = tiny_predictor.isochrone(origin, 1e6)
    # With unlimited time every segment is reachable in full.
    assert set(full.piece_segment.tolist()) == set(range(graph.num_segments))
    limit = 0.6 * float(np.nanmax(np.where(np.isfinite(full.node_time_s), full.node_time_s, 0)))
    result = tiny_predictor.isochrone(origin, limit)
    assert np.all((0 <= result.piece_start) & (result.piece_start <= result.piece_end)
                  & (result.piece_end <= 1))
    # A node is reachable iff its ETA (from the eta() query, at the node itself) fits.
    for node in range(graph.num_nodes):
        point = (float(graph["node_lon"][node]), float(graph["node_lat"][node]))
        eta = tiny_predictor.eta(origin, point).eta_s
        assert (result.node_time_s[node] <= limit) == (eta <= limit + 1e-6) or abs(
            eta - limit) < 1e-3


def test_isochrone_rejects_non_positive_time(tiny_predictor):
    from nareta.errors import InputError

    with pytest.raises(InputError, match="max_seconds"):
        tiny_predictor.isochrone((24.941, 60.170), 0)


def test_eta_pairs_matches_eta(tiny_predictor):
    origins = [(24.941, 60.170), (24.9405, 60.170), (24.941, 60.170)]
    destinations = [(24.942, 60.1695), (24.9415, 60.170), (24.9405, 60.170)]
    pairs = tiny_predictor.eta_pairs(origins, destinations)
    for i, (origin, destination) in enumerate(zip(origins, destinations, strict=True)):
        single = tiny_predictor.eta(origin, destination)
        assert pairs.durations_s[i] == pytest.approx(single.eta_s, rel=1e-12)
        assert pairs.distances_m[i] == pytest.approx(single.distance_m, rel=1e-12)
    with pytest.raises(NoSegmentError):
        tiny_predictor.eta_pairs([(24.941, 60.170)], [(25.5, 60.5)])


def test_turn_mode_isochrone_and_pairs(bundled_graph):
    from models.baselines.freeflow import FreeFlowTurnModel

    node = Predictor(bundled_graph, FreeFlowModel(bundled_graph))
    turn = Predictor(bundled_graph, FreeFlowTurnModel(bundled_graph))
    origin = (float(bundled_graph["node_lon"][10]) + 1e-5, float(bundled_graph["node_lat"][10]))
    a, b = node.isochrone(origin, 300.0), turn.isochrone(origin, 300.0)
    assert len(b.piece_segment) > 0
    # Turn restrictions only remove options: the turn-mode area is no larger.
    assert np.isfinite(b.node_time_s).sum() <= np.isfinite(a.node_time_s).sum()
    points = [origin, (float(bundled_graph["node_lon"][20]), float(bundled_graph["node_lat"][20]))]
    pairs = turn.eta_pairs(points, points[::-1])
    assert pairs.durations_s[0] == pytest.approx(turn.eta(points[0], points[1]).eta_s)
