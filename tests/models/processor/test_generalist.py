"""The learned multi-algorithm processor: reference hints for BFS, widest paths, Dijkstra's
settled sets and Prim's trees against independent checks, the model's shapes and masking, hint supervision that learns, the
artifact round trip, and the tropical reference arm left as shipped."""

import hashlib

import networkx as nx
import numpy as np
import pytest
import torch

from models.processor import generalist as gen
from models.processor.algorithms import bfs_hops, dijkstra, prim, widest_path
from models.processor.metrics import evaluate_algorithm_run, path_correct
from models.processor.model import (
    NEG_INF,
    load_pretrained,
    propagate_reached,
    shortest_paths,
)
from models.processor.synthetic import Graph, erdos_renyi, road_like
from tests.models.conftest import SHIPPED_PROCESSOR


def _random_graph(seed: int) -> Graph:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 30))
    mask = rng.random((n, n)) < rng.uniform(0.03, 0.3)
    s, r = np.nonzero(mask)
    # integer weights: many ties between paths of equal width
    w = rng.integers(1, 4, size=s.size).astype(float)
    return Graph(n, s.astype(np.int64), r.astype(np.int64), w, int(rng.integers(n)))


def _brute_force_widths(g: Graph) -> np.ndarray:
    """Width of ``v`` = the largest threshold at which ``v`` is reachable from the source
    using only edges at least that wide (one BFS per distinct weight)."""
    width = np.zeros(g.num_nodes)
    for threshold in np.unique(g.weights):
        keep = g.weights >= threshold
        graph = nx.DiGraph()
        graph.add_nodes_from(range(g.num_nodes))
        graph.add_edges_from(zip(g.senders[keep], g.receivers[keep], strict=True))
        for v in nx.descendants(graph, g.source):
            width[v] = max(width[v], threshold)
    width[g.source] = np.inf
    return width


@pytest.mark.parametrize("seed", range(10))
def test_bfs_and_widest_against_networkx_and_brute_force(seed):
    g = _random_graph(seed)
    graph = nx.DiGraph(list(zip(g.senders.tolist(), g.receivers.tolist(), strict=True)))
    graph.add_nodes_from(range(g.num_nodes))
    hops = nx.single_source_shortest_path_length(graph, g.source)
    bfs = bfs_hops(g.num_nodes, g.senders, g.receivers, g.weights, g.source)
    expected = np.array([hops.get(v, np.inf) for v in range(g.num_nodes)])
    np.testing.assert_array_equal(bfs.distance, expected)
    widest = widest_path(g.num_nodes, g.senders, g.receivers, g.weights, g.source)
    np.testing.assert_array_equal(widest.distance, _brute_force_widths(g))
    edges = set(zip(g.senders.tolist(), g.receivers.tolist(), strict=True))
    weight = {}
    for s, r, w in zip(g.senders.tolist(), g.receivers.tolist(), g.weights, strict=True):
        weight[(s, r)] = max(weight.get((s, r), 0.0), w)
    for v in range(g.num_nodes):
        if v == g.source or not np.isfinite(expected[v]):
            assert bfs.predecessor[v] == v and widest.predecessor[v] == v
            continue
        u = int(bfs.predecessor[v])
        assert (u, v) in edges and bfs.distance[u] == bfs.distance[v] - 1
        u = int(widest.predecessor[v])
        assert min(widest.distance[u], weight[(u, v)]) == widest.distance[v]
    # reference trees are trees: every reachable node's chain ends at the source
    for trace in (bfs, widest):
        correct = np.ones(g.num_nodes, dtype=bool)
        reach = np.isfinite(expected)
        assert path_correct(correct, trace.predecessor, g.source)[reach].all()
    # hints: row 0 is the start, the last row is the answer, values only improve
    assert np.isinf(bfs.hint_distance[0][np.arange(g.num_nodes) != g.source]).all()
    np.testing.assert_array_equal(bfs.hint_distance[-1], bfs.distance)
    others = np.arange(g.num_nodes) != g.source
    assert (np.diff(widest.hint_distance[:, others], axis=0) >= 0).all()


