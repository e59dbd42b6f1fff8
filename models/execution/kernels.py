"""Compiled (numba) loops behind :class:`models.execution.executor.ChannelSearch`.

Graphs are CSR arrays sorted by sender: out-edges of node ``u`` are positions
``indptr[u]:indptr[u+1]``, ``receiver[pos]`` their heads and ``row[pos]`` their row in a
per-edge cost table. Compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _swap(keys, items, where, i, j):
    keys[i], keys[j] = keys[j], keys[i]
    items[i], items[j] = items[j], items[i]
    where[items[i]] = i
    where[items[j]] = j


@njit(cache=True)
def _sift_up(keys, items, where, i):
    while i > 0:
        parent = (i - 1) // 2
        if keys[parent] <= keys[i]:
            break
        _swap(keys, items, where, i, parent)
        i = parent


@njit(cache=True)
def _update(keys, items, where, size, key, item):
    """Insert ``item`` with ``key``, or lower its key if queued (keys only decrease)."""
    i = where[item]
    if i < 0:
        i = size
        items[i] = item
        where[item] = i
        size += 1
    keys[i] = key
    _sift_up(keys, items, where, i)
    return size


@njit(cache=True)
def _pop(keys, items, where, size):
    key, item = keys[0], items[0]
    where[item] = -1
    size -= 1
    if size > 0:
        keys[0], items[0] = keys[size], items[size]
        where[items[0]] = 0
        i = 0
        while True:
            left = 2 * i + 1
            if left >= size:
                break
            child = left
            if left + 1 < size and keys[left + 1] < keys[left]:
                child = left + 1
            if keys[i] <= keys[child]:
                break
            _swap(keys, items, where, i, child)
            i = child
    return key, item, size


@njit(cache=True)
def guide_search(indptr, receiver, row, weight, root, is_target, num_targets):
    """Dijkstra on ``weight[row[pos]]`` from ``root``, stopping once every target is
    settled. Returns (distance [N], settled [N] bool, reaching edge position [N] or -1)."""
    n = len(indptr) - 1
    dist = np.full(n, np.inf)
    settled = np.zeros(n, np.bool_)
    via = np.full(n, -1, np.int64)
    keys = np.empty(n, np.float64)
    items = np.empty(n, np.int64)
    where = np.full(n, -1, np.int64)
    dist[root] = 0.0
    size = _update(keys, items, where, 0, 0.0, root)
    left = num_targets
    while size > 0 and left > 0:
        key, u, size = _pop(keys, items, where, size)
        settled[u] = True
        if is_target[u]:
            left -= 1
        for pos in range(indptr[u], indptr[u + 1]):
            v = receiver[pos]
            candidate = key + weight[row[pos]]
            if candidate < dist[v] and not settled[v]:
                dist[v] = candidate
                via[v] = pos
                size = _update(keys, items, where, size, candidate, v)
    return dist, settled, via


@njit(cache=True)
def path_costs(sender, row, cost, via, root, targets):
    """``[T, C]``: per-channel cost of the path ``via`` pointers give from ``root`` to each
    target (inf if a pointer chain breaks)."""
    out = np.zeros((len(targets), cost.shape[1]))
    for t in range(len(targets)):
        node = targets[t]
        steps = 0
        while node != root:
            pos = via[node]
            if pos < 0 or steps > len(via):
                out[t, :] = np.inf
                break
            out[t, :] += cost[row[pos]]
            node = sender[pos]
            steps += 1
    return out


@njit(cache=True)
def channel_search(indptr, receiver, row, cost, root, limits):
    """Per-channel shortest-path costs from ``root`` under ``cost[row[pos], k]`` >= 0, all
    channels in one label-correcting pass: a node is re-queued whenever any channel
    improves, keyed by the mean of its channels, so at the end every edge satisfies the
    triangle inequality in every channel (the unique fixed point). Values above
    ``limits[k]`` are never stored: the result is exact where finite, inf beyond."""
    n = len(indptr) - 1
    channels = cost.shape[1]
    dist = np.full((n, channels), np.inf)
    keys = np.empty(n, np.float64)
    items = np.empty(n, np.int64)
    where = np.full(n, -1, np.int64)
    dist[root, :] = 0.0
    size = _update(keys, items, where, 0, 0.0, root)
    while size > 0:
        key, u, size = _pop(keys, items, where, size)
        for pos in range(indptr[u], indptr[u + 1]):
            v = receiver[pos]
            r = row[pos]
            improved = False
            for k in range(channels):
                candidate = dist[u, k] + cost[r, k]
                if candidate < dist[v, k] and candidate <= limits[k]:
                    dist[v, k] = candidate
                    improved = True
            if improved:  # (re-)queue v, keyed by the mean of its channels
                total = 0.0
                finite = 0
                for k in range(channels):
                    if dist[v, k] < np.inf:
                        total += dist[v, k]
                        finite += 1
                size = _update(keys, items, where, size, total / finite, v)
    return dist


@njit(cache=True)
def best_incoming(sender, receiver, row, node_score, edge_score, candidate, num_nodes):
    """Per node, the incoming edge position maximising ``node_score[sender] +
    edge_score[row]`` over candidate senders (lowest ``row`` among ties), or -1."""
    best = np.full(num_nodes, -np.inf)
    winner = np.full(num_nodes, -1, np.int64)
    for pos in range(len(sender)):
        u = sender[pos]
        if not candidate[u]:
            continue
        v = receiver[pos]
        score = node_score[u] + edge_score[row[pos]]
        if score > best[v] or (score == best[v] and winner[v] >= 0
                               and row[pos] < row[winner[v]]):
            best[v] = score
            winner[v] = pos
    return winner


@njit(cache=True)
def walk_pointers(in_indptr, in_position, sender, row, state, node_pointer, edge_pointer,
                  limits, key_length, edge_length, root, targets, parent_is_row,
                  parent_out, proven_out):
    """Follow the pointer decoder back from each target to ``root`` without decoding the
    whole graph: at each key, the incoming edge with the best score ``node_pointer .
    state[sender] + edge_pointer[row]`` wins (lowest row among ties). Senders left
    unsettled (``-inf`` in some channel, costlier than ``limits`` there) compete with the
    optimistic state ``-limits``: a pointer is proven only if a settled sender wins.

    ``in_indptr`` / ``in_position``: incoming edge positions grouped by receiver. Metres add
    ``key_length[key]`` (turn mode: the segment entered) plus ``edge_length[row]`` (node
    mode: the segment driven). Each visited key's pointer goes to ``parent_out`` (the
    sender, or the edge row if ``parent_is_row``) and whether it is proven to
    ``proven_out``. Returns (metres [T], proven [T])."""
    metres = np.zeros(len(targets))
    proven = np.ones(len(targets), np.bool_)
    channels = state.shape[1]
    n = state.shape[0]
    for t in range(len(targets)):
        node = targets[t]
        steps = 0
        while node != root:
            best = -np.inf
            winner = -1
            winner_settled = False
            for i in range(in_indptr[node], in_indptr[node + 1]):
                pos = in_position[i]
                u = sender[pos]
                score = edge_pointer[row[pos]]
                settled = True
                for k in range(channels):
                    value = state[u, k]
                    if value == -np.inf:
                        settled = False
                        value = -limits[k]
                    score += node_pointer[k] * value
                if score == -np.inf or score != score:
                    continue
                if score > best or (score == best and winner >= 0 and row[pos] < row[winner]):
                    best = score
                    winner = pos
                    winner_settled = settled
            if winner < 0 or not winner_settled or steps > n:
                proven[t] = False
                metres[t] = np.nan
                break
            parent_out[node] = row[winner] if parent_is_row else sender[winner]
            proven_out[node] = True
            metres[t] += key_length[node] + edge_length[row[winner]]
            node = sender[winner]
            steps += 1
    return metres, proven


@njit(cache=True)
def path_parents(sender, row, via, root, targets, parent_is_sender):
    """The (key, parent) pairs on the ``via`` paths from each target back to ``root``
    (parent: the sender, or the edge row; keys may repeat across targets)."""
    count = 0
    for t in range(len(targets)):
        node = targets[t]
        steps = 0
        while node != root and via[node] >= 0 and steps <= len(via):
            count += 1
            node = sender[via[node]]
            steps += 1
    keys = np.empty(count, np.int64)
    parents = np.empty(count, np.int64)
    i = 0
    for t in range(len(targets)):
        node = targets[t]
        steps = 0
        while node != root and via[node] >= 0 and steps <= len(via):
            pos = via[node]
            keys[i] = node
            parents[i] = sender[pos] if parent_is_sender else row[pos]
            i += 1
            node = sender[pos]
            steps += 1
    return keys, parents


# ---------------------------------------------------------------- contraction hierarchy
# (models.execution.cch: arcs are the filled graph's edges, each stored once at its lower end;
# ``up[a]`` is the cost low -> high, ``down[a]`` high -> low)


@njit(cache=True)
def cch_find_arcs(up_indptr, up_head, low, high):
    """The arc joining ``low`` to ``high`` for each edge (-1 for a self-loop)."""
    out = np.full(len(low), -1, np.int64)
    for e in range(len(low)):
        if low[e] == high[e]:
            continue
        for a in range(up_indptr[low[e]], up_indptr[low[e] + 1]):
            if up_head[a] == high[e]:
                out[e] = a
                break
    return out


@njit(cache=True, nogil=True)  # long: let other threads (health pongs) run
def cch_customise(edge_arc, edge_up, edge_cost, up_indptr, up_head, order):
    """Arc costs per channel: the cheapest original edge, then every lower triangle
    (v-x, v-y, x-y with rank v < x < y) in increasing rank of v: x -> y via v is
    x -> v -> y. Triangles are enumerated on the fly (a 50k-node grid has 60M)."""
    num_arcs = len(up_head)
    channels = edge_cost.shape[1]
    up = np.full((num_arcs, channels), np.inf)
    down = np.full((num_arcs, channels), np.inf)
    for e in range(len(edge_arc)):
        a = edge_arc[e]
        if a < 0:
            continue
        for k in range(channels):
            if edge_up[e]:
                up[a, k] = min(up[a, k], edge_cost[e, k])
            else:
                down[a, k] = min(down[a, k], edge_cost[e, k])
    scratch = np.full(len(order), -1, np.int64)
    for v in order:
        begin, end = up_indptr[v], up_indptr[v + 1]
        for i in range(begin, end):
            x = up_head[i]
            for p in range(up_indptr[x], up_indptr[x + 1]):
                scratch[up_head[p]] = p
            up_vx, down_vx = up[i], down[i]
            for j in range(i + 1, end):  # heads sorted by rank: y above x
                xy = scratch[up_head[j]]
                up_xy, down_xy, up_vy, down_vy = up[xy], down[xy], up[j], down[j]
                for k in range(channels):
                    up_xy[k] = min(up_xy[k], down_vx[k] + up_vy[k])
                    down_xy[k] = min(down_xy[k], down_vy[k] + up_vx[k])
            for p in range(up_indptr[x], up_indptr[x + 1]):
                scratch[up_head[p]] = -1
    return up, down


@njit(cache=True)
def _cch_settle(u, parent, up_indptr, up_head, down, fwd, on_chain, dist, done, stack,
                stamp):
    """Exact distances from the query's root at ``u`` and its unsettled ancestors, top
    down (restricted PHAST: every higher neighbour of a node is its ancestor). A node is
    on the root's chain / settled in this query when its entry equals ``stamp``."""
    size = 0
    x = u
    while x >= 0 and done[x] != stamp:
        stack[size] = x
        size += 1
        x = parent[x]
    channels = dist.shape[1]
    for i in range(size - 1, -1, -1):
        x = stack[i]
        row = dist[x]
        if on_chain[x] == stamp:
            row[:] = fwd[x]
        else:
            row[:] = np.inf
        for a in range(up_indptr[x], up_indptr[x + 1]):
            other = dist[up_head[a]]
            cost = down[a]
            for k in range(channels):
                row[k] = min(row[k], other[k] + cost[k])
        done[x] = stamp


