"""``nareta processor predict``: neural shortest paths for a set of graphs in an ``.npz``.

Input (``--graphs``, loaded with ``allow_pickle=False``): ``num_graphs`` and, for each graph
``i``: ``num_nodes_i`` (int), ``senders_i`` and ``receivers_i`` (int arrays of directed
edges; an undirected graph lists both directions; self-loops and parallel edges may occur),
``weights_i`` (float, > 0) and ``source_i`` (int).

Output (``--out``): ``num_graphs`` and, for each ``i``, ``pi_i`` (int64 predecessor of every
node on a shortest path from the source; ``pi[source] = source``; an unreachable node
points to itself) and ``dist_i`` (float64, ``inf`` where unreachable). The whole input is
validated before any work; the output is written to a temporary file and renamed, so a
failed run leaves no partial file.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nareta.errors import InputError, OutputExistsError, OutputNotWritableError

DEFAULT_PROCESSOR = Path(__file__).resolve().parents[2] / "artifacts_shipped" / "processor"


@dataclass(frozen=True)
class GraphInput:
    num_nodes: int
    senders: np.ndarray
    receivers: np.ndarray
    weights: np.ndarray
    source: int


def _integer_scalar(data, key: str, where: str) -> int:
    value = np.asarray(data[key])
    if value.size != 1 or not (
        np.issubdtype(value.dtype, np.integer)
        or (np.issubdtype(value.dtype, np.floating) and float(value.reshape(-1)[0]).is_integer())
    ):
        raise InputError(
            f"{where}: {key} must be one integer, got {value.dtype} shape {value.shape}"
        )
    return int(value.reshape(-1)[0])


def read_graphs(path: str | os.PathLike[str]) -> list[GraphInput]:
    """Read and validate every graph of an input ``.npz`` (raises :class:`InputError`)."""
    where = f"graphs {path}"
    if not Path(path).is_file():
        raise InputError(f"{where}: no such file")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{where}: not a readable .npz file ({exc})") from exc
    with data:
        if "num_graphs" not in data.files:
            raise InputError(f"{where}: missing key num_graphs")
        count = _integer_scalar(data, "num_graphs", where)
        if count < 0:
            raise InputError(f"{where}: num_graphs must be >= 0, got {count}")
        graphs = []
        for i in range(count):
            keys = [f"{k}_{i}" for k in ("num_nodes", "senders", "receivers", "weights", "source")]
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise InputError(
                    f"{where}: missing keys {', '.join(missing)} (num_graphs is {count})"
                )
            graphs.append(_validate_graph(data, i, where))
    return graphs


def _validate_graph(data, i: int, where: str) -> GraphInput:
    n = _integer_scalar(data, f"num_nodes_{i}", where)
    if n < 1:
        raise InputError(f"{where}: num_nodes_{i} must be >= 1, got {n}")
    arrays = {}
    for name in ("senders", "receivers"):
        values = np.asarray(data[f"{name}_{i}"])
        if values.ndim != 1 or not (np.issubdtype(values.dtype, np.integer) or values.size == 0):
            raise InputError(
                f"{where}: {name}_{i} must be a 1-D integer array, got "
                f"{values.dtype} shape {values.shape}"
            )
        if values.size and (values.min() < 0 or values.max() >= n):
            raise InputError(f"{where}: {name}_{i} holds node indices outside [0, {n})")
        arrays[name] = values.astype(np.int64)
    weights = np.asarray(data[f"weights_{i}"])
    if weights.ndim != 1 or not (np.issubdtype(weights.dtype, np.number) or weights.size == 0):
        raise InputError(
            f"{where}: weights_{i} must be a 1-D float array, got {weights.dtype} "
            f"shape {weights.shape}"
        )
    weights = weights.astype(np.float64)
    if not arrays["senders"].size == arrays["receivers"].size == weights.size:
        raise InputError(
            f"{where}: senders_{i}, receivers_{i} and weights_{i} differ in length "
            f"({arrays['senders'].size}, {arrays['receivers'].size}, "
            f"{weights.size})"
        )
    if weights.size and not np.all(np.isfinite(weights)):
        raise InputError(f"{where}: weights_{i} holds NaN or infinite values")
    if weights.size and weights.min() <= 0:
        raise InputError(f"{where}: weights_{i} must be > 0, found {weights.min():g}")
    source = _integer_scalar(data, f"source_{i}", where)
    if not 0 <= source < n:
        raise InputError(f"{where}: source_{i} = {source} is outside [0, {n})")
    return GraphInput(n, arrays["senders"], arrays["receivers"], weights, source)


def write_npz_atomic(path: Path, arrays: dict[str, np.ndarray], *, force: bool) -> None:
    """Write an ``.npz`` to a temporary file beside ``path`` and rename it into place."""
    if path.exists() and not force:
        raise OutputExistsError(f"output {path}: already exists; pass --force to replace it")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise OutputNotWritableError(
            f"output {path}: cannot write in {parent} ({exc.strerror})"
        ) from exc
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def predict(
    graphs: list[GraphInput], processor_dir: str | os.PathLike[str]
) -> dict[str, np.ndarray]:
    """Run the pretrained processor on every graph; returns the output arrays."""
    import torch

    from models.processor.model import load_pretrained, shortest_paths

    processor, encoder, _ = load_pretrained(processor_dir)
    out: dict[str, np.ndarray] = {"num_graphs": np.array(len(graphs), dtype=np.int64)}
    with torch.no_grad():
        for i, g in enumerate(graphs):
            distance, pointer, _ = shortest_paths(
                processor, encoder, g.num_nodes, g.senders, g.receivers, g.weights, [g.source]
            )
            out[f"pi_{i}"] = pointer[0].astype(np.int64)
            out[f"dist_{i}"] = distance[0].astype(np.float64)
    return out


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--graphs", required=True, type=Path, help="input .npz (see docs)")
    parser.add_argument("--out", required=True, type=Path, help="output .npz")
    parser.add_argument(
        "--processor",
        type=Path,
        default=DEFAULT_PROCESSOR,
        help="Processor artifact directory (default: the shipped one)",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing --out")


def run(args: argparse.Namespace) -> int:
    graphs = read_graphs(args.graphs)
    if args.out.exists() and not args.force:
        raise OutputExistsError(f"output {args.out}: already exists; pass --force to replace it")
    arrays = predict(graphs, args.processor)
    write_npz_atomic(args.out, arrays, force=args.force)
    print(f"wrote {args.out}: {len(graphs)} graphs")
    return 0
