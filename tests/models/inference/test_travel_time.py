"""The travel-time model protocol: capabilities declared by every model and read by the
Predictor; dijkstra_tree on graphs large enough that node-pair keys overflow 32 bits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.baselines.freeflow import FreeFlowTurnModel
from models.baselines.learned import LearnedScalarBaseline
from models.execution.trees import dijkstra_tree
from models.inference.predictor import Predictor
from models.inference.registry import load_model
from nareta.defaults import load_travel_time_model

SHIPPED_ETA = Path(__file__).resolve().parents[3] / "artifacts_shipped" / "eta_baltimore"


class _PathGraph:
    """A directed path 0 -> 1 -> ... -> n-1: just what dijkstra_tree reads."""

    def __init__(self, n: int):
        self.num_nodes = n
        self.arrays = {"edge_source": np.arange(n - 1, dtype=np.int64),
                       "edge_target": np.arange(1, n, dtype=np.int64),
                       "node_x_m": np.arange(n, dtype=np.float64) * 10.0,
                       "node_y_m": np.zeros(n), "length_m": np.full(n - 1, 10.0)}

    def __getitem__(self, name):
        return self.arrays[name]

    def to_scipy(self, weights):
        from scipy.sparse import coo_matrix

        return coo_matrix((weights, (self["edge_source"], self["edge_target"])),
                          shape=(self.num_nodes, self.num_nodes)).tocsr()


def test_parents_beyond_int32_keys():
    n = 50_000  # predecessor * n exceeds 2**31 for the last nodes
    graph = _PathGraph(n)
    run = dijkstra_tree(graph, np.ones(n - 1), np.array([0]))
    # Node k is reached by segment k-1 (which ends at k).
    assert run.parent_segment[0, 0] == -1
    np.testing.assert_array_equal(run.parent_segment[0, 1:], np.arange(n - 1))
    assert run.node_time_s[0, -1] == n - 1


class _Recording(FreeFlowTurnModel):
    """Free flow on turns, recording the options each run_from call was given."""

    def __init__(self, graph, *, supports_targets: bool):
        super().__init__(graph)
        self.supports_targets = supports_targets
        self.options: list[list[str]] = []

    def run_from(self, origins, bucket, **options):
        self.options.append(sorted(options))
        return super().run_from(origins, bucket, **options)


def test_predictor_reads_declared_capabilities(bundled_graph):
    """Targets go to a model that declares it takes them and never to one that does not,
    whatever its run_from accepts; the answers are the same."""
    lon, lat = bundled_graph["node_lon"], bundled_graph["node_lat"]
    a, b = np.random.default_rng(3).choice(bundled_graph.num_nodes, 2, replace=False)
    answers = {}
    for declared, expected in ((True, ["pointers", "targets"]), (False, [])):
        model = _Recording(bundled_graph, supports_targets=declared)
        answers[declared] = Predictor(bundled_graph, model).eta((lon[a], lat[a]),
                                                               (lon[b], lat[b])).eta_s
        assert model.options and all(options == expected for options in model.options)
    assert answers[True] == pytest.approx(answers[False], rel=1e-12)


def test_models_declare_the_protocol_capabilities(bundled_graph):
    """Every model the resolver names, the shipped ETA model and the learned scalar declare
    what the Predictor reads instead of probing them."""
    models = [load_travel_time_model(name, bundled_graph)
              for name in ("freeflow", "freeflow-turns", "live-scalar")]
    models.append(load_model(SHIPPED_ETA, bundled_graph))
    models.append(LearnedScalarBaseline(np.ones(bundled_graph.num_segments),
                                        np.zeros(bundled_graph.num_turns),
                                        graph=bundled_graph))
    declared = {model.name: (model.graph_mode, model.supports_targets, model.uses_traffic,
                             model.timezone) for model in models}
    assert declared == {
        "freeflow": ("node", True, False, None),
        "freeflow-turns": ("turn", True, False, None),
        "live-scalar": ("turn", True, True, None),
        "nar_eta": ("turn", True, True, "America/New_York"),
        "learned_scalar": ("turn", False, False, None),
    }
