"""Snapping lon/lat points to the nearest road segment.

A KD-tree (scipy) over the segment geometry in projected metres, densified so that no two
consecutive points of a piece are more than ``spacing_m`` apart; the k nearest points name
candidate pieces, and the exact point-to-piece distance picks the winner. A two-way street
is one geometry with two segments (one per direction): the snap returns the segment whose
digitised direction matches the geometry and its ``twin`` (the other direction, or -1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyproj import CRS, Transformer
from scipy.spatial import cKDTree

from data_pipeline.road_graph import RoadGraph
from nareta.errors import InputError


@dataclass(frozen=True)
class Snaps:
    """Snapped points, one entry per input point; ``segment == -1`` where the nearest road is
    farther than the maximum snap distance."""

    segment: np.ndarray  # [P] int64, -1 = no segment within the limit
    twin: np.ndarray  # [P] int64, the reverse-direction segment or -1
    fraction: np.ndarray  # [P] float64 position along `segment` by length, in [0, 1]
    distance_m: np.ndarray  # [P] float64 distance from the point to the road
    lon: np.ndarray  # [P] float64 snapped location
    lat: np.ndarray

    @property
    def found(self) -> np.ndarray:
        return self.segment >= 0


class Snapper:
    """Built once per graph; :meth:`snap` is vectorised over points."""

    def __init__(self, graph: RoadGraph, *, spacing_m: float = 10.0, candidates: int = 8):
        self.graph = graph
        self.candidates = candidates
        crs = CRS.from_epsg(graph.crs_epsg)
        self._to_xy = Transformer.from_crs(CRS.from_epsg(4326), crs, always_xy=True)
        self._to_lonlat = Transformer.from_crs(crs, CRS.from_epsg(4326), always_xy=True)
        offsets = graph["path_offsets"]
        x, y = self._to_xy.transform(graph["path_lon"], graph["path_lat"])
        x, y = np.asarray(x), np.asarray(y)

        # Twins: the same node path in reverse. Only the first of a pair is indexed.
        self.twin = graph.reverse_twins()
        indexed = np.array([t < 0 or s < t for s, t in enumerate(self.twin)])

        # Pieces: consecutive path points of indexed segments.
        seg_of_point = np.repeat(np.arange(graph.num_segments), np.diff(offsets))
        is_piece = np.ones(len(x), dtype=bool)
        is_piece[offsets[1:] - 1] = False  # a segment's last point starts no piece
        start = np.flatnonzero(is_piece & indexed[seg_of_point])
        self.piece_segment = seg_of_point[start]  # [Q]
        self.piece_point = start  # [Q] index of each piece's first point in the path arrays
        self.ax, self.ay = x[start], y[start]
        self.bx, self.by = x[start + 1], y[start + 1]
        piece_length = np.hypot(self.bx - self.ax, self.by - self.ay)
        # length along the segment where each piece starts, and the segment's total length
        cumulative = np.zeros(len(x))
        step = np.hypot(np.diff(x), np.diff(y))
        step[offsets[1:-1] - 1] = 0.0  # no step across segment boundaries
        cumulative[1:] = np.cumsum(step)
        cumulative -= cumulative[offsets[:-1]][seg_of_point]
        self.piece_start_m = cumulative[start]
        self.segment_length_m = cumulative[offsets[1:] - 1]
        self.piece_length_m = piece_length

        # Densified points along pieces for the KD-tree.
        per_piece = np.maximum(1, np.ceil(piece_length / spacing_m).astype(np.int64))
        piece_of_point = np.repeat(np.arange(len(start)), per_piece + 1)
        step_index = np.arange(len(piece_of_point)) - np.repeat(np.cumsum(per_piece + 1)
                                                                - (per_piece + 1), per_piece + 1)
        t = step_index / per_piece[piece_of_point]
        px = self.ax[piece_of_point] + t * (self.bx - self.ax)[piece_of_point]
        py = self.ay[piece_of_point] + t * (self.by - self.ay)[piece_of_point]
        self._tree = cKDTree(np.stack([px, py], axis=1))
        self._point_piece = piece_of_point
        self.spacing_m = spacing_m

    def snap(self, lon, lat, *, max_distance_m: float | np.ndarray) -> Snaps:
        """Snap points; coordinates must be finite WGS84 degrees. ``max_distance_m``: one
        limit for every point or ``[P]`` limits (``inf``: no limit)."""
        lon, lat, query, off_map = self._query(lon, lat)
        count = len(lon)
        k = min(self.candidates, len(self._point_piece))
        _, nearest = self._tree.query(query, k=k)  # [P, k]
        nearest = nearest.reshape(count, k)
        pieces = self._point_piece[nearest]  # [P, k]
        t, distance = self._to_pieces(query, pieces)  # [P, k] each
        best = np.argmin(distance, axis=1)
        rows = np.arange(count)
        piece = pieces[rows, best]
        segment = self.piece_segment[piece]
        along = self.piece_start_m[piece] + t[rows, best] * self.piece_length_m[piece]
        fraction = np.clip(along / np.maximum(self.segment_length_m[segment], 1e-9), 0.0, 1.0)
        best_distance = np.where(off_map, np.inf, distance[rows, best])
        snapped_lon, snapped_lat = self._at(piece, t[rows, best])
        within = best_distance <= max_distance_m
        return Snaps(
            segment=np.where(within, segment, -1),
            twin=np.where(within, self.twin[segment], -1),
            fraction=np.where(within, fraction, np.nan),
            distance_m=best_distance,
            lon=snapped_lon,
            lat=snapped_lat,
        )

    def nearest(self, lon: float, lat: float, *, count: int) -> tuple[Snaps, np.ndarray]:
        """The ``count`` nearest roads to one point, nearest first (fewer if the map has
        fewer), as OSRM's ``nearest`` service answers: one entry per road (a two-way street
        once), with the ``[count, 2]`` path indices of the ends of the piece it lies on."""
        lon_array, lat_array, query, off_map = self._query(lon, lat)
        if off_map[0]:
            empty = np.zeros(0, dtype=np.int64)
            return Snaps(empty, empty, np.zeros(0), np.zeros(0), np.zeros(0),
                         np.zeros(0)), np.zeros((0, 2), dtype=np.int64)
        k = min(len(self._point_piece), max(self.candidates, 16 * count))
        while True:
            reach, nearest = self._tree.query(query, k=k)
            pieces = np.unique(self._point_piece[np.atleast_1d(nearest.ravel())])
            t, distance = self._to_pieces(query, pieces[None, :])
            t, distance = t[0], distance[0]
            order = np.argsort(distance, kind="stable")
            # the nearest piece of each road, nearest roads first
            _, first = np.unique(self.piece_segment[pieces[order]], return_index=True)
            chosen = order[np.sort(first)][:count]
            # a road farther than the k-th KD point may still be missing: widen until the
            # farthest chosen road is within what the k nearest points cover
            covered = (len(chosen) == count
                       and distance[chosen[-1]] + self.spacing_m <= float(np.max(reach)))
            if covered or k >= len(self._point_piece):
                break
            k = min(len(self._point_piece), 4 * k)
        piece = pieces[chosen]
        segment = self.piece_segment[piece]
        along = self.piece_start_m[piece] + t[chosen] * self.piece_length_m[piece]
        fraction = np.clip(along / np.maximum(self.segment_length_m[segment], 1e-9), 0.0, 1.0)
        snapped_lon, snapped_lat = self._at(piece, t[chosen])
        ends = np.stack([self.piece_point[piece], self.piece_point[piece] + 1], axis=1)
        return Snaps(segment, self.twin[segment], fraction, distance[chosen], snapped_lon,
                     snapped_lat), ends

    def _at(self, piece: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """lon/lat of the points at share ``t`` along ``piece``."""
        x = self.ax[piece] + t * (self.bx - self.ax)[piece]
        y = self.ay[piece] + t * (self.by - self.ay)[piece]
        snapped_lon, snapped_lat = self._to_lonlat.transform(x, y)
        return np.atleast_1d(np.asarray(snapped_lon)), np.atleast_1d(np.asarray(snapped_lat))

    def _to_pieces(self, query: np.ndarray, pieces: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Share along and distance to each candidate piece: ``[P, k]`` each."""
        ax, ay, bx, by = (arr[pieces] for arr in (self.ax, self.ay, self.bx, self.by))
        dx, dy = bx - ax, by - ay
        norm = np.maximum(dx * dx + dy * dy, 1e-12)
        t = np.clip(((query[:, :1] - ax) * dx + (query[:, 1:] - ay) * dy) / norm, 0.0, 1.0)
        cx, cy = ax + t * dx, ay + t * dy
        return t, np.hypot(query[:, :1] - cx, query[:, 1:] - cy)

    def _query(self, lon, lat):
        """Validated points, projected: (lon [P], lat [P], query [P, 2], off_map [P])."""
        lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
        lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
        if lon.shape != lat.shape:
            raise InputError("lon and lat must have the same length")
        if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
            raise InputError("coordinates must be finite numbers (no NaN or infinity)")
        if (np.abs(lon) > 180).any() or (np.abs(lat) > 90).any():
            raise InputError("coordinates out of range: lon must be in [-180, 180], "
                             "lat in [-90, 90]")
        qx, qy = self._to_xy.transform(lon, lat)
        query = np.stack([np.asarray(qx), np.asarray(qy)], axis=1)  # [P, 2]
        # The city's projection cannot place points far away (a pole in UTM is infinite):
        # such points are beyond any snap limit; query a stand-in far outside instead.
        off_map = ~np.isfinite(query).all(axis=1)
        query[off_map] = 1e15
        return lon, lat, query, off_map
