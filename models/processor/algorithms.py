"""Reference shortest-path algorithms with per-step hint traces.

These are the textbook algorithms the processor imitates (CLRS ch. 24). Graphs are given as
directed edge lists: ``senders[e] -> receivers[e]`` with ``weights[e] >= 0``; parallel edges
and self-loops are allowed. Both algorithms return final distances and predecessors with the
same conventions as the ``processor predict`` interface:

* ``distance[v] = inf`` and ``predecessor[v] = v`` where ``v`` is unreachable;
* ``predecessor[source] = source``.

Bellman-Ford is the *synchronous* (Jacobi) variant that CLRS-30's ``bellman_ford`` hints and a
message-passing step follow: every round reads only the previous round's distances,

.. math::
    d^{t}_v = \\min\\bigl(d^{t-1}_v,\\; \\min_{(u, v) \\in E} d^{t-1}_u + w_{uv}\\bigr),

so after round ``t`` every distance is the shortest over paths of at most ``t`` edges. A
predecessor changes only on a strict improvement; among equal candidates the edge listed
first wins, which makes the trace deterministic.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ShortestPathTrace:
    """Result of a reference run.

    Attributes
    ----------
    distance : [N] float64, ``inf`` where unreachable.
    predecessor : [N] int64, ``v`` itself for the source and for unreachable nodes.
    hint_distance : [T+1, N] float64, distances after round ``t`` (row 0: initial state).
    hint_predecessor : [T+1, N] int64, predecessors after round ``t``.
    hint_settled : [T+1, N] bool or None, the sequential algorithms' (Dijkstra, Prim)
        settled set after step ``t`` (one node settled per step); ``None`` for the
        synchronous ones.
    """

    distance: np.ndarray
    predecessor: np.ndarray
    hint_distance: np.ndarray
    hint_predecessor: np.ndarray
    hint_settled: np.ndarray | None = None

    @property
    def num_rounds(self) -> int:
        """Rounds that changed something (the number of processor steps needed)."""
        return int(self.hint_distance.shape[0] - 1)


def _as_edges(num_nodes: int, senders, receivers, weights):
    senders = np.asarray(senders, dtype=np.int64)
    receivers = np.asarray(receivers, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64)
    if not (senders.shape == receivers.shape == weights.shape) or senders.ndim != 1:
        raise ValueError("senders, receivers and weights must be 1-D arrays of one length")
    if senders.size and (
        min(senders.min(), receivers.min()) < 0 or max(senders.max(), receivers.max()) >= num_nodes
    ):
        raise ValueError(f"edge endpoints must lie in [0, {num_nodes})")
    if weights.size and not (np.all(np.isfinite(weights)) and weights.min() >= 0):
        raise ValueError("weights must be finite and non-negative")
    return senders, receivers, weights


def _trace(distance: np.ndarray, predecessor: np.ndarray, hint_distance: list[np.ndarray],
           hint_predecessor: list[np.ndarray], with_hints: bool,
           hint_settled: list[np.ndarray] | None = None) -> ShortestPathTrace:
    """The final state and, with hints, the state after every step (else just the final)."""
    if not with_hints:  # (the sequential callers pass only the final settled set then)
        hint_distance, hint_predecessor = [distance], [predecessor]
    return ShortestPathTrace(
        distance, predecessor, np.stack(hint_distance), np.stack(hint_predecessor),
        None if hint_settled is None else np.stack(hint_settled),
    )


def bellman_ford(
    num_nodes: int, senders, receivers, weights, source: int, *, with_hints: bool = True
) -> ShortestPathTrace:
    """Synchronous Bellman-Ford from ``source``; stops after the first round with no change.

    Vectorised over edges: one round is O(E), at most N - 1 rounds change anything.
    """
    senders, receivers, weights = _as_edges(num_nodes, senders, receivers, weights)
    distance = np.full(num_nodes, np.inf)
    distance[source] = 0.0
    predecessor = np.arange(num_nodes, dtype=np.int64)
    hint_distance, hint_predecessor = [distance.copy()], [predecessor.copy()]
    order = np.arange(senders.size)
    for _ in range(max(num_nodes - 1, 0)):
        candidate = distance[senders] + weights  # [E]
        best = np.full(num_nodes, np.inf)
        np.minimum.at(best, receivers, candidate)
        improved = best < distance
        if not improved.any():
            break
        # First-listed edge achieving the best candidate of each improved receiver.
        winner = np.where(improved[receivers] & (candidate == best[receivers]))[0]
        first = np.full(num_nodes, senders.size, dtype=np.int64)
        np.minimum.at(first, receivers[winner], order[winner])
        targets = np.where(improved)[0]
        predecessor = predecessor.copy()
        predecessor[targets] = senders[first[targets]]
        distance = np.where(improved, best, distance)
        if with_hints:
            hint_distance.append(distance.copy())
            hint_predecessor.append(predecessor.copy())
    return _trace(distance, predecessor, hint_distance, hint_predecessor, with_hints)


def dijkstra(
    num_nodes: int, senders, receivers, weights, source: int, *, with_hints: bool = False
) -> ShortestPathTrace:
    """Binary-heap Dijkstra from ``source``. Hints (optional, O(N^2) memory) are the distances,
    predecessors and settled set after each node is settled, as in CLRS-30's ``dijkstra``
    (ties in the heap go to the smaller node index)."""
    return _greedy(num_nodes, senders, receivers, weights, source,
                   candidate=lambda d_u, w: d_u + w, with_hints=with_hints)


def prim(
    num_nodes: int, senders, receivers, weights, source: int, *, with_hints: bool = False
) -> ShortestPathTrace:
    """Prim's algorithm from ``source`` (CLRS-30 ``mst_prim``): grow one tree by the lightest
    edge leaving it. ``distance[v]`` is ``v``'s key, the weight of its tree edge (``0`` at the
    source, ``inf`` where unreachable); ``predecessor`` the tree parent. The tree grows along
    edges ``u -> v`` as listed, so on a symmetric graph (every edge in both directions, as
    road graphs and CLRS's undirected inputs) it is a minimum spanning tree of the source's
    component; on a one-way edge it is Prim's greedy arborescence, not a minimum one. Hints as
    :func:`dijkstra`."""
    return _greedy(num_nodes, senders, receivers, weights, source,
                   candidate=lambda _d_u, w: w, with_hints=with_hints)


def _greedy(num_nodes: int, senders, receivers, weights, source: int, *, candidate,
            with_hints: bool) -> ShortestPathTrace:
    """Settle the unsettled node of least key, then relax its out-edges with
    ``candidate(key_u, w_uv)``: Dijkstra (``key_u + w``) and Prim (``w``)."""
    senders, receivers, weights = _as_edges(num_nodes, senders, receivers, weights)
    order = np.argsort(senders, kind="stable")
    offsets = np.searchsorted(senders[order], np.arange(num_nodes + 1))
    key = np.full(num_nodes, np.inf)
    key[source] = 0.0
    predecessor = np.arange(num_nodes, dtype=np.int64)
    settled = np.zeros(num_nodes, dtype=bool)
    hint_key, hint_predecessor = [key.copy()], [predecessor.copy()]
    hint_settled = [settled.copy()]
    heap = [(0.0, source)]
    while heap:
        key_u, u = heapq.heappop(heap)
        if settled[u]:
            continue
        settled[u] = True
        for e in order[offsets[u] : offsets[u + 1]]:
            v, key_v = receivers[e], candidate(key_u, weights[e])
            if not settled[v] and key_v < key[v]:
                key[v], predecessor[v] = key_v, u
                heapq.heappush(heap, (key_v, int(v)))
        if with_hints:
            hint_key.append(key.copy())
            hint_predecessor.append(predecessor.copy())
            hint_settled.append(settled.copy())
    if not with_hints:
        hint_settled = [settled]
    return _trace(key, predecessor, hint_key, hint_predecessor, with_hints, hint_settled)


def tight_edges(distance: np.ndarray, senders, receivers, weights, *, rtol: float = 1e-6):
    """[E] bool: edges ``u -> v`` on SOME shortest path (``d_u + w_uv == d_v`` up to ``rtol``),
    excluding self-loops. With ties several incoming edges of a node are tight."""
    senders, receivers = np.asarray(senders), np.asarray(receivers)
    d_u, d_v = distance[senders], distance[receivers]
    finite = np.isfinite(d_u) & np.isfinite(d_v)
    w = np.asarray(weights, dtype=np.float64)
    gap = np.full(senders.shape, np.inf)
    gap[finite] = np.abs(d_u[finite] + w[finite] - d_v[finite])
    scale = np.maximum(np.where(finite, np.abs(d_v), 0.0), 1e-12)
    return finite & (gap <= rtol * scale + 1e-12) & (senders != receivers)


def exact_distances(num_nodes: int, senders, receivers, weights, sources) -> np.ndarray:
    """[S, N] exact distances from each source with scipy's Dijkstra (fast ground truth for
    large graphs). Parallel edges keep their lightest weight (scipy would sum them)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra as scipy_dijkstra

    senders, receivers, weights = _as_edges(num_nodes, senders, receivers, weights)
    keep = senders != receivers
    senders, receivers, weights = senders[keep], receivers[keep], weights[keep]
    by_weight = np.argsort(weights, kind="stable")
    _, first = np.unique(senders[by_weight] * num_nodes + receivers[by_weight], return_index=True)
    chosen = by_weight[first]
    # explicit zeros would vanish from a sparse matrix: nudge them to the smallest positive
    values = np.maximum(weights[chosen], np.finfo(float).tiny)
    matrix = coo_matrix(
        (values, (senders[chosen], receivers[chosen])), shape=(num_nodes, num_nodes)
    ).tocsr()
    return np.atleast_2d(
        scipy_dijkstra(matrix, directed=True, indices=np.asarray(sources, dtype=np.int64))
    )


