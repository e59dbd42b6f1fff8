"""Runs that stop once their targets are settled give the whole-graph run's answers."""

from pathlib import Path

import numpy as np
import pytest

from models.baselines.freeflow import FreeFlowModel, FreeFlowTurnModel
from models.inference.predictor import Predictor
from models.inference.registry import load_model

SHIPPED_ETA = Path(__file__).resolve().parents[3] / "artifacts_shipped" / "eta_baltimore"


@pytest.fixture(scope="module")
def shipped_model(bundled_graph):
    return load_model(SHIPPED_ETA, bundled_graph)


def test_targeted_run_is_exact_where_it_says(shipped_model):
    model = shipped_model
    bucket = model.time_bucket(None)
    rng = np.random.default_rng(0)
    origins = rng.choice(model.num_keys, 12, replace=False)
    targets = rng.choice(model.num_keys, (12, 2))
    full = model.run_from(origins, bucket)
    part = model.run_from(origins, bucket, targets=list(targets))
    rows = np.arange(12)[:, None]
    assert part.exact_time[rows, targets].all() and part.exact_parent[rows, targets].all()
    exact, pointers = part.exact_time, part.exact_parent
    assert np.array_equal(part.node_time_s[exact], full.node_time_s[exact])
    assert np.array_equal(part.parent_segment[pointers], full.parent_segment[pointers])
    assert exact.mean() < 0.9  # the searches stopped early
    # the whole-graph execution is the processor's own (torch frontier) fixed point
    reference = model.run_from_torch(origins[:4], bucket)
    finite = np.isfinite(reference.node_time_s)
    assert np.array_equal(finite, np.isfinite(full.node_time_s[:4]))
    assert np.allclose(full.node_time_s[:4][finite], reference.node_time_s[finite], rtol=1e-5)
    assert (full.parent_segment[:4] == reference.parent_segment).mean() > 0.999


@pytest.mark.parametrize("kind", ["shipped", "freeflow", "freeflow-turns"])
def test_predictor_answers_do_not_change(kind, bundled_graph, shipped_model):
    model = {"shipped": shipped_model, "freeflow": FreeFlowModel(bundled_graph),
             "freeflow-turns": FreeFlowTurnModel(bundled_graph)}[kind]
    targeted = Predictor(bundled_graph, model)
    whole = Predictor(bundled_graph, model)
    whole._targeted = False
    assert targeted._targeted
    rng = np.random.default_rng(1)
    lon, lat = bundled_graph["node_lon"], bundled_graph["node_lat"]
    nodes = rng.choice(bundled_graph.num_nodes, (25, 2))
    for a, b in nodes:
        origin, destination = (lon[a], lat[a]), (lon[b], lat[b])
        if a == b:
            continue
        got, want = targeted.route(origin, destination), whole.route(origin, destination)
        assert got.eta_s == pytest.approx(want.eta_s, rel=1e-9)
        assert got.distance_m == pytest.approx(want.distance_m, rel=1e-6)
        assert got.segments == want.segments and not got.fallback_used
        assert targeted.eta(origin, destination).eta_s == pytest.approx(want.eta_s, rel=1e-9)
    assert targeted.stats["targeted_runs"] > 0
    # ETAs alone (a fresh predictor: runs that answer only their targets) and matrices
    lean = Predictor(bundled_graph, model)
    for a, b in nodes[:12]:
        origin, destination = (lon[a], lat[a]), (lon[b], lat[b])
        got, want = lean.eta(origin, destination), whole.eta(origin, destination)
        assert got.eta_s == pytest.approx(want.eta_s, rel=1e-9)
        assert got.distance_m == pytest.approx(want.distance_m, rel=1e-6)
    points = [(lon[n], lat[n]) for n in nodes[:8, 1]]
    assert np.allclose(Predictor(bundled_graph, model).matrix(points, points).distances_m,
                       whole.matrix(points, points).distances_m, rtol=1e-6, equal_nan=True)
    # a repeated origin with a destination its search did not reach widens to a whole run
    fresh = Predictor(bundled_graph, model)
    start = int(bundled_graph["edge_source"][0])
    near = int(bundled_graph["edge_target"][0])
    far = int(np.argmax(np.hypot(lon - lon[start], lat - lat[start])))
    fresh.eta((lon[start], lat[start]), (lon[near], lat[near]))
    assert fresh.stats["targeted_runs"] > 0 and fresh.stats["widened_runs"] == 0
    result = fresh.eta((lon[start], lat[start]), (lon[far], lat[far]))
    if model.targets_are_cheap:  # hierarchy queries: answers merge
        assert fresh.stats["widened_runs"] == 0 and fresh.stats["targeted_runs"] >= 2
    else:
        assert fresh.stats["widened_runs"] > 0
    assert result.eta_s == pytest.approx(
        whole.eta((lon[start], lat[start]), (lon[far], lat[far])).eta_s, rel=1e-9)
    matrix_points = [(lon[n], lat[n]) for n in nodes[:6, 0]]
    assert np.allclose(targeted.matrix(matrix_points, matrix_points).durations_s,
                       whole.matrix(matrix_points, matrix_points).durations_s, rtol=1e-9,
                       equal_nan=True)


