"""What runs on a Dask worker: the Predictor, loaded once per worker process.

The task sends only artifact paths, never a pickled Predictor. :func:`load_predictor` caches
one Predictor per (graph, model) in the worker process; :class:`PredictorPlugin` loads it
when the worker joins, so a worker that cannot read the artifacts fails at registration
with the artifact's error instead of on the first partition.
"""

from __future__ import annotations

import datetime as dt
import functools

import pandas as pd
from distributed.diagnostics.plugin import WorkerPlugin

from batch.scoring import install_traffic, score_frame
from models.inference.predictor import Predictor


@functools.lru_cache(maxsize=4)
def load_predictor(graph_dir: str, model_dir: str | None, traffic: str | None = None,
                   traffic_key: str | None = None) -> Predictor:
    """The process's Predictor for these artifacts (loaded on first use), with the traffic
    snapshot of ``traffic`` loaded once; it must be the one the job was planned with."""
    predictor = Predictor.load(graph_dir, model_dir)
    if traffic is not None:
        install_traffic(predictor, traffic, expected_key=traffic_key)
    return predictor


class PredictorPlugin(WorkerPlugin):
    """Loads the Predictor on every worker, present and future."""

    def __init__(self, graph_dir: str, model_dir: str | None, traffic: str | None = None,
                 traffic_key: str | None = None):
        self.graph_dir = graph_dir
        self.model_dir = model_dir
        self.traffic, self.traffic_key = traffic, traffic_key
        self.name = f"nareta-predictor-{graph_dir}-{model_dir}-{traffic_key}"

    def setup(self, worker) -> None:
        load_predictor(self.graph_dir, self.model_dir, self.traffic, self.traffic_key)


def score_partition(frame: pd.DataFrame, graph_dir: str, model_dir: str | None,
                    default_departure_time: dt.datetime | None,
                    origins_per_batch: int, traffic: str | None = None,
                    traffic_key: str | None = None) -> pd.DataFrame:
    """One Dask task: score a partition with this worker's Predictor."""
    return score_frame(load_predictor(graph_dir, model_dir, traffic, traffic_key), frame,
                       default_departure_time=default_departure_time,
                       origins_per_batch=origins_per_batch)
