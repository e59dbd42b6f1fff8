"""The service's live traffic: the feed file loaded at start-up (and reloaded when it
changes), rows posted to ``POST /v1/traffic``, and what ``GET /v1/traffic`` reports.

The snapshot lives in the Predictor's :class:`models.inference.live.TrafficStore`, one per server
process: with ``--workers N`` a ``POST /v1/traffic`` reaches one process only, so several
workers take their feed from a file (``--traffic PATH``), which every process polls for
changes (``NARETA_TRAFFIC_RELOAD_S``).

"Now" for posted rows: a window that starts after the request's ``now`` (ISO-8601 local
time or epoch seconds) is rejected; without ``now`` the server's wall clock in the city's
time zone (the model's ``timezone``; else the server's local clock) plus
:data:`CLOCK_SKEW_S` is used. A replayed (simulated) feed whose clock is not the wall
clock sends ``now`` = its replay time. Feed *files* are taken as they are (a replay has
its own clock): no window is rejected for being in the future.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_pipeline.traffic import (
    FeedError,
    FeedReport,
    Observations,
    map_feed,
    validate_feed,
)
from models.inference.live import TREND_S, TrafficSnapshot, local_datetime, local_seconds
from models.inference.predictor import Predictor, TrafficUse

logger = logging.getLogger("nareta.service")
#: posted windows may start this far past the server's wall clock (clocks of producers drift)
CLOCK_SKEW_S = 60.0
UNMATCHED = "node pair matches no segment of this road graph"


class FeedRejected(FeedError):
    """Posted rows left nothing usable; carries the per-reason counts."""

    def __init__(self, message: str, report: FeedReport):
        super().__init__(message)
        self.report = report


def model_timezone(predictor: Predictor) -> str | None:
    """The city's IANA time zone as the model knows it (None: naive local clock)."""
    return getattr(getattr(predictor.model, "config", None), "timezone", None)


def wall_clock_s(timezone: str | None) -> float:
    """Local seconds of the wall clock: in ``timezone``, else the server's local clock."""
    if timezone:
        return local_seconds(dt.datetime.now(dt.UTC), timezone)
    return local_seconds(dt.datetime.now())


def iso(seconds: float | None) -> str | None:
    if seconds is None or not np.isfinite(seconds):
        return None
    return local_datetime(seconds).isoformat(timespec="seconds")


def traffic_use_json(use: TrafficUse | None) -> dict[str, Any] | None:
    if use is None:
        return None
    return {"live": use.live, "reason": use.reason,
            "as_of": use.as_of.isoformat(timespec="seconds") if use.as_of else None,
            "snapshot": use.snapshot}


def traffic_as_of(use: TrafficUse | None) -> str | None:
    """ISO local time of the snapshot's newest observation an answer used (None: historical
    or a model without live traffic)."""
    if use is None or not use.live or use.as_of is None:
        return None
    return use.as_of.isoformat(timespec="seconds")


def merge_observations(old: Observations, new: Observations, *, keep_s: float
                       ) -> Observations:
    """``old`` + ``new``, the new value winning per (window, segment); windows that ended
    more than ``keep_s`` before the merged newest one are dropped."""
    if not len(old):
        return new
    seen = set(zip(new.window_s.tolist(), new.segment.tolist(), strict=True))
    stale = np.array([(w, s) in seen for w, s in zip(old.window_s.tolist(),
                                                     old.segment.tolist(), strict=True)],
                     dtype=bool)
    kept = Observations(old.window_s[~stale], old.segment[~stale], old.speed_kph[~stale],
                        old.samples[~stale], old.window_length_s)
    merged = Observations.concat([kept, new])
    fresh = merged.window_s + merged.window_length_s >= merged.as_of_s - keep_s
    order = np.lexsort((merged.segment[fresh], merged.window_s[fresh]))
    return Observations(merged.window_s[fresh][order], merged.segment[fresh][order],
                        merged.speed_kph[fresh][order], merged.samples[fresh][order],
                        merged.window_length_s)


@dataclass
class FeedState:
    """What the app knows about its snapshot besides the store: where it came from."""

    source: str | None = None
    loaded_utc: str | None = None
    report: dict[str, Any] | None = None
    file_signature: tuple | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def installed(self, predictor: Predictor, snapshot: TrafficSnapshot, source: str,
                  report: FeedReport) -> None:
        predictor.set_traffic(snapshot)
        self.source = source
        self.loaded_utc = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.report = report.to_json()


