"""The ETA model: raw road features → (encoder f̃) → the frozen processor's edge-latent space
→ (frozen processor P) → latent node states → (decoder g̃) → travel times.

Graph modes (``EtaConfig.graph_mode``):

``"turn"`` (default): the processor runs on the turn (line) graph. Its nodes are road
    segments, its edges the allowed turns ``a -> b``; the encoder maps the features of the
    next segment ``b``, of the turn (angle, left/right/U, junction control, crossing a
    major road) and of the departure time to each turn's edge latent, so turn delays and
    turn restrictions are part of the execution. A tree from segment ``s`` gives the time
    from the end of ``s`` to the end of every segment.
``"node"``: the processor runs on junctions with segments as edges; turn features can
    only enter through the segment's own end-node control. Kept for the comparison.

The edge latent reweights each of the processor's latent cost channels separately:

.. math::
    \\mathbf{z}_{e} = w_e\\,\\mathbf{B}^{-1}\\bigl(\\mathbf{B}\\mathbf{a} \\odot
        e^{\\mathbf{r}_e}\\bigr), \\qquad
    w_{a\\to b} = \\frac{t_b(\\tau) + p_{a\\to b}(\\tau)}{s}

with :math:`\\mathbf{a}` the frozen weight-encoder direction and :math:`\\mathbf{B}` the
processor's frozen edge map, so the message cost in channel ``k`` is
:math:`w_e (\\mathbf{B}\\mathbf{a})_k e^{r_{e,k}}`: always of the sign the processor
was trained on (negative, i.e. a cost), so every channel stays a convergent min-plus
recursion, but each channel can weigh an edge differently (a latent cost per channel,
beyond one scalar per edge), and the decoder mixes the channels' path costs.
:math:`t_b(\\tau) =` free-flow time × exp(MLP(features, time)), :math:`p` is a
non-negative turn penalty, :math:`s` a fixed time scale. Every head starts at zero, so an
untrained model is exactly free-flow routing through the processor. The decoder is
bias-free linear on the latent state (initialised from the processor's distance decoder),
keeping the whole chain positively homogeneous, so ETAs scale with the trip the way the
processor's distances do.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from data_pipeline.road_graph import RoadGraph
from models.execution.frontier import frontier_run
from models.inference.graph_modes import GraphMode, graph_mode
from models.inference.live import LIVE_FEATURES, key_parts, no_traffic_features
from models.inference.travel_time import OriginRun
from models.processor.model import NEG_INF, Processor, WeightEncoder, load_pretrained, scatter_max
from nareta.artifacts import artifact_hash, atomic_artifact_dir, read_manifest, write_manifest
from nareta.errors import ArtifactError

KIND = "eta_model"
SCHEMA_VERSION = 1
WEIGHTS_FILE = "eta.safetensors"
TIME_FEATURES = 5
#: departure time assumed when a query gives none: a weekday at noon
DEFAULT_DEPARTURE = dt.datetime(2026, 11, 18, 12, 0)
#: segment features left out of the encoder (absolute bearings mean nothing for time)
_DROPPED_FEATURES = ("bearing_in_deg", "bearing_out_deg")
_LOG_FEATURES = ("length_m", "free_flow_s")


@dataclass(frozen=True)
class EtaConfig:
    """Hyperparameters stored in the artifact."""

    graph_mode: str = "turn"  # "turn" | "node"
    encoder_hidden: int = 64
    bucket_minutes: int = 15
    max_log_factor: float = 3.0
    turn_penalty_scale_s: float = 10.0
    residual: bool = True
    #: IANA timezone of the city: departure times that carry an offset (or epoch seconds)
    #: are converted to it before bucketing; naive times are taken as local already
    timezone: str | None = None
    #: a learned log-time offset per segment of the training graph (L2-regularised in
    #: training), like the learned-scalar baseline's; zero on any other graph (transfer)
    segment_offsets: bool = True
    #: live traffic features per segment (models.inference.live.LIVE_FEATURES) beside the historical
    #: ones; the feed's implied log time factor enters with a learned gain (init 1)
    traffic: bool = False
    #: feed the clock's harmonics to the turn MLP too (off for models trained across days:
    #: the turn MLP then cannot carry a time trend into hours it never saw)
    turn_time: bool = True


# --------------------------------------------------------------------------- features
def time_bucket(departure: dt.datetime | None, bucket_minutes: int,
                timezone: str | None = None) -> int:
    """Bucket id: ``weekend * slots_per_day + slot of the day`` of the local clock time."""
    departure = departure or DEFAULT_DEPARTURE
    if departure.tzinfo is not None:  # aware (or epoch) -> the city's local clock
        from zoneinfo import ZoneInfo

        departure = departure.astimezone(ZoneInfo(timezone) if timezone else dt.UTC)
    slots_per_day = 24 * 60 // bucket_minutes
    slot = (departure.hour * 60 + departure.minute) // bucket_minutes
    return int((departure.weekday() >= 5) * slots_per_day + slot)


def time_features(bucket: int, bucket_minutes: int) -> np.ndarray:
    """``[5]``: daily and half-daily harmonics of the bucket's mid time, weekend flag."""
    slots_per_day = 24 * 60 // bucket_minutes
    weekend, slot = divmod(int(bucket), slots_per_day)
    hour = (slot + 0.5) * bucket_minutes / 60.0
    angle = 2 * math.pi * hour / 24.0
    return np.array([math.sin(angle), math.cos(angle), math.sin(2 * angle),
                     math.cos(2 * angle), float(weekend)], dtype=np.float32)


