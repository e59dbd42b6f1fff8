"""``nareta train``: fit the ETA model's encoder f̃ and decoder g̃ on observed trips, through
the frozen processor.

Trips are grouped by (origin, departure-time bucket): one processor run from an origin
supervises every destination of the group. Each run is made on the group's *corridor* (the
segments inside an ellipse around its origin and destinations, DESIGN "Scale"), and the
corridors of a batch are stacked as one disjoint graph, so a batch costs one processor run.
The loss is the mean absolute log ratio |log(predicted / true)|, a relative error.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from data_pipeline.road_graph import RoadGraph
from models.eta.model import EtaConfig, EtaModel, time_bucket
from models.inference.graph_modes import graph_mode
from models.processor.model import load_pretrained
from nareta.errors import InputError


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    epochs: int = 8
    batch_trips: int = 64
    learning_rate: float = 3e-3
    corridor_factor: float = 1.2  # ellipse: |o-m| + |m-d| <= factor * |o-d| + margin
    corridor_margin_m: float = 250.0
    validation_share: float = 0.1
    patience: int = 2
    max_minutes: float = 30.0
    offset_l2: float = 1e-3  # weight of mean(offset^2), per trip, on per-segment offsets
    #: weight of the route hint: the encoder's own segment + turn times summed along each
    #: trip's driven route should match its duration (0 turns it off)
    route_weight: float = 1.0
    #: "random": a random share validates; "latest": the latest departures do (early
    #: stopping then rewards what carries forward in time, not what interpolates)
    validation: str = "random"
    #: the decoder's learning rate relative to ``learning_rate``
    decoder_lr_scale: float = 0.03
    #: run keys whose route hint is added per step (all when there are no more)
    hint_keys_per_step: int = 8


@dataclass
class TripBatchData:
    """Per-trip arrays for training (one origin and one destination direction each)."""

    origin_segment: np.ndarray  # [M]
    origin_position: np.ndarray  # [M] by length along origin_segment
    destination_segment: np.ndarray
    destination_position: np.ndarray
    bucket: np.ndarray  # run-key ids: time buckets, or indices into ``keys``
    duration_s: np.ndarray
    #: with live traffic, the run key (models.inference.live.RunKey) of each id in ``bucket``
    keys: list | None = None

    def run_key(self, bucket: int):
        """What the model runs on for id ``bucket``: a time bucket or a RunKey."""
        return self.keys[int(bucket)] if self.keys is not None else int(bucket)


#: training mixes feed conditions per departure window so that the model learns the
#: historical fallback and the smoothing: (share of windows, coverage); 0 = no feed
FEED_MIX = ((0.2, 0.0), (0.5, 1.0), (0.3, 0.5))


def traffic_keys(model: EtaModel, traffic, frame: pd.DataFrame, *, seed: int,
                 mix: tuple[tuple[float, float], ...] = FEED_MIX,
                 rows: np.ndarray | None = None) -> tuple[np.ndarray, list]:
    """Run keys for trips with a live feed: each trip sees the state of its departure
    window (windows ended before it departs), under a feed condition drawn per window
    from ``mix`` (``rows``, if given, always see the full feed: validation)."""
    from models.inference.live import RunKey

    departures = pd.to_datetime(frame["departure_local"]).dt.to_pydatetime()
    buckets = [model.time_bucket(d) for d in departures]
    local_s = frame["departure_s"].to_numpy(np.float64)
    slots = np.floor(local_s / traffic.window_s).astype(np.int64)
    shares = np.array([share for share, _ in mix])
    full = np.zeros(len(frame), dtype=bool)
    if rows is not None:
        full[rows] = True
    ids: dict[RunKey, int] = {}
    keys: list = []
    out = np.zeros(len(frame), dtype=np.int64)
    for row in range(len(frame)):
        coverage = 1.0
        if not full[row]:
            draw = np.random.default_rng([seed, int(slots[row])]).random()
            coverage = mix[int(np.searchsorted(np.cumsum(shares) / shares.sum(), draw))][1]
        if coverage <= 0.0:
            key = RunKey(buckets[row])
        else:
            state = traffic.state_at(float(local_s[row]), coverage=coverage,
                                     seed=int(slots[row]))
            key = RunKey(buckets[row], state.key, state)
        if key not in ids:
            ids[key] = len(keys)
            keys.append(key)
        out[row] = ids[key]
    return out, keys


def trip_arrays(graph: RoadGraph, frame: pd.DataFrame, bucket_minutes: int,
                *, keys: tuple[np.ndarray, list] | None = None) -> TripBatchData:
    """Choose each trip's driving direction at both ends: the driven route's first / last
    segment when the trip has a route, else the snapped segment. ``keys``: run-key ids
    and keys from :func:`traffic_keys` (live traffic); else time buckets."""
    origin = frame["origin_segment"].to_numpy(np.int64).copy()
    origin_pos = frame["origin_fraction"].to_numpy(float).copy()
    dest = frame["destination_segment"].to_numpy(np.int64).copy()
    dest_pos = frame["destination_fraction"].to_numpy(float).copy()
    if "route" in frame.columns:
        o_twin = frame["origin_twin"].to_numpy(np.int64)
        d_twin = frame["destination_twin"].to_numpy(np.int64)
        for i, route in enumerate(frame["route"]):
            if route is None or len(route) == 0:
                continue
            if int(route[0]) == o_twin[i] >= 0:
                origin[i], origin_pos[i] = o_twin[i], 1 - origin_pos[i]
            if int(route[-1]) == d_twin[i] >= 0:
                dest[i], dest_pos[i] = d_twin[i], 1 - dest_pos[i]
    if keys is not None:
        return TripBatchData(origin, origin_pos, dest, dest_pos, keys[0],
                             frame["duration_s"].to_numpy(float), keys[1])
    departures = pd.to_datetime(frame["departure_local"]).dt.to_pydatetime()
    buckets = np.array([time_bucket(d, bucket_minutes) for d in departures], dtype=np.int64)
    return TripBatchData(origin, origin_pos, dest, dest_pos, buckets,
                         frame["duration_s"].to_numpy(float))


class RouteSupervision:
    """A hint for the encoder, in the spirit of CLRS's hints: where trips carry their driven
    route, the encoder's own per-segment times (partial first / last segments) plus its
    turn penalties, summed along the route, should match the trip's duration. Dense and
    cheap (a sparse product per departure bucket, no processor run), it trains the time
    head on every segment a trip used, while the end-to-end loss through the processor
    trains the latent channels and the decoder."""

    def __init__(self, model: EtaModel, frame: pd.DataFrame, data: TripBatchData,
                 rows: np.ndarray):
        from models.baselines.learned import _route_design, _torch_sparse

        self.by_bucket: dict[Any, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.count = 0
        if "route" not in frame.columns:
            return
        routes = [r if isinstance(r, (list, np.ndarray)) and len(r) else None
                  for r in frame["route"]]
        segments, turns, usable = _route_design(model.graph, frame, routes)
        rows = rows[usable[rows]]
        for bucket in np.unique(data.bucket[rows]):
            chosen = rows[data.bucket[rows] == bucket]
            target = torch.from_numpy(np.log(data.duration_s[chosen])).float()
            self.by_bucket[data.run_key(bucket)] = (_torch_sparse(segments[chosen]),
                                          _torch_sparse(turns[chosen]), target)
            self.count += len(chosen)

    def loss(self, model: EtaModel, keys: list | None = None) -> torch.Tensor:
        """Mean |log(route time / duration)| over the routed training trips of ``keys``
        (default: all). Each key costs one encoder pass over the whole graph; with live
        traffic there is one key per departure window and feed condition (~100 on three
        simulated mornings), so training passes the batch's key and a few random ones."""
        total, count = torch.zeros(()), 0
        chosen = self.by_bucket if keys is None else {k: self.by_bucket[k] for k in keys
                                                       if k in self.by_bucket}
        for bucket, (segments, turns, target) in chosen.items():
            latents = model.latents(bucket)
            predicted = (torch.sparse.mm(segments, latents.segment_time[:, None])
                         + torch.sparse.mm(turns, latents.turn_penalty[:, None])).squeeze(-1)
            predicted = predicted * model.time_scale
            total = total + torch.abs(torch.log(predicted.clamp_min(1.0)) - target).sum()
            count += len(target)
        return total / max(count, 1)


