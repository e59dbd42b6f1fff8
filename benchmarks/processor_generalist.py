"""Out-of-distribution table of the learned multi-algorithm processor (issue 15), with the
exact tropical layer as the reference arm, per algorithm.

    PYTHONPATH=. python benchmarks/processor_generalist.py \
        [--generalist artifacts_shipped/generalist_processor] \
        [--processor artifacts_shipped/processor] [--sizes 16 64 128 256] \
        [--road-sizes 1000] [--osm ../shared/osm/*.osm.pbf] [--out-dir benchmarks/results]

Prints a table and writes ``<name>.json`` (with the git commit and command) and
``<name>.png`` into ``--out-dir`` (``--name``, default ``processor_generalist``). The four
real road graphs: ``--sizes --road-sizes --algorithms bellman bfs widest --osm
../shared/osm/*.osm.pbf --osm-sources 8 --name processor_generalist_osm`` and, N steps per
run, ``--algorithms dijkstra prim --osm-sources 2 --name
processor_generalist_osm_sequential``.

Per algorithm (Bellman-Ford, BFS hop count, widest path, Dijkstra, Prim) and suite: pointer
accuracy (fraction of nodes whose predecessor is right; with ties any predecessor on an
optimal path counts; Prim: any settled-tree edge of the node's key weight), value accuracy
(hops: exact; distances, widths and Prim keys: within 5% relative; over
reachable non-source nodes), path accuracy (reachable nodes whose pointer chain to the
source is all right) and whole-graph accuracy (runs with every pointer right). Suites:
CLRS-style ER graphs (p = 0.5) at n = 16 (the training size), 64, 128, 256 and road-like
graphs (grid / Delaunay) at 1,000 nodes (``--road-sizes 1000 5000`` adds 5,000: ~15 min of
one CPU core, as the learned processor runs ~2 x the hop eccentricity, ~250 steps). The
compounding of per-hop error on long road paths: Bellman-Ford and Dijkstra pointer and
path accuracy binned by the true shortest path's hop count.
The tropical arm runs Bellman-Ford as shipped (also the reference for Dijkstra: the same
shortest paths) and BFS with unit weights (hops are unit-weight distances); it has no
widest-path or Prim mode. Dijkstra and Prim run one step per settled node (N steps), so the
road suites cost ~N / (2 x eccentricity) times a Bellman-Ford run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from models.processor import generalist as gen
from models.processor.metrics import evaluate_algorithm_run, summarise_algorithm
from models.processor.model import load_pretrained, shortest_paths
from models.processor.synthetic import CLRS_TEST_P, erdos_renyi, road_like

REPO = Path(__file__).resolve().parents[1]
#: published pointer accuracies, CLRS-30 bellman_ford at n=64 (Ibarz et al. 2022, Table 2)
ANCHORS = {"MPNN (Ibarz et al. 2022)": 0.920, "Triplet-GMPNN (Ibarz et al. 2022)": 0.974}
HOP_BINS = (1, 6, 11, 21, 41, 81, 161, 10**9)
#: algorithms the tropical (min-plus) arm cannot run
NO_TROPICAL_MODE = ("widest", "prim")
#: shortest-path algorithms whose road accuracy is binned by the true path's hop count
HOP_ALGORITHMS = ("bellman", "dijkstra")


def suites(seed: int, sizes: list[int], road_sizes: list[int], osm: list[str] = (),
           osm_sources: int = 4) -> dict[str, tuple[int, list]]:
    """name -> (nominal size, [(graph, sources)]); ``osm``: real extracts, ingested here,
    run on their junction graphs with free-flow seconds as weights (``osm_sources``
    random origins each)."""
    rng = np.random.default_rng(seed)
    out: dict[str, tuple[int, list]] = {}
    counts = {16: 64, 64: 32, 128: 16, 256: 8}
    for n in sizes:
        graphs = [erdos_renyi(rng, n, CLRS_TEST_P) for _ in range(counts.get(n, 8))]
        out[f"ER n={n}"] = (n, [(g, [g.source]) for g in graphs])
    for n in road_sizes:
        graphs = [road_like(rng, n, family) for family in ("grid", "delaunay")]
        out[f"road-like n={n:,}"] = (
            n, [(g, rng.choice(g.num_nodes, 4, replace=False)) for g in graphs]
        )
    if osm:
        from processor import load_road_graphs, road_graph_suite  # benchmarks/processor.py

        for label, road in load_road_graphs([], list(osm)):
            name, n, items = road_graph_suite(road, label, seed, sources=osm_sources)
            out[name] = (n, items)
    return out


def _tree_hops(predecessor: np.ndarray) -> np.ndarray:
    """Hops from each node to the root of its predecessor tree (pointer jumping)."""
    nodes = np.arange(predecessor.size)
    depth = (predecessor != nodes).astype(np.int64)
    jump = predecessor.copy()
    for _ in range(int(np.ceil(np.log2(max(predecessor.size, 2)))) + 1):
        depth = depth + depth[jump]
        jump = jump[jump]
    return depth


def run_arm(arm, algorithm: str, items) -> tuple[dict, list]:
    """Evaluate one arm on one algorithm; returns (summary, [(hops, pointer ok, path ok)])."""
    spec = gen.ALGORITHMS[algorithm]
    runs, per_node, steps, began = [], [], [], time.monotonic()
    for graph, sources in items:
        weights = graph.weights if algorithm != "bfs" or arm[0] == "generalist" else (
            np.ones_like(graph.weights)
        )
        if arm[0] == "generalist":
            values, pointers, used = gen.execute(arm[1], algorithm, graph, sources)
        else:
            values, pointers, used = shortest_paths(
                arm[1], arm[2], graph.num_nodes, graph.senders, graph.receivers, weights, sources
            )
        steps.extend(used)
        for row, source in enumerate(sources):
            trace = spec.reference(graph.num_nodes, graph.senders, graph.receivers,
                                   graph.weights, int(source), with_hints=False)
            reachable = np.isfinite(trace.distance) if spec.minimise else (
                (trace.distance > 0) | (np.arange(graph.num_nodes) == source)
            )
            result = evaluate_algorithm_run(
                combine=spec.combine, integer_values=not spec.weighted,
                true_value=trace.distance, reachable=reachable, predicted_value=values[row],
                predicted_pointer=pointers[row], senders=graph.senders,
                receivers=graph.receivers, weights=graph.weights, source=int(source),
            )
            hops = _tree_hops(trace.predecessor)
            keep = reachable & (np.arange(graph.num_nodes) != source)
            per_node.append((hops[keep], result["node_pointer_correct"][keep],
                             result["node_path_correct"][keep]))
            runs.append(result)
    summary = summarise_algorithm(runs)
    summary["mean_steps"] = float(np.mean(steps))
    summary["seconds"] = round(time.monotonic() - began, 1)
    return summary, per_node


def hop_table(per_node: list) -> list[dict]:
    hops = np.concatenate([h for h, _, _ in per_node])
    pointer_ok = np.concatenate([p for _, p, _ in per_node])
    path_ok = np.concatenate([q for _, _, q in per_node])
    rows = []
    for low, high in zip(HOP_BINS[:-1], HOP_BINS[1:], strict=True):
        inside = (hops >= low) & (hops < high)
        if inside.any():
            rows.append({"hops": f"{low}-{high - 1}" if high < 10**9 else f">={low}",
                         "mean_hops": float(hops[inside].mean()), "nodes": int(inside.sum()),
                         "pointer_accuracy": float(pointer_ok[inside].mean()),
                         "path_accuracy": float(path_ok[inside].mean())})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generalist", default="artifacts_shipped/generalist_processor",
                        help="Generalist-processor artifact")
    parser.add_argument("--processor", default="artifacts_shipped/processor",
                        help="tropical Processor artifact (the reference arm)")
    parser.add_argument("--sizes", nargs="*", type=int, default=[16, 64, 128, 256])
    parser.add_argument("--road-sizes", nargs="*", type=int, default=[1000])
    parser.add_argument("--osm", nargs="*", default=[],
                        help="real OSM extracts to ingest and run on, e.g. ../shared/osm/*.pbf")
    parser.add_argument("--osm-sources", type=int, default=4,
                        help="random origins per OSM graph")
    parser.add_argument("--algorithms", nargs="*", default=None,
                        help="only these algorithms (default: all the artifact learned)")
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="processor_generalist",
                        help="stem of the JSON / PNG written into --out-dir")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--replot", type=Path, default=None,
                        help="only redraw the PNG beside an existing processor_generalist.json")
    args = parser.parse_args(argv)
    if args.replot is not None:
        plot(json.loads(args.replot.read_text()), args.replot.with_suffix(".png"))
        return 0
    from provenance import provenance  # benchmarks/, first on sys.path as a script

    stamp = provenance()  # at start: later writes of results files must not mark it dirty
    torch.set_num_threads(args.threads)
    model, manifest = gen.load(args.generalist)
    processor, encoder, _ = load_pretrained(args.processor)
    arms = {"generalist": ("generalist", model), "tropical": ("tropical", processor, encoder)}
    all_suites = suites(args.seed, args.sizes, args.road_sizes, args.osm, args.osm_sources)
    results: dict = {}
    hop_nodes: dict[str, dict[str, list]] = {a: {} for a in HOP_ALGORITHMS}
    header = (f"{'algorithm':<9} {'suite':<20} {'arm':<11} {'pointer':>8} {'value':>8} "
              f"{'path':>8} {'graph':>7} {'steps':>6} {'s':>6}")
    print(header)
    print("-" * len(header))
    for algorithm in args.algorithms or model.config.algorithms:
        for suite, (_, items) in all_suites.items():
            for label, arm in arms.items():
                if label == "tropical" and algorithm in NO_TROPICAL_MODE:
                    continue
                summary, per_node = run_arm(arm, algorithm, items)
                results.setdefault(algorithm, {}).setdefault(label, {})[suite] = summary
                if algorithm in HOP_ALGORITHMS and suite.startswith("road"):  # OSM too
                    hop_nodes[algorithm].setdefault(label, []).extend(per_node)
                print(f"{algorithm:<9} {suite:<20} {label:<11} "
                      f"{summary['pointer_accuracy']:>8.2%} {summary['value_accuracy']:>8.2%} "
                      f"{summary['path_accuracy']:>8.2%} {summary['whole_graph_accuracy']:>7.1%} "
                      f"{summary['mean_steps']:>6.0f} {summary['seconds']:>6.1f}", flush=True)
    for name, value in ANCHORS.items():
        print(f"anchor: bellman ER n=64 pointer accuracy, {name}: {value:.1%}")
    hops = {algorithm: {label: hop_table(nodes) for label, nodes in by_arm.items()}
            for algorithm, by_arm in hop_nodes.items()}
    print("\nroad graphs, by hops of the true shortest path")
    print(f"{'algorithm':<9} {'arm':<11} {'hops':<8} {'nodes':>7} {'pointer':>8} {'path':>8}")
    for algorithm, by_arm in hops.items():
        for label, rows in by_arm.items():
            for row in rows:
                print(f"{algorithm:<9} {label:<11} {row['hops']:<8} {row['nodes']:>7} "
                      f"{row['pointer_accuracy']:>8.2%} {row['path_accuracy']:>8.2%}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    payload = {**stamp, "generalist": {"config": manifest.get("config"),
                                              "training": manifest.get("training")},
               "anchors_bellman_er64_pointer": ANCHORS,
               "sizes": {s: n for s, (n, _) in all_suites.items()},
               "results": results,
               **{f"{a}_road_by_hops": rows for a, rows in hops.items() if rows}}
    json_path = args.out_dir / f"{args.name}.json"
    json_path.write_text(json.dumps(payload, indent=2))
    plot(payload, json_path.with_suffix(".png"))
    print(f"wrote {json_path} and {json_path.with_suffix('.png')}")
    return 0


def plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = payload["sizes"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for index, (algorithm, by_arm) in enumerate(payload["results"].items()):
        for label, by_suite in by_arm.items():
            points = sorted((sizes[s], r["pointer_accuracy"]) for s, r in by_suite.items())
            xs, ys = zip(*points, strict=True)
            left.plot(xs, ys, marker="o" if label == "generalist" else "s",
                      ls="-" if label == "generalist" else "--", color=f"C{index}",
                      label=f"{algorithm} ({label})")
    for (name, value), marker in zip(ANCHORS.items(), ("v", "^"), strict=True):
        left.scatter([64], [value], marker=marker, color="black", zorder=5, label=name)
    left.set_xscale("log")
    left.set_xlabel("nodes (ER <= 256, road-like beyond)")
    left.set_ylabel("pointer accuracy")
    left.set_title("trained at n <= 16")
    left.legend(fontsize=6)
    curves = [(f"{algorithm} {label}", rows) for algorithm in HOP_ALGORITHMS
              for label, rows in payload.get(f"{algorithm}_road_by_hops", {}).items()]
    for index, (label, rows) in enumerate(curves):
        hops = [r["mean_hops"] for r in rows]
        right.plot(hops, [r["path_accuracy"] for r in rows], marker="o", color=f"C{index}",
                   label=f"{label}: path")
        right.plot(hops, [r["pointer_accuracy"] for r in rows], marker="x", ls=":",
                   color=f"C{index}", label=f"{label}: pointer")
    right.set_xscale("log")
    right.set_xlabel("hops of the true shortest path")
    right.set_ylabel("accuracy")
    right.set_title("shortest paths on road graphs")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