@pytest.mark.parametrize("seed", range(6))
def test_dijkstra_and_prim_hints_settle_one_node_per_step_in_key_order(seed):
    g = _random_graph(seed)
    for algorithm in (dijkstra, prim):
        trace = algorithm(g.num_nodes, g.senders, g.receivers, g.weights, g.source,
                          with_hints=True)
        settled = trace.hint_settled
        assert not settled[0].any() and settled[1].tolist() == (
            np.arange(g.num_nodes) == g.source).tolist()
        assert (np.diff(settled.sum(1)) == 1).all()  # one node per step
        order = [int(np.flatnonzero(settled[t] & ~settled[t - 1])[0])
                 for t in range(1, len(settled))]
        keys = trace.distance[order]
        if algorithm is dijkstra:  # settled in non-decreasing distance
            assert (np.diff(keys) >= 0).all()
        # the node settled at step t had the least key on the frontier at t - 1
        for t in range(2, len(settled)):
            frontier = ~settled[t - 1] & np.isfinite(trace.hint_distance[t - 1])
            assert trace.hint_distance[t - 1][order[t - 1]] == trace.hint_distance[t - 1][
                frontier].min()
        np.testing.assert_array_equal(settled[-1], np.isfinite(trace.distance))


@pytest.mark.parametrize("seed", range(6))
def test_prim_is_a_minimum_spanning_tree_on_symmetric_graphs(seed):
    g = _random_graph(seed)
    s = np.concatenate([g.senders, g.receivers])
    r = np.concatenate([g.receivers, g.senders])
    w = np.concatenate([g.weights, g.weights])  # the same weight both ways
    trace = prim(g.num_nodes, s, r, w, g.source)
    graph = nx.Graph()
    for u, v, weight in zip(s.tolist(), r.tolist(), w.tolist(), strict=True):
        if u != v and (not graph.has_edge(u, v) or graph[u][v]["weight"] > weight):
            graph.add_edge(u, v, weight=weight)
    graph.add_node(g.source)
    component = graph.subgraph(nx.node_connected_component(graph, g.source))
    expected = sum(d["weight"] for _, _, d in nx.minimum_spanning_edges(component, data=True))
    reach = np.isfinite(trace.distance)
    assert reach.sum() == component.number_of_nodes()
    assert trace.distance[reach].sum() == pytest.approx(expected)
    for v in np.flatnonzero(reach):
        if v != g.source:  # the key is the weight of the tree edge parent -> v
            assert graph[int(trace.predecessor[v])][int(v)]["weight"] == trace.distance[v]


def test_path_correct_rejects_cycles_of_right_looking_pointers():
    # 0 is the source; 1 and 2 point at each other: each pointer on its own is "right"
    correct = np.array([True, True, True, True])
    pointer = np.array([0, 2, 1, 0])
    np.testing.assert_array_equal(path_correct(correct, pointer, 0), [True, False, False, True])


def test_widest_metric_counts_tie_plateau_pointers_and_their_cycles():
    # source 0 -> 1 (2), 0 -> 2 (2), 1 <-> 2 (5): both 1 and 2 have width 2 either way
    s, r, w = np.array([0, 0, 1, 2]), np.array([1, 2, 2, 1]), np.array([2.0, 2.0, 5.0, 5.0])
    width = widest_path(3, s, r, w, 0).distance
    spec = gen.ALGORITHMS["widest"]
    result = evaluate_algorithm_run(
        combine=spec.combine, integer_values=False, true_value=width,
        reachable=np.ones(3, dtype=bool), predicted_value=np.array([np.inf, 2.0, 2.0]),
        predicted_pointer=np.array([0, 2, 1]), senders=s, receivers=r, weights=w, source=0)
    assert result["pointer_correct"] == 3 and result["path_correct"] == 1
    assert result["value_correct"] == 2


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return gen.GeneralistProcessor(gen.GeneralistConfig(hidden=16))


def test_shapes_and_masking(tiny):
    g = road_like(np.random.default_rng(3), 30)
    edge_index = torch.from_numpy(np.stack([g.senders, g.receivers]))
    mask = torch.zeros(2, g.num_nodes, dtype=torch.bool)
    mask[0, g.source] = mask[1, 0] = True
    for algorithm in ("bellman", "bfs", "widest"):
        values, logits, reached, steps = tiny.run(
            algorithm, mask, torch.ones(g.num_edges), edge_index, num_steps=3)
        assert steps == 3 and len(values) == len(logits) == 3
        assert values[0].shape == (2, g.num_nodes) and logits[0].shape == (2, g.num_edges)
        # after step 1 only the sources and their out-neighbours are reached: pointers
        # from any other sender score -inf
        after_one = propagate_reached(mask, edge_index)[:, edge_index[0]]  # [B, E]
        assert torch.isneginf(logits[0][~after_one]).all()
        assert torch.isfinite(logits[0][after_one]).all()
        assert reached.sum(1).gt(1).all()