class CorridorBatcher:
    """Builds disjoint-union corridor graphs for groups of trips sharing (origin, bucket)."""

    def __init__(self, model: EtaModel, config: TrainConfig):
        graph = model.graph
        self.model, self.config, self.graph = model, config, graph
        self.mode = graph_mode(model.graph_mode)
        x, y = graph["node_x_m"], graph["node_y_m"]
        source, target = graph["edge_source"], graph["edge_target"]
        self.key_x, self.key_y = self.mode.key_xy(graph)
        self.edge_from, self.edge_to = self.mode.key_edges(graph)
        self.num_keys = len(self.key_x)
        self.end_x, self.end_y = x[target], y[target]
        self.start_x, self.start_y = x[source], y[source]

    def root_key(self, segment: int) -> int:
        return int(self.mode.start_key(self.graph, segment))

    def end_key(self, segment: int) -> int:
        return int(self.mode.end_key(self.graph, segment))

    def corridor(self, data: TripBatchData, rows: np.ndarray) -> np.ndarray:
        """Boolean mask over keys: the union of the rows' ellipses, plus their end keys."""
        keep = np.zeros(self.num_keys, dtype=bool)
        for row in rows:
            o, d = data.origin_segment[row], data.destination_segment[row]
            ox, oy = self.end_x[o], self.end_y[o]
            dx, dy = self.start_x[d], self.start_y[d]
            span = math.hypot(dx - ox, dy - oy)
            reach = (np.hypot(self.key_x - ox, self.key_y - oy)
                     + np.hypot(self.key_x - dx, self.key_y - dy))
            keep |= reach <= self.config.corridor_factor * span + self.config.corridor_margin_m
            keep[self.root_key(o)] = True
            keep[self.end_key(d)] = True
        return keep

    def groups(self, data: TripBatchData, rows: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """(bucket, trip rows) per (origin key, bucket), same-segment trips left out."""
        grouped: dict[tuple[int, int], list[int]] = defaultdict(list)
        for row in rows:
            if data.origin_segment[row] == data.destination_segment[row]:
                continue
            grouped[(self.root_key(data.origin_segment[row]), int(data.bucket[row]))].append(row)
        return [(bucket, np.array(members)) for (_, bucket), members in grouped.items()]

    def batches(self, data: TripBatchData, groups: list[tuple[int, np.ndarray]],
                *, shuffle: bool, rng: random.Random) -> list[tuple[int, list[np.ndarray]]]:
        by_bucket: dict[int, list[np.ndarray]] = defaultdict(list)
        for bucket, members in groups:
            by_bucket[bucket].append(members)
        batches = []
        for bucket, member_lists in by_bucket.items():
            if shuffle:
                rng.shuffle(member_lists)
            current: list[np.ndarray] = []
            size = 0
            for members in member_lists:
                current.append(members)
                size += len(members)
                if size >= self.config.batch_trips:
                    batches.append((bucket, current))
                    current, size = [], 0
            if current:
                batches.append((bucket, current))
        if shuffle:
            rng.shuffle(batches)
        return batches

    def predict(self, data: TripBatchData, bucket: int, member_lists: list[np.ndarray]
                ) -> tuple[torch.Tensor, np.ndarray]:
        """Predicted seconds for every trip of the batch (one processor run over the union
        of corridors) and the trip rows, in the same order; unreached trips are dropped."""
        latents = self.model.latents(data.run_key(bucket))
        key_ids, edge_ids, local_from, local_to, roots, end_positions, rows = \
            [], [], [], [], [], [], []
        offset = 0
        for members in member_lists:
            keep = self.corridor(data, members)
            keys = np.flatnonzero(keep)
            local = np.full(self.num_keys, -1, dtype=np.int64)
            local[keys] = np.arange(len(keys)) + offset
            edges = np.flatnonzero(keep[self.edge_from] & keep[self.edge_to])
            key_ids.append(keys)
            edge_ids.append(edges)
            local_from.append(local[self.edge_from[edges]])
            local_to.append(local[self.edge_to[edges]])
            roots.append(local[self.root_key(data.origin_segment[members[0]])])
            end_positions.append(np.array([local[self.end_key(data.destination_segment[r])]
                                           for r in members]))
            rows.append(members)
            offset += len(keys)
        edges = torch.from_numpy(np.concatenate(edge_ids))
        edge_index = torch.from_numpy(np.stack([np.concatenate(local_from),
                                                np.concatenate(local_to)]))
        mask = torch.zeros(1, offset, dtype=torch.bool)
        mask[0, torch.from_numpy(np.array(roots))] = True
        times, reached, _ = self.model.run(torch.empty(0, dtype=torch.long),
                                           latents.edge_latent[edges], edge_index, offset,
                                           source_mask=mask)
        rows_all = np.concatenate(rows)
        ends = torch.from_numpy(np.concatenate(end_positions))
        segment_time = latents.segment_time
        o = torch.from_numpy(data.origin_segment[rows_all])
        d = torch.from_numpy(data.destination_segment[rows_all])
        p = torch.from_numpy(data.origin_position[rows_all]).float()
        q = torch.from_numpy(data.destination_position[rows_all]).float()
        # turn: end of origin segment -> end of destination segment (its undriven part
        # taken off); node: end node of origin segment -> start node of destination
        middle = times[0, ends]
        total = (1 - p) * segment_time[o] + middle + self.mode.end_share(q) * segment_time[d]
        ok = reached[0, ends] & torch.isfinite(total)
        return total[ok] * self.model.time_scale, rows_all[ok.numpy()]


def predict_frame(model: EtaModel, frame: pd.DataFrame, *, corridor_factor: float = 1.3,
                  corridor_margin_m: float = 400.0, traffic=None,
                  batch_trips: int = 128) -> np.ndarray:
    """Predicted seconds for snapped trips, as the Predictor answers them (the best of both
    directions of a two-way street at each end, no driven route used), computed on each
    origin's corridor. nan where no option reaches the destination. ``traffic`` (a
    TrafficSnapshot) gives a live model each trip's full feed at its departure."""
    from models.inference.graph_modes import driving_directions

    options = []  # (trip row, origin segment, position, destination segment, position)
    for row, trip in enumerate(frame.itertuples()):
        starts = driving_directions(trip.origin_segment, trip.origin_twin, trip.origin_fraction)
        ends = driving_directions(trip.destination_segment, trip.destination_twin,
                                  trip.destination_fraction)
        for o, p in starts:
            for d, q in ends:
                options.append((row, o, p, d, q))
    table = np.array(options, dtype=float)
    rows = table[:, 0].astype(np.int64)
    keys = None
    if model.config.traffic and traffic is not None:  # run keys: bucket + feed state
        buckets, keys = traffic_keys(model, traffic, frame, seed=0, rows=np.arange(len(frame)))
    else:
        departures = pd.to_datetime(frame["departure_local"]).dt.to_pydatetime()
        buckets = np.array([time_bucket(d, model.config.bucket_minutes) for d in departures])
    data = TripBatchData(table[:, 1].astype(np.int64), table[:, 2],
                         table[:, 3].astype(np.int64), table[:, 4], buckets[rows],
                         np.ones(len(rows)), keys)
    batcher = CorridorBatcher(model, TrainConfig(corridor_factor=corridor_factor,
                                                 corridor_margin_m=corridor_margin_m,
                                                 batch_trips=batch_trips))
    best = np.full(len(frame), np.inf)
    model.eval()
    segment_s = {}
    with torch.no_grad():
        for bucket, member_lists in batcher.batches(
                data, batcher.groups(data, np.arange(len(rows))), shuffle=False,
                rng=random.Random(0)):
            seconds, kept = batcher.predict(data, bucket, member_lists)
            np.minimum.at(best, rows[kept], seconds.numpy().astype(float))
        # Same-segment options (origin before destination on one segment) skip the processor.
        same = (data.origin_segment == data.destination_segment) & \
            (data.destination_position >= data.origin_position)
        for option in np.flatnonzero(same):
            bucket = int(data.bucket[option])
            if bucket not in segment_s:
                segment_s[bucket] = model.segment_times_s(data.run_key(bucket))
            seconds = ((data.destination_position[option] - data.origin_position[option])
                       * segment_s[bucket][data.origin_segment[option]])
            best[rows[option]] = min(best[rows[option]], seconds)
    return np.where(np.isfinite(best), best, np.nan)


class Distributed:
    """Data parallelism over origin groups. Under ``torchrun`` (``WORLD_SIZE`` > 1) it joins
    the process group (gloo on CPU, nccl on GPU); rank ``r`` of ``W`` takes every W-th
    origin group of each batch, gradients and counts are summed across ranks so every rank
    takes the same optimiser step as one process would on the whole batch."""

    def __init__(self) -> None:
        import torch.distributed as dist

        self.dist = dist
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.owns_group = self.world > 1 and not dist.is_initialized()
        if self.owns_group:
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        self.rank = dist.get_rank() if self.world > 1 else 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def agree(self, flag: bool) -> bool:
        """Rank 0's ``flag``, on every rank (a broadcast; each rank's own otherwise): stop
        decisions made on one clock, so no rank enters validation while another
        all-reduces its next batch."""
        if self.world == 1:
            return bool(flag)
        tensor = torch.tensor([1 if flag else 0], dtype=torch.int64)
        self.dist.broadcast(tensor, src=0)
        return bool(tensor.item())

    def close(self) -> None:
        """Leave together and tear down the process group this object joined (a gloo
        group left to interpreter exit can abort the process: SIGABRT, exit -6)."""
        if self.owns_group:
            self.dist.barrier()
            self.dist.destroy_process_group()
            self.owns_group = False

    def share(self, items: list) -> list:
        return items[self.rank::self.world] if self.world > 1 else items

    def sum(self, values: list[float]) -> list[float]:
        if self.world == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64)
        self.dist.all_reduce(tensor)
        return tensor.tolist()

    def sum_gradients(self, parameters: list[torch.nn.Parameter]) -> None:
        if self.world == 1:
            return
        for parameter in parameters:
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
            self.dist.all_reduce(parameter.grad)


