"""``nareta score`` on real Dask clusters: a LocalCluster via the CLI, an external
scheduler via the Python function, and resuming after a simulated kill."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

from batch.output import MANIFEST_NAME, PLAN_NAME
from batch.score import score_table
from models.inference.predictor import Predictor
from nareta.errors import ArtifactError, InputError, NaretaError, OutputExistsError
from tests.batch.conftest import BAD_ROWS
from tests.conftest import run_cli

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def scheduler_address():
    """A separate cluster: its scheduler is "external" to score_table."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=logging.ERROR) as cluster:
        yield cluster.scheduler_address


def _check_against_eta(output, graph_dir, input_frame):
    scored = pd.read_parquet(output).sort_values("input_row").reset_index(drop=True)
    assert scored["input_row"].tolist() == list(range(len(input_frame)))
    assert scored["trip_id"].tolist() == input_frame["trip_id"].tolist()
    by_trip = scored.set_index("trip_id")
    for trip_id, status in BAD_ROWS.items():
        if trip_id in by_trip.index:
            assert by_trip.loc[trip_id, "status"] == status, trip_id
    good = scored[scored["status"] == "ok"]
    assert len(good) == len(scored) - sum(t in by_trip.index for t in BAD_ROWS)
    predictor = Predictor.load(graph_dir)
    for row in good.itertuples():
        single = predictor.eta((float(row.origin_lon), float(row.origin_lat)),
                               (row.destination_lon, row.destination_lat))
        assert row.eta_s == pytest.approx(single.eta_s, rel=1e-12, abs=1e-9)
        assert row.distance_m == pytest.approx(single.distance_m, rel=1e-12, abs=1e-9)
    return scored


def test_cli_on_a_local_cluster(tmp_path, od_csv, bundled_graph_dir):
    output = tmp_path / "out.parquet"
    result = run_cli("score", "--input", str(od_csv), "--output", str(output), "--graph",
                     str(bundled_graph_dir), "--model", "freeflow", "--workers", "2",
                     "--partition-rows", "60",
                     "--departure-time", "2024-05-01T08:00", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "300 OD pairs in 5 parts" in result.stdout
    assert sorted(p.name for p in output.iterdir()) == [
        MANIFEST_NAME, PLAN_NAME, *(f"part-{i:05d}.parquet" for i in range(5))]
    _check_against_eta(output, bundled_graph_dir, pd.read_csv(od_csv))
    manifest = json.loads((output / MANIFEST_NAME).read_text())
    assert manifest["rows"] == 300 and manifest["seed"] is None
    assert manifest["status_counts"] == {"invalid_coordinates": 5,
                                         "invalid_departure_time": 1, "no_segment": 2,
                                         "ok": 292}
    assert {"dask", "distributed", "numpy"} <= set(manifest["library_versions"])

    again = run_cli("score", "--input", str(od_csv), "--output", str(output), "--graph",
                    str(bundled_graph_dir), "--quiet")
    assert again.returncode == 2
    assert "already exists; pass --resume" in again.stderr


def test_external_scheduler(tmp_path, od_parquet, bundled_graph_dir, scheduler_address):
    output = tmp_path / "out.parquet"
    report = score_table(od_parquet, output, graph_dir=bundled_graph_dir,
                         scheduler=scheduler_address, partition_rows=100, progress=False)
    assert (report.rows, report.partitions, report.partitions_skipped) == (299, 3, 0)
    _check_against_eta(output, bundled_graph_dir, pd.read_parquet(od_parquet))
    # The tasks ran on that cluster's workers, each of which loaded the Predictor once.
    with distributed.Client(scheduler_address) as client:
        loads = client.run(_predictor_loads)
    assert len(loads) == 2 and all(misses == 1 for misses in loads.values())


def _predictor_loads() -> int:
    from batch.worker import load_predictor

    return load_predictor.cache_info().misses


def test_resume_redoes_only_missing_parts(tmp_path, od_parquet, bundled_graph_dir,
                                          scheduler_address):
    output = tmp_path / "out.parquet"
    options = dict(graph_dir=bundled_graph_dir, scheduler=scheduler_address,
                   partition_rows=40, progress=False)
    first = score_table(od_parquet, output, **options)
    assert first.partitions == 8
    before = pd.read_parquet(output).sort_values("input_row").reset_index(drop=True)
    # A job killed mid-way: parts 2 and 5 never written, part 6 half-written to its temp
    # name, no manifest yet.
    (output / "part-00002.parquet").unlink()
    (output / "part-00005.parquet").unlink()
    (output / "part-00006.parquet").rename(output / ".part-00006.abc123.tmp")
    (output / MANIFEST_NAME).unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in output.glob("part-*.parquet")}

    with pytest.raises(OutputExistsError, match="--resume"):
        score_table(od_parquet, output, **options)
    resumed = score_table(od_parquet, output, resume=True, **options)
    assert (resumed.partitions, resumed.partitions_skipped) == (8, 5)
    assert {p.name: p.stat().st_mtime_ns for p in output.glob("part-*.parquet")
            if p.name in kept} == kept  # finished parts untouched
    assert not list(output.glob(".part-*"))
    assert (output / MANIFEST_NAME).is_file()
    after = pd.read_parquet(output).sort_values("input_row").reset_index(drop=True)
    pd.testing.assert_frame_equal(before, after)

    # Resuming a finished job does nothing; a different plan is refused; --force restarts.
    assert score_table(od_parquet, output, resume=True, **options).partitions_skipped == 8
    with pytest.raises(InputError, match="different input"):
        score_table(od_parquet, output, resume=True, **{**options, "partition_rows": 50})
    assert score_table(od_parquet, output, force=True, **options).partitions_skipped == 0


