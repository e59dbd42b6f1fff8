"""Graph samplers for pretraining and out-of-distribution tests.

Every sampler returns a :class:`Graph`: a directed edge list with positive weights and a
source node. An undirected graph lists both directions.

Erdős–Rényi, following google-deepmind/clrs (``clrs/_src/samplers.py``)
    ``BellmanFordSampler._sample_data`` calls ``_random_er_graph(nb_nodes=length, p=p,
    directed=False, acyclic=False, weighted=True, low=0, high=1)`` and draws the source
    uniformly. That function draws ``mat ~ Bernoulli(p)`` over the full ``n x n`` matrix
    and, being undirected, keeps ``mat * mat.T``: an off-diagonal edge exists with
    probability ``p**2``, and **self-loops are allowed** (the diagonal survives with
    probability ``p``). Weights are ``sqrt(u_ij * u_ji + 1e-3)`` with ``u ~ U[0, 1)``, i.e.
    symmetric and in ``[0.032, 1)``. CLRS-30's fixed test set uses ``p = 0.5``; the training
    script of Ibarz et al. 2022 (``clrs/examples/run.py``) draws ``p`` from
    ``(0.1, 0.2, ..., 0.9)`` for ``bellman_ford`` (it halves ``p`` only for other
    algorithms). We follow both: ``p`` from that tuple when training, 0.5 for the CLRS-style
    test sets. Graphs need not be connected (unreachable nodes occur).

Road-like
    Sparse, near-planar, degree mostly 2-4, long hop-diameters, positive weights spread over
    two to three orders of magnitude (segment length times a road-class pace times noise).
    Three families: perturbed grids with removed streets and a few diagonals, Delaunay
    triangulations of random points thinned to degree <= 4, and long thin corridors. A few
    streets become one-way. Nodes are relabelled in random order so that ids carry no
    geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLRS_TRAIN_P: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 10))
CLRS_TEST_P = 0.5
ROAD_FAMILIES: tuple[str, ...] = ("grid", "delaunay", "corridor")


@dataclass(frozen=True)
class Graph:
    """A directed weighted graph with a source node (edge arrays are [E])."""

    num_nodes: int
    senders: np.ndarray  # int64
    receivers: np.ndarray  # int64
    weights: np.ndarray  # float64, > 0
    source: int

    @property
    def num_edges(self) -> int:
        return int(self.senders.size)


def _undirected(num_nodes: int, pairs: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, ...]:
    """Both directions of every pair [P, 2]; a self-loop is listed once."""
    loop = pairs[:, 0] == pairs[:, 1]
    senders = np.concatenate([pairs[:, 0], pairs[~loop, 1]])
    receivers = np.concatenate([pairs[:, 1], pairs[~loop, 0]])
    both = np.concatenate([weights, weights[~loop]])
    return senders.astype(np.int64), receivers.astype(np.int64), both.astype(np.float64)


def erdos_renyi(rng: np.random.Generator, num_nodes: int, p: float | None = None) -> Graph:
    """A CLRS ``bellman_ford`` sample (see the module docstring); ``p=None`` draws p from
    :data:`CLRS_TRAIN_P`."""
    if p is None:
        p = float(rng.choice(CLRS_TRAIN_P))
    mat = rng.binomial(1, p, size=(num_nodes, num_nodes))
    mat = mat * mat.T
    raw = rng.uniform(0.0, 1.0, size=(num_nodes, num_nodes))
    weights = np.sqrt(raw * raw.T + 1e-3)
    rows, cols = np.nonzero(np.triu(mat))  # upper triangle incl. diagonal: each pair once
    senders, receivers, both = _undirected(
        num_nodes, np.stack([rows, cols], 1), weights[rows, cols]
    )
    return Graph(num_nodes, senders, receivers, both, int(rng.integers(num_nodes)))


def _largest_component(num_nodes: int, pairs: np.ndarray) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    adjacency = coo_matrix(
        (np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(num_nodes, num_nodes)
    )
    _, labels = connected_components(adjacency, directed=False)
    return labels == np.bincount(labels).argmax()


def _grid(rng: np.random.Generator, num_nodes: int, *, width: int | None = None):
    width = width or max(2, int(round(np.sqrt(num_nodes) * rng.uniform(0.7, 1.4))))
    height = int(np.ceil(num_nodes / width))
    x, y = np.meshgrid(np.arange(width), np.arange(height))
    points = np.stack([x.ravel(), y.ravel()], 1).astype(float)[:num_nodes]
    points += rng.normal(0.0, 0.2, size=points.shape)
    index = np.arange(width * height).reshape(height, width)
    pairs = [
        np.stack([index[:, :-1].ravel(), index[:, 1:].ravel()], 1),
        np.stack([index[:-1, :].ravel(), index[1:, :].ravel()], 1),
    ]
    diagonal = np.stack([index[:-1, :-1].ravel(), index[1:, 1:].ravel()], 1)
    pairs.append(diagonal[rng.random(len(diagonal)) < 0.08])
    pairs = np.concatenate(pairs)
    pairs = pairs[(pairs < num_nodes).all(1)]
    pairs = pairs[rng.random(len(pairs)) > 0.15]  # missing streets
    return points, pairs


def _delaunay(rng: np.random.Generator, num_nodes: int):
    from scipy.spatial import Delaunay

    points = rng.uniform(0.0, np.sqrt(num_nodes), size=(num_nodes, 2))
    simplices = Delaunay(points).simplices
    pairs = np.concatenate([simplices[:, [0, 1]], simplices[:, [1, 2]], simplices[:, [0, 2]]])
    pairs = np.unique(np.sort(pairs, 1), axis=0)
    length = np.linalg.norm(points[pairs[:, 0]] - points[pairs[:, 1]], axis=1)
    keep = np.zeros(len(pairs), dtype=bool)
    degree = np.zeros(num_nodes, dtype=int)
    cap = rng.integers(2, 5, size=num_nodes)  # target degree 2-4, shortest edges first
    for e in np.argsort(length):
        u, v = pairs[e]
        if degree[u] < cap[u] or degree[v] < cap[v]:
            keep[e] = True
            degree[u] += 1
            degree[v] += 1
    return points, pairs[keep]


def _corridor(rng: np.random.Generator, num_nodes: int):
    return _grid(rng, num_nodes, width=int(rng.integers(2, 4)))


def road_like(rng: np.random.Generator, num_nodes: int, family: str | None = None) -> Graph:
    """A road-like graph with about ``num_nodes`` nodes (the largest connected piece is kept,
    so a few nodes may be dropped)."""
    family = family or str(rng.choice(ROAD_FAMILIES))
    builder = {"grid": _grid, "delaunay": _delaunay, "corridor": _corridor}[family]
    points, pairs = builder(rng, num_nodes)
    keep = _largest_component(len(points), pairs)
    relabel = np.full(len(points), -1)
    relabel[keep] = rng.permutation(int(keep.sum()))
    pairs = relabel[pairs]
    pairs = pairs[(pairs >= 0).all(1)]
    order = np.argsort(relabel[keep])
    points = points[keep][order]
    n = int(keep.sum())
    length = np.linalg.norm(points[pairs[:, 0]] - points[pairs[:, 1]], axis=1) + 0.05
    pace = rng.choice([0.3, 0.6, 1.0, 2.0], size=len(pairs), p=[0.1, 0.2, 0.5, 0.2])
    weights = length * pace * rng.lognormal(0.0, 0.35, size=len(pairs))
    senders, receivers, both = _undirected(n, pairs, weights)
    # A few one-way streets: drop one direction of ~5% of the pairs.
    drop = np.zeros(len(senders), dtype=bool)
    one_way = np.where(rng.random(len(pairs)) < 0.05)[0]
    drop[one_way + len(pairs) * rng.integers(0, 2, size=len(one_way))] = True
    keep_edges = ~drop
    return Graph(
        n, senders[keep_edges], receivers[keep_edges], both[keep_edges], int(rng.integers(n))
    )


def training_graph(
    rng: np.random.Generator, *, min_nodes: int, max_nodes: int, road_fraction: float
) -> Graph:
    """One pretraining sample: ER (CLRS) or road-like, size uniform in [min, max]."""
    n = int(rng.integers(min_nodes, max_nodes + 1))
    if rng.random() < road_fraction:
        return road_like(rng, n)
    return erdos_renyi(rng, n)