@njit(cache=True)
def _cch_upward(root, parent, up_indptr, up_head, up, fwd, on_chain, stamp):
    """The upward search from ``root``: cheapest costs to its elimination-tree ancestors."""
    x = root
    while x >= 0:
        on_chain[x] = stamp
        fwd[x, :] = np.inf
        x = parent[x]
    fwd[root, :] = 0.0
    channels = fwd.shape[1]
    x = root
    while x >= 0:
        source = fwd[x]
        if source[0] == np.inf:  # not reached going up (channels share reachability)
            x = parent[x]
            continue
        for a in range(up_indptr[x], up_indptr[x + 1]):
            head = fwd[up_head[a]]
            cost = up[a]
            for k in range(channels):
                head[k] = min(head[k], source[k] + cost[k])
        x = parent[x]


@njit(cache=True)
def cch_targets(parent, up_indptr, up_head, up, down, root, targets, in_indptr,
                in_position, sender, row, node_pointer, edge_pointer, key_length,
                edge_length, parent_is_row, walk, parent_out, proven_out, fwd, dist,
                on_chain, done, stack, stamp):
    """Per-channel costs ``[T, C]`` from ``root`` to ``targets`` on a customised
    hierarchy, and (``walk``) the pointer decoder followed back from each target as
    :func:`walk_pointers` does, every sender's state exact. Returns (cost, metres,
    proven): a walk that fails to reach ``root`` leaves metres nan and proven False.
    ``fwd`` / ``dist`` ``[N, C]``, ``on_chain`` / ``done`` ``[N]`` int64 and ``stack``
    ``[N]`` are scratch (reused across queries: ``stamp`` must be new for each)."""
    n = len(parent)
    channels = up.shape[1]
    _cch_upward(root, parent, up_indptr, up_head, up, fwd, on_chain, stamp)
    cost = np.empty((len(targets), channels))
    for t in range(len(targets)):
        _cch_settle(targets[t], parent, up_indptr, up_head, down, fwd, on_chain, dist, done,
                    stack, stamp)
        cost[t, :] = dist[targets[t], :]
    metres = np.zeros(len(targets))
    proven = np.ones(len(targets), np.bool_)
    if not walk:
        return cost, metres, proven
    for t in range(len(targets)):
        node = targets[t]
        if dist[node, 0] == np.inf:
            metres[t] = np.nan  # unreachable: nothing to walk, the cost says so
            continue
        steps = 0
        while node != root:
            best = -np.inf
            winner = -1
            for i in range(in_indptr[node], in_indptr[node + 1]):
                pos = in_position[i]
                u = sender[pos]
                _cch_settle(u, parent, up_indptr, up_head, down, fwd, on_chain, dist, done,
                            stack, stamp)
                score = edge_pointer[row[pos]]
                for k in range(channels):
                    score += node_pointer[k] * -dist[u, k]
                if score == -np.inf or score != score:
                    continue
                if score > best or (score == best and winner >= 0 and row[pos] < row[winner]):
                    best = score
                    winner = pos
            if winner < 0 or steps > n:
                proven[t] = False
                metres[t] = np.nan
                break
            parent_out[node] = row[winner] if parent_is_row else sender[winner]
            proven_out[node] = True
            metres[t] += key_length[node] + edge_length[row[winner]]
            node = sender[winner]
            steps += 1
    return cost, metres, proven


