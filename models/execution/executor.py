r"""Inference execution of the frozen tropical processor in NumPy: the same frontier
(work-list) iteration as :func:`models.execution.frontier.frontier_run`, step for step, without
autograd and with the per-step cost of a few vectorised NumPy calls.

Training runs the processor in torch (gradients flow through it to the encoder); serving,
matrices and batch scoring only need its fixed point and its decoders, and the per-step
overhead of ~15 small torch kernels (about 0.4 ms a step, 40 ms for one origin on the
bundled city) dominated query latency. ``tests/models/execution/test_executor.py`` checks this
execution against the torch frontier and the processor's own dense iteration.

:class:`ChannelSearch` is the second executor, for the shipped processor whose sender map is
the identity (``A = I``): there each latent channel ``k`` is an independent min-plus
recursion :math:`h_{v,k} = \max(h_{v,k}, \max_u h_{u,k} - c_k(u \to v))` with a
non-negative cost :math:`c_k = -(\mathbf{B}\mathbf{z})_k`, whose fixed point is unique and
does not depend on the order in which nodes are relaxed (it is the shortest-path cost under
:math:`c_k`). It evaluates that same fixed point with a priority-queue (label-correcting)
schedule, compiled (:mod:`models.execution.kernels`), and, given a cost limit per channel, never
expands beyond it: a run costs what the trip needs, not what the map holds, and every value
it returns is exact. The processor's own decoders are then applied to the states.

A graph here is a :class:`Csr`: directed edges sorted by sender, each carrying a row of
the edge-term table ``B z`` (``edge_row``), so one table serves the whole road graph and a
batch of copies of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Csr:
    """Edges sorted by sender: out-edges of node ``v`` are ``indptr[v]:indptr[v+1]``."""

    num_nodes: int
    indptr: np.ndarray  # [N+1] int64
    sender: np.ndarray  # [E] int64, non-decreasing
    receiver: np.ndarray  # [E] int64
    edge_row: np.ndarray  # [E] int64 row of the edge-term table
    @classmethod
    def build(cls, sender: np.ndarray, receiver: np.ndarray, num_nodes: int,
              edge_row: np.ndarray | None = None) -> Csr:
        sender = np.asarray(sender, dtype=np.int64)
        receiver = np.asarray(receiver, dtype=np.int64)
        rows = np.arange(len(sender)) if edge_row is None else np.asarray(edge_row, np.int64)
        order = np.argsort(sender, kind="stable")
        counts = np.bincount(sender, minlength=num_nodes)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(num_nodes, indptr, sender[order], receiver[order], rows[order])

    @staticmethod
    def union(parts: list[Csr]) -> Csr:
        """Disjoint union: part ``i``'s node ``v`` becomes ``offset_i + v``."""
        offsets = np.cumsum([0] + [p.num_nodes for p in parts])
        edge_offsets = np.cumsum([0] + [len(p.sender) for p in parts])
        indptr = np.concatenate([parts[0].indptr[:1]] + [
            p.indptr[1:] + edge_offsets[i] for i, p in enumerate(parts)])
        return Csr(int(offsets[-1]), indptr.astype(np.int64),
                   np.concatenate([p.sender + offsets[i] for i, p in enumerate(parts)]),
                   np.concatenate([p.receiver + offsets[i] for i, p in enumerate(parts)]),
                   np.concatenate([p.edge_row for p in parts]))

    def copies(self, count: int) -> Csr:
        return self.union([self] * count) if count > 1 else self


def _out_edges(csr: Csr, nodes: np.ndarray) -> np.ndarray:
    """Edge positions of every out-edge of ``nodes`` (concatenated CSR ranges)."""
    start = csr.indptr[nodes]
    count = csr.indptr[nodes + 1] - start
    keep = count > 0
    start, count = start[keep], count[keep]
    if start.size == 0:
        return np.zeros(0, dtype=np.int64)
    # position j of range i is start_i + j: one cumulative sum of unit steps, with a jump
    # at the head of each range
    steps = np.ones(int(count.sum()), dtype=np.int64)
    steps[0] = start[0]
    steps[np.cumsum(count)[:-1]] = start[1:] - (start[:-1] + count[:-1]) + 1
    return np.cumsum(steps)


