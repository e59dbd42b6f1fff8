import numpy as np
import pytest

from models.processor.algorithms import bellman_ford, dijkstra, exact_distances, tight_edges


def test_four_node_graph_by_hand(four_nodes):
    n, s, r, w = four_nodes
    for algorithm in (bellman_ford, dijkstra):
        trace = algorithm(n, s, r, w, 0)
        np.testing.assert_array_equal(trace.distance, [0, 1, 3, 4])
        np.testing.assert_array_equal(trace.predecessor, [0, 0, 1, 2])
    trace = bellman_ford(n, s, r, w, 0)
    # round 1 reaches 1 (1) and 2 (4); round 2 improves 2 to 3 and reaches 3 via the old
    # distance of 2 (4 + 1 = 5 < 1 + 5); round 3 improves 3 to 4 via the new one.
    np.testing.assert_array_equal(trace.hint_distance[1], [0, 1, 4, np.inf])
    np.testing.assert_array_equal(trace.hint_distance[2], [0, 1, 3, 5])
    np.testing.assert_array_equal(trace.hint_predecessor[2], [0, 0, 1, 2])
    np.testing.assert_array_equal(trace.hint_distance[3], [0, 1, 3, 4])
    assert trace.num_rounds == 3


def _random_graph(rng, n, p, integer):
    mask = rng.random((n, n)) < p
    s, r = np.nonzero(mask)
    w = rng.integers(1, 4, size=s.size).astype(float) if integer else rng.random(s.size) + 0.01
    return s, r, w


@pytest.mark.parametrize("seed", range(12))
def test_against_scipy_with_ties_and_unreachable(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 40))
    s, r, w = _random_graph(rng, n, rng.uniform(0.02, 0.3), integer=seed % 2 == 0)
    source = int(rng.integers(n))
    truth = exact_distances(n, s, r, w, [source])[0]
    for algorithm in (bellman_ford, dijkstra):
        trace = algorithm(n, s, r, w, source)
        np.testing.assert_allclose(trace.distance, truth)
        unreachable = np.isinf(truth)
        assert np.all(trace.predecessor[unreachable] == np.where(unreachable)[0])
        assert trace.predecessor[source] == source
        # every other predecessor edge lies on a shortest path (ties allowed)
        tight = tight_edges(truth, s, r, w)
        on_path = set(zip(s[tight].tolist(), r[tight].tolist(), strict=True))
        for v in np.where(~unreachable)[0]:
            if v != source:
                assert (int(trace.predecessor[v]), int(v)) in on_path


def test_hints_are_bounded_hop_distances():
    rng = np.random.default_rng(3)
    n = 12
    s, r, w = _random_graph(rng, n, 0.25, integer=False)
    trace = bellman_ford(n, s, r, w, 0)
    # brute force: shortest walks with at most t edges
    best = np.full(n, np.inf)
    best[0] = 0
    for t in range(1, trace.num_rounds + 1):
        nxt = best.copy()
        for u, v, weight in zip(s, r, w, strict=True):
            nxt[v] = min(nxt[v], best[u] + weight)
        best = nxt
        np.testing.assert_allclose(trace.hint_distance[t], best)
    assert np.all(trace.hint_distance[1:] <= trace.hint_distance[:-1])


def test_self_loops_and_parallel_edges():
    s, r, w = np.array([0, 0, 0, 1]), np.array([0, 1, 1, 1]), np.array([0.5, 3.0, 2.0, 1.0])
    for algorithm in (bellman_ford, dijkstra):
        trace = algorithm(3, s, r, w, 0)
        np.testing.assert_array_equal(trace.distance, [0, 2, np.inf])
        np.testing.assert_array_equal(trace.predecessor, [0, 0, 2])
    np.testing.assert_array_equal(exact_distances(3, s, r, w, [0])[0], [0, 2, np.inf])
