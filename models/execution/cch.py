r"""A customizable contraction hierarchy (CCH) over the latent cost channels: exact
point-to-point and few-to-many answers of the frozen processor without searching the map.

With the identity sender map every latent channel ``k`` of the processor is a shortest-path
problem with fixed non-negative edge costs per run key (time bucket, traffic snapshot), see
:class:`models.execution.executor.ChannelSearch`. Routing engines answer such queries with a
hierarchy; nareta uses the *customizable* kind (Dibbelt, Strasser & Wagner, "Customizable
Contraction Hierarchies", JEA 2016), the metric-independent cousin of OSRM's MLD:

1. **Topology, once per graph** (:meth:`Hierarchy.build`): a nested-dissection order from
   recursive geometric bisection (a separator: one side of the cut edges), the undirected
   graph contracted in that order with every fill-in edge (symbolic elimination along the
   elimination tree).
2. **Customisation, once per run key** (:meth:`Hierarchy.customise`): every arc gets its
   upward and downward cost in every channel from the original edges (cheapest parallel
   edge), then one pass over the lower triangles (enumerated on the fly) in rank order makes
   each arc's cost the cheapest path through lower nodes -- all channels at once
   (``[arcs, C]``).
3. **Queries** (:func:`models.execution.kernels.cch_targets`): the upward search from the root walks
   only its elimination-tree ancestors; distances at any key follow by a *lazy* restricted
   PHAST sweep down that key's ancestor chain (each ancestor computed once per query,
   top-down). The pointer decoder is then walked back from each target, reading the exact
   states of the senders it compares.

Every value is the exact per-channel shortest-path cost (only the order of the float
additions differs from the label-correcting search), so the decoded times and pointers are
the whole-graph run's: ``tests/models/test_cch.py`` compares them on random graphs and on
the bundled city with the shipped model.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

#: parts at most this large are ordered without splitting them further
_LEAF = 8


@dataclass
class Metric:
    """A customised hierarchy: per arc and channel the cost low -> high (``up``) and
    high -> low (``down``), inf where no path through lower nodes exists."""

    up: np.ndarray  # [A, C] float64
    down: np.ndarray  # [A, C] float64

    @property
    def nbytes(self) -> int:
        return int(self.up.nbytes + self.down.nbytes)


def _undirected(sender: np.ndarray, receiver: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = sender != receiver
    low = np.minimum(sender[keep], receiver[keep])
    high = np.maximum(sender[keep], receiver[keep])
    pairs = np.unique(np.stack([low, high], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def _vertex_cover(ends_a: np.ndarray, ends_b: np.ndarray) -> np.ndarray:
    """A minimum vertex cover of the bipartite cut graph (edges ``ends_a[i] - ends_b[i]``,
    the two sides disjoint): König's construction from a maximum matching."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching

    left, li = np.unique(ends_a, return_inverse=True)
    right, ri = np.unique(ends_b, return_inverse=True)
    graph = csr_matrix((np.ones(len(li), np.int8), (li, ri)), shape=(len(left), len(right)))
    match_right = maximum_bipartite_matching(graph, perm_type="column")  # per left: right
    match_left = np.full(len(right), -1)
    matched = match_right >= 0
    match_left[match_right[matched]] = np.flatnonzero(matched)
    # Z: reachable from unmatched left vertices by alternating paths
    seen_left = ~matched
    seen_right = np.zeros(len(right), dtype=bool)
    frontier = np.flatnonzero(seen_left)
    while frontier.size:
        rows = graph[frontier]
        reach = np.unique(rows.indices)
        reach = reach[~seen_right[reach]]
        seen_right[reach] = True
        back = match_left[reach]
        back = back[(back >= 0) & ~seen_left[np.maximum(back, 0)]]
        seen_left[back] = True
        frontier = back
    return np.concatenate([left[~seen_left], right[seen_right]])