def tropical_fixed_point(csr: Csr, edge_term: np.ndarray, sources: np.ndarray, *,
                         sender_matrix: np.ndarray | None = None,
                         source_state: np.ndarray | None = None, rtol: float = 1e-6,
                         max_steps: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    r"""Run :math:`h'_v = \max(h_v, \max_{u\to v} A h_u + (Bz)_{uv})` from ``sources`` to
    its fixed point, touching only the out-edges of nodes that changed in the last step.

    ``edge_term`` ``[rows, H]`` float32 is :math:`Bz` per edge row; ``sender_matrix`` is
    :math:`A` (``None``: the identity); ``source_state`` ``[H]`` the sources' initial
    latent (``None``: zeros). Convergence as in the torch frontier: a node counts as
    changed if some channel moved by more than ``rtol`` times the largest magnitude among
    the states updated in that step. Returns ``(h [N, H], reached [N], steps)``; rows of
    unreached nodes are meaningless.
    """
    hidden = edge_term.shape[1]
    h = np.zeros((csr.num_nodes, hidden), dtype=np.float32)
    sources = np.asarray(sources, dtype=np.int64)
    if source_state is not None:
        h[sources] = source_state
    reached = np.zeros(csr.num_nodes, dtype=bool)
    reached[sources] = True
    changed = np.unique(sources)
    bound = csr.num_nodes if max_steps is None else max_steps
    steps = 0
    while steps < bound and changed.size:
        edges = _out_edges(csr, changed)
        if edges.size == 0:
            break
        steps += 1
        src, dst = csr.sender[edges], csr.receiver[edges]
        messages = h[src]
        if sender_matrix is not None:
            messages = messages @ sender_matrix.T
        messages = messages + edge_term[csr.edge_row[edges]]  # [A, H]
        order = np.argsort(dst, kind="stable")
        dst = dst[order]
        starts = np.flatnonzero(np.concatenate([[True], dst[1:] != dst[:-1]]))
        targets = dst[starts]
        incoming = np.maximum.reduceat(messages[order], starts, axis=0)  # [R, H]
        old = h[targets]
        was = reached[targets]
        new = np.where(was[:, None], np.maximum(old, incoming), incoming)
        scale = max(float(np.abs(new).max()), 1e-30)
        moved = (np.abs(new - old).max(axis=1) > rtol * scale) | ~was
        h[targets] = new
        reached[targets] = True
        changed = targets[moved]
    return h, reached, steps


def best_incoming(csr: Csr, node_score: np.ndarray, edge_score: np.ndarray,
                  reached: np.ndarray) -> np.ndarray:
    """The pointer decoder's choice per node: the incoming edge (position in ``csr``)
    maximising ``node_score[sender] + edge_score[edge_row]`` over reached senders, the
    lowest edge id among ties (as the torch decoder's ``amin``); -1 where none."""
    from models.execution import kernels

    return kernels.best_incoming(csr.sender, csr.receiver, csr.edge_row,
                                 np.ascontiguousarray(node_score, dtype=np.float64),
                                 np.ascontiguousarray(edge_score, dtype=np.float64),
                                 np.ascontiguousarray(reached, dtype=np.bool_), csr.num_nodes)


class ChannelSearch:
    r"""The fixed point of an ``A = I`` tropical layer: per-channel shortest-path costs.

    ``edge_cost`` ``[rows, C]`` >= 0 is :math:`-(\mathbf{B}\mathbf{z})` per edge row of
    ``csr``. All channels are computed in one compiled label-correcting pass
    (:func:`models.execution.kernels.channel_search`): exact, whatever the order of relaxations.

    Searches for given targets (:meth:`distances_to`) first run one *guide* Dijkstra on the
    channels' mean cost until every target is settled; the channel-``k`` cost of the
    guide's path to the farthest target bounds that target's channel-``k`` distance, and
    the channel search stops there: the search ball grows with the trip, not the map.
    """

    def __init__(self, csr: Csr, edge_cost: np.ndarray):
        self.csr = csr
        self.num_nodes = csr.num_nodes
        self.cost = np.ascontiguousarray(edge_cost, dtype=np.float64)
        self.guide = np.ascontiguousarray(self.cost.mean(axis=1))
        self.channels = self.cost.shape[1]

    def _search(self, root: int, limits: np.ndarray) -> np.ndarray:
        from models.execution import kernels

        csr = self.csr
        return kernels.channel_search(csr.indptr, csr.receiver, csr.edge_row, self.cost,
                                      int(root), np.ascontiguousarray(limits, np.float64))

    def distances(self, roots: np.ndarray) -> np.ndarray:
        """``[B, N, C]`` cheapest path cost per channel from each root (inf: unreachable)."""
        unlimited = np.full(self.channels, np.inf)
        return np.stack([self._search(int(root), unlimited) for root in roots])

    def distances_to(self, root: int, targets: np.ndarray, *, slack: float = 1.0
                     ) -> tuple[np.ndarray, np.ndarray]:
        """``([N, C], limits [C])``: as :meth:`distances` for one root, searched only as far
        as settling every target needs (times ``slack``): exact wherever finite; a key left
        at inf in channel ``k`` costs more than ``limits[k]`` there (or is unreachable)."""
        from models.execution import kernels

        csr = self.csr
        targets = np.unique(np.asarray(targets, dtype=np.int64))
        is_target = np.zeros(self.num_nodes, dtype=np.bool_)
        is_target[targets] = True
        _, settled, via = kernels.guide_search(csr.indptr, csr.receiver, csr.edge_row,
                                               self.guide, int(root), is_target,
                                               int(is_target.sum()))
        if not settled[targets].all():  # some target is unreachable: search everything
            limits = np.full(self.channels, np.inf)
        else:
            costs = kernels.path_costs(csr.sender, csr.edge_row, self.cost, via, int(root),
                                       targets)
            limits = costs.max(axis=0) * slack * (1 + 1e-9)  # summation order may differ
        return self._search(int(root), limits), limits
