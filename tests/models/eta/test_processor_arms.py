"""The processor ablation's arms (models.eta.processor_arms): each runs what it claims, the
frozen processors stay frozen, and the arms are genuinely different functions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from models.eta.model import EtaConfig
from models.eta.processor_arms import (
    ArmEtaModel,
    ExactArm,
    GeneralistArm,
    arm_factory,
    processor_gap,
    random_generalist,
)
from models.eta.train import TrainConfig, fit_eta, predict_frame
from models.processor import generalist as generalist_module

REPO = Path(__file__).resolve().parents[3]
SHIPPED_PROCESSOR = REPO / "artifacts_shipped" / "processor"
GENERALIST = REPO / "artifacts_shipped" / "generalist_processor"


@pytest.fixture(autouse=True)
def one_thread():
    """An MPNN over small corridors gains nothing from threads, and on a busy machine
    oversubscribed OpenMP threads slowed this module 30x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def generalist():
    model, _ = generalist_module.load(GENERALIST)
    return model


def _random_graph(seed: int, nodes: int = 30, edges: int = 120):
    rng = np.random.default_rng(seed)
    sender = rng.integers(0, nodes, edges)
    receiver = (sender + rng.integers(1, nodes, edges)) % nodes  # no self-loops
    pairs = np.unique(np.stack([sender, receiver], 1), axis=0)  # scipy sums parallel arcs
    weight = rng.uniform(0.1, 2.0, len(pairs))
    return pairs[:, 0], pairs[:, 1], weight


def test_untrained_learned_arm_executes_the_pretrained_processor(generalist):
    """Before training, the arm (edge time through the frozen Bellman-Ford encoder, its own
    step count, the copied value head) decodes what the processor's own run decodes after
    the same number of steps."""
    sender, receiver, weight = _random_graph(0)
    edge_index = torch.from_numpy(np.stack([sender, receiver]))
    weights = torch.from_numpy(weight).float()
    source = torch.zeros(2, 30, dtype=torch.bool)
    source[0, 3], source[1, 17] = True, True
    arm = GeneralistArm(generalist)
    with torch.no_grad():
        times, reached = arm(source, arm.edge_inputs(weights, None), edge_index)
        values, _, want_reached, steps = generalist.run(
            "bellman", source, weights, edge_index, num_steps=arm.steps(source, edge_index))
    assert steps == arm.steps(source, edge_index) > 2
    torch.testing.assert_close(times, values[-1])
    assert torch.equal(reached, want_reached)


def test_exact_arm_is_dijkstra_and_its_gradient_is_the_path():
    sender, receiver, weight = _random_graph(1)
    edge_index = torch.from_numpy(np.stack([sender, receiver]))
    w = torch.tensor(weight, dtype=torch.float64, requires_grad=True)
    arm = ExactArm().double()
    source = torch.zeros(1, 30, dtype=torch.bool)
    source[0, 3] = True
    times, reached = arm(source, w.unsqueeze(-1), edge_index)
    matrix = csr_matrix((weight, (sender, receiver)), shape=(30, 30))
    want, parent = dijkstra(matrix, indices=3, return_predecessors=True)
    np.testing.assert_allclose(np.where(reached[0].numpy(), times[0].detach().numpy(), np.inf),
                               want, rtol=1e-12)
    target = int(np.argmax(np.where(np.isfinite(want), want, -1)))
    times[0, target].backward()
    on_path = np.zeros(len(weight))
    node = target
    while node != 3:  # the tree's edges into the target, back to the source
        previous = parent[node]
        candidates = np.flatnonzero((sender == previous) & (receiver == node))
        on_path[candidates[np.argmin(weight[candidates])]] = 1.0
        node = previous
    np.testing.assert_allclose(w.grad.numpy(), on_path)


def _short_trips(graph, count: int, seed: int = 0) -> pd.DataFrame:
    """Trips between segment midpoints 150-450 m apart (short: an MPNN step over a corridor
    is ~100x a min-plus one), 1.5x an 8 m/s drive."""
    from data_pipeline.trips import snap_trips, validate_trips

    rng = np.random.default_rng(seed)
    offsets, lon, lat = graph["path_offsets"], graph["path_lon"], graph["path_lat"]
    mid_lon = (lon[offsets[:-1]] + lon[offsets[:-1] + 1]) / 2
    mid_lat = (lat[offsets[:-1]] + lat[offsets[:-1] + 1]) / 2
    rows = []
    while len(rows) < count:
        o = int(rng.integers(graph.num_segments))
        metres = np.hypot((mid_lon - mid_lon[o]) * 86_000, (mid_lat - mid_lat[o]) * 111_000)
        near = np.flatnonzero((metres > 150) & (metres < 450))
        if len(near):
            d = int(rng.choice(near))
            rows.append((mid_lon[o], mid_lat[o], mid_lon[d], mid_lat[d], 1.5 * metres[d] / 8.0))
    frame = pd.DataFrame(rows, columns=["origin_lon", "origin_lat", "destination_lon",
                                        "destination_lat", "duration_s"])
    frame["departure_time"] = "2026-11-18T07:10:00"
    return snap_trips(validate_trips(frame), graph).frame.reset_index(drop=True)


def test_learned_arm_trains_through_its_frozen_processor(bundled_graph, generalist):
    from models.processor.model import load_pretrained

    trips = _short_trips(bundled_graph, 12)
    before = {k: v.clone() for k, v in generalist.state_dict().items()}
    torch.manual_seed(0)
    model, report = fit_eta(bundled_graph, trips, SHIPPED_PROCESSOR, config=EtaConfig(),
                            train=TrainConfig(epochs=1, batch_trips=4, patience=5),
                            progress=False, log=lambda *_: None,
                            model_factory=arm_factory("learned", generalist))
    assert isinstance(model, ArmEtaModel) and isinstance(model.arm, GeneralistArm)
    assert report["steps"] >= 1 and np.isfinite(report["best_validation_mape"])
    for name, value in model.arm.processor.state_dict().items():  # frozen, bit for bit
        assert torch.equal(value, before[name]), name
    assert not any(p.requires_grad for p in model.arm.processor.parameters())
    trainable = {id(p) for p in model.trainable_parameters()}
    assert id(model.arm.readout[0].weight) in trainable
    assert not trainable & {id(p) for p in model.arm.processor.parameters()}
    latents = model.latents(model.time_bucket(None))
    assert latents.edge_latent.shape == (bundled_graph.num_turns, 128)
    predicted = predict_frame(model, trips, batch_trips=8)
    assert np.isfinite(predicted).mean() > 0.9
    # the random arm is another function: other untrained answers, other decoded distances
    shuffled = random_generalist(generalist.config, 1000)
    tropical, weight_encoder, manifest = load_pretrained(SHIPPED_PROCESSOR)
    untrained = {name: arm_factory(name, proc)(bundled_graph, tropical, weight_encoder,
                                                manifest, config=EtaConfig())
                 for name, proc in (("learned", generalist), ("random", shuffled))}
    answers = {name: predict_frame(m.eval(), trips[:4], batch_trips=8)
               for name, m in untrained.items()}
    assert not np.allclose(answers["learned"], answers["random"], rtol=0.05)
    gap = processor_gap(generalist, shuffled)
    assert gap["pointer_disagreement"] > 0.3 and gap["mean_relative_value_difference"] > 0.1
