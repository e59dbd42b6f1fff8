"""Loading a travel-time model artifact by the kind its manifest names, and finding the
processor an ETA model was trained against by its hash."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

from data_pipeline.road_graph import RoadGraph
from models.inference.travel_time import TravelTimeModel
from nareta.artifacts import MANIFEST_NAME, artifact_hash
from nareta.errors import ArtifactError

#: The processor shipped with the repository (``nareta pretrain``'s default output).
SHIPPED_PROCESSOR = Path(__file__).resolve().parents[2] / "artifacts_shipped" / "processor"

#: manifest kind -> "module:Class"; the class has ``load(directory, graph)``.
MODEL_KINDS: dict[str, str] = {
    "eta_model": "models.eta.model:EtaModel",
    "baseline": "models.baselines.learned:LearnedScalarBaseline",  # learned per-segment/turn times
}


def load_model(directory: str | Path, graph: RoadGraph) -> TravelTimeModel:
    """Load any registered model artifact for ``graph`` (the class checks they match)."""
    manifest_path = Path(directory) / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text())
        kind = manifest.get("kind")
    except (OSError, ValueError, AttributeError) as exc:
        raise ArtifactError(f"model {directory}: cannot read {MANIFEST_NAME} ({exc})") from exc
    if kind not in MODEL_KINDS:
        known = ", ".join(sorted(MODEL_KINDS)) or "none registered"
        raise ArtifactError(f"model {directory}: kind {kind!r} is not a travel-time model "
                            f"(known: {known}; or use 'freeflow')")
    module_name, class_name = MODEL_KINDS[kind].split(":")
    model_class = getattr(importlib.import_module(module_name), class_name)
    recorded = manifest.get("processor")
    if isinstance(recorded, dict) and "hash" in recorded:  # a model on a frozen processor
        return model_class.load(directory, graph,
                                processor_dir=find_processor(directory, recorded))
    return model_class.load(directory, graph)


def processor_candidates(model_dir: str | Path, recorded: dict) -> list[Path]:
    """Where a model's processor may be, in order: the path its manifest records (relative
    to the model), a ``processor/`` copied inside the model directory, a sibling
    ``processor/``, and the repository's shipped processor."""
    model_dir = Path(model_dir)
    places = [model_dir / str(recorded.get("path", "../processor")), model_dir / "processor",
              model_dir.parent / "processor", SHIPPED_PROCESSOR]
    unique: dict[Path, None] = {}
    for place in places:
        unique.setdefault(Path(os.path.normpath(place)), None)
    return list(unique)


def find_processor(model_dir: str | Path, recorded: dict) -> Path:
    """The first candidate directory (:func:`processor_candidates`) holding a processor
    whose hash is ``recorded["hash"]``, so a model directory copied alone still loads when
    the processor it was trained against is available; ArtifactError listing the places
    otherwise. (The hash is checked again, with the files' checksums, when it loads.)"""
    wanted = str(recorded["hash"])
    looked = []
    for place in processor_candidates(model_dir, recorded):
        looked.append(str(place))
        try:
            manifest = json.loads((place / MANIFEST_NAME).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(manifest, dict) and artifact_hash(manifest) == wanted:
            return place
    raise ArtifactError(
        f"model {model_dir}: the processor it was trained against ({wanted[:12]}) is in none "
        f"of {', '.join(looked)}; copy that processor artifact into "
        f"{Path(model_dir) / 'processor'}")