def _metrics(true_s: np.ndarray, predicted_s: np.ndarray) -> dict[str, float]:
    ape = np.abs(predicted_s - true_s) / true_s
    return {"mape": float(ape.mean()), "median_ape": float(np.median(ape)),
            "trips": int(len(true_s))}


def evaluate_corridor(model: EtaModel, batcher: CorridorBatcher, data: TripBatchData,
                      rows: np.ndarray, parallel: Distributed | None = None
                      ) -> dict[str, float]:
    """Validation MAPE over ``rows`` (summed across ranks when distributed)."""
    model.eval()
    absolute, count = 0.0, 0
    with torch.no_grad():
        batches = batcher.batches(data, batcher.groups(data, rows), shuffle=False,
                                  rng=random.Random(0))
        for bucket, member_lists in batches:
            member_lists = parallel.share(member_lists) if parallel else member_lists
            if not member_lists:
                continue
            seconds, kept = batcher.predict(data, bucket, member_lists)
            true = data.duration_s[kept]
            absolute += float(np.sum(np.abs(seconds.numpy() - true) / true))
            count += len(kept)
    if parallel is not None:
        absolute, count = parallel.sum([absolute, float(count)])
    return {"mape": absolute / count if count else math.nan, "trips": int(count)}


def _silent(*_args, **_kwargs) -> None:
    return None