@njit(cache=True)
def cch_many(parent, up_indptr, up_head, up, down, rank, roots, targets, batch):
    """``[R, T, C]`` per-channel costs from every root to every target: restricted PHAST
    (Delling et al., "Faster batched shortest paths in road networks", 2011). The
    targets' ancestors are selected once and ordered top-down; per root one upward
    search, then the selection is swept for ``batch`` roots at a time, so each arc's
    costs are read once per batch rather than once per root."""
    n = len(parent)
    channels = up.shape[1]
    # the selection: every ancestor of a target, top-down (decreasing rank)
    position = np.full(n, -1, np.int64)
    count = 0
    for t in range(len(targets)):
        x = targets[t]
        while x >= 0 and position[x] < 0:
            position[x] = 0
            count += 1
            x = parent[x]
    selected = np.empty(count, np.int64)
    i = 0
    for x in range(n):
        if position[x] == 0:
            selected[i] = x
            i += 1
    selected = selected[np.argsort(-rank[selected])]
    for i in range(count):
        position[selected[i]] = i
    fwd = np.empty((n, channels))
    on_chain = np.zeros(n, np.int64)
    out = np.empty((len(roots), len(targets), channels))
    dist = np.empty((count, batch, channels))
    for first in range(0, len(roots), batch):
        size = min(batch, len(roots) - first)
        dist[:, :, :] = np.inf
        for b in range(size):
            root = roots[first + b]
            _cch_upward(root, parent, up_indptr, up_head, up, fwd, on_chain, first + b + 1)
            x = root
            while x >= 0:
                if position[x] >= 0:
                    dist[position[x], b, :] = fwd[x]
                x = parent[x]
        for i in range(count):
            x = selected[i]
            row = dist[i]
            for a in range(up_indptr[x], up_indptr[x + 1]):
                other = dist[position[up_head[a]]]
                cost = down[a]
                for b in range(size):
                    for k in range(channels):
                        row[b, k] = min(row[b, k], other[b, k] + cost[k])
        for b in range(size):
            for t in range(len(targets)):
                out[first + b, t, :] = dist[position[targets[t]], b, :]
    return out