def test_sequential_run_settles_one_node_per_step_and_graph(tiny):
    # two graphs in one union (segments): 0 -> 1 -> 2 and 3 -> 4; sources 0 and 3
    edge_index = torch.tensor([[0, 1, 3], [1, 2, 4]])
    mask = torch.tensor([[True, False, False, True, False]])
    segments = torch.tensor([0, 0, 0, 1, 1])
    for algorithm in ("dijkstra", "prim"):
        values, logits, selections, settled, steps = tiny.run_sequential(
            algorithm, mask, torch.ones(3), edge_index, segments=segments)
        assert steps == 3 and settled.all()  # 3 steps: graph 0 has 3 nodes, graph 1 two
        assert len(values) == len(logits) == len(selections) == 1  # test time: last only
        # the frontier after everything is settled is empty: every selection logit is -inf
        hints = torch.tensor([[0, 0, 0, 0, 0], [1, 0, 0, 1, 0], [1, 1, 0, 1, 1],
                              [1, 1, 1, 1, 1]], dtype=torch.bool).unsqueeze(1)
        _, _, selections, _, steps = tiny.run_sequential(
            algorithm, mask, torch.ones(3), edge_index, settled_hints=hints, segments=segments)
        assert steps == 3 and len(selections) == 3
        # step 1 may only settle the sources; step 2 their out-neighbours
        assert torch.isfinite(selections[0][0]).tolist() == [True, False, False, True, False]
        assert torch.isfinite(selections[1][0]).tolist() == [False, True, False, False, True]
        with pytest.raises(ValueError, match="sequential"):
            tiny.run(algorithm, mask, torch.ones(3), edge_index, num_steps=2)


def test_execute_conventions_on_unreachable_nodes_and_sources(tiny):
    # 0 -> 1 -> 2, node 3 isolated
    g = Graph(4, np.array([0, 1]), np.array([1, 2]), np.array([1.0, 2.0]), 0)
    for algorithm in tiny.config.algorithms:
        values, pointers, steps = gen.execute(tiny, algorithm, g, [0, 3])
        assert values.shape == pointers.shape == (2, 4)
        assert pointers[0, 0] == 0 and pointers[0, 3] == 3  # source, unreachable
        assert pointers[0, 1] == 0 and pointers[0, 2] == 1  # the only in-edges
        np.testing.assert_array_equal(pointers[1], [0, 1, 2, 3])  # nothing reached from 3
        unreached = 0.0 if algorithm == "widest" else np.inf
        assert values[0, 3] == unreached and values[1, 0] == unreached
        if gen.ALGORITHMS[algorithm].sequential:  # one step per settled node, per batch
            assert steps == [3]  # one batch: its longest run
        else:  # bounded by hop_factor * eccentricity + 2
            assert all(s <= 2 * 2 + 2 for s in steps)


def test_hint_supervision_loss_decreases():
    torch.manual_seed(0)
    model = gen.GeneralistProcessor(gen.GeneralistConfig(hidden=16, algorithms=("bellman",)))
    config = gen.GeneralistTrainConfig(iterations=30, batch_graphs=2, max_nodes=8,
                                       learning_rate=1e-2, extra_steps=1)
    history = gen.train(model, config)
    assert len(history) == 30
    assert np.mean(history[-8:]) < 0.5 * np.mean(history[:5])


@pytest.mark.parametrize("algorithm", ["dijkstra", "prim"])
def test_sequential_hint_supervision_fits_a_batch(algorithm):
    # value, pointer and selection losses through teacher-forced settled sets all train
    torch.manual_seed(0)
    model = gen.GeneralistProcessor(gen.GeneralistConfig(hidden=32, algorithms=(algorithm,)))
    rng = np.random.default_rng(0)
    batch = gen.make_batch([erdos_renyi(rng, 8, 0.5) for _ in range(3)], algorithm,
                           extra_steps=0)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(60):
        loss, parts = gen.algorithm_loss(model, algorithm, batch, pointer_weight=1.0)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        history.append(loss.item())
    assert f"{algorithm}_select" in parts
    assert np.mean(history[-5:]) < 0.3 * history[0]


