r"""A learned, multi-algorithm processor (issue 15): one shared max-aggregation MPNN with
learned message functions and a wide latent, per-algorithm encoders and decoders, trained
CLRS-style with per-step hint supervision on several path algorithms at n <= 16.

What is learned and what is fixed (contrast with the ``"tropical"`` reference arm of
:mod:`models.processor.model`, whose step is an exact min-plus recursion and learns only its
edge-cost map and read-outs):

* learned: every map -- per-algorithm node / edge encoders, the shared processor's message
  MLP, update and gate, per-algorithm value and pointer decoders. Nothing in the step knows
  which semiring it runs; the algorithm is carried by the encoders and the hints.
* fixed: max aggregation; the *reached* bit of every node (a 1-bit discrete state, OR over
  in-neighbours, DNAR-style) that masks messages from unreached senders and decodes
  unreached nodes to self-pointers; the per-graph weight normalisation (mean edge weight);
  the step count (the hint trace's length in training; at test time run until the decoded
  pointers stop changing once every node is reached, bounded by a multiple of the source's
  hop eccentricity).
* sequential algorithms (Dijkstra, Prim), DNAR-style discrete state: the *settled* bit
  takes the reached bit's place (only settled nodes send messages and can be pointed at),
  and the *frontier* (unsettled nodes with a settled in-neighbour, or the source) is a fixed
  rule. Which frontier node to settle is learned: a per-algorithm selection head scores
  the frontier, trained with cross-entropy against the reference's next node (every tie of
  least key accepted) under teacher forcing of the settled set; at test time the argmax is
  settled, one node per step and graph, until the frontier is empty (N steps).

The algorithm table (CLRS ``specs.py`` style), what each run is supervised with:

=========  =====================================  ===================================
name       value (per node)                       pointer (per node)
=========  =====================================  ===================================
bellman    shortest distance / mean weight        predecessor on a shortest path
bfs        hop count from the source              parent in a BFS tree
widest     bottleneck width / mean weight         predecessor on a widest path
dijkstra   tentative distance / mean weight       settled predecessor (per settle step)
prim       key (tree-edge weight) / mean weight   tree parent (per settle step)
=========  =====================================  ===================================

Hints after step ``t`` are the synchronous reference's values after round ``t``, or the
sequential reference's after its ``t``-th settle (:mod:`models.processor.algorithms`).
Pointer targets at step ``t``: every edge ``u -> v`` that could have set ``v``'s current
value in the round ``r_v <= t`` in which ``v`` last improved, i.e. whose candidate from
round ``r_v - 1`` equals it (all ties at that moment accepted; ties that appear only later,
on the equal-width plateaus of widest paths, are not, since pointing into them lets pointer
chains form cycles). Sequential algorithms: every edge from a node settled before ``v``
whose candidate equals ``v``'s key at ``t``.

The processor layer (:class:`MaxMPNNLayer`, Ibarz et al. 2022 §3, gated, max aggregation)

.. math::
    \mathbf{z}_v &= [\mathbf{x}_v + r_v\,\mathbf{e}_{\mathrm{reach}} \,\|\, \mathbf{h}_v] \\
    \mathbf{m}_{uv} &= \mathbf{W}_2\,\mathrm{ReLU}(\mathbf{W}_s\mathbf{z}_u +
        \mathbf{W}_r\mathbf{z}_v + \mathbf{W}_e\mathbf{e}_{uv} + \mathbf{b})
        \quad (u \text{ reached}) \\
    \tilde{\mathbf{h}}_v &= \mathrm{ReLU}(\mathbf{O}_1\mathbf{z}_v +
        \mathbf{O}_2 \max_u \mathbf{m}_{uv}), \quad
    \mathbf{h}'_v = \mathbf{g}_v \odot \tilde{\mathbf{h}}_v + (1-\mathbf{g}_v)\odot
        \mathbf{h}_v
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from models.processor import algorithms as ref
from models.processor.model import NEG_INF, propagate_reached, scatter_max, segment_logsumexp
from models.processor.synthetic import Graph, training_graph
from nareta.artifacts import atomic_artifact_dir, read_manifest, write_manifest
from nareta.errors import ArtifactError, InputError

KIND = "generalist_processor"
SCHEMA_VERSION = 1
WEIGHTS_FILE = "generalist.safetensors"


@dataclass(frozen=True)
class AlgorithmSpec:
    """One supervised algorithm: its reference, how a candidate is formed and compared."""

    name: str
    reference: Callable[..., ref.ShortestPathTrace]
    #: candidate value of ``v`` through ``u``: f(value_u, w_uv) (numpy and torch)
    combine: Callable[[Any, Any], Any]
    minimise: bool  # smaller values are better (distances, hops) or larger (widths)
    #: values are divided by the graph's mean weight (False: hop counts, used as they are)
    weighted: bool
    #: value of the source (excluded from the value loss when infinite)
    source_value: float
    #: one node settled per step, chosen by a learned selection over the frontier
    #: (Dijkstra, Prim), else synchronous rounds over every reached node
    sequential: bool = False


ALGORITHMS: dict[str, AlgorithmSpec] = {
    "bellman": AlgorithmSpec("bellman", ref.bellman_ford, lambda d, w: d + w, True, True, 0.0),
    "bfs": AlgorithmSpec("bfs", ref.bfs_hops, lambda d, w: d + 1.0, True, False, 0.0),
    "widest": AlgorithmSpec(
        "widest", ref.widest_path, lambda d, w: np.minimum(d, w) if isinstance(d, np.ndarray)
        else torch.minimum(d, w), False, True, float("inf")
    ),
    "dijkstra": AlgorithmSpec("dijkstra", functools.partial(ref.dijkstra, with_hints=True),
                              lambda d, w: d + w, True, True, 0.0, sequential=True),
    "prim": AlgorithmSpec("prim", functools.partial(ref.prim, with_hints=True),
                          lambda d, w: w, True, True, 0.0, sequential=True),
}


@dataclass(frozen=True)
class GeneralistConfig:
    """Hyperparameters stored in the artifact; the model rebuilds from them alone."""

    hidden: int = 128
    algorithms: tuple[str, ...] = ("bellman", "bfs", "widest", "dijkstra", "prim")
    layer_norm: bool = False
    #: test time: at most ``hop_factor * eccentricity + 2`` steps (hops from the source)
    hop_factor: float = 2.0
    #: test time: stop once the argmax pointers are unchanged for this many steps
    patience: int = 2


# --------------------------------------------------------------------------- layer
class MaxMPNNLayer(nn.Module):
    """The shared processor step (see the module docstring for the update rule).

    Args:
        hidden (int): latent size ``H``.
        layer_norm (bool, optional): layer-normalise the candidate state (CLRS's default).
            Off in the shipped model: a bounded latent cannot carry distances beyond the
            training range, a ReLU one extrapolates linearly (Xu et al., ICLR 2021); on
            road-like n=1,000 Bellman-Ford pointers of the 3-algorithm processor rose from
            56.9 % (``benchmarks/results/processor_generalist_layer_norm.json``) to 79.7 %
            without it (``processor_generalist.json`` at commit 883196e). (default:
            ``False``)

    Shapes:
        **h**, **x** ``[B, N, H]``, **reached** ``[B, N]`` bool, **edge_latent** ``[E, H]``,
        **edge_index** ``[2, E]``; output ``[B, N, H]``.
    """

    def __init__(self, hidden: int, *, layer_norm: bool = False) -> None:
        super().__init__()
        self.reach_embedding = nn.Parameter(torch.randn(hidden) * 0.1)
        self.sender = nn.Linear(2 * hidden, hidden)
        self.receiver = nn.Linear(2 * hidden, hidden, bias=False)
        self.edge = nn.Linear(hidden, hidden, bias=False)
        self.message_out = nn.Linear(hidden, hidden)
        self.self_map = nn.Linear(2 * hidden, hidden)
        self.aggregate_map = nn.Linear(hidden, hidden, bias=False)
        self.norm = nn.LayerNorm(hidden) if layer_norm else nn.Identity()
        self.gate = nn.Linear(3 * hidden, hidden)
        nn.init.constant_(self.gate.bias, -3.0)  # CLRS: gates start mostly closed

    def forward(
        self, h: Tensor, x: Tensor, reached: Tensor, edge_latent: Tensor, edge_index: Tensor
    ) -> Tensor:
        return self.step(h, x, reached, self.edge(edge_latent), edge_index)

    def step(
        self, h: Tensor, x: Tensor, reached: Tensor, edge_term: Tensor, edge_index: Tensor
    ) -> Tensor:
        """:meth:`forward` with the edge projection ``edge_term = self.edge(edge_latent)``
        ``[E, H]`` given: it is the same at every step of a run, so a run computes it once."""
        sender, receiver = edge_index
        z = torch.cat([x + reached.unsqueeze(-1).float() * self.reach_embedding, h], -1)
        pre = (
            self.sender(z)[:, sender] + self.receiver(z)[:, receiver] + edge_term
        )  # [B, E, H]
        m = self.message_out(torch.relu(pre)).masked_fill(
            ~reached[:, sender].unsqueeze(-1), NEG_INF
        )  # [B, E, H]
        aggregated = scatter_max(m, receiver, h.shape[1])  # [B, N, H]
        aggregated = torch.where(torch.isfinite(aggregated), aggregated, 0.0)
        candidate = self.norm(torch.relu(self.self_map(z) + self.aggregate_map(aggregated)))
        gate = torch.sigmoid(self.gate(torch.cat([z, aggregated], -1)))  # [B, N, H]
        return gate * candidate + (1 - gate) * h


# --------------------------------------------------------------------------- heads
class AlgorithmHeads(nn.Module):
    """Per-algorithm encoders (node: source flag; edge: normalised weight) and decoders
    (value: MLP of the node state; pointer: score of edge ``u -> v`` from both ends and the
    edge, softmax over ``v``'s incoming edges)."""

    def __init__(self, hidden: int, *, select: bool = False) -> None:
        super().__init__()
        self.node = nn.Linear(1, hidden)
        self.edge = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.value = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.pointer_sender = nn.Linear(2 * hidden, hidden)
        self.pointer_receiver = nn.Linear(2 * hidden, hidden, bias=False)
        self.pointer_edge = nn.Linear(hidden, hidden, bias=False)
        self.pointer_out = nn.Linear(hidden, 1)
        if select:  # sequential algorithms: which frontier node to settle next
            self.select = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(),
                                        nn.Linear(hidden, 1))

    def selection(self, h: Tensor, x: Tensor, frontier: Tensor) -> Tensor:
        """``[B, N]`` selection logits, ``-inf`` off the ``frontier`` [B, N]."""
        logits = self.select(torch.cat([x, h], -1)).squeeze(-1)
        return logits.masked_fill(~frontier, NEG_INF)

    def encode_edges(self, weights: Tensor) -> Tensor:
        """``[E]`` normalised weights -> ``[E, H]`` (weight and its log as features)."""
        features = torch.stack([weights, torch.log(weights.clamp_min(1e-6))], -1)
        return self.edge(features)

    def decode(
        self, h: Tensor, x: Tensor, reached: Tensor, edge_latent: Tensor, edge_index: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``(value [B, N], pointer logits [B, E])``, logits ``-inf`` from unreached
        senders."""
        sender, receiver = edge_index
        z = torch.cat([x, h], -1)  # [B, N, 2H]
        value = self.value(z).squeeze(-1)
        pre = (
            self.pointer_sender(z)[:, sender]
            + self.pointer_receiver(z)[:, receiver]
            + self.pointer_edge(edge_latent)
        )  # [B, E, H]
        logits = self.pointer_out(torch.relu(pre)).squeeze(-1)
        return value, logits.masked_fill(~reached[:, sender], NEG_INF)


class GeneralistProcessor(nn.Module):
    """Shared :class:`MaxMPNNLayer` + one :class:`AlgorithmHeads` per algorithm."""

    def __init__(self, config: GeneralistConfig | None = None) -> None:
        super().__init__()
        self.config = config or GeneralistConfig()
        unknown = set(self.config.algorithms) - set(ALGORITHMS)
        if unknown:
            raise ValueError(f"unknown algorithms {sorted(unknown)}; known: {sorted(ALGORITHMS)}")
        self.layer = MaxMPNNLayer(self.config.hidden, layer_norm=self.config.layer_norm)
        self.heads = nn.ModuleDict({
            a: AlgorithmHeads(self.config.hidden, select=ALGORITHMS[a].sequential)
            for a in self.config.algorithms})

    def run(
        self,
        algorithm: str,
        source_mask: Tensor,
        weights: Tensor,
        edge_index: Tensor,
        *,
        num_steps: int | None = None,
    ) -> tuple[list[Tensor], list[Tensor], Tensor, int]:
        """Run ``algorithm`` from the sources of ``source_mask`` [B, N] over one graph
        (``weights`` [E] normalised, ``edge_index`` [2, E]).

        ``num_steps`` given (training): exactly that many steps, returns the decoded
        ``(values, logits)`` after each step. ``None`` (test): until the argmax pointers
        are stable for ``patience`` steps once the reached set stops growing, bounded by
        ``hop_factor * eccentricity + 2``; returns only the last step's outputs.
        Returns ``(values [T][B, N], logits [T][B, E], reached [B, N], steps)``.
        """
        if ALGORITHMS[algorithm].sequential:
            raise ValueError(f"{algorithm!r} is sequential: use run_sequential")
        heads, edge_latent, edge_term, x, h = self._start(algorithm, source_mask, weights)
        reached = source_mask.bool()
        bound = num_steps if num_steps is not None else self._bound(source_mask, edge_index)
        values, logits_per_step = [], []
        previous, stable, steps = None, 0, 0
        receiver = edge_index[1]
        for steps in range(1, bound + 1):  # noqa: B007
            h = self.layer.step(h, x, reached, edge_term, edge_index)
            grown = propagate_reached(reached, edge_index)
            settled = torch.equal(grown, reached)
            reached = grown
            value, logits = heads.decode(h, x, reached, edge_latent, edge_index)
            if num_steps is not None:
                values.append(value)
                logits_per_step.append(logits)
                continue
            values, logits_per_step = [value], [logits]
            with torch.no_grad():
                best = scatter_max(logits.unsqueeze(-1), receiver, h.shape[1]).squeeze(-1)
                choice = (logits == best[:, receiver]) & torch.isfinite(logits)  # [B, E]
            if settled and previous is not None and torch.equal(choice, previous):
                stable += 1
                if stable >= self.config.patience:
                    break
            else:
                stable = 0
            previous = choice
        return values, logits_per_step, reached, steps

    def run_sequential(
        self,
        algorithm: str,
        source_mask: Tensor,
        weights: Tensor,
        edge_index: Tensor,
        *,
        settled_hints: Tensor | None = None,
        segments: Tensor | None = None,
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor], Tensor, int]:
        """Run a sequential algorithm (Dijkstra, Prim): one node settled per step and graph.

        Step ``t``: the frontier (unsettled nodes that are a source or have a settled
        in-neighbour; a fixed rule) is scored by the selection head from the state after
        step ``t - 1``; the best node of each graph (``segments`` [N], graph id per node of a
        disjoint union; default one graph) joins the settled set -- teacher-forced from
        ``settled_hints`` [T+1, B, N] in training, the argmax at test time (until the
        frontier is empty). Then the shared step with messages from settled senders only,
        and the decoders. Returns ``(values [T][B, N], logits [T][B, E], selection logits
        [T][B, N], settled [B, N], steps)``; at test time only the last step's outputs."""
        heads, edge_latent, edge_term, x, h = self._start(algorithm, source_mask, weights)
        n = source_mask.shape[1]
        segments = torch.zeros(n, dtype=torch.long) if segments is None else segments
        groups = int(segments.max()) + 1 if n else 0
        settled = torch.zeros_like(source_mask, dtype=torch.bool)
        bound = settled_hints.shape[0] - 1 if settled_hints is not None else n + 1
        values, logits_per_step, selections, steps = [], [], [], 0
        for t in range(1, bound + 1):
            frontier = (propagate_reached(settled, edge_index) | source_mask.bool()) & ~settled
            select = heads.selection(h, x, frontier)
            if settled_hints is not None:
                settled = settled_hints[t]
            elif not frontier.any():
                break
            else:
                settled = settled | _first_best(select, segments, groups)
            h = self.layer.step(h, x, settled, edge_term, edge_index)
            value, logits = heads.decode(h, x, settled, edge_latent, edge_index)
            steps = t
            if settled_hints is None:
                values, logits_per_step, selections = [value], [logits], [select]
            else:
                values.append(value)
                logits_per_step.append(logits)
                selections.append(select)
        return values, logits_per_step, selections, settled, steps

    def _start(self, algorithm: str, source_mask: Tensor, weights: Tensor
               ) -> tuple[AlgorithmHeads, Tensor, Tensor, Tensor, Tensor]:
        """A run's heads, edge latent ``[E, H]``, edge projection (the same at every
        step, computed once), node inputs ``[B, N, H]`` and zero state."""
        heads = self.heads[algorithm]
        edge_latent = heads.encode_edges(weights)
        x = heads.node(source_mask.float().unsqueeze(-1))
        return heads, edge_latent, self.layer.edge(edge_latent), x, torch.zeros_like(x)

    def _bound(self, source_mask: Tensor, edge_index: Tensor) -> int:
        hops = hop_eccentricity(source_mask, edge_index)
        return int(self.config.hop_factor * hops + 2)


def hop_eccentricity(source_mask: Tensor, edge_index: Tensor) -> int:
    """BFS rounds until nothing new is reached from ``source_mask`` [B, N]."""
    reached, hops = source_mask.bool(), 0
    while True:
        grown = propagate_reached(reached, edge_index)
        if torch.equal(grown, reached):
            return hops
        reached, hops = grown, hops + 1


def _first_best_index(scores: Tensor, segments: Tensor, groups: int) -> Tensor:
    """``[B, S]`` long: per row and segment the index (into the last axis of ``scores``
    [B, M], items grouped by ``segments`` [M]) of the first item of highest finite score;
    ``M`` where a segment has none."""
    batch, m = scores.shape
    best = scatter_max(scores.unsqueeze(-1), segments, groups).squeeze(-1)  # [B, S]
    is_best = (scores == best[:, segments]) & torch.isfinite(scores)
    ids = torch.arange(m).expand(batch, -1)
    return torch.full((batch, groups), m, dtype=torch.long).scatter_reduce(
        1, segments.expand(batch, -1), torch.where(is_best, ids, m), "amin")


def _first_best(scores: Tensor, segments: Tensor, groups: int) -> Tensor:
    """``[B, N]`` bool: per row and segment the first node of highest finite score."""
    batch, n = scores.shape
    chosen = torch.zeros(batch, n + 1, dtype=torch.bool)
    chosen.scatter_(1, _first_best_index(scores, segments, groups), True)
    return chosen[:, :n]


# --------------------------------------------------------------------------- inference
@torch.no_grad()
def execute(
    model: GeneralistProcessor,
    algorithm: str,
    graph: Graph,
    sources: np.ndarray | list[int],
    *,
    batch_size: int = 16,
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Run ``algorithm`` from each of ``sources``: ``(values [S, N], pointers [S, N],
    steps per batch)`` with values in the graph's units (distances / widths; hops) and the
    conventions of the reference (source and unreachable nodes point to themselves;
    unreachable values ``inf`` for distances and hops, ``0`` for widths)."""
    spec = ALGORITHMS[algorithm]
    sources = np.asarray(sources, dtype=np.int64).reshape(-1)
    scale = _scale(graph.weights)
    edge_index = torch.from_numpy(np.stack([graph.senders, graph.receivers]).astype(np.int64))
    weights = torch.from_numpy(graph.weights / scale).float()
    n, receiver = graph.num_nodes, edge_index[1]
    values, pointers, steps = [], [], []
    for start in range(0, len(sources), batch_size):
        chunk = torch.from_numpy(sources[start : start + batch_size])
        rows = torch.arange(len(chunk))
        mask = torch.zeros(len(chunk), n, dtype=torch.bool)
        mask[rows, chunk] = True
        if spec.sequential:
            value_steps, logit_steps, _, reached, used = model.run_sequential(
                algorithm, mask, weights, edge_index)
        else:
            value_steps, logit_steps, reached, used = model.run(
                algorithm, mask, weights, edge_index)
        value, logits = value_steps[-1].double(), logit_steps[-1]
        steps.append(used)
        first = _first_best_index(logits, receiver, n)  # [B, N] edge of the first best logit
        pointer = torch.arange(n).expand(len(chunk), -1).clone()
        has = first < receiver.numel()
        pointer[has] = edge_index[0][first[has]]
        pointer[~reached] = torch.arange(n).expand(len(chunk), -1)[~reached]
        pointer[rows, chunk] = chunk
        if spec.weighted:
            value = value * scale
        unreached_value = 0.0 if not spec.minimise else float("inf")
        value = value.masked_fill(~reached, unreached_value)
        value[rows, chunk] = spec.source_value
        values.append(value.numpy())
        pointers.append(pointer.numpy())
    return np.concatenate(values), np.concatenate(pointers), steps


def _scale(weights: np.ndarray) -> float:
    scale = float(np.mean(weights)) if np.size(weights) else 1.0
    return scale if scale > 0 and np.isfinite(scale) else 1.0


# --------------------------------------------------------------------------- training
@dataclass(frozen=True)
class GeneralistTrainConfig:
    """Pretraining data and schedule (stored in the manifest)."""

    seed: int = 0
    iterations: int = 4000
    batch_graphs: int = 8
    min_nodes: int = 4
    max_nodes: int = 16
    road_fraction: float = 0.3
    learning_rate: float = 1e-3
    pointer_weight: float = 1.0
    #: extra steps beyond the trace, supervised with the final answer (learn to stay put):
    #: drawn per batch from [1, max(extra_steps, trace length)]
    extra_steps: int = 2
    checkpoint_every: int = 100


@dataclass
class AlgorithmBatch:
    """Disjoint union of a batch of graphs with one algorithm's hints."""

    num_nodes: int
    edge_index: Tensor  # [2, E]
    weights: Tensor  # [E] normalised per graph
    source_mask: Tensor  # [1, N]
    hint_value: Tensor  # [T+1, N] (normalised where the algorithm is weighted)
    hint_reached: Tensor  # [T+1, N] bool
    #: round in which each node last changed its value, as of round t: [T+1, N] long
    hint_changed: Tensor
    num_steps: int
    #: graph id of every node of the union [N]
    segments: Tensor | None = None
    #: sequential algorithms: the settled set after step t [T+1, N] (else None)
    hint_settled: Tensor | None = None


def make_batch(
    graphs: list[Graph], algorithm: str, *, extra_steps: int,
    rng: np.random.Generator | None = None,
) -> AlgorithmBatch:
    """The disjoint union of ``graphs`` with ``algorithm``'s hints, run for the longest
    trace plus ``extra_steps`` steps (the final answer repeated); with ``rng`` the extra
    steps are drawn from ``[1, max(extra_steps, trace length)]``."""
    spec = ALGORITHMS[algorithm]
    traces = [spec.reference(g.num_nodes, g.senders, g.receivers, g.weights, g.source)
              for g in graphs]
    rounds = max(t.num_rounds for t in traces)
    if spec.sequential:  # the run ends once the frontier is empty: nothing after the trace
        extra_steps = 0
    elif rng is not None:
        extra_steps = int(rng.integers(1, max(extra_steps, rounds) + 1))
    steps = rounds + extra_steps
    offset, senders, receivers, weights, sources, hints, reach = 0, [], [], [], [], [], []
    settled, segments = [], []
    for graph, trace in zip(graphs, traces, strict=True):
        scale = _scale(graph.weights)
        senders.append(graph.senders + offset)
        receivers.append(graph.receivers + offset)
        weights.append(graph.weights / scale)
        sources.append(graph.source + offset)
        rows = np.arange(steps + 1).clip(max=trace.num_rounds)
        value = trace.hint_distance[rows]  # [T+1, n]
        hints.append(value / scale if spec.weighted else value)
        segments.append(np.full(graph.num_nodes, len(segments)))
        if spec.sequential:  # known: settled or on the frontier (a finite key)
            settled.append(trace.hint_settled[rows])
            reach.append(np.isfinite(value))
        else:
            hops = ref.bfs_hops(graph.num_nodes, graph.senders, graph.receivers,
                                graph.weights, graph.source, with_hints=False).distance
            reach.append(hops[None, :] <= np.arange(steps + 1)[:, None])
        offset += graph.num_nodes
    mask = torch.zeros(1, offset, dtype=torch.bool)
    mask[0, sources] = True
    value = np.concatenate(hints, axis=1)  # [T+1, N]
    changed = np.zeros(value.shape, dtype=np.int64)
    for t in range(1, steps + 1):
        moved = value[t] != value[t - 1]
        changed[t] = np.where(moved, t, changed[t - 1])
    return AlgorithmBatch(
        num_nodes=offset,
        edge_index=torch.from_numpy(np.stack([np.concatenate(senders), np.concatenate(receivers)])),
        weights=torch.from_numpy(np.concatenate(weights)).float(),
        source_mask=mask,
        hint_value=torch.from_numpy(value).float(),
        hint_reached=torch.from_numpy(np.concatenate(reach, axis=1)),
        hint_changed=torch.from_numpy(changed),
        num_steps=steps,
        segments=torch.from_numpy(np.concatenate(segments)),
        hint_settled=torch.from_numpy(np.concatenate(settled, axis=1)) if settled else None,
    )


def pointer_targets(spec: AlgorithmSpec, batch: AlgorithmBatch, t: int) -> tuple[Tensor, Tensor]:
    """Targets after step ``t``: edges ``u -> v`` whose candidate from round ``r_v - 1``
    (``r_v``: the round ``v`` last improved, ``<= t``) equals ``v``'s value at ``t``
    (``[E]`` bool, every tie of that round) and the nodes with a target (``[N]``)."""
    sender, receiver = batch.edge_index
    before = (batch.hint_changed[t][receiver] - 1).clamp_min(0)  # [E] round r_v - 1
    candidate = spec.combine(batch.hint_value[before, sender], batch.weights)  # [E]
    target = batch.hint_value[t][receiver]
    both_inf = torch.isinf(candidate) & torch.isinf(target)
    tight = batch.hint_reached[before, sender] & (_tie(candidate, target) | both_inf)
    tight &= (sender != receiver) & (batch.hint_changed[t][receiver] > 0)
    return _with_target(tight, batch)


def _tie(candidate: Tensor, target: Tensor) -> Tensor:
    """Equal up to the hints' float32 rounding (relative 1e-5, absolute below 1)."""
    return (candidate - target).abs() <= 1e-5 * target.abs().clamp_min(1.0)


def _with_target(tight: Tensor, batch: AlgorithmBatch) -> tuple[Tensor, Tensor]:
    """``(tight edges into nodes that have a target, those nodes)``; sources have none."""
    receiver = batch.edge_index[1]
    has = torch.zeros(batch.num_nodes, dtype=torch.bool).index_fill_(0, receiver[tight], True)
    has &= ~batch.source_mask[0]
    return tight & has[receiver], has


def sequential_pointer_targets(spec: AlgorithmSpec, batch: AlgorithmBatch, t: int
                               ) -> tuple[Tensor, Tensor]:
    """Targets after step ``t`` of a sequential algorithm: edges ``u -> v`` from a node
    settled before ``v`` (``u`` settled by ``t``; ``v`` settled later or not yet) whose
    candidate ``combine(key_u, w_uv)`` equals ``v``'s key at ``t`` (every tie), and the
    nodes with a target."""
    sender, receiver = batch.edge_index
    settled = batch.hint_settled  # [T+1, N]
    never = settled.shape[0]
    when = torch.where(settled.any(0), settled.float().argmax(0), never)  # [N] settle step
    value = batch.hint_value[t]
    candidate = spec.combine(value[sender], batch.weights)
    target = value[receiver]
    tight = settled[t][sender] & _tie(candidate, target) & torch.isfinite(target)
    tight &= (sender != receiver) & (when[sender] < when[receiver])
    return _with_target(tight, batch)


def selection_loss(select: Tensor, batch: AlgorithmBatch, t: int) -> Tensor | None:
    """Cross-entropy of step ``t``'s selection logits [1, N] against the frontier nodes of
    least key at ``t - 1`` (the reference settles one of them; ties all accepted), averaged
    over the graphs that still have a frontier; ``None`` when none has."""
    segments, groups = batch.segments, int(batch.segments.max()) + 1
    frontier = torch.isfinite(select[0])
    if not frontier.any():
        return None
    key = batch.hint_value[t - 1].masked_fill(~frontier, float("inf"))
    least = torch.full((groups,), float("inf")).scatter_reduce(0, segments, key, "amin")
    best = frontier & _tie(key, least[segments])
    all_lse = segment_logsumexp(select, segments, groups)[0]
    best_lse = segment_logsumexp(select.masked_fill(~best.unsqueeze(0), NEG_INF), segments,
                                 groups)[0]
    active = torch.isfinite(least)
    return (all_lse[active] - best_lse[active]).mean()


def algorithm_loss(
    model: GeneralistProcessor, algorithm: str, batch: AlgorithmBatch, *, pointer_weight: float
) -> tuple[Tensor, dict[str, float]]:
    spec = ALGORITHMS[algorithm]
    select_terms = []
    if spec.sequential:
        values, logits, selections, _, _ = model.run_sequential(
            algorithm, batch.source_mask, batch.weights, batch.edge_index,
            settled_hints=batch.hint_settled.unsqueeze(1), segments=batch.segments)
        for t in range(1, batch.num_steps + 1):
            term = selection_loss(selections[t - 1], batch, t)
            if term is not None:
                select_terms.append(term)
        targets = sequential_pointer_targets
    else:
        values, logits, _, _ = model.run(
            algorithm, batch.source_mask, batch.weights, batch.edge_index,
            num_steps=batch.num_steps)
        targets = pointer_targets
    receiver = batch.edge_index[1]
    value_terms, pointer_terms = [], []
    for t in range(1, batch.num_steps + 1):
        truth, reached = batch.hint_value[t], batch.hint_reached[t]
        known = reached & torch.isfinite(truth)
        error = (values[t - 1][0][known] - truth[known]) / (1.0 + truth[known].abs())
        value_terms.append((error**2).mean())
        tight, has = targets(spec, batch, t)
        if has.any():
            step_logits = logits[t - 1]
            all_lse = segment_logsumexp(step_logits, receiver, batch.num_nodes)[0]
            tight_lse = segment_logsumexp(
                step_logits.masked_fill(~tight.unsqueeze(0), NEG_INF), receiver, batch.num_nodes
            )[0]
            pointer_terms.append((all_lse[has] - tight_lse[has]).mean())
    value_loss = torch.stack(value_terms).mean()
    pointer_loss = torch.stack(pointer_terms).mean() if pointer_terms else value_loss * 0
    parts = {f"{algorithm}_value": value_loss.item(), f"{algorithm}_pointer": pointer_loss.item()}
    total = value_loss + pointer_weight * pointer_loss
    if select_terms:
        select_loss = torch.stack(select_terms).mean()
        parts[f"{algorithm}_select"] = select_loss.item()
        total = total + select_loss
    return total, parts


def sample_graphs(rng: np.random.Generator, config: GeneralistTrainConfig) -> list[Graph]:
    return [
        training_graph(rng, min_nodes=config.min_nodes, max_nodes=config.max_nodes,
                       road_fraction=config.road_fraction)
        for _ in range(config.batch_graphs)
    ]


def train(
    model: GeneralistProcessor,
    config: GeneralistTrainConfig,
    *,
    checkpoint: Path | None = None,
    log: Callable[[str], None] | None = None,
    log_every: int = 25,
) -> list[float]:
    """Hint-supervised multi-task training (one batch of graphs per iteration, every
    algorithm on it, losses summed); resumes from ``checkpoint`` when it exists. Batch
    ``i`` is drawn from ``default_rng([seed, i])``. Returns the loss history."""
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, config.iterations)
    start, history = 0, []
    settings = [dataclasses.asdict(model.config), dataclasses.asdict(config)]
    settings[0]["algorithms"] = list(settings[0]["algorithms"])
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=True)
        if state.get("settings") != settings:
            raise InputError(f"checkpoint {checkpoint}: made with other settings; delete it "
                             "or pass the same options")
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        start, history = state["iteration"], state["history"]
    began = time.monotonic()
    for iteration in range(start, config.iterations):
        rng = np.random.default_rng([config.seed, iteration])
        graphs = sample_graphs(rng, config)
        total, parts = torch.zeros(()), {}
        for algorithm in model.config.algorithms:
            batch = make_batch(graphs, algorithm, extra_steps=config.extra_steps, rng=rng)
            loss, part = algorithm_loss(model, algorithm, batch,
                                        pointer_weight=config.pointer_weight)
            total = total + loss
            parts.update(part)
        optimiser.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        history.append(total.item())
        done = iteration + 1
        if log is not None and (done % log_every == 0 or done == config.iterations):
            detail = " ".join(f"{k}={v:.4f}" for k, v in parts.items())
            log(f"iter {done}/{config.iterations} loss={np.mean(history[-log_every:]):.4f} "
                f"{detail} elapsed={time.monotonic() - began:.0f}s")
        if checkpoint is not None and (
            done % config.checkpoint_every == 0 or done == config.iterations
        ):
            tmp = checkpoint.with_suffix(".tmp")
            torch.save({"settings": settings, "model": model.state_dict(),
                        "optimiser": optimiser.state_dict(),
                        "schedule": schedule.state_dict(), "iteration": done,
                        "history": history}, tmp)
            tmp.replace(checkpoint)
    return history


# --------------------------------------------------------------------------- artifact I/O
def save(
    out_dir: str | os.PathLike[str],
    model: GeneralistProcessor,
    train_config: GeneralistTrainConfig,
    *,
    metrics: dict[str, Any] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Write a Generalist-processor artifact (safetensors + manifest with both configs)."""
    from safetensors.torch import save_file

    with atomic_artifact_dir(out_dir, force=force) as staging:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
                  str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        return write_manifest(
            staging, kind=KIND, schema_version=SCHEMA_VERSION, seed=train_config.seed,
            extra={"config": dataclasses.asdict(model.config),
                   "training": dataclasses.asdict(train_config),
                   "metrics": metrics or {}},
        )


def load(directory: str | os.PathLike[str]) -> tuple[GeneralistProcessor, dict[str, Any]]:
    """``(model, manifest)`` from a Generalist-processor artifact, frozen (eval, no grad)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    manifest = read_manifest(directory, kind=KIND, schema_versions=(SCHEMA_VERSION,))
    raw = dict(manifest.get("config") or {})
    fields = {f.name for f in dataclasses.fields(GeneralistConfig)}
    if not raw or set(raw) - fields:
        raise ArtifactError(f"artifact {directory}: manifest 'config' missing or unknown keys")
    raw["algorithms"] = tuple(raw.get("algorithms", GeneralistConfig.algorithms))
    model = GeneralistProcessor(GeneralistConfig(**raw))
    try:
        model.load_state_dict(load_file(str(Path(directory) / WEIGHTS_FILE)), strict=True)
    except (OSError, SafetensorError, RuntimeError) as exc:
        raise ArtifactError(f"artifact {directory}: cannot load {WEIGHTS_FILE} ({exc})") from exc
    model.requires_grad_(False).eval()
    return model, manifest


def describe(manifest: dict[str, Any]) -> str:
    return json.dumps({"config": manifest.get("config"), "metrics": manifest.get("metrics")})
