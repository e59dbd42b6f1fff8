"""Accuracy of predicted shortest-path trees against exact distances.

Ties: a predicted predecessor ``u`` of ``v`` counts as correct when the edge ``u -> v`` lies
on SOME shortest path (``d(u) + w(u, v) = d(v)`` up to a relative 1e-6), not only when it
equals the one predecessor a reference implementation happened to pick. For the source
and for unreachable nodes the correct pointer is the node itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.processor.algorithms import tight_edges


@dataclass(frozen=True)
class RunMetrics:
    """Per single-source run."""

    pointer_correct: int
    path_optimal: int
    reachable: int
    num_nodes: int
    relative_errors: np.ndarray  # [reachable non-source nodes]
    reach_mismatch: int  # nodes predicted reachable XOR truly reachable


def evaluate_run(
    true_distance: np.ndarray,
    predicted_distance: np.ndarray,
    predicted_pointer: np.ndarray,
    senders: np.ndarray,
    receivers: np.ndarray,
    weights: np.ndarray,
    source: int,
) -> RunMetrics:
    n = true_distance.size
    nodes = np.arange(n)
    reachable = np.isfinite(true_distance)
    tight = tight_edges(true_distance, senders, receivers, weights)
    tight_keys = np.unique(senders[tight].astype(np.int64) * n + receivers[tight])
    pointer = np.asarray(predicted_pointer, dtype=np.int64)
    correct = np.isin(pointer * n + nodes, tight_keys)
    correct[~reachable] = pointer[~reachable] == nodes[~reachable]
    correct[source] = pointer[source] == source
    optimal = np.zeros(n, dtype=bool)
    optimal[source] = correct[source]
    for v in np.argsort(np.where(reachable, true_distance, np.inf), kind="stable"):
        if not reachable[v] or v == source:
            continue
        # a correct pointer goes to a strictly closer node (weights > 0): already decided
        optimal[v] = correct[v] and optimal[pointer[v]]
    others = reachable & (nodes != source)
    relative = np.abs(predicted_distance[others] - true_distance[others]) / np.maximum(
        true_distance[others], 1e-12
    )
    mismatch = int(np.sum(np.isfinite(predicted_distance) != reachable))
    return RunMetrics(
        int(correct.sum()),
        int(optimal[reachable].sum()),
        int(reachable.sum()),
        n,
        relative,
        mismatch,
    )


def summarise(runs: list[RunMetrics]) -> dict[str, float]:
    """Aggregate: node-weighted pointer accuracy and path optimality, whole-graph accuracy
    (fraction of runs with every pointer right), median relative distance error."""
    nodes = sum(r.num_nodes for r in runs)
    reach = sum(r.reachable for r in runs)
    errors = np.concatenate([r.relative_errors for r in runs]) if runs else np.array([])
    return {
        "runs": len(runs),
        "pointer_accuracy": sum(r.pointer_correct for r in runs) / max(nodes, 1),
        "path_optimality": sum(r.path_optimal for r in runs) / max(reach, 1),
        "whole_graph_accuracy": float(np.mean([r.pointer_correct == r.num_nodes for r in runs]))
        if runs
        else float("nan"),
        "median_relative_distance_error": float(np.median(errors)) if errors.size else 0.0,
        "reach_mismatch_nodes": sum(r.reach_mismatch for r in runs),
    }