def test_sequential_targets_dijkstra_and_prim_differ_where_they_should():
    # 0 -> 1 (1), 1 -> 2 (1), 0 -> 2 (1.5): Dijkstra reaches 2 from 0 (1.5 < 2), Prim
    # through 1 (the lighter edge 1 -> 2 once 1 is in the tree)
    g = Graph(3, np.array([0, 1, 0]), np.array([1, 2, 2]), np.array([1.0, 1.0, 1.5]), 0)
    for algorithm, parent_of_2 in (("dijkstra", 0), ("prim", 1)):
        batch = gen.make_batch([g, g], algorithm, extra_steps=3)
        assert batch.num_steps == 3  # one step per node, no extra steps
        assert batch.segments.tolist() == [0, 0, 0, 1, 1, 1]
        tight, has = gen.sequential_pointer_targets(gen.ALGORITHMS[algorithm], batch, 3)
        assert has.tolist() == [False, True, True] * 2
        senders = batch.edge_index[0][tight & (batch.edge_index[1] == 2)]
        assert senders.tolist() == [parent_of_2]
        # after step 1 (the source settled) node 2's tentative parent is 0 for both
        tight, has = gen.sequential_pointer_targets(gen.ALGORITHMS[algorithm], batch, 1)
        assert batch.edge_index[0][tight & (batch.edge_index[1] == 2)].tolist() == [0]
        # the selection target at step 2: node 1 (key 1 < 1.5) in both graphs
        select = torch.full((1, 6), NEG_INF)
        select[0, [1, 2, 4, 5]] = torch.tensor([5.0, 0.0, 5.0, 0.0])
        good = gen.selection_loss(select, batch, 2)
        select[0, [1, 2, 4, 5]] = torch.tensor([0.0, 5.0, 0.0, 5.0])
        assert good < 0.01 < gen.selection_loss(select, batch, 2)


def test_pointer_targets_are_reference_predecessors_on_a_path():
    # 0 -> 1 -> 2 -> 3, plus a wide shortcut 0 -> 3: targets follow each algorithm
    g = Graph(4, np.array([0, 1, 2, 0]), np.array([1, 2, 3, 3]),
              np.array([1.0, 1.0, 1.0, 0.5]), 0)
    sender = np.array([0, 1, 2, 0])
    # Bellman-Ford: 0 -> 3 (0.5) is shortest; BFS: one hop; widest: the width-1 path
    for algorithm, parent_of_3 in (("bellman", {0}), ("bfs", {0}), ("widest", {2})):
        batch = gen.make_batch([g], algorithm, extra_steps=1)
        tight, has = gen.pointer_targets(gen.ALGORITHMS[algorithm], batch, batch.num_steps)
        assert has.tolist() == [False, True, True, True]
        chosen = {int(sender[e]) for e in np.nonzero(tight.numpy())[0] if e in (2, 3)}
        assert chosen == parent_of_3


def test_artifact_round_trip(tmp_path, tiny):
    gen.save(tmp_path / "g", tiny, gen.GeneralistTrainConfig())
    loaded, manifest = gen.load(tmp_path / "g")
    assert manifest["kind"] == gen.KIND and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    g = erdos_renyi(np.random.default_rng(1), 12, 0.5)
    for algorithm in tiny.config.algorithms:
        a = gen.execute(tiny.eval(), algorithm, g, [g.source])
        b = gen.execute(loaded, algorithm, g, [g.source])
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_allclose(a[0], b[0])


def test_tropical_reference_arm_is_the_shipped_one_and_exact():
    digest = hashlib.sha256((SHIPPED_PROCESSOR / "processor.safetensors").read_bytes())
    assert digest.hexdigest() == (
        "2aa2c68f1101afb571fb61a469ff6b00c99231eddf269406d74a43f9bb40db30")
    processor, encoder, manifest = load_pretrained(SHIPPED_PROCESSOR)
    assert manifest["config"]["layer"] == "tropical"
    g = road_like(np.random.default_rng(5), 200)
    distance, pointer, _ = shortest_paths(
        processor, encoder, g.num_nodes, g.senders, g.receivers, g.weights, [g.source])
    spec = gen.ALGORITHMS["bellman"]
    truth = spec.reference(g.num_nodes, g.senders, g.receivers, g.weights, g.source)
    result = evaluate_algorithm_run(
        combine=spec.combine, integer_values=False, true_value=truth.distance,
        reachable=np.isfinite(truth.distance), predicted_value=distance[0],
        predicted_pointer=pointer[0], senders=g.senders, receivers=g.receivers,
        weights=g.weights, source=g.source)
    assert result["all_pointers_correct"] and result["path_correct"] == g.num_nodes
