"""``nareta pretrain``: hint-supervised training of the shortest-path processor on small
synthetic graphs (n <= 64), then a quick out-of-distribution check, then the Processor
artifact (safetensors weights + manifest with config, data spec, seed and metrics).

Supervision (CLRS style): after every step ``t`` the decoded distances are compared with
Bellman-Ford's distances after round ``t`` and the pointer scores with the best relaxation
at that state (several targets where tied); the run lasts the trace length plus one step,
so the model also learns that a converged state stays put. Graphs of a batch form one
disjoint union, each with its weights divided by its own mean weight.

Training is seeded: graph batch ``i`` is drawn from ``default_rng([seed, i])``, so a run
resumed from a checkpoint sees exactly the batches a run without interruption would.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.processor import model as proc
from models.processor.algorithms import bellman_ford, exact_distances
from models.processor.metrics import evaluate_run, summarise
from models.processor.synthetic import CLRS_TRAIN_P, Graph, erdos_renyi, road_like, training_graph
from nareta.artifacts import atomic_artifact_dir, check_output_dir, write_manifest
from nareta.errors import InputError

DEFAULT_OUT = "artifacts_shipped/processor"
#: the bundled extract, evaluated after training (real roads, free-flow weights)
BUNDLED_OSM = Path(__file__).resolve().parents[2] / "data" / "osm" / "baltimore.osm.pbf"


@dataclass(frozen=True)
class TrainConfig:
    """What ``nareta pretrain`` trains on and for how long (stored in the manifest)."""

    seed: int = 0
    iterations: int = 1500
    batch_graphs: int = 8
    min_nodes: int = 8
    max_nodes: int = 64
    road_fraction: float = 0.5
    learning_rate: float = 3e-3
    pointer_weight: float = 1.0
    checkpoint_every: int = 50


@dataclass
class Batch:
    num_nodes: int
    edge_index: torch.Tensor  # [2, E]
    weights: torch.Tensor  # [E] normalised per graph
    source_mask: torch.Tensor  # [1, N]
    hint_distance: torch.Tensor  # [T+1, N] normalised, inf unreached
    num_steps: int


def make_batch(rng: np.random.Generator, config: TrainConfig) -> Batch:
    graphs = [
        training_graph(
            rng,
            min_nodes=config.min_nodes,
            max_nodes=config.max_nodes,
            road_fraction=config.road_fraction,
        )
        for _ in range(config.batch_graphs)
    ]
    traces = [
        bellman_ford(g.num_nodes, g.senders, g.receivers, g.weights, g.source) for g in graphs
    ]
    steps = max(t.num_rounds for t in traces) + 1
    offset, senders, receivers, weights, sources, hints = 0, [], [], [], [], []
    for graph, trace in zip(graphs, traces, strict=True):
        scale = proc.weight_scale(graph.weights)
        senders.append(graph.senders + offset)
        receivers.append(graph.receivers + offset)
        weights.append(graph.weights / scale)
        sources.append(graph.source + offset)
        rows = np.arange(steps + 1).clip(max=trace.num_rounds)
        hints.append(trace.hint_distance[rows] / scale)  # [T+1, n]
        offset += graph.num_nodes
    mask = torch.zeros(1, offset, dtype=torch.bool)
    mask[0, sources] = True
    return Batch(
        num_nodes=offset,
        edge_index=torch.from_numpy(np.stack([np.concatenate(senders), np.concatenate(receivers)])),
        weights=torch.from_numpy(np.concatenate(weights)).float(),
        source_mask=mask,
        hint_distance=torch.from_numpy(np.concatenate(hints, axis=1)).float(),
        num_steps=steps,
    )


def pointer_targets(distance: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges achieving the best relaxation ``d_u + w_uv`` into each node at one state
    (``[E]`` bool) and the nodes that have a target (``[N]`` bool, sources excluded)."""
    sender, receiver = batch.edge_index
    candidate = distance[sender] + batch.weights  # [E], inf from unreached senders
    best = torch.full((batch.num_nodes,), float("inf")).scatter_reduce(
        0, receiver, candidate, "amin"
    )
    finite = torch.isfinite(candidate)
    tight = finite & (candidate <= best[receiver] * (1 + 1e-6) + 1e-9)
    has = torch.isfinite(best) & ~batch.source_mask[0]
    return tight & has[receiver], has


