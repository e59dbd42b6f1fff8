"""``nareta train`` under torchrun (2 processes, gloo) matches a single-process run."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors.torch import load_file

from tests.conftest import REPO, run_cli
from tests.models.conftest import SHIPPED_PROCESSOR


@pytest.fixture(scope="module")
def trips_file(rule_trips_module, tmp_path_factory):
    path = tmp_path_factory.mktemp("ddp") / "trips.parquet"
    columns = ["origin_lon", "origin_lat", "destination_lon", "destination_lat",
               "departure_time", "duration_s"]
    rule_trips_module[columns].head(48).to_parquet(path)
    return path


@pytest.fixture(scope="module")
def rule_trips_module(bundled_graph):
    from tests.models.eta.test_eta import make_rule_trips

    return make_rule_trips(bundled_graph, count=60)


def test_two_processes_match_one(bundled_graph_dir, trips_file, tmp_path):
    common = ["train", "--graph", str(bundled_graph_dir), "--trips", str(trips_file),
              "--processor", str(SHIPPED_PROCESSOR), "--epochs", "2", "--holdout-hours", "0",
              "--no-progress", "--seed", "3"]
    single = run_cli(*common, "--out", str(tmp_path / "single"))
    assert single.returncode == 0, single.stderr
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    double = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "nareta.cli", *common, "--out", str(tmp_path / "double")],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert double.returncode == 0, double.stderr[-3000:]
    one = load_file(str(tmp_path / "single" / "eta.safetensors"))
    two = load_file(str(tmp_path / "double" / "eta.safetensors"))
    assert one.keys() == two.keys()
    moved = False
    for name in one:
        np.testing.assert_allclose(two[name].numpy(), one[name].numpy(), rtol=1e-3, atol=1e-4)
        moved |= bool(np.abs(one[name].numpy()).sum() > 0)
    assert moved
    import json

    manifest = json.loads((tmp_path / "double" / "manifest.json").read_text())
    assert manifest["training"]["world_size"] == 2


#: one rank of fit_eta under torchrun; rank 0 has a time budget spent by its first step,
#: rank 1 one it never reaches (its clock disagrees), so only rank 0's decision can stop
#: both after the same step
STOP_WORKER = """
import json, os, sys
from pathlib import Path
from data_pipeline.road_graph import RoadGraph
from data_pipeline.trips import read_trips, snap_trips
from models.eta.train import TrainConfig, fit_eta

graph_dir, trips, processor, out = sys.argv[1:5]
rank = int(os.environ["RANK"])
graph = RoadGraph.load(graph_dir)
frame = snap_trips(read_trips(Path(trips)), graph).frame
train = TrainConfig(seed=3, epochs=4, patience=10, batch_trips=8,
                    max_minutes=0.0 if rank == 0 else 60.0)
_, report = fit_eta(graph, frame, Path(processor), train=train, progress=False)
Path(out, f"rank{rank}.json").write_text(json.dumps(
    {"steps": report["steps"], "epochs": len(report["history"]),
     "validation": report["history"][-1]["validation"]}))
"""


def test_rank_zero_decides_when_training_stops(bundled_graph_dir, trips_file, tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(STOP_WORKER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone",
             "--nproc_per_node=2", str(worker), str(bundled_graph_dir), str(trips_file),
             str(SHIPPED_PROCESSOR), str(tmp_path)],
            capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    except subprocess.TimeoutExpired as exc:  # ranks out of step: a collective never met
        pytest.fail(f"distributed training hung past the time budget: {exc}")
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # rank 0's budget ends the first epoch after its first step, on both ranks
    assert ranks[0] == ranks[1]
    assert ranks[0]["steps"] == 1 and ranks[0]["epochs"] == 1
