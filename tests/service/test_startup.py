"""``nareta serve`` start-up failures: one clear line on stderr and exit 2, as every other
command (not a traceback inside a JSON log line)."""

from __future__ import annotations

import socket

from tests.conftest import REPO, run_cli
from tests.graph_fixtures import road_graph_from_paths

SHIPPED_MODEL = REPO / "artifacts_shipped" / "eta_baltimore"


def _one_line_error(result, *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nareta serve: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_bad_artifacts_stop_serve_with_one_line(tmp_path):
    empty = tmp_path / "not_a_graph"
    empty.mkdir()
    _one_line_error(run_cli("serve", "--graph", str(empty), "--port", "0"), str(empty))

    # a model trained on another graph than the one served
    line = {1: (0.0, 0.0), 2: (0.001, 0.0)}
    other = tmp_path / "other_graph"
    road_graph_from_paths(line, [((1, 2), 10), ((2, 1), 10)]).save(other)
    _one_line_error(run_cli("serve", "--graph", str(other), "--model", str(SHIPPED_MODEL),
                            "--port", "0"), "trained on graph")


def test_busy_port_stops_serve_with_one_line(bundled_graph_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _one_line_error(run_cli("serve", "--graph", str(bundled_graph_dir), "--port",
                                str(port)), f"cannot listen on 127.0.0.1:{port}")
