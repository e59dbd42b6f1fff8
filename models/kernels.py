"""Compiled (numba) loops behind :class:`models.executor.ChannelSearch`.

Graphs are CSR arrays sorted by sender: out-edges of node ``u`` are positions
``indptr[u]:indptr[u+1]``, ``receiver[pos]`` their heads and ``row[pos]`` their row in a
per-edge cost table. Compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _push(keys, items, size, key, item):
    if size == len(keys):
        grown_keys = np.empty(2 * len(keys), keys.dtype)
        grown_items = np.empty(2 * len(items), items.dtype)
        grown_keys[:size] = keys[:size]
        grown_items[:size] = items[:size]
        keys, items = grown_keys, grown_items
    i = size
    keys[i] = key
    items[i] = item
    while i > 0:
        parent = (i - 1) // 2
        if keys[parent] <= keys[i]:
            break
        keys[parent], keys[i] = keys[i], keys[parent]
        items[parent], items[i] = items[i], items[parent]
        i = parent
    return keys, items, size + 1


@njit(cache=True)
def _pop(keys, items, size):
    key, item = keys[0], items[0]
    size -= 1
    keys[0], items[0] = keys[size], items[size]
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
        keys[i], keys[child] = keys[child], keys[i]
        items[i], items[child] = items[child], items[i]
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
    keys = np.empty(64, np.float64)
    items = np.empty(64, np.int64)
    dist[root] = 0.0
    keys, items, size = _push(keys, items, 0, 0.0, root)
    left = num_targets
    while size > 0 and left > 0:
        key, u, size = _pop(keys, items, size)
        if settled[u] or key > dist[u]:
            continue
        settled[u] = True
        if is_target[u]:
            left -= 1
        for pos in range(indptr[u], indptr[u + 1]):
            v = receiver[pos]
            candidate = key + weight[row[pos]]
            if candidate < dist[v]:
                dist[v] = candidate
                via[v] = pos
                keys, items, size = _push(keys, items, size, candidate, v)
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
    keys = np.empty(64, np.float64)
    items = np.empty(64, np.int64)
    queued_key = np.full(n, np.inf)
    dist[root, :] = 0.0
    queued_key[root] = 0.0
    keys, items, size = _push(keys, items, 0, 0.0, root)
    while size > 0:
        key, u, size = _pop(keys, items, size)
        if key != queued_key[u]:
            continue  # a stale entry: u was re-queued with another key
        queued_key[u] = np.inf
        for pos in range(indptr[u], indptr[u + 1]):
            v = receiver[pos]
            r = row[pos]
            improved = False
            for k in range(channels):
                candidate = dist[u, k] + cost[r, k]
                if candidate < dist[v, k] and candidate <= limits[k]:
                    dist[v, k] = candidate
                    improved = True
            if improved:
                total = 0.0
                finite = 0
                for k in range(channels):
                    if dist[v, k] < np.inf:
                        total += dist[v, k]
                        finite += 1
                new_key = total / finite
                queued_key[v] = new_key
                keys, items, size = _push(keys, items, size, new_key, v)
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