def _bisect(nodes: np.ndarray, xy: np.ndarray, ea: np.ndarray, eb: np.ndarray,
            side: np.ndarray) -> np.ndarray:
    """Split ``nodes`` along the best of eight directions at the best cut position
    between 30% and 70% of them (inertial-flow style, judged by cut edges per node on
    the smaller side), separated by a minimum vertex cover of the cut edges. Leaves
    ``side`` 0 / 1 for the halves and 2 on the separator, which it returns."""
    count = len(nodes)
    local = np.full(side.shape[0], -1, dtype=np.int64)  # node -> index in ``nodes``
    local[nodes] = np.arange(count)
    la, lb = local[ea], local[eb]
    lo_q, hi_q = max(1, int(0.3 * count)), min(count - 1, int(0.7 * count))
    best = None
    for angle in np.arange(0.0, 180.0, 22.5):
        theta = np.radians(angle)
        projection = xy[:, 0] * np.cos(theta) + xy[:, 1] * np.sin(theta)
        ranked = np.argsort(projection, kind="stable")
        position = np.empty(count, dtype=np.int64)
        position[ranked] = np.arange(count)
        # an edge is cut by a split before position q when min(pos) < q <= max(pos)
        first = np.minimum(position[la], position[lb])
        last = np.maximum(position[la], position[lb])
        crossing = np.cumsum(np.bincount(first + 1, minlength=count + 1)
                             - np.bincount(last + 1, minlength=count + 1))[:count + 1]
        splits = np.arange(lo_q, hi_q + 1)
        score = crossing[splits] / np.minimum(splits, count - splits)
        pick = int(np.argmin(score))
        if best is None or score[pick] < best[0]:
            best = (score[pick], ranked, int(splits[pick]))
    _, ranked, split = best
    side[nodes[ranked[:split]]] = 0
    side[nodes[ranked[split:]]] = 1
    cut = side[ea] != side[eb]
    zero = np.where(side[ea[cut]] == 0, ea[cut], eb[cut])
    one = np.where(side[ea[cut]] == 0, eb[cut], ea[cut])
    separator = _vertex_cover(zero, one) if cut.any() else np.zeros(0, np.int64)
    side[separator] = 2
    return separator


def dissection_order(num_nodes: int, edge_a: np.ndarray, edge_b: np.ndarray,
                     coords: np.ndarray) -> np.ndarray:
    """Nodes in contraction order (first = least important): nested dissection by
    recursive bisection at the median along the best of four directions, the separator a
    minimum vertex cover of the cut edges, ordered after both halves."""
    order: list[np.ndarray] = []
    # an explicit stack keeps deep recursion off the Python stack; a separator is emitted
    # after both halves, so it is pushed before them
    stack: list[tuple] = [("part", np.arange(num_nodes), edge_a, edge_b)]
    side = np.zeros(num_nodes, dtype=np.int8)
    while stack:
        item = stack.pop()
        if item[0] == "emit":
            order.append(item[1])
            continue
        _, nodes, ea, eb = item
        if len(nodes) <= _LEAF:
            order.append(nodes)
            continue
        separator = _bisect(nodes, coords[nodes], ea, eb, side)
        stack.append(("emit", separator))
        for part in (0, 1):
            inside = (side[ea] == part) & (side[eb] == part)
            stack.append(("part", nodes[side[nodes] == part], ea[inside], eb[inside]))
    result = np.concatenate(order) if order else np.zeros(0, dtype=np.int64)
    if len(result) != num_nodes or len(np.unique(result)) != num_nodes:
        raise AssertionError("dissection order is not a permutation")
    return result.astype(np.int64)


class Scratch:
    """Per-thread buffers of :func:`models.execution.kernels.cch_targets`: a node's entry in
    ``on_chain`` / ``done`` equals the query's stamp when set in that query, so nothing
    is cleared between queries."""

    def __init__(self, num_nodes: int, channels: int):
        self.channels = channels
        self.arrays = (np.empty((num_nodes, channels)), np.empty((num_nodes, channels)),
                       np.zeros(num_nodes, np.int64), np.zeros(num_nodes, np.int64),
                       np.empty(num_nodes, np.int64))
        self._stamp = 0

    def next_stamp(self) -> int:
        self._stamp += 1
        return self._stamp


class PathScratch(Scratch):
    """Buffers of :func:`models.execution.kernels.cch_scalar_paths`: fwd, fwd_arc, dist,
    via, chain and done stamps, and a stack."""

    def __init__(self, num_nodes: int):
        self.channels = 1
        self.arrays = (np.empty(num_nodes), np.empty(num_nodes, np.int64),
                       np.empty(num_nodes), np.empty(num_nodes, np.int64),
                       np.zeros(num_nodes, np.int64), np.zeros(num_nodes, np.int64),
                       np.empty(num_nodes, np.int64))
        self._stamp = 0


