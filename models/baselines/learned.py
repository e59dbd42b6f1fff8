"""Baselines the ETA model must beat, each a loadable artifact.

1. ``freeflow``: Dijkstra on ``free_flow_s`` (length / imputed maxspeed, what osmnx's
   ``add_edge_travel_times`` gives). No training.
2. ``learned_scalar``: one travel time per segment and one per turn, fitted to training
   trips so that summed route times match trip durations, then Dijkstra. Segment time is
   ``free_flow_s * (floor + softplus(mlp(features) + offset[segment]))`` and turn time
   ``softplus(mlp(turn features, features of both segments))``; the per-segment offsets
   are L2-regularised, so well-observed segments get their own time and rarely driven ones
   fall back on what their features predict. Uses the driven routes when the trips carry
   them; otherwise alternates routing on the current times and refitting. This is the
   classical pipeline with the best scalar it can have (the "bottleneck" baseline).
   With ``ScalarConfig(time_features=True)`` (``learned_scalar_time``) it sees the ETA
   model's departure-time input too: each segment's time is multiplied by
   ``exp(c(features) . time_features(bucket))``, the ETA model's clock harmonics and
   weekend flag (models.eta.model.time_features) weighted by a small MLP of the segment's
   features, bounded to ``exp(+-max_log_factor)`` and never below the free-flow floor
   (in the fit as in prediction); so "the NAR model beats the scalar"
   is not a comparison of a timed model with an untimed one.
3. ``gnn_regressor``: a plain GNN (GINE layers over the road graph, same segment features,
   no algorithmic processor) embeds nodes; an MLP maps the origin and destination
   embeddings, straight-line distance and departure time to log duration.

Artifacts: a directory with ``baseline.npz`` (learned scalar: fitted times, and the
per-segment time coefficients of the timed variant) or
``weights.safetensors`` (GNN) and a manifest (kind ``baseline``, its config, the identity
of the RoadGraph it was trained on), written atomically by :mod:`nareta.artifacts`.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.baselines.routing import reverse_twins, shortest_routes, trip_times
from nareta.artifacts import artifact_hash, atomic_artifact_dir, read_manifest, write_manifest
from nareta.errors import ArtifactError, InputError

KIND = "baseline"
SCHEMA_VERSION = 1
BASELINE_NAMES = ("freeflow", "learned_scalar", "learned_scalar_time", "gnn_regressor")


def graph_identity(graph) -> str | None:
    """The RoadGraph's content hash (the same for every ingest of the same source)."""
    identity = getattr(graph, "identity", None)
    if isinstance(identity, str):
        return identity
    manifest = getattr(graph, "manifest", None)
    return artifact_hash(manifest) if manifest else None


def _snapped(frame) -> tuple[np.ndarray, ...]:
    missing = [
        c
        for c in (
            "origin_segment",
            "origin_fraction",
            "destination_segment",
            "destination_fraction",
        )
        if c not in frame.columns
    ]
    if missing:
        raise InputError(
            f"trips are not snapped to the graph (missing {missing}); "
            "call data_pipeline.trips.snap_trips first"
        )
    return (
        frame["origin_segment"].to_numpy(np.int64),
        frame["origin_fraction"].to_numpy(float),
        frame["destination_segment"].to_numpy(np.int64),
        frame["destination_fraction"].to_numpy(float),
    )


def json_bytes(value) -> bytes:
    import json

    return json.dumps(value).encode()


