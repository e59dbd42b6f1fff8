"""What every results file records about how it was made: the git commit (and whether the
working tree had uncommitted changes to tracked files), the command line and the time."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def provenance(argv: list[str] | None = None) -> dict:
    """``{"git_commit", "git_dirty", "command", "created_utc"}`` for a results JSON;
    ``argv``: the script's arguments (default ``sys.argv``)."""
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    script = Path(sys.argv[0])
    if script.is_absolute() and script.is_relative_to(REPO):
        script = script.relative_to(REPO)
    args = sys.argv[1:] if argv is None else list(argv)
    return {"git_commit": git("rev-parse", "HEAD"),
            "git_dirty": None if status is None else bool(status),
            "command": " ".join(["python", str(script), *args]),
            "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
