"""Google's polyline algorithm against the reference example and round trips."""

from __future__ import annotations

import numpy as np
import pytest

from service import polyline

# Google's documented example: (38.5, -120.2), (40.7, -120.95), (43.252, -126.453) as lat, lon.
GOOGLE_POINTS = [(-120.2, 38.5), (-120.95, 40.7), (-126.453, 43.252)]
GOOGLE_ENCODED = "_p~iF~ps|U_ulLnnqC_mqNvxq`@"


def test_google_reference_example():
    assert polyline.encode(GOOGLE_POINTS) == GOOGLE_ENCODED
    np.testing.assert_allclose(polyline.decode(GOOGLE_ENCODED), GOOGLE_POINTS)


@pytest.mark.parametrize("precision", [5, 6])
def test_round_trip(precision):
    points = [(-76.612345, 39.291234), (-76.5, 39.3), (-76.5, 39.3), (0.0, 0.0), (179.9, -89.9)]
    decoded = polyline.decode(polyline.encode(points, precision), precision)
    np.testing.assert_allclose(decoded, points, atol=10**-precision)


def test_precision_six_keeps_more_digits():
    points = [(-76.6123456, 39.2912345)]
    decoded = polyline.decode(polyline.encode(points, 6), 6)
    np.testing.assert_allclose(decoded, points, atol=0.51e-6)
    assert polyline.decode(polyline.encode(points, 5), 5) != decoded


def test_empty_and_malformed():
    assert polyline.encode([]) == ""
    assert polyline.decode("") == []
    with pytest.raises(ValueError, match="truncated"):
        polyline.decode("_p~iF")
    with pytest.raises(ValueError, match="cannot occur"):
        polyline.decode("ab cd")
