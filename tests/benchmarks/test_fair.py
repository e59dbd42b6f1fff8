"""benchmarks/fair.py's statistics (common trip set, paired trip bootstrap over seeds) on
hand-checked inputs, and the claim its ``nar_k1`` arm rests on: with
``EtaConfig(residual=False)`` every processor channel runs one scalar per turn, so the
model's times are one constant times scalar Dijkstra on its own turn weights."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fair():
    spec = importlib.util.spec_from_file_location("fair", REPO / "benchmarks" / "fair.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_common_set_and_unanswered_counts(fair):
    nan, inf = float("nan"), float("inf")
    predictions = {
        "a": np.array([10.0, 20.0, nan, 40.0, 50.0]),
        "b": np.array([10.0, 0.0, 30.0, 40.0, 50.0]),  # 0 s is no answer
        # two seeds: a row counts as answered only if every seed answers it
        "c": np.array([[10.0, 20.0, 30.0, 40.0, 50.0], [10.0, 20.0, 30.0, inf, 50.0]]),
    }
    answered, unanswered = fair.common_answered(predictions)
    assert answered.tolist() == [True, False, False, False, True]
    assert unanswered == {"a": 1, "b": 1, "c": 1}


def test_seed_mean_mape_and_spread_by_hand(fair):
    true = np.array([100.0, 200.0])
    arm = np.array([[110.0, 200.0], [100.0, 260.0]])  # APE (0.1, 0) and (0, 0.3)
    rows = fair.paired_bootstrap(true, {"arm": arm}, reference=None, draws=50)
    assert rows["arm"]["seed_mapes"] == pytest.approx([0.05, 0.15])
    assert rows["arm"]["mape"] == pytest.approx(0.10)
    assert rows["arm"]["seed_std"] == pytest.approx(np.std([0.05, 0.15], ddof=1))
    assert "ratio" not in rows["arm"]


def test_paired_ratios_are_exact_where_errors_are_proportional(fair):
    rng = np.random.default_rng(3)
    true = rng.uniform(100, 1000, 500)
    error = rng.uniform(0.01, 0.4, 500) * rng.choice([-1, 1], 500)
    predictions = {"ref": true * (1 + error), "double": true * (1 + 2 * error),
                   "other": true * (1 + rng.uniform(-0.3, 0.3, 500))}
    rows = fair.paired_bootstrap(true, predictions, reference="ref", draws=200, seed=1)
    # the same trips are drawn for every arm, so a per-trip 2x error is 2x in every draw
    assert rows["double"]["ratio"] == pytest.approx(2.0)
    assert rows["double"]["ratio_ci"] == pytest.approx([2.0, 2.0])
    assert rows["ref"]["ratio_ci"] == pytest.approx([1.0, 1.0])
    low, high = rows["other"]["ratio_ci"]
    assert low < rows["other"]["ratio"] < high
    again = fair.paired_bootstrap(true, predictions, reference="ref", draws=200, seed=1)
    assert again == rows  # seeded: reproducible


def test_interval_matches_the_normal_approximation(fair):
    rng = np.random.default_rng(0)
    true = np.full(4000, 100.0)
    predicted = true * (1 + rng.exponential(0.2, 4000))
    ape = np.abs(predicted - true) / true
    rows = fair.paired_bootstrap(true, {"m": predicted}, reference=None, draws=1000)
    low, high = rows["m"]["mape_ci"]
    half = 1.96 * ape.std(ddof=1) / np.sqrt(len(ape))
    assert low < ape.mean() < high
    assert (high - low) / 2 == pytest.approx(half, rel=0.15)


def test_refuses_unanswered_rows_and_bad_truth(fair):
    with pytest.raises(ValueError, match="common set"):
        fair.paired_bootstrap(np.array([1.0, 2.0]), {"a": np.array([1.0, np.nan])},
                              reference=None)
    with pytest.raises(ValueError, match="positive"):
        fair.paired_bootstrap(np.array([0.0, 2.0]), {"a": np.array([1.0, 2.0])},
                              reference=None)


def test_no_residual_model_is_one_scalar_channel(bundled_graph):
    """``nar_k1``: without the residual, times = c x Dijkstra on the model's own turn weights
    (one scalar per turn); with a residual the channels weigh turns differently."""
    from models.eta.model import EtaConfig, EtaModel
    from models.execution.trees import line_dijkstra_tree
    from models.processor.model import load_pretrained

    processor, weight_encoder, manifest = load_pretrained(REPO / "artifacts_shipped" / "processor")
    origins = np.array([0, 7, 123])
    ratios = {}
    for residual in (False, True):
        torch.manual_seed(0)
        model = EtaModel(bundled_graph, processor, weight_encoder, manifest,
                         config=EtaConfig(residual=residual))
        with torch.no_grad():  # segment times that vary by features, channels that differ
            torch.nn.init.normal_(model.encoder.segment_factor.weight, std=0.3)
            torch.nn.init.normal_(model.encoder.residual.weight, std=0.5)
        model.eval()
        run = model.run_from(origins, 0)
        exact = line_dijkstra_tree(bundled_graph, model.segment_times_s(0),
                                   model.turn_times_s(0), origins)
        reached = np.isfinite(exact.node_time_s) & (exact.node_time_s > 1.0)
        ratios[residual] = run.node_time_s[reached] / exact.node_time_s[reached]
    assert np.ptp(ratios[False]) < 1e-4 * ratios[False].mean()  # one constant
    assert np.ptp(ratios[True]) > 1e-2 * ratios[True].mean()  # the channels do differ


def test_live_learned_scalar_applies_the_feed_factor(fair, bundled_graph):
    """The timed + live learned scalar: no state -> the timed scalar's times; a state ->
    times x exp(clip(gain x prior + theta . features)), the run on those times."""
    from models.baselines.learned import LearnedScalarBaseline, ScalarConfig
    from models.execution.trees import line_dijkstra_tree
    from models.inference.live import LIVE_FEATURES, RunKey, TrafficState, no_traffic_features

    segments = bundled_graph.num_segments
    base = LearnedScalarBaseline(np.asarray(bundled_graph["free_flow_s"], float) * 1.5,
                                 np.full(bundled_graph.num_turns, 2.0), ScalarConfig())
    theta = np.zeros(len(LIVE_FEATURES))
    theta[LIVE_FEATURES.index("observed")] = 0.1
    model = fair.LiveLearnedScalar(base, 0.5, theta, bundled_graph)
    np.testing.assert_allclose(model.segment_times_s(RunKey(0)), base.segment_time_s)
    features = no_traffic_features(segments)
    smoothed = LIVE_FEATURES.index("smoothed_log_ratio")
    features[:, smoothed] = -0.4  # prior log factor 0.4 everywhere
    features[:10, LIVE_FEATURES.index("observed")] = 1.0
    features[10:20, smoothed] = -20.0  # far beyond the clip
    state = TrafficState("s", 0.0, features, 0.5)
    key = RunKey(0, "s", state)
    expected = np.full(segments, 0.5 * 0.4)
    expected[:10] += 0.1
    expected[10:20] = fair.LIVE_LOG_FACTOR_LIMIT
    np.testing.assert_allclose(model.segment_times_s(key),
                               base.segment_time_s * np.exp(expected), rtol=1e-6)
    run = model.run_from(np.array([0]), key)
    reference = line_dijkstra_tree(bundled_graph, base.segment_time_s * np.exp(expected),
                                   base.turn_time_s, np.array([0]))
    np.testing.assert_allclose(run.node_time_s, reference.node_time_s)
    assert model.identity != fair.LiveLearnedScalar(base, 0.6, theta, bundled_graph).identity


def test_median_bias_is_the_seed_mean_of_medians(fair):
    true = np.array([100.0, 100.0, 100.0])
    arm = np.array([[90.0, 100.0, 130.0], [80.0, 70.0, 100.0]])  # medians 0 and -0.2
    rows = fair.paired_bootstrap(true, {"arm": arm}, reference=None, draws=10)
    assert rows["arm"]["median_bias"] == pytest.approx(-0.1)