@dataclass
class Hierarchy:
    """The metric-independent part: contraction order, elimination tree, upward arcs
    (``up_head[up_indptr[v]:up_indptr[v+1]]``: ``v``'s higher neighbours in the filled
    graph, by rank), and where each original edge lands."""

    num_nodes: int
    rank: np.ndarray  # [N]
    parent: np.ndarray  # [N] elimination-tree parent, -1 at a root
    up_indptr: np.ndarray  # [N+1]
    up_head: np.ndarray  # [A]
    edge_arc: np.ndarray  # [E] arc of each original edge position (-1: a self-loop)
    edge_up: np.ndarray  # [E] bool: the edge runs low -> high along its arc
    order: np.ndarray  # [N] nodes by rank

    @property
    def num_arcs(self) -> int:
        return len(self.up_head)

    @property
    def arc_tail(self) -> np.ndarray:
        """``[A]`` each arc's lower end (computed once)."""
        if "_arc_tail" not in self.__dict__:
            self._arc_tail = np.repeat(np.arange(self.num_nodes, dtype=np.int64),
                                       np.diff(self.up_indptr))
        return self._arc_tail

    @classmethod
    def build(cls, sender: np.ndarray, receiver: np.ndarray, num_nodes: int,
              coords: np.ndarray) -> Hierarchy:
        """``sender`` / ``receiver``: the directed edges (positions as the caller keeps
        them); ``coords`` ``[N, 2]`` planar positions for the dissection."""
        from models.execution import kernels

        sender = np.asarray(sender, dtype=np.int64)
        receiver = np.asarray(receiver, dtype=np.int64)
        edge_a, edge_b = _undirected(sender, receiver)
        order = dissection_order(num_nodes, edge_a, edge_b, np.asarray(coords, np.float64))
        rank = np.empty(num_nodes, dtype=np.int64)
        rank[order] = np.arange(num_nodes)
        parent, up_indptr, up_head = _eliminate(num_nodes, rank, order, edge_a, edge_b)
        low = np.where(rank[sender] <= rank[receiver], sender, receiver)
        high = np.where(rank[sender] <= rank[receiver], receiver, sender)
        edge_arc = kernels.cch_find_arcs(up_indptr, up_head, low, high)
        edge_arc[sender == receiver] = -1
        return cls(num_nodes, rank, parent, up_indptr, up_head, edge_arc, sender == low,
                   order)

    def path_scratch(self) -> PathScratch:
        """This thread's buffers for :func:`models.execution.kernels.cch_scalar_paths`."""
        local = self.__dict__.setdefault("_local", threading.local())
        buffers = getattr(local, "paths", None)
        if buffers is None:
            buffers = local.paths = PathScratch(self.num_nodes)
        return buffers

    def scratch(self, channels: int) -> Scratch:
        """This thread's query buffers (allocated once per thread and channel count:
        fresh megabytes per query cost more in page faults than the query itself)."""
        local = self.__dict__.setdefault("_local", threading.local())
        buffers = getattr(local, "buffers", None)
        if buffers is None or buffers.channels != channels:
            buffers = local.buffers = Scratch(self.num_nodes, channels)
        return buffers

    def customise(self, edge_cost: np.ndarray) -> Metric:
        """``edge_cost`` ``[E, C]`` >= 0 per original edge position: the metric."""
        from models.execution import kernels

        up, down = kernels.cch_customise(
            self.edge_arc, self.edge_up, np.ascontiguousarray(edge_cost, dtype=np.float64),
            self.up_indptr, self.up_head, self.order)
        return Metric(up, down)