@pytest.mark.parametrize("kind", ["shipped", "freeflow-turns", "freeflow"])
def test_destination_behind_the_origin_on_a_one_way_segment(kind, bundled_graph, shipped_model):
    """The trip must leave the segment and come back onto it (a loop), in every mode."""
    graph = bundled_graph
    model = {"shipped": shipped_model, "freeflow": FreeFlowModel(graph),
             "freeflow-turns": FreeFlowTurnModel(graph)}[kind]
    predictor = Predictor(graph, model)
    twins = graph.reverse_twins()
    lon, lat = graph["node_lon"], graph["node_lat"]
    source, target = graph["edge_source"], graph["edge_target"]
    candidates = [s for s in np.argsort(-graph["length_m"])[:400]
                  if twins[s] < 0 and graph.segment_path(s).stop - graph.segment_path(s).start == 2]
    segment = int(candidates[0])

    def at(share):
        return (float(lon[source[segment]] + share * (lon[target[segment]] - lon[source[segment]])),
                float(lat[source[segment]] + share * (lat[target[segment]] - lat[source[segment]])))

    origin, destination = at(0.8), at(0.2)
    route = predictor.route(origin, destination)
    assert route.origin.segment == route.destination.segment == segment
    assert route.segments[0] == route.segments[-1] == segment and len(route.segments) > 2
    assert route.eta_s > 0 and route.distance_m > 0.6 * graph["length_m"][segment]
    assert predictor.eta(origin, destination).eta_s == pytest.approx(route.eta_s, rel=1e-9)
    ahead = predictor.eta(destination, origin)  # the other way is a straight ride
    assert ahead.eta_s < route.eta_s


@pytest.mark.parametrize("kind", ["shipped", "freeflow"])
def test_small_cache_merges_answers_instead_of_whole_runs(kind, bundled_graph, shipped_model):
    """When whole-graph trees are big next to the cache (a 50k-node city), a repeat origin
    gets another run that stops at its new destination, merged into the cached answers."""
    model = shipped_model if kind == "shipped" else FreeFlowModel(bundled_graph)
    small = Predictor(bundled_graph, model, cache_mb=0.5)
    assert not small._whole_fits
    whole = Predictor(bundled_graph, model)
    whole._targeted = False
    lon, lat = bundled_graph["node_lon"], bundled_graph["node_lat"]
    rng = np.random.default_rng(3)
    start = int(rng.integers(bundled_graph.num_nodes))
    origin = (lon[start], lat[start])
    for node in rng.choice(bundled_graph.num_nodes, 6, replace=False):
        destination = (lon[node], lat[node])
        assert small.eta(origin, destination).eta_s == pytest.approx(
            whole.eta(origin, destination).eta_s, rel=1e-9)
        route = small.route(origin, destination)
        assert route.segments == whole.route(origin, destination).segments
    assert small.stats["widened_runs"] == 0
    cached = [tree for (root, _), tree in small._cache.items()]
    assert cached and all(len(tree.time_s.values) > 6 for tree in cached)  # merged answers
