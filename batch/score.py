"""``nareta score``: score a table of OD pairs on Dask, Parquet out, resumable.

The client reads the table, loads the Predictor once (to check the artifacts and plan),
sorts the rows by (departure-time bucket, snapped origin segment, origin) and cuts them
into partitions of ``partition_rows``, so rows that share an origin share a partition and
one batched model run. Each partition is a Dask task on a worker whose Predictor was loaded
once (:mod:`batch.worker`); the client writes each result as it completes
(:mod:`batch.output`). ``workers=0`` scores in this process without Dask.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import hashlib
import json
import logging
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from batch.lock import hold_output_lock
from batch.output import PartitionedOutput, part_name
from batch.scoring import install_traffic, run_groups, score_frame
from batch.table import coordinates, departure_times, read_od_table
from models.inference.predictor import Predictor
from nareta.artifacts import library_versions, sha256_file
from nareta.defaults import resolve_artifacts, resolve_model
from nareta.errors import DepartureTimeError, InputError, NaretaError
from nareta.timeparse import parse_departure_time

PLAN_SCHEMA_VERSION = 1


@dataclass
class ScoreReport:
    output: Path
    rows: int
    partitions: int
    partitions_skipped: int  # already written by an earlier (resumed) run
    status_counts: dict[str, int]
    seconds: float
    cluster_start_s: float = 0.0
    scoring_s: float = 0.0  # from the first submission to the last part written
    timings: dict[str, float] = field(default_factory=dict)


def plan_partitions(predictor: Predictor, frame: pd.DataFrame, *,
                    default_departure_time: dt.datetime | None,
                    partition_rows: int) -> list[np.ndarray]:
    """Row indices of each partition: rows sorted by (time bucket, snapped origin segment,
    origin point) and cut every ``partition_rows``; invalid rows come first."""
    if partition_rows < 1:
        raise InputError(f"partition rows must be at least 1, not {partition_rows}")
    values, valid = coordinates(frame)
    times, bad_time = departure_times(frame, default_departure_time)
    bucket = np.full(len(frame), -1, dtype=np.int64)
    segment = np.full(len(frame), -1, dtype=np.int64)
    rows = np.flatnonzero(valid & ~bad_time)
    if rows.size:
        snaps = predictor.snapper.snap(values[rows, 0], values[rows, 1],
                                       max_distance_m=predictor.max_snap_distance_m)
        segment[rows] = snaps.segment
        bucket[rows] = run_groups(predictor, times, rows)
    order = np.lexsort((values[:, 1], values[:, 0], segment, bucket))
    return [order[start:start + partition_rows]
            for start in range(0, len(order), partition_rows)]


def _input_sha256(path: Path) -> str:
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path)}:{sha256_file(file)};".encode())
    return digest.hexdigest()


def _one_writer(function):
    """Run ``function(input_path, output_path, ...)`` holding ``output_path``'s single-writer
    lock (:mod:`batch.lock`): a second run on the same output, fresh or ``--resume``, is
    refused while this one is alive."""
    @functools.wraps(function)
    def locked(input_path, output_path, **options):
        with hold_output_lock(output_path):
            return function(input_path, output_path, **options)
    return locked


@_one_writer
def score_table(input_path: str | Path, output_path: str | Path, *, graph_dir: str | Path,
                model_dir: str | Path | None = None, scheduler: str | None = None,
                workers: int = 2, departure_time: str | dt.datetime | None = None,
                resume: bool = False, force: bool = False, partition_rows: int = 5000,
                origins_per_batch: int = 64, progress: bool | None = None,
                traffic: str | Path | None = None) -> ScoreReport:
    """Score every OD pair of ``input_path`` into the Parquet directory ``output_path``.

    Parameters
    ----------
    scheduler
        Address of a running Dask scheduler (``tcp://host:8786``); otherwise a
        ``LocalCluster`` of ``workers`` processes with one thread each is started.
    workers
        LocalCluster size; ``0`` scores in this process without Dask.
    departure_time
        Used for rows without one (ISO-8601 or epoch seconds); ``None``: the model's
        default bucket.
    resume, force
        Finish an interrupted job in ``output_path`` / replace ``output_path``.
    progress
        Show a progress bar (``None``: only on a terminal).
    traffic
        A traffic feed (file or directory) for a model that takes live traffic: loaded
        once here and once per worker (the same snapshot, checked by its key); rows get
        ``traffic_as_of`` and the manifest names the snapshot.
    """
    started = time.perf_counter()
    input_path, output_path = Path(input_path), Path(output_path)
    scheduler = scheduler or None
    departure_time = _default_departure(departure_time)
    if workers < 0:
        raise InputError(f"--workers must be 0 (no Dask) or more, not {workers}")
    graph_dir = str(Path(graph_dir).resolve())
    model_dir = resolve_model(model_dir)
    frame = read_od_table(input_path)
    predictor = Predictor.load(graph_dir, model_dir)  # fails fast on bad artifacts
    traffic_info = None if traffic is None else _install_feed(predictor, traffic)
    frame.insert(len(frame.columns), "input_row", np.arange(len(frame), dtype=np.int64))
    partitions = plan_partitions(predictor, frame, default_departure_time=departure_time,
                                 partition_rows=partition_rows)
    plan = _job_plan(input_path, frame, partitions, predictor, graph_dir=graph_dir,
                     model_dir=model_dir, departure_time=departure_time,
                     partition_rows=partition_rows, origins_per_batch=origins_per_batch,
                     traffic_info=traffic_info)
    created = not output_path.exists() or force
    output, done = PartitionedOutput.open(output_path, plan, resume=resume, force=force)
    pending = [i for i in range(len(partitions)) if i not in done]
    planned_s = time.perf_counter() - started

    bar = _progress_bar(sum(len(partitions[i]) for i in pending), progress)
    failures: list[tuple[int, BaseException]] = []
    try:
        with bar:
            cluster_start_s, scoring_s = _score_pending(
                frame, partitions, pending, output, bar, failures, predictor=predictor,
                scheduler=scheduler, workers=workers, graph_dir=graph_dir,
                model_dir=model_dir, departure_time=departure_time,
                origins_per_batch=origins_per_batch, traffic=traffic_info)
    except BaseException:
        if created and not any(output_path.glob("part-*.parquet")):
            shutil.rmtree(output_path, ignore_errors=True)  # nothing to resume: leave nothing
        raise
    if failures:
        index, error = failures[0]
        raise NaretaError(
            f"{len(failures)} of {len(pending)} partitions failed (partition {index}: "
            f"{type(error).__name__}: {error}); the finished ones are kept in {output_path}: "
            "rerun with --resume to finish")

    counts = output.status_counts()
    seconds = time.perf_counter() - started
    output.write_manifest(_scores_manifest(plan, partitions, counts, rows=len(frame),
                                           resumed=len(done), traffic_info=traffic_info,
                                           seconds=seconds))
    return ScoreReport(output=output_path, rows=len(frame), partitions=len(partitions),
                       partitions_skipped=len(done), status_counts=counts, seconds=seconds,
                       cluster_start_s=cluster_start_s, scoring_s=scoring_s,
                       timings={"plan_s": planned_s})


def _default_departure(departure_time: str | dt.datetime | None) -> dt.datetime | None:
    """``--departure-time`` as a datetime (InputError naming the option if unreadable)."""
    if not isinstance(departure_time, str):
        return departure_time
    try:
        return parse_departure_time(departure_time)
    except DepartureTimeError as exc:
        raise InputError(f"--departure-time: {exc}") from None


def _install_feed(predictor: Predictor, traffic: str | Path) -> dict[str, Any]:
    """Load the traffic feed into ``predictor``; what the plan and manifest record of it."""
    path = str(Path(traffic).resolve())
    snapshot, feed_report = install_traffic(predictor, path)
    return {"path": path, "snapshot": snapshot.key, "as_of": _iso_local(snapshot.as_of_s),
            "max_age_s": snapshot.max_age_s, "report": feed_report.to_json()}


def _job_plan(input_path: Path, frame: pd.DataFrame, partitions: list[np.ndarray],
              predictor: Predictor, *, graph_dir: str, model_dir: str,
              departure_time: dt.datetime | None, partition_rows: int,
              origins_per_batch: int, traffic_info: dict[str, Any] | None) -> dict[str, Any]:
    """What decides the job's output, and its fingerprint: a resumed job must match it."""
    plan = {
        "schema_version": PLAN_SCHEMA_VERSION,
        "input": str(input_path.resolve()),
        "input_sha256": _input_sha256(input_path),
        "rows": len(frame),
        "graph": graph_dir,
        "graph_identity": predictor.graph.identity,
        "model": model_dir,
        "model_identity": predictor.model.identity,
        "max_snap_distance_m": predictor.max_snap_distance_m,
        "default_departure_time": None if departure_time is None else departure_time.isoformat(),
        "partition_rows": partition_rows,
        "origins_per_batch": origins_per_batch,
        "order_sha256": hashlib.sha256(np.concatenate(
            [np.zeros(0, np.int64), *partitions]).tobytes()).hexdigest(),
        "partition_rows_each": [len(p) for p in partitions],
    }
    if traffic_info is not None:
        plan["traffic"] = traffic_info["path"]
        plan["traffic_snapshot"] = traffic_info["snapshot"]
    plan["fingerprint"] = hashlib.sha256(json.dumps(
        {k: v for k, v in plan.items() if k != "input"}, sort_keys=True).encode()).hexdigest()
    return plan


def _scores_manifest(plan: dict[str, Any], partitions: list[np.ndarray],
                     counts: dict[str, int], *, rows: int, resumed: int,
                     traffic_info: dict[str, Any] | None, seconds: float) -> dict[str, Any]:
    """The finished job's ``_manifest.json``."""
    return {
        "kind": "batch_scores",
        "schema_version": PLAN_SCHEMA_VERSION,
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seed": None,  # scoring draws no random numbers
        "command": list(sys.argv),
        "library_versions": {**library_versions(), **_dask_versions()},
        "plan_fingerprint": plan["fingerprint"],
        "input": plan["input"],
        "input_sha256": plan["input_sha256"],
        "graph": plan["graph"],
        "graph_identity": plan["graph_identity"],
        "model": plan["model"],
        "model_identity": plan["model_identity"],
        "rows": rows,
        "traffic": traffic_info,
        "status_counts": counts,
        "partitions": [{"file": part_name(i), "rows": len(p)} for i, p in enumerate(partitions)],
        "partitions_resumed": resumed,
        "seconds": round(seconds, 3),
    }


def _progress_bar(total: int, progress: bool | None) -> tqdm:
    """The bar on stderr (``progress=None``: only when stderr is a terminal). A terminal that
    reports its size as 0 x 0 (a fresh pseudo-terminal, as ``docker compose run`` or
    ``script`` give) is taken as 80 x 24: tqdm hides every bar below row 0 of a 0-row
    screen, so it would print nothing at all."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):  # not a terminal, or no file number
        size = os.terminal_size((1, 1))
    unknown = size.columns == 0 or size.lines == 0
    return tqdm(total=total, unit="pairs", desc="scoring", file=sys.stderr,
                disable=None if progress is None else not progress,
                ncols=80 if unknown else None, nrows=24 if unknown else None)


def _tidy(result: pd.DataFrame) -> pd.DataFrame:
    """A part in input order (rows of one part were sorted by origin for batching)."""
    return result.sort_values("input_row", kind="stable").reset_index(drop=True)


def _score_pending(frame, partitions, pending, output, bar, failures, *, predictor, scheduler,
                   workers, graph_dir, model_dir, departure_time, origins_per_batch,
                   traffic=None) -> tuple[float, float]:
    """Score the pending partitions; (cluster start-up s, scoring s)."""
    if not pending:
        return 0.0, 0.0
    if workers == 0 and scheduler is None:
        scoring_started = time.perf_counter()
        for index in pending:
            result = score_frame(predictor, frame.iloc[partitions[index]],
                                 default_departure_time=departure_time,
                                 origins_per_batch=origins_per_batch)
            output.write_part(index, _tidy(result))
            bar.update(len(result))
        return 0.0, time.perf_counter() - scoring_started
    return _score_on_dask(frame, partitions, pending, output, bar, failures,
                          scheduler=scheduler, workers=workers, graph_dir=graph_dir,
                          model_dir=model_dir, departure_time=departure_time,
                          origins_per_batch=origins_per_batch, traffic=traffic)


def _score_on_dask(frame, partitions, pending, output, bar, failures, *, scheduler, workers,
                   graph_dir, model_dir, departure_time, origins_per_batch, traffic=None):
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:
        raise NaretaError("scoring on Dask needs the 'dask' extra: pip install "
                          "'nareta[dask]' (or pass --workers 0 to score in this process)"
                          ) from exc
    from batch.worker import PredictorPlugin, score_partition

    traffic_args = (traffic["path"], traffic["snapshot"]) if traffic else (None, None)
    cluster_started = time.perf_counter()
    cluster = None
    bar.set_description("starting Dask workers")
    if scheduler is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.CRITICAL)
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout="30s")
        except (OSError, ValueError) as exc:  # TimeoutError is an OSError
            raise NaretaError(f"--scheduler {scheduler}: cannot connect to a Dask scheduler "
                              f"there ({exc})") from exc
    try:
        try:
            client.register_plugin(PredictorPlugin(graph_dir, model_dir, *traffic_args))
        except NaretaError as exc:
            raise NaretaError(f"a Dask worker cannot load the artifacts: {exc}") from exc
        cluster_start_s = time.perf_counter() - cluster_started
        bar.set_description("scoring")
        scoring_started = time.perf_counter()
        job = uuid.uuid4().hex[:8]
        futures = {}
        for index in pending:
            future = client.submit(score_partition, frame.iloc[partitions[index]], graph_dir,
                                   model_dir, departure_time, origins_per_batch, *traffic_args,
                                   key=f"nareta-score-{job}-{index:05d}", pure=False)
            futures[future] = index
        for future in as_completed(futures):
            index = futures.pop(future)
            try:
                result = future.result()
            except Exception as exc:  # a task failed: keep going, report at the end
                failures.append((index, exc))
            else:
                output.write_part(index, _tidy(result))
                bar.update(len(result))
            future.release()
        return cluster_start_s, time.perf_counter() - scoring_started
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _iso_local(seconds: float) -> str | None:
    from models.inference.live import local_datetime

    if not np.isfinite(seconds):
        return None
    return local_datetime(seconds).isoformat(timespec="seconds")


def _dask_versions() -> dict[str, str]:
    import importlib.metadata

    versions = {}
    for name in ("pandas", "dask", "distributed"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


# ---------------------------------------------------------------------- CLI
def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", type=Path, required=True,
                        help="OD pairs: .parquet (file or directory) or .csv with origin_lon, "
                             "origin_lat, destination_lon, destination_lat [, departure_time, "
                             "trip_id]")
    parser.add_argument("--output", type=Path, required=True,
                        help="output directory of Parquet parts (e.g. out.parquet)")
    parser.add_argument("--graph", type=Path, default=None,
                        help="RoadGraph artifact directory (default: the bundled city)")
    parser.add_argument("--model", default=None,
                        help="model artifact directory, or freeflow, freeflow-turns, "
                             "live-scalar (default: the shipped model if trained on --graph, "
                             "else freeflow)")
    parser.add_argument("--traffic", type=Path, default=None,
                        help="traffic feed file or directory (a model that takes live "
                             "traffic): rows get traffic_as_of, the manifest the snapshot")
    parser.add_argument("--scheduler", default=os.environ.get("NARETA_DASK_SCHEDULER") or None,
                        help="address of a running Dask scheduler, e.g. tcp://scheduler:8786 "
                             "(default: $NARETA_DASK_SCHEDULER, else a local cluster)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="local cluster worker processes, 1 thread each; 0 = score in "
                             "this process without Dask (default: %(default)s)")
    parser.add_argument("--departure-time", default=None,
                        help="departure time for rows without one: ISO-8601 or epoch seconds")
    parser.add_argument("--partition-rows", type=int, default=5000,
                        help="OD pairs per partition (default: %(default)s)")
    parser.add_argument("--origins-per-batch", type=int, default=64,
                        help="distinct origins per batched model run (default: %(default)s)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true",
                       help="finish an interrupted job: keep the parts already written")
    group.add_argument("--force", action="store_true", help="replace an existing --output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    graph_dir, model = resolve_artifacts(args.graph, args.model)
    report = score_table(
        args.input, args.output, graph_dir=graph_dir, model_dir=model,
        scheduler=args.scheduler, workers=args.workers, departure_time=args.departure_time,
        resume=args.resume, force=args.force, partition_rows=args.partition_rows,
        origins_per_batch=args.origins_per_batch, progress=False if args.quiet else None,
        traffic=args.traffic)
    counts = ", ".join(f"{count} {status}" for status, count in report.status_counts.items())
    resumed = (f"; {report.partitions_skipped} already done" if report.partitions_skipped
               else "")
    print(f"wrote {report.output}: {report.rows} OD pairs in {report.partitions} parts"
          f"{resumed} ({counts}) in {report.seconds:.1f} s")
    return 0
