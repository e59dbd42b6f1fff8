import numpy as np
import pandas as pd
import pytest
import torch

from models.baselines.learned import (
    FreeFlowBaseline,
    GnnConfig,
    GnnRegressorBaseline,
    LearnedScalarBaseline,
    ScalarConfig,
    load_baseline,
    save_baseline,
)
from models.baselines.routing import reverse_twins, shortest_routes, trip_times
from nareta.errors import ArtifactError
from tests.graph_fixtures import road_graph_from_paths

DEG = 100 / 111_319.49  # 100 m in degrees on the equator


def grid_graph(size=4, *, speeds=None):
    """size x size grid, 100 m blocks, two-way streets (both directions as segments)."""
    lonlat = {r * size + c + 1: (c * DEG, r * DEG) for r in range(size) for c in range(size)}
    paths = []
    way = 100
    for r in range(size):
        for c in range(size):
            node = r * size + c + 1
            for dr, dc in ((0, 1), (1, 0)):
                if r + dr < size and c + dc < size:
                    other = (r + dr) * size + c + dc + 1
                    paths += [((node, other), way), ((other, node), way)]
                    way += 1
    speed = 36.0 if speeds is None else speeds(len(paths))
    return road_graph_from_paths(lonlat, paths, speed_kph=speed)


def trips_frame(graph, origin, o_frac, dest, d_frac, **extra):
    lon, lat = graph["node_lon"], graph["node_lat"]
    src = graph["edge_source"]
    data = {
        "origin_segment": origin,
        "origin_fraction": o_frac,
        "destination_segment": dest,
        "destination_fraction": d_frac,
        "origin_lon": lon[src[origin]],
        "origin_lat": lat[src[origin]],
        "destination_lon": lon[src[dest]],
        "destination_lat": lat[src[dest]],
        "departure_hour": np.full(len(origin), 7.5),
        **extra,
    }
    return pd.DataFrame(data)


def test_trip_times_hand_checked():
    graph = grid_graph(2)  # 4 nodes, 8 segments of 100 m at 10 m/s = 10 s each
    src, dst = graph["edge_source"], graph["edge_target"]
    times = np.full(graph.num_segments, 10.0)
    a = next(s for s in range(8) if src[s] == 0 and dst[s] == 1)
    b = next(s for s in range(8) if src[s] == 1 and dst[s] == 3)
    # from 30 % along a to 50 % along b: 7 s + 5 s
    got = trip_times(graph, [a], [0.3], [b], [0.5], times, both_directions=False)
    assert got[0] == pytest.approx(12.0)
    # same segment, destination ahead of origin
    got = trip_times(graph, [a], [0.2], [a], [0.7], times, both_directions=False)
    assert got[0] == pytest.approx(5.0)
    # a turn cost on the a -> b turn is added
    turn = np.zeros(graph.num_turns)
    turn[(graph["turn_from"] == a) & (graph["turn_to"] == b)] = 4.0
    got = trip_times(graph, [a], [0.3], [b], [0.5], times, turn, both_directions=False)
    assert got[0] == pytest.approx(16.0)
    # destination behind the origin on a two-way street: turning onto the twin is faster
    twin = reverse_twins(graph)[a]
    assert twin >= 0
    got = trip_times(graph, [a], [0.7], [a], [0.2], times)
    assert got[0] == pytest.approx(5.0)


def test_freeflow_baseline_and_artifact(tmp_path):
    graph = grid_graph(3)
    frame = trips_frame(graph, np.array([0]), np.array([0.0]), np.array([5]), np.array([1.0]))
    baseline = load_baseline("freeflow")
    assert isinstance(baseline, FreeFlowBaseline)
    expected = trip_times(graph, [0], [0.0], [5], [1.0], graph["free_flow_s"])
    assert baseline.predict(graph, frame)[0] == pytest.approx(expected[0])


def _synthetic_trips(graph, true_time, count, seed):
    """Trips from the middle of one segment to the middle of another along the true
    shortest route (kept only where no start on the reverse twin is faster)."""
    rng = np.random.default_rng(seed)
    origin = rng.integers(0, graph.num_segments, count)
    dest = rng.integers(0, graph.num_segments, count)
    twins = reverse_twins(graph)
    keep = (origin != dest) & (twins[origin] != dest)
    origin, dest = origin[keep], dest[keep]
    half = np.full(len(origin), 0.5)
    routes = shortest_routes(graph, origin, dest, true_time)
    duration = np.array([true_time[r].sum() for r in routes]) - 0.5 * (
        true_time[origin] + true_time[dest]
    )
    best = trip_times(graph, origin, half, dest, half, true_time)
    optimal = np.isclose(best, duration)
    frame = trips_frame(graph, origin, half, dest, half, route=routes, duration_s=duration)
    return frame[optimal].reset_index(drop=True)


