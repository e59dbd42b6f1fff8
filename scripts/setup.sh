#!/usr/bin/env bash
# Create .venv (Python 3.11) and install nareta with every extra. Idempotent: a second run
# only reinstalls when pyproject.toml changed. The Docker image runs this same script.
#
# Environment (all optional):
#   PYTHON            interpreter that creates .venv (default python3.11, else python3)
#   NARETA_EXTRAS     extras to install (default dev,sim,dask; the image uses sim,dask)
#   TORCH_INDEX_URL   where torch comes from, e.g. https://download.pytorch.org/whl/cpu
#                     (the image's CPU-only wheel; default: PyPI)
#   NARETA_SETUP_STEP torch = only create .venv and install torch (a cacheable image layer)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
EXTRAS=${NARETA_EXTRAS:-dev,sim,dask}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
install_torch() {
    # torch first, pinned: a looser requirement would pull a multi-GB CUDA build.
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
        .venv/bin/python -m pip install --quiet --index-url "$TORCH_INDEX_URL" "torch==2.13.0"
    else
        .venv/bin/python -m pip install --quiet "torch==2.13.0"
    fi
}
stamp=.venv/.nareta-installed
if [ "${NARETA_SETUP_STEP:-all}" = torch ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    install_torch
elif [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    install_torch
    .venv/bin/python -m pip install --quiet -e ".[$EXTRAS]"
    touch "$stamp"
fi
