"""``nareta processor predict`` round trip on graphs written by plain numpy in a subprocess
(no project import), plus bad-input handling: one error line, exit 2, no output file."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.models.conftest import REPO

WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    rng = np.random.default_rng(0)
    arrays = {"num_graphs": np.array(3)}
    # graph 0: the hand-checked 4-node graph
    arrays.update(num_nodes_0=np.array(4), senders_0=np.array([0, 0, 1, 2, 1, 3]),
                  receivers_0=np.array([1, 2, 2, 3, 3, 0]),
                  weights_0=np.array([1.0, 4.0, 2.0, 1.0, 5.0, 7.0]), source_0=np.array(0))
    # graph 1: undirected random graph with self-loops and an unreachable node
    n = 30
    upper = np.triu(rng.random((n - 1, n - 1)) < 0.15)
    s, r = np.nonzero(upper)
    w = rng.uniform(0.1, 10.0, size=s.size)
    arrays.update(num_nodes_1=np.array(n), senders_1=np.concatenate([s, r]),
                  receivers_1=np.concatenate([r, s]), weights_1=np.concatenate([w, w]),
                  source_1=np.array(3))
    # graph 2: a directed path with large weights
    arrays.update(num_nodes_2=np.array(50), senders_2=np.arange(49),
                  receivers_2=np.arange(1, 50), weights_2=np.full(49, 300.0),
                  source_2=np.array(0))
    np.savez(sys.argv[1], **arrays)
""")


def _predict(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, "-m", "nareta.cli", "processor", "predict", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def _reference(n, s, r, w, source):
    from models.processor.algorithms import exact_distances

    return exact_distances(n, s, r, w, [source])[0]


def test_round_trip(tmp_path):
    graphs, out = tmp_path / "graphs.npz", tmp_path / "out.npz"
    subprocess.run([sys.executable, "-c", WRITER, str(graphs)], check=True, cwd=tmp_path)
    result = _predict("--graphs", str(graphs), "--out", str(out))
    assert result.returncode == 0, result.stderr
    with np.load(graphs) as given, np.load(out) as got:
        assert int(got["num_graphs"]) == 3
        np.testing.assert_array_equal(got["pi_0"], [0, 0, 1, 2])
        np.testing.assert_allclose(got["dist_0"], [0, 1, 3, 4], rtol=1e-3)
        for i in range(3):
            n, s, r, w = (
                int(given[f"num_nodes_{i}"]),
                given[f"senders_{i}"],
                given[f"receivers_{i}"],
                given[f"weights_{i}"],
            )
            source = int(given[f"source_{i}"])
            truth = _reference(n, s, r, w, source)
            pi, dist = got[f"pi_{i}"], got[f"dist_{i}"]
            assert pi.shape == dist.shape == (n,)
            assert pi[source] == source
            np.testing.assert_array_equal(np.isinf(dist), np.isinf(truth))
            unreachable = np.isinf(truth)
            np.testing.assert_array_equal(pi[unreachable], np.where(unreachable)[0])
            np.testing.assert_allclose(dist[~unreachable], truth[~unreachable], rtol=0.01)
        assert np.isinf(got["dist_1"][29])  # node 29 has no edges


def _write(path, **overrides):
    arrays = {
        "num_graphs": np.array(1),
        "num_nodes_0": np.array(3),
        "senders_0": np.array([0, 1]),
        "receivers_0": np.array([1, 2]),
        "weights_0": np.array([1.0, 2.0]),
        "source_0": np.array(0),
    }
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"weights_0": None}, "missing keys weights_0"),
        ({"num_graphs": None}, "missing key num_graphs"),
        ({"weights_0": np.array([1.0, -2.0])}, "must be > 0"),
        ({"weights_0": np.array([1.0, np.nan])}, "NaN"),
        ({"receivers_0": np.array([1, 3])}, "outside [0, 3)"),
        ({"source_0": np.array(5)}, "source_0 = 5"),
        ({"senders_0": np.array([0, 1, 2])}, "differ in length"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_output(tmp_path, overrides, message):
    graphs, out = tmp_path / "graphs.npz", tmp_path / "out.npz"
    _write(graphs, **overrides)
    result = _predict("--graphs", str(graphs), "--out", str(out))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [graphs]  # no temporary file left behind


def test_not_an_npz_and_existing_output(tmp_path):
    bad, out = tmp_path / "bad.npz", tmp_path / "out.npz"
    bad.write_text("hello")
    result = _predict("--graphs", str(bad), "--out", str(out))
    assert result.returncode == 2 and "not a readable .npz" in result.stderr
    good = tmp_path / "good.npz"
    _write(good)
    out.write_text("keep me")
    result = _predict("--graphs", str(good), "--out", str(out))
    assert result.returncode == 2 and "--force" in result.stderr
    assert out.read_text() == "keep me"
    assert _predict("--graphs", str(good), "--out", str(out), "--force").returncode == 0


def test_missing_processor_artifact(tmp_path):
    graphs, out = tmp_path / "graphs.npz", tmp_path / "out.npz"
    _write(graphs)
    result = _predict("--graphs", str(graphs), "--out", str(out), "--processor", str(tmp_path))
    assert result.returncode == 2 and "manifest.json" in result.stderr
    assert not out.exists()
