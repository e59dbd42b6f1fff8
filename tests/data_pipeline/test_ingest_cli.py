"""``nareta ingest`` end to end, and every bad input the issue names: exit non-zero with one
line naming the file and the problem, and leave nothing behind."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from data_pipeline.road_graph import RoadGraph
from tests.conftest import BUNDLED_OSM, run_cli


def _assert_clean_failure(result, out: Path, *needles: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not out.exists()
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]
    assert not leftovers


def test_ingest_writes_artifact(clipped_osm, tmp_path):
    out = tmp_path / "graph"
    result = run_cli("ingest", str(clipped_osm), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "segments" in result.stdout
    graph = RoadGraph.load(out)
    assert graph.manifest["source"]["sha256"]
    assert "ingest" in graph.manifest["command"]
    # Refuses to overwrite, then replaces with --force.
    again = run_cli("ingest", str(clipped_osm), "--out", str(out))
    assert again.returncode != 0 and "already exists" in again.stderr and "--force" in again.stderr
    forced = run_cli("ingest", str(clipped_osm), "--out", str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    RoadGraph.load(out)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.osm.pbf", b"", "file is empty"),
        ("random.osm.pbf", os.urandom(4096), "cannot read as OSM data"),
        ("random.osm", b"\x00\xff" * 1000, "cannot read as OSM data"),
        ("truncated.osm.pbf", BUNDLED_OSM.read_bytes()[:200_000], "cannot read as OSM data"),
        ("truncated.osm", b'<?xml version="1.0"?>\n<osm version="0.6"><node id="1"', "cannot"),
        ("roads.txt", b"hello", "unknown file type"),
    ],
)
def test_bad_files(tmp_path, name, content, message):
    source = tmp_path / name
    source.write_bytes(content)
    out = tmp_path / "graph"
    _assert_clean_failure(run_cli("ingest", str(source), "--out", str(out)), out, name, message)


def test_missing_file(tmp_path):
    out = tmp_path / "graph"
    _assert_clean_failure(
        run_cli("ingest", str(tmp_path / "nope.osm.pbf"), "--out", str(out)),
        out,
        "nope.osm.pbf",
        "no such file",
    )


def test_no_drivable_roads(tmp_path):
    source = tmp_path / "paths.osm"
    source.write_text(
        '<?xml version="1.0"?>\n<osm version="0.6">'
        '<node id="1" lat="0" lon="0"/><node id="2" lat="0" lon="0.001"/>'
        '<way id="9"><nd ref="1"/><nd ref="2"/><tag k="highway" v="footway"/></way>'
        "</osm>\n"
    )
    out = tmp_path / "graph"
    _assert_clean_failure(
        run_cli("ingest", str(source), "--out", str(out)), out, "paths.osm", "no drivable roads"
    )


def test_empty_bbox(clipped_osm, tmp_path):
    out = tmp_path / "graph"
    result = run_cli("ingest", str(clipped_osm), "--bbox", "10,10,10.01,10.01", "--out", str(out))
    _assert_clean_failure(result, out, "helsinki_clipped.osm", "no drivable roads inside bbox")


def test_invalid_bbox(clipped_osm, tmp_path):
    out = tmp_path / "graph"
    result = run_cli("ingest", str(clipped_osm), "--bbox", "10,10,9,9", "--out", str(out))
    _assert_clean_failure(result, out, "bbox", "west < east")


def test_place_offline_fails_fast(tmp_path):
    out = tmp_path / "graph"
    result = run_cli("ingest", "--place", "Baltimore, Maryland", "--out", str(out), timeout=30)
    _assert_clean_failure(result, out, "internet")


def test_read_only_output_dir(clipped_osm):
    # Root ignores permission bits, so run the CLI as "nobody" when we are root.
    root = Path(tempfile.mkdtemp(prefix="nareta-ro-", dir="/tmp"))
    try:
        os.chmod(root, 0o755)
        source = root / "in.osm"
        shutil.copy(clipped_osm, source)
        os.chmod(source, 0o644)
        locked = root / "locked"
        locked.mkdir(mode=0o555)
        os.chmod(locked, 0o555)
        out = locked / "graph"
        user = None
        if os.geteuid() == 0:
            if shutil.which("setpriv") is None:
                pytest.fail("running as root without setpriv: cannot test a read-only dir")
            user = "65534"
        result = run_cli("ingest", str(source), "--out", str(out), user=user, cwd=root)
        _assert_clean_failure(result, out, "not writable")
    finally:
        os.chmod(root / "locked", 0o755)
        shutil.rmtree(root)
