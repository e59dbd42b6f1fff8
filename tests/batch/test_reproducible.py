"""Two runs of one ``nareta score`` job write the same bytes, one on a 2-worker Dask
cluster and one in a single process: a partition's answers do not depend on which worker
scored it or what that worker's run cache held (models.inference.predictor.Predictor.isolated).
Before, a root's second partition was answered from a whole-graph tree in one run and
from a targeted run in the other, which differ in the last bits (around-the-block loops'
metres, the learned model's seconds)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from batch.score import score_table
from models.baselines.routing import reverse_twins
from tests.conftest import REPO, run_cli

pytest.importorskip("distributed")
SHIPPED_ETA = REPO / "artifacts_shipped" / "eta_baltimore"


def loop_od_frame(graph, *, origins=8, rows_per_origin=40, seed=0):
    """A few origins on straight one-way segments, each with many rows (so it spans
    partitions), a third of them just behind the origin on its own segment."""
    twins = reverse_twins(graph)
    lon, lat = graph["path_lon"], graph["path_lat"]
    rng = np.random.default_rng(seed)
    one_way = [s for s in range(graph.num_segments)
               if twins[s] < 0 and graph.segment_path(s).stop - graph.segment_path(s).start == 2
               and graph["length_m"][s] >= 80]
    chosen = rng.choice(one_way, origins, replace=False)
    records = []
    for segment in chosen:
        piece = graph.segment_path(segment)
        (x0, x1), (y0, y1) = lon[piece], lat[piece]
        for i in range(rows_per_origin):
            if i % 3 == 0:
                share = rng.uniform(0.15, 0.45)  # behind the origin: around the block
                dx, dy = x0 + share * (x1 - x0), y0 + share * (y1 - y0)
            else:
                k = rng.integers(0, len(lon))
                dx, dy = lon[k], lat[k]
            records.append((x0 + 0.7 * (x1 - x0), y0 + 0.7 * (y1 - y0), dx, dy))
    frame = pd.DataFrame(records, columns=["origin_lon", "origin_lat", "destination_lon",
                                           "destination_lat"])
    frame.insert(0, "trip_id", [f"trip-{i}" for i in range(len(frame))])
    frame["departure_time"] = "2024-05-06T08:07:00"
    return frame

def _parts(output) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(output.glob("part-*.parquet"))}


@pytest.mark.parametrize("model", ["freeflow", "shipped"])
def test_runs_write_identical_bytes(tmp_path, bundled_graph, bundled_graph_dir, model):
    trips = tmp_path / "od.parquet"
    loop_od_frame(bundled_graph).to_parquet(trips, index=False)
    model_dir = str(SHIPPED_ETA) if model == "shipped" else "freeflow"
    options = {"partition_rows": 25, "origins_per_batch": 8}
    on_dask = run_cli("score", "--input", str(trips), "--output", str(tmp_path / "dask"),
                      "--graph", str(bundled_graph_dir), "--model", model_dir, "--workers",
                      "2", "--partition-rows", "25", "--origins-per-batch", "8", "--quiet")
    assert on_dask.returncode == 0, on_dask.stderr[-2000:]
    score_table(trips, tmp_path / "one", graph_dir=bundled_graph_dir, model_dir=model_dir,
                workers=0, progress=False, **options)
    first, second = _parts(tmp_path / "dask"), _parts(tmp_path / "one")
    assert len(first) == 13
    assert first == second
    scored = pd.read_parquet(tmp_path / "one")
    assert (scored["status"] == "ok").all() and np.isfinite(scored["eta_s"]).all()
