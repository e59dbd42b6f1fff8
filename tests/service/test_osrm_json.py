"""The table's fast matrix encoding writes exactly what ``json.dumps`` writes for the
cells rounded with ``round(value, 1)`` (and ``null`` where not finite)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from service.osrm import RawJson, json_response, matrix_json


def _reference(matrix: np.ndarray) -> str:
    return json.dumps([[round(v, 1) if math.isfinite(v) else None for v in row]
                       for row in matrix.tolist()], separators=(",", ":"))


@pytest.mark.parametrize("matrix", [
    np.random.default_rng(0).random((100, 100)) * 5000,
    np.random.default_rng(1).random((7, 3)) * 1e7 - 5e6,
    (np.arange(100_000) / 100.0 + 0.05).reshape(200, 500),  # near-halfway values
    np.array([[0.05, 0.15, 0.25, 2.675, -0.04, -0.05, 5.0, 0.0, -0.0, 1e14 + 0.05]]),
    np.array([[np.nan, np.inf, 1.25], [3.35, -np.inf, 0.45]]),
    np.array([[1e16, 2.0]]),  # where %.1f and repr differ: the exact path
    np.zeros((0, 3)),
])
def test_matrix_json_is_json_dumps_of_rounded_cells(matrix):
    assert matrix_json(matrix) == _reference(matrix)


def test_json_response_splices_raw_json():
    body = {"code": "Ok", "durations": matrix_json(np.array([[0.0, 1.26]])),
            "sources": [{"name": "", "location": (1.5, 2.0)}]}
    response = json_response(body)
    assert json.loads(response.body) == {"code": "Ok", "durations": [[0.0, 1.3]],
                                         "sources": [{"name": "", "location": [1.5, 2.0]}]}
    assert isinstance(body["durations"], RawJson)
