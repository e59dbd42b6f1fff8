"""``nareta transfer``: the shipped Baltimore model made for another city, explicitly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data_pipeline.road_graph import RoadGraph
from models.eta.model import EtaModel
from nareta.artifacts import MANIFEST_NAME
from nareta.defaults import SHIPPED_MODEL
from nareta.errors import ArtifactError
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def helsinki_graph(clipped_osm, tmp_path_factory):
    from data_pipeline.ingest import ingest_osm

    out = tmp_path_factory.mktemp("graphs") / "helsinki"
    ingest_osm(clipped_osm).graph.save(out)
    return out


def test_transfer_writes_a_model_for_the_other_graph(helsinki_graph, bundled_graph, tmp_path):
    out = tmp_path / "eta_helsinki"
    result = run_cli("transfer", "--model", str(SHIPPED_MODEL), "--graph", str(helsinki_graph),
                     "--out", str(out), "--timezone", "Europe/Helsinki")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    graph = RoadGraph.load(helsinki_graph)
    source = json.loads((SHIPPED_MODEL / MANIFEST_NAME).read_text())
    record = manifest["transferred_from"]
    assert manifest["graph_identity"] == record["to_graph_identity"] == graph.identity
    assert record["graph_identity"] == source["graph_identity"]
    assert record["model"] == str(SHIPPED_MODEL) and manifest["config"]["timezone"] == (
        "Europe/Helsinki")
    # the same encoder and decoder as the source model applied to this graph
    transferred = EtaModel.load(out, graph)
    direct = EtaModel.load(SHIPPED_MODEL, graph, allow_other_graph=True)
    np.testing.assert_allclose(transferred.segment_times_s(30), direct.segment_times_s(30))
    # it answers queries on that graph, and is refused on the training graph
    eta = run_cli("eta", "--graph", str(helsinki_graph), "--model", str(out),
                  "--origin=24.938,60.166", "--destination=24.943,60.170")
    assert eta.returncode == 0, eta.stderr
    assert json.loads(eta.stdout)["eta_s"] > 0
    with pytest.raises(ArtifactError, match="trained on graph"):
        EtaModel.load(out, bundled_graph)


def test_transfer_refuses_what_it_cannot_do(helsinki_graph, bundled_graph_dir, tmp_path):
    same = run_cli("transfer", "--model", str(SHIPPED_MODEL), "--graph", str(bundled_graph_dir),
                   "--out", str(tmp_path / "a"))
    assert same.returncode == 2 and "already" in same.stderr
    zone = run_cli("transfer", "--model", str(SHIPPED_MODEL), "--graph", str(helsinki_graph),
                   "--out", str(tmp_path / "b"), "--timezone", "Mars/Olympus")
    assert zone.returncode == 2 and "IANA" in zone.stderr
    not_a_model = run_cli("transfer", "--model", str(helsinki_graph), "--graph",
                          str(helsinki_graph), "--out", str(tmp_path / "c"))
    assert not_a_model.returncode == 2 and "expected kind 'eta_model'" in not_a_model.stderr
    assert not any((tmp_path / name).exists() for name in "abc")
