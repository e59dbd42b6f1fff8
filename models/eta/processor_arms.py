r"""The processor ablation's arms (issue 15): the same encoder f̃, features, corridors and
loss as the shipped ETA model (:mod:`models.eta.model`, :mod:`models.eta.train`), with only
the frozen processor between the encoder and the read-out swapped.

* ``tropical`` (the shipped model, :class:`models.eta.model.EtaModel` itself): the exact
  min-plus layer over 16 latent cost channels, a linear read-out;
* ``learned``: the pretrained generalist processor (:mod:`models.processor.generalist`,
  a max-aggregation MPNN with learned message functions, hidden 128), frozen. The encoder's
  edge time goes through the processor's own frozen Bellman-Ford edge encoder, plus a learned
  residual in its 128-d latent (zero at the start); the source flag through its frozen node
  encoder; the processor runs ``ceil(hop_factor * hops) + extra_steps`` steps from the root
  (``hops``: the root's hop eccentricity in the corridor); the decoder is the Bellman-Ford
  value head (trainable, initialised from the pretrained one). Untrained, the model is
  "Bellman-Ford on the encoder's free-flow times, as the processor learned to execute it";
* ``random``: the same architecture at random, untrained weights (a genuinely different
  function; :func:`processor_gap` measures how far it is from the learned one), frozen;
* ``none``: no processor: the encoder's scalar edge times, an exact shortest path (min-plus
  relaxation to its fixed point, differentiable through the chosen edges) and one learned
  log-scale as the read-out.

The ``learned`` and ``random`` arms cannot run on the contraction hierarchy the service uses
(their step is not a min-plus recursion): every arm is evaluated on the trips' corridors
(:func:`models.eta.train.predict_frame`), the same way for all four.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from data_pipeline.road_graph import RoadGraph
from models.eta.model import EtaConfig, EtaModel, RoadEncoder
from models.processor.generalist import GeneralistConfig, GeneralistProcessor, hop_eccentricity
from models.processor.model import propagate_reached

ARMS = ("learned", "random", "tropical", "none")


class GeneralistArm(nn.Module):
    """A frozen :class:`GeneralistProcessor` run as the ETA model's processor, with a
    trainable value read-out (see the module docstring)."""

    def __init__(self, processor: GeneralistProcessor, *, algorithm: str = "bellman",
                 hop_factor: float = 1.5, extra_steps: int = 2) -> None:
        super().__init__()
        self.processor = processor.requires_grad_(False).eval()
        self.algorithm, self.hop_factor, self.extra_steps = algorithm, hop_factor, extra_steps
        self.heads = processor.heads[algorithm]
        self.readout = copy.deepcopy(self.heads.value).requires_grad_(True)
        self.residual_width = processor.config.hidden

    def train(self, mode: bool = True) -> GeneralistArm:
        super().train(mode)
        self.processor.eval()
        return self

    def edge_inputs(self, weight: Tensor, residual: Tensor | None) -> Tensor:
        """``[K, H]``: the frozen edge encoder of the (mean-normalised) edge time, plus the
        encoder's residual."""
        base = self.heads.encode_edges(weight)
        return base if residual is None else base + residual

    def steps(self, source_mask: Tensor, edge_index: Tensor) -> int:
        hops = hop_eccentricity(source_mask, edge_index)
        return int(math.ceil(self.hop_factor * hops)) + self.extra_steps

    def forward(self, source_mask: Tensor, edge_latent: Tensor, edge_index: Tensor
                ) -> tuple[Tensor, Tensor]:
        """``(normalised times [B, N], reached [B, N])`` after :meth:`steps` steps."""
        layer = self.processor.layer
        x = self.heads.node(source_mask.float().unsqueeze(-1))  # [B, N, H]
        h = torch.zeros_like(x)
        reached = source_mask.bool()
        edge_term = layer.edge(edge_latent)  # [E, H], the same every step
        for _ in range(self.steps(source_mask, edge_index)):
            h = layer.step(h, x, reached, edge_term, edge_index)
            reached = propagate_reached(reached, edge_index)
        times = self.readout(torch.cat([x, h], -1)).squeeze(-1)
        return times, reached


class LogScale(nn.Module):
    """The exact arm's read-out: one learned log-scale (init 0: times as the encoder's)."""

    def __init__(self) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(()))

    def forward(self, distance: Tensor) -> Tensor:
        return distance * torch.exp(self.log_scale)


class ExactArm(nn.Module):
    """No processor: exact shortest paths on the encoder's scalar edge times, scaled by one
    learned factor (init 1)."""

    residual_width = 0

    def __init__(self) -> None:
        super().__init__()
        self.readout = LogScale()

    def edge_inputs(self, weight: Tensor, residual: Tensor | None) -> Tensor:
        return weight.unsqueeze(-1)  # [K, 1]

    def forward(self, source_mask: Tensor, edge_latent: Tensor, edge_index: Tensor
                ) -> tuple[Tensor, Tensor]:
        sender, receiver = edge_index
        weight = edge_latent[:, 0]
        distance = torch.full(source_mask.shape, math.inf, dtype=edge_latent.dtype).masked_fill(
            source_mask, 0.0)
        index = receiver.expand(source_mask.shape[0], -1)
        for _ in range(source_mask.shape[1]):  # min-plus relaxation to its fixed point
            candidate = distance[:, sender] + weight
            relaxed = distance.scatter_reduce(1, index, candidate, "amin", include_self=True)
            if torch.equal(relaxed, distance):
                break
            distance = relaxed
        reached = torch.isfinite(distance)
        # unreached entries to 0 first: inf * scale would send 0 * inf = nan to the scale
        return self.readout(torch.where(reached, distance, 0.0)), reached


