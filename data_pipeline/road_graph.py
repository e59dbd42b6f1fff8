"""The RoadGraph artifact: a simplified, strongly connected drive network with raw segment
and turn features.

A *segment* is a directed edge of the simplified graph (one way of travel along a chain of
OSM ways between two junctions); a *turn* is a pair of segments (``turn_from`` ends at the
node where ``turn_to`` starts) that a car may drive in sequence.

Layout on disk (``graph.npz``, loaded with ``allow_pickle=False``):

===================  =========  ========================================================
array                shape      meaning
===================  =========  ========================================================
node_osm_id          [N]        OSM node id
node_lon, node_lat   [N]        WGS84 degrees
node_x_m, node_y_m   [N]        projected metres (UTM, EPSG in the manifest)
node_control         [N]        junction control: 0 none, 1 signal, 2 stop, 3 give-way
node_crossing        [N]        1 where a pedestrian crossing is tagged at the node
edge_source/target   [E]        segment end nodes (indices into the node arrays)
<segment feature>    [E]        one array per name in ``SEGMENT_FEATURES``
path_offsets         [E+1]      segment i's OSM node path is path_*[off[i]:off[i+1]]
path_osm_node        [P]        OSM node ids along each segment (both ends included)
path_lon, path_lat   [P]        the segment geometry
path_way_id          [P]        OSM way of the piece ending at this point (first point:
                                 the first piece's way)
segment_name         [E]        OSM street name (``name``, else ``ref``, else "") of the
                                 way covering most of the segment (optional; display only,
                                 not part of the graph's identity)
turn_from, turn_to   [T]        segment indices of each allowed turn
<turn feature>       [T]        one array per name in ``TURN_FEATURES``
===================  =========  ========================================================
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nareta.artifacts import atomic_artifact_dir, read_manifest, write_manifest
from nareta.errors import ArtifactError

if TYPE_CHECKING:
    from torch_geometric.data import Data

#: arrays for people, not models (street names): left out of :attr:`RoadGraph.identity`,
#: so a graph ingested before they existed is the same graph to a trained model
DISPLAY_ARRAYS = frozenset({"segment_name"})

#: what `nareta ingest` puts in a RoadGraph; caches of the bundled city are keyed by it
#: (2: OSM street names per segment)
INGEST_FORMAT = 2

KIND = "road_graph"
SCHEMA_VERSION = 1
ARRAYS_FILE = "graph.npz"

#: Highway classes cars use, ordered from most to least important (the index is the rank).
HIGHWAY_CLASSES: tuple[str, ...] = (
    "motorway",
    "trunk",
    "primary",
    "secondary",
    "tertiary",
    "motorway_link",
    "trunk_link",
    "primary_link",
    "secondary_link",
    "tertiary_link",
    "unclassified",
    "residential",
    "living_street",
    "road",
)
#: Classes that count as "major" when deciding whether a turn crosses a major road.
MAJOR_HIGHWAY_CLASSES = frozenset({"motorway", "trunk", "primary", "secondary"})
SURFACES: tuple[str, ...] = ("unknown", "paved", "asphalt", "concrete", "sett", "unpaved")
CONTROLS: tuple[str, ...] = ("none", "signal", "stop", "give_way")
TURN_KINDS: tuple[str, ...] = ("straight", "right", "left", "uturn")

#: name -> dtype of every per-segment feature array.
SEGMENT_FEATURES: dict[str, str] = {
    "length_m": "float32",
    "highway": "int16",  # index into HIGHWAY_CLASSES
    "maxspeed_kph": "float32",
    "maxspeed_imputed": "bool",
    "lanes": "float32",
    "lanes_imputed": "bool",
    "oneway": "bool",
    "reversed": "bool",  # travels against the OSM way's digitised direction
    "bridge": "bool",
    "tunnel": "bool",
    "surface": "int16",  # index into SURFACES
    "curvature": "float32",  # path length / straight-line distance, >= 1
    "bearing_in_deg": "float32",  # bearing of the first piece, 0 = north, clockwise
    "bearing_out_deg": "float32",  # bearing of the last piece
    "signals_along": "int16",  # interior nodes only
    "stops_along": "int16",
    "crossings_along": "int16",
    "control_at_end": "int16",  # index into CONTROLS (the target node's control)
    "crossing_at_end": "bool",
    "source_in_degree": "int16",
    "source_out_degree": "int16",
    "target_in_degree": "int16",
    "target_out_degree": "int16",
    "free_flow_s": "float32",  # length / maxspeed, what osmnx's add_edge_travel_times gives
}
#: name -> dtype of every per-turn feature array.
TURN_FEATURES: dict[str, str] = {
    "turn_angle_deg": "float32",  # signed, (-180, 180], positive = to the right
    "turn_kind": "int16",  # index into TURN_KINDS
    "turn_control": "int16",  # index into CONTROLS, the junction's control
    "turn_crosses_major": "bool",  # crosses or enters a higher-class major road
}
_NODE_ARRAYS = (
    "node_osm_id",
    "node_lon",
    "node_lat",
    "node_x_m",
    "node_y_m",
    "node_control",
    "node_crossing",
)
_PATH_ARRAYS = ("path_offsets", "path_osm_node", "path_lon", "path_lat", "path_way_id")


@dataclass
class RoadGraph:
    """A drive network with raw features, as arrays. Build it with
    :func:`data_pipeline.ingest.ingest_osm`; persist it with :meth:`save` / :meth:`load`."""

    arrays: dict[str, np.ndarray]
    crs_epsg: int
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ shape
    @property
    def num_nodes(self) -> int:
        return int(self.arrays["node_osm_id"].shape[0])

    @property
    def num_segments(self) -> int:
        return int(self.arrays["edge_source"].shape[0])

    @property
    def num_turns(self) -> int:
        return int(self.arrays["turn_from"].shape[0])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    @property
    def edge_index(self) -> np.ndarray:
        """``[2, E]`` int64 (source, target) of every segment."""
        return np.stack([self.arrays["edge_source"], self.arrays["edge_target"]])

    @property
    def identity(self) -> str:
        """A hash of the graph's content (every array, by name), the same for every ingest of
        the same source: models record it to refuse a graph they were not trained on."""
        cached = getattr(self, "_identity", None)
        if cached is None:
            digest = hashlib.sha256()
            for name in sorted(set(self.arrays) - DISPLAY_ARRAYS):
                array = np.ascontiguousarray(self.arrays[name])
                digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
                digest.update(array.tobytes())
            cached = self._identity = digest.hexdigest()
        return cached

    def street_name(self, segment: int) -> str:
        """The segment's OSM street name ("" when unnamed or ingested without names)."""
        names = self.arrays.get("segment_name")
        return str(names[int(segment)]) if names is not None else ""

    def reverse_twins(self) -> np.ndarray:
        """``[E]`` for each segment, the segment running the same OSM node path the other way
        (the other direction of a two-way street), or -1 (one-way streets). Cached."""
        cached = getattr(self, "_reverse_twins", None)
        if cached is None:
            offsets, nodes = self.arrays["path_offsets"], self.arrays["path_osm_node"]
            paths = [tuple(nodes[offsets[i]:offsets[i + 1]].tolist())
                     for i in range(self.num_segments)]
            index = {path: i for i, path in enumerate(paths)}
            cached = np.array([index.get(path[::-1], -1) for path in paths], dtype=np.int64)
            self._reverse_twins = cached
        return cached

    def segment_path(self, segment: int) -> slice:
        offsets = self.arrays["path_offsets"]
        return slice(int(offsets[segment]), int(offsets[segment + 1]))

    def validate(self) -> None:
        """Check that every array is present with a consistent shape and valid indices."""
        required = (
            _NODE_ARRAYS
            + ("edge_source", "edge_target", "turn_from", "turn_to")
            + tuple(SEGMENT_FEATURES)
            + tuple(TURN_FEATURES)
            + _PATH_ARRAYS
        )
        missing = [name for name in required if name not in self.arrays]
        if missing:
            raise ArtifactError(f"road graph: missing arrays {missing}")
        n, e, t = self.num_nodes, self.num_segments, self.num_turns
        for name in _NODE_ARRAYS:
            if self.arrays[name].shape != (n,):
                raise ArtifactError(
                    f"road graph: {name} has shape {self.arrays[name].shape}, expected ({n},)"
                )
        optional = [name for name in DISPLAY_ARRAYS if name in self.arrays]
        for name in ("edge_source", "edge_target", *SEGMENT_FEATURES, *optional):
            if self.arrays[name].shape != (e,):
                raise ArtifactError(
                    f"road graph: {name} has shape {self.arrays[name].shape}, expected ({e},)"
                )
        for name in ("turn_from", "turn_to", *TURN_FEATURES):
            if self.arrays[name].shape != (t,):
                raise ArtifactError(
                    f"road graph: {name} has shape {self.arrays[name].shape}, expected ({t},)"
                )
        if self.arrays["path_offsets"].shape != (e + 1,):
            raise ArtifactError("road graph: path_offsets must have one entry per segment + 1")
        for name in ("edge_source", "edge_target"):
            values = self.arrays[name]
            if e and (values.min() < 0 or values.max() >= n):
                raise ArtifactError(f"road graph: {name} holds node indices outside [0, {n})")
        for name in ("turn_from", "turn_to"):
            values = self.arrays[name]
            if t and (values.min() < 0 or values.max() >= e):
                raise ArtifactError(f"road graph: {name} holds segment indices outside [0, {e})")

    # ------------------------------------------------------------------ views
    def numeric_segment_features(self) -> tuple[np.ndarray, list[str]]:
        """``[E, F]`` float32 matrix of every segment feature (categoricals one-hot)."""
        columns: list[np.ndarray] = []
        names: list[str] = []
        for name in SEGMENT_FEATURES:
            values = self.arrays[name]
            vocabulary = {
                "highway": HIGHWAY_CLASSES,
                "surface": SURFACES,
                "control_at_end": CONTROLS,
            }.get(name)
            if vocabulary is not None:
                for index, label in enumerate(vocabulary):
                    columns.append((values == index).astype(np.float32))
                    names.append(f"{name}={label}")
            else:
                columns.append(values.astype(np.float32))
                names.append(name)
        return np.stack(columns, axis=1), names

    def numeric_turn_features(self) -> tuple[np.ndarray, list[str]]:
        """``[T, F]`` float32 matrix of every turn feature (categoricals one-hot)."""
        columns: list[np.ndarray] = []
        names: list[str] = []
        for name in TURN_FEATURES:
            values = self.arrays[name]
            vocabulary = {"turn_kind": TURN_KINDS, "turn_control": CONTROLS}.get(name)
            if vocabulary is not None:
                for index, label in enumerate(vocabulary):
                    columns.append((values == index).astype(np.float32))
                    names.append(f"{name}={label}")
            else:
                columns.append(values.astype(np.float32))
                names.append(name)
        return np.stack(columns, axis=1), names

    def to_pyg(self) -> Data:
        """A ``torch_geometric.data.Data`` view: ``edge_index`` [2, E], ``edge_attr`` [E, F],
        ``pos`` [N, 2] projected metres, ``turn_index`` [2, T], ``turn_attr`` [T, G]."""
        import torch
        from torch_geometric.data import Data

        segment_matrix, segment_names = self.numeric_segment_features()
        turn_matrix, turn_names = self.numeric_turn_features()
        return Data(
            edge_index=torch.from_numpy(self.edge_index.astype(np.int64)),
            edge_attr=torch.from_numpy(segment_matrix),
            pos=torch.from_numpy(
                np.stack([self.arrays["node_x_m"], self.arrays["node_y_m"]], axis=1)
            ).float(),
            num_nodes=self.num_nodes,
            turn_index=torch.from_numpy(
                np.stack([self.arrays["turn_from"], self.arrays["turn_to"]]).astype(np.int64)
            ),
            turn_attr=torch.from_numpy(turn_matrix),
            edge_attr_names=segment_names,
            turn_attr_names=turn_names,
        )

    def to_scipy(self, weights: np.ndarray | None = None):
        """Segment graph as a ``scipy.sparse.csr_matrix`` [N, N]; parallel segments keep the
        smallest weight. ``weights`` defaults to ``free_flow_s``."""
        from scipy.sparse import coo_matrix

        weight = self.arrays["free_flow_s"] if weights is None else np.asarray(weights)
        source, target = self.arrays["edge_source"], self.arrays["edge_target"]
        by_weight = np.argsort(weight, kind="stable")
        pair = source[by_weight] * self.num_nodes + target[by_weight]
        _, first = np.unique(pair, return_index=True)  # first = lightest of each parallel set
        keep = by_weight[first]
        matrix = coo_matrix(
            (weight[keep], (source[keep], target[keep])), shape=(self.num_nodes, self.num_nodes)
        ).tocsr()
        return matrix

    def summary(self) -> dict[str, Any]:
        """Counts and totals for printing."""
        return {
            "nodes": self.num_nodes,
            "segments": self.num_segments,
            "turns": self.num_turns,
            "total_length_km": round(float(self.arrays["length_m"].sum()) / 1000, 2),
            "maxspeed_imputed_share": round(float(self.arrays["maxspeed_imputed"].mean()), 3),
            "signals": int((self.arrays["node_control"] == CONTROLS.index("signal")).sum()),
            "crs_epsg": self.crs_epsg,
        }

    # ------------------------------------------------------------------ persistence
    def save(
        self,
        out_dir: str | os.PathLike[str],
        *,
        force: bool = False,
        seed: int | None = None,
        extra_manifest: dict[str, Any] | None = None,
    ) -> Path:
        """Write the artifact atomically; refuse an existing ``out_dir`` unless ``force``."""
        with atomic_artifact_dir(out_dir, force=force) as staging:
            np.savez_compressed(staging / ARRAYS_FILE, **self.arrays)
            extra = {
                "crs_epsg": self.crs_epsg,
                "counts": {
                    "nodes": self.num_nodes,
                    "segments": self.num_segments,
                    "turns": self.num_turns,
                },
                "vocabularies": {
                    "highway": list(HIGHWAY_CLASSES),
                    "surface": list(SURFACES),
                    "control": list(CONTROLS),
                    "turn_kind": list(TURN_KINDS),
                },
                "metadata": self.metadata,
            }
            extra.update(extra_manifest or {})
            write_manifest(
                staging, kind=KIND, schema_version=SCHEMA_VERSION, seed=seed, extra=extra
            )
        return Path(out_dir)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], *, verify: bool = True) -> RoadGraph:
        """Load and verify (kind, schema version, checksums, shapes) a RoadGraph artifact."""
        manifest = read_manifest(
            directory, kind=KIND, schema_versions=(SCHEMA_VERSION,), verify=verify
        )
        if manifest.get("vocabularies", {}).get("highway") != list(HIGHWAY_CLASSES):
            raise ArtifactError(
                f"artifact {directory}: highway vocabulary differs from this "
                "version of nareta; rebuild it with `nareta ingest`"
            )
        try:
            with np.load(Path(directory) / ARRAYS_FILE, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"artifact {directory}: cannot read {ARRAYS_FILE} ({exc})") from exc
        graph = cls(
            arrays=arrays,
            crs_epsg=int(manifest["crs_epsg"]),
            metadata=dict(manifest.get("metadata", {})),
        )
        graph.manifest = manifest  # type: ignore[attr-defined]
        return graph
