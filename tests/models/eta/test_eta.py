"""The ETA model: learns a known travel-time rule through the frozen processor, which stays
bit-identical; artifacts round-trip and refuse a different processor or graph; the
Predictor answers with it."""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from models.baselines.freeflow import FreeFlowTurnModel
from models.eta.model import EtaConfig, EtaModel
from models.eta.train import TrainConfig, fit_eta
from models.inference.predictor import Predictor
from nareta.errors import ArtifactError
from tests.models.conftest import SHIPPED_PROCESSOR


@pytest.fixture(scope="module")
def rule_trips(bundled_graph) -> pd.DataFrame:
    return make_rule_trips(bundled_graph, count=100)


def make_rule_trips(graph, *, count: int) -> pd.DataFrame:
    """Trips whose true duration follows a rule the free-flow times miss: every segment
    takes 1.8x free flow plus 15 s per signal at its end."""
    signal = (graph["control_at_end"] == 1).astype(float)
    true_times = graph["free_flow_s"] * 1.8 + 15.0 * signal
    rng = np.random.default_rng(1)
    offsets = graph["path_offsets"]
    pick = rng.choice(graph.num_segments, size=(count, 2))
    rows = []
    for o, d in pick:
        lon_o = (graph["path_lon"][offsets[o]] + graph["path_lon"][offsets[o] + 1]) / 2
        lat_o = (graph["path_lat"][offsets[o]] + graph["path_lat"][offsets[o] + 1]) / 2
        lon_d = (graph["path_lon"][offsets[d]] + graph["path_lon"][offsets[d] + 1]) / 2
        lat_d = (graph["path_lat"][offsets[d]] + graph["path_lat"][offsets[d] + 1]) / 2
        rows.append((lon_o, lat_o, lon_d, lat_d))
    frame = pd.DataFrame(rows, columns=["origin_lon", "origin_lat", "destination_lon",
                                        "destination_lat"])
    truth = Predictor(graph, _Fixed(graph, true_times)).matrix
    durations = [truth([(r.origin_lon, r.origin_lat)], [(r.destination_lon, r.destination_lat)])
                 .durations_s[0, 0] for r in frame.itertuples()]
    frame["duration_s"] = durations
    frame["departure_time"] = "2026-11-18T07:10:00"
    from data_pipeline.trips import snap_trips, validate_trips

    table = snap_trips(validate_trips(frame), graph)
    return table.frame[table.frame["duration_s"] > 30].reset_index(drop=True)


class _Fixed(FreeFlowTurnModel):
    """Ground truth for the rule: the turn graph with given segment times."""

    def __init__(self, graph, times):
        super().__init__(graph)
        self._times = np.asarray(times, dtype=np.float64)


@pytest.fixture(scope="module")
def trained(bundled_graph, rule_trips):
    torch.manual_seed(0)
    model, report = fit_eta(bundled_graph, rule_trips, SHIPPED_PROCESSOR,
                            config=EtaConfig(graph_mode="turn"),
                            train=TrainConfig(epochs=5, batch_trips=32, learning_rate=1e-2,
                                              patience=5),
                            progress=False, log=lambda *_: None)
    return model, report


def test_learns_the_rule(trained):
    _, report = trained
    before = report["initial_validation"]["mape"]
    after = report["best_validation_mape"]
    assert before > 0.3  # free flow misses the 1.8x and the signal delays
    assert after < 0.5 * before


def test_processor_stays_bit_identical(trained):
    from models.processor.model import load_pretrained

    model, _ = trained
    fresh, fresh_encoder, _ = load_pretrained(SHIPPED_PROCESSOR)
    for name, value in fresh.state_dict().items():
        assert torch.equal(value, model.processor.state_dict()[name]), name
    for name, value in fresh_encoder.state_dict().items():
        assert torch.equal(value, model.weight_encoder.state_dict()[name]), name
    assert all(not p.requires_grad for p in model.processor.parameters())
    assert not model.processor.training


