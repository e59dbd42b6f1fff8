"""Artifact directories: written atomically (temp dir + rename), verified when loaded.

Every artifact is a directory holding data files and a ``manifest.json`` with its kind,
schema version, seed, command line, library versions and a sha256 per file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nareta import __version__
from nareta.errors import ArtifactError, OutputExistsError, OutputNotWritableError

MANIFEST_NAME = "manifest.json"
_TRACKED_LIBRARIES = (
    "numpy",
    "torch",
    "torch-geometric",
    "osmnx",
    "osmium",
    "networkx",
    "scipy",
    "pyarrow",
    "safetensors",
    "eclipse-sumo",
)


def sha256_file(path: str | os.PathLike[str], *, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of Python, nareta and the libraries that shape an artifact's content."""
    versions = {"python": sys.version.split()[0], "nareta": __version__}
    for name in _TRACKED_LIBRARIES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


def check_output_dir(out_dir: Path, *, force: bool) -> None:
    """Fail before any work if ``out_dir`` exists (without ``force``) or cannot be written."""
    if out_dir.exists() and not force:
        raise OutputExistsError(f"output {out_dir}: already exists; pass --force to replace it")
    parent = out_dir.parent if str(out_dir.parent) else Path(".")
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputNotWritableError(
                f"output {out_dir}: cannot create parent directory ({exc.strerror})"
            ) from exc
    try:
        probe = tempfile.mkdtemp(prefix=".nareta-probe-", dir=parent)
    except OSError as exc:
        raise OutputNotWritableError(
            f"output {out_dir}: directory {parent} is not writable ({exc.strerror})"
        ) from exc
    os.rmdir(probe)


@contextlib.contextmanager
def atomic_artifact_dir(out_dir: str | os.PathLike[str], *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``out_dir``; on success it replaces ``out_dir``.

    On any exception the temporary directory is removed and ``out_dir`` is untouched, so
    no half-written artifact is ever visible under the final name.
    """
    final = Path(out_dir)
    check_output_dir(final, force=force)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield staging
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp made it private
        if final.exists():
            retired = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, retired)
            os.replace(staging, final)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_manifest(
    directory: Path,
    *,
    kind: str,
    schema_version: int,
    seed: int | None,
    extra: dict[str, Any] | None = None,
    command: list[str] | None = None,
) -> dict[str, Any]:
    """Write ``manifest.json`` covering every file already in ``directory``."""
    files = {
        path.name: {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        for path in sorted(directory.iterdir())
        if path.is_file() and path.name != MANIFEST_NAME
    }
    manifest: dict[str, Any] = {
        "kind": kind,
        "schema_version": schema_version,
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "command": list(sys.argv) if command is None else command,
        "library_versions": library_versions(),
        "files": files,
    }
    if extra:
        manifest.update(extra)
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def read_manifest(
    directory: str | os.PathLike[str],
    *,
    kind: str,
    schema_versions: tuple[int, ...],
    verify: bool = True,
) -> dict[str, Any]:
    """Read and verify an artifact's manifest: kind, schema version and file checksums."""
    root = Path(directory)
    manifest_path = root / MANIFEST_NAME
    if not root.is_dir():
        raise ArtifactError(f"artifact {root}: not a directory")
    if not manifest_path.is_file():
        raise ArtifactError(f"artifact {root}: no {MANIFEST_NAME}; is this a nareta artifact?")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"artifact {root}: {MANIFEST_NAME} is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("kind") != kind:
        found = manifest.get("kind") if isinstance(manifest, dict) else None
        raise ArtifactError(f"artifact {root}: expected kind {kind!r}, found {found!r}")
    if manifest.get("schema_version") not in schema_versions:
        raise ArtifactError(
            f"artifact {root}: schema version {manifest.get('schema_version')!r} is not "
            f"supported (supported: {', '.join(map(str, schema_versions))}); rebuild it"
        )
    if verify:
        for name, entry in manifest.get("files", {}).items():
            path = root / name
            if not path.is_file():
                raise ArtifactError(f"artifact {root}: file {name} listed in manifest is missing")
            if sha256_file(path) != entry.get("sha256"):
                raise ArtifactError(
                    f"artifact {root}: file {name} does not match its checksum (corrupt or edited)"
                )
    return manifest


def artifact_hash(manifest: dict[str, Any]) -> str:
    """A stable identity for an artifact: the sha256 over its files' checksums."""
    digest = hashlib.sha256()
    for name, entry in sorted(manifest.get("files", {}).items()):
        digest.update(f"{name}:{entry['sha256']};".encode())
    return digest.hexdigest()
