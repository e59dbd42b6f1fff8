#!/usr/bin/env bash
# The image's entry point (also run directly by the tests): one subcommand per role.
#
#   build        ingest the city into $NARETA_GRAPH_DIR unless it is already there, then
#                install the ETA model into $ARTIFACTS_DIR/$NARETA_RELEASE/model: the
#                shipped one when it was trained on this very graph, else train one on
#                $NARETA_TRIPS (simulated with SUMO first when that file does not exist)
#   api          nareta serve on $NARETA_HOST:$NARETA_PORT (settings from the environment)
#   scheduler    a Dask scheduler on :8786 (dashboard :8787)
#   worker       a Dask worker for $NARETA_DASK_SCHEDULER
#   score ARGS   nareta score with --graph/--model/--scheduler from the environment
#   healthcheck  exit 0 when http://127.0.0.1:$NARETA_PORT/health answers 200
#   anything else is passed to the nareta CLI (e.g. "ingest --help")
#
# Environment: ARTIFACTS_DIR (/artifacts), NARETA_RELEASE (baltimore-v1: the directory
# under ARTIFACTS_DIR with graph/ and model/), NARETA_GRAPH_DIR, NARETA_MODEL_DIR (default
# $ARTIFACTS_DIR/$NARETA_RELEASE/{graph,model}; the model falls back to freeflow while none
# is trained), NARETA_OSM (the city's OSM file), NARETA_REBUILD=1 (build again even if
# present), NARETA_HOST (0.0.0.0), NARETA_PORT (8000), NARETA_DASK_SCHEDULER
# (tcp://scheduler:8786 in compose; empty = a local cluster), DASK_WORKER_PROCESSES (1),
# DASK_SCHEDULER_PORT (8786), DASK_DASHBOARD_ADDRESS (:8787).
set -euo pipefail
cd "$(dirname "$0")/.."

export ARTIFACTS_DIR=${ARTIFACTS_DIR:-/artifacts}
export NARETA_RELEASE=${NARETA_RELEASE:-baltimore-v1}
export NARETA_GRAPH_DIR=${NARETA_GRAPH_DIR:-$ARTIFACTS_DIR/$NARETA_RELEASE/graph}
release_model=$ARTIFACTS_DIR/$NARETA_RELEASE/model
if [ -z "${NARETA_MODEL_DIR:-}" ]; then
    if [ -f "$release_model/manifest.json" ]; then
        NARETA_MODEL_DIR=$release_model
    else
        NARETA_MODEL_DIR=freeflow
    fi
fi
export NARETA_MODEL_DIR
export NARETA_HOST=${NARETA_HOST:-0.0.0.0}
export NARETA_PORT=${NARETA_PORT:-8000}
NARETA_OSM=${NARETA_OSM:-data/osm/baltimore.osm.pbf}
PYTHON=${PYTHON:-python3}

if command -v nareta >/dev/null 2>&1; then
    NARETA=(nareta)
else  # a checkout without the console script (tests, CI)
    NARETA=("$PYTHON" -m nareta.cli)
fi

# dask's CLI: on PATH in the image; beside $PYTHON in a checkout's virtualenv (tests, CI)
if command -v dask >/dev/null 2>&1; then
    DASK=(dask)
elif [ -x "$(dirname "$(command -v "$PYTHON")")/dask" ]; then
    DASK=("$(dirname "$(command -v "$PYTHON")")/dask")
else
    DASK=("$PYTHON" -m dask)
fi

role=${1:-api}
[ $# -gt 0 ] && shift
case "$role" in
    build)
        if [ -f "$NARETA_GRAPH_DIR/manifest.json" ] && [ "${NARETA_REBUILD:-0}" != 1 ]; then
            echo "build: $NARETA_GRAPH_DIR already present; set NARETA_REBUILD=1 to rebuild"
        else
            mkdir -p "$(dirname "$NARETA_GRAPH_DIR")"
            "${NARETA[@]}" ingest "$NARETA_OSM" --out "$NARETA_GRAPH_DIR" --force
        fi
        if [ -f "$release_model/manifest.json" ] && [ "${NARETA_REBUILD:-0}" != 1 ]; then
            echo "build: $release_model already present"
        else
            release_dir=$(dirname "$release_model")
            rm -rf "$release_dir/processor.tmp" "$release_dir/model.tmp"
            cp -r artifacts_shipped/processor "$release_dir/processor.tmp"
            rm -rf "$release_dir/processor" && mv "$release_dir/processor.tmp" "$release_dir/processor"
            if "${NARETA[@]}" eta --graph "$NARETA_GRAPH_DIR" \
                    --model artifacts_shipped/eta_baltimore \
                    --origin=-76.6,39.29 --destination=-76.58,39.29 >/dev/null 2>&1; then
                echo "build: the shipped ETA model matches $NARETA_GRAPH_DIR; installing it"
                cp -r artifacts_shipped/eta_baltimore "$release_dir/model.tmp"
                rm -rf "$release_model" && mv "$release_dir/model.tmp" "$release_model"
            else
                trips=${NARETA_TRIPS:-$release_dir/trips.parquet}
                if [ ! -f "$trips" ]; then
                    "${NARETA[@]}" simulate "$NARETA_OSM" --out "$trips" \
                        --graph "$NARETA_GRAPH_DIR" --hours 3 --profile rush --seed 0
                fi
                "${NARETA[@]}" train --graph "$NARETA_GRAPH_DIR" --trips "$trips" \
                    --processor "$release_dir/processor" --out "$release_model" --force \
                    --no-progress
            fi
        fi
        ;;
    api)
        exec "${NARETA[@]}" serve "$@"
        ;;
    scheduler)
        exec "${DASK[@]}" scheduler --port "${DASK_SCHEDULER_PORT:-8786}" \
            --dashboard-address "${DASK_DASHBOARD_ADDRESS:-:8787}" "$@"
        ;;
    worker)
        exec "${DASK[@]}" worker "${NARETA_DASK_SCHEDULER:-tcp://scheduler:8786}" \
            --nworkers "${DASK_WORKER_PROCESSES:-1}" --nthreads 1 "$@"
        ;;
    score)
        options=(--graph "$NARETA_GRAPH_DIR")
        if [ "$NARETA_MODEL_DIR" != freeflow ]; then
            options+=(--model "$NARETA_MODEL_DIR")
        fi
        if [ -n "${NARETA_DASK_SCHEDULER:-}" ]; then
            options+=(--scheduler "$NARETA_DASK_SCHEDULER")
        fi
        exec "${NARETA[@]}" score "${options[@]}" "$@"
        ;;
    healthcheck)
        exec "$PYTHON" - <<PY
import sys, urllib.request
try:
    with urllib.request.urlopen("http://127.0.0.1:$NARETA_PORT/health", timeout=4) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception as exc:
    print(f"unhealthy: {exc}", file=sys.stderr)
    sys.exit(1)
PY
        ;;
    -h|--help|help)
        sed -n '2,20p' "$0"
        ;;
    *)
        exec "${NARETA[@]}" "$role" "$@"
        ;;
esac
