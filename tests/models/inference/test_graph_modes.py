"""The node and turn strategies (models.inference.graph_modes) on the bundled city: trees
followed back give connected paths whose times sum to the tree's, legs take the right share
of their segment, and junction arrival times come from the keys'."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest

from models.inference.graph_modes import NODE, TURN, graph_mode


def test_modes_by_name():
    assert graph_mode("node") is NODE and graph_mode("turn") is TURN
    with pytest.raises(ValueError, match="'turn' or 'node', not 'line'"):
        graph_mode("line")


@pytest.mark.parametrize("mode", [NODE, TURN], ids=["node", "turn"])
def test_followed_paths_are_connected_and_add_up_to_the_tree(mode, bundled_graph):
    graph = bundled_graph
    source, target = graph["edge_source"], graph["edge_target"]
    times = graph["free_flow_s"].astype(np.float64)
    rng = np.random.default_rng(0)
    roots = rng.choice(mode.num_keys(graph), 3, replace=False)
    run = mode.exact_tree(graph, times, None, roots)
    assert run.node_time_s.shape == (3, mode.num_keys(graph))
    for row, root in enumerate(roots.tolist()):
        reached = np.flatnonzero(np.isfinite(run.node_time_s[row]))
        for key in rng.choice(reached[reached != root], 25).tolist():
            path = mode.follow(graph, run.parent_segment[row], root, key)
            assert path is not None
            # turn mode: keys are segments, the path lies strictly between them
            driven = [root, *path, key] if mode.keys_are_segments else path
            assert all(target[a] == source[b] for a, b in itertools.pairwise(driven))
            if not mode.keys_are_segments:
                assert source[driven[0]] == root and target[driven[-1]] == key
            seconds = times[driven[1:]].sum() if mode.keys_are_segments else times[path].sum()
            assert seconds == pytest.approx(run.node_time_s[row, key], rel=1e-9)


def _point(segment: int, fraction: float):
    return SimpleNamespace(segment=segment, twin=-1, fraction=fraction)


def test_legs_take_their_share_of_the_segment(bundled_graph):
    graph = bundled_graph
    times = graph["free_flow_s"].astype(np.float64)
    segment = int(np.flatnonzero(graph.reverse_twins() < 0)[0])  # a one-way segment
    length = float(graph["length_m"][segment])
    point = _point(segment, 0.25)
    (node_start,), (node_end,) = NODE.starts(graph, point, times), NODE.ends(graph, point, times)
    assert node_start.key == graph["edge_target"][segment]
    assert node_start.time_s == pytest.approx(0.75 * times[segment])
    assert node_end.key == graph["edge_source"][segment]
    assert node_end.length_m == pytest.approx(0.25 * length)
    (turn_start,), (turn_end,) = TURN.starts(graph, point, times), TURN.ends(graph, point, times)
    assert turn_start.key == turn_end.key == segment
    # the turn tree reaches the segment's end: the undriven three quarters come off again
    assert turn_end.time_s == pytest.approx(-0.75 * times[segment])
    # standing on a junction adds a free leg there in node mode only
    at_start, at_end = _point(segment, 0.0), _point(segment, 1.0)
    assert NODE.starts(graph, at_start, times)[-1].key == graph["edge_source"][segment]
    assert NODE.starts(graph, at_start, times)[-1].time_s == 0.0
    assert NODE.ends(graph, at_end, times)[-1].key == graph["edge_target"][segment]
    assert len(TURN.starts(graph, at_start, times)) == len(TURN.ends(graph, at_end, times)) == 1


def test_junction_arrival_is_the_earliest_segment_ending_there(bundled_graph):
    graph = bundled_graph
    arrival = np.random.default_rng(1).uniform(10, 100, graph.num_segments)
    node_time = TURN.node_times(graph, arrival)
    target = graph["edge_target"]
    for node in np.random.default_rng(2).choice(graph.num_nodes, 20).tolist():
        ending = arrival[target == node]
        assert node_time[node] == (ending.min() if ending.size else np.inf)
    assert NODE.node_times(graph, node_time) is node_time
