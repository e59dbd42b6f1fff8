#!/usr/bin/env bash
# The main job on the bundled city: set up, ingest Baltimore into artifacts/, print a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p artifacts
.venv/bin/nareta ingest data/osm/baltimore.osm.pbf --out artifacts/baltimore/graph --force
