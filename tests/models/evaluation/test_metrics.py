import numpy as np
import pytest

from models.evaluation.metrics import by_departure_hour, by_trip_length, eta_metrics


def test_eta_metrics_hand_checked():
    true = np.array([100.0, 200.0, 400.0, 50.0])
    predicted = np.array([110.0, 150.0, 400.0, 80.0])
    # APE: 0.1, 0.25, 0.0, 0.6 ; errors: +10, -50, 0, +30
    m = eta_metrics(true, predicted)
    assert m["count"] == 4 and m["unanswered"] == 0
    assert m["mape"] == pytest.approx((0.1 + 0.25 + 0.0 + 0.6) / 4)
    assert m["median_ape"] == pytest.approx((0.1 + 0.25) / 2)
    assert m["mae_s"] == pytest.approx(90 / 4)
    assert m["rmse_s"] == pytest.approx(np.sqrt((100 + 2500 + 0 + 900) / 4))
    assert m["within_10pct"] == pytest.approx(0.5)  # 0.1 counts as within
    assert m["within_20pct"] == pytest.approx(0.5)
    assert m["bias_s"] == pytest.approx(-10 / 4)


def test_unanswered_predictions_are_counted_not_scored():
    m = eta_metrics(np.array([100.0, 100.0]), np.array([np.inf, 120.0]))
    assert m["unanswered"] == 1
    assert m["mape"] == pytest.approx(0.2)


def test_nothing_answered_gives_nan():
    m = eta_metrics(np.array([100.0]), np.array([np.nan]))
    assert m["unanswered"] == 1 and np.isnan(m["mape"])


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        eta_metrics(np.ones(3), np.ones(2))


def test_breakdowns():
    true = np.array([100.0, 100.0, 100.0])
    predicted = np.array([110.0, 130.0, 100.0])
    lengths = by_trip_length(true, predicted, np.array([500.0, 1500.0, 1600.0]))
    assert set(lengths) == {"0-1 km", "1-2 km"}
    assert lengths["1-2 km"]["count"] == 2
    assert lengths["1-2 km"]["mape"] == pytest.approx(0.15)
    hours = by_departure_hour(true, predicted, np.array([6.5, 7.0, 7.99]))
    assert set(hours) == {"06h", "07h"}
    assert hours["06h"]["mape"] == pytest.approx(0.1)
