"""The shortest-path processor: encode (scalar weight -> edge latent), process (iterate a
message-passing step to convergence), decode (distance, predecessor pointer).

Two processor layers are provided; the artifact's config names the one it uses.

``"tropical"`` (shipped) -- a learned min-plus (tropical) step, aligned with Bellman-Ford:
    messages are *bias-free linear* in the sender state and the edge latent, aggregation is
    max, and a node keeps the best of its state and its incoming messages. Every map is
    positively homogeneous of degree 1, so multiplying all weights by ``c > 0`` multiplies
    every latent and decoded distance by ``c`` and leaves every pointer unchanged (IterGNN,
    NeurIPS 2020). That is what holds at road scale: road graphs need 90-200 rounds and carry
    distances hundreds of times larger than training graphs; a layer with biases or a
    saturating non-linearity sees inputs it never saw in training, this one provably does
    not (``tests/models/processor/test_processor.py`` checks the scale equivariance). Which nodes a
    run has reached is a 1-bit discrete state (the DNAR-style bottleneck): it is a function
    of the graph alone (OR over in-neighbours), it masks messages from unreached senders
    and decodes to ``inf`` / self-pointers, so "unreachable" never has to be represented by
    a huge number.
``"mpnn"`` -- the baseline of Ibarz et al. 2022: MLP messages over (sender, receiver, edge),
    max aggregation, gated update. Kept for the benchmark comparison.

The number of steps adapts to the graph: the processor runs until the reached set and the
decoded distances stop changing (a fixed point of a min-plus step is the Bellman-Ford
answer), bounded by ``N`` steps (Bellman-Ford needs at most N-1 rounds) for ``"tropical"``
or by a bound from the hop-diameter for ``"mpnn"``, whose states never settle exactly.

Interface for the ETA model (issue 5): :class:`Processor` takes node latents
``[B, N, H]`` with a source mask ``[B, N]`` (several origins on one graph, stacked along
``B``) and edge latents ``[E, H]`` shared by all origins; a road-feature encoder replaces
:class:`WeightEncoder` and produces the edge latents directly.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from nareta.artifacts import read_manifest
from nareta.errors import ArtifactError

KIND = "processor"
SCHEMA_VERSION = 1
WEIGHTS_FILE = "processor.safetensors"
NEG_INF = float("-inf")


@dataclass(frozen=True)
class ProcessorConfig:
    """Hyperparameters stored in the artifact; the model rebuilds from them alone."""

    layer: str = "tropical"  # "tropical" | "mpnn"
    hidden: int = 16
    #: stop when no decoded distance moved by more than this fraction of the largest one
    convergence_rtol: float = 1e-6
    #: "mpnn" only: at most ``hop_factor * eccentricity + 2`` steps (hops from the source)
    hop_factor: float = 2.0
    #: "tropical" only: learn the sender map A (rows summing to one) or fix A = I (shipped;
    #: see TropicalLayer for the measurements behind the choice)
    learned_sender_map: bool = False


# --------------------------------------------------------------------------- scatter helpers
def scatter_max(src: Tensor, index: Tensor, num_nodes: int) -> Tensor:
    """Max of ``src`` [B, E, H] over edges with the same receiver ``index`` [E] -> [B, N, H];
    ``-inf`` where a node receives nothing."""
    batch, _, hidden = src.shape
    out = src.new_full((batch, num_nodes, hidden), NEG_INF)
    return out.scatter_reduce(
        1, index.view(1, -1, 1).expand_as(src), src, "amax", include_self=True
    )


def segment_logsumexp(logits: Tensor, index: Tensor, num_nodes: int) -> Tensor:
    """log-sum-exp of ``logits`` [B, E] per receiver ``index`` [E] -> [B, N] (-inf if none)."""
    peak = scatter_max(logits.unsqueeze(-1), index, num_nodes).squeeze(-1)  # [B, N]
    safe_peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    shifted = torch.exp(logits - safe_peak[:, index])  # [B, E]
    total = shifted.new_zeros(peak.shape).index_add_(1, index, shifted)
    return torch.log(total) + safe_peak


def propagate_reached(reached: Tensor, edge_index: Tensor) -> Tensor:
    """One BFS round: ``reached`` [B, N] OR any reached in-neighbour."""
    sender, receiver = edge_index
    count = torch.zeros(reached.shape).index_add_(1, receiver, reached[:, sender].float())
    return reached | (count > 0)


# --------------------------------------------------------------------------- encoders
class WeightEncoder(nn.Module):
    r"""Scalar edge weight -> edge latent.

    .. math::
        \mathbf{z}_{uv} = \frac{w_{uv}}{s} \, \mathbf{a}

    with the per-graph scale ``s`` (mean edge weight) applied by the caller. For ``w > 0``
    every bias-free ReLU network of a scalar reduces to this form, so nothing is lost by
    writing it as one vector; a bias would break the scale equivariance. The ``"mpnn"``
    baseline uses an affine map (``bias=True``), as CLRS does.

    Shapes:
        input ``[E]`` normalised weights, output ``[E, H]``.
    """

    def __init__(self, hidden: int, *, bias: bool = False) -> None:
        super().__init__()
        self.linear = nn.Linear(1, hidden, bias=bias)
        if not bias:  # positive direction: weights read as costs from the start
            nn.init.uniform_(self.linear.weight, 0.5, 1.5)

    def forward(self, weights: Tensor) -> Tensor:
        return self.linear(weights.unsqueeze(-1))  # [E, H]


# --------------------------------------------------------------------------- layers
class TropicalLayer(nn.Module):
    r"""One learned min-plus (Bellman-Ford-aligned) step with max aggregation.

    .. math::
        \mathbf{m}_{uv} &= \mathbf{A}\,\mathbf{h}_u + \mathbf{B}\,\mathbf{z}_{uv} \\
        \mathbf{h}'_v &= \max\Bigl(\mathbf{h}_v,\; \max_{u \in \mathcal{N}^-(v),\, r_u}
            \mathbf{m}_{uv}\Bigr) \quad\text{(element-wise; only } \max_u \text{ if } \neg r_v)\\
        r'_v &= r_v \lor \bigvee_{u \in \mathcal{N}^-(v)} r_u

    No biases and no saturating non-linearity: the step is positively homogeneous in
    :math:`(\mathbf{h}, \mathbf{z})`. :math:`\mathbf{A}` is parametrised with rows summing
    to one (:math:`\mathbf{A}\mathbf{1} = \mathbf{1}`), which makes the step commute with
    adding a constant to every state -- the translation equivariance of a min-plus step
    (:math:`\min(a + c, b + c) = \min(a, b) + c`). Without it the learned :math:`\mathbf{A}`
    drifted to row sums of 0.98-1.002, an error that compounds over the 50-200 rounds of a
    road graph (98% pointers but 68% path optimality at n=1,000 in our first run). With
    it, a learned :math:`\mathbf{A}` still mixes channels whose edge costs
    :math:`\mathbf{B}\mathbf{z}` differ by ~1%, which costs ~0.2% per hop: 99.8% pointers
    but 0% whole-graph accuracy at n=5,000. The shipped configuration therefore fixes
    :math:`\mathbf{A} = \mathbf{I}` (``learned_sender_map=False``): every channel is then
    an exact min-plus recursion under its own learned cost :math:`(\mathbf{B}\mathbf{z})_k`,
    and what is learned is the cost map, the read-outs and the pointer scorer. A channel
    with a positive cost would compute longest walks and never settle; :math:`\mathbf{B}`
    and the weight encoder are initialised so that all costs start negative, and in the
    shipped model all 16 stay so. With :math:`\mathbf{B}\mathbf{z}_{uv} = -w_{uv}
    \mathbf{c}`, :math:`\mathbf{c} > 0`, the step is exactly Bellman-Ford on
    :math:`-\mathbf{h}/\mathbf{c}` (``test_hand_set_tropical_step_is_exactly_bellman_ford``).
    Numbers for both tropical variants and the MPNN baseline: ``benchmarks/results/``.

    Args:
        hidden (int): latent size ``H``.
        learned_sender_map (bool, optional): learn :math:`\mathbf{A}` (rows summing to one)
            instead of fixing :math:`\mathbf{A} = \mathbf{I}`. (default: ``False``)

    Shapes:
        - **h** ``[B, N, H]``, **reached** ``[B, N]`` bool, **edge_latent** ``[E, H]``,
          **edge_index** ``[2, E]`` (sender, receiver)
        - output: ``(h', reached')`` of the same shapes
    """

    def __init__(self, hidden: int, *, learned_sender_map: bool = False) -> None:
        super().__init__()
        # A = I + M (I - 11^T / H): every row sums to one, so A 1 = 1 exactly.
        self.hidden = hidden
        self.sender_offset = (
            nn.Parameter(torch.zeros(hidden, hidden))  # M
            if learned_sender_map
            else None
        )
        self.edge = nn.Linear(hidden, hidden, bias=False)  # B
        with torch.no_grad():
            self.edge.weight.copy_(-torch.eye(hidden) - 0.1 * torch.rand(hidden, hidden))

    @property
    def sender_matrix(self) -> Tensor:
        """``A`` [H, H], identity plus a zero-row-sum part."""
        if self.sender_offset is None:
            return torch.eye(self.hidden)
        offset = self.sender_offset - self.sender_offset.mean(dim=1, keepdim=True)
        return torch.eye(offset.shape[0], dtype=offset.dtype) + offset

    def message(
        self, h: Tensor, reached: Tensor, edge_latent: Tensor, edge_index: Tensor
    ) -> Tensor:
        """``m_uv`` for every edge, ``-inf`` from unreached senders: ``[B, E, H]``."""
        sender = edge_index[0]
        m = h[:, sender]  # [B, E, H]
        if self.sender_offset is not None:
            m = m @ self.sender_matrix.T  # [B, E, H]
        m = m + self.edge(edge_latent).unsqueeze(0)  # [B, E, H]
        return m.masked_fill(~reached[:, sender].unsqueeze(-1), NEG_INF)

    def forward(
        self, h: Tensor, reached: Tensor, edge_latent: Tensor, edge_index: Tensor
    ) -> tuple[Tensor, Tensor]:
        num_nodes = h.shape[1]
        incoming = scatter_max(
            self.message(h, reached, edge_latent, edge_index), edge_index[1], num_nodes
        )  # [B, N, H]
        got = torch.isfinite(incoming[..., 0])  # [B, N]
        incoming = torch.where(got.unsqueeze(-1), incoming, h)  # no message: keep h
        h_next = torch.where(reached.unsqueeze(-1), torch.maximum(h, incoming), incoming)
        return h_next, reached | got


class GatedMaxMPNNLayer(nn.Module):
    r"""Baseline: the gated max-aggregation MPNN of Ibarz et al. 2022 (§3).

    .. math::
        \mathbf{m}_{uv} &= \mathrm{MLP}_m([\mathbf{x}_u \| \mathbf{h}_u,\,
            \mathbf{x}_v \| \mathbf{h}_v,\, \mathbf{z}_{uv}]) \\
        \tilde{\mathbf{h}}_v &= \mathrm{ReLU}\bigl(\mathbf{W}_o[\mathbf{h}_v \,\|\,
            \max_u \mathbf{m}_{uv}] \bigr) \\
        \mathbf{g}_v &= \sigma\bigl(\mathrm{MLP}_g([\mathbf{h}_v \,\|\, \max_u
            \mathbf{m}_{uv}])\bigr), \quad
        \mathbf{h}'_v = \mathbf{g}_v \odot \tilde{\mathbf{h}}_v + (1 - \mathbf{g}_v)
            \odot \mathbf{h}_v

    (the initial latent :math:`\mathbf{x}` is fed at every step, as in CLRS.)

    Shapes: as :class:`TropicalLayer`, plus **x** ``[B, N, H]``.
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.message_mlp = nn.Sequential(
            nn.Linear(5 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden)
        )
        self.output = nn.Linear(2 * hidden, hidden)
        self.gate = nn.Sequential(
            nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden)
        )
        nn.init.constant_(self.gate[2].bias, -3.0)  # CLRS: gates start mostly closed

    def forward(
        self, h: Tensor, reached: Tensor, edge_latent: Tensor, edge_index: Tensor, x: Tensor
    ) -> tuple[Tensor, Tensor]:
        sender, receiver = edge_index
        batch, num_nodes, _ = h.shape
        z = torch.cat([x, h], -1)  # [B, N, 2H]
        edges = edge_latent.unsqueeze(0).expand(batch, -1, -1)  # [B, E, H]
        m = self.message_mlp(torch.cat([z[:, sender], z[:, receiver], edges], -1))  # [B, E, H]
        aggregated = scatter_max(m, receiver, num_nodes)  # [B, N, H]
        aggregated = torch.where(
            torch.isfinite(aggregated), aggregated, torch.zeros_like(aggregated)
        )
        both = torch.cat([h, aggregated], -1)  # [B, N, 2H]
        gate = torch.sigmoid(self.gate(both))
        h_next = gate * torch.relu(self.output(both)) + (1 - gate) * h
        reached_next = propagate_reached(reached, edge_index)
        return h_next, reached_next