@njit(cache=True)
def _arc_between(a, b, up_indptr, up_head):
    """(arc joining nodes a and b, whether it is stored at a, i.e. a is its lower end);
    (-1, False) when they are not adjacent."""
    for p in range(up_indptr[a], up_indptr[a + 1]):
        if up_head[p] == b:
            return p, True
    for p in range(up_indptr[b], up_indptr[b + 1]):
        if up_head[p] == a:
            return p, False
    return -1, False


@njit(cache=True)
def _unpack(arc, upward, mid_up, mid_down, arc_tail, up_indptr, up_head, arc_edge_up,
            arc_edge_down, out, size):
    """Append to ``out`` the original edge positions of ``arc`` traversed low -> high
    (``upward``) or high -> low: its original edge, or the two arcs through the node its
    customisation went through (``mid_*``), unpacked in turn. Returns the new size (-1
    if the arcs do not unpack)."""
    stack_arc = np.empty(4096, np.int64)
    stack_up = np.empty(4096, np.bool_)
    stack_arc[0] = arc
    stack_up[0] = upward
    depth = 1
    while depth > 0:
        if depth + 2 > len(stack_arc):
            return -1
        depth -= 1
        a, goes_up = stack_arc[depth], stack_up[depth]
        middle = mid_up[a] if goes_up else mid_down[a]
        if middle < 0:
            edge = arc_edge_up[a] if goes_up else arc_edge_down[a]
            if edge < 0:
                return -1
            out[size] = edge
            size += 1
            continue
        low, high = arc_tail[a], up_head[a]
        start, end = (low, high) if goes_up else (high, low)
        first, first_low = _arc_between(start, middle, up_indptr, up_head)
        second, second_low = _arc_between(middle, end, up_indptr, up_head)
        if first < 0 or second < 0:
            return -1
        # start -> middle runs low -> high when start is its arc's lower end
        stack_arc[depth], stack_up[depth] = second, second_low
        stack_arc[depth + 1], stack_up[depth + 1] = first, first_low
        depth += 2
    return size


