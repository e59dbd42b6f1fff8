"""Metrics.

**Shortest-path trees** (the processor): accuracy of predicted trees against exact
distances.

Ties: a predicted predecessor ``u`` of ``v`` counts as correct when the edge ``u -> v`` lies
on SOME shortest path (``d(u) + w(u, v) = d(v)`` up to a relative 1e-6), not only when it
equals the one predecessor a reference implementation happened to pick. For the source
and for unreachable nodes the correct pointer is the node itself.

**ETA errors** (baselines, the ETA model, ``nareta evaluate``): functions take true and
predicted durations in seconds (``[N]`` arrays); predictions that are not finite (no route
found) are counted in ``unanswered`` and left out of the error statistics, never replaced by
a guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.algorithms import tight_edges


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


# --------------------------------------------------------------------------- ETA errors
#: Trip-length bins (metres) and departure-hour bins for breakdowns.
LENGTH_BINS_M: tuple[float, ...] = (0.0, 1000.0, 2000.0, 4000.0, 8000.0, np.inf)


def eta_metrics(true_s: np.ndarray, predicted_s: np.ndarray) -> dict[str, float]:
    """MAPE, median APE, MAE, RMSE, share within ±10 % / ±20 %, mean signed error (bias).

    APE is ``|predicted - true| / true``; percentages are returned as fractions
    (0.12 = 12 %).
    """
    true = np.asarray(true_s, dtype=np.float64)
    predicted = np.asarray(predicted_s, dtype=np.float64)
    if true.shape != predicted.shape:
        raise ValueError(f"true {true.shape} and predicted {predicted.shape} differ in shape")
    answered = np.isfinite(predicted) & np.isfinite(true) & (true > 0)
    result: dict[str, float] = {
        "count": int(true.size),
        "unanswered": int(true.size - answered.sum()),
    }
    if not answered.any():
        return result | {
            name: float("nan")
            for name in (
                "mape",
                "median_ape",
                "mae_s",
                "rmse_s",
                "within_10pct",
                "within_20pct",
                "bias_s",
            )
        }
    true, predicted = true[answered], predicted[answered]
    error = predicted - true
    ape = np.abs(error) / true
    return result | {
        "mape": float(ape.mean()),
        "median_ape": float(np.median(ape)),
        "mae_s": float(np.abs(error).mean()),
        "rmse_s": float(np.sqrt(np.mean(error**2))),
        "within_10pct": float((ape <= 0.10).mean()),
        "within_20pct": float((ape <= 0.20).mean()),
        "bias_s": float(error.mean()),
    }


def breakdown(
    true_s: np.ndarray,
    predicted_s: np.ndarray,
    keys: np.ndarray,
    bins: Sequence[float],
    *,
    label_format: str = "{low:g}-{high:g}",
) -> dict[str, dict[str, float]]:
    """:func:`eta_metrics` per bin of ``keys`` (``bins`` are edges, left-closed)."""
    keys = np.asarray(keys, dtype=np.float64)
    result: dict[str, dict[str, float]] = {}
    for low, high in zip(bins[:-1], bins[1:], strict=True):
        mask = (keys >= low) & (keys < high)
        if mask.any():
            label = label_format.format(low=low, high=high)
            result[label] = eta_metrics(np.asarray(true_s)[mask], np.asarray(predicted_s)[mask])
    return result


def by_trip_length(true_s, predicted_s, length_m) -> dict[str, dict[str, float]]:
    """Breakdown by trip length in km bins."""
    edges_km = [b / 1000.0 for b in LENGTH_BINS_M]
    return breakdown(
        true_s,
        predicted_s,
        np.asarray(length_m) / 1000.0,
        edges_km,
        label_format="{low:g}-{high:g} km",
    )


def by_departure_hour(true_s, predicted_s, departure_hour) -> dict[str, dict[str, float]]:
    """Breakdown by whole departure hour of day."""
    return breakdown(
        true_s,
        predicted_s,
        np.floor(np.asarray(departure_hour)),
        list(range(25)),
        label_format="{low:02.0f}h",
    )
