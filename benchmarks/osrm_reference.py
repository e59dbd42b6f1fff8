"""osrm-routed as a reference peer, built from the ``osrm-bindings`` wheel on PyPI.

The wheel (cp312 abi3, manylinux x86-64) carries stand-alone ``osrm/bin`` tools and the
``car.lua`` profile: fetched with ``pip download`` once, unpacked, then osrm-extract and
osrm-contract (contraction hierarchies) on the given ``.osm.pbf``, all under a cache
folder (``runs/osrm`` by default: gitignored, never committed). Used by
``benchmarks/service.py`` (speed) and ``tests/service/test_osrm_parity.py`` (answers).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

OSRM_WHEEL = "osrm-bindings==26.10.0"


def prepare_osrm(cache: Path, pbf: Path, *, threads: int = 2,
                 quiet: bool = False) -> tuple[Path, Path]:
    """(osrm bin directory, ``.osrm`` base path): the wheel fetched and unpacked once, the
    extract + contract redone when the ``.pbf`` changes. Raises CalledProcessError when a
    step fails (e.g. no network for ``pip download``); its log is in the cache."""
    bin_dir = cache / "wheel" / "osrm" / "bin"
    if not (bin_dir / "osrm-routed").exists():
        cache.mkdir(parents=True, exist_ok=True)
        wheels = sorted(cache.glob("osrm_bindings-*.whl"))
        if not wheels:
            if not quiet:
                print(f"fetching {OSRM_WHEEL} into {cache}", flush=True)
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                            "--only-binary=:all:", "--python-version", "3.12", OSRM_WHEEL,
                            "-d", str(cache)], check=True, capture_output=quiet)
            wheels = sorted(cache.glob("osrm_bindings-*.whl"))
        with zipfile.ZipFile(wheels[-1]) as wheel:
            wheel.extractall(cache / "wheel")
        for tool in bin_dir.iterdir():
            tool.chmod(0o755)
    data = cache / pbf.name.removesuffix(".osm.pbf")
    data.mkdir(parents=True, exist_ok=True)
    copy = data / pbf.name
    base = data / (pbf.name.removesuffix(".osm.pbf") + ".osrm")
    if not copy.exists() or copy.read_bytes() != pbf.read_bytes() or not Path(
            f"{base}.hsgr").exists():
        shutil.copyfile(pbf, copy)
        profile = cache / "wheel" / "osrm" / "share" / "profiles" / "car.lua"
        for command in ([bin_dir / "osrm-extract", "-p", profile, "-t", str(threads), copy],
                        [bin_dir / "osrm-contract", "-t", str(threads), base]):
            if not quiet:
                print(f"  {Path(command[0]).name} ...", flush=True)
            with open(data / f"{Path(command[0]).name}.log", "wb") as log:
                subprocess.run([str(part) for part in command], check=True, stdout=log,
                               stderr=subprocess.STDOUT, cwd=data)
    return bin_dir, base


def routed_command(bin_dir: Path, base: Path, *, port: int | str, threads: int = 2
                   ) -> list[str]:
    """osrm-routed with contraction hierarchies on 127.0.0.1:``port``."""
    return [str(bin_dir / "osrm-routed"), "--algorithm", "ch", "-i", "127.0.0.1", "-p",
            str(port), "-t", str(threads), str(base)]