def _synchronous(num_nodes: int, senders, receivers, weights, source: int, *, combine,
                 better, start: float, unreached: float, with_hints: bool) -> ShortestPathTrace:
    """A synchronous (Jacobi) relaxation on a semiring: every round computes
    ``candidate_uv = combine(value_u, w_uv)`` from the previous round's values and keeps the
    ``better`` of a node's value and its best candidate; the predecessor changes only on a
    strict improvement, the first-listed edge winning ties (as :func:`bellman_ford`)."""
    senders, receivers, weights = _as_edges(num_nodes, senders, receivers, weights)
    value = np.full(num_nodes, unreached)
    value[source] = start
    predecessor = np.arange(num_nodes, dtype=np.int64)
    hint_value, hint_predecessor = [value.copy()], [predecessor.copy()]
    order = np.arange(senders.size)
    reached = np.zeros(num_nodes, dtype=bool)
    reached[source] = True
    for _ in range(max(num_nodes - 1, 0)):
        from_reached = reached[senders]
        candidate = np.where(from_reached, combine(value[senders], weights), unreached)  # [E]
        best = np.full(num_nodes, unreached)
        if better is np.less:
            np.minimum.at(best, receivers, candidate)
        else:
            np.maximum.at(best, receivers, candidate)
        got = np.zeros(num_nodes, dtype=bool)
        got[receivers[from_reached]] = True
        improved = got & (~reached | better(best, value))
        improved[source] = False
        if not improved.any():
            break
        winner = np.where(improved[receivers] & from_reached & (candidate == best[receivers]))[0]
        first = np.full(num_nodes, senders.size, dtype=np.int64)
        np.minimum.at(first, receivers[winner], order[winner])
        targets = np.where(improved)[0]
        predecessor = predecessor.copy()
        predecessor[targets] = senders[first[targets]]
        value = np.where(improved, best, value)
        reached = reached | improved
        if with_hints:
            hint_value.append(value.copy())
            hint_predecessor.append(predecessor.copy())
    return _trace(value, predecessor, hint_value, hint_predecessor, with_hints)


def bfs_hops(
    num_nodes: int, senders, receivers, weights, source: int, *, with_hints: bool = True
) -> ShortestPathTrace:
    """Breadth-first search from ``source``: ``distance`` is the hop count (weights are
    ignored; ``inf`` where unreachable), one round per BFS layer (CLRS ``bfs``)."""
    return _synchronous(
        num_nodes, senders, receivers, weights, source,
        combine=lambda value, _w: value + 1.0, better=np.less, start=0.0, unreached=np.inf,
        with_hints=with_hints,
    )


def widest_path(
    num_nodes: int, senders, receivers, weights, source: int, *, with_hints: bool = True
) -> ShortestPathTrace:
    """Widest (maximum-bottleneck) paths from ``source``, synchronous Bellman-Ford on the
    (max, min) semiring: ``width_v = max(width_v, max_u min(width_u, w_uv))``.
    ``distance`` holds the widths: ``inf`` at the source, ``0`` where unreachable."""
    return _synchronous(
        num_nodes, senders, receivers, weights, source,
        combine=np.minimum, better=np.greater, start=np.inf, unreached=0.0,
        with_hints=with_hints,
    )