@njit(cache=True)
def _scalar_settle(u, parent, d_indptr, d_head, d_cost, d_arc, fwd, chain, dist, via, done,
                   stack, stamp):
    """:func:`_cch_settle` for one channel, remembering how each node was reached: ``via``
    the arc from a higher node, or -1 when the upward search's cost is the best."""
    size = 0
    x = u
    while x >= 0 and done[x] != stamp:
        stack[size] = x
        size += 1
        x = parent[x]
    for i in range(size - 1, -1, -1):
        x = stack[i]
        best = fwd[x] if chain[x] == stamp else np.inf
        arc = -1
        for a in range(d_indptr[x], d_indptr[x + 1]):
            candidate = dist[d_head[a]] + d_cost[a]
            if candidate < best:
                best = candidate
                arc = d_arc[a]
        dist[x] = best
        via[x] = arc
        done[x] = stamp


@njit(cache=True)
def cch_scalar_paths(parent, up_indptr, up_head, arc_tail, mid_up, mid_down, arc_edge_up,
                     arc_edge_down, u_indptr, u_head, u_cost, u_arc, d_indptr, d_head, d_cost,
                     d_arc, root, targets, fwd, fwd_arc, dist, via, chain, done, stack, stamp):
    """One-channel shortest paths from ``root`` to each target: the upward search from the
    root, the lazy restricted sweep down each target's ancestors (shared between targets),
    and the path -- up the root's arcs, down the sweep's -- unpacked into original edge
    positions. Returns (cost [T], edges, offsets [T+1]: target t's path is
    ``edges[offsets[t]:offsets[t+1]]``, root first; empty when unreachable or the target
    is the root). The searches run on the arcs each direction keeps (``u_*``: low -> high,
    ``d_*``: high -> low, each with its arc id; all arcs when not pruned); unpacking uses
    the customisation's middle nodes. ``fwd`` / ``dist`` [N] float, ``fwd_arc`` / ``via``
    / ``chain`` / ``done`` / ``stack`` [N] int scratch, ``stamp`` new per call."""
    x = root
    while x >= 0:
        chain[x] = stamp
        fwd[x] = np.inf
        x = parent[x]
    fwd[root] = 0.0
    fwd_arc[root] = -1
    x = root
    while x >= 0:
        if fwd[x] == np.inf:  # not reached going up: nothing to relax
            x = parent[x]
            continue
        for a in range(u_indptr[x], u_indptr[x + 1]):
            y = u_head[a]
            candidate = fwd[x] + u_cost[a]
            if candidate < fwd[y]:
                fwd[y] = candidate
                fwd_arc[y] = u_arc[a]
        x = parent[x]
    n = len(parent)
    cost = np.full(len(targets), np.inf)
    capacity = 1024
    edges = np.empty(capacity, np.int64)
    offsets = np.zeros(len(targets) + 1, np.int64)
    size = 0
    arcs = np.empty(2 * n + 2, np.int64)  # a path's arcs: at most both chains
    upward = np.empty(2 * n + 2, np.bool_)
    for t in range(len(targets)):
        target = targets[t]
        offsets[t + 1] = size
        _scalar_settle(target, parent, d_indptr, d_head, d_cost, d_arc, fwd, chain, dist, via,
                       done, stack, stamp)
        if target == root:
            cost[t] = 0.0
            continue
        if dist[target] == np.inf:
            continue
        cost[t] = dist[target]
        # down arcs from the target up to where the upward search's cost took over ...
        count = 0
        x = target
        while via[x] >= 0:
            arcs[count] = via[x]
            upward[count] = False
            count += 1
            x = up_head[via[x]]
        # ... then the upward search's arcs from there back to the root
        while fwd_arc[x] >= 0:
            arcs[count] = fwd_arc[x]
            upward[count] = True
            count += 1
            x = arc_tail[fwd_arc[x]]
        for i in range(count - 1, -1, -1):  # root first
            while size + n + 1 > capacity:
                capacity *= 2
                grown = np.empty(capacity, np.int64)
                grown[:size] = edges[:size]
                edges = grown
            size = _unpack(arcs[i], upward[i], mid_up, mid_down, arc_tail, up_indptr,
                           up_head, arc_edge_up, arc_edge_down, edges, size)
            if size < 0:
                return cost, edges[:0], offsets
        offsets[t + 1] = size
    return cost, edges[:size], offsets


