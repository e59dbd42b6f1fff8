"""The customizable contraction hierarchy answers exactly what the whole-graph search does."""

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from models.execution import kernels
from models.execution.cch import Hierarchy, dissection_order
from models.execution.executor import ChannelSearch, Csr
from models.inference.registry import load_model

SHIPPED_ETA = Path(__file__).resolve().parents[3] / "artifacts_shipped" / "eta_baltimore"


def _geometric_graph(seed: int, n: int, *, strongly_connected: bool = True):
    """Directed k-nearest-neighbour graph with one-way edges, parallel edges, a self-loop
    and (optionally) nodes that cannot be reached."""
    rng = np.random.default_rng(seed)
    coords = rng.random((n, 2))
    _, near = cKDTree(coords).query(coords, 4)
    sender = np.repeat(np.arange(n), 3)
    receiver = near[:, 1:].ravel()
    both = rng.random(len(sender)) < 0.8  # the rest are one-way
    sender, receiver = (np.concatenate([sender, receiver[both]]),
                        np.concatenate([receiver, sender[both]]))
    sender = np.concatenate([sender, sender[:20], [5]])  # parallel edges and a self-loop
    receiver = np.concatenate([receiver, receiver[:20], [5]])
    if not strongly_connected:  # nodes 0-9 have no way in
        keep = receiver >= 10
        sender, receiver = sender[keep], receiver[keep]
    return coords, sender, receiver


def _cch_costs(hierarchy, metric, csr, root, targets):
    n = csr.num_nodes
    order = np.argsort(csr.receiver, kind="stable")
    in_indptr = np.concatenate([[0], np.cumsum(np.bincount(csr.receiver, minlength=n))])
    scratch = hierarchy.scratch(metric.up.shape[1])
    cost, _, _ = kernels.cch_targets(
        hierarchy.parent, hierarchy.up_indptr, hierarchy.up_head, metric.up, metric.down,
        int(root), targets, in_indptr, order, csr.sender, csr.edge_row,
        np.ones(metric.up.shape[1]), np.zeros(len(csr.sender)), np.zeros(n),
        np.zeros(len(csr.sender)), False, False, np.full(n, -1), np.zeros(n, dtype=bool),
        *scratch.arrays, scratch.next_stamp())
    return cost


def test_order_is_a_nested_dissection_and_up_neighbours_are_ancestors():
    coords, sender, receiver = _geometric_graph(0, 300)
    hierarchy = Hierarchy.build(sender, receiver, 300, coords)
    assert sorted(hierarchy.rank.tolist()) == list(range(300))
    for v in range(300):
        heads = hierarchy.up_head[hierarchy.up_indptr[v]:hierarchy.up_indptr[v + 1]]
        assert (hierarchy.rank[heads] > hierarchy.rank[v]).all()
        ancestors, x = set(), hierarchy.parent[v]
        while x >= 0:
            ancestors.add(int(x))
            x = hierarchy.parent[x]
        assert set(heads.tolist()) <= ancestors
    # the top separator is small next to the graph (a grid-like graph of 300 nodes)
    order = dissection_order(300, *np.unique(np.sort(np.stack([sender, receiver], 1), 1),
                                             axis=0).T, coords)
    assert len(np.unique(order)) == 300


@pytest.mark.parametrize("connected", [True, False])
def test_hierarchy_distances_equal_the_channel_search(connected):
    coords, sender, receiver = _geometric_graph(1, 400, strongly_connected=connected)
    rng = np.random.default_rng(2)
    csr = Csr.build(sender, receiver, 400)
    cost = rng.random((len(sender), 5)) * 10
    cost[rng.random(len(sender)) < 0.05] = 0.0  # zero-cost edges are allowed
    search = ChannelSearch(csr, cost)
    hierarchy = Hierarchy.build(csr.sender, csr.receiver, 400, coords)
    metric = hierarchy.customise(search.cost[csr.edge_row])
    for root in range(0, 400, 9):
        full = search.distances(np.array([root]))[0]
        got = _cch_costs(hierarchy, metric, csr, root, np.arange(400))
        assert np.array_equal(np.isinf(got), np.isinf(full))
        finite = np.isfinite(full)
        assert np.allclose(got[finite], full[finite], rtol=1e-12, atol=1e-12)
    if not connected:
        assert np.isinf(_cch_costs(hierarchy, metric, csr, 50, np.arange(10))).all()


def test_shipped_model_answers_on_the_hierarchy_equal_the_whole_graph_run(bundled_graph):
    model = load_model(SHIPPED_ETA, bundled_graph)
    assert model.engine == "cch"
    bucket = model.time_bucket(None)
    rng = np.random.default_rng(4)
    origins = rng.choice(model.num_keys, 40, replace=False)
    targets = [rng.choice(model.num_keys, 3, replace=False) for _ in origins]
    whole = model.run_from(origins, bucket)
    lean = model.run_from(origins, bucket, targets=targets, pointers=False)
    for row, (keys, seconds, metres, path_keys, parents) in enumerate(lean.answers):
        assert set(targets[row]) <= set(keys.tolist())  # every target proven
        assert np.allclose(seconds, whole.node_time_s[row, keys], rtol=1e-12)
        # the walked pointers are the whole-graph decoder's, and so are the metres
        assert np.array_equal(parents, whole.parent_segment[row, path_keys])
        assert np.isfinite(metres).all()
    # a second run key gets its own customisation, with its own answers
    other = model.run_from(origins[:5], bucket + 20, targets=targets[:5], pointers=False)
    reference = model.run_from(origins[:5], bucket + 20)
    for row, (keys, seconds, *_rest) in enumerate(other.answers):
        assert np.allclose(seconds, reference.node_time_s[row, keys], rtol=1e-12)


