"""``nareta score --traffic``: every row priced with the feed's state at its departure
(the same answers as the Predictor with that snapshot), ``traffic_as_of`` per row, the
snapshot in the plan and the manifest, in one process and on a Dask worker."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from batch.output import MANIFEST_NAME
from batch.score import score_table
from data_pipeline.traffic import segment_feed_rows, write_feed
from models.inference.live import TrafficStore
from models.inference.predictor import Predictor
from nareta.errors import InputError
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def job(tmp_path_factory, clipped_osm):
    """(graph dir, feed path, OD table path): the clipped Helsinki graph, every segment at
    half its free-flow speed in 08:00-08:10, and 40 OD pairs departing 07:58 .. 09:00."""
    from data_pipeline.ingest import ingest_osm

    root = tmp_path_factory.mktemp("score-traffic")
    graph = ingest_osm(clipped_osm).graph
    graph.save(root / "graph")
    free_kph = graph["length_m"] / graph["free_flow_s"] * 3.6
    segments = np.tile(np.arange(graph.num_segments), 2)
    stamps = [pd.Timestamp(w) for w in ("2026-11-18T08:00", "2026-11-18T08:05")
              for _ in range(graph.num_segments)]
    write_feed(pd.DataFrame(segment_feed_rows(graph, segments, free_kph[segments] / 2, stamps,
                                              np.ones(len(segments)))), root / "feed.parquet")
    rng = np.random.default_rng(0)
    lon, lat = graph["path_lon"], graph["path_lat"]
    origin, destination = rng.integers(0, len(lon), 40), rng.integers(0, len(lon), 40)
    departures = pd.Timestamp("2026-11-18T07:58") + pd.to_timedelta(
        np.linspace(0, 62 * 60, 40), unit="s")
    frame = pd.DataFrame({"trip_id": [f"t{i}" for i in range(40)],
                          "origin_lon": lon[origin], "origin_lat": lat[origin],
                          "destination_lon": lon[destination],
                          "destination_lat": lat[destination],
                          "departure_time": departures.strftime("%Y-%m-%dT%H:%M:%S")})
    frame.to_parquet(root / "od.parquet")
    return root / "graph", root / "feed.parquet", root / "od.parquet"


def _check(output, graph_dir, feed):
    scored = pd.read_parquet(output).sort_values("input_row").reset_index(drop=True)
    predictor = Predictor.load(graph_dir, "live-scalar", traffic=TrafficStore())
    snapshot, _ = predictor.traffic.load(predictor.graph, feed)
    predictor.set_traffic(snapshot)
    live = 0
    for row in scored.itertuples():
        if row.status != "ok":
            continue
        single = predictor.eta((row.origin_lon, row.origin_lat),
                               (row.destination_lon, row.destination_lat),
                               dt.datetime.fromisoformat(row.departure_time))
        assert row.eta_s == pytest.approx(single.eta_s, rel=1e-12, abs=1e-9)
        expected = (single.traffic.as_of.isoformat() if single.traffic.live else None)
        assert (None if pd.isna(row.traffic_as_of) else row.traffic_as_of) == expected
        live += single.traffic.live
    # 07:58 .. 08:04 have no ended window, 08:05 .. 08:39 do, later ones are past max age
    assert 0 < live < len(scored)
    manifest = json.loads((output / MANIFEST_NAME).read_text())
    assert manifest["traffic"]["snapshot"] == snapshot.key
    assert manifest["traffic"]["as_of"] == "2026-11-18T08:10:00"
    assert manifest["traffic"]["report"]["used"] == manifest["traffic"]["report"]["rows"]
    return scored, manifest


def test_score_with_a_feed_in_process(job, tmp_path):
    graph_dir, feed, od = job
    report = score_table(od, tmp_path / "out.parquet", graph_dir=graph_dir,
                         model_dir="live-scalar", traffic=feed, workers=0, partition_rows=7,
                         progress=False)
    assert report.rows == 40
    _check(tmp_path / "out.parquet", graph_dir, feed)
    # resuming with another feed is refused (the plan names the snapshot)
    other = pd.read_parquet(feed)
    other["speed_kph_mean"] *= 0.5
    write_feed(other, tmp_path / "other.parquet")
    with pytest.raises(InputError, match="different input"):
        score_table(od, tmp_path / "out.parquet", graph_dir=graph_dir,
                    model_dir="live-scalar", traffic=tmp_path / "other.parquet", workers=0,
                    partition_rows=7, resume=True, progress=False)


def test_score_with_a_feed_on_dask(job, tmp_path):
    pytest.importorskip("distributed")
    graph_dir, feed, od = job
    result = run_cli("score", "--input", str(od), "--output", str(tmp_path / "out.parquet"),
                     "--graph", str(graph_dir), "--model", "live-scalar", "--traffic",
                     str(feed), "--workers", "1", "--partition-rows", "10", "--quiet")
    assert result.returncode == 0, result.stderr
    _check(tmp_path / "out.parquet", graph_dir, feed)


def test_score_refuses_a_feed_it_cannot_use(job, tmp_path):
    graph_dir, feed, od = job
    result = run_cli("score", "--input", str(od), "--output", str(tmp_path / "a.parquet"),
                     "--graph", str(graph_dir), "--traffic", str(feed), "--workers", "0")
    assert result.returncode == 2 and "takes no live traffic" in result.stderr
    foreign = pd.read_parquet(feed)
    foreign["osm_end_node_id"] += 10**11
    write_feed(foreign, tmp_path / "foreign.parquet")
    result = run_cli("score", "--input", str(od), "--output", str(tmp_path / "b.parquet"),
                     "--graph", str(graph_dir), "--model", "live-scalar", "--traffic",
                     str(tmp_path / "foreign.parquet"), "--workers", "0")
    assert result.returncode == 2 and "no usable row" in result.stderr
    assert not (tmp_path / "b.parquet").exists()
