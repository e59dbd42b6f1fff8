"""Frozen means frozen: training something downstream through the loaded processor leaves
every processor parameter bit-identical."""

import numpy as np
import torch

from models.processor.model import Processor, weight_scale
from models.processor.synthetic import road_like
from tests.models.conftest import SHIPPED_PROCESSOR


def test_downstream_training_leaves_processor_bit_identical():
    torch.manual_seed(0)
    processor = Processor.load(SHIPPED_PROCESSOR)
    before = {k: v.clone() for k, v in processor.state_dict().items()}
    hidden = processor.config.hidden
    graph = road_like(np.random.default_rng(0), 60)
    edge_index = torch.from_numpy(np.stack([graph.senders, graph.receivers]))
    features = torch.from_numpy(
        np.stack([graph.weights / weight_scale(graph.weights), np.ones_like(graph.weights)], 1)
    ).float()
    target = torch.rand(graph.num_nodes) * 10
    # a downstream edge encoder (raw features -> edge latents) and a readout, as in issue 5
    encoder = torch.nn.Sequential(torch.nn.Linear(2, hidden), torch.nn.Softplus())
    readout = torch.nn.Linear(hidden, 1)
    optimiser = torch.optim.Adam(
        [*encoder.parameters(), *readout.parameters(), *processor.parameters()], lr=1e-2
    )  # even if handed over
    mask = torch.zeros(2, graph.num_nodes, dtype=torch.bool)
    mask[0, 0] = mask[1, 1] = True
    encoder_before = [p.clone() for p in encoder.parameters()]
    for _ in range(3):
        out = processor(
            processor.initial_state(mask), mask, -encoder(features), edge_index, num_steps=8
        )
        prediction = readout(out.hidden).squeeze(-1)  # [B, N]
        loss = ((prediction - target) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    after = processor.state_dict()
    assert before.keys() == after.keys()
    for name, value in before.items():
        assert torch.equal(value, after[name]), name
        assert value.dtype == after[name].dtype
    assert all(p.grad is None for p in processor.parameters())
    assert not processor.training
    assert any(
        not torch.equal(a, b) for a, b in zip(encoder_before, encoder.parameters(), strict=True)
    )
