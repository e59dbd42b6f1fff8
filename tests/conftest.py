"""Shared fixtures: paths to the real OSM inputs and a session-wide ingested graph."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
BUNDLED_OSM = REPO / "data" / "osm" / "baltimore.osm.pbf"
SHARED_OSM = Path(os.environ.get("NARETA_SHARED_OSM", REPO.parent / "shared" / "osm"))
SHARED_EXTRACTS = ("helsinki", "baltimore", "harrisburg", "liechtenstein")


def run_cli(
    *args: str, user: str | None = None, cwd: Path | None = None, timeout: float = 300,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m nareta.cli ARGS`` in a fresh process, as the CLI user would (``env``:
    extra environment variables)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    command = [sys.executable, "-m", "nareta.cli", *args]
    if user is not None:
        home = tempfile.mkdtemp(prefix="nareta-home-")
        os.chmod(home, 0o777)  # the other user's HOME (matplotlib caches there)
        env.update(HOME=home, MPLCONFIGDIR=home, XDG_CACHE_HOME=home)
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=cwd or REPO, timeout=timeout
    )


@pytest.fixture(scope="session")
def clipped_osm() -> Path:
    return FIXTURES / "helsinki_clipped.osm"


def shared_extract(name: str) -> Path:
    """The shared extract ``NAME.osm.pbf``; the bundled file stands in for Baltimore.

    A clone with nothing beside it has only the bundled city, so a test that needs another
    extract is skipped with a reason saying how to get it; CI has ``../shared`` and sets
    ``CI=1``, where such a skip would hide a test that never ran, so it fails instead.
    """
    path = SHARED_OSM / f"{name}.osm.pbf"
    if path.is_file():
        return path
    if name == "baltimore":
        return BUNDLED_OSM
    message = (
        f"{path} not found: this test needs the shared OSM extracts (put them in "
        f"{SHARED_OSM} or point NARETA_SHARED_OSM at a folder with {', '.join(SHARED_EXTRACTS)}"
        " .osm.pbf files; README.md, section Tests, says where they come from)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI=1 runs every test")
    pytest.skip(message)


@pytest.fixture(scope="session")
def bundled_graph_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled city ingested once per test session."""
    from data_pipeline.ingest import ingest_osm

    out = tmp_path_factory.mktemp("graphs") / "baltimore"
    ingest_osm(BUNDLED_OSM).graph.save(out)
    return out


@pytest.fixture(scope="session")
def bundled_graph(bundled_graph_dir: Path):
    from data_pipeline.road_graph import RoadGraph

    return RoadGraph.load(bundled_graph_dir)