def _trainable_state(model: EtaModel) -> dict[str, torch.Tensor]:
    state = {f"encoder.{k}": v for k, v in model.encoder.state_dict().items()}
    state.update({f"decoder.{k}": v for k, v in model.decoder.state_dict().items()})
    state["segment_offset"] = model.segment_offset.data
    return {k: v.detach().clone().contiguous() for k, v in state.items()}


def _load_trainable_state(model: EtaModel, state: dict[str, torch.Tensor]) -> None:
    model.encoder.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("encoder.")})
    model.decoder.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("decoder.")})
    with torch.no_grad():
        model.segment_offset.copy_(state["segment_offset"])


def _all_parameters(optimiser: torch.optim.Optimizer) -> list[torch.nn.Parameter]:
    return [p for group in optimiser.param_groups for p in group["params"]]


def _save_checkpoint(directory: Path, model: EtaModel, optimiser: torch.optim.Optimizer,
                     best_state: dict[str, torch.Tensor] | None, progress: dict[str, Any]
                     ) -> None:
    """Weights, best weights and Adam moments as safetensors, the rest as JSON; written to
    a temporary directory and renamed, so a kill never leaves half a checkpoint."""
    import shutil
    import tempfile

    from safetensors.torch import save_file

    tensors = {f"model.{k}": v for k, v in _trainable_state(model).items()}
    for k, v in (best_state or {}).items():
        tensors[f"best.{k}"] = v
    for index, parameter in enumerate(_all_parameters(optimiser)):
        for key, value in optimiser.state.get(parameter, {}).items():
            tensors[f"adam.{index}.{key}"] = torch.as_tensor(value).detach().clone().contiguous()
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    save_file(tensors, str(staging / "checkpoint.safetensors"))
    (staging / "progress.json").write_text(json.dumps(progress))
    retired = directory.with_name(f".{directory.name}.old")
    if directory.exists():
        os.replace(directory, retired)
    os.replace(staging, directory)
    shutil.rmtree(retired, ignore_errors=True)


