import numpy as np
import pytest

from models.processor.synthetic import ROAD_FAMILIES, erdos_renyi, road_like, training_graph


def test_erdos_renyi_follows_clrs_conventions():
    rng = np.random.default_rng(0)
    g = erdos_renyi(rng, 32, 0.9)
    pairs = set(zip(g.senders.tolist(), g.receivers.tolist(), strict=True))
    assert all((v, u) in pairs for u, v in pairs)  # undirected: both directions listed
    assert any(u == v for u, v in pairs)  # self-loops allowed, as in CLRS
    assert g.weights.min() >= np.sqrt(1e-3) - 1e-12 and g.weights.max() < np.sqrt(1 + 1e-3)
    assert 0 <= g.source < 32


@pytest.mark.parametrize("family", ROAD_FAMILIES)
def test_road_like_is_sparse_connected_and_wide_ranged(family):
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    g = road_like(np.random.default_rng(1), 400, family)
    degree = np.bincount(g.senders, minlength=g.num_nodes)
    assert 1.8 <= degree.mean() <= 4.2 and degree.max() <= 8
    matrix = coo_matrix((g.weights, (g.senders, g.receivers)), shape=(g.num_nodes,) * 2)
    assert connected_components(matrix, directed=False)[0] == 1
    assert g.weights.min() > 0 and g.weights.max() / g.weights.min() > 20


def test_training_graphs_respect_size_bounds():
    rng = np.random.default_rng(2)
    for _ in range(20):
        g = training_graph(rng, min_nodes=8, max_nodes=64, road_fraction=0.5)
        assert g.num_nodes <= 64
