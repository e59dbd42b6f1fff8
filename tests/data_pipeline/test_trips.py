import numpy as np
import pandas as pd
import pytest

from data_pipeline.trips import (
    NoUsableTripsError,
    local_departure_times,
    read_trips,
    snap_trips,
    split_by_area,
    split_by_time,
    validate_trips,
)
from nareta.errors import InputError
from tests.graph_fixtures import road_graph_from_paths

GOOD = {
    "origin_lon": 0.0001,
    "origin_lat": 0.0,
    "destination_lon": 0.0019,
    "destination_lat": 0.0,
    "departure_time": "2026-11-18T07:30:00",
    "duration_s": 60.0,
}


def frame(*overrides):
    return pd.DataFrame([{**GOOD, **o} for o in overrides])


def test_good_rows_pass_and_departure_columns_added():
    table = validate_trips(frame({}, {"departure_time": "2026-11-18T08:15:00"}))
    assert len(table) == 2 and not table.rejected
    assert table.frame["departure_hour"].tolist() == pytest.approx([7.5, 8.25])
    assert table.frame["departure_s"].iloc[1] - table.frame["departure_s"].iloc[0] == 2700


def test_bad_rows_are_counted_by_reason_not_silently_dropped():
    table = validate_trips(
        frame(
            {},
            {"origin_lon": np.nan},
            {"destination_lat": 95.0},
            {"duration_s": -5.0},
            {"duration_s": 1e7},
            {"duration_s": "abc"},
            {"departure_time": "yesterday-ish"},
        )
    )
    assert len(table) == 1
    assert table.total_rows == 7
    reasons = dict(table.rejected)
    assert sum(reasons.values()) == 6
    assert reasons["missing or non-numeric coordinate"] == 1
    assert reasons["coordinate out of range (|lon| > 180 or |lat| > 90)"] == 1
    assert reasons["negative duration_s"] == 1
    assert reasons["missing or non-numeric duration_s"] == 1
    assert reasons["invalid departure_time (ISO-8601 or epoch seconds, 1970..2100)"] == 1
    assert any(reason.startswith("absurd duration_s") for reason in reasons)
    assert "rejected" in table.summary()


def test_missing_columns_refused_with_names():
    with pytest.raises(InputError, match="missing columns.*duration_s"):
        validate_trips(frame({}).drop(columns=["duration_s"]))
    # without durations (scoring input) the same table is fine
    assert len(validate_trips(frame({}).drop(columns=["duration_s"]), require_duration=False)) == 1


def test_nothing_usable_is_a_clear_refusal():
    with pytest.raises(NoUsableTripsError, match="no usable row"):
        validate_trips(frame({"duration_s": -1.0}, {"origin_lat": "x"}))


def test_departure_times_iso_epoch_and_offsets():
    parsed = local_departure_times(
        pd.Series(["2026-11-18T07:00:00", 1795503600, "2026-11-18T07:00:00+01:00", None])
    )
    assert parsed.iloc[0] == pd.Timestamp("2026-11-18 07:00:00")
    assert parsed.iloc[1] == pd.Timestamp(1795503600, unit="s")
    assert parsed.iloc[2] == pd.Timestamp("2026-11-18 06:00:00")  # converted to UTC
    assert pd.isna(parsed.iloc[3])
    # epoch milliseconds are refused (out of range), as every entry point does
    assert local_departure_times(pd.Series([1795503600000])).isna().all()
    eastern = local_departure_times(pd.Series([1795503600]), timezone="America/New_York")
    assert eastern.iloc[0] == pd.Timestamp(1795503600, unit="s") - pd.Timedelta(hours=5)


def test_csv_and_parquet_round_trip(tmp_path):
    data = frame({}, {"departure_time": "1795503600"})
    data["route"] = ["[0, 1]", "0 1"]
    data.to_csv(tmp_path / "t.csv", index=False)
    table = read_trips(tmp_path / "t.csv")
    assert len(table) == 2
    assert [list(r) for r in table.frame["route"]] == [[0, 1], [0, 1]]
    data["route"] = [[0, 1], [0, 1]]
    data.to_parquet(tmp_path / "t.parquet")
    assert len(read_trips(tmp_path / "t.parquet")) == 2
    with pytest.raises(InputError, match="unknown file type"):
        (tmp_path / "t.json").write_text("{}")
        read_trips(tmp_path / "t.json")
    with pytest.raises(InputError, match="no such file"):
        read_trips(tmp_path / "missing.csv")


def line_graph():
    # three nodes 100 m apart on the equator (EPSG:3857 metres ~ true metres there)
    deg = 100 / 111_319.49
    lonlat = {1: (0.0, 0.0), 2: (deg, 0.0), 3: (2 * deg, 0.0)}
    paths = [((1, 2), 10), ((2, 1), 10), ((2, 3), 11), ((3, 2), 11)]
    return road_graph_from_paths(lonlat, paths)


def test_snap_rejects_points_far_from_roads():
    graph = line_graph()
    table = validate_trips(frame({}, {"origin_lat": 0.01}))  # ~1.1 km north of the road
    snapped = snap_trips(table, graph, max_snap_distance_m=50)
    assert len(snapped) == 1
    assert sum(snapped.rejected.values()) == 1
    assert "origin farther than 50 m" in next(iter(snapped.rejected))
    row = snapped.frame.iloc[0]
    assert row["origin_segment"] in (0, 1) and row["destination_segment"] in (2, 3)
    assert row["origin_twin"] in (0, 1) and row["origin_twin"] != row["origin_segment"]
    with pytest.raises(NoUsableTripsError):
        snap_trips(validate_trips(frame({"origin_lat": 0.01})), graph, max_snap_distance_m=50)


def test_snap_rejects_routes_outside_the_graph():
    graph = line_graph()
    data = frame({}, {})
    data["route"] = [[0, 2], [0, 99]]
    snapped = snap_trips(validate_trips(data), graph)
    assert len(snapped) == 1
    assert any("outside the graph" in reason for reason in snapped.rejected)


def test_time_split_holds_out_the_last_hour():
    times = [f"2026-11-18T0{h}:{m:02d}:00" for h in (6, 7, 8) for m in (0, 30)]
    table = validate_trips(frame(*[{"departure_time": t} for t in times]))
    train, test = split_by_time(table, holdout_hours=1.0)
    assert len(train) + len(test) == 6
    assert test.frame["departure_hour"].min() > train.frame["departure_hour"].max()
    assert len(test) == 2  # 08:00 and 08:30 (after 07:30)


def test_area_split_never_shares_trips_and_holds_out_zones():
    rng = np.random.default_rng(0)
    rows = [
        {"origin_lon": float(a), "destination_lon": float(b)}
        for a, b in rng.uniform(0, 0.05, size=(300, 2))
    ]
    table = validate_trips(frame(*rows))
    train, test = split_by_area(table, zone_size_m=1000, holdout_share=0.3, seed=1)
    assert len(train) + len(test) == 300
    assert len(train) > 0 and len(test) > 0
    assert set(train.frame["origin_lon"]).isdisjoint(set(test.frame["origin_lon"]))