def _load_checkpoint(directory: Path, model: EtaModel, optimiser: torch.optim.Optimizer,
                     fingerprint: str) -> tuple[dict[str, Any], dict | None] | None:
    from safetensors.torch import load_file

    if not (directory / "progress.json").is_file():
        return None
    progress = json.loads((directory / "progress.json").read_text())
    if progress.get("fingerprint") != fingerprint:
        raise InputError(f"checkpoint {directory} belongs to another training run (other "
                         "data or settings); delete it or pick another --checkpoint-dir")
    tensors = load_file(str(directory / "checkpoint.safetensors"))
    _load_trainable_state(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None
    for index, parameter in enumerate(_all_parameters(optimiser)):
        state = {key.split(".", 2)[2]: value for key, value in tensors.items()
                 if key.startswith(f"adam.{index}.")}
        if state:
            optimiser.state[parameter] = state
    return progress, best


def _validation_split(frame: pd.DataFrame, train: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    n_val = max(1, int(len(frame) * train.validation_share))
    if train.validation == "latest":
        order = np.argsort(frame["departure_s"].to_numpy(np.float64), kind="stable")[::-1]
    elif train.validation == "random":
        order = np.random.default_rng(train.seed).permutation(len(frame))
    else:
        raise InputError(f"validation {train.validation!r}: expected 'random' or 'latest'")
    return order[:n_val], order[n_val:]


def fit_eta(graph: RoadGraph, frame: pd.DataFrame, processor_dir: Path, *,
            config: EtaConfig | None = None, train: TrainConfig | None = None,
            progress: bool = True, log=print, checkpoint_dir: Path | None = None,
            traffic=None, model_factory=None) -> tuple[EtaModel, dict[str, Any]]:
    """Train encoder and decoder on snapped trips ``frame``; the processor stays frozen.
    ``traffic`` (a models.inference.live.TrafficSnapshot covering the trips' days) trains a
    model with live features (``config.traffic``). ``model_factory(graph, processor,
    weight_encoder, processor_manifest, config=...)`` builds the model instead of
    :class:`EtaModel` (the processor ablation's arms, models.eta.processor_arms)."""
    fit = _EtaFit(graph, frame, processor_dir, config or EtaConfig(), train or TrainConfig(),
                  log=log, traffic=traffic, model_factory=model_factory or EtaModel)
    fit.start(checkpoint_dir)
    for epoch in range(fit.first_epoch, fit.train.epochs):
        if fit.parallel.agree(fit.stale >= fit.train.patience):
            break
        fit.run_epoch(epoch, progress)
        if fit.end_epoch(epoch, checkpoint_dir):
            break
    return fit.finish()


class _EtaFit:
    """The state of one :func:`fit_eta` run and its steps: set up (data, corridors, route
    hints, optimiser, process group), start or resume, one epoch of optimiser steps,
    validation / early stopping / checkpoint after each epoch, and the report."""

    def __init__(self, graph: RoadGraph, frame: pd.DataFrame, processor_dir: Path,
                 config: EtaConfig, train: TrainConfig, *, log, traffic,
                 model_factory=EtaModel) -> None:
        self.config, self.train, self.traffic, self.frame = config, train, traffic, frame
        torch.manual_seed(train.seed)
        np.random.seed(train.seed)
        self.rng = random.Random(train.seed)
        processor, weight_encoder, processor_manifest = load_pretrained(processor_dir)
        self.model = model = model_factory(graph, processor, weight_encoder,
                                           processor_manifest, config=config)
        if len(frame) < 2:
            raise InputError("training needs at least 2 trips")
        if config.traffic and traffic is None:
            raise InputError("a model with live traffic features needs a traffic feed to "
                             "train on")
        self.val_rows, self.train_rows = _validation_split(frame, train)
        keys = (traffic_keys(model, traffic, frame, seed=train.seed, rows=self.val_rows)
                if config.traffic else None)
        self.data = trip_arrays(graph, frame, config.bucket_minutes, keys=keys)
        self.batcher = CorridorBatcher(model, train)
        self.groups = self.batcher.groups(self.data, self.train_rows)
        self.hints = RouteSupervision(model, frame, self.data, self.train_rows)
        log(f"{len(self.train_rows)} training trips ({self.hints.count} with driven routes "
            f"for the route hint), {len(self.val_rows)} for validation")
        self.hint_pool = list(self.hints.by_bucket)
        self.optimiser = self._optimiser()
        # every rank starts from the same weights (same seed) and takes the same steps
        self.history: list[dict[str, Any]] = []
        self.best_state, self.best_mape, self.stale = None, math.inf, 0
        self.started = time.perf_counter()
        self.parallel = Distributed()
        self.log = log if self.parallel.is_main else _silent  # only rank 0 reports
        self.parameters = model.trainable_parameters()
        self.steps, self.first_epoch, self.initial = 0, 0, None

    def _optimiser(self) -> torch.optim.Optimizer:
        # The decoder's weights are small (~4e-3, the processor's distance read-out): at the
        # encoder's learning rate a few Adam steps would change them by tens of percent and
        # scale every ETA with them (seen: +140 % after one short epoch), so it moves slower.
        model, train = self.model, self.train
        decoder = set(map(id, model.decoder.parameters()))
        return torch.optim.Adam([
            {"params": [p for p in model.trainable_parameters() if id(p) not in decoder],
             "lr": train.learning_rate},
            {"params": list(model.decoder.parameters()),
             "lr": train.learning_rate * train.decoder_lr_scale}])

    def _fingerprint(self) -> str:
        """What a checkpoint must match to be resumed: configs (bar the budget) and data."""
        settings = {k: v for k, v in asdict(self.train).items()
                    if k not in ("epochs", "max_minutes")}
        return json.dumps([asdict(self.config), settings, len(self.frame),
                           float(np.sum(self.data.duration_s)),
                           self.traffic.key if self.traffic is not None else None])

    def start(self, checkpoint_dir: Path | None) -> None:
        """Resume from ``checkpoint_dir`` if it holds this run's checkpoint, else measure
        the untrained model (the starting point an epoch must beat to be kept)."""
        self.fingerprint = self._fingerprint()
        resumed = (_load_checkpoint(checkpoint_dir, self.model, self.optimiser,
                                    self.fingerprint)
                   if checkpoint_dir is not None else None)
        if resumed is not None:
            saved, self.best_state = resumed
            self.first_epoch, self.history = saved["epoch"], saved["history"]
            self.best_mape, self.stale = saved["best_mape"], saved["stale"]
            self.initial = saved["initial"]
            self.rng.setstate((saved["rng"][0], tuple(saved["rng"][1]), saved["rng"][2]))
            self.log(f"resumed from {checkpoint_dir} after epoch {self.first_epoch}")
            return
        self.initial = evaluate_corridor(self.model, self.batcher, self.data, self.val_rows,
                                         self.parallel)
        start = "the live scalar" if self.config.traffic else "free flow"
        self.log(f"untrained ({start} through the processor): validation MAPE "
                 f"{self.initial['mape']:.3f}")
        # an epoch that makes validation worse than the starting point is never kept
        self.best_state, self.best_mape = _trainable_state(self.model), self.initial["mape"]

    def _hint_keys(self, bucket) -> list | None:
        """The batch's run key and up to ``hint_keys_per_step - 1`` random others."""
        if len(self.hint_pool) <= self.train.hint_keys_per_step:
            return None
        others = self.rng.sample(self.hint_pool, self.train.hint_keys_per_step - 1)
        return [self.data.run_key(bucket), *others]

    def _out_of_time(self) -> bool:
        return time.perf_counter() - self.started > self.train.max_minutes * 60

    def run_epoch(self, epoch: int, progress: bool) -> None:
        """One pass over the shuffled corridor batches; stops early when out of time."""
        from tqdm import tqdm

        self.model.train()
        batches = self.batcher.batches(self.data, self.groups, shuffle=True, rng=self.rng)
        self.losses: list[float] = []
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{self.train.epochs}",
                   disable=not progress or not self.parallel.is_main, leave=False)
        for bucket, member_lists in bar:
            loss = self._step(bucket, member_lists)
            if loss is None:
                continue
            self.losses.append(loss)
            bar.set_postfix(loss=f"{np.mean(self.losses[-20:]):.3f}")
            # rank 0's clock decides for every rank, so all leave the loop after this step
            if self.parallel.agree(self._out_of_time()):
                break

    def _step(self, bucket, member_lists) -> float | None:
        """One optimiser step on a batch; its mean trip loss (None: no trip answered)."""
        model, train, data, parallel = self.model, self.train, self.data, self.parallel
        self.optimiser.zero_grad()
        mine = parallel.share(member_lists)
        loss_sum, count = torch.zeros(()), 0
        if mine:
            predicted, rows = self.batcher.predict(data, bucket, mine)
            if len(rows):
                target = torch.from_numpy(data.duration_s[rows]).float()
                loss_sum = torch.sum(torch.abs(torch.log(predicted.clamp_min(1.0))
                                               - torch.log(target)))
                count = len(rows)
        # Mean over the whole batch's trips, whichever rank holds them; the route hint
        # and the offsets' penalty are added once (on rank 0).
        total_loss, total = parallel.sum([float(loss_sum.detach()), float(count)])
        if total == 0:
            return None
        objective = loss_sum / total
        if parallel.is_main:
            if self.hints.count and train.route_weight > 0:
                objective = objective + train.route_weight * self.hints.loss(
                    model, self._hint_keys(bucket))
            if model.config.segment_offsets:
                objective = objective + train.offset_l2 * torch.mean(model.segment_offset ** 2)
        if objective.requires_grad:
            objective.backward()
        parallel.sum_gradients(self.parameters)
        self.optimiser.step()
        self.steps += 1
        return total_loss / total

    def end_epoch(self, epoch: int, checkpoint_dir: Path | None) -> bool:
        """Validate, keep the best weights, checkpoint; whether to stop (no progress for
        ``patience`` epochs, or out of time)."""
        validation = evaluate_corridor(self.model, self.batcher, self.data, self.val_rows,
                                       self.parallel)
        record = {"epoch": epoch + 1,
                  "train_loss": float(np.mean(self.losses)) if self.losses else None,
                  "validation": validation,
                  "seconds": round(time.perf_counter() - self.started, 1)}
        self.history.append(record)
        self.log(f"epoch {epoch + 1}: loss {record['train_loss']:.4f}, validation MAPE "
                 f"{validation['mape']:.4f} ({record['seconds']} s)")
        if validation["mape"] < self.best_mape - 1e-4:
            self.best_mape, self.stale = validation["mape"], 0
            self.best_state = _trainable_state(self.model)
        else:
            self.stale += 1
        if checkpoint_dir is not None and self.parallel.is_main:
            _save_checkpoint(checkpoint_dir, self.model, self.optimiser, self.best_state, {
                "fingerprint": self.fingerprint, "epoch": epoch + 1, "history": self.history,
                "best_mape": self.best_mape, "stale": self.stale, "initial": self.initial,
                "rng": list(self.rng.getstate())})
        return self.parallel.agree(self.stale >= self.train.patience or self._out_of_time())

    def finish(self) -> tuple[EtaModel, dict[str, Any]]:
        """Leave the process group, restore the best weights; the model and the report."""
        self.parallel.close()
        if self.best_state is not None:
            _load_trainable_state(self.model, self.best_state)
        self.model.eval()
        report = {"initial_validation": self.initial, "history": self.history,
                  "best_validation_mape": self.best_mape,
                  "train_trips": int(len(self.train_rows)),
                  "validation_trips": int(len(self.val_rows)),
                  "train_seconds": round(time.perf_counter() - self.started, 1),
                  "steps": self.steps, "train_config": asdict(self.train),
                  "world_size": self.parallel.world, "is_main_rank": self.parallel.is_main}
        return self.model, report


# --------------------------------------------------------------------------- CLI
def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--graph", type=Path, required=True, help="RoadGraph artifact")
    parser.add_argument("--trips", type=Path, required=True, help="trip table (CSV/Parquet)")
    parser.add_argument("--processor", type=Path, default=Path("artifacts_shipped/processor"),
                        help="frozen Processor artifact")
    parser.add_argument("--out", type=Path, required=True, help="EtaModel artifact to write")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--graph-mode", choices=("turn", "node"), default="turn")
    parser.add_argument("--timezone", default=None,
                        help="IANA timezone of the city (e.g. America/New_York), used for "
                             "queries whose departure time carries an offset")
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--max-minutes", type=float, default=TrainConfig.max_minutes)
    parser.add_argument("--holdout-hours", type=float, default=1.0,
                        help="leave the last H hours of departures out of training")
    parser.add_argument("--max-trips", type=int, default=None,
                        help="train on a random subset of this many trips")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--traffic", type=Path, default=None,
                        help="traffic feed (file or directory, see README 'Traffic feed') "
                             "covering the trips' days: trains a model with live traffic "
                             "features (no clock harmonics in the turn MLP; early stopping "
                             "on the latest departures)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--checkpoint-dir", type=Path, default=None,
                        help="per-epoch checkpoints; a rerun resumes from them "
                             "(default: OUT.ckpt beside --out)")


