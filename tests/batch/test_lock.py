"""One writer per output, with real ``nareta score`` processes: while one holds the
output, a second run (fresh, --resume or --force) is refused naming it and touches
nothing; once the first dies, its lock is taken over with a message and --resume finishes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest

from batch.lock import hold_output_lock, lock_path
from batch.output import MANIFEST_NAME, PLAN_NAME
from batch.score import score_table
from nareta.errors import OutputLockedError
from tests.conftest import REPO, run_cli

pytest.importorskip("distributed")


def _score_args(od_csv, output, graph_dir, *extra):
    return ("score", "--input", str(od_csv), "--output", str(output), "--graph",
            str(graph_dir), "--quiet", "--partition-rows", "100", *extra)


def test_second_writer_refused_and_stale_lock_taken_over(tmp_path, od_csv, bundled_graph_dir):
    output = tmp_path / "out.parquet"
    # The first writer: a real `nareta score` whose Dask scheduler never answers, so it
    # holds the output (plan written, no part yet) until we kill it.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    first = subprocess.Popen(
        [sys.executable, "-m", "nareta.cli",
         *_score_args(od_csv, output, bundled_graph_dir, "--scheduler",
                      f"tcp://127.0.0.1:{silent.getsockname()[1]}")],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (output / PLAN_NAME).is_file():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first writer never started"
            time.sleep(0.1)
        holder = json.loads(lock_path(output).read_text())
        assert holder["pid"] == first.pid and holder["host"] == socket.gethostname()
        in_progress = output / ".part-00000.live.tmp"  # as if it were writing part 0
        in_progress.write_bytes(b"half a part")

        for extra in ((), ("--resume",), ("--force",)):
            second = run_cli(*_score_args(od_csv, output, bundled_graph_dir, "--workers", "0",
                                          *extra))
            assert second.returncode == 2, (extra, second.stderr)
            assert f"another `nareta score` is writing it (pid {first.pid} on " in second.stderr
            assert "Traceback" not in second.stderr
        assert first.poll() is None  # the refusals did not disturb the live writer
        assert in_progress.read_bytes() == b"half a part"  # --resume deleted nothing
        assert sorted(p.name for p in output.iterdir()) == [in_progress.name, PLAN_NAME]
    finally:
        first.send_signal(signal.SIGKILL)  # dies holding the lock: its file stays behind
        first.communicate()
        silent.close()

    assert json.loads(lock_path(output).read_text())["pid"] == first.pid
    resumed = run_cli(*_score_args(od_csv, output, bundled_graph_dir, "--workers", "0",
                                   "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert f"taking over the lock left by pid {first.pid}" in resumed.stderr
    assert "no longer running" in resumed.stderr
    assert (output / MANIFEST_NAME).is_file() and not in_progress.exists()
    assert len(pd.read_parquet(output)) == len(pd.read_csv(od_csv))
    assert not lock_path(output).exists()  # released at the end


def test_lock_in_one_process(tmp_path, od_csv, bundled_graph_dir):
    output = tmp_path / "out.parquet"
    with hold_output_lock(output):
        with pytest.raises(OutputLockedError, match=f"pid {os.getpid()}"):
            score_table(od_csv, output, graph_dir=bundled_graph_dir, workers=0)
        assert not output.exists()
    report = score_table(od_csv, output, graph_dir=bundled_graph_dir, workers=0,
                         progress=False)
    assert report.rows == len(pd.read_csv(od_csv)) and not lock_path(output).exists()
