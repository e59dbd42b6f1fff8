"""The Predictor's run cache, directly: concurrent identical requests share one model run
(coalescing), a failed run does not strand the requests waiting on it, and the LRU keeps
within its count and byte bounds, evicting the least recently used run first."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from models.baselines.freeflow import FreeFlowModel
from models.inference.predictor import Predictor

THREADS = 8
ORIGIN, DESTINATION = (-76.61, 39.29), (-76.55, 39.30)  # in the bundled extract (lon, lat)


class _SlowModel(FreeFlowModel):
    """Free flow whose runs are counted and, with ``expected`` callers, slow: each run waits
    until that many callers have asked for segment times (every query does so just before
    it asks for its runs), then a little longer, so every caller is inside the Predictor
    while the run is in flight. ``fail_first``: the first run raises after that wait."""

    supports_targets = False  # whole runs only: one run_from call per batch of roots

    def __init__(self, graph, *, expected: int = 0, fail_first: bool = False):
        super().__init__(graph)
        self.expected, self.fail_first = expected, fail_first
        self.lock = threading.Lock()
        self.callers = 0
        self.runs: list[list[int]] = []  # the roots of each run_from call

    def segment_times_s(self, bucket):
        with self.lock:
            self.callers += 1
        return super().segment_times_s(bucket)

    def run_from(self, origins, bucket):
        if self.expected:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with self.lock:
                    if self.callers >= self.expected:
                        break
                time.sleep(0.01)
            time.sleep(0.3)  # the other callers reach the run's in-flight marker meanwhile
        with self.lock:
            self.runs.append(sorted(int(o) for o in origins))
            failing = self.fail_first and len(self.runs) == 1
        if failing:
            raise RuntimeError("model run failed")
        return super().run_from(origins, bucket)


def _concurrently(function, count: int) -> list:
    """``function()`` from ``count`` threads released together; results or exceptions."""
    barrier = threading.Barrier(count)

    def call():
        barrier.wait(timeout=30)
        try:
            return function()
        except Exception as exc:  # noqa: BLE001 - the test inspects what each thread got
            return exc

    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(call) for _ in range(count)]
        return [future.result(timeout=120) for future in futures]


def test_concurrent_identical_requests_run_once(bundled_graph):
    model = _SlowModel(bundled_graph, expected=THREADS)
    predictor = Predictor(bundled_graph, model)
    answers = _concurrently(lambda: predictor.eta(ORIGIN, DESTINATION), THREADS)
    assert len(model.runs) == 1, model.runs  # one model run served every thread
    roots = model.runs[0]
    assert predictor.stats["runs"] == len(roots)
    # nobody found the run in the cache: every other thread waited on the one in flight
    assert predictor.stats["cache_hits"] == 0
    assert not predictor._in_flight
    reference = Predictor(bundled_graph, FreeFlowModel(bundled_graph)).eta(ORIGIN, DESTINATION)
    assert {(a.eta_s, a.distance_m) for a in answers} == {(reference.eta_s,
                                                           reference.distance_m)}


def test_waiters_recover_when_the_run_they_wait_on_fails(bundled_graph):
    model = _SlowModel(bundled_graph, expected=THREADS, fail_first=True)
    predictor = Predictor(bundled_graph, model)
    answers = _concurrently(lambda: predictor.eta(ORIGIN, DESTINATION), THREADS)
    failed = [a for a in answers if isinstance(a, Exception)]
    assert len(failed) == 1 and "model run failed" in str(failed[0])
    etas = {a.eta_s for a in answers if not isinstance(a, Exception)}
    assert len(etas) == 1 and np.isfinite(etas.pop())
    # the waiters ran again, among themselves coalesced to fewer runs than waiters
    assert 2 <= len(model.runs) < THREADS
    assert not predictor._in_flight


def _whole_tree_bytes(graph) -> int:
    return graph.num_nodes * (8 + 4 + 8)  # seconds f8, parent i4, metres f8 per node


def _run(predictor: Predictor, root: int) -> None:
    predictor._trees([root], 0, whole=True)


@pytest.fixture()
def counted(bundled_graph):
    """A fresh Predictor over free flow (whole runs), counting its model runs."""

    def make(**options) -> tuple[Predictor, _SlowModel]:
        model = _SlowModel(bundled_graph)
        return Predictor(bundled_graph, model, **options), model

    return make


def test_lru_keeps_the_count_bound_and_evicts_least_recently_used(counted):
    predictor, model = counted(cache_runs=3, cache_mb=1024)
    for root in (1, 2, 3):
        _run(predictor, root)
    _run(predictor, 1)  # a hit: 1 becomes the most recently used
    assert predictor.stats["cache_hits"] == 1 and len(model.runs) == 3
    _run(predictor, 4)  # over the bound: the least recently used (2) goes, not 1
    assert [root for root, _ in predictor._cache] == [3, 1, 4]
    _run(predictor, 1)
    assert len(model.runs) == 4  # still cached
    _run(predictor, 2)  # evicted: runs again, and evicts 3
    assert len(model.runs) == 5 and [root for root, _ in predictor._cache] == [4, 1, 2]


def test_lru_keeps_the_byte_bound(counted, bundled_graph):
    tree = _whole_tree_bytes(bundled_graph)
    predictor, model = counted(cache_runs=100, cache_mb=2.5 * tree / 2**20)
    for root in range(1, 6):
        _run(predictor, root)
        assert predictor._cached_bytes == sum(t.nbytes for t in predictor._cache.values())
        assert predictor._cached_bytes <= predictor._cache_bytes
    assert [root for root, _ in predictor._cache] == [4, 5]  # two whole trees fit
    assert all(t.nbytes == tree for t in predictor._cache.values())
    _run(predictor, 3)
    assert len(model.runs) == 6 and [root for root, _ in predictor._cache] == [5, 3]


def test_a_run_larger_than_the_byte_bound_is_kept_alone(counted, bundled_graph):
    predictor, model = counted(cache_runs=100, cache_mb=0.5 * _whole_tree_bytes(
        bundled_graph) / 2**20)
    _run(predictor, 1)
    _run(predictor, 2)
    assert [root for root, _ in predictor._cache] == [2]  # the newest, over the bound
    _run(predictor, 2)
    assert len(model.runs) == 2 and predictor.stats["cache_hits"] == 1