def test_resume_checks_part_row_counts(tmp_path, od_parquet, bundled_graph_dir):
    output = tmp_path / "out.parquet"
    options = dict(graph_dir=bundled_graph_dir, workers=0, partition_rows=100,
                   progress=False)
    score_table(od_parquet, output, **options)
    pd.read_parquet(output / "part-00001.parquet").iloc[:10].to_parquet(
        output / "part-00001.parquet")  # a truncated part from some other tool
    assert score_table(od_parquet, output, resume=True, **options).partitions_skipped == 2


def test_bad_artifacts_and_arguments(tmp_path, od_csv, bundled_graph_dir):
    with pytest.raises(ArtifactError, match="not a directory"):
        score_table(od_csv, tmp_path / "a", graph_dir=tmp_path / "nope", workers=0)
    with pytest.raises(ArtifactError, match="manifest"):
        score_table(od_csv, tmp_path / "b", graph_dir=bundled_graph_dir,
                    model_dir=tmp_path, workers=0)
    with pytest.raises(InputError, match="--departure-time"):
        score_table(od_csv, tmp_path / "c", graph_dir=bundled_graph_dir, workers=0,
                    departure_time="tomorrow")
    assert not any((tmp_path / name).exists() for name in "abc")

    result = run_cli("score", "--input", str(tmp_path / "none.csv"), "--output",
                     str(tmp_path / "d"), "--graph", str(bundled_graph_dir))
    assert result.returncode == 2
    assert "none.csv: no such file" in result.stderr


def test_bad_scheduler_address_leaves_nothing(tmp_path, od_csv, bundled_graph_dir):
    with pytest.raises(NaretaError, match="cannot connect to a Dask scheduler"):
        score_table(od_csv, tmp_path / "out", graph_dir=bundled_graph_dir,
                    scheduler="tcp://127.0.0.1", progress=False)
    assert not (tmp_path / "out").exists()


def test_empty_input(tmp_path, bundled_graph_dir):
    path = tmp_path / "empty.csv"
    path.write_text("origin_lon,origin_lat,destination_lon,destination_lat\n")
    report = score_table(path, tmp_path / "out", graph_dir=bundled_graph_dir, workers=0)
    assert (report.rows, report.partitions) == (0, 0)
    assert (tmp_path / "out" / MANIFEST_NAME).is_file()