def batch_loss(
    processor: proc.Processor, encoder: proc.WeightEncoder, batch: Batch, config: TrainConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    edge_latent = encoder(batch.weights)  # [E, H]
    out = processor(
        processor.initial_state(batch.source_mask),
        batch.source_mask,
        edge_latent,
        batch.edge_index,
        num_steps=batch.num_steps,
        keep_step_outputs=True,
    )
    receiver = batch.edge_index[1]
    distance_terms, pointer_terms = [], []
    for t, (pred, logits) in enumerate(
        zip(out.step_distances, out.step_pointer_logits, strict=True)
    ):
        truth = batch.hint_distance[t]  # [N]
        known = torch.isfinite(truth) & torch.isfinite(pred[0])
        error = (pred[0][known] - truth[known]) / (1.0 + truth[known])
        distance_terms.append((error**2).mean())
        tight, has = pointer_targets(truth, batch)
        if has.any():
            all_lse = proc.segment_logsumexp(logits, receiver, batch.num_nodes)[0]
            tight_logits = logits.masked_fill(~tight.unsqueeze(0), float("-inf"))
            tight_lse = proc.segment_logsumexp(tight_logits, receiver, batch.num_nodes)[0]
            pointer_terms.append((all_lse[has] - tight_lse[has]).mean())
    distance_loss = torch.stack(distance_terms).mean()
    pointer_loss = torch.stack(pointer_terms).mean()
    loss = distance_loss + config.pointer_weight * pointer_loss
    return loss, {"distance": distance_loss.item(), "pointer": pointer_loss.item()}


def quick_evaluation(
    processor: proc.Processor,
    encoder: proc.WeightEncoder,
    *,
    seed: int,
    osm_files: Sequence[Path] = (),
    road_sources: int = 20,
) -> dict[str, dict[str, float]]:
    """Held-out check stored in the manifest (the full table: benchmarks/processor.py):
    ER n=64, road-like n=1,000 and each OSM extract (ingested here, free-flow seconds as
    weights, ``road_sources`` random origins)."""
    rng = np.random.default_rng([seed, 10**6])
    suites: dict[str, list[tuple[Graph, np.ndarray]]] = {
        "er_n64": [
            (g, np.array([g.source])) for g in (erdos_renyi(rng, 64, 0.5) for _ in range(8))
        ],
        "road_n1000": [(g, np.array([g.source])) for g in (road_like(rng, 1000) for _ in range(2))],
    }
    if osm_files:
        from data_pipeline.ingest import ingest_osm

        for path in osm_files:
            road = ingest_osm(path).graph
            graph = Graph(
                road.num_nodes,
                road["edge_source"].astype(np.int64),
                road["edge_target"].astype(np.int64),
                road["free_flow_s"].astype(np.float64),
                0,
            )
            sources = rng.choice(road.num_nodes, min(road_sources, road.num_nodes), replace=False)
            suites[f"osm_{Path(path).name.split('.')[0]}_n{road.num_nodes}"] = [(graph, sources)]
    results = {}
    for name, items in suites.items():
        runs = []
        for g, sources in items:
            distance, pointer, _ = proc.shortest_paths(
                processor, encoder, g.num_nodes, g.senders, g.receivers, g.weights, sources
            )
            truth = exact_distances(g.num_nodes, g.senders, g.receivers, g.weights, sources)
            for row, source in enumerate(sources):
                runs.append(
                    evaluate_run(
                        truth[row],
                        distance[row],
                        pointer[row],
                        g.senders,
                        g.receivers,
                        g.weights,
                        int(source),
                    )
                )
        results[name] = {k: round(float(v), 5) for k, v in summarise(runs).items()}
    return results


def _resume(checkpoint: Path, configs: list[dict], modules: dict[str, Any]
            ) -> tuple[int, float, list[float]]:
    """Load a training checkpoint into ``modules`` (processor, encoder, optimiser,
    schedule) and the torch RNG; (next iteration, seconds spent, loss history)."""
    state = torch.load(checkpoint, weights_only=True)
    if state["configs"] != configs:
        raise InputError(
            f"checkpoint {checkpoint}: made with other settings; delete it "
            "or pass the same options"
        )
    for name, module in modules.items():
        module.load_state_dict(state[name])
    torch.set_rng_state(state["torch_rng"])
    return state["iteration"], state["elapsed_s"], state["history"]


def _save_checkpoint(checkpoint: Path, configs: list[dict], modules: dict[str, Any], *,
                     iteration: int, elapsed_s: float, history: list[float]) -> None:
    """Everything :func:`_resume` needs, written to a temporary file and renamed."""
    tmp = checkpoint.with_suffix(".tmp")
    torch.save(
        {
            "configs": configs,
            **{name: module.state_dict() for name, module in modules.items()},
            "iteration": iteration,
            "elapsed_s": elapsed_s,
            "history": history,
            "torch_rng": torch.get_rng_state(),
        },
        tmp,
    )
    tmp.replace(checkpoint)


def _manifest_extra(processor_config: proc.ProcessorConfig, train_config: TrainConfig, *,
                    metrics: dict[str, Any]) -> dict[str, Any]:
    """The Processor manifest's config, training settings, data spec and metrics."""
    return {
        "config": dataclasses.asdict(processor_config),
        "training": dataclasses.asdict(train_config),
        "training_data": {
            "samplers": [
                "models.processor.synthetic.erdos_renyi (CLRS bellman_ford)",
                "models.processor.synthetic.road_like (grid, delaunay, corridor)",
            ],
            "clrs_p_choices": list(CLRS_TRAIN_P),
            "nodes": [train_config.min_nodes, train_config.max_nodes],
            "road_fraction": train_config.road_fraction,
            "graphs_seen": train_config.iterations * train_config.batch_graphs,
        },
        "metrics": metrics,
    }


def _fresh_modules(processor_config: proc.ProcessorConfig, train_config: TrainConfig
                   ) -> dict[str, Any]:
    """A new processor and weight encoder, their Adam optimiser and its cosine schedule."""
    processor = proc.Processor(processor_config)
    encoder = proc.WeightEncoder(processor_config.hidden, bias=processor_config.layer != "tropical")
    parameters = list(processor.parameters()) + list(encoder.parameters())
    optimiser = torch.optim.Adam(parameters, lr=train_config.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, train_config.iterations)
    return {"processor": processor, "encoder": encoder, "optimiser": optimiser,
            "schedule": schedule}


def pretrain(
    out_dir: str | Path,
    *,
    processor_config: proc.ProcessorConfig,
    train_config: TrainConfig,
    checkpoint: Path | None = None,
    force: bool = False,
    progress: bool = True,
    evaluate: bool = True,
    eval_osm: Sequence[Path] = (),
) -> dict[str, Any]:
    """Train, evaluate and write the Processor artifact; returns its manifest."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    check_output_dir(out_dir, force=force)
    torch.manual_seed(train_config.seed)
    modules = _fresh_modules(processor_config, train_config)
    processor, encoder = modules["processor"], modules["encoder"]
    optimiser, schedule = modules["optimiser"], modules["schedule"]
    parameters = list(processor.parameters()) + list(encoder.parameters())
    configs = [dataclasses.asdict(processor_config), dataclasses.asdict(train_config)]
    start, elapsed, history = 0, 0.0, []
    if checkpoint is not None and checkpoint.is_file():
        start, elapsed, history = _resume(checkpoint, configs, modules)
    began = time.monotonic() - elapsed
    bar = tqdm(
        range(start, train_config.iterations),
        initial=start,
        total=train_config.iterations,
        disable=not progress,
        desc="pretrain",
    )
    for iteration in bar:
        batch = make_batch(np.random.default_rng([train_config.seed, iteration]), train_config)
        loss, parts = batch_loss(processor, encoder, batch, train_config)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimiser.step()
        schedule.step()
        history.append(loss.item())
        bar.set_postfix(
            loss=f"{history[-1]:.4f}",
            dist=f"{parts['distance']:.4f}",
            ptr=f"{parts['pointer']:.4f}",
            steps=batch.num_steps,
        )
        done = iteration + 1
        if checkpoint is not None and (
            done % train_config.checkpoint_every == 0 or done == train_config.iterations
        ):
            _save_checkpoint(checkpoint, configs, modules, iteration=done,
                             elapsed_s=time.monotonic() - began, history=history)
    train_seconds = time.monotonic() - began
    processor.freeze()
    encoder.requires_grad_(False).eval()
    metrics = (
        quick_evaluation(processor, encoder, seed=train_config.seed, osm_files=eval_osm)
        if evaluate
        else {}
    )
    extra = _manifest_extra(processor_config, train_config, metrics={
        "final_loss_mean_last_50": float(np.mean(history[-50:])),
        "train_seconds": round(train_seconds, 1),
        **metrics,
    })
    with atomic_artifact_dir(out_dir, force=force) as staging:
        proc.save_weights(staging / proc.WEIGHTS_FILE, encoder, processor)
        manifest = write_manifest(
            staging,
            kind=proc.KIND,
            schema_version=proc.SCHEMA_VERSION,
            seed=train_config.seed,
            extra=extra,
        )
    if checkpoint is not None:  # the artifact now holds the result; a stale checkpoint
        checkpoint.unlink(missing_ok=True)  # must not be resumed by a later run
    return manifest


# --------------------------------------------------------------------------- CLI
def configure_parser(parser: argparse.ArgumentParser) -> None:
    defaults, model = TrainConfig(), proc.ProcessorConfig()
    parser.add_argument(
        "--out", default=DEFAULT_OUT, help=f"artifact directory to write (default: {DEFAULT_OUT})"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    parser.add_argument("--layer", choices=("tropical", "mpnn"), default=model.layer)
    parser.add_argument("--hidden", type=int, default=model.hidden)
    parser.add_argument(
        "--learned-sender-map",
        action="store_true",
        help="tropical layer: learn A (rows summing to one) instead of A = I",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--iterations", type=int, default=defaults.iterations)
    parser.add_argument("--batch-graphs", type=int, default=defaults.batch_graphs)
    parser.add_argument("--max-nodes", type=int, default=defaults.max_nodes)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="resumable checkpoint file (default: <out>.ckpt.pt); resumed "
        "automatically when it exists",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--eval-osm",
        nargs="*",
        type=Path,
        default=[BUNDLED_OSM] if BUNDLED_OSM.is_file() else [],
        help="OSM extracts to evaluate on after training, recorded in the manifest "
        "(default: the bundled Baltimore extract; pass no files to skip)",
    )


def run(args: argparse.Namespace) -> int:
    if args.iterations < 1 or args.batch_graphs < 1 or args.hidden < 1:
        raise InputError("--iterations, --batch-graphs and --hidden must be positive")
    if not 2 <= args.max_nodes <= 64:
        raise InputError(
            "--max-nodes must lie in [2, 64]: the processor is pretrained on small graphs only"
        )
    missing = [str(path) for path in args.eval_osm if not Path(path).is_file()]
    if missing:
        raise InputError(f"--eval-osm: no such file: {', '.join(missing)}")
    torch.set_num_threads(args.threads)
    train_config = dataclasses.replace(
        TrainConfig(),
        seed=args.seed,
        iterations=args.iterations,
        batch_graphs=args.batch_graphs,
        max_nodes=args.max_nodes,
        learning_rate=args.learning_rate,
    )
    model_config = proc.ProcessorConfig(
        layer=args.layer, hidden=args.hidden, learned_sender_map=args.learned_sender_map
    )
    checkpoint = args.checkpoint or Path(f"{str(args.out).rstrip('/')}.ckpt.pt")
    manifest = pretrain(
        args.out,
        processor_config=model_config,
        train_config=train_config,
        checkpoint=checkpoint,
        force=args.force,
        progress=not args.no_progress,
        eval_osm=args.eval_osm,
    )
    print(f"wrote {args.out}: {proc.describe(manifest)}")
    return 0
