"""``nareta ingest``: OSM file (or, online, a place / bbox) → RoadGraph artifact."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from nareta.artifacts import check_output_dir
from nareta.errors import InputError


def _bbox(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WEST,SOUTH,EAST,NORTH") from exc
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 4 numbers WEST,SOUTH,EAST,NORTH")
    return values  # type: ignore[return-value]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", nargs="?", type=Path, help="OSM file: .osm.pbf, .osm or .osm.bz2")
    parser.add_argument("--place", help="place name to download (needs the internet)")
    parser.add_argument(
        "--bbox",
        type=_bbox,
        help="WEST,SOUTH,EAST,NORTH box: clips SOURCE to it, or, without "
        "SOURCE, downloads it (needs the internet)",
    )
    parser.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from data_pipeline.ingest import ingest_online, ingest_osm

    if args.source is not None and args.place is not None:
        raise InputError("give SOURCE (an OSM file) or --place, not both")
    if args.source is None and args.place is None and args.bbox is None:
        raise InputError("give SOURCE (an OSM file), --place or --bbox")
    check_output_dir(args.out, force=args.force)  # fail before any work
    if args.source is not None:
        result = ingest_osm(args.source, bbox=args.bbox)
    else:
        with tempfile.TemporaryDirectory() as download_dir:
            result = ingest_online(
                place=args.place, bbox=args.bbox, download_dir=Path(download_dir)
            )
    result.graph.save(
        args.out, force=args.force, seed=0, extra_manifest={"source": result.report["source"]}
    )
    summary = result.graph.summary()
    if args.json:
        print(json.dumps({"out": str(args.out), **result.report}, indent=2))
    else:
        repairs = result.report["repairs"]
        print(
            f"wrote {args.out}: {summary['nodes']} nodes, {summary['segments']} segments, "
            f"{summary['turns']} turns, {summary['total_length_km']} km of road, "
            f"{summary['signals']} signals; maxspeed imputed on "
            f"{summary['maxspeed_imputed_share']:.0%} of segments; repaired "
            f"{repairs['clipped_ways']} clipped ways, dropped "
            f"{repairs['duplicate_ways_dropped']} duplicate ways; "
            f"{result.report['restrictions']['applied']} turn restrictions applied "
            f"({result.report['seconds']} s)"
        )
    return 0
