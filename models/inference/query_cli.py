"""``nareta eta``: one ETA / route query from the command line, through the Predictor."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nareta.errors import DepartureTimeError, InputError
from nareta.timeparse import parse_departure_time


def _point(text: str) -> tuple[float, float]:
    try:
        lon, lat = (float(part) for part in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LON,LAT in degrees") from exc
    return lon, lat


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--graph", type=Path, default=None,
                        help="RoadGraph artifact (default: the bundled city, ingested once)")
    parser.add_argument("--model", default=None,
                        help="model artifact, 'freeflow' or 'freeflow-turns' (default: the "
                             "shipped model if trained on --graph, else freeflow)")
    parser.add_argument("--origin", type=_point, required=True, help="LON,LAT")
    parser.add_argument("--destination", type=_point, required=True, help="LON,LAT")
    parser.add_argument("--departure-time", default=None,
                        help="ISO-8601 (local time of the city unless it has an offset) or "
                             "epoch seconds, as the API accepts (default: 2026-11-18T12:00, "
                             "a weekday at noon, the time the learned model assumes)")
    parser.add_argument("--route", action="store_true",
                        help="also print the route: its segments with their times and "
                             "distances, and its coordinates")
    parser.add_argument("--traffic", type=Path, default=None,
                        help="traffic feed (file or directory) for a model that takes live "
                             "traffic; the answer says which snapshot it used")


def _route_fields(result) -> dict:
    """The route as the API's /v1/route gives it: per segment its id, the metres driven on
    it and its time (the first and last are the parts driven), and the coordinates."""
    legs = [{"segment": int(segment), "distance_m": round(metres, 1), "time_s": round(seconds, 1)}
            for segment, metres, seconds in zip(result.segments, result.segment_distances_m,
                                                result.segment_times_s, strict=True)]
    coordinates = [point for index, point in enumerate(result.coordinates)
                   if index == 0 or point != result.coordinates[index - 1]]
    return {"segments": legs, "fallback_used": result.fallback_used,
            "coordinates": [[round(lon, 6), round(lat, 6)] for lon, lat in coordinates]}


def _traffic_fields(result) -> dict:
    """What a live-traffic model used (nothing for models that take no traffic)."""
    if result.traffic is None:
        return {}
    as_of = result.traffic.as_of
    return {"traffic": "live" if result.traffic.live else "historical",
            "traffic_as_of": as_of.isoformat() if as_of else None,
            "traffic_reason": result.traffic.reason}


def run(args: argparse.Namespace) -> int:
    from models.inference.predictor import Predictor
    from nareta.defaults import resolve_artifacts

    try:
        departure = parse_departure_time(args.departure_time)
    except DepartureTimeError as exc:
        raise InputError(f"--departure-time: {exc}") from None
    graph_dir, model = resolve_artifacts(args.graph, args.model)
    predictor = Predictor.load(graph_dir, model)
    if args.traffic is not None:
        if not predictor.uses_traffic:
            raise InputError(f"--traffic {args.traffic}: the model ({predictor.model.name}) "
                             "takes no live traffic")
        timezone = getattr(getattr(predictor.model, "config", None), "timezone", None)
        snapshot, _ = predictor.traffic.load(predictor.graph, args.traffic, timezone=timezone)
        predictor.set_traffic(snapshot)
    if args.route:
        result = predictor.route(args.origin, args.destination, departure)
        extra = _route_fields(result)
    else:
        result = predictor.eta(args.origin, args.destination, departure)
        extra = {}
    print(json.dumps({"model": predictor.model.name, "eta_s": round(result.eta_s, 1),
                      "distance_m": round(result.distance_m, 1),
                      "departure_time": departure.isoformat() if departure else None,
                      "origin_snap_m": round(result.origin.distance_m, 1),
                      "destination_snap_m": round(result.destination.distance_m, 1),
                      **_traffic_fields(result), **extra}))
    return 0