def test_artifact_round_trip_and_refusals(trained, bundled_graph, tmp_path):
    model, _ = trained
    out = model.save(tmp_path / "eta", processor_dir=SHIPPED_PROCESSOR, seed=0)
    loaded = EtaModel.load(out, bundled_graph)
    bucket = loaded.time_bucket(None)
    np.testing.assert_allclose(loaded.segment_times_s(bucket), model.segment_times_s(bucket),
                               rtol=1e-6)
    # Another processor (same config, different weights) is refused.
    other = tmp_path / "other_processor"
    shutil.copytree(SHIPPED_PROCESSOR, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["seed"] = 12345  # a different artifact: its files' hashes stay, identity not
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(other / "processor.safetensors"))
    first = next(iter(tensors))
    tensors[first] = tensors[first] + 1.0
    save_file(tensors, str(other / "processor.safetensors"), metadata={"format": "pt"})
    from nareta.artifacts import sha256_file

    manifest["files"]["processor.safetensors"]["sha256"] = sha256_file(
        other / "processor.safetensors")
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="trained against processor"):
        EtaModel.load(out, bundled_graph, processor_dir=other)


def test_refuses_another_graph(trained, tmp_path, clipped_osm):
    from data_pipeline.ingest import ingest_osm
    from data_pipeline.road_graph import RoadGraph

    model, _ = trained
    out = model.save(tmp_path / "eta", processor_dir=SHIPPED_PROCESSOR, seed=0)
    ingest_osm(clipped_osm).graph.save(tmp_path / "helsinki")
    helsinki = RoadGraph.load(tmp_path / "helsinki")
    with pytest.raises(ArtifactError, match="trained on graph"):
        EtaModel.load(out, helsinki)
    transferred = EtaModel.load(out, helsinki, allow_other_graph=True)
    assert transferred.segment_times_s(0).shape == (helsinki.num_segments,)


def test_predictor_with_eta_model(trained, bundled_graph, rule_trips):
    model, _ = trained
    predictor = Predictor(bundled_graph, model)
    row = rule_trips.iloc[0]
    origin = (row.origin_lon, row.origin_lat)
    destination = (row.destination_lon, row.destination_lat)
    route = predictor.route(origin, destination)
    source, target = bundled_graph["edge_source"], bundled_graph["edge_target"]
    assert all(target[a] == source[b] for a, b in itertools.pairwise(route.segments))
    assert route.eta_s > 0
    assert route.eta_s == pytest.approx(predictor.eta(origin, destination).eta_s, rel=1e-9)
    assert route.eta_s == pytest.approx(row.duration_s, rel=0.5)


def test_corridor_answer_equals_full_graph(trained, bundled_graph, rule_trips):
    """DESIGN "Scale": the corridor run gives the full-graph answer once it is big enough,
    and the default corridor already does for nearly every trip."""
    import datetime as dt

    from models.eta.train import predict_frame

    model, _ = trained
    frame = rule_trips.head(12).reset_index(drop=True)
    predictor = Predictor(bundled_graph, model)
    departure = dt.datetime(2026, 11, 18, 7, 10)
    full = np.array([predictor.eta((r.origin_lon, r.origin_lat),
                                   (r.destination_lon, r.destination_lat), departure).eta_s
                     for r in frame.itertuples()])
    whole = predict_frame(model, frame, corridor_factor=1e3, corridor_margin_m=1e7)
    np.testing.assert_allclose(whole, full, rtol=1e-4)
    default = predict_frame(model, frame)
    assert np.mean(np.isclose(default, full, rtol=1e-4)) >= 0.9


def test_training_resumes_from_checkpoint(bundled_graph, rule_trips, tmp_path):
    """Two epochs straight equal one epoch, a stop, then a resumed second epoch."""
    frame = rule_trips.head(30).reset_index(drop=True)
    settings = dict(batch_trips=16, learning_rate=1e-2, patience=5)

    def fit(epochs, checkpoint):
        model, _ = fit_eta(bundled_graph, frame, SHIPPED_PROCESSOR,
                           train=TrainConfig(epochs=epochs, **settings), progress=False,
                           log=lambda *_: None, checkpoint_dir=checkpoint)
        return {k: v.clone() for k, v in model.encoder.state_dict().items()}

    straight = fit(2, None)
    fit(1, tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "progress.json").is_file()
    resumed = fit(2, tmp_path / "ckpt")
    for name, value in straight.items():
        assert torch.allclose(value, resumed[name], atol=1e-6), name