def test_learned_scalar_recovers_segment_times_on_a_tiny_problem(tmp_path):
    torch.manual_seed(0)
    graph = grid_graph(4)
    rng = np.random.default_rng(0)
    true_time = graph["free_flow_s"].astype(float) * rng.uniform(1.0, 3.0, graph.num_segments)
    train = _synthetic_trips(graph, true_time, 600, seed=1)
    test = _synthetic_trips(graph, true_time, 300, seed=2)
    fitted = LearnedScalarBaseline.fit(
        graph, train, config=ScalarConfig(epochs=300), log=lambda *_: None
    )
    predicted = fitted.predict(graph, test)
    ape = np.abs(predicted - test["duration_s"]) / test["duration_s"]
    assert ape.mean() < 0.08
    freeflow = FreeFlowBaseline().predict(graph, test)
    assert (
        np.abs(freeflow - test["duration_s"]).mean()
        > 3 * np.abs(predicted - test["duration_s"]).mean()
    )
    save_baseline(fitted, tmp_path / "scalar", graph=graph)
    again = load_baseline(tmp_path / "scalar", graph=graph)
    np.testing.assert_allclose(again.predict(graph, test), predicted)
    with pytest.raises(ArtifactError, match="segment times"):
        again.predict(grid_graph(3), test.iloc[:1])


def test_learned_scalar_without_routes_alternates_routing_and_fitting():
    graph = grid_graph(3)
    true_time = graph["free_flow_s"].astype(float) * 2.0
    train = _synthetic_trips(graph, true_time, 150, seed=3).drop(columns=["route"])
    fitted = LearnedScalarBaseline.fit(
        graph, train, config=ScalarConfig(epochs=150, reroute_rounds=1), log=lambda *_: None
    )
    predicted = fitted.predict(graph, train)
    assert np.median(np.abs(predicted / train["duration_s"] - 1)) < 0.1


def test_gnn_regressor_trains_and_round_trips(tmp_path):
    torch.manual_seed(0)
    graph = grid_graph(3)
    true_time = graph["free_flow_s"].astype(float) * 2.0
    train = _synthetic_trips(graph, true_time, 200, seed=4)
    model = GnnRegressorBaseline.fit(
        graph,
        train,
        config=GnnConfig(hidden=16, layers=2, epochs=30, batch_size=64),
        log=lambda *_: None,
    )
    predicted = model.predict(graph, train)
    assert np.isfinite(predicted).all() and (predicted > 0).all()
    assert np.median(np.abs(predicted / train["duration_s"] - 1)) < 0.5
    save_baseline(model, tmp_path / "gnn", graph=graph)
    again = load_baseline(tmp_path / "gnn", graph=graph)
    np.testing.assert_allclose(again.predict(graph, train), predicted, rtol=1e-5)


def test_load_rejects_non_baselines(tmp_path):
    with pytest.raises(ArtifactError):
        load_baseline(tmp_path)


def test_learned_scalar_serves_the_predictor_interface(tmp_path):
    from models.inference.registry import load_model
    from tests.models.tree_reference import predict_with_travel_time_model

    graph = grid_graph(3)
    rng = np.random.default_rng(5)
    times = graph["free_flow_s"].astype(float) * rng.uniform(1.0, 2.0, graph.num_segments)
    turns = rng.uniform(0.0, 3.0, graph.num_turns)
    save_baseline(LearnedScalarBaseline(times, turns), tmp_path / "scalar", graph=graph)
    model = load_model(tmp_path / "scalar", graph)  # through the registry, bound to the graph
    assert model.graph_mode == "turn" and model.identity.startswith("learned_scalar:")
    frame = trips_frame(
        graph,
        np.array([0, 3, 7]),
        np.array([0.2, 0.5, 0.9]),
        np.array([9, 3, 1]),
        np.array([0.4, 0.8, 0.1]),
    )
    # the Predictor's route (trees from origin segments) gives the baseline's own answer
    np.testing.assert_allclose(
        predict_with_travel_time_model(model, graph, frame), model.predict(graph, frame)
    )
    gnn = GnnRegressorBaseline.fit(
        graph,
        _synthetic_trips(graph, times, 60, seed=6),
        config=GnnConfig(hidden=8, layers=1, epochs=1),
        log=lambda *_: None,
    )
    save_baseline(gnn, tmp_path / "gnn", graph=graph)
    with pytest.raises(ArtifactError, match="origin-destination pairs"):
        load_model(tmp_path / "gnn", graph)


