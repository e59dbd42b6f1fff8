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

from batch.scoring import score_frame
from models.predictor import Predictor


@functools.lru_cache(maxsize=4)
def load_predictor(graph_dir: str, model_dir: str | None) -> Predictor:
    """The process's Predictor for these artifacts (loaded on first use)."""
    return Predictor.load(graph_dir, model_dir)


class PredictorPlugin(WorkerPlugin):
    """Loads the Predictor on every worker, present and future."""

    def __init__(self, graph_dir: str, model_dir: str | None):
        self.graph_dir = graph_dir
        self.model_dir = model_dir
        self.name = f"nareta-predictor-{graph_dir}-{model_dir}"

    def setup(self, worker) -> None:
        load_predictor(self.graph_dir, self.model_dir)


def score_partition(frame: pd.DataFrame, graph_dir: str, model_dir: str | None,
                    default_departure_time: dt.datetime | None,
                    origins_per_batch: int) -> pd.DataFrame:
    """One Dask task: score a partition with this worker's Predictor."""
    return score_frame(load_predictor(graph_dir, model_dir), frame,
                       default_departure_time=default_departure_time,
                       origins_per_batch=origins_per_batch)