class ArmEtaModel(EtaModel):
    """:class:`EtaModel` with another frozen processor arm between encoder and read-out.
    The tropical processor stays loaded (its weight encoder is unused) so that the
    artifact-facing parts (scaler, time scale, corridors) are the shipped model's."""

    name = "nar_eta_arm"

    def __init__(self, graph: RoadGraph, processor, weight_encoder, processor_manifest, *,
                 arm: nn.Module, config: EtaConfig | None = None, **kwargs) -> None:
        config = config or EtaConfig()
        super().__init__(graph, processor, weight_encoder, processor_manifest, config=config,
                         **kwargs)
        self.arm = arm
        # the residual's width is the arm's latent (none for the exact arm)
        arm_config = EtaConfig(**{**config.__dict__, "residual": arm.residual_width > 0})
        self.encoder = RoadEncoder(self.segment_x.shape[1], self.turn_x.shape[1],
                                   max(arm.residual_width, 1), arm_config)
        self.decoder = arm.readout

    def train(self, mode: bool = True) -> ArmEtaModel:
        super().train(mode)
        if isinstance(self.arm, GeneralistArm):
            self.arm.processor.eval()
        return self

    @property
    def supports_channel_search(self) -> bool:
        return False

    @property
    def supports_targets(self) -> bool:
        return False

    @property
    def targets_are_cheap(self) -> bool:
        return False

    def _edge_latent(self, weight: Tensor, residual: Tensor | None) -> Tensor:
        return self.arm.edge_inputs(weight, residual)

    def run(self, roots: Tensor, edge_latent: Tensor, edge_index: Tensor, num_keys: int,
            *, source_mask: Tensor | None = None, pointers: bool = False
            ) -> tuple[Tensor, Tensor, Tensor | None]:
        if source_mask is None:
            source_mask = torch.zeros(len(roots), num_keys, dtype=torch.bool)
            source_mask[torch.arange(len(roots)), roots] = True
        times, reached = self.arm(source_mask, edge_latent, edge_index)
        times = times.masked_fill(~reached, math.inf).masked_fill(source_mask, 0.0)
        return times, reached, None


def random_generalist(config: GeneralistConfig, seed: int) -> GeneralistProcessor:
    """The learned arm's architecture at random (PyTorch default) initialisation."""
    torch.manual_seed(seed)
    return GeneralistProcessor(config).requires_grad_(False).eval()


def arm_factory(arm: str, generalist: GeneralistProcessor | None = None):
    """A ``model_factory`` for :func:`models.eta.train.fit_eta` building ``arm``'s model
    (``tropical``: the shipped :class:`EtaModel`)."""
    if arm == "tropical":
        return EtaModel
    if arm == "none":
        return lambda *args, **kwargs: ArmEtaModel(*args, arm=ExactArm(), **kwargs)
    if arm in ("learned", "random"):
        if generalist is None:
            raise ValueError(f"the {arm!r} arm needs a generalist processor")
        return lambda *args, **kwargs: ArmEtaModel(
            *args, arm=GeneralistArm(copy.deepcopy(generalist)), **kwargs)
    raise ValueError(f"unknown arm {arm!r}; known: {', '.join(ARMS)}")


def move_to_graph(model: EtaModel, graph: RoadGraph) -> EtaModel:
    """Zero-shot transfer: attach ``graph`` (the training scaler and time scale kept); the
    per-segment offsets, learned for the training graph's segments, are zero here."""
    model.attach(graph)
    model.segment_offset = nn.Parameter(torch.zeros(graph.num_segments), requires_grad=False)
    return model.eval()


@torch.no_grad()
def processor_gap(first: GeneralistProcessor, second: GeneralistProcessor, *,
                  seed: int = 0, nodes: int = 64) -> dict[str, float]:
    """How differently two generalist processors execute Bellman-Ford on one random graph:
    the mean relative difference of their decoded distances and the share of pointers on
    which they disagree."""
    import numpy as np

    from models.processor.generalist import execute
    from models.processor.synthetic import erdos_renyi

    graph = erdos_renyi(np.random.default_rng(seed), nodes)
    sources = np.arange(min(8, nodes))
    values_a, pointers_a, _ = execute(first, "bellman", graph, sources)
    values_b, pointers_b, _ = execute(second, "bellman", graph, sources)
    finite = np.isfinite(values_a) & np.isfinite(values_b) & (values_a > 0)
    relative = np.abs(values_a[finite] - values_b[finite]) / values_a[finite]
    return {"mean_relative_value_difference": float(relative.mean()) if finite.any() else 0.0,
            "pointer_disagreement": float((pointers_a != pointers_b).mean())}