@njit(cache=True, nogil=True)  # long: let other threads (health pongs) run
def cch_customise_scalar(edge_arc, edge_up, edge_cost, up_indptr, up_head, order):
    """:func:`cch_customise` for one channel, also recording per arc and direction the
    middle node of the lower triangle that set its cost (-1: an original edge)."""
    num_arcs = len(up_head)
    up = np.full(num_arcs, np.inf)
    down = np.full(num_arcs, np.inf)
    mid_up = np.full(num_arcs, -1, np.int64)
    mid_down = np.full(num_arcs, -1, np.int64)
    for e in range(len(edge_arc)):
        a = edge_arc[e]
        if a < 0:
            continue
        if edge_up[e]:
            up[a] = min(up[a], edge_cost[e])
        else:
            down[a] = min(down[a], edge_cost[e])
    scratch = np.full(len(order), -1, np.int64)
    for v in order:
        begin, end = up_indptr[v], up_indptr[v + 1]
        for i in range(begin, end):
            x = up_head[i]
            for p in range(up_indptr[x], up_indptr[x + 1]):
                scratch[up_head[p]] = p
            for j in range(i + 1, end):
                xy = scratch[up_head[j]]
                candidate = down[i] + up[j]  # x -> v -> y
                if candidate < up[xy]:
                    up[xy] = candidate
                    mid_up[xy] = v
                candidate = down[j] + up[i]  # y -> v -> x
                if candidate < down[xy]:
                    down[xy] = candidate
                    mid_down[xy] = v
            for p in range(up_indptr[x], up_indptr[x + 1]):
                scratch[up_head[p]] = -1
    return up, down, mid_up, mid_down


