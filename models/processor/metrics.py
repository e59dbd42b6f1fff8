"""Accuracy of predicted shortest-path trees against exact distances.

Ties: a predicted predecessor ``u`` of ``v`` counts as correct when the edge ``u -> v`` lies
on SOME shortest path (``d(u) + w(u, v) = d(v)`` up to a relative 1e-6), not only when it
equals the one predecessor a reference implementation happened to pick. For the source
and for unreachable nodes the correct pointer is the node itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


# --------------------------------------------------------------------------- any algorithm
#: relative tolerance for a decoded distance / width to count as right (hops: exact)
VALUE_RTOL = 0.05


def tight_edges_for(
    combine, true_value: np.ndarray, senders: np.ndarray, receivers: np.ndarray,
    weights: np.ndarray, reachable: np.ndarray, *, rtol: float = 1e-6,
) -> np.ndarray:
    """[E] bool: edges ``u -> v`` (not self-loops) between reachable nodes whose candidate
    ``combine(value_u, w_uv)`` equals ``value_v``: every predecessor that is right."""
    both = reachable[senders] & reachable[receivers] & (senders != receivers)
    candidate = np.where(both, combine(np.where(both, true_value[senders], 0.0), weights), 0.0)
    target = np.where(both, true_value[receivers], 0.0)
    with np.errstate(invalid="ignore"):
        close = np.abs(candidate - target) <= rtol * np.maximum(np.abs(target), 1e-12) + 1e-12
    return both & (close | (np.isinf(candidate) & np.isinf(target)))


def path_correct(correct: np.ndarray, pointer: np.ndarray, source: int) -> np.ndarray:
    """[N] bool: following the predicted pointers from ``v`` reaches ``source`` through
    correct pointers only (pointer jumping, O(N log N); cycles count as wrong)."""
    ok, jump = correct.copy(), pointer.copy()
    for _ in range(int(np.ceil(np.log2(max(pointer.size, 2)))) + 1):
        ok = ok & ok[jump]
        jump = jump[jump]
    return ok & (jump == source)


def evaluate_algorithm_run(
    *,
    combine,
    integer_values: bool,
    true_value: np.ndarray,
    reachable: np.ndarray,
    predicted_value: np.ndarray,
    predicted_pointer: np.ndarray,
    senders: np.ndarray,
    receivers: np.ndarray,
    weights: np.ndarray,
    source: int,
) -> dict[str, Any]:
    """Counts for one run of any path algorithm (Bellman-Ford, BFS, widest path):

    pointer right (tie-aware, as :func:`evaluate_run`); value right (hops: equal after
    rounding; distances / widths: within :data:`VALUE_RTOL` = 5% relative) over reachable
    non-source nodes; path right (every pointer to the source right); per node flags kept
    for the hop-count breakdown."""
    n = true_value.size
    nodes = np.arange(n)
    pointer = np.asarray(predicted_pointer, dtype=np.int64)
    tight = tight_edges_for(combine, true_value, senders, receivers, weights, reachable)
    keys = np.unique(senders[tight].astype(np.int64) * n + receivers[tight])
    correct = np.isin(pointer * n + nodes, keys)
    correct[~reachable] = pointer[~reachable] == nodes[~reachable]
    correct[source] = pointer[source] == source
    others = reachable & (nodes != source)
    truth, guess = true_value[others], np.asarray(predicted_value, dtype=np.float64)[others]
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = np.abs(guess - truth) / np.maximum(np.abs(truth), 1e-12)
    value_ok = np.round(guess) == truth if integer_values else relative <= VALUE_RTOL
    on_path = path_correct(correct, pointer, source)
    return {
        "nodes": n,
        "pointer_correct": int(correct.sum()),
        "value_nodes": int(others.sum()),
        "value_correct": int(value_ok.sum()),
        "relative_errors": relative,
        "path_nodes": int(reachable.sum()),
        "path_correct": int(on_path[reachable].sum()),
        "all_pointers_correct": bool(correct.all()),
        "node_pointer_correct": correct,
        "node_path_correct": on_path,
    }


def summarise_algorithm(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Node-weighted pointer / value / path accuracy and whole-graph accuracy."""
    def ratio(numerator: str, denominator: str) -> float:
        return sum(r[numerator] for r in runs) / max(sum(r[denominator] for r in runs), 1)

    errors = np.concatenate([r["relative_errors"] for r in runs]) if runs else np.array([])
    return {
        "runs": len(runs),
        "pointer_accuracy": ratio("pointer_correct", "nodes"),
        "value_accuracy": ratio("value_correct", "value_nodes"),
        "median_relative_value_error": float(np.median(errors)) if errors.size else 0.0,
        "path_accuracy": ratio("path_correct", "path_nodes"),
        "whole_graph_accuracy": float(np.mean([r["all_pointers_correct"] for r in runs]))
        if runs else float("nan"),
    }
