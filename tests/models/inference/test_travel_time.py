"""dijkstra_tree on graphs large enough that node-pair keys overflow 32 bits."""

from __future__ import annotations

import numpy as np

from models.inference.travel_time import dijkstra_tree


class _PathGraph:
    """A directed path 0 -> 1 -> ... -> n-1: just what dijkstra_tree reads."""

    def __init__(self, n: int):
        self.num_nodes = n
        self.arrays = {"edge_source": np.arange(n - 1, dtype=np.int64),
                       "edge_target": np.arange(1, n, dtype=np.int64),
                       "node_x_m": np.arange(n, dtype=np.float64) * 10.0,
                       "node_y_m": np.zeros(n), "length_m": np.full(n - 1, 10.0)}

    def __getitem__(self, name):
        return self.arrays[name]

    def to_scipy(self, weights):
        from scipy.sparse import coo_matrix

        return coo_matrix((weights, (self["edge_source"], self["edge_target"])),
                          shape=(self.num_nodes, self.num_nodes)).tocsr()


def test_parents_beyond_int32_keys():
    n = 50_000  # predecessor * n exceeds 2**31 for the last nodes
    graph = _PathGraph(n)
    run = dijkstra_tree(graph, np.ones(n - 1), np.array([0]))
    # Node k is reached by segment k-1 (which ends at k).
    assert run.parent_segment[0, 0] == -1
    np.testing.assert_array_equal(run.parent_segment[0, 1:], np.arange(n - 1))
    assert run.node_time_s[0, -1] == n - 1
