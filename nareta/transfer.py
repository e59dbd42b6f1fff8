"""``nareta transfer``: apply an ETA model trained on one city to another city's RoadGraph.

The encoder and decoder map road features to travel times and do not depend on the city,
so they carry over unchanged; the per-segment offsets learned on the training graph do not
(they are zero on the new graph). The result is an ordinary EtaModel artifact for the new
graph whose manifest records where it came from (``transferred_from``), so loading a model
on a graph it was not made for stays an error everywhere else.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any

from nareta.artifacts import artifact_hash, check_output_dir, read_manifest
from nareta.errors import InputError


def transfer_model(model_dir: str | os.PathLike[str], graph_dir: str | os.PathLike[str],
                   out_dir: str | os.PathLike[str], *, timezone: str | None = None,
                   force: bool = False) -> Path:
    """Write ``out_dir``: the EtaModel ``model_dir`` made for the RoadGraph ``graph_dir``.

    ``timezone`` (IANA name) replaces the source model's, for a city on another clock.
    Raises InputError when the model already belongs to that graph or is not an ETA model.
    """
    from data_pipeline.road_graph import RoadGraph
    from models.eta.model import KIND, SCHEMA_VERSION, EtaModel

    out_dir = Path(out_dir)
    check_output_dir(out_dir, force=force)  # fail before any work
    source = read_manifest(model_dir, kind=KIND, schema_versions=(SCHEMA_VERSION,))
    graph = RoadGraph.load(graph_dir)
    if source["graph_identity"] == graph.identity:
        raise InputError(f"model {model_dir} was trained on {graph_dir} already; use it as it "
                         "is (transfer makes a model for another city)")
    if timezone is not None:
        _check_timezone(timezone)
    model = EtaModel.load(model_dir, graph, allow_other_graph=True)
    if timezone is not None:
        model.config = dataclasses.replace(model.config, timezone=timezone)
    from models.inference.registry import find_processor

    processor_dir = find_processor(model_dir, source["processor"]).resolve()
    record: dict[str, Any] = {
        "model": str(Path(model_dir).resolve()),
        "model_identity": artifact_hash(source),
        "graph_identity": source["graph_identity"],
        "to_graph": str(Path(graph_dir).resolve()),
        "to_graph_identity": graph.identity,
        "timezone": model.config.timezone,
        "note": "encoder and decoder unchanged; per-segment offsets are zero on this graph",
    }
    extra = {"transferred_from": record}
    if "training" in source:
        extra["training"] = source["training"]
    return model.save(out_dir, processor_dir=processor_dir, seed=source.get("seed"),
                      extra=extra, force=force)


def _check_timezone(name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InputError(f"--timezone {name!r}: not an IANA time zone "
                         "(e.g. Europe/Helsinki)") from exc


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True,
                        help="EtaModel artifact trained on another city "
                             "(e.g. artifacts_shipped/eta_baltimore)")
    parser.add_argument("--graph", type=Path, required=True,
                        help="RoadGraph of the city to apply it to (a `nareta ingest` output)")
    parser.add_argument("--out", type=Path, required=True, help="model artifact to write")
    parser.add_argument("--timezone", default=None,
                        help="IANA time zone of the new city (default: the model's)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")


def run(args: argparse.Namespace) -> int:
    out = transfer_model(args.model, args.graph, args.out, timezone=args.timezone,
                         force=args.force)
    print(f"wrote {out}: {args.model} applied to {args.graph} (use it with --graph "
          f"{args.graph} --model {out})")
    return 0
