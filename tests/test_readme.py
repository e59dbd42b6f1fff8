"""README.md's command blocks, pasted into bash as a reader would (with the virtual
environment active): blocks marked ``<!-- readme-test: run -->`` run in an empty directory
that holds the repository's data, and the ``curl`` blocks run against a live server."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

BLOCK = re.compile(r"<!-- readme-test: (run|curl) -->\n```bash\n(.*?)```", re.DOTALL)
BLOCKS = BLOCK.findall((REPO / "README.md").read_text())
RUN = [text for kind, text in BLOCKS if kind == "run"]
CURL = [text for kind, text in BLOCKS if kind == "curl"]


def _commands(text: str) -> list[str]:
    """One string per command (backslash continuations joined, comments and blanks dropped)."""
    joined = text.replace("\\\n", " ")
    return [line for line in joined.splitlines() if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def reader(tmp_path_factory) -> dict[str, str]:
    """What an activated .venv gives a reader: ``nareta`` on PATH (this checkout's code),
    and a cache of this module's own."""
    bin_dir = tmp_path_factory.mktemp("bin")
    (bin_dir / "nareta").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m nareta.cli "$@"\n')
    (bin_dir / "nareta").chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(REPO), "NARETA_CACHE_DIR": str(tmp_path_factory.mktemp("cache")),
            "NARETA_GRAPH_DIR": "", "NARETA_MODEL_DIR": ""}


def test_readme_has_the_marked_blocks():
    assert len(RUN) >= 4 and len(CURL) >= 1
    assert any("nareta score" in text for text in RUN)


@pytest.mark.parametrize("block", RUN, ids=[_commands(t)[0][:40] for t in RUN])
def test_readme_block_runs(block, reader, tmp_path):
    for name in ("data", "artifacts_shipped"):  # the paths the README uses, read-only
        (tmp_path / name).symlink_to(REPO / name)
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path,
                            env=reader, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{block}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"


def test_readme_curl_commands(bundled_graph_dir, tmp_path):
    if shutil.which("curl") is None:
        if os.environ.get("CI"):
            pytest.fail("curl is required in CI (.ci/run installs it)")
        pytest.skip("curl not installed")
    from tests.service.conftest import serve

    with serve(bundled_graph_dir, tmp_path / "server.log") as server:
        address = server.base_url.removeprefix("http://")
        for block in CURL:
            for command in _commands(block):
                result = subprocess.run(["bash", "-c", command.replace("localhost:8000",
                                                                       address)],
                                        capture_output=True, text=True, timeout=60)
                assert result.returncode == 0, (command, result.stderr)
                answer = json.loads(result.stdout)  # one JSON answer, not a shell error
                assert answer.get("code", "Ok") == "Ok" and "message" not in answer, answer
