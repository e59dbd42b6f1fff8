"""ETA error metrics, shared by the baselines, the ETA model and ``nareta evaluate``.

All functions take true and predicted durations in seconds (``[N]`` arrays); predictions
that are not finite (no route found) are counted in ``unanswered`` and left out of the
error statistics, never replaced by a guess.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

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