def _eliminate(num_nodes: int, rank: np.ndarray, order: np.ndarray, edge_a: np.ndarray,
               edge_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symbolic elimination: a node's higher neighbours in the filled graph are its own
    higher neighbours plus its elimination-tree children's (less itself); its parent is the
    lowest of them. Returns (parent, up_indptr, up_head with heads sorted by rank)."""
    low = np.where(rank[edge_a] < rank[edge_b], edge_a, edge_b)
    high = np.where(rank[edge_a] < rank[edge_b], edge_b, edge_a)
    upper: list[set[int]] = [set() for _ in range(num_nodes)]
    for lo, hi in zip(low.tolist(), high.tolist(), strict=True):
        upper[lo].add(hi)
    children: list[list[int]] = [[] for _ in range(num_nodes)]
    parent = np.full(num_nodes, -1, dtype=np.int64)
    rank_list = rank.tolist()
    heads: list[list[int]] = [[] for _ in range(num_nodes)]
    for v in order.tolist():
        mine = upper[v]
        for child in children[v]:
            mine |= upper[child]
            upper[child] = set()  # no longer needed: free it
        mine.discard(v)
        ordered = sorted(mine, key=rank_list.__getitem__)
        heads[v] = ordered
        if ordered:
            parent[v] = ordered[0]
            children[ordered[0]].append(v)
    counts = np.array([len(h) for h in heads], dtype=np.int64)
    up_indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    up_head = np.fromiter((x for h in heads for x in h), dtype=np.int64,
                          count=int(counts.sum()))
    return parent, up_indptr, up_head


def key_coordinates(graph, keys_are_segments: bool) -> np.ndarray:
    """Planar positions for the dissection: junctions (node mode) or segment midpoints
    (turn mode, where the keys are segments), lon scaled by cos(mean lat)."""
    lat = graph["node_lat"].astype(np.float64)
    xy = np.stack([graph["node_lon"] * np.cos(np.radians(lat.mean())), lat], axis=1)
    if keys_are_segments:
        xy = (xy[graph["edge_source"]] + xy[graph["edge_target"]]) / 2
    return xy


class ScalarQueries:
    """Shortest paths of one scalar cost per edge (free flow, live scalar) on a perfectly
    customised hierarchy: exact times at the targets and their shortest paths, unpacked
    from the arcs through the middle node each arc's customisation recorded, so a query
    touches the keys' ancestors, not the map.

    ``csr``: the graph's edges (:class:`models.execution.executor.Csr`), ``weight`` and
    ``length`` per edge row; ``parent_is_sender``: a key's parent is the previous key (turn
    mode) rather than the edge row (node mode)."""

    def __init__(self, hierarchy: Hierarchy, csr, weight: np.ndarray, length: np.ndarray,
                 parent_is_sender: bool):
        from models.execution import kernels

        self.hierarchy, self.csr = hierarchy, csr
        weight = np.asarray(weight, dtype=np.float64)
        self.weight = weight
        up, down, self.mid_up, self.mid_down = kernels.cch_customise_scalar(
            hierarchy.edge_arc, hierarchy.edge_up, weight[csr.edge_row], hierarchy.up_indptr,
            hierarchy.up_head, hierarchy.order)
        # perfect customisation: every arc costs its true distance, and the searches skip
        # arc directions an upper or intermediate triangle realises (fewer arcs per query);
        # only for positive weights (a zero-cost triangle would realise its own legs)
        keep_up = keep_down = np.ones(hierarchy.num_arcs, dtype=bool)
        if (weight > 0).all():
            keep_up, keep_down = kernels.cch_perfect(
                hierarchy.up_indptr, hierarchy.up_head, hierarchy.order, up, down,
                self.mid_up, self.mid_down)
        self.metric = Metric(up[:, None], down[:, None])
        self.searches = (self._compact(keep_up, up), self._compact(keep_down, down))
        self.edge_length = np.asarray(length, dtype=np.float64)
        self.parent_is_sender = parent_is_sender

    def _compact(self, keep: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, ...]:
        """(indptr, head, cost, arc id) of the kept arcs, grouped by their lower end."""
        hierarchy = self.hierarchy
        tail = hierarchy.arc_tail
        kept = np.flatnonzero(keep)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(
            tail[kept], minlength=hierarchy.num_nodes))]).astype(np.int64)
        return indptr, hierarchy.up_head[kept], np.ascontiguousarray(cost[kept]), kept

    def _paths(self):
        """Path-unpacking tables (built on first use): per arc and direction the cheapest
        original edge position (lowest edge row among equal costs)."""
        if getattr(self, "_unpacking", None) is None:
            hierarchy, csr = self.hierarchy, self.csr
            edge_cost = self.weight[csr.edge_row]
            best = []
            for upward in (True, False):
                chosen = np.full(hierarchy.num_arcs, -1, dtype=np.int64)
                edges = np.flatnonzero((hierarchy.edge_arc >= 0)
                                       & (hierarchy.edge_up == upward))
                # per arc the cheapest edge, lowest row first among equal costs
                edges = edges[np.lexsort((csr.edge_row[edges], edge_cost[edges],
                                          hierarchy.edge_arc[edges]))]
                arcs = hierarchy.edge_arc[edges]
                first = np.concatenate([[True], arcs[1:] != arcs[:-1]])
                chosen[arcs[first]] = edges[first]
                best.append(chosen)
            self._unpacking = (best[0], best[1])
        return self._unpacking

    def answer(self, root: int, keys: np.ndarray) -> tuple[np.ndarray, ...]:
        """(keys, seconds, metres, path_keys, path_parents) as
        :class:`models.inference.travel_time.OriginRun` answers carry them: the upward
        search from the root, the lazy sweep down the targets' ancestors, and each path
        unpacked (:func:`models.execution.kernels.cch_scalar_paths`)."""
        from models.execution import kernels

        hierarchy, csr = self.hierarchy, self.csr
        edge_up, edge_down = self._paths()
        buffers = hierarchy.path_scratch()
        cost, edges, offsets = kernels.cch_scalar_paths(
            hierarchy.parent, hierarchy.up_indptr, hierarchy.up_head, hierarchy.arc_tail,
            self.mid_up,
            self.mid_down, edge_up, edge_down, *self.searches[0], *self.searches[1], int(root),
            keys, *buffers.arrays, buffers.next_stamp())
        if offsets[-1] != len(edges):
            raise AssertionError("contraction-hierarchy path unpacking failed")
        seconds = cost.copy()
        seconds[keys == root] = 0.0
        rows = csr.edge_row[edges]
        metres = np.add.reduceat(np.append(self.edge_length[rows], 0.0), offsets[:-1])
        metres[offsets[1:] == offsets[:-1]] = 0.0
        metres[~np.isfinite(seconds)] = np.nan
        # parents of the keys on the paths (a key reached twice is reached the same way)
        path_keys = csr.receiver[edges]
        parents = csr.sender[edges] if self.parent_is_sender else rows
        unique, first = np.unique(path_keys, return_index=True)
        return keys, seconds, metres, unique, parents[first]

    def _answer_by_walk(self, root: int, keys: np.ndarray) -> tuple[np.ndarray, ...]:
        """:meth:`answer` by the pointer walk of :func:`models.execution.kernels.cch_targets`
        (each step the in-edge with the cheapest ``d(u) + w``): kept to check the
        unpacking against."""
        from models.execution import kernels

        hierarchy, metric, csr = self.hierarchy, self.metric, self.csr
        n = csr.num_nodes
        in_indptr = np.concatenate([[0], np.cumsum(np.bincount(
            csr.receiver, minlength=n))]).astype(np.int64)
        in_position = np.argsort(csr.receiver, kind="stable").astype(np.int64)
        parent = np.full(csr.num_nodes, -1, dtype=np.int64)
        proven_path = np.zeros(csr.num_nodes, dtype=np.bool_)
        scratch = hierarchy.scratch(1)
        cost, metres, proven = kernels.cch_targets(
            hierarchy.parent, hierarchy.up_indptr, hierarchy.up_head, metric.up, metric.down,
            int(root), keys, in_indptr, in_position, csr.sender, csr.edge_row,
            np.ones(1), -self.weight, np.zeros(n), self.edge_length,
            not self.parent_is_sender, True, parent, proven_path, *scratch.arrays,
            scratch.next_stamp())
        seconds = cost[:, 0].copy()
        seconds[keys == root] = 0.0
        metres[keys == root] = 0.0
        if not proven.all():  # the walk looped (cannot happen with positive weights)
            raise AssertionError("shortest-path walk did not reach the root")
        path_keys = np.flatnonzero(proven_path)
        return keys, seconds, metres, path_keys, parent[path_keys]

    def durations(self, roots: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """``[R, K]`` seconds (inf: no route)."""
        from models.execution import kernels

        hierarchy, metric = self.hierarchy, self.metric
        seconds = kernels.cch_many(hierarchy.parent, hierarchy.up_indptr, hierarchy.up_head,
                                   metric.up, metric.down, hierarchy.rank,
                                   np.asarray(roots, np.int64), np.asarray(keys, np.int64),
                                   32)[:, :, 0]
        seconds[np.asarray(roots)[:, None] == np.asarray(keys)[None, :]] = 0.0
        return seconds