def run(args: argparse.Namespace) -> int:
    from data_pipeline.trips import read_trips, snap_trips, split_by_time
    from nareta.artifacts import check_output_dir

    if int(os.environ.get("RANK", "0")) == 0:
        check_output_dir(args.out, force=args.force)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    graph = RoadGraph.load(args.graph)
    table = snap_trips(read_trips(args.trips), graph)
    if args.holdout_hours > 0:
        table, _ = split_by_time(table, holdout_hours=args.holdout_hours)
    frame = table.frame
    if args.max_trips is not None and args.max_trips < len(frame):
        frame = frame.sample(n=args.max_trips, random_state=args.seed).reset_index(drop=True)
    live = args.traffic is not None
    traffic = None
    if live:
        from data_pipeline.traffic import load_feed
        from models.inference.live import TrafficSnapshot

        observations, feed_report = load_feed(args.traffic, graph, timezone=args.timezone)
        print(feed_report.summary())
        traffic = TrafficSnapshot(graph, observations, source=str(args.traffic))
    train = TrainConfig(seed=args.seed, epochs=args.epochs, max_minutes=args.max_minutes,
                        validation="latest" if live else "random")
    checkpoint_dir = args.checkpoint_dir or args.out.with_name(args.out.name + ".ckpt")
    config = EtaConfig(graph_mode=args.graph_mode, timezone=args.timezone, traffic=live,
                       turn_time=not live)
    model, report = fit_eta(graph, frame, args.processor, config=config, train=train,
                            progress=not args.no_progress, checkpoint_dir=checkpoint_dir,
                            traffic=traffic)
    if not report.pop("is_main_rank"):
        return 0  # under torchrun only rank 0 writes the artifact
    model.save(args.out, processor_dir=args.processor, seed=args.seed, force=args.force,
               extra={"training": report, "trips_source": str(args.trips)})
    import shutil

    shutil.rmtree(checkpoint_dir, ignore_errors=True)  # the artifact supersedes it
    print(json.dumps({"out": str(args.out), "best_validation_mape": report["best_validation_mape"],
                      "train_seconds": report["train_seconds"]}))
    return 0
