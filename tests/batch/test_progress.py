"""``nareta score`` shows its progress bar on a terminal, including one that reports its size
as 0 x 0 (a fresh pseudo-terminal, as ``docker compose run`` gives), and not in a pipe."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

from tests.conftest import REPO, run_cli


def _run_on_a_terminal(*args: str, timeout_s: float = 180) -> str:
    leader, follower = pty.openpty()  # its window size is 0 x 0 until someone sets it
    process = subprocess.Popen([sys.executable, "-m", "nareta.cli", *args], cwd=REPO,
                               env={**os.environ, "PYTHONPATH": str(REPO)},
                               stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    output, deadline = b"", time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(leader)
        process.wait(timeout=30)
    assert process.returncode == 0, output.decode(errors="replace")
    return output.decode(errors="replace")


def test_progress_bar_on_a_terminal_and_not_in_a_pipe(tmp_path, od_csv, bundled_graph_dir):
    common = ["--input", str(od_csv), "--graph", str(bundled_graph_dir), "--model", "freeflow",
              "--workers", "0", "--partition-rows", "100"]
    text = _run_on_a_terminal("score", *common, "--output", str(tmp_path / "tty"))
    assert re.search(r"scoring:\s+33%\|.*\| 100/300", text), text
    assert re.search(r"scoring:\s+100%\|.*\| 300/300", text), text
    piped = run_cli("score", *common, "--output", str(tmp_path / "pipe"))
    assert piped.returncode == 0, piped.stderr
    assert "scoring" not in piped.stderr and "300 OD pairs" in piped.stdout
