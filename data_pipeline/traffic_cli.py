"""``nareta traffic check`` (what a feed's rows map to on a road graph) and ``nareta traffic
from-trips`` (a probe feed from trips that carry a driven route)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from data_pipeline.traffic import (
    DEFAULT_WINDOW_S,
    FeedError,
    FeedReport,
    map_feed,
    probe_feed,
    read_feed_files,
    validate_feed,
    write_feed,
)
from nareta.artifacts import check_output_dir
from nareta.errors import InputError


def _local_seconds(text: str | None, timezone: str | None) -> float | None:
    if text is None:
        return None
    from models.inference.live import local_seconds
    from service.schemas import parse_departure_time

    try:
        moment = parse_departure_time(text)
    except ValueError as exc:
        raise InputError(f"--now {text!r}: expected ISO-8601 or epoch seconds") from exc
    return local_seconds(moment, timezone)


# --------------------------------------------------------------------------- check
def configure_check_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("feed", type=Path, help="feed file (.parquet / .csv) or directory")
    parser.add_argument("--graph", type=Path, required=True, help="RoadGraph directory")
    parser.add_argument("--now", default=None,
                        help="reject windows that start after this time (ISO-8601 local or "
                             "epoch seconds; default: no such check)")
    parser.add_argument("--timezone", default=None,
                        help="IANA time zone of the city (for epoch seconds and offsets)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def check(feed: Path, graph_dir: Path, *, now: str | None = None,
          timezone: str | None = None) -> dict:
    """The feed's report on ``graph_dir``'s graph, with a summary of the mapped snapshot;
    raises FeedError (exit 2) when no row is usable."""
    from data_pipeline.road_graph import RoadGraph

    graph = RoadGraph.load(graph_dir)
    frame = read_feed_files(feed)
    report = FeedReport(rows=len(frame))
    valid, report = validate_feed(frame, timezone=timezone,
                                  now_s=_local_seconds(now, timezone))
    observations, report = map_feed(graph, valid, report)
    summary = {"feed": str(feed), "graph": str(graph_dir), "graph_identity": graph.identity,
               **report.to_json()}
    if len(observations):
        from models.inference.live import local_datetime

        summary.update({
            "observations": len(observations),
            "observed_segments": int(len(np.unique(observations.segment))),
            "segments": graph.num_segments,
            "windows": int(len(np.unique(observations.window_s))),
            "first_window": local_datetime(observations.window_s.min()).isoformat(),
            "as_of": local_datetime(observations.as_of_s).isoformat(),
            "snapshot": observations.key,
        })
    summary["text"] = report.summary()
    if not len(observations):
        hint = ""
        if len(valid) and report.rejected.get(
                "node pair matches no segment of this road graph", 0) == len(valid):
            hint = "\n(no node pair is on this road graph: is the feed for another city?)"
        raise FeedError(f"traffic feed {feed}: no usable row\n{report.summary()}{hint}")
    return summary


def run_check(args: argparse.Namespace) -> int:
    summary = check(args.feed, args.graph, now=args.now, timezone=args.timezone)
    if args.json:
        print(json.dumps({k: v for k, v in summary.items() if k != "text"}, indent=2))
        return 0
    print(summary["text"])
    print(f"{summary['observations']} observations (window x segment) on "
          f"{summary['observed_segments']} of {summary['segments']} segments, "
          f"{summary['windows']} windows from {summary['first_window']}, as of "
          f"{summary['as_of']}; snapshot {summary['snapshot']}")
    return 0


# --------------------------------------------------------------------------- from-trips
def configure_from_trips_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trips", type=Path,
                        help="trip table (.parquet) whose rows carry a driven 'route' "
                             "(segment indices of --graph), 'duration_s', 'departure_time'")
    parser.add_argument("--graph", type=Path, required=True, help="RoadGraph directory")
    parser.add_argument("--out", type=Path, required=True, help="feed file to write (.parquet)")
    parser.add_argument("--window-s", type=float, default=DEFAULT_WINDOW_S,
                        help="window length in seconds (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")


def from_trips(trips_path: Path, graph_dir: Path, out: Path, *,
               window_s: float = DEFAULT_WINDOW_S, force: bool = False) -> tuple[Path, int]:
    """Write the probe feed of ``trips_path`` to ``out``; (path, rows)."""
    from data_pipeline.road_graph import RoadGraph
    from data_pipeline.trips import read_trips

    if not window_s > 0:
        raise InputError(f"--window-s must be positive, not {window_s}")
    if out.suffix != ".parquet":
        raise InputError(f"--out {out}: expected a .parquet file name")
    check_output_dir(out, force=force)
    graph = RoadGraph.load(graph_dir)
    table = read_trips(trips_path)
    trips = table.frame
    if "route" not in trips.columns:
        raise FeedError(f"trips {trips_path}: no 'route' column (probe feeds need the driven "
                        "route of each trip as segment indices)")
    has_route = np.array([r is not None and len(r) > 0 for r in trips["route"]], dtype=bool)
    off_graph = np.array([r is not None and len(r) > 0 and int(np.max(r)) >= graph.num_segments
                          for r in trips["route"]], dtype=bool)
    if off_graph.any():
        raise FeedError(f"trips {trips_path}: {int(off_graph.sum())} routes name segments "
                        f"beyond this graph's {graph.num_segments}: the trips were routed on "
                        "another road graph")
    feed = probe_feed(graph, trips[has_route], window_s=window_s)
    write_feed(feed, out, metadata={"kind": "probe_feed", "trips": str(trips_path),
                                    "graph_identity": graph.identity, "window_s": window_s,
                                    "trips_used": int(has_route.sum())})
    return out, len(feed)


def run_from_trips(args: argparse.Namespace) -> int:
    out, rows = from_trips(args.trips, args.graph, args.out, window_s=args.window_s,
                           force=args.force)
    print(f"wrote {out}: {rows} feed rows")
    return 0