def snapshot_summary(predictor: Predictor, state: FeedState) -> dict[str, Any] | None:
    snapshot = predictor.traffic.snapshot
    if snapshot is None:
        return None
    observations = snapshot.observations
    return {
        "key": snapshot.key,
        "as_of": iso(snapshot.as_of_s),
        "first_window": iso(float(observations.window_s.min()) if len(observations) else None),
        "window_s": observations.window_length_s,
        "rows": len(observations),
        "windows": int(len(np.unique(observations.window_s))),
        "observed_segments": int(len(np.unique(observations.segment))),
        "source": state.source,
        "loaded_utc": state.loaded_utc,
        "report": state.report,
    }


# --------------------------------------------------------------------------- files
def file_signature(path: Path) -> tuple:
    """(name, size, mtime) of the feed file or of every feed file in the directory."""
    try:
        files = ([path] if path.is_file() else
                 sorted(p for p in path.iterdir() if p.suffix in (".parquet", ".csv")
                        and not p.name.startswith(".")))
        return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    except OSError:
        return ()


def load_file(predictor: Predictor, state: FeedState, path: Path) -> FeedReport:
    """Load the feed at ``path`` into the predictor (raises FeedError, keeping the old one)."""
    signature = file_signature(path)
    snapshot, report = predictor.traffic.load(predictor.graph, path,
                                              timezone=model_timezone(predictor))
    with state.lock:
        state.installed(predictor, snapshot, f"file {path}", report)
        state.file_signature = signature
    logger.info("traffic snapshot %s from %s: %d of %d rows used, as of %s", snapshot.key,
                path, report.used, report.rows, iso(snapshot.as_of_s))
    return report


async def watch_file(predictor: Predictor, state: FeedState, path: Path,
                     every_s: float) -> None:
    """Reload ``path`` whenever its files change (checked every ``every_s`` seconds); a
    feed that fails to load is logged and the current snapshot kept."""
    while True:
        await asyncio.sleep(every_s)
        signature = await asyncio.to_thread(file_signature, path)
        if not signature or signature == state.file_signature:
            continue
        try:
            await asyncio.to_thread(load_file, predictor, state, path)
        except FeedError as exc:
            state.file_signature = signature  # do not retry the same broken files
            logger.warning("traffic feed %s changed but was not loaded: %s", path, exc)
        except Exception:  # noqa: BLE001 - a watcher must not die
            state.file_signature = signature
            logger.exception("traffic feed %s: reload failed", path)


# --------------------------------------------------------------------------- posted rows
def post_rows(predictor: Predictor, state: FeedState, rows: list[dict[str, Any]], *,
              now: dt.datetime | None, merge: bool) -> tuple[FeedReport, float]:
    """Validate and map posted rows and install the new snapshot (replacing the current one,
    or merged into it); returns the report and the 'now' (local seconds) used."""
    timezone = model_timezone(predictor)
    if now is not None:
        now_s = local_seconds(now, timezone)
        limit_s = now_s
    else:
        now_s = wall_clock_s(timezone)
        limit_s = now_s + CLOCK_SKEW_S
    report = FeedReport(rows=len(rows))
    if not rows:
        raise FeedRejected("the traffic feed is empty: 'rows' holds no observation", report)
    frame = pd.DataFrame.from_records(rows)
    try:
        valid, report = validate_feed(frame, timezone=timezone, now_s=limit_s)
    except FeedError as exc:
        report.reject("missing required column", len(rows))
        raise FeedRejected(str(exc), report) from None
    observations, report = map_feed(predictor.graph, valid, report)
    if not len(observations):
        hint = ""
        if len(valid) and report.rejected.get(UNMATCHED, 0) == len(valid):
            hint = " (no node pair is on this road graph: is the feed for another city?)"
        raise FeedRejected(f"no usable traffic row: {_reasons(report)}{hint}", report)
    store = predictor.traffic
    with state.lock:
        current = store.snapshot
        if merge and current is not None:
            observations = merge_observations(current.observations, observations,
                                              keep_s=store.max_age_s + TREND_S)
        snapshot = TrafficSnapshot(predictor.graph, observations, max_age_s=store.max_age_s,
                                   source="POST /v1/traffic")
        state.installed(predictor, snapshot, "POST /v1/traffic" + (" (merged)" if merge
                                                                   else ""), report)
    logger.info("traffic snapshot %s posted: %d of %d rows used, as of %s", snapshot.key,
                report.used, report.rows, iso(snapshot.as_of_s))
    return report, now_s


def _reasons(report: FeedReport) -> str:
    return "; ".join(f"{count} {reason}" for reason, count in
                     sorted(report.rejected.items(), key=lambda item: -item[1])) or "no rows"
