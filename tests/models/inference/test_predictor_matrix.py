"""The matrix's vectorised cell assembly gives bit-for-bit what the per-cell ``_best`` loop
gives: node and turn mode, partial (targeted) and whole-graph trees, points on nodes,
several points on one segment (direct rides, loops), the learned model."""

from __future__ import annotations

import numpy as np
import pytest

from models.baselines.freeflow import FreeFlowModel, FreeFlowTurnModel
from models.inference.predictor import Predictor
from tests.conftest import REPO

SHIPPED_MODEL = REPO / "artifacts_shipped" / "eta_baltimore"


def _points(graph, rng: np.random.Generator, count: int) -> list[tuple[float, float]]:
    """Random points on roads, some exactly on nodes, some sharing a segment."""
    offsets, lon, lat = graph["path_offsets"], graph["path_lon"], graph["path_lat"]
    points = []
    for segment in rng.choice(graph.num_segments, count):
        first, last = int(offsets[segment]), int(offsets[segment + 1]) - 1
        share = rng.random()
        points.append((float(lon[first] + share * (lon[last] - lon[first])),
                       float(lat[first] + share * (lat[last] - lat[first]))))
    node = rng.choice(graph.num_nodes, 3)
    points += [(float(graph["node_lon"][n]), float(graph["node_lat"][n])) for n in node]
    lon0, lat0 = points[0]
    first, last = int(offsets[0]), int(offsets[1]) - 1
    points += [(float(lon[first] + s * (lon[last] - lon[first])),
                float(lat[first] + s * (lat[last] - lat[first]))) for s in (0.2, 0.7)]
    return [*points, points[-1], points[-2]]


def _per_cell(predictor: Predictor, origins, destinations, bucket, trees, times):
    durations = np.full((len(origins), len(destinations)), np.nan)
    distances = np.full_like(durations, np.nan)
    for i, origin in enumerate(origins):
        for j, destination in enumerate(destinations):
            total, metres, _, _ = predictor._best(origin, destination, bucket, trees, times)
            if np.isfinite(total):
                durations[i, j], distances[i, j] = total, metres
    return durations, distances


@pytest.mark.parametrize("model", ["freeflow", "freeflow-turns", "learned"])
@pytest.mark.parametrize("destinations", [4, 60])  # targeted runs; whole-graph runs
def test_cells_equal_the_per_cell_loop(bundled_graph, model, destinations):
    if model == "learned":
        from models.inference.registry import load_model

        travel_time = load_model(SHIPPED_MODEL, bundled_graph)
    else:
        travel_time = (FreeFlowModel if model == "freeflow" else FreeFlowTurnModel)(
            bundled_graph)
    predictor = Predictor(bundled_graph, travel_time)
    rng = np.random.default_rng(destinations)
    points = predictor.snap(_points(bundled_graph, rng, 8 + destinations))
    # origins: random ones, then the node points and the four on segment 0 (also targets)
    origins, targets = points[:8] + points[-7:], points[8:]
    assert {p.segment for p in origins[-4:]} & {p.segment for p in targets}
    assert any(p.fraction in (0.0, 1.0) for p in origins[-7:-4])
    bucket = travel_time.time_bucket(None)
    times = travel_time.segment_times_s(bucket)
    roots = [leg.key for p in origins for leg in predictor._starts(p, times)]
    trees = predictor._trees(roots, bucket, predictor._end_keys(targets, times))
    kinds = {type(tree).__name__ for tree in trees.values()}
    assert kinds == ({"_PartialTree"} if destinations == 4 else {"_Tree"})
    durations, distances = predictor._cells(origins, targets, bucket, trees, times)
    expected_durations, expected_distances = _per_cell(predictor, origins, targets, bucket,
                                                       trees, times)
    np.testing.assert_array_equal(durations, expected_durations)
    np.testing.assert_array_equal(distances, expected_distances)
    assert np.isfinite(durations).mean() > 0.9
    # and the public matrix (given the snapped waypoints) answers the same
    answer = predictor.matrix(origins, targets)
    np.testing.assert_array_equal(answer.durations_s, durations)
    np.testing.assert_array_equal(answer.distances_m, distances)
