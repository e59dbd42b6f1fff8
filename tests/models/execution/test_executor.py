"""The NumPy / scipy executors compute the processor's own fixed point and decoders."""

import numpy as np
import pytest
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from models.execution.executor import ChannelSearch, Csr, best_incoming, tropical_fixed_point
from models.execution.frontier import frontier_run
from models.processor.model import Processor, ProcessorConfig, WeightEncoder
from models.processor.synthetic import road_like


def _setup(processor, encoder, n, seed):
    graph = road_like(np.random.default_rng(seed), n)
    senders, receivers = graph.senders.astype(np.int64), graph.receivers.astype(np.int64)
    # a parallel edge and a self-loop: the executors must treat them as the layer does
    senders = np.concatenate([senders, senders[:1], senders[1:2]])
    receivers = np.concatenate([receivers, receivers[:1], senders[1:2]])
    weights = np.concatenate([graph.weights, graph.weights[:1] * 0.5, graph.weights[1:2]])
    edge_index = torch.from_numpy(np.stack([senders, receivers]))
    with torch.no_grad():
        edge_latent = encoder(torch.from_numpy(weights / weights.mean()).float())
        edge_term = processor.layer.edge(edge_latent).numpy()
    return graph.num_nodes, senders, receivers, edge_index, edge_latent, edge_term


@pytest.mark.parametrize("learned_sender_map", [False, True])
def test_numpy_frontier_matches_torch(learned_sender_map):
    torch.manual_seed(0)
    processor = Processor(ProcessorConfig(layer="tropical", hidden=8,
                                          learned_sender_map=learned_sender_map)).freeze()
    if learned_sender_map:
        with torch.no_grad():
            processor.layer.sender_offset.normal_(0, 0.01)
    encoder = WeightEncoder(8)
    n, senders, receivers, edge_index, edge_latent, edge_term = _setup(processor, encoder, 80, 1)
    roots = np.array([0, 7, n - 1])
    mask = torch.zeros(3, n, dtype=torch.bool)
    mask[torch.arange(3), torch.from_numpy(roots)] = True
    with torch.no_grad():
        hidden, reached, _ = frontier_run(processor, processor.initial_state(mask), mask,
                                          edge_latent, edge_index)
        _, logits = processor.decode(hidden, reached, edge_latent, edge_index)
    csr = Csr.build(senders, receivers, n).copies(3)
    sender_matrix = (processor.layer.sender_matrix.numpy() if learned_sender_map else None)
    h, got, steps = tropical_fixed_point(csr, edge_term, roots + np.arange(3) * n,
                                         sender_matrix=sender_matrix, max_steps=n)
    assert steps > 1
    assert np.array_equal(got.reshape(3, n), reached.numpy())
    flat = reached.numpy().reshape(-1)
    assert np.allclose(h[flat], hidden.reshape(3 * n, -1).numpy()[flat], rtol=1e-5, atol=1e-5)
    # pointer decoder: the torch logits' argmax per receiver
    pointer = processor.pointer_decoder.net.weight.detach().numpy()[0].astype(np.float64)
    node_pointer = pointer if sender_matrix is None else sender_matrix.T @ pointer
    winner = best_incoming(csr, h.astype(np.float64) @ node_pointer,
                           edge_term.astype(np.float64) @ pointer, got)
    for b in range(3):
        for v in np.flatnonzero(reached[b].numpy()):
            incoming = np.flatnonzero(receivers == v)
            scores = logits[b, incoming].numpy()
            if v == roots[b] or not np.isfinite(scores).any() or scores.max() <= -1e30:
                continue
            chosen = csr.edge_row[winner[b * n + v]]
            assert scores[list(incoming).index(chosen)] >= scores.max() - 1e-4 * abs(
                scores.max())


def test_channel_search_is_the_fixed_point(shipped):
    processor, encoder, _ = shipped
    assert processor.layer.sender_offset is None  # the shipped sender map is the identity
    n, senders, receivers, edge_index, edge_latent, edge_term = _setup(processor, encoder,
                                                                       300, 2)
    csr = Csr.build(senders, receivers, n)
    cost = -edge_term.astype(np.float64)
    search = ChannelSearch(csr, cost)
    rng = np.random.default_rng(0)
    roots = np.array([3, 50])
    full = search.distances(roots)
    for b, root in enumerate(roots):
        # the processor's own synchronous iteration reaches the same fixed point ...
        h, reached, _ = tropical_fixed_point(csr, edge_term, np.array([root]))
        assert np.array_equal(np.isfinite(full[b]).all(-1), reached)
        assert np.allclose(-h[reached], full[b][reached], rtol=1e-5, atol=1e-6)
        # ... as does scipy's Dijkstra, channel by channel (parallel edges: the cheaper)
        for k in (0, 7):
            order = np.lexsort((cost[:, k], receivers, senders))
            first = np.concatenate([[True], (np.diff(senders[order]) != 0)
                                    | (np.diff(receivers[order]) != 0)])
            keep = order[first]
            matrix = csr_matrix((np.maximum(cost[keep, k], 1e-12),
                                 (senders[keep], receivers[keep])), shape=(n, n))
            assert np.allclose(dijkstra(matrix, indices=int(root)), full[b][:, k],
                               rtol=1e-9, atol=1e-9)
        # a search for two targets settles them (and is exact wherever finite) ...
        targets = rng.choice(np.flatnonzero(reached), 2, replace=False)
        part, limits = search.distances_to(int(root), targets)
        assert np.isfinite(part[targets]).all()
        finite = np.isfinite(part)
        assert np.allclose(part[finite], full[b][finite], rtol=1e-12)
        assert 0.05 < finite.mean() < 1.0
        # ... and whatever it left out costs more than the limit in that channel
        assert (full[b][~finite] > np.broadcast_to(limits, part.shape)[~finite]).all()


def test_channel_search_keeps_the_cheaper_parallel_edge():
    csr = Csr.build(np.array([0, 0, 1]), np.array([1, 1, 2]), 3)
    search = ChannelSearch(csr, np.array([[5.0, 1.0], [2.0, 3.0], [1.0, 1.0]]))
    assert search.distances(np.array([0]))[0].tolist() == [[0, 0], [2, 1], [3, 2]]
