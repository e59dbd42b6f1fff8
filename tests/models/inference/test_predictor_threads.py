"""The shipped ETA model served from many threads at once, over many departure buckets:
every answer equals the single-threaded one, and the run LRU stays within NARETA_CACHE_MB.

The model's per-bucket caches (encoder latents, search plans: models.eta.model) and the
Predictor's run LRU are shared by the server's thread pool; 32 threads asking 24 buckets
in different orders make them miss, evict and refill concurrently."""

from __future__ import annotations

import datetime as dt
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from models.inference.predictor import Predictor
from service.app import load_predictor
from service.config import Settings
from tests.conftest import REPO

SHIPPED_ETA = REPO / "artifacts_shipped" / "eta_baltimore"
THREADS = 32
BUCKETS = 24  # one departure per hour of a weekday: 24 distinct buckets
CACHE_MB = 0.25  # a few dozen targeted runs: the LRU evicts throughout the load
# (origin, destination) pairs in the bundled extract (lon, lat)
PAIRS = [((-76.61, 39.29), (-76.55, 39.30)),
         ((-76.56, 39.28), (-76.60, 39.30)),
         ((-76.58, 39.31), (-76.61, 39.29))]
MONDAY = dt.datetime(2024, 5, 6)


def _answer(predictor: Predictor, kind: str, pair: int, hour: int):
    origin, destination = PAIRS[pair]
    departure = MONDAY + dt.timedelta(hours=hour, minutes=7)
    if kind == "route":
        result = predictor.route(origin, destination, departure)
        return result.eta_s, result.distance_m, tuple(result.segments)
    result = predictor.eta(origin, destination, departure)
    return result.eta_s, result.distance_m


def _queries() -> list[tuple[str, int, int]]:
    return [(kind, pair, hour) for kind in ("eta", "route") for pair in range(len(PAIRS))
            for hour in range(BUCKETS)]


@pytest.fixture(scope="module")
def reference(bundled_graph_dir) -> dict:
    """Every query answered one at a time by a Predictor of its own."""
    predictor = Predictor.load(bundled_graph_dir, SHIPPED_ETA)
    assert len({predictor.model.time_bucket(MONDAY + dt.timedelta(hours=h))
                for h in range(BUCKETS)}) == BUCKETS
    return {query: _answer(predictor, *query) for query in _queries()}


def test_threads_over_many_buckets_answer_as_one_thread(bundled_graph_dir, reference,
                                                        monkeypatch):
    monkeypatch.setenv("NARETA_GRAPH_DIR", str(bundled_graph_dir))
    monkeypatch.setenv("NARETA_MODEL_DIR", str(SHIPPED_ETA))
    monkeypatch.setenv("NARETA_CACHE_MB", str(CACHE_MB))
    predictor = load_predictor(Settings())  # as `nareta serve` builds it, cold caches
    bound = int(CACHE_MB * 2**20)
    assert predictor._cache_bytes == bound
    queries = _queries()
    over_bound: list[int] = []
    stop = threading.Event()

    def watch() -> None:  # the LRU's bytes, read under its lock throughout the load
        while not stop.is_set():
            with predictor._lock:
                held = sum(tree.nbytes for tree in predictor._cache.values())
                assert held == predictor._cached_bytes
                if held > bound and len(predictor._cache) > 1:
                    over_bound.append(held)
            stop.wait(0.005)

    def client(seed: int) -> list:
        order = random.Random(seed).sample(queries, len(queries) // 2)  # a shuffled half
        return [(query, _answer(predictor, *query)) for query in order]

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(THREADS) as pool:
            answers = [a for batch in pool.map(client, range(THREADS)) for a in batch]
    finally:
        stop.set()
        watcher.join()
    assert len(answers) == THREADS * len(queries) // 2
    wrong = [(query, got, reference[query]) for query, got in answers
             if got != reference[query]]
    assert not wrong, f"{len(wrong)} answers differ from one thread's, e.g. {wrong[:3]}"
    assert not over_bound, f"run LRU held {max(over_bound)} B over its {bound} B bound"
    assert predictor.stats["runs"] > len(PAIRS) * BUCKETS  # evicted runs were run again
    assert np.isfinite([answer[0] for answer in reference.values()]).all()
