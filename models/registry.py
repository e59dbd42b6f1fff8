"""Loading a travel-time model artifact by the kind its manifest names."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from data_pipeline.road_graph import RoadGraph
from models.travel_time import TravelTimeModel
from nareta.artifacts import MANIFEST_NAME
from nareta.errors import ArtifactError

#: manifest kind -> "module:Class"; the class has ``load(directory, graph)``.
MODEL_KINDS: dict[str, str] = {
    "eta_model": "models.eta:EtaModel",
    "baseline": "models.baselines:LearnedScalarBaseline",  # learned per-segment/turn times
}


def load_model(directory: str | Path, graph: RoadGraph) -> TravelTimeModel:
    """Load any registered model artifact for ``graph`` (the class checks they match)."""
    manifest_path = Path(directory) / MANIFEST_NAME
    try:
        kind = json.loads(manifest_path.read_text()).get("kind")
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"model {directory}: cannot read {MANIFEST_NAME} ({exc})") from exc
    if kind not in MODEL_KINDS:
        known = ", ".join(sorted(MODEL_KINDS)) or "none registered"
        raise ArtifactError(f"model {directory}: kind {kind!r} is not a travel-time model "
                            f"(known: {known}; or use 'freeflow')")
    module_name, class_name = MODEL_KINDS[kind].split(":")
    model_class = getattr(importlib.import_module(module_name), class_name)
    return model_class.load(directory, graph)