@pytest.mark.parametrize("kind", ["shipped", "freeflow", "freeflow-turns"])
def test_duration_matrix_equals_the_full_matrix(kind, bundled_graph):
    """The many-to-many (durations only) gives the durations of the matrix that walks every
    cell's pointers; points on shared segments (direct rides, loops) included."""
    from models.baselines.freeflow import FreeFlowModel, FreeFlowTurnModel
    from models.inference.predictor import Predictor

    model = {"shipped": lambda: load_model(SHIPPED_ETA, bundled_graph),
             "freeflow": lambda: FreeFlowModel(bundled_graph),
             "freeflow-turns": lambda: FreeFlowTurnModel(bundled_graph)}[kind]()
    assert model.targets_are_cheap
    predictor = Predictor(bundled_graph, model)
    rng = np.random.default_rng(5)
    lon, lat = bundled_graph["node_lon"], bundled_graph["node_lat"]
    source, target = bundled_graph["edge_source"], bundled_graph["edge_target"]
    segments = rng.choice(bundled_graph.num_segments, 12, replace=False)
    points = []
    for segment in segments:  # two points on each segment: same-segment cells
        for share in (0.3, 0.7):
            points.append((float(lon[source[segment]] * (1 - share) + lon[target[segment]] * share),
                           float(lat[source[segment]] * (1 - share) + lat[target[segment]] * share)))
    full = predictor.matrix(points, points)
    runs = predictor.stats["runs"]
    lean = predictor.matrix(points, points, distances=False)
    assert predictor.stats["runs"] > runs
    assert np.isnan(lean.distances_m).all()
    assert np.allclose(lean.durations_s, full.durations_s, rtol=1e-9, equal_nan=True)
    assert np.isfinite(full.durations_s).mean() > 0.9


@pytest.mark.parametrize("kind", ["freeflow", "freeflow-turns", "live-scalar"])
def test_scalar_models_answer_targets_on_the_hierarchy(kind, bundled_graph):
    """Free flow (node and turn mode) and the live scalar answer targeted runs on their
    hierarchy with scipy's whole-graph Dijkstra times, metres and parents."""
    from models.baselines.freeflow import FreeFlowModel, FreeFlowTurnModel, LiveScalarModel

    model = {"freeflow": FreeFlowModel, "freeflow-turns": FreeFlowTurnModel,
             "live-scalar": LiveScalarModel}[kind](bundled_graph)
    bucket = model.time_bucket(None)
    keys = bundled_graph.num_nodes if kind == "freeflow" else bundled_graph.num_segments
    rng = np.random.default_rng(6)
    origins = rng.choice(keys, 20, replace=False)
    targets = [rng.choice(keys, 4, replace=False) for _ in origins]
    whole = model.run_from(origins, bucket)
    lean = model.run_from(origins, bucket, targets=targets, pointers=False)
    search = model._node_trees().targeted if kind == "freeflow" else model._search_for(bucket)[1]
    assert search.queries is not None
    for row, (answered, seconds, metres, path_keys, parents) in enumerate(lean.answers):
        assert set(targets[row]) <= set(answered.tolist())
        assert np.allclose(seconds, whole.node_time_s[row, answered], rtol=1e-12)
        assert np.array_equal(parents, whole.parent_segment[row, path_keys])
        assert np.isfinite(metres).all()
    # the unpacked shortest paths are the ones the in-edge walk finds
    for root, wanted in zip(origins[:8], targets[:8], strict=True):
        keys = np.unique(np.append(wanted, root))
        unpacked, walked = search.queries.answer(root, keys), search.queries._answer_by_walk(
            root, keys)
        for got, want in zip(unpacked, walked, strict=True):
            assert np.allclose(got, want, rtol=1e-12, equal_nan=True)
    durations = model.durations_to(origins, np.unique(np.concatenate(targets)), bucket)
    assert np.allclose(durations, whole.node_time_s[:, np.unique(np.concatenate(targets))],
                       rtol=1e-12)


def test_plans_are_built_once_under_threads_and_bounded_in_bytes(bundled_graph, monkeypatch):
    """Concurrent queries for a run key being customised wait for that one build; the
    plans kept stay within ``plan_cache_mb`` (the newest is always kept)."""
    import threading

    from models.eta.model import _plan_bytes

    model = load_model(SHIPPED_ETA, bundled_graph)
    builds = []
    original = model._build_plan

    def counting(bucket):
        builds.append(bucket)
        return original(bucket)

    monkeypatch.setattr(model, "_build_plan", counting)
    base = model.time_bucket(None)
    results = []
    threads = [threading.Thread(target=lambda: results.append(model._plan(base)))
               for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert builds == [base] and all(plan is results[0] for plan in results)
    one = _plan_bytes(results[0])
    assert one > results[0]["metric"].nbytes > 0
    model.plan_cache_mb = 2.5 * one / 2**20  # room for two plans
    for offset in (1, 2, 3):
        model._plan(base + offset)
    assert list(model._plans) == [base + 2, base + 3]
    model.plan_cache_mb = 0.0  # smaller than any plan: the newest stays
    model._plan(base + 4)
    assert list(model._plans) == [base + 4]


def test_latents_cache_is_an_lru_bounded_in_bytes(bundled_graph):
    from models.eta.model import _latents_bytes

    model = load_model(SHIPPED_ETA, bundled_graph)
    base = model.time_bucket(None)
    one = _latents_bytes(model.latents(base))
    model.latent_cache_mb = 2.5 * one / 2**20  # room for two
    model.latents(base + 1)
    model.latents(base)  # used again: the newest now
    model.latents(base + 2)
    assert list(model._cache) == [base, base + 2]