# --------------------------------------------------------------------------- decoders
class DistanceDecoder(nn.Module):
    r"""Latent node state -> distance, :math:`\hat d_v = \mathbf{r}^\top \mathbf{h}_v`
    (bias-free for ``"tropical"``; an MLP for ``"mpnn"``). ``[B, N, H] -> [B, N]``."""

    def __init__(self, hidden: int, *, homogeneous: bool) -> None:
        super().__init__()
        if homogeneous:
            self.net: nn.Module = nn.Linear(hidden, 1, bias=False)
            with torch.no_grad():
                self.net.weight.fill_(-1.0 / hidden)
        else:
            self.net = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h).squeeze(-1)


class PointerDecoder(nn.Module):
    r"""Scores each incoming edge ``u -> v`` as ``v``'s predecessor; softmax over the
    incoming edges of ``v``.

    ``"tropical"``: :math:`s_{uv} = \mathbf{q}^\top \mathbf{m}_{uv}` -- the score of the
    message the layer would send, i.e. "which relaxation wins" (linear, scale-equivariant).
    ``"mpnn"``: :math:`s_{uv} = \mathrm{MLP}([\mathbf{h}_u, \mathbf{h}_v, \mathbf{z}_{uv}])`.

    Shapes: output ``[B, E]``, ``-inf`` for unreached senders.
    """

    def __init__(self, hidden: int, *, homogeneous: bool) -> None:
        super().__init__()
        self.homogeneous = homogeneous
        if homogeneous:
            self.net: nn.Module = nn.Linear(hidden, 1, bias=False)
            with torch.no_grad():
                self.net.weight.fill_(1.0 / hidden)
        else:
            self.net = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(
        self, layer: nn.Module, h: Tensor, reached: Tensor, edge_latent: Tensor, edge_index: Tensor
    ) -> Tensor:
        sender, receiver = edge_index
        if self.homogeneous:
            m = layer.message(h, reached, edge_latent, edge_index)  # [B, E, H]
            finite = torch.isfinite(m[..., :1])
            scores = self.net(torch.where(finite, m, torch.zeros_like(m))).squeeze(-1)
        else:
            edges = edge_latent.unsqueeze(0).expand(h.shape[0], -1, -1)  # [B, E, H]
            scores = self.net(torch.cat([h[:, sender], h[:, receiver], edges], -1)).squeeze(-1)
        return scores.masked_fill(~reached[:, sender], NEG_INF)  # [B, E]


