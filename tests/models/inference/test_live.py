"""Live traffic state (models.inference.live) and its use in the Predictor: no peeking at windows that
have not ended, smoothing over neighbours, max age, run keys per snapshot (a new snapshot
never gets a stale cached answer) and the fallback to the historical model."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from data_pipeline.traffic import Observations
from models.baselines.freeflow import FreeFlowTurnModel, LiveScalarModel
from models.inference.live import LIVE_FEATURES, TrafficSnapshot, TrafficStore, local_seconds
from models.inference.predictor import Predictor
from nareta.errors import InputError
from tests.graph_fixtures import longest_free_flow_trip, road_graph_from_paths

CHAIN = 9  # segments 0 -> 1 -> ... -> 8 along a meridian
FEATURE = {name: index for index, name in enumerate(LIVE_FEATURES)}


def seconds(text: str) -> float:
    return local_seconds(pd.Timestamp(text).to_pydatetime())


@pytest.fixture(scope="module")
def chain():
    nodes = {i: (24.9, 60.0 + 0.001 * i) for i in range(CHAIN + 1)}
    return road_graph_from_paths(nodes, [((i, i + 1), 100 + i) for i in range(CHAIN)])


def snapshot_of(graph, entries, **options) -> TrafficSnapshot:
    """entries: (window start text, segment, speed / free-flow speed)."""
    probe = TrafficSnapshot(graph, Observations.concat([]))
    windows = np.array([seconds(w) for w, _, _ in entries])
    segments = np.array([s for _, s, _ in entries], dtype=np.int64)
    speeds = np.array([probe.free_kph[s] * r for _, s, r in entries])
    return TrafficSnapshot(graph, Observations(windows, segments, speeds, np.ones(len(entries))),
                           **options)


def test_state_uses_only_windows_that_ended(chain):
    snapshot = snapshot_of(chain, [("2026-11-18T08:00", 0, 0.5), ("2026-11-18T08:05", 0, 0.25)])
    before = snapshot.state_at(seconds("2026-11-18T08:04:59"))
    assert before.features[0, FEATURE["observed"]] == 0 and not math.isfinite(before.as_of_s)
    # 08:09 sees the window that ended at 08:05, never the one still running (ends 08:10)
    during = snapshot.state_at(seconds("2026-11-18T08:09:00"))
    assert during.features[0, FEATURE["observed"]] == 1
    assert during.features[0, FEATURE["log_ratio"]] == pytest.approx(math.log(0.5), abs=1e-6)
    assert during.as_of_s == seconds("2026-11-18T08:05")
    after = snapshot.state_at(seconds("2026-11-18T08:10:00"))
    assert after.features[0, FEATURE["log_ratio"]] == pytest.approx(math.log(0.25), abs=1e-6)
    assert after.features[0, FEATURE["age"]] == 0.0
    later = snapshot.state_at(seconds("2026-11-18T08:20:00"))
    assert later.features[0, FEATURE["age"]] == pytest.approx(10 / 30)
    # trend: now (0.25) against 15 min earlier (the window that ended at 08:05: 0.5)
    assert later.features[0, FEATURE["trend"]] == pytest.approx(math.log(0.5), abs=1e-6)
    steady = snapshot.state_at(seconds("2026-11-18T08:25:00"))  # 08:10 saw 0.25 too
    assert steady.features[0, FEATURE["trend"]] == 0.0
    assert during.key != after.key  # a state per departure window


def test_smoothing_fills_neighbours_and_the_city_index_the_rest(chain):
    snapshot = snapshot_of(chain, [("2026-11-18T08:00", 0, 0.5), ("2026-11-18T08:00", 8, 1.0)])
    state = snapshot.state_at(seconds("2026-11-18T08:05"))
    half = math.log(0.5)
    smoothed = state.features[:, FEATURE["smoothed_log_ratio"]]
    # three hops from each end; segment 4 is beyond reach and gets the median (half / 2)
    assert smoothed.tolist() == pytest.approx([half, half, half, half, half / 2, 0, 0, 0, 0],
                                              abs=1e-6)
    assert state.features[:, FEATURE["smoothed"]].tolist() == [1, 1, 1, 1, 0, 1, 1, 1, 1]
    assert state.features[:, FEATURE["observed"]].tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 1]
    assert state.features[:, FEATURE["city_index"]] == pytest.approx(half / 2, abs=1e-6)
    assert state.observed_share == pytest.approx(2 / CHAIN)
    # the prior the feed implies: time factor 2 on segment 0, 1 on segment 8
    assert np.exp(state.prior_log_factor[[0, 8]]) == pytest.approx([2.0, 1.0], rel=1e-6)


def test_store_falls_back_when_empty_or_expired(chain):
    store = TrafficStore(max_age_s=1800)
    state, reason = store.state_for(seconds("2026-11-18T08:30"))
    assert state is None and reason == "no traffic feed loaded"
    store.replace(snapshot_of(chain, [("2026-11-18T08:00", 0, 0.5)], max_age_s=1800))
    # departures are taken at the start of their 5 min window: 08:34 sees the state at 08:30
    state, reason = store.state_for(seconds("2026-11-18T08:34:59"))
    assert state is not None and reason == "live"
    state, reason = store.state_for(seconds("2026-11-18T08:35"))  # ended 30 min before
    assert state is None and "30 min" in reason


# --------------------------------------------------------------------------- Predictor
@pytest.fixture(scope="module")
def clipped(clipped_osm):
    from data_pipeline.ingest import ingest_osm

    return ingest_osm(clipped_osm).graph


@pytest.fixture(scope="module")
def trip(clipped):
    """Two points whose free-flow route is a few segments long."""
    return longest_free_flow_trip(clipped)


def everywhere(graph, factor: float, window: str = "2026-11-18T08:00") -> TrafficSnapshot:
    return snapshot_of(graph, [(window, s, factor) for s in range(graph.num_segments)])


DEPARTURE = pd.Timestamp("2026-11-18T08:07").to_pydatetime()


def test_new_snapshot_never_gets_a_stale_cached_answer(clipped, trip):
    origin, destination, free = trip
    predictor = Predictor(clipped, LiveScalarModel(clipped))
    result = predictor.eta(origin, destination, DEPARTURE)
    assert result.eta_s == pytest.approx(free, rel=1e-9)  # no feed: the historical model
    assert result.traffic.live is False and result.traffic.reason == "no traffic feed loaded"

    half = everywhere(clipped, 0.5)
    predictor.set_traffic(half)
    runs = predictor.stats["runs"]
    result = predictor.eta(origin, destination, DEPARTURE)
    assert result.eta_s == pytest.approx(2 * free, rel=1e-6)
    assert result.traffic.live and result.traffic.snapshot == half.key
    assert result.traffic.as_of == pd.Timestamp("2026-11-18T08:05").to_pydatetime()
    assert predictor.stats["runs"] > runs
    # the same query again: served from the cache
    runs, hits = predictor.stats["runs"], predictor.stats["cache_hits"]
    assert predictor.eta(origin, destination, DEPARTURE).eta_s == pytest.approx(2 * free, rel=1e-6)
    assert predictor.stats["runs"] == runs and predictor.stats["cache_hits"] > hits

    quarter = everywhere(clipped, 0.25)
    predictor.set_traffic(quarter)
    result = predictor.eta(origin, destination, DEPARTURE)
    assert result.eta_s == pytest.approx(4 * free, rel=1e-6)  # not the cached 2x
    assert result.traffic.snapshot == quarter.key != half.key
    assert predictor.stats["runs"] > runs
    # every kind of answer says which snapshot it used
    assert predictor.route(origin, destination, DEPARTURE).traffic.snapshot == quarter.key
    assert predictor.matrix([origin], [destination], DEPARTURE).traffic.snapshot == quarter.key
    assert predictor.isochrone(origin, 60.0, DEPARTURE).traffic.snapshot == quarter.key
    # without a departure time the query departs at the snapshot's newest observation
    assert predictor.eta(origin, destination).traffic.live


def test_expired_feed_falls_back_to_the_historical_answer(clipped, trip):
    origin, destination, free = trip
    predictor = Predictor(clipped, LiveScalarModel(clipped))
    predictor.set_traffic(everywhere(clipped, 0.5))
    late = pd.Timestamp("2026-11-18T10:00").to_pydatetime()
    result = predictor.eta(origin, destination, late)
    assert result.eta_s == pytest.approx(free, rel=1e-9)
    assert result.traffic.live is False and "30 min" in result.traffic.reason
    assert result.traffic.as_of is None and result.traffic.snapshot is None
    early = pd.Timestamp("2026-11-18T07:59").to_pydatetime()  # before any window ended
    assert predictor.eta(origin, destination, early).traffic.live is False


def test_snapshot_of_another_graph_is_refused(clipped, chain):
    predictor = Predictor(clipped, LiveScalarModel(clipped))
    with pytest.raises(InputError, match="another road graph"):
        predictor.set_traffic(everywhere(chain, 0.5))


def test_models_without_traffic_report_none(clipped, trip):
    origin, destination, _ = trip
    predictor = Predictor(clipped, FreeFlowTurnModel(clipped))
    assert predictor.eta(origin, destination, DEPARTURE).traffic is None


def test_learned_model_falls_back_to_its_no_traffic_answer(clipped, trip):
    """An (untrained) EtaModel that takes live traffic: with no feed or an expired one it
    answers exactly as with no state; a live snapshot changes the answer."""
    import torch

    from models.eta.model import EtaConfig, EtaModel
    from models.processor.model import load_pretrained
    from tests.models.conftest import SHIPPED_PROCESSOR

    torch.manual_seed(0)
    processor, weight_encoder, manifest = load_pretrained(SHIPPED_PROCESSOR)
    model = EtaModel(clipped, processor, weight_encoder, manifest,
                     config=EtaConfig(traffic=True)).eval()
    assert model.uses_traffic
    origin, destination, _ = trip
    predictor = Predictor(clipped, model)
    historical = predictor.eta(origin, destination, DEPARTURE)
    assert historical.traffic.live is False
    predictor.set_traffic(everywhere(clipped, 0.3, window="2026-11-18T06:00"))  # expired
    expired = predictor.eta(origin, destination, DEPARTURE)
    assert expired.traffic.live is False
    assert expired.eta_s == historical.eta_s
    predictor.set_traffic(everywhere(clipped, 0.3))
    live = predictor.eta(origin, destination, DEPARTURE)
    assert live.traffic.live
    assert live.eta_s > 1.5 * historical.eta_s  # the feed's prior enters with gain 1