@njit(cache=True, inline="always")
def _perfect_relax(cost, mid, keep, arc, first, second, middle):
    """One arc direction through a triangle: legs ``first + second`` via ``middle``. A
    cheaper path lowers the cost and records the middle node; a path as cheap (or
    cheaper) with both legs strictly cheaper makes the direction unneeded."""
    via = first + second
    if via <= cost[arc]:
        if via < cost[arc]:
            cost[arc] = via
            mid[arc] = middle
        if first < via and second < via:
            keep[arc] = False


@njit(cache=True, nogil=True)  # long: let other threads (health pongs) run
def cch_perfect(up_indptr, up_head, order, up, down, mid_up, mid_down):
    """Perfect customisation of a one-channel metric (Dibbelt, Strasser & Wagner), in
    place: by decreasing rank of x, every pair y < z of x's upper neighbours (joined by the
    arc y-z, already exact) relaxes x-y through z (an upper triangle) and x-z through y (an
    intermediate one), so every arc costs the true distance between its ends; ``mid_*``
    record the node an improvement went through. Returns per arc whether each direction
    is still needed: one that such a triangle realises with both legs strictly cheaper is
    not (a perfect witness)."""
    n = len(order)
    scratch = np.full(n, -1, np.int64)
    keep_up = np.ones(len(up_head), np.bool_)
    keep_down = np.ones(len(up_head), np.bool_)
    for i in range(n - 1, -1, -1):
        x = order[i]
        begin, end = up_indptr[x], up_indptr[x + 1]
        for a in range(begin, end):  # a: x-y; upper neighbours sorted by rank
            y = up_head[a]
            for p in range(up_indptr[y], up_indptr[y + 1]):
                scratch[up_head[p]] = p
            for b in range(a + 1, end):  # b: x-z with z above y; c: y-z
                z = up_head[b]
                c = scratch[z]
                if c < 0:
                    continue
                # x -> z -> y and y -> z -> x relax a (x-y)
                _perfect_relax(up, mid_up, keep_up, a, up[b], down[c], z)
                _perfect_relax(down, mid_down, keep_down, a, up[c], down[b], z)
                # x -> y -> z and z -> y -> x relax b (x-z)
                _perfect_relax(up, mid_up, keep_up, b, up[a], up[c], y)
                _perfect_relax(down, mid_down, keep_down, b, down[c], down[a], y)
            for p in range(up_indptr[y], up_indptr[y + 1]):
                scratch[up_head[p]] = -1
    return keep_up, keep_down