# --------------------------------------------------------------------------- processor
@dataclass
class ProcessorOutput:
    """``states``: latents after each step, ``[T+1, B, N, H]`` when kept (row 0: input);
    ``reached`` ``[B, N]``; ``distance`` ``[B, N]`` (``inf`` unreached, in the units of the
    edge latents); ``pointer_logits`` ``[B, E]``; ``steps`` taken; ``converged``."""

    states: Tensor | None
    hidden: Tensor
    reached: Tensor
    distance: Tensor
    pointer_logits: Tensor
    steps: int
    converged: bool
    step_distances: list[Tensor] = dataclasses.field(default_factory=list)
    step_pointer_logits: list[Tensor] = dataclasses.field(default_factory=list)


class Processor(nn.Module):
    """The frozen core: (node latents, source mask, edge latents, graph) -> node states per
    step, decoded distances and predecessor-pointer logits.

    Args:
        config (ProcessorConfig): layer kind, latent size and stopping rule.
    """

    def __init__(self, config: ProcessorConfig | None = None) -> None:
        super().__init__()
        self.config = config or ProcessorConfig()
        hidden, homogeneous = self.config.hidden, self.config.layer == "tropical"
        if self.config.layer not in ("tropical", "mpnn"):
            raise ValueError(f"unknown processor layer {self.config.layer!r}")
        self.layer: nn.Module = (
            TropicalLayer(hidden, learned_sender_map=self.config.learned_sender_map)
            if homogeneous
            else GatedMaxMPNNLayer(hidden)
        )
        self.source_embedding = None if homogeneous else nn.Parameter(torch.randn(hidden))
        self.distance_decoder = DistanceDecoder(hidden, homogeneous=homogeneous)
        self.pointer_decoder = PointerDecoder(hidden, homogeneous=homogeneous)

    # -- the two pieces the ETA model reuses ------------------------------------------------
    def initial_state(self, source_mask: Tensor) -> Tensor:
        """Default node latents for a run from ``source_mask`` [B, N]: zeros (the source's
        distance-0 state, the only scale-free choice) or a learned source embedding."""
        h = torch.zeros(*source_mask.shape, self.config.hidden)
        if self.source_embedding is not None:
            h = h + source_mask.unsqueeze(-1).float() * self.source_embedding
        return h  # [B, N, H]

    def step(
        self, h: Tensor, reached: Tensor, x: Tensor, edge_latent: Tensor, edge_index: Tensor
    ) -> tuple[Tensor, Tensor]:
        if isinstance(self.layer, TropicalLayer):
            return self.layer(h, reached, edge_latent, edge_index)
        return self.layer(h, reached, edge_latent, edge_index, x)

    def decode(
        self, h: Tensor, reached: Tensor, edge_latent: Tensor, edge_index: Tensor
    ) -> tuple[Tensor, Tensor]:
        distance = self.distance_decoder(h).masked_fill(~reached, math.inf)  # [B, N]
        logits = self.pointer_decoder(self.layer, h, reached, edge_latent, edge_index)
        return distance, logits

    def step_bound(self, source_mask: Tensor, edge_index: Tensor) -> int:
        """Upper bound on steps: N for the tropical step (Bellman-Ford's N-1 rounds + one
        to see convergence); for ``"mpnn"`` a multiple of the sources' hop eccentricity."""
        num_nodes = source_mask.shape[1]
        if self.config.layer == "tropical":
            return max(num_nodes, 1)
        reached, hops = source_mask.bool(), 0
        while True:
            nxt = propagate_reached(reached, edge_index)
            if torch.equal(nxt, reached):
                break
            reached, hops = nxt, hops + 1
        return int(self.config.hop_factor * hops + 2)

    def forward(
        self,
        node_latent: Tensor,
        source_mask: Tensor,
        edge_latent: Tensor,
        edge_index: Tensor,
        *,
        num_steps: int | None = None,
        keep_states: bool = False,
        keep_step_outputs: bool = False,
    ) -> ProcessorOutput:
        """Run to convergence (``num_steps=None``) or for exactly ``num_steps`` steps.

        Shapes:
            node_latent ``[B, N, H]``, source_mask ``[B, N]`` bool, edge_latent ``[E, H]``,
            edge_index ``[2, E]`` long (shared by the ``B`` runs).
        """
        h, reached = node_latent, source_mask.bool()
        x = node_latent
        states = [h] if keep_states else None
        step_distances: list[Tensor] = []
        step_logits: list[Tensor] = []
        if keep_step_outputs:
            d0, l0 = self.decode(h, reached, edge_latent, edge_index)
            step_distances.append(d0)
            step_logits.append(l0)
        bound = num_steps if num_steps is not None else self.step_bound(source_mask, edge_index)
        rtol = self.config.convergence_rtol
        previous = None
        converged, steps = False, 0
        for steps in range(1, bound + 1):  # noqa: B007
            h_next, reached_next = self.step(h, reached, x, edge_latent, edge_index)
            if keep_step_outputs:
                d, logits = self.decode(h_next, reached_next, edge_latent, edge_index)
                step_distances.append(d)
                step_logits.append(logits)
            if num_steps is None:
                with torch.no_grad():
                    current = self.distance_decoder(h_next).masked_fill(~reached_next, 0.0)
                    same_reach = torch.equal(reached_next, reached)
                    if previous is not None and same_reach:
                        change = (current - previous).abs().max()
                        if change <= rtol * current.abs().max().clamp_min(1e-30):
                            converged = True
                    previous = current
            h, reached = h_next, reached_next
            if states is not None:
                states.append(h)
            if converged:
                break
        distance, logits = self.decode(h, reached, edge_latent, edge_index)
        return ProcessorOutput(
            states=torch.stack(states) if states is not None else None,
            hidden=h,
            reached=reached,
            distance=distance,
            pointer_logits=logits,
            steps=steps,
            converged=converged,
            step_distances=step_distances,
            step_pointer_logits=step_logits,
        )

    def freeze(self) -> Processor:
        """Turn gradients off and switch to eval mode; returns ``self``."""
        self.requires_grad_(False)
        self.eval()
        return self

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Processor:
        """Load a Processor artifact (manifest verified, safetensors, no pickle); frozen."""
        processor, _, _ = load_pretrained(directory)
        return processor


