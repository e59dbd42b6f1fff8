import numpy as np
import pytest
import torch

from models.processor.algorithms import exact_distances
from models.processor.metrics import evaluate_run
from models.processor.model import (
    Processor,
    ProcessorConfig,
    WeightEncoder,
    load_pretrained,
    shortest_paths,
)
from models.processor.synthetic import erdos_renyi, road_like
from nareta.errors import ArtifactError
from tests.models.conftest import SHIPPED_PROCESSOR


def test_shipped_artifact_is_small_frozen_and_verified(shipped):
    processor, encoder, manifest = shipped
    assert manifest["kind"] == "processor" and manifest["config"]["layer"] == "tropical"
    assert sum(p.stat().st_size for p in SHIPPED_PROCESSOR.iterdir()) < 2_000_000
    assert not any(p.requires_grad for p in processor.parameters())
    assert not any(p.requires_grad for p in encoder.parameters())
    assert not processor.training
    assert isinstance(Processor.load(SHIPPED_PROCESSOR), Processor)


def test_four_node_graph(shipped, four_nodes):
    processor, encoder, _ = shipped
    n, s, r, w = four_nodes
    distance, pointer, _ = shortest_paths(processor, encoder, n, s, r, w, [0, 3])
    np.testing.assert_array_equal(pointer[0], [0, 0, 1, 2])
    np.testing.assert_allclose(distance[0], [0, 1, 3, 4], rtol=1e-3)
    np.testing.assert_array_equal(pointer[1], [3, 0, 1, 3])  # from 3: 3->0->1->2; pi[3] = 3
    np.testing.assert_allclose(distance[1], [7, 8, 10, 0], rtol=1e-3)


def test_unreachable_nodes_point_to_themselves(shipped):
    processor, encoder, _ = shipped
    s, r, w = np.array([0, 1]), np.array([1, 0]), np.array([2.0, 2.0])
    distance, pointer, _ = shortest_paths(processor, encoder, 4, s, r, w, [0])
    np.testing.assert_array_equal(pointer[0], [0, 0, 2, 3])
    assert np.isinf(distance[0, 2:]).all() and distance[0, 0] == 0


def test_scale_equivariance(shipped):
    """Positive homogeneity: weights x c -> distances x c, pointers unchanged."""
    processor, encoder, _ = shipped
    g = road_like(np.random.default_rng(5), 120)
    d1, p1, _ = shortest_paths(
        processor, encoder, g.num_nodes, g.senders, g.receivers, g.weights, [g.source]
    )
    d2, p2, _ = shortest_paths(
        processor, encoder, g.num_nodes, g.senders, g.receivers, g.weights * 1000.0, [g.source]
    )
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_allclose(d2, d1 * 1000.0, rtol=1e-4)


def test_stacked_sources_match_single_runs_and_steps_adapt(shipped):
    processor, encoder, _ = shipped
    g = erdos_renyi(np.random.default_rng(6), 40, 0.3)
    sources = [0, 5, 17]
    distance, pointer, steps = shortest_paths(
        processor, encoder, g.num_nodes, g.senders, g.receivers, g.weights, sources
    )
    for row, source in enumerate(sources):
        d, p, _ = shortest_paths(
            processor, encoder, g.num_nodes, g.senders, g.receivers, g.weights, [source]
        )
        np.testing.assert_array_equal(p[0], pointer[row])
        np.testing.assert_allclose(d[0], distance[row], rtol=1e-5)
    assert steps[0] < g.num_nodes  # converged before the Bellman-Ford bound


def test_accuracy_out_of_distribution(shipped):
    processor, encoder, _ = shipped
    g = road_like(np.random.default_rng(7), 600, "grid")
    distance, pointer, _ = shortest_paths(
        processor, encoder, g.num_nodes, g.senders, g.receivers, g.weights, [g.source]
    )
    truth = exact_distances(g.num_nodes, g.senders, g.receivers, g.weights, [g.source])[0]
    run = evaluate_run(truth, distance[0], pointer[0], g.senders, g.receivers, g.weights, g.source)
    assert run.pointer_correct / run.num_nodes > 0.97


def test_forward_shapes_and_states():
    processor = Processor(ProcessorConfig(hidden=8))
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
    mask = torch.zeros(2, 3, dtype=torch.bool)
    mask[0, 0] = mask[1, 2] = True
    out = processor(
        processor.initial_state(mask),
        mask,
        torch.randn(3, 8).abs(),
        edge_index,
        num_steps=4,
        keep_states=True,
    )
    assert out.states.shape == (5, 2, 3, 8)
    assert out.distance.shape == (2, 3) and out.pointer_logits.shape == (2, 3)
    assert out.reached.all()


def test_corrupt_artifact_is_rejected(tmp_path):
    import shutil

    copy = tmp_path / "processor"
    shutil.copytree(SHIPPED_PROCESSOR, copy)
    weights = copy / "processor.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\x00\x00\x00\x00")
    with pytest.raises(ArtifactError):
        load_pretrained(copy)


def test_weight_encoder_is_homogeneous():
    encoder = WeightEncoder(8)
    w = torch.tensor([0.5, 2.0])
    torch.testing.assert_close(encoder(3 * w), 3 * encoder(w))


def test_hand_set_tropical_step_is_exactly_bellman_ford():
    """A = I, B z = -w, distance read-out -h: every step equals a Bellman-Ford round."""
    from models.processor.algorithms import bellman_ford

    g = road_like(np.random.default_rng(8), 80)
    processor = Processor(ProcessorConfig(hidden=1))
    with torch.no_grad():
        processor.layer.edge.weight.fill_(-1.0)
        processor.distance_decoder.net.weight.fill_(-1.0)
        processor.pointer_decoder.net.weight.fill_(1.0)
    trace = bellman_ford(g.num_nodes, g.senders, g.receivers, g.weights, g.source)
    mask = torch.zeros(1, g.num_nodes, dtype=torch.bool)
    mask[0, g.source] = True
    edge_latent = torch.from_numpy(g.weights).double().unsqueeze(-1)  # [E, 1]
    edge_index = torch.from_numpy(np.stack([g.senders, g.receivers]))
    processor.double().freeze()
    out = processor(
        processor.initial_state(mask).double(),
        mask,
        edge_latent,
        edge_index,
        num_steps=trace.num_rounds,
        keep_step_outputs=True,
    )
    for t, distance in enumerate(out.step_distances):
        np.testing.assert_allclose(distance[0].numpy(), trace.hint_distance[t], rtol=1e-12)
    converged = processor(processor.initial_state(mask).double(), mask, edge_latent, edge_index)
    assert converged.converged and converged.steps == trace.num_rounds + 1
