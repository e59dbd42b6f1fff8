"""benchmarks/processor_ablation.py's caches: a trained arm's predictions are reused only for
the same model stamp, trips, live feed and code, so a rerun after retraining one arm scores only it."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ablation():
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location(
        "processor_ablation", REPO / "benchmarks" / "processor_ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _trips(durations):
    return pd.DataFrame({"trip_id": [f"t{i}" for i in range(len(durations))],
                         "duration_s": durations,
                         "route": [np.array([1, 2, i]) for i in range(len(durations))]})


def test_predictions_are_cached_per_model_stamp_trips_and_city(ablation, tmp_path):
    args = type("Args", (), {"batch_trips": 16})()
    (tmp_path / "settings.json").write_text(json.dumps({"arm": "learned", "seed": 0}))
    calls = []

    def predict(values):
        def run():
            calls.append(values)
            return np.array(values)
        return run

    sub = _trips([10.0, 20.0])
    key = ablation.sample_key(sub, tmp_path, "baltimore", "feed", args)
    first = ablation.cached_predictions(tmp_path, "baltimore", key, predict([1.0, 2.0]))
    again = ablation.cached_predictions(tmp_path, "baltimore", key, predict([9.0, 9.0]))
    np.testing.assert_array_equal(first, again)
    assert calls == [[1.0, 2.0]]  # the second call read the cache
    # another route, city or feed, or a retrained model (new stamp): a new key, recomputed
    moved = _trips([10.0, 20.0])
    moved.at[1, "route"] = np.array([1, 2, 7])
    assert ablation.sample_key(moved, tmp_path, "baltimore", "feed", args) != key
    assert ablation.sample_key(sub, tmp_path, "harrisburg", "feed", args) != key
    assert ablation.sample_key(sub, tmp_path, "baltimore", "other feed", args) != key
    (tmp_path / "settings.json").write_text(json.dumps({"arm": "learned", "seed": 0,
                                                       "processor_sha256": "ab"}))
    stale = ablation.sample_key(sub, tmp_path, "baltimore", "feed", args)
    assert stale != key
    fresh = ablation.cached_predictions(tmp_path, "baltimore", stale, predict([3.0, 4.0]))
    np.testing.assert_array_equal(fresh, [3.0, 4.0])
    assert not list(tmp_path.glob(".predictions_*"))  # written atomically


def test_only_the_learned_arms_stamp_holds_the_processor_checksum(ablation):
    args = type("Args", (), {"epochs": 1, "train_minutes": 15.0, "batch_trips": 16,
                             "max_length_m": 2000.0})()
    learned = ablation._settings("learned", 0, args, 1000, "feed", "sha")
    assert learned["processor_sha256"] == "sha"
    for arm in ("random", "tropical", "none"):  # their models do not depend on it
        assert "processor_sha256" not in ablation._settings(arm, 0, args, 1000, "feed", "sha")