# --------------------------------------------------------------------------- artifact I/O
def save_weights(path: Path, weight_encoder: WeightEncoder, processor: Processor) -> None:
    from safetensors.torch import save_file

    tensors = {
        f"weight_encoder.{k}": v.detach().contiguous()
        for k, v in weight_encoder.state_dict().items()
    }
    tensors.update(
        {f"processor.{k}": v.detach().contiguous() for k, v in processor.state_dict().items()}
    )
    save_file(tensors, str(path), metadata={"format": "pt"})


def config_from_manifest(manifest: dict[str, Any]) -> ProcessorConfig:
    fields = {f.name for f in dataclasses.fields(ProcessorConfig)}
    raw = manifest.get("config")
    if not isinstance(raw, dict) or set(raw) - fields:
        raise ArtifactError(
            "processor artifact: manifest 'config' missing or has unknown keys "
            f"(expected a subset of {sorted(fields)})"
        )
    return ProcessorConfig(**raw)


def load_pretrained(
    directory: str | os.PathLike[str],
) -> tuple[Processor, WeightEncoder, dict[str, Any]]:
    """``(processor, weight_encoder, manifest)`` from a Processor artifact, both frozen."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    manifest = read_manifest(directory, kind=KIND, schema_versions=(SCHEMA_VERSION,))
    config = config_from_manifest(manifest)
    try:
        tensors = load_file(str(Path(directory) / WEIGHTS_FILE))
    except (OSError, SafetensorError) as exc:
        raise ArtifactError(f"artifact {directory}: cannot read {WEIGHTS_FILE} ({exc})") from exc
    processor = Processor(config)
    encoder = WeightEncoder(config.hidden, bias=config.layer != "tropical")
    try:
        for prefix, module in (("processor.", processor), ("weight_encoder.", encoder)):
            part = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            module.load_state_dict(part, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(
            f"artifact {directory}: weights do not match its config ({str(exc).splitlines()[0]})"
        ) from exc
    processor.freeze()
    encoder.requires_grad_(False).eval()
    return processor, encoder, manifest


def describe(manifest: dict[str, Any]) -> str:
    return json.dumps({"config": manifest.get("config"), "metrics": manifest.get("metrics")})


# --------------------------------------------------------------------------- inference
def weight_scale(weights: np.ndarray | Tensor) -> float:
    """Per-graph normalisation scale: the mean edge weight (1 for an empty graph)."""
    w = np.asarray(weights, dtype=np.float64)
    scale = float(w.mean()) if w.size else 1.0
    return scale if scale > 0 and math.isfinite(scale) else 1.0


@torch.no_grad()
def shortest_paths(
    processor: Processor,
    weight_encoder: WeightEncoder,
    num_nodes: int,
    senders: np.ndarray,
    receivers: np.ndarray,
    weights: np.ndarray,
    sources: np.ndarray | list[int],
    *,
    batch_size: int = 16,
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Neural single-source shortest paths from each of ``sources`` on one graph.

    Returns ``distance`` [S, N] (``inf`` unreachable), ``predecessor`` [S, N] (the source
    and unreachable nodes point to themselves) and the steps each batch took.
    """
    sources = np.asarray(sources, dtype=np.int64).reshape(-1)
    scale = weight_scale(weights)
    edge_index = torch.from_numpy(np.stack([senders, receivers]).astype(np.int64))
    edge_latent = weight_encoder(
        torch.from_numpy(np.asarray(weights, np.float64) / scale).float()
    )  # [E, H]
    distances, predecessors, steps = [], [], []
    receiver = edge_index[1]
    for start in range(0, len(sources), batch_size):
        chunk = torch.from_numpy(sources[start : start + batch_size])
        mask = torch.zeros(len(chunk), num_nodes, dtype=torch.bool)
        mask[torch.arange(len(chunk)), chunk] = True
        out = processor(processor.initial_state(mask), mask, edge_latent, edge_index)
        steps.append(out.steps)
        best = scatter_max(out.pointer_logits.unsqueeze(-1), receiver, num_nodes)  # [B, N, 1]
        is_best = out.pointer_logits == best.squeeze(-1)[:, receiver]  # [B, E]
        is_best &= torch.isfinite(out.pointer_logits)
        edge_ids = torch.arange(receiver.numel()).expand_as(is_best)
        first = torch.full((len(chunk), num_nodes), receiver.numel(), dtype=torch.long)
        first = first.scatter_reduce(
            1, receiver.expand_as(is_best), torch.where(is_best, edge_ids, receiver.numel()), "amin"
        )
        pointer = torch.arange(num_nodes).expand(len(chunk), -1).clone()
        has = first < receiver.numel()
        pointer[has] = edge_index[0][first[has]]
        pointer[~out.reached] = torch.arange(num_nodes).expand(len(chunk), -1)[~out.reached]
        pointer[torch.arange(len(chunk)), chunk] = chunk
        distance = out.distance.double() * scale
        distance[torch.arange(len(chunk)), chunk] = 0.0
        distances.append(distance.numpy())
        predecessors.append(pointer.numpy())
    return np.concatenate(distances), np.concatenate(predecessors), steps
