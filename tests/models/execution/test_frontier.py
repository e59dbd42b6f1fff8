"""Frontier execution equals the processor's own dense iteration."""

import numpy as np
import torch

from models.execution.frontier import frontier_run
from models.processor.model import Processor, ProcessorConfig, WeightEncoder
from models.processor.synthetic import road_like


def test_frontier_matches_dense_run():
    torch.manual_seed(0)
    processor = Processor(ProcessorConfig(layer="tropical", hidden=8)).freeze()
    encoder = WeightEncoder(8)
    rng = np.random.default_rng(0)
    for n in (12, 60):
        graph = road_like(rng, n)
        edge_index = torch.from_numpy(np.stack([graph.senders, graph.receivers]).astype(np.int64))
        edge_latent = encoder(torch.from_numpy(graph.weights / graph.weights.mean()).float())
        mask = torch.zeros(3, graph.num_nodes, dtype=torch.bool)
        mask[torch.arange(3), torch.tensor([0, 5, graph.num_nodes - 1])] = True
        h0 = processor.initial_state(mask)
        dense = processor(h0, mask, edge_latent, edge_index)
        hidden, reached, _ = frontier_run(processor, h0, mask, edge_latent, edge_index)
        assert torch.equal(reached, dense.reached)
        assert torch.allclose(hidden[reached], dense.hidden[reached], rtol=1e-5, atol=1e-5)
