"""The same query answered from a targeted run and from a whole-graph tree gives the same
bits: what a cache happened to hold must not show in an answer (batch runs are compared
byte for byte in tests/batch/test_reproducible.py)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from models.baselines.routing import reverse_twins
from models.inference.predictor import Predictor
from tests.conftest import REPO

SHIPPED_ETA = REPO / "artifacts_shipped" / "eta_baltimore"
DEPARTURE = dt.datetime(2024, 5, 6, 8, 7)


def _pairs(graph) -> tuple[list, list]:
    """Loops (70 % -> 30 % along a straight one-way segment: around the block and back,
    the case that differed by a float32 step) and random pairs."""
    twins = reverse_twins(graph)
    lon, lat = graph["path_lon"], graph["path_lat"]
    origins, destinations = [], []
    for segment in range(graph.num_segments):
        piece = graph.segment_path(segment)
        if twins[segment] >= 0 or piece.stop - piece.start != 2 or (
                graph["length_m"][segment] < 60):
            continue
        (x0, x1), (y0, y1) = lon[piece], lat[piece]
        origins.append((x0 + 0.7 * (x1 - x0), y0 + 0.7 * (y1 - y0)))
        destinations.append((x0 + 0.3 * (x1 - x0), y0 + 0.3 * (y1 - y0)))
        if len(origins) == 80:
            break
    rng = np.random.default_rng(1)
    for a, b in rng.integers(0, len(lon), (80, 2)):
        origins.append((float(lon[a]) + 1e-4, float(lat[a])))
        destinations.append((float(lon[b]), float(lat[b]) + 1e-4))
    return origins, destinations


@pytest.mark.parametrize("model", ["freeflow", "freeflow-turns", "shipped"])
def test_targeted_and_whole_trees_give_the_same_bits(bundled_graph_dir, model):
    model_dir = SHIPPED_ETA if model == "shipped" else model
    targeted = Predictor.load(bundled_graph_dir, model_dir)
    whole = Predictor.load(bundled_graph_dir, model_dir, cache_mb=512)
    origins, destinations = _pairs(targeted.graph)
    first = targeted.eta_pairs(origins, destinations, DEPARTURE)
    assert targeted.stats["targeted_runs"] > 0 and targeted.stats["widened_runs"] == 0
    bucket, _ = whole.run_key(DEPARTURE)
    times = whole.model.segment_times_s(bucket)
    roots = {leg.key for point in whole.snap(origins) for leg in whole._starts(point, times)}
    whole._trees(sorted(roots), bucket, whole=True)  # every root's whole-graph tree cached
    second = whole.eta_pairs(origins, destinations, DEPARTURE)
    assert whole.stats["targeted_runs"] == 0
    answered = np.isfinite(first.durations_s)
    assert answered.sum() > 150
    np.testing.assert_array_equal(np.isfinite(second.durations_s), answered)
    assert first.distances_m[answered].tobytes() == second.distances_m[answered].tobytes()
    if model == "shipped":
        # the learned model's read-out of a whole run and of a targeted one may round the
        # last bit differently (models.eta.model); batch scoring isolates its runs for that
        np.testing.assert_allclose(second.durations_s, first.durations_s, rtol=1e-13)
    else:
        assert first.durations_s.tobytes() == second.durations_s.tobytes()


def test_isolated_predictor_starts_from_an_empty_cache(bundled_graph_dir):
    predictor = Predictor.load(bundled_graph_dir)
    origins, destinations = _pairs(predictor.graph)
    predictor.eta_pairs(origins[:5], destinations[:5])
    own = predictor.isolated()
    assert len(predictor._cache) > 0 and len(own._cache) == 0 and own.stats["runs"] == 0
    again = own.eta_pairs(origins[:5], destinations[:5])
    assert own.stats["runs"] > 0 and own.model is predictor.model
    np.testing.assert_array_equal(again.distances_m,
                                  predictor.eta_pairs(origins[:5], destinations[:5]).distances_m)
