#!/usr/bin/env bash
# The main job on the bundled city (Baltimore): set up, ingest, load the shipped ETA model
# (or, if it does not match the graph, simulate trips with SUMO and train one), answer an
# ETA query (and, with a live-traffic model, one without and one with the bundled feed),
# then serve the API and map on http://127.0.0.1:8000/ (NARETA_SERVE=0 to stop
# after the query).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
NARETA=.venv/bin/nareta
graph=artifacts/baltimore/graph
model=artifacts_shipped/eta_baltimore
mkdir -p artifacts/baltimore
$NARETA ingest data/osm/baltimore.osm.pbf --out "$graph" --force
query=(--graph "$graph" --origin=-76.6010,39.2905 --destination=-76.5660,39.2850
       --departure-time 2026-11-18T08:15 --route)
if ! $NARETA eta "${query[@]}" --model "$model" 2>/dev/null; then
    echo "the shipped model does not match $graph: simulating trips and training one"
    trips=artifacts/baltimore/trips.parquet
    [ -f "$trips" ] || $NARETA simulate data/osm/baltimore.osm.pbf --graph "$graph" \
        --out "$trips" --hours 3 --profile rush --seed 0
    model=artifacts/baltimore/eta
    $NARETA train --graph "$graph" --trips "$trips" --out "$model" --force
    $NARETA eta "${query[@]}" --model "$model"
fi
$NARETA eta "${query[@]}" --model freeflow-turns
# Live traffic: the same trip on the held-out simulated Monday at 07:30, without and with
# the bundled feed of that morning (data/traffic/); the answer says which snapshot it used.
feed=data/traffic/baltimore_2026-11-23_0700-0730.parquet
live=(--graph "$graph" --model "$model" --origin=-76.6010,39.2905 --destination=-76.5660,39.2850
      --departure-time 2026-11-23T07:30)
serve_traffic=()
if $NARETA eta "${live[@]}" --traffic "$feed" >/dev/null 2>&1; then  # the model takes traffic
    $NARETA eta "${live[@]}"
    $NARETA eta "${live[@]}" --traffic "$feed"
    serve_traffic=(--traffic "$feed")
fi
if [ "${NARETA_SERVE:-1}" != 0 ]; then
    echo "serving on http://127.0.0.1:${NARETA_PORT:-8000}/ (Ctrl-C to stop)"
    NARETA_GRAPH_DIR="$graph" NARETA_MODEL_DIR="$model" exec $NARETA serve "${serve_traffic[@]}"
fi
