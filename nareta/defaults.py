"""What a command uses when it is not told: the bundled city, the shipped model, and the one
reading of a ``--model`` value.

* The bundled city is ``data/osm/baltimore.osm.pbf``. :func:`bundled_graph_dir` ingests it
  once into the cache directory (``$NARETA_CACHE_DIR``, else ``$XDG_CACHE_HOME/nareta``,
  else ``~/.cache/nareta``) under a name that carries the file's sha256, and afterwards only
  verifies that artifact (its manifest's checksums and source sha256); a cache that does
  not verify is rebuilt.
* :func:`resolve_model` is the only place a ``--model`` value (or ``NARETA_MODEL_DIR``) is
  read: ``freeflow``, ``freeflow-turns`` or an artifact directory; unset means the shipped
  model when it was trained on the graph in use, else ``freeflow``.
  :func:`load_travel_time_model` turns a resolved value into a model.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from nareta.artifacts import MANIFEST_NAME, sha256_file
from nareta.errors import ArtifactError, InputError

if TYPE_CHECKING:
    from data_pipeline.road_graph import RoadGraph
    from models.inference.travel_time import TravelTimeModel

REPO = Path(__file__).resolve().parents[1]
BUNDLED_OSM = REPO / "data" / "osm" / "baltimore.osm.pbf"
SHIPPED_MODEL = REPO / "artifacts_shipped" / "eta_baltimore"
#: models that need no artifact: ``--model NAME`` -> "module:Class", built as Class(graph)
NAMED_MODELS: dict[str, str] = {
    "freeflow": "models.baselines.freeflow:FreeFlowModel",
    "freeflow-turns": "models.baselines.freeflow:FreeFlowTurnModel",
    "live-scalar": "models.baselines.freeflow:LiveScalarModel",
}


def cache_dir() -> Path:
    """Where derived artifacts of the bundled data live (created on first use)."""
    if os.environ.get("NARETA_CACHE_DIR"):
        return Path(os.environ["NARETA_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nareta"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock file, so two processes never ingest the same city at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _verified(directory: Path, source_sha256: str) -> bool:
    from data_pipeline.road_graph import RoadGraph

    if not (directory / MANIFEST_NAME).is_file():
        return False
    try:
        graph = RoadGraph.load(directory)  # checks kind, schema version and every checksum
    except ArtifactError:
        return False
    return graph.manifest.get("source", {}).get("sha256") == source_sha256


def bundled_graph_dir(*, osm: Path = BUNDLED_OSM, quiet: bool = False) -> Path:
    """The RoadGraph of the bundled city, ingested on first use and verified afterwards."""
    if not osm.is_file():
        raise InputError(f"the bundled city {osm} is missing; pass --graph DIR "
                         "(a `nareta ingest` output)")
    source_sha256 = sha256_file(osm)
    name = osm.name.split(".")[0]
    from data_pipeline.road_graph import INGEST_FORMAT

    # keyed by the source and by what ingest keeps (a newer ingest re-ingests once)
    out = cache_dir() / "graphs" / f"{name}-{source_sha256[:16]}-f{INGEST_FORMAT}"
    if _verified(out, source_sha256):
        return out
    with _locked(out.parent / f".{out.name}.lock"):
        if _verified(out, source_sha256):  # another process built it meanwhile
            return out
        from data_pipeline.ingest import ingest_osm

        if not quiet:
            print(f"nareta: ingesting the bundled city {osm.name} into {out} (once)",
                  file=sys.stderr)
        result = ingest_osm(osm)
        result.graph.save(out, force=True, seed=0,
                          extra_manifest={"source": result.report["source"]})
    return out


def graph_or_bundled(graph_dir: str | os.PathLike[str] | None) -> Path:
    """``--graph`` if given, else the bundled city."""
    return Path(graph_dir) if graph_dir is not None else bundled_graph_dir()


def _trained_on(model_dir: Path) -> str | None:
    try:
        manifest = json.loads((model_dir / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    return manifest.get("graph_identity") if isinstance(manifest, dict) else None


def resolve_model(value: str | os.PathLike[str] | None, *,
                  graph: RoadGraph | None = None) -> str:
    """The one reading of a ``--model`` value (CLI options and ``NARETA_MODEL_DIR``).

    Returns a name in :data:`NAMED_MODELS` (``"freeflow"``, ``"freeflow-turns"``, ...) or
    the absolute path of a model artifact directory. ``None`` or ``""`` means the default:
    with ``graph``, the shipped model when its manifest names this very graph, else
    ``"freeflow"``; without one, ``"freeflow"``.
    A path that is not a directory with a manifest raises ArtifactError naming the choices.
    """
    if value is None or str(value) == "":
        if graph is not None and _trained_on(SHIPPED_MODEL) == graph.identity:
            return str(SHIPPED_MODEL)
        return "freeflow"
    text = str(value)
    if text in NAMED_MODELS:
        return text
    path = Path(text).expanduser()
    names = ", ".join(NAMED_MODELS)
    if not path.is_dir():
        raise ArtifactError(f"model {text!r}: not a directory; expected a model artifact "
                            f"directory or one of {names}")
    if not (path / MANIFEST_NAME).is_file():
        raise ArtifactError(f"model {text!r}: no {MANIFEST_NAME} in it; expected a model "
                            f"artifact directory or one of {names}")
    return str(path.resolve())


def load_travel_time_model(value: str | os.PathLike[str] | None,
                           graph: RoadGraph) -> TravelTimeModel:
    """The model :func:`resolve_model` names, loaded for ``graph`` (an artifact must have
    been trained on it; see ``nareta transfer`` for another city)."""
    resolved = resolve_model(value, graph=graph)
    if resolved in NAMED_MODELS:
        module_name, class_name = NAMED_MODELS[resolved].split(":")
        return getattr(importlib.import_module(module_name), class_name)(graph)
    from models.inference.registry import load_model

    return load_model(resolved, graph)


def resolve_artifacts(graph_dir: str | os.PathLike[str] | None,
                      model: str | os.PathLike[str] | None, *,
                      quiet: bool = False, say_model: bool = True) -> tuple[Path, str]:
    """``--graph`` and ``--model`` of a command with their defaults filled in: the bundled
    city, and the shipped model when it was trained on that graph (else ``freeflow``).
    Says on stderr when it ingests the bundled city and (``say_model``) which model it
    picked, unless ``quiet``."""
    resolved_graph = Path(graph_dir) if graph_dir is not None else bundled_graph_dir(quiet=quiet)
    if model is not None and str(model) != "":
        return resolved_graph, resolve_model(model)
    from data_pipeline.road_graph import RoadGraph

    resolved = resolve_model(None, graph=RoadGraph.load(resolved_graph))
    if say_model and not quiet:
        why = ("the shipped model, trained on this graph" if resolved != "freeflow"
               else "the shipped model was trained on another graph")
        print(f"nareta: no --model given: using {_display(resolved)} ({why})", file=sys.stderr)
    return resolved_graph, resolved


def _display(resolved: str) -> str:
    with contextlib.suppress(ValueError):
        return str(Path(resolved).relative_to(Path.cwd()))
    return resolved
