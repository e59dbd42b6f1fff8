"""score_frame in one process: statuses for every kind of bad row, answers equal to eta."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from batch.scoring import score_frame
from models.baselines.freeflow import FreeFlowModel
from models.inference.predictor import Predictor
from models.inference.travel_time import OriginRun
from tests.batch.conftest import BAD_ROWS, make_od_frame


@pytest.fixture(scope="module")
def predictor(bundled_graph_dir):
    return Predictor.load(bundled_graph_dir)


def test_statuses_and_answers_equal_eta(predictor, bundled_graph_dir):
    frame = make_od_frame(predictor.graph, count=120)
    scored = score_frame(predictor, frame, origins_per_batch=7)  # several batches
    assert list(scored.columns) == [*frame.columns, "eta_s", "distance_m", "status"]
    by_trip = scored.set_index("trip_id")
    for trip_id, status in BAD_ROWS.items():
        assert by_trip.loc[trip_id, "status"] == status, trip_id
        assert np.isnan(by_trip.loc[trip_id, "eta_s"])
    good = scored[scored["status"] == "ok"]
    assert len(good) == len(frame) - len(BAD_ROWS)
    fresh = Predictor.load(bundled_graph_dir)  # answers one query at a time, own cache
    for row in good.itertuples():
        single = fresh.eta((float(row.origin_lon), row.origin_lat),
                           (row.destination_lon, row.destination_lat))
        assert row.eta_s == pytest.approx(single.eta_s, rel=1e-12, abs=1e-9)
        assert row.distance_m == pytest.approx(single.distance_m, rel=1e-12, abs=1e-9)


class _Unreachable(FreeFlowModel):
    """Free-flow, except that nothing but the origin itself is reachable."""

    supports_targets = False  # its run_from answers whole runs only

    def run_from(self, origins, bucket):
        run = super().run_from(origins, bucket)
        times = np.full_like(run.node_time_s, np.inf)
        times[np.arange(len(origins)), origins] = 0.0
        return OriginRun(run.origins, times, np.full_like(run.parent_segment, -1))


def test_no_route_status(bundled_graph):
    predictor = Predictor(bundled_graph, _Unreachable(bundled_graph))
    frame = make_od_frame(bundled_graph, count=30)
    scored = score_frame(predictor, frame)
    snapped = ~scored["trip_id"].isin(list(BAD_ROWS))
    assert (scored.loc[snapped, "status"] == "no_route").all()
    assert scored.loc[snapped, "eta_s"].isna().all()


def test_empty_and_all_bad_frames(predictor):
    frame = make_od_frame(predictor.graph, count=20)
    assert score_frame(predictor, frame.iloc[:0]).empty
    bad = frame.iloc[: len(BAD_ROWS)]
    scored = score_frame(predictor, bad)
    assert scored["status"].tolist() == list(BAD_ROWS.values())


def test_departure_time_column_optional(predictor):
    frame = make_od_frame(predictor.graph, count=20).drop(columns="departure_time")
    frame = frame[~frame["trip_id"].isin(list(BAD_ROWS))]
    scored = score_frame(predictor, pd.DataFrame(frame))
    assert (scored["status"] == "ok").all()