def trip_buckets(frame, config: ScalarConfig) -> np.ndarray:
    """``[N]`` departure-time bucket of each trip, as the ETA model buckets it (from
    ``departure_local``, the trips' local clock time, else ``departure_hour`` on a
    weekday)."""
    from models.eta.model import time_bucket

    if "departure_local" in frame.columns:
        departures = pd.to_datetime(frame["departure_local"]).dt.to_pydatetime()
        return np.array([time_bucket(d, config.bucket_minutes, config.timezone)
                         for d in departures], dtype=np.int64)
    if "departure_hour" in frame.columns:
        minutes = frame["departure_hour"].to_numpy(float) * 60.0
        return (np.floor(minutes / config.bucket_minutes) % (24 * 60 // config.bucket_minutes)
                ).astype(np.int64)
    raise InputError("a learned scalar with time features needs the trips' departure times "
                     "(column departure_local or departure_hour)")


def _standardise(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = matrix.mean(axis=0)
    std = matrix.std(axis=0)
    std[std < 1e-6] = 1.0
    return (matrix - mean) / std, mean, std


# --------------------------------------------------------------------------- 1. free flow
class FreeFlowBaseline:
    name = "freeflow"

    def segment_times(self, graph) -> tuple[np.ndarray, np.ndarray | None]:
        return np.asarray(graph["free_flow_s"], dtype=np.float64), None

    def predict(self, graph, frame) -> np.ndarray:
        segment_time, turn_time = self.segment_times(graph)
        return trip_times(graph, *_snapped(frame), segment_time, turn_time)


# --------------------------------------------------------------------------- 2. scalar
@dataclass
class ScalarConfig:
    hidden: int = 32
    epochs: int = 400
    learning_rate: float = 0.03
    offset_l2: float = 0.005
    #: no segment is faster than this share of its free-flow time: stops Dijkstra
    #: exploiting rarely driven segments fitted too fast. Chosen on a validation share of
    #: the training trips among ``floor_candidates`` x (median duration / free-flow route
    #: time) when the trips carry routes; the chosen value is stored here.
    min_free_flow_share: float = 1.0
    floor_candidates: tuple[float, ...] = (0.6, 0.8, 1.0)
    validation_share: float = 0.15
    reroute_rounds: int = 2  # only when trips carry no routes
    seed: int = 0
    #: the ETA model's departure-time input (clock harmonics, weekend flag of the
    #: departure's bucket) modulates each segment's time (``learned_scalar_time``)
    time_features: bool = False
    bucket_minutes: int = 15  # as models.eta.model.EtaConfig
    timezone: str | None = None  # city clock for departures that carry an offset
    max_log_factor: float = 1.0  # a time factor stays within exp(+-this)
    time_l2: float = 1e-3  # weight of mean(coefficient^2)


def _route_design(graph, frame, routes) -> tuple[Any, Any, np.ndarray]:
    """Sparse ``[N, E]`` segment coefficients (partial first / last segments) and
    ``[N, T]`` turn counts of each trip's route, and the mask of trips with a route."""
    from scipy.sparse import csr_matrix

    num_segments, num_turns = graph.num_segments, graph.num_turns
    turn_key = graph["turn_from"].astype(np.int64) * num_segments + graph["turn_to"]
    order = np.argsort(turn_key)
    sorted_keys = turn_key[order]
    origin_seg, origin_frac, dest_seg, dest_frac = _snapped(frame)
    twins = reverse_twins(graph)
    seg_rows, seg_cols, seg_vals, turn_rows, turn_cols = [], [], [], [], []
    usable = np.zeros(len(frame), dtype=bool)
    for index, route in enumerate(routes):
        if route is None or len(route) == 0:
            continue
        route = np.asarray(route, dtype=np.int64)
        # share of the first / last segment driven: the route may leave on the snapped
        # segment or on its reverse twin (then the fraction counts from the other end)
        o, d = origin_seg[index], dest_seg[index]
        f_o, f_d = origin_frac[index], dest_frac[index]
        if route[0] != o and route[0] == twins[o]:
            f_o = 1 - f_o
        if route[-1] != d and route[-1] == twins[d]:
            f_d = 1 - f_d
        coefficient = np.ones(len(route))
        if route[0] in (o, twins[o]):
            coefficient[0] -= f_o
        if route[-1] in (d, twins[d]):
            coefficient[-1] -= 1 - f_d
        if len(route) == 1 and route[0] in (o, twins[o]) and route[0] in (d, twins[d]):
            coefficient[0] = max(f_d - f_o, 0.0)
        usable[index] = True
        seg_rows.extend([index] * len(route))
        seg_cols.extend(route.tolist())
        seg_vals.extend(np.maximum(coefficient, 0.0).tolist())
        keys = route[:-1] * num_segments + route[1:]
        position = np.searchsorted(sorted_keys, keys)
        position = np.minimum(position, len(sorted_keys) - 1)
        found = sorted_keys[position] == keys if len(sorted_keys) else np.zeros(0, bool)
        turn_rows.extend([index] * int(found.sum()))
        turn_cols.extend(order[position[found]].tolist())
    segments = csr_matrix((seg_vals, (seg_rows, seg_cols)), shape=(len(frame), num_segments))
    turns = csr_matrix(
        (np.ones(len(turn_rows)), (turn_rows, turn_cols)), shape=(len(frame), num_turns)
    )
    return segments, turns, usable


def _torch_sparse(matrix):
    import torch

    coo = matrix.tocoo()
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    return torch.sparse_coo_tensor(
        indices, torch.from_numpy(coo.data.astype(np.float32)), coo.shape, check_invariants=False
    ).coalesce()


class LearnedScalarBaseline:
    """Also a :class:`models.inference.travel_time.TravelTimeModel` (turn mode) once bound to its
    graph, so the Predictor, the HTTP service and batch scoring can serve it."""

    graph_mode = "turn"
    supports_targets = False  # every run is scipy's whole-graph Dijkstra
    targets_are_cheap = False
    uses_traffic = False

    def __init__(
        self,
        segment_time_s: np.ndarray,
        turn_time_s: np.ndarray,
        config: ScalarConfig | None = None,
        graph=None,
        time_coefficient: np.ndarray | None = None,
    ) -> None:
        self.segment_time_s = np.asarray(segment_time_s, dtype=np.float64)
        self.turn_time_s = np.asarray(turn_time_s, dtype=np.float64)
        self.config = config or ScalarConfig()
        #: ``[E, 5]`` weights of the departure's time features per segment (timed variant)
        self.time_coefficient = (None if time_coefficient is None
                                 else np.asarray(time_coefficient, dtype=np.float64))
        if self.config.time_features != (self.time_coefficient is not None):
            raise ArtifactError("learned scalar baseline: time coefficients go with "
                                "time_features=True, and only with it")
        self.graph = graph
        if graph is not None:
            self.segment_times(graph)

    @property
    def name(self) -> str:
        return "learned_scalar_time" if self.config.time_features else "learned_scalar"

    @property
    def timezone(self) -> str | None:
        return self.config.timezone

    # ---- TravelTimeModel
    @property
    def identity(self) -> str:
        import hashlib

        payload = self.segment_time_s.tobytes() + self.turn_time_s.tobytes()
        if self.time_coefficient is not None:
            payload += self.time_coefficient.tobytes() + json_bytes(
                [self.config.bucket_minutes, self.config.timezone, self.config.max_log_factor,
                 self.config.min_free_flow_share])
        return f"{self.name}:{hashlib.sha256(payload).hexdigest()[:16]}"

    def time_bucket(self, departure_time) -> int:
        if not self.config.time_features:
            return 0  # one time per segment, whatever the hour
        from models.eta.model import time_bucket

        return time_bucket(departure_time, self.config.bucket_minutes, self.config.timezone)

    def segment_times_s(self, bucket: int) -> np.ndarray:
        if self.time_coefficient is None:
            return self.segment_time_s
        from models.eta.model import time_features

        limit = self.config.max_log_factor
        log_factor = limit * np.tanh(
            self.time_coefficient @ time_features(bucket, self.config.bucket_minutes)
            .astype(np.float64) / limit)  # [E]
        floor_s = getattr(self, "_floor_s", None)
        if floor_s is None:
            raise ArtifactError("learned scalar baseline: bind it to its graph "
                                "(LearnedScalarBaseline.load / segment_times) first")
        # the free-flow floor holds at every hour, as in the fit (else Dijkstra finds the
        # segments the time factor pushed below it: median bias -29 % on benchmarks/fair.py)
        return np.maximum(self.segment_time_s * np.exp(log_factor), floor_s)

    def turn_times_s(self, bucket: int) -> np.ndarray:
        return self.turn_time_s

    def run_from(self, origins: np.ndarray, bucket: int):
        from models.execution.trees import line_dijkstra_tree

        if self.graph is None:
            raise ArtifactError("learned scalar baseline: load it with a graph to route")
        return line_dijkstra_tree(self.graph, self.segment_times_s(bucket), self.turn_time_s,
                                  origins)

    @classmethod
    def load(cls, directory, graph) -> LearnedScalarBaseline:
        """Load a baseline artifact for ``graph`` (the model registry's entry point)."""
        model = load_baseline(directory, graph=graph)
        if not isinstance(model, LearnedScalarBaseline):
            raise ArtifactError(
                f"baseline {directory} ({model.name}) answers origin-destination pairs, not "
                "shortest-path trees; score it with `nareta evaluate`"
            )
        model.graph = graph
        model.segment_times(graph)
        return model

    def segment_times(self, graph) -> tuple[np.ndarray, np.ndarray]:
        if len(self.segment_time_s) != graph.num_segments:
            raise ArtifactError(
                f"learned scalar baseline has {len(self.segment_time_s)} "
                f"segment times; the graph has {graph.num_segments} segments"
            )
        self._floor_s = self.config.min_free_flow_share * np.maximum(
            np.asarray(graph["free_flow_s"], dtype=np.float64), 0.1)  # [E], as in the fit
        return self.segment_time_s, self.turn_time_s

    def predict(self, graph, frame) -> np.ndarray:
        if self.time_coefficient is None:
            return trip_times(graph, *_snapped(frame), *self.segment_times(graph))
        self.segment_times(graph)
        ends = _snapped(frame)
        buckets = trip_buckets(frame, self.config)
        out = np.full(len(frame), np.nan)
        for bucket in np.unique(buckets):
            rows = np.flatnonzero(buckets == bucket)
            out[rows] = trip_times(graph, *(end[rows] for end in ends),
                                   self.segment_times_s(int(bucket)), self.turn_time_s)
        return out

    @classmethod
    def fit(
        cls, graph, frame, *, config: ScalarConfig | None = None, log=print
    ) -> LearnedScalarBaseline:
        """Fit segment and turn times to ``frame``'s durations (snapped trips); with driven
        routes, first pick the free-flow floor on a validation share of the trips."""
        config = config or ScalarConfig()
        has_routes = "route" in frame.columns and frame["route"].notna().all()
        if not has_routes or not config.floor_candidates or len(frame) < 200:
            return cls._fit_once(graph, frame, config=config, log=log)
        free_flow = np.asarray(graph["free_flow_s"], dtype=np.float64)
        segments, _, usable = _route_design(graph, frame, list(frame["route"]))
        ratio = frame["duration_s"].to_numpy(float)[usable] / np.maximum(
            (segments @ free_flow)[usable], 1e-3
        )
        scale = float(np.median(ratio))
        rng = np.random.default_rng(config.seed)
        validation = rng.random(len(frame)) < config.validation_share
        fit_part = frame[~validation].reset_index(drop=True)
        val_part = frame[validation].reset_index(drop=True)
        scores = {}
        for candidate in config.floor_candidates:
            floor = round(candidate * scale, 3)
            trial = replace(config, min_free_flow_share=floor, epochs=max(config.epochs // 2, 1))
            model = cls._fit_once(graph, fit_part, config=trial, log=lambda *_: None)
            predicted = model.predict(graph, val_part)
            true = val_part["duration_s"].to_numpy(float)
            scores[floor] = float(np.nanmean(np.abs(predicted - true) / true))
        best = min(scores, key=scores.get)
        log(
            "learned scalar: free-flow floor "
            + ", ".join(f"{k:g}: MAPE {v:.1%}" for k, v in scores.items())
            + f" on validation; using {best:g}"
        )
        return cls._fit_once(
            graph, frame, config=replace(config, min_free_flow_share=best), log=log
        )

    @classmethod
    def _fit_once(cls, graph, frame, *, config: ScalarConfig, log) -> LearnedScalarBaseline:
        """Fit with ``config`` as given: on the driven routes if the trips carry them, else
        alternately route on the current times and refit (``1 + reroute_rounds`` rounds)."""
        import torch

        torch.manual_seed(config.seed)
        features, turn_input, free_flow = _scalar_inputs(graph)
        durations = frame["duration_s"].to_numpy(float)
        routes, rounds = _initial_routes(graph, frame, free_flow, config)
        nets = _ScalarNets.build(graph, frame, features, turn_input, free_flow, config)
        for round_index in range(rounds):
            _fit_round(nets, graph, frame, routes, durations, round_index=round_index, log=log)
            if round_index + 1 < rounds:
                with torch.no_grad():
                    segment, turn = nets.times()
                origin_seg, _, dest_seg, _ = _snapped(frame)
                routes = shortest_routes(
                    graph, origin_seg, dest_seg, segment.double().numpy(), turn.double().numpy()
                )
        with torch.no_grad():
            segment, turn = nets.times()
            coefficient = (None if nets.time_net is None
                           else nets.time_net(nets.x_segment).double().numpy())
        return cls(segment.double().numpy(), turn.double().numpy(), config,
                   time_coefficient=coefficient)


def _scalar_inputs(graph) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardised ``[E, F]`` segment features, ``[T, F']`` turn inputs (standardised turn
    features and the features of both segments) and free-flow times (at least 0.1 s)."""
    features, _ = graph.numeric_segment_features()
    features, _, _ = _standardise(features)
    turn_features, _ = graph.numeric_turn_features()
    turn_input = np.concatenate(
        [
            _standardise(turn_features)[0],
            features[graph["turn_from"]],
            features[graph["turn_to"]],
        ],
        axis=1,
    )
    free_flow = np.maximum(np.asarray(graph["free_flow_s"], dtype=np.float64), 0.1)
    return features, turn_input, free_flow


def _initial_routes(graph, frame, free_flow, config: ScalarConfig) -> tuple[list, int]:
    """The routes of the first round and the number of rounds: the driven routes and one
    round when the trips carry them, else free-flow shortest routes and
    ``1 + reroute_rounds`` rounds."""
    has_routes = "route" in frame.columns and frame["route"].notna().all()
    if has_routes:
        return list(frame["route"]), 1
    origin_seg, _, dest_seg, _ = _snapped(frame)
    return shortest_routes(graph, origin_seg, dest_seg, free_flow), 1 + config.reroute_rounds


def _mlp(inputs: int, hidden: int, outputs: int):
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(inputs, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, outputs),
    )


@dataclass
class _ScalarNets:
    """The learned scalar's trainable parts and fixed inputs while it is fitted: segment and
    turn MLPs, per-segment offsets and (timed variant) the time-coefficient MLP."""

    config: ScalarConfig
    segment_net: Any
    turn_net: Any
    offset: Any  # [E] parameter
    time_net: Any  # None unless config.time_features
    x_segment: Any  # [E, F]
    x_turn: Any  # [T, F']
    base: Any  # [E] free-flow seconds
    floor_time: Any  # [E]
    trip_time_x: Any  # [N, 5] time features of each trip's departure bucket, or None

    @classmethod
    def build(cls, graph, frame, features, turn_input, free_flow, config: ScalarConfig):
        """Fresh networks (built in a fixed order, so a seed gives the same weights)."""
        import torch

        segment_net = _mlp(features.shape[1], config.hidden, 1)
        turn_net = _mlp(turn_input.shape[1], config.hidden, 1)
        offset = torch.nn.Parameter(torch.zeros(graph.num_segments))
        base = torch.from_numpy(free_flow.astype(np.float32))
        time_net, trip_time_x = None, None
        if config.time_features:
            from models.eta.model import time_features

            time_net = _mlp(features.shape[1], config.hidden, 5)
            torch.nn.init.zeros_(time_net[2].weight)  # starts with no time effect
            torch.nn.init.zeros_(time_net[2].bias)
            trip_time_x = torch.from_numpy(np.stack(
                [time_features(int(b), config.bucket_minutes)
                 for b in trip_buckets(frame, config)]))  # [N, 5]
        return cls(
            config=config, segment_net=segment_net, turn_net=turn_net, offset=offset,
            time_net=time_net, x_segment=torch.from_numpy(features.astype(np.float32)),
            x_turn=torch.from_numpy(turn_input.astype(np.float32)), base=base,
            floor_time=base * config.min_free_flow_share, trip_time_x=trip_time_x,
        )

    def parameters(self) -> list:
        parameters = [*self.segment_net.parameters(), *self.turn_net.parameters(), self.offset]
        if self.time_net is not None:
            parameters += list(self.time_net.parameters())
        return parameters

    def times(self):
        """``[E]`` segment and ``[T]`` turn seconds (before time factors)."""
        import torch

        raw = self.segment_net(self.x_segment).squeeze(-1) + self.offset  # [E]
        floor = self.config.min_free_flow_share
        shift = math.log(math.expm1(1.0 - floor)) if floor < 0.9 else -2.0  # ~1 at raw 0
        segment = self.base * (floor + torch.nn.functional.softplus(raw + shift))  # [E]
        turn = torch.nn.functional.softplus(self.turn_net(self.x_turn).squeeze(-1) - 2.0)  # [T]
        return segment, turn

    def route_seconds(self, a, b, rows, segment, turn, coefficient):
        """Predicted seconds of trips ``rows``: the route's segment times (each at its
        trip's departure bucket with time features) plus its turn times."""
        import torch

        turns = torch.sparse.mm(b, turn[:, None]).squeeze(-1)  # [N]
        if coefficient is None:
            return torch.sparse.mm(a, segment[:, None]).squeeze(-1) + turns
        trip, seg = a.indices()  # per route entry: trip row (within rows), segment
        limit = self.config.max_log_factor
        log_factor = limit * torch.tanh(
            (coefficient[seg] * self.trip_time_x[rows][trip]).sum(-1) / limit)  # [nnz]
        entries = a.values() * torch.maximum(segment[seg] * torch.exp(log_factor),
                                             self.floor_time[seg])  # the floor at every hour
        return torch.zeros(len(rows)).index_add(0, trip, entries) + turns


def _fit_round(nets: _ScalarNets, graph, frame, routes, durations, *, round_index: int,
               log) -> None:
    """One round: ``config.epochs`` Adam steps on the log-MSE of the trips that have a
    route in ``routes`` (plus the offset and time-coefficient L2 terms)."""
    import torch

    config = nets.config
    segments, turns, usable = _route_design(graph, frame, routes)
    rows = np.flatnonzero(usable)
    a = _torch_sparse(segments[rows])
    b = _torch_sparse(turns[rows])
    target = torch.from_numpy(np.log(durations[rows]).astype(np.float32))
    optimiser = torch.optim.Adam(nets.parameters(), lr=config.learning_rate)
    rows_tensor = torch.from_numpy(rows)
    for epoch in range(config.epochs):
        optimiser.zero_grad()
        segment, turn = nets.times()
        coefficient = None if nets.time_net is None else nets.time_net(nets.x_segment)  # [E, 5]
        predicted = nets.route_seconds(a, b, rows_tensor, segment, turn, coefficient)
        loss = torch.mean((torch.log(predicted.clamp_min(1e-3)) - target) ** 2)
        loss = loss + config.offset_l2 * torch.mean(nets.offset**2)
        if coefficient is not None:
            loss = loss + config.time_l2 * torch.mean(coefficient**2)
        loss.backward()
        optimiser.step()
        if epoch % 100 == 0 or epoch == config.epochs - 1:
            log(
                f"learned scalar round {round_index} epoch {epoch}: "
                f"log-MSE {loss.item():.4f} on {len(rows)} trips"
            )


# --------------------------------------------------------------------------- 3. GNN
@dataclass
class GnnConfig:
    hidden: int = 64
    layers: int = 4
    epochs: int = 40
    batch_size: int = 512
    learning_rate: float = 3e-3
    seed: int = 0


def _trip_inputs(graph, frame) -> dict[str, np.ndarray]:
    origin_seg, origin_frac, dest_seg, dest_frac = _snapped(frame)
    lat0 = math.radians(float(np.mean(graph["node_lat"])))
    dx = (
        (frame["destination_lon"].to_numpy(float) - frame["origin_lon"].to_numpy(float))
        * 111_320.0
        * math.cos(lat0)
    )
    dy = (
        frame["destination_lat"].to_numpy(float) - frame["origin_lat"].to_numpy(float)
    ) * 110_574.0
    hour = (
        frame["departure_hour"].to_numpy(float)
        if "departure_hour" in frame.columns
        else np.zeros(len(frame))
    )
    angle = 2 * math.pi * hour / 24.0
    extra = np.stack(
        [
            np.log1p(np.hypot(dx, dy)) - 7.0,
            np.sin(angle),
            np.cos(angle),
            np.sin(2 * angle),
            np.cos(2 * angle),
        ],
        axis=1,
    )
    source, target = graph["edge_source"], graph["edge_target"]
    return {
        "origin_a": source[origin_seg],
        "origin_b": target[origin_seg],
        "origin_f": origin_frac,
        "dest_a": source[dest_seg],
        "dest_b": target[dest_seg],
        "dest_f": dest_frac,
        "extra": extra.astype(np.float32),
    }


def _build_gnn(config: GnnConfig, edge_dim: int):
    import torch
    from torch_geometric.nn import GINEConv

    class GnnRegressor(torch.nn.Module):
        """GINE message passing over road nodes, then an MLP on the trip's end embeddings."""

        def __init__(self) -> None:
            super().__init__()
            h = config.hidden
            self.node_in = torch.nn.Parameter(torch.zeros(1, h))
            self.edge_in = torch.nn.Linear(edge_dim, h)
            self.convs = torch.nn.ModuleList(
                GINEConv(
                    torch.nn.Sequential(
                        torch.nn.Linear(h, h), torch.nn.ReLU(), torch.nn.Linear(h, h)
                    ),
                    edge_dim=h,
                )
                for _ in range(config.layers)
            )
            self.norms = torch.nn.ModuleList(torch.nn.LayerNorm(h) for _ in range(config.layers))
            self.head = torch.nn.Sequential(
                torch.nn.Linear(2 * h + 5, h),
                torch.nn.ReLU(),
                torch.nn.Linear(h, h),
                torch.nn.ReLU(),
                torch.nn.Linear(h, 1),
            )
            self.log_scale = torch.nn.Parameter(torch.tensor(6.0))

        def embed(self, edge_index, edge_attr, num_nodes):
            edge = self.edge_in(edge_attr)  # [E, H]
            h = self.node_in.expand(num_nodes, -1)  # [N, H]
            for conv, norm in zip(self.convs, self.norms, strict=True):
                h = norm(h + torch.relu(conv(h, edge_index, edge)))
            return h

        def forward(self, h, batch):
            def end(a, b, f):
                return h[a] * (1 - f)[:, None] + h[b] * f[:, None]  # [B, H]

            origin = end(batch["origin_a"], batch["origin_b"], batch["origin_f"])
            dest = end(batch["dest_a"], batch["dest_b"], batch["dest_f"])
            features = torch.cat([origin, dest, batch["extra"]], dim=1)  # [B, 2H + 5]
            return self.head(features).squeeze(-1) + self.log_scale  # log seconds [B]

    return GnnRegressor()


class GnnRegressorBaseline:
    name = "gnn_regressor"

    def __init__(
        self, model, config: GnnConfig, feature_mean: np.ndarray, feature_std: np.ndarray
    ) -> None:
        self.model = model
        self.config = config
        self.feature_mean = feature_mean
        self.feature_std = feature_std

    def _graph_tensors(self, graph):
        import torch

        features, _ = graph.numeric_segment_features()
        if features.shape[1] != len(self.feature_mean):
            raise ArtifactError("GNN baseline was trained on a different segment feature set")
        features = (features - self.feature_mean) / self.feature_std
        edge_index = torch.from_numpy(graph.edge_index.astype(np.int64))
        return edge_index, torch.from_numpy(features.astype(np.float32))

    @staticmethod
    def _batch(inputs: dict[str, np.ndarray], rows: np.ndarray):
        import torch

        return {
            key: torch.from_numpy(value[rows]) if key != "extra" else torch.from_numpy(value[rows])
            for key, value in inputs.items()
        } | {
            "origin_f": torch.from_numpy(inputs["origin_f"][rows].astype(np.float32)),
            "dest_f": torch.from_numpy(inputs["dest_f"][rows].astype(np.float32)),
        }

    def predict(self, graph, frame) -> np.ndarray:
        import torch

        edge_index, edge_attr = self._graph_tensors(graph)
        inputs = _trip_inputs(graph, frame)
        self.model.eval()
        with torch.no_grad():
            h = self.model.embed(edge_index, edge_attr, graph.num_nodes)
            output = self.model(h, self._batch(inputs, np.arange(len(frame))))
        return np.exp(output.double().numpy())

    @classmethod
    def fit(
        cls,
        graph,
        frame,
        *,
        config: GnnConfig | None = None,
        log=print,
        time_budget_s: float | None = None,
    ) -> GnnRegressorBaseline:
        import torch

        config = config or GnnConfig()
        torch.manual_seed(config.seed)
        rng = np.random.default_rng(config.seed)
        features, _ = graph.numeric_segment_features()
        _, mean, std = _standardise(features)
        model = _build_gnn(config, features.shape[1])
        baseline = cls(model, config, mean, std)
        edge_index, edge_attr = baseline._graph_tensors(graph)
        inputs = _trip_inputs(graph, frame)
        target = torch.from_numpy(np.log(frame["duration_s"].to_numpy(float)).astype(np.float32))
        with torch.no_grad():
            model.log_scale.fill_(float(target.mean()))
        optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        steps = config.epochs * max(1, math.ceil(len(frame) / config.batch_size))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
        started = time.perf_counter()
        model.train()
        for epoch in range(config.epochs):
            order = rng.permutation(len(frame))
            total = 0.0
            for start in range(0, len(order), config.batch_size):
                rows = order[start : start + config.batch_size]
                optimiser.zero_grad()
                h = model.embed(edge_index, edge_attr, graph.num_nodes)  # [N, H]
                output = model(h, cls._batch(inputs, rows))
                loss = torch.mean((output - target[rows]) ** 2)
                loss.backward()
                optimiser.step()
                scheduler.step()
                total += loss.item() * len(rows)
            if epoch % 5 == 0 or epoch == config.epochs - 1:
                log(f"gnn regressor epoch {epoch}: log-MSE {total / len(order):.4f}")
            if time_budget_s is not None and time.perf_counter() - started > time_budget_s:
                log(f"gnn regressor: time budget reached after epoch {epoch}")
                break
        model.eval()
        return baseline


# --------------------------------------------------------------------------- persistence
def save_baseline(
    baseline,
    out_dir: str | os.PathLike[str],
    *,
    graph,
    force: bool = False,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a fitted baseline as an artifact directory."""
    manifest_extra: dict[str, Any] = {
        "baseline": baseline.name,
        "graph_identity": graph_identity(graph),
        "graph_segments": graph.num_segments,
        **(extra or {}),
    }
    with atomic_artifact_dir(out_dir, force=force) as staging:
        if isinstance(baseline, LearnedScalarBaseline):
            timed = ({} if baseline.time_coefficient is None
                     else {"time_coefficient": baseline.time_coefficient})
            np.savez_compressed(
                staging / "baseline.npz",
                segment_time_s=baseline.segment_time_s,
                turn_time_s=baseline.turn_time_s,
                **timed,
            )
            manifest_extra["config"] = asdict(baseline.config)
        elif isinstance(baseline, GnnRegressorBaseline):
            from safetensors.torch import save_file

            save_file(
                {k: v.contiguous() for k, v in baseline.model.state_dict().items()},
                str(staging / "weights.safetensors"),
            )
            np.savez_compressed(
                staging / "normalisation.npz", mean=baseline.feature_mean, std=baseline.feature_std
            )
            manifest_extra["config"] = asdict(baseline.config)
        elif not isinstance(baseline, FreeFlowBaseline):
            raise TypeError(f"not a baseline: {type(baseline).__name__}")
        write_manifest(
            staging,
            kind=KIND,
            schema_version=SCHEMA_VERSION,
            seed=manifest_extra.get("config", {}).get("seed"),
            extra=manifest_extra,
        )
    return Path(out_dir)


def load_baseline(source: str | os.PathLike[str], *, graph=None):
    """Load a baseline artifact, or the literal name ``freeflow``. With ``graph``, check the
    baseline was trained on that graph."""
    if str(source) == "freeflow":
        return FreeFlowBaseline()
    manifest = read_manifest(source, kind=KIND, schema_versions=(SCHEMA_VERSION,))
    name = manifest.get("baseline")
    if graph is not None:
        trained_on, given = manifest.get("graph_identity"), graph_identity(graph)
        if trained_on and given and trained_on != given:
            raise ArtifactError(
                f"baseline {source} was trained on another RoadGraph "
                f"({trained_on[:12]}, this one is {given[:12]})"
            )
    root = Path(source)
    if name == "freeflow":
        return FreeFlowBaseline()
    if name in ("learned_scalar", "learned_scalar_time"):
        config = manifest.get("config", {})
        if "floor_candidates" in config:  # JSON has no tuples
            config["floor_candidates"] = tuple(config["floor_candidates"])
        with np.load(root / "baseline.npz", allow_pickle=False) as data:
            return LearnedScalarBaseline(
                data["segment_time_s"],
                data["turn_time_s"],
                ScalarConfig(**config),
                time_coefficient=data["time_coefficient"] if "time_coefficient" in data
                else None,
            )
    if name == "gnn_regressor":
        from safetensors.torch import load_file

        config = GnnConfig(**manifest.get("config", {}))
        with np.load(root / "normalisation.npz", allow_pickle=False) as data:
            mean, std = data["mean"], data["std"]
        model = _build_gnn(config, len(mean))
        model.load_state_dict(load_file(str(root / "weights.safetensors")))
        model.eval()
        return GnnRegressorBaseline(model, config, mean, std)
    raise ArtifactError(
        f"baseline {source}: unknown baseline {name!r} (known: {', '.join(BASELINE_NAMES)})"
    )
