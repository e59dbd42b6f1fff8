"""Copy a trained EtaModel into artifacts_shipped/ (re-saved against the shipped processor,
so its manifest's relative processor path is right), recording where it came from.

    python scripts/ship_model.py runs/traffic/baltimore/nar_live_seed0 \
        --graph runs/traffic/baltimore/graph --out artifacts_shipped/eta_baltimore \
        --timezone America/New_York --note "python benchmarks/traffic.py ..."
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    from data_pipeline.road_graph import RoadGraph
    from models.eta.model import EtaModel

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--graph", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--note", default="", help="the command that trained it")
    parser.add_argument("--timezone", default=None,
                        help="IANA timezone of the city for departures given with an offset")
    args = parser.parse_args()
    graph = RoadGraph.load(args.graph)
    model = EtaModel.load(args.model, graph)
    manifest = model.manifest
    if args.timezone:
        import dataclasses
        from zoneinfo import ZoneInfo

        ZoneInfo(args.timezone)  # fails on an unknown zone
        model.config = dataclasses.replace(model.config, timezone=args.timezone)
    extra = {key: manifest[key] for key in ("training", "benchmark") if key in manifest}
    extra["shipped_from"] = {"model": str(args.model), "trained_by": args.note,
                             "model_manifest_seed": manifest.get("seed")}
    model.save(args.out, processor_dir=REPO / "artifacts_shipped" / "processor",
               seed=int(manifest.get("seed", 0)), extra=extra, force=True)
    print(f"shipped {args.model} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
