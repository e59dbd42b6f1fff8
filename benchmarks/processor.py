"""Benchmark of the pretrained shortest-path processor, in and out of distribution.

    PYTHONPATH=. python benchmarks/processor.py [--processor DIR] [--compare LABEL=DIR ...]
        [--road-graph DIR ...] [--osm FILE ...] [--out-dir benchmarks/results]
    PYTHONPATH=. python benchmarks/processor.py learned [options of processor_generalist.py]

The second form is the learned multi-algorithm processor's per-algorithm
out-of-distribution table with the CLRS anchors (issue 15; benchmarks/processor_generalist.py,
which it runs with the options given).

Prints a table, writes ``processor.json`` and ``processor_accuracy.png`` (pointer accuracy
against graph size) into ``--out-dir``. Ground truth: scipy's Dijkstra.

Metrics (models/processor/metrics.py): pointer accuracy = fraction of nodes whose predicted
predecessor is right, where with ties a pointer counts as right if its edge lies on SOME
shortest path; path optimality = fraction of reachable nodes from which following predicted
pointers reaches the source along a shortest path; whole-graph accuracy = fraction of runs
with every pointer right; median relative distance error over reachable non-source nodes.

Suites: CLRS-style ER graphs (p = 0.5) with n = 16 (the training distribution's scale),
64, 128, 256; synthetic road-like graphs with n = 1,000 and 5,000; each real RoadGraph
given with ``--road-graph`` or ingested from ``--osm`` (free-flow seconds as weights, 50
random sources).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from models.processor.algorithms import exact_distances
from models.processor.metrics import evaluate_run, summarise
from models.processor.model import load_pretrained, shortest_paths
from models.processor.synthetic import CLRS_TEST_P, erdos_renyi, road_like

ANCHORS = (
    "anchors (pointer accuracy): CLRS-30 bellman_ford n=64: MPNN ~92%, Triplet-GMPNN 97.4% "
    "(Ibarz et al. 2022); SALSA-CLRS sparse n=1,600: standard processors 37-85% of nodes, "
    "DNAR 100% (Rodionov & Prokhorenkova 2025)"
)


def synthetic_suites(seed: int) -> dict[str, tuple[int, list]]:
    """name -> (nominal size, [(graph, sources)])."""
    rng = np.random.default_rng(seed)
    suites: dict[str, tuple[int, list]] = {}
    for n, count in ((16, 64), (64, 32), (128, 16), (256, 8)):
        graphs = [erdos_renyi(rng, n, CLRS_TEST_P) for _ in range(count)]
        suites[f"ER n={n}"] = (n, [(g, [g.source]) for g in graphs])
    for n, count, sources in ((1000, 6, 4), (5000, 2, 4)):
        graphs = [road_like(rng, n, family) for family in ("grid", "delaunay") * (count // 2)]
        suites[f"road-like n={n:,}"] = (
            n,
            [(g, rng.choice(g.num_nodes, sources, replace=False)) for g in graphs],
        )
    return suites


def road_graph_suite(road, label: str, seed: int, sources: int = 50):
    """A RoadGraph with free-flow seconds as weights and ``sources`` random origins."""
    from models.processor.synthetic import Graph

    graph = Graph(
        road.num_nodes,
        road["edge_source"].astype(np.int64),
        road["edge_target"].astype(np.int64),
        road["free_flow_s"].astype(np.float64),
        0,
    )
    rng = np.random.default_rng(seed)
    picked = rng.choice(road.num_nodes, min(sources, road.num_nodes), replace=False)
    return f"road {label} (n={road.num_nodes:,})", road.num_nodes, [(graph, picked)]


def load_road_graphs(artifacts: list[str], osm_files: list[str]):
    """(label, RoadGraph) for each RoadGraph artifact and each OSM file (ingested here)."""
    from data_pipeline.road_graph import RoadGraph

    roads = [(Path(d).name, RoadGraph.load(d)) for d in artifacts]
    if osm_files:
        from data_pipeline.ingest import ingest_osm

        for path in osm_files:
            roads.append((Path(path).name.split(".")[0], ingest_osm(path).graph))
    return roads


def evaluate(model, items) -> dict[str, float]:
    processor, encoder = model
    runs, steps, began = [], [], time.monotonic()
    for graph, sources in items:
        distance, pointer, used = shortest_paths(
            processor,
            encoder,
            graph.num_nodes,
            graph.senders,
            graph.receivers,
            graph.weights,
            sources,
        )
        truth = exact_distances(
            graph.num_nodes, graph.senders, graph.receivers, graph.weights, sources
        )
        steps.extend(used)
        for row, source in enumerate(sources):
            runs.append(
                evaluate_run(
                    truth[row],
                    distance[row],
                    pointer[row],
                    graph.senders,
                    graph.receivers,
                    graph.weights,
                    int(source),
                )
            )
    result = summarise(runs)
    result["mean_steps"] = float(np.mean(steps))
    result["seconds"] = round(time.monotonic() - began, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["learned"]:  # the learned processor's per-algorithm table
        import processor_generalist

        return processor_generalist.main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processor", default="artifacts_shipped/processor")
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="LABEL=DIR",
        help="another Processor artifact to put beside it (repeatable)",
    )
    parser.add_argument(
        "--road-graph",
        action="append",
        default=[],
        help="RoadGraph artifact directory (repeatable)",
    )
    parser.add_argument(
        "--osm",
        nargs="*",
        default=[],
        help="OSM extracts to ingest and evaluate, e.g. ../shared/osm/*.osm.pbf",
    )
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--replot",
        type=Path,
        default=None,
        help="only redraw the PNG from an existing processor.json",
    )
    args = parser.parse_args(argv)
    if args.replot is not None:
        payload = json.loads(args.replot.read_text())
        plot(payload["results"], payload["sizes"], args.replot.with_name("processor_accuracy.png"))
        return 0
    torch.set_num_threads(args.threads)
    models = {"processor": load_pretrained(args.processor)[:2]}
    for item in args.compare:
        label, _, directory = item.partition("=")
        models[label] = load_pretrained(directory)[:2]
    suites = {} if args.skip_synthetic else synthetic_suites(args.seed)
    for label, road in load_road_graphs(args.road_graph, args.osm):
        name, n, items = road_graph_suite(road, label, args.seed)
        suites[name] = (n, items)
    results: dict[str, dict[str, dict[str, float]]] = {m: {} for m in models}
    header = (
        f"{'suite':<34} {'model':<12} {'pointer':>8} {'path-opt':>8} {'graph':>7} "
        f"{'med.rel.err':>11} {'steps':>6} {'s':>6}"
    )
    print(header)
    print("-" * len(header))
    for suite, (_, items) in suites.items():
        for label, model in models.items():
            r = evaluate(model, items)
            results[label][suite] = r
            print(
                f"{suite:<34} {label:<12} {r['pointer_accuracy']:>8.2%} "
                f"{r['path_optimality']:>8.2%} {r['whole_graph_accuracy']:>7.1%} "
                f"{r['median_relative_distance_error']:>11.2e} {r['mean_steps']:>6.0f} "
                f"{r['seconds']:>6.1f}",
                flush=True,
            )
    print(ANCHORS)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    sizes = {suite: n for suite, (n, _) in suites.items()}
    from provenance import provenance

    payload = {**provenance(), "argv": sys.argv, "anchors": ANCHORS, "sizes": sizes,
               "results": results}
    (args.out_dir / "processor.json").write_text(json.dumps(payload, indent=2))
    plot(results, sizes, args.out_dir / "processor_accuracy.png")
    print(f"wrote {args.out_dir / 'processor.json'} and {args.out_dir / 'processor_accuracy.png'}")
    return 0


def plot(results, sizes, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    families = (("ER", "o", "-"), ("road-like", "s", "--"), ("road ", "^", ":"))
    for index, (label, by_suite) in enumerate(results.items()):
        color = f"C{index}"
        for family, marker, style in families:
            points = sorted(
                (sizes[s], r["pointer_accuracy"])
                for s, r in by_suite.items()
                if s.startswith(family)
            )
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(
                    xs, ys, marker=marker, ls=style, color=color, label=f"{label}: {family.strip()}"
                )
    ax.axhline(0.974, color="grey", ls=":", lw=1, label="Triplet-GMPNN, ER n=64")
    ax.set_xscale("log")
    ax.set_xlabel("nodes")
    ax.set_ylabel("pointer accuracy")
    ax.set_title("Shortest-path processor, trained on n <= 64")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
