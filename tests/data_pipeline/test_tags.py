import math

import pytest

from data_pipeline.tags import is_yes, parse_lanes, parse_maxspeed_kph, parse_oneway


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("50", 50.0),
        ("30 mph", 30 * 1.609344),
        ("25mph", 25 * 1.609344),
        ("50 km/h", 50.0),
        ("none", 130.0),
        ("walk", 7.0),
        ("DE:urban", 50.0),
        ("RU:rural", 90.0),
        ("40;60", 50.0),
        ("30 mph|40 mph", 35 * 1.609344),
        ("signals", None),
        ("variable", None),
        ("fast", None),
        ("", None),
        (None, None),
        ("0", None),
    ],
)
def test_parse_maxspeed(value, expected):
    result = parse_maxspeed_kph(value)
    if expected is None:
        assert result is None
    else:
        assert math.isclose(result, expected, rel_tol=1e-9)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2", 2.0), ("2;3", 2.0), ("1.5", 1.5), ("many", None), (None, None), ("0", None)],
)
def test_parse_lanes(value, expected):
    assert parse_lanes(value) == expected


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"highway": "residential"}, 0),
        ({"highway": "residential", "oneway": "yes"}, 1),
        ({"highway": "residential", "oneway": "-1"}, -1),
        ({"highway": "motorway"}, 1),
        ({"highway": "motorway", "oneway": "no"}, 0),
        ({"highway": "primary", "junction": "roundabout"}, 1),
        ({"highway": "primary", "oneway": "reversible"}, 0),
    ],
)
def test_parse_oneway(tags, expected):
    assert parse_oneway(tags) == expected


def test_is_yes():
    assert is_yes("yes") and is_yes("viaduct")
    assert not is_yes("no") and not is_yes(None)
