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
    from tests.models.test_eta import make_rule_trips

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
