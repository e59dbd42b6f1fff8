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
    parser.add_argument("--graph", type=Path, required=True, help="RoadGraph artifact")
    parser.add_argument("--model", default=None,
                        help="EtaModel artifact, or 'freeflow' / 'freeflow-turns' (default: "
                             "freeflow)")
    parser.add_argument("--origin", type=_point, required=True, help="LON,LAT")
    parser.add_argument("--destination", type=_point, required=True, help="LON,LAT")
    parser.add_argument("--departure-time", default=None,
                        help="ISO-8601 (local time of the city unless it has an offset) or "
                             "epoch seconds (default: a weekday at noon)")
    parser.add_argument("--route", action="store_true", help="also print the route")


def run(args: argparse.Namespace) -> int:
    from models.predictor import Predictor

    try:
        departure = parse_departure_time(args.departure_time)
    except DepartureTimeError as exc:
        raise InputError(f"--departure-time: {exc}") from None
    predictor = Predictor.load(args.graph, args.model)
    if args.route:
        result = predictor.route(args.origin, args.destination, departure)
        extra = {"segments": len(result.segments), "fallback_used": result.fallback_used}
    else:
        result = predictor.eta(args.origin, args.destination, departure)
        extra = {}
    print(json.dumps({"model": predictor.model.name, "eta_s": round(result.eta_s, 1),
                      "distance_m": round(result.distance_m, 1),
                      "departure_time": departure.isoformat() if departure else None,
                      "origin_snap_m": round(result.origin.distance_m, 1),
                      "destination_snap_m": round(result.destination.distance_m, 1), **extra}))
    return 0
