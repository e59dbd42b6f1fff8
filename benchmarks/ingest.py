"""Ingest benchmark: every extract in ../shared/osm, our whole ingest against osmnx's own
``graph_from_xml`` on the same data, each in a fresh process (time and peak RSS).

    python benchmarks/ingest.py [--osm-dir ../shared/osm] [--out benchmarks/results]

osmnx reads only OSM XML and fails on ways that reference nodes missing from the file, so it
gets the same extract converted to XML with those references removed (conversion not timed).
Targets (issue 2): our ingest within 2x of osmnx's time, peak memory under 1 GB.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _ours(path: str, queue: mp.Queue) -> None:
    from data_pipeline.ingest import ingest_osm

    started = time.perf_counter()
    graph = ingest_osm(path).graph
    with tempfile.TemporaryDirectory() as out:
        graph.save(Path(out) / "graph")  # the whole ingest includes writing the artifact
    seconds = time.perf_counter() - started
    queue.put(
        {
            "seconds": seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "nodes": graph.num_nodes,
            "segments": graph.num_segments,
            "turns": graph.num_turns,
        }
    )


def _osmnx(path: str, queue: mp.Queue) -> None:
    import osmnx as ox

    started = time.perf_counter()
    graph = ox.graph_from_xml(path)
    seconds = time.perf_counter() - started
    queue.put(
        {
            "seconds": seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "nodes": len(graph),
            "edges": graph.number_of_edges(),
        }
    )


def _in_fresh_process(target, path: Path) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(str(path), queue))
    process.start()
    result = queue.get(timeout=600)
    process.join()
    return result


def _to_xml_without_missing_refs(source: Path, target: Path) -> None:
    import osmium

    present = {node.id for node in osmium.FileProcessor(str(source), osmium.osm.NODE)}
    writer = osmium.SimpleWriter(str(target), overwrite=True)
    for obj in osmium.FileProcessor(str(source)):
        if obj.is_way():
            refs = [ref.ref for ref in obj.nodes if ref.ref in present]
            writer.add(obj.replace(nodes=refs))
        else:
            writer.add(obj)
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--osm-dir", type=Path, default=REPO.parent / "shared" / "osm")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for source in sorted(args.osm_dir.glob("*.osm.pbf")):
            xml = Path(scratch) / f"{source.stem}.osm"
            _to_xml_without_missing_refs(source, xml)
            ours = _in_fresh_process(_ours, source)
            theirs = _in_fresh_process(_osmnx, xml)
            rows.append(
                {
                    "file": source.name,
                    "nodes": ours["nodes"],
                    "segments": ours["segments"],
                    "turns": ours["turns"],
                    "seconds": round(ours["seconds"], 2),
                    "peak_rss_mb": round(ours["peak_rss_mb"]),
                    "osmnx_graph_from_xml_s": round(theirs["seconds"], 2),
                    "osmnx_peak_rss_mb": round(theirs["peak_rss_mb"]),
                    "ratio_to_osmnx": round(ours["seconds"] / theirs["seconds"], 2),
                }
            )
    header = (
        "file",
        "nodes",
        "segments",
        "turns",
        "seconds",
        "peak_rss_mb",
        "osmnx_graph_from_xml_s",
        "osmnx_peak_rss_mb",
        "ratio_to_osmnx",
    )
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in header]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(str(row[h]).ljust(w) for h, w in zip(header, widths, strict=True)))
    targets = {"ratio_to_osmnx_max": 2.0, "peak_rss_mb_max": 1024}
    met = all(r["ratio_to_osmnx"] <= 2.0 and r["peak_rss_mb"] < 1024 for r in rows)
    print(f"targets {targets}: {'met' if met else 'NOT met'}")
    from provenance import provenance

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ingest.json").write_text(
        json.dumps({**provenance(), "rows": rows, "targets": targets, "targets_met": met},
                   indent=2)
    )


if __name__ == "__main__":
    main()