def _rush_factor(hours: np.ndarray) -> np.ndarray:
    """Travel times swell towards 08:00 and ease towards 20:00 (x1.5 to x0.67)."""
    return np.exp(0.4 * np.cos(2 * np.pi * (hours - 8.0) / 24.0))


def _timed_trips(graph, true_time, count, seed):
    """Synthetic trips departing at every hour of a Monday; every segment slows by the
    same factor of the hour, so the routes stay the static ones."""
    frame = _synthetic_trips(graph, true_time, count, seed)
    hours = np.random.default_rng(seed + 100).uniform(0, 24, len(frame))
    frame["departure_local"] = (pd.Timestamp("2024-05-06")
                                + pd.to_timedelta(hours, unit="h")).floor("s")
    frame["departure_hour"] = hours
    frame["duration_s"] = frame["duration_s"] * _rush_factor(hours)
    return frame


def test_learned_scalar_with_time_features_fits_what_the_plain_one_cannot(tmp_path):
    from models.inference.predictor import Predictor
    from models.inference.registry import load_model
    from tests.models.tree_reference import predict_with_travel_time_model

    torch.manual_seed(0)
    graph = grid_graph(4)
    rng = np.random.default_rng(0)
    true_time = graph["free_flow_s"].astype(float) * rng.uniform(1.0, 3.0, graph.num_segments)
    train = _timed_trips(graph, true_time, 600, seed=1)
    test = _timed_trips(graph, true_time, 300, seed=2)

    def mape(model):
        predicted = model.predict(graph, test)
        return float(np.mean(np.abs(predicted - test["duration_s"]) / test["duration_s"]))

    quiet = {"log": lambda *_: None}
    plain = LearnedScalarBaseline.fit(graph, train, config=ScalarConfig(epochs=300), **quiet)
    timed = LearnedScalarBaseline.fit(
        graph, train, config=ScalarConfig(epochs=300, time_features=True), **quiet
    )
    assert timed.name == "learned_scalar_time" and plain.name == "learned_scalar"
    assert mape(plain) > 0.12  # one time per segment cannot follow the hour
    assert mape(timed) < 0.06 and mape(timed) < mape(plain) / 3

    # an artifact the registry loads and the Predictor serves, per departure bucket
    save_baseline(timed, tmp_path / "timed", graph=graph)
    served = load_model(tmp_path / "timed", graph)
    assert served.identity.startswith("learned_scalar_time:")
    assert served.identity != plain.identity
    np.testing.assert_allclose(served.predict(graph, test), timed.predict(graph, test))
    np.testing.assert_allclose(
        predict_with_travel_time_model(served, graph, test), served.predict(graph, test)
    )
    predictor = Predictor(graph, served, max_snap_distance_m=50)
    lon, lat = graph["node_lon"], graph["node_lat"]
    a, b = (float(lon[0]), float(lat[0])), (float(lon[15]), float(lat[15]))
    at_eight = predictor.eta(a, b, pd.Timestamp("2024-05-06 08:00").to_pydatetime()).eta_s
    at_twenty = predictor.eta(a, b, pd.Timestamp("2024-05-06 20:00").to_pydatetime()).eta_s
    assert at_eight / at_twenty == pytest.approx(_rush_factor(8.0) / _rush_factor(20.0),
                                                 rel=0.15)


def test_timed_scalar_keeps_its_free_flow_floor_at_every_hour():
    """A time factor below one never takes a segment under ``min_free_flow_share`` x free
    flow (else Dijkstra routes through the segments it pushed there)."""
    graph = grid_graph(3)
    free = graph["free_flow_s"].astype(np.float64)
    coefficient = np.zeros((graph.num_segments, 5))
    coefficient[:, 1] = -50.0  # cos(hour) term: a factor of ~exp(-1) around midnight
    coefficient[0, 1] = 0.0  # one segment without a time effect
    model = LearnedScalarBaseline(free * 0.9, np.zeros(graph.num_turns),
                                  ScalarConfig(time_features=True, min_free_flow_share=0.8),
                                  time_coefficient=coefficient)
    with pytest.raises(ArtifactError, match="bind it to its graph"):
        model.segment_times_s(0)
    model.segment_times(graph)
    times = model.segment_times_s(0)  # bucket 0: 00:00-00:15, cos ~ 1
    np.testing.assert_allclose(times[1:], 0.8 * free[1:])
    assert times[0] == pytest.approx(0.9 * free[0])