@dataclass
class FeatureScaler:
    """Standardisation fitted on the training city, applied unchanged to any other."""

    segment_names: list[str]
    segment_mean: np.ndarray
    segment_std: np.ndarray
    turn_names: list[str]
    turn_mean: np.ndarray
    turn_std: np.ndarray

    @staticmethod
    def _raw(graph: RoadGraph) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
        segment, segment_names = graph.numeric_segment_features()
        keep = [i for i, name in enumerate(segment_names) if name not in _DROPPED_FEATURES]
        segment, segment_names = segment[:, keep], [segment_names[i] for i in keep]
        for i, name in enumerate(segment_names):
            if name in _LOG_FEATURES:
                segment[:, i] = np.log1p(np.maximum(segment[:, i], 0.0))
        turn, turn_names = graph.numeric_turn_features()
        angle = np.radians(turn[:, turn_names.index("turn_angle_deg")])
        turn[:, turn_names.index("turn_angle_deg")] = np.sin(angle)  # left/right, signed
        turn = np.concatenate([turn, np.cos(angle)[:, None]], axis=1)
        return segment, segment_names, turn, [*turn_names, "turn_angle_cos"]

    @classmethod
    def fit(cls, graph: RoadGraph) -> FeatureScaler:
        segment, segment_names, turn, turn_names = cls._raw(graph)
        return cls(segment_names, segment.mean(0), np.maximum(segment.std(0), 1e-3),
                   turn_names, turn.mean(0), np.maximum(turn.std(0), 1e-3))

    def transform(self, graph: RoadGraph) -> tuple[np.ndarray, np.ndarray]:
        segment, segment_names, turn, turn_names = self._raw(graph)
        if segment_names != self.segment_names or turn_names != self.turn_names:
            raise ArtifactError("the road graph's features differ from the ones the ETA "
                                "model was trained on; re-ingest it with this version")
        segment = np.clip((segment - self.segment_mean) / self.segment_std, -5, 5)
        turn = np.clip((turn - self.turn_mean) / self.turn_std, -5, 5)
        return segment.astype(np.float32), turn.astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        return {"segment_names": self.segment_names,
                "segment_mean": self.segment_mean.tolist(),
                "segment_std": self.segment_std.tolist(), "turn_names": self.turn_names,
                "turn_mean": self.turn_mean.tolist(), "turn_std": self.turn_std.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureScaler:
        return cls(list(data["segment_names"]), np.asarray(data["segment_mean"]),
                   np.asarray(data["segment_std"]), list(data["turn_names"]),
                   np.asarray(data["turn_mean"]), np.asarray(data["turn_std"]))


# --------------------------------------------------------------------------- encoder
class RoadEncoder(nn.Module):
    r"""f̃: segment, turn and time features → per-edge time and edge latent.

    .. math::
        \mathbf{g}_b &= \mathrm{MLP}_s([\mathbf{x}_b, \boldsymbol{\tau}]), \qquad
        t_b = t^{\mathrm{free}}_b \exp\bigl(\mathrm{clip}(\mathbf{u}^\top\mathbf{g}_b)\bigr)\\
        \mathbf{k}_{ab} &= \mathrm{MLP}_t([\mathbf{g}_a, \mathbf{g}_b, \mathbf{y}_{ab},
            \boldsymbol{\tau}]), \qquad
        p_{ab} = P\,\mathrm{softplus}(\mathbf{v}^\top \mathbf{k}_{ab}), \qquad
        \boldsymbol{\delta}_{ab} = \mathbf{R}\,\mathbf{k}_{ab}

    Shapes: segment features ``[E, F]``, turn features ``[T, G]``, time ``[5]``; outputs
    per-segment times ``[E]``, per-turn penalties ``[T]`` (normalised by the time scale),
    residual directions ``[T, H]`` (turn mode) or ``[E, H]`` (node mode).
    """

    def __init__(self, segment_dim: int, turn_dim: int, latent: int, config: EtaConfig):
        super().__init__()
        hidden = config.encoder_hidden
        self.config = config
        live = len(LIVE_FEATURES) if config.traffic else 0
        self.segment_mlp = nn.Sequential(nn.Linear(segment_dim + TIME_FEATURES + live, hidden),
                                         nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.segment_factor = nn.Linear(hidden, 1)
        turn_time = TIME_FEATURES if config.turn_time else 0
        self.turn_mlp = nn.Sequential(
            nn.Linear(2 * hidden + turn_dim + turn_time, hidden), nn.ReLU())
        if config.traffic:  # the feed's own log time factor, scaled (starts as the feed says)
            self.live_gain = nn.Parameter(torch.ones(()))
        self.turn_penalty = nn.Linear(hidden, 1)
        self.residual = nn.Linear(hidden, latent, bias=False)
        for head in (self.segment_factor, self.residual):
            nn.init.zeros_(head.weight)
        nn.init.zeros_(self.segment_factor.bias)
        nn.init.zeros_(self.turn_penalty.weight)
        nn.init.constant_(self.turn_penalty.bias, -4.0)  # ~0.2 s per turn to start

    def forward(self, segment_x: Tensor, turn_x: Tensor, turn_index: Tensor,
                free_flow: Tensor, time_x: Tensor, time_scale: float,
                segment_offset: Tensor | None = None, live_x: Tensor | None = None,
                live_prior: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        num_segments = segment_x.shape[0]
        tau = time_x.expand(num_segments, -1)  # [E, 5]
        inputs = [segment_x, tau] if live_x is None else [segment_x, tau, live_x]  # [E, F+5+L]
        g = self.segment_mlp(torch.cat(inputs, -1))  # [E, C]
        factor = self.segment_factor(g).squeeze(-1)  # [E]
        if live_prior is not None:
            factor = factor + self.live_gain * live_prior
        if segment_offset is not None:
            factor = factor + segment_offset
        factor = factor.clamp(-self.config.max_log_factor,
                                                          self.config.max_log_factor)
        segment_time = free_flow * torch.exp(factor) / time_scale  # [E]
        if not graph_mode(self.config.graph_mode).keys_are_segments:  # no turns to time
            residual = self.residual(g) if self.config.residual else None  # [E, H]
            penalty = segment_time.new_zeros(turn_x.shape[0])
            return segment_time, penalty, residual
        a, b = turn_index
        turn_inputs = [g[a], g[b], turn_x]
        if self.config.turn_time:
            turn_inputs.append(time_x.expand(turn_x.shape[0], -1))
        k = self.turn_mlp(torch.cat(turn_inputs, -1))  # [T, C]
        penalty = (self.config.turn_penalty_scale_s / time_scale
                   * nn.functional.softplus(self.turn_penalty(k).squeeze(-1)))  # [T]
        residual = self.residual(k) if self.config.residual else None  # [T, H]
        return segment_time, penalty, residual


class EtaDecoder(nn.Module):
    r"""g̃: latent state → normalised time, :math:`\hat t_v = \mathbf{c}^\top\mathbf{h}_v`
    (bias-free, initialised from the processor's distance decoder). ``[B, K, H] → [B, K]``."""

    def __init__(self, processor: Processor):
        super().__init__()
        hidden = processor.config.hidden
        self.readout = nn.Linear(hidden, 1, bias=False)
        source = processor.distance_decoder.net
        with torch.no_grad():
            if isinstance(source, nn.Linear):
                self.readout.weight.copy_(source.weight)
            else:
                self.readout.weight.fill_(-1.0 / hidden)

    def forward(self, h: Tensor) -> Tensor:
        return self.readout(h).squeeze(-1)


# --------------------------------------------------------------------------- the model
@dataclass
class Latents:
    segment_time: Tensor  # [E] normalised
    turn_penalty: Tensor  # [T] normalised
    edge_latent: Tensor  # [K_edges, H] on the processor graph
    edge_index: Tensor  # [2, K_edges]


class EtaModel(nn.Module):
    """Encoder + frozen processor + decoder over one RoadGraph; a TravelTimeModel."""

    name = "nar_eta"

    def __init__(self, graph: RoadGraph, processor: Processor, weight_encoder: WeightEncoder,
                 processor_manifest: dict[str, Any], *, config: EtaConfig | None = None,
                 scaler: FeatureScaler | None = None, time_scale: float | None = None):
        super().__init__()
        self.config = config or EtaConfig()
        graph_mode(self.config.graph_mode)  # ValueError unless "turn" or "node"
        if processor.config.layer != "tropical":
            raise ArtifactError("the ETA model needs a processor with the homogeneous "
                                f"'tropical' layer, not {processor.config.layer!r}")
        self.processor = processor.freeze()
        self.weight_encoder = weight_encoder.requires_grad_(False).eval()
        self.processor_hash = artifact_hash(processor_manifest)
        with torch.no_grad():  # frozen constants of the processor's edge map B and direction a
            edge_map = processor.layer.edge.weight.detach().double()  # [H, H]
            direction = weight_encoder.linear.weight.detach().double()[:, 0]  # [H]
            self._edge_cost_direction = (edge_map @ direction).float()  # B a, [H]
            self._edge_map_inverse = torch.linalg.inv(edge_map).float()  # [H, H]
        self.processor_manifest = processor_manifest
        self.scaler = scaler or FeatureScaler.fit(graph)
        self.time_scale = float(time_scale or np.mean(graph["free_flow_s"]))
        segment_x, turn_x = self.scaler.transform(graph)
        self.encoder = RoadEncoder(segment_x.shape[1], turn_x.shape[1],
                                   processor.config.hidden, self.config)
        self.decoder = EtaDecoder(processor)
        self.segment_offset = nn.Parameter(torch.zeros(graph.num_segments),
                                           requires_grad=self.config.segment_offsets)
        self._cache_lock = threading.Lock()
        self.attach(graph)
        self._cache: OrderedDict[Any, Latents] = OrderedDict()

    def train(self, mode: bool = True) -> EtaModel:
        """Train/eval mode for encoder and decoder; the processor always stays in eval."""
        super().train(mode)
        self.processor.eval()
        self._cache = OrderedDict()  # latents cached in eval mode go stale as weights move
        self.__dict__.pop("_plans", None)
        return self

    # -- graph-dependent tensors (not parameters; an encoder transfers between cities) ----
    def attach(self, graph: RoadGraph) -> None:
        segment_x, turn_x = self.scaler.transform(graph)
        self.graph = graph
        self.segment_x = torch.from_numpy(segment_x)
        self.turn_x = torch.from_numpy(turn_x)
        self.turn_index = torch.from_numpy(
            np.stack([graph["turn_from"], graph["turn_to"]]).astype(np.int64))
        self.segment_index = torch.from_numpy(graph.edge_index.astype(np.int64))
        self.free_flow = torch.from_numpy(graph["free_flow_s"].astype(np.float32))
        self._cache = OrderedDict()
        self.__dict__.pop("_plans", None)

    @property
    def graph_mode(self) -> str:
        return self.config.graph_mode

    @property
    def mode(self) -> GraphMode:
        """The node / turn strategy (:mod:`models.inference.graph_modes`)."""
        return graph_mode(self.config.graph_mode)

    @property
    def identity(self) -> str:
        return getattr(self, "_identity", "untrained")

    def trainable_parameters(self) -> list[nn.Parameter]:
        offsets = [self.segment_offset] if self.config.segment_offsets else []
        return [*self.encoder.parameters(), *self.decoder.parameters(), *offsets]

    @property
    def uses_traffic(self) -> bool:
        """The encoder reads live traffic features (run keys carry a traffic state)."""
        return self.config.traffic

    @property
    def timezone(self) -> str | None:
        return self.config.timezone

    def _live_inputs(self, state) -> tuple[Tensor | None, Tensor | None]:
        """Live features ``[E, L]`` and the feed's log time factor ``[E]``; without a state
        every segment is 'not observed' and the prior is zero (the historical model)."""
        if not self.config.traffic:
            return None, None
        if state is None:
            return (torch.from_numpy(no_traffic_features(self.graph.num_segments)),
                    torch.zeros(self.graph.num_segments))
        if state.features.shape != (self.graph.num_segments, len(LIVE_FEATURES)):
            raise ArtifactError("the traffic state was built for another road graph")
        return (torch.from_numpy(state.features),
                torch.from_numpy(state.prior_log_factor.astype(np.float32)))

    def latents(self, key) -> Latents:
        """Encoder outputs for one run key: a departure-time bucket, or a
        :class:`models.inference.live.RunKey` (bucket + traffic state); cached when not training."""
        if not self.training:
            with self._cache_lock:
                cached = self._cache.get(key)
                if cached is not None:
                    self._cache.move_to_end(key)
            if cached is not None:
                return cached
        bucket, state = key_parts(key)
        time_x = torch.from_numpy(time_features(bucket, self.config.bucket_minutes))
        offset = self.segment_offset if self.config.segment_offsets else None
        live_x, live_prior = self._live_inputs(state)
        segment_time, penalty, residual = self.encoder(
            self.segment_x, self.turn_x, self.turn_index, self.free_flow, time_x,
            self.time_scale, offset, live_x, live_prior)
        if self.mode.keys_are_segments:
            weight = segment_time[self.turn_index[1]] + penalty  # [T]
            edge_index = self.turn_index
        else:
            weight = segment_time  # [E]
            edge_index = self.segment_index
        edge_latent = self._edge_latent(weight, residual)
        result = Latents(segment_time, penalty, edge_latent, edge_index)
        if not self.training:
            with self._cache_lock:  # an LRU bounded in bytes; the newest always stays
                self._cache[key] = result
                self._cache.move_to_end(key)
                while len(self._cache) > 1 and sum(
                        _latents_bytes(value) for value in self._cache.values()
                ) > self.latent_cache_mb * 2**20:
                    self._cache.popitem(last=False)
        return result

    def _edge_latent(self, weight: Tensor, residual: Tensor | None) -> Tensor:
        """The processor's edge input ``[K, H]`` from the encoder's scalar edge time ``[K]``
        and its residual directions ``[K, H]`` (None without ``config.residual``)."""
        if residual is None:
            return self.weight_encoder(weight)  # [K, H]
        # per-channel positive reweighting, see the module docstring
        channel_cost = self._edge_cost_direction * torch.exp(
            residual.clamp(-self.config.max_log_factor, self.config.max_log_factor))
        return weight.unsqueeze(-1) * (channel_cost @ self._edge_map_inverse.T)

    def run(self, roots: Tensor, edge_latent: Tensor, edge_index: Tensor, num_keys: int,
            *, source_mask: Tensor | None = None, pointers: bool = False
            ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Processor run(s) to the fixed point (frontier execution, see models.execution.frontier):
        ``roots`` [B] (one source per row) or an explicit ``source_mask`` [B, K]. Returns
        normalised times [B, K] (``inf`` unreached), ``reached`` [B, K] and, if asked,
        pointer logits [B, edges]."""
        if source_mask is None:
            source_mask = torch.zeros(len(roots), num_keys, dtype=torch.bool)
            source_mask[torch.arange(len(roots)), roots] = True
        h0 = self.processor.initial_state(source_mask)
        hidden, reached, _ = frontier_run(self.processor, h0, source_mask, edge_latent,
                                          edge_index)
        times = self.decoder(hidden).masked_fill(~reached, math.inf)
        times = times.masked_fill(source_mask, 0.0)
        logits = None
        if pointers:
            _, logits = self.processor.decode(hidden, reached, edge_latent, edge_index)
        return times, reached, logits

    # -- TravelTimeModel --------------------------------------------------------------------
    def time_bucket(self, departure_time: dt.datetime | None) -> int:
        return time_bucket(departure_time, self.config.bucket_minutes, self.config.timezone)

    @torch.no_grad()
    def segment_times_s(self, bucket: int) -> np.ndarray:
        latents = self.latents(bucket)
        if self.training:
            return latents.segment_time.double().numpy() * self.time_scale
        # once per cached run key (read-only): every query asks for them
        seconds = latents.__dict__.get("segment_seconds")
        if seconds is None:
            seconds = latents.segment_time.double().numpy() * self.time_scale
            seconds.setflags(write=False)
            latents.segment_seconds = seconds
        return seconds

    @torch.no_grad()
    def turn_times_s(self, bucket: int) -> np.ndarray | None:
        if not self.mode.keys_are_segments:
            return None
        return self.latents(bucket).turn_penalty.double().numpy() * self.time_scale

    # -- inference execution (NumPy / scipy, see models.execution.executor) -------------
    #: targeted searches go this much farther than the farthest target (so that the keys
    #: around it, whose states the pointer decoder reads, are settled too)
    search_slack = 1.0
    #: targeted queries on the contraction hierarchy ("cch") or by the bounded channel
    #: search ("search"); both exact (tests/models/test_cch.py)
    engine = "cch"

    @property
    def supports_channel_search(self) -> bool:
        """With the identity sender map every latent channel is its own min-plus recursion."""
        return self.processor.layer.sender_offset is None and (
            self.processor.source_embedding is None)

    @property
    def supports_targets(self) -> bool:
        """:meth:`run_from` can stop once given target keys are settled."""
        return self.supports_channel_search

    @property
    def targets_are_cheap(self) -> bool:
        """Targeted runs are hierarchy queries (a small fraction of a whole-graph run)."""
        return self.supports_targets and self.engine == "cch"

    @property
    def num_keys(self) -> int:
        return self.mode.num_keys(self.graph)

    #: byte bound of the encoder outputs kept per run key (~1.3 MB each on the bundled city)
    latent_cache_mb = 64.0
    #: byte bound of the per-run-key plans kept (a plan of the bundled city with its
    #: customised hierarchy is ~25 MB); the newest plan is kept whatever its size
    plan_cache_mb = 256.0

    def _plan(self, bucket) -> dict[str, Any]:
        """Per-run-key NumPy constants for :meth:`run_from`: an LRU bounded in bytes, shared
        by the server's threads behind one lock; concurrent requests for a key being built
        wait for that build instead of repeating it."""
        if self.training:
            return self._build_plan(bucket)
        while True:
            with self._cache_lock:
                plans = self.__dict__.setdefault("_plans", OrderedDict())
                building = self.__dict__.setdefault("_plans_building", {})
                if bucket in plans:
                    plans.move_to_end(bucket)
                    return plans[bucket]
                event = building.get(bucket)
                if event is None:
                    event = building[bucket] = threading.Event()
                    break
            event.wait()  # built by another thread (or failed: then try ourselves)
        try:
            plan = self._build_plan(bucket)
            size = _plan_bytes(plan)
            with self._cache_lock:
                plans[bucket] = plan
                self._plan_bytes = self.__dict__.get("_plan_bytes", {})
                self._plan_bytes[bucket] = size
                while len(plans) > 1 and (sum(self._plan_bytes[k] for k in plans)
                                          > self.plan_cache_mb * 2**20):
                    evicted, _ = plans.popitem(last=False)
                    self._plan_bytes.pop(evicted, None)
            return plan
        finally:
            with self._cache_lock:
                building.pop(bucket).set()

    def _build_plan(self, bucket) -> dict[str, Any]:
        from models.execution.executor import ChannelSearch, Csr

        with torch.no_grad():
            latents = self.latents(bucket)
            layer = self.processor.layer
            edge_term = layer.edge(latents.edge_latent).float().numpy()  # [K_edges, H]
            pointer = self.processor.pointer_decoder.net.weight.detach().double().numpy()[0]
            sender_matrix = (None if layer.sender_offset is None
                             else layer.sender_matrix.detach().float().numpy())
            readout = self.decoder.readout.weight.detach().double().numpy()[0]  # [H]
        with self._cache_lock:
            if self.__dict__.get("_csr_graph") is not self.graph:
                index = latents.edge_index.numpy()
                self._csr = Csr.build(index[0], index[1], self.num_keys)
                self._hierarchy = None
                self._csr_graph = self.graph
        edge_cost = -edge_term.astype(np.float64)
        channel = self.supports_channel_search and bool((edge_cost >= 0).all())
        search = ChannelSearch(self._csr, edge_cost) if channel else None
        plan = {
            "edge_term": edge_term,
            "sender_matrix": sender_matrix,
            "readout": readout,
            "node_pointer": pointer if sender_matrix is None else sender_matrix.T @ pointer,
            "edge_pointer": edge_term.astype(np.float64) @ pointer,
            "search": search,
            # targeted queries: the customised hierarchy (models.execution.cch), exact too
            "metric": (self._key_hierarchy().customise(search.cost[self._csr.edge_row])
                       if channel and self.engine == "cch" and not self.training else None),
        }
        return plan

    def _key_hierarchy(self):
        """The contraction hierarchy of the processor graph's keys (built once per graph;
        segments sit at their midpoints in turn mode)."""
        from models.execution.cch import Hierarchy, key_coordinates

        with self._cache_lock:
            if self.__dict__.get("_hierarchy") is None:
                csr = self._csr
                self._hierarchy = Hierarchy.build(
                    csr.sender, csr.receiver, self.num_keys,
                    key_coordinates(self.graph, self.mode.keys_are_segments))
            return self._hierarchy

    def _decode(self, plan: dict[str, Any], state: np.ndarray, limits: np.ndarray,
                root: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Distance read-out and pointer decoder on the states ``[K, C]`` of one run
        (``-inf`` where a search stopped at ``limits``). Returns (seconds, parent, exact
        time, exact parent). A key's time is exact where it is settled in every channel.
        Its pointer is the decoder's best incoming message; a sender left unsettled in
        channel ``k`` costs more than ``limits[k]`` there, so with non-negative pointer
        weights its true score is at most the score with ``-limits[k]`` in place: when a
        settled sender still wins against those optimistic scores, the pointer is the
        whole-graph run's."""
        from models.execution.executor import best_incoming

        csr = self._csr
        reached = np.isfinite(state).all(-1)
        safe = np.where(reached[:, None], state, 0.0)
        # a row sum, not a matrix-vector product: it rounds the same for one row and for
        # all rows, so targeted and whole-graph runs give bit-identical seconds
        seconds = np.where(reached, (safe * plan["readout"]).sum(-1) * self.time_scale, np.inf)
        seconds[root] = 0.0
        limited = bool(np.isfinite(limits).any())
        pointer = plan["node_pointer"]
        if limited and (pointer >= 0).all():  # optimistic states for the unsettled
            optimistic = np.where(np.isfinite(state), state, -limits[None, :])
            candidates = np.isfinite(optimistic).all(-1)
            winner = best_incoming(csr, np.where(candidates[:, None], optimistic, 0.0)
                                   @ pointer, plan["edge_pointer"], candidates)
        else:
            winner = best_incoming(csr, safe @ pointer, plan["edge_pointer"], reached)
        pick = np.maximum(winner, 0)
        has = (winner >= 0) & reached
        has[root] = False
        # turn mode: the previous segment (the turn's sender); node mode: the segment
        chosen = self.mode.tree_parent(csr.sender, csr.edge_row)[pick]
        parent = np.where(has, chosen, -1)
        if not limited:
            return seconds, parent, np.ones_like(reached), np.ones_like(reached)
        exact_parent = reached & ((winner < 0) | reached[csr.sender[pick]])
        if not (pointer >= 0).all():  # no bound: every in-neighbour must be settled
            doubtful = np.zeros(len(reached), dtype=bool)
            doubtful[csr.receiver[~reached[csr.sender]]] = True
            exact_parent &= ~doubtful
        exact_parent[root] = True
        return seconds, parent, reached, exact_parent

    def _walk_inputs(self) -> tuple[np.ndarray, ...]:
        """Incoming edges by receiver and the metres each key / edge adds (graph-level)."""
        if self.__dict__.get("_walk_graph") is not self.graph:
            csr = self._csr
            order = np.argsort(csr.receiver, kind="stable")
            indptr = np.concatenate([[0], np.cumsum(np.bincount(
                csr.receiver, minlength=csr.num_nodes))]).astype(np.int64)
            length = self.graph["length_m"].astype(np.float64)
            rows = int(csr.edge_row.max(initial=-1)) + 1
            if self.mode.keys_are_segments:  # entering segment b drives all of it
                key_length, edge_length = length, np.zeros(rows)
            else:  # driving segment e (edge row = segment id)
                key_length, edge_length = np.zeros(csr.num_nodes), length
            self._walk = (indptr, order.astype(np.int64), key_length, edge_length)
            self._walk_graph = self.graph
        return self._walk

    def _answer_targets(self, plan: dict[str, Any], root: int, wanted: np.ndarray
                        ) -> tuple[np.ndarray, ...]:
        """Times and metres at ``wanted`` only (no whole-graph decoding): the searched
        states, the distance read-out at the targets, and the pointer decoder followed
        back from each (on the hierarchy, :meth:`_answer_on_hierarchy`; else the bounded
        channel search and models.execution.kernels.walk_pointers). Returns (keys,
        seconds, metres, proven, parent [K] along the walked paths, which of those pointers
        are proven)."""
        from models.execution import kernels

        keys = np.unique(np.asarray(wanted, dtype=np.int64))
        if plan.get("metric") is not None:
            return self._answer_on_hierarchy(plan, root, keys)
        csr = self._csr
        indptr, order, key_length, edge_length = self._walk_inputs()
        parent = np.full(self.num_keys, -1, dtype=np.int64)
        pointer_proven = np.zeros(self.num_keys, dtype=np.bool_)
        cost, limits = plan["search"].distances_to(root, keys, slack=self.search_slack)
        state = -cost
        finite = np.isfinite(cost[keys]).all(axis=1)
        seconds = self._seconds(plan, cost[keys])
        seconds[keys == root] = 0.0
        metres, proven = kernels.walk_pointers(
            indptr, order, csr.sender, csr.edge_row, np.ascontiguousarray(state),
            plan["node_pointer"], plan["edge_pointer"], np.ascontiguousarray(limits),
            key_length, edge_length, int(root), keys, not self.mode.keys_are_segments, parent,
            pointer_proven)
        # a target the unlimited search left at inf is unreachable: that answer is exact too
        unlimited = not np.isfinite(limits).any()
        return (keys, seconds, metres, np.where(finite, proven, unlimited), parent,
                pointer_proven)

    def _seconds(self, plan: dict[str, Any], cost: np.ndarray) -> np.ndarray:
        """The distance read-out of per-channel path costs ``[..., C]``: seconds, inf
        where some channel is (unreached)."""
        finite = np.isfinite(cost).all(axis=-1)
        seconds = np.full(finite.shape, np.inf)
        seconds[finite] = (-cost[finite] * plan["readout"]).sum(-1) * self.time_scale
        return seconds

    def _answer_on_hierarchy(self, plan: dict[str, Any], root: int, keys: np.ndarray
                             ) -> tuple[np.ndarray, ...]:
        """:meth:`_answer_targets` on the customised hierarchy: exact costs at the keys and
        at every sender the pointer walk compares, so every answer is proven unless the
        pointers loop."""
        from models.execution import kernels

        csr, hierarchy, metric = self._csr, self._key_hierarchy(), plan["metric"]
        indptr, order, key_length, edge_length = self._walk_inputs()
        parent = np.full(self.num_keys, -1, dtype=np.int64)
        pointer_proven = np.zeros(self.num_keys, dtype=np.bool_)
        scratch = hierarchy.scratch(metric.up.shape[1])
        cost, metres, proven = kernels.cch_targets(
            hierarchy.parent, hierarchy.up_indptr, hierarchy.up_head, metric.up, metric.down,
            int(root), keys, indptr, order, csr.sender, csr.edge_row, plan["node_pointer"],
            plan["edge_pointer"], key_length, edge_length, not self.mode.keys_are_segments, True,
            parent, pointer_proven, *scratch.arrays, scratch.next_stamp())
        seconds = self._seconds(plan, cost)
        seconds[keys == root] = 0.0
        metres[keys == root] = 0.0
        return keys, seconds, metres, proven, parent, pointer_proven

    def durations_to(self, roots: np.ndarray, keys: np.ndarray, bucket) -> np.ndarray:
        """``[R, K]`` seconds from each root to each key (inf: no route), as
        :meth:`run_from` answers them, without pointers: the hierarchy's many-to-many (a
        duration matrix). Needs :attr:`targets_are_cheap`."""
        from models.execution import kernels

        plan = self._plan(bucket)
        if plan.get("metric") is None:
            raise ValueError("durations_to needs the contraction-hierarchy engine")
        hierarchy, metric = self._key_hierarchy(), plan["metric"]
        roots = np.asarray(roots, dtype=np.int64)
        keys = np.asarray(keys, dtype=np.int64)
        cost = kernels.cch_many(hierarchy.parent, hierarchy.up_indptr, hierarchy.up_head,
                                metric.up, metric.down, hierarchy.rank, roots, keys, 8)
        seconds = self._seconds(plan, cost)
        seconds[roots[:, None] == keys[None, :]] = 0.0
        return seconds

    @torch.no_grad()
    def run_from(self, origins: np.ndarray, bucket: int, *, batch_size: int = 16,
                 targets: list[np.ndarray] | None = None, pointers: bool = True
                 ) -> OriginRun:
        """Trees from ``origins`` (keys): the frozen processor's fixed point, its distance
        read-out and its pointer decoder, executed in NumPy (models.execution.executor).

        ``targets``: per origin the keys the caller needs. With the identity sender map
        the search then stops once those are settled in every channel (cost grows with
        the trip); ``exact_time`` / ``exact_parent`` say which answers are settled (exact
        and equal to the whole-graph run). Without targets every key is answered.
        ``pointers=False`` (with targets): answer only the targets' times, and metres and
        parents along the decoded pointers followed back from them (no whole-graph
        decoding)."""
        from models.execution.executor import tropical_fixed_point

        origins = np.asarray(origins, dtype=np.int64)
        plan = self._plan(bucket)
        num_keys = self.num_keys
        if targets is not None and len(targets) != len(origins):
            raise ValueError("one target array per origin")
        csr, search = self._csr, plan["search"]
        if (not pointers and targets is not None and search is not None
                and (plan["node_pointer"] >= 0).all()):
            answers = []
            for row, root in enumerate(origins.tolist()):
                keys, seconds, metres, proven, parent, pointer_proven = \
                    self._answer_targets(plan, root, np.append(targets[row], root))
                path_keys = np.flatnonzero(pointer_proven)
                answers.append((keys[proven], seconds[proven], metres[proven], path_keys,
                                parent[path_keys]))
            empty = np.zeros((len(origins), 0))
            return OriginRun(origins, empty, empty.astype(np.int64), answers=answers)
        times = np.full((len(origins), num_keys), np.inf)
        parents = np.full((len(origins), num_keys), -1, dtype=np.int64)
        exact_time = np.ones((len(origins), num_keys), dtype=bool)
        exact_parent = np.ones_like(exact_time)
        for first in range(0, len(origins), batch_size):
            rows = np.arange(first, min(first + batch_size, len(origins)))
            if search is None:  # general sender map: the synchronous frontier, whole graph
                union = csr.copies(len(rows))
                roots = origins[rows] + np.arange(len(rows)) * num_keys
                h, reached_flat, _ = tropical_fixed_point(
                    union, plan["edge_term"], roots, sender_matrix=plan["sender_matrix"],
                    rtol=self.processor.config.convergence_rtol, max_steps=num_keys)
                h = np.where(reached_flat[:, None], h.astype(np.float64), -np.inf)
                h = h.reshape(len(rows), num_keys, -1)
            limits = np.full((len(rows), plan["edge_term"].shape[1]), np.inf)
            if search is not None and targets is None:
                h = -search.distances(origins[rows])  # [b, K, C]
            elif search is not None:
                runs = [search.distances_to(int(origins[row]), targets[row],
                                            slack=self.search_slack) for row in rows]
                h = -np.stack([cost for cost, _ in runs])
                limits = np.stack([limit for _, limit in runs])
            for i, row in enumerate(rows):
                result = self._decode(plan, h[i], limits[i], int(origins[row]))
                times[row], parents[row], exact_time[row], exact_parent[row] = result
        return OriginRun(origins, times, parents, exact_time=exact_time,
                         exact_parent=exact_parent)

    @torch.no_grad()
    def run_from_torch(self, origins: np.ndarray, bucket: int, *, batch_size: int = 16
                       ) -> OriginRun:
        """:meth:`run_from` executed by the torch frontier (the training path); kept to
        check the NumPy executor against it."""
        latents = self.latents(bucket)
        num_keys = self.num_keys
        times, parents = [], []
        sender, receiver = latents.edge_index
        for start in range(0, len(origins), batch_size):
            roots = torch.from_numpy(np.asarray(origins[start:start + batch_size], np.int64))
            time_norm, reached, logits = self.run(roots, latents.edge_latent,
                                                  latents.edge_index, num_keys, pointers=True)
            best = scatter_max(logits.unsqueeze(-1), receiver, num_keys).squeeze(-1)  # [B, K]
            is_best = (logits == best[:, receiver]) & (logits > NEG_INF)  # [B, edges]
            edge_ids = torch.arange(receiver.numel()).expand_as(is_best)
            first = torch.full((len(roots), num_keys), receiver.numel(), dtype=torch.long)
            first = first.scatter_reduce(1, receiver.expand_as(is_best),
                                         torch.where(is_best, edge_ids, receiver.numel()),
                                         "amin")  # [B, K] winning incoming edge
            has = (first < receiver.numel()) & reached
            has[torch.arange(len(roots)), roots] = False
            # turn: the previous segment (the turn's sender); node: the segment (edge id)
            sent = sender[first.clamp_max(receiver.numel() - 1)]
            parent = torch.where(has, self.mode.tree_parent(sent, first), -1)
            times.append(time_norm.double().numpy() * self.time_scale)
            parents.append(parent.numpy())
        return OriginRun(np.asarray(origins, np.int64), np.concatenate(times),
                         np.concatenate(parents).astype(np.int64))

    # -- artifact -----------------------------------------------------------------------------
    def save(self, out_dir: str | os.PathLike[str], *, processor_dir: str | os.PathLike[str],
             seed: int, extra: dict[str, Any] | None = None, force: bool = False) -> Path:
        from safetensors.torch import save_file

        tensors = {f"encoder.{k}": v.detach().contiguous()
                   for k, v in self.encoder.state_dict().items()}
        tensors.update({f"decoder.{k}": v.detach().contiguous()
                        for k, v in self.decoder.state_dict().items()})
        tensors["segment_offset"] = self.segment_offset.detach().contiguous()
        with atomic_artifact_dir(out_dir, force=force) as staging:
            save_file(tensors, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
            manifest = {
                "config": dataclasses.asdict(self.config),
                "scaler": self.scaler.to_json(),
                "time_scale_s": self.time_scale,
                # relative to this artifact, so a repo or volume can move as a whole
                "processor": {"hash": self.processor_hash,
                              "path": os.path.relpath(Path(processor_dir).resolve(),
                                                      Path(out_dir).resolve())},
                "graph_identity": self.graph.identity,
            }
            manifest.update(extra or {})
            write_manifest(staging, kind=KIND, schema_version=SCHEMA_VERSION, seed=seed,
                           extra=manifest)
        return Path(out_dir)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], graph: RoadGraph, *,
             processor_dir: str | os.PathLike[str] | None = None,
             allow_other_graph: bool = False) -> EtaModel:
        """Load an EtaModel artifact for ``graph``. Refuses a processor whose hash differs
        from the one it was trained against, and (unless ``allow_other_graph``, for transfer
        experiments) a graph other than its training graph."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from models.inference.registry import find_processor

        manifest = read_manifest(directory, kind=KIND, schema_versions=(SCHEMA_VERSION,))
        recorded = manifest["processor"]
        processor_path = (Path(processor_dir) if processor_dir
                          else find_processor(directory, recorded))
        processor, weight_encoder, processor_manifest = load_pretrained(processor_path)
        if artifact_hash(processor_manifest) != recorded["hash"]:
            raise ArtifactError(
                f"ETA model {directory} was trained against processor {recorded['hash'][:12]}, "
                f"but {processor_path} is {artifact_hash(processor_manifest)[:12]}; "
                "use the processor it was trained with or retrain")
        if not allow_other_graph and manifest["graph_identity"] != graph.identity:
            raise ArtifactError(
                f"ETA model {directory} was trained on graph {manifest['graph_identity'][:12]}, "
                f"not on this graph ({graph.identity[:12]}); load the matching graph")
        config = EtaConfig(**manifest["config"])
        model = cls(graph, processor, weight_encoder, processor_manifest, config=config,
                    scaler=FeatureScaler.from_json(manifest["scaler"]),
                    time_scale=manifest["time_scale_s"])
        try:
            tensors = load_file(str(Path(directory) / WEIGHTS_FILE))
            for prefix, module in (("encoder.", model.encoder), ("decoder.", model.decoder)):
                module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items()
                                        if k.startswith(prefix)}, strict=True)
            same_graph = manifest["graph_identity"] == graph.identity
            if same_graph and tensors["segment_offset"].shape == (graph.num_segments,):
                with torch.no_grad():
                    model.segment_offset.copy_(tensors["segment_offset"])
            # on another graph (transfer) the per-segment offsets stay zero
        except (OSError, SafetensorError, RuntimeError) as exc:
            raise ArtifactError(f"ETA model {directory}: weights do not load ({exc})") from exc
        model.eval()
        model._identity = artifact_hash(manifest)
        model.manifest = manifest
        return model


def _plan_bytes(plan: dict[str, Any]) -> int:
    """Bytes held by a plan's arrays, its search's cost tables and its metric."""
    total = 0
    for value in plan.values():
        if isinstance(value, np.ndarray):
            total += value.nbytes
        elif value is not None and hasattr(value, "nbytes"):
            total += int(value.nbytes)
        elif value is not None and hasattr(value, "cost"):
            total += value.cost.nbytes + value.guide.nbytes
    return total


def _latents_bytes(latents: Latents) -> int:
    """Bytes of one run key's encoder outputs (the edge index is the graph's, shared)."""
    return sum(int(t.element_size() * t.nelement()) for t in (
        latents.segment_time, latents.turn_penalty, latents.edge_latent))
